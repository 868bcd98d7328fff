"""The sync rules (SPEC.md section 2) through the core, with the real adapter over HTTP against the emulator.

The HTTP calls each scenario costs are counted from the emulator's request log, bounded by assertions, and
printed (`pytest -s`) for the record.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from qbo_support import CoreRig, QboRig

from adapters.quickbooks.emulator import EmulatorServer
from adapters.quickbooks.qbo import RateLimits
from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Refund,
    SyncState,
)

D = Decimal
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
MARY = Customer("c1", "Mary", "O'Brien", email="mary@example.com")
OPP = Opportunity("o1", "1001", MARY)
MOVE = Job("j1", "INV-1001", date(2026, 4, 3), (InvoiceLine("Move, 3.5 h", D("3.5"), D("100.00"), D("350.00")),))


def payment(
    payment_id: str = "p1", amount: str = "500.00", *refunds: Refund, method: PaymentMethod = PaymentMethod.CASH
) -> Payment:
    return Payment(payment_id, D(amount), method, T, f"ref-{payment_id}", tuple(refunds))


def refund(refund_id: str, amount: str) -> Refund:
    return Refund(refund_id, D(amount), T, "damaged sofa")


@pytest.fixture
def core(rig: QboRig) -> CoreRig:
    return CoreRig(rig)


def calls(rig: QboRig, label: str, bound: int) -> int:
    """The API calls since the log was last cleared; prints and bounds them."""
    count = len(rig.log())
    print(f"\nHTTP calls, {label}: {count}")
    assert count <= bound, rig.log()
    return count


def warm_up(core: CoreRig) -> None:
    """A first sync for someone else, so that the account settings are resolved and saved already."""
    other = Opportunity("o0", "0999", Customer("c0", "Warm", "Up", email="warm@example.com"))
    core.succeed(core.service.sync_payment(core.principal, other, payment("p0", "10.00")))


def live(rig: QboRig, entity: str) -> list[dict[str, Any]]:
    state = rig.state()
    voided = set(state["voided"])
    return [r for r in state["entities"][entity] if f"{entity}/{r['Id']}" not in voided]


def links(record: dict[str, Any]) -> set[tuple[str, str, Decimal]]:
    return {
        (link["TxnType"], link["TxnId"], D(str(line["Amount"])))
        for line in record.get("Line", [])
        for link in line["LinkedTxn"]
    }


def status(core: CoreRig, kind: EntityType, crm_id: str) -> Any:
    return core.service.get_status(core.principal, EntityRef(kind, crm_id))


def test_deposit_for_a_new_customer_first_ever_and_steady(core: CoreRig, rig: QboRig) -> None:
    rig.clear_log()
    core.succeed(core.service.sync_payment(core.principal, OPP, payment("p1", "500.00")))
    first = calls(rig, "deposit for a new customer (first sync of the company: settings resolved)", 5)
    (customer,) = [c for c in rig.records("Customer")]
    assert (customer["DisplayName"], customer["PrimaryEmailAddr"]["Address"]) == ("Mary O'Brien", "mary@example.com")
    (pay,) = live(rig, "Payment")
    assert D(str(pay["TotalAmt"])) == D("500.00") and pay["CustomerRef"]["value"] == customer["Id"]
    assert pay["PaymentRefNum"] == "ref-p1" and "CRM payment p1" in pay["PrivateNote"]
    assert live(rig, "Invoice") == []  # R3
    assert rig.connection().settings.deposit_account.is_set  # saved: no look-up next time

    rig.clear_log()
    other = Opportunity("o2", "1002", Customer("c2", "Tom", "Jones", email="tom@example.com"))
    core.succeed(core.service.sync_payment(core.principal, other, payment("p2", "100.00")))
    steady = calls(rig, "deposit for a new customer (settings known)", 3)
    assert steady < first


def test_deposit_for_a_linked_customer(core: CoreRig, rig: QboRig) -> None:
    warm_up(core)
    existing = rig.seed(
        "Customer", {"DisplayName": "Mary O'Brien", "PrimaryEmailAddr": {"Address": "mary@example.com"}}
    )
    rig.clear_log()
    core.succeed(core.service.sync_payment(core.principal, OPP, payment("p1", "200.00")))
    calls(rig, "deposit for a customer already in QuickBooks (matched, LINKED)", 2)
    assert status(core, EntityType.CUSTOMER, "c1").quickbooks_id == existing["Id"]

    rig.clear_log()
    core.succeed(core.service.sync_payment(core.principal, OPP, payment("p2", "300.00")))
    calls(rig, "deposit for a customer linked by an earlier sync", 1)
    assert len(rig.records("Customer")) == 2  # the warm-up's and Mary's: none created


def test_deposit_with_two_refunds(core: CoreRig, rig: QboRig) -> None:
    warm_up(core)
    rig.clear_log()
    deposit = payment("p1", "500.00", refund("r1", "50.00"), refund("r2", "25.00"))
    core.succeed(core.service.sync_payment(core.principal, OPP, deposit))
    calls(rig, "deposit with two refunds (new customer)", 5)
    expenses = live(rig, "Purchase")
    assert sorted(D(str(e["TotalAmt"])) for e in expenses) == [D("25.00"), D("50.00")]
    customer_id = status(core, EntityType.CUSTOMER, "c1").quickbooks_id
    for expense in expenses:
        assert expense["PaymentType"] == "Cash" and expense["EntityRef"] == {
            "value": customer_id,
            "name": "Mary O'Brien",
            "type": "Customer",
        }
        (line,) = expense["Line"]
        ar = rig.connection().settings.accounts_receivable_account.id
        assert line["AccountBasedExpenseLineDetail"]["AccountRef"]["value"] == ar
    (pay,) = [p for p in live(rig, "Payment") if p["CustomerRef"]["value"] == customer_id]
    assert links(pay) == {("Expense", e["Id"], D(str(e["TotalAmt"]))) for e in expenses}
    assert D(str(pay["UnappliedAmt"])) == D("425.00")


def test_close_out_with_two_payments_then_a_refund_after_close_out(core: CoreRig, rig: QboRig) -> None:
    warm_up(core)
    first, second = payment("p1", "200.00"), payment("p2", "300.00")
    core.succeed(core.service.sync_payment(core.principal, OPP, first))
    core.succeed(core.service.sync_payment(core.principal, OPP, second))
    rig.clear_log()
    core.succeed(core.service.close_out_job(core.principal, OPP, MOVE, [first, second]))
    calls(rig, "close-out with two payments (both synced before)", 4)
    (invoice,) = live(rig, "Invoice")
    assert invoice["DocNumber"] == "INV-1001" and D(str(invoice["Balance"])) == D("0.00")
    payments = {p["Id"]: p for p in live(rig, "Payment")}
    applied = {pid: links(p) for pid, p in payments.items() if links(p)}
    # Oldest first: p1's 200 then 150 of p2's 300.
    assert sorted(amount for (_, _, amount) in set().union(*applied.values())) == [D("150.00"), D("200.00")]

    # R5: a refund recorded after close-out shrinks its payment's application; the invoice's balance grows.
    refunded = payment("p2", "300.00", refund("r1", "200.00"))
    rig.clear_log()
    core.succeed(core.service.sync_payment(core.principal, OPP, refunded))
    calls(rig, "refund after close-out", 3)
    (invoice,) = live(rig, "Invoice")
    assert D(str(invoice["Balance"])) == D("50.00")
    p2 = payments[status(core, EntityType.PAYMENT, "p2").quickbooks_id]
    p2 = next(p for p in live(rig, "Payment") if p["Id"] == p2["Id"])
    assert sorted(amount for (_, _, amount) in links(p2)) == [D("100.00"), D("200.00")]
    assert len(live(rig, "Purchase")) == 1


def test_close_out_with_two_payments_not_synced_before(core: CoreRig, rig: QboRig) -> None:
    warm_up(core)
    first, second = payment("p1", "200.00"), payment("p2", "300.00", refund("r1", "20.00"))
    rig.clear_log()
    core.succeed(core.service.close_out_job(core.principal, OPP, MOVE, [first, second]))
    calls(rig, "close-out with two payments (new customer, payments and refund not synced before)", 10)
    (invoice,) = live(rig, "Invoice")
    assert D(str(invoice["Balance"])) == D("0.00")
    assert len(live(rig, "Payment")) == 3 and len(live(rig, "Purchase")) == 1  # warm-up's payment + 2


def test_resync_after_edit_updates_in_place(core: CoreRig, rig: QboRig) -> None:
    core.succeed(core.service.sync_payment(core.principal, OPP, payment("p1", "500.00", refund("r1", "50.00"))))
    edited = payment("p1", "450.00", refund("r1", "60.00"), refund("r2", "10.00"))
    rig.clear_log()
    core.succeed(core.service.sync_payment(core.principal, OPP, edited))
    calls(rig, "resync after edit (payment and refund changed, one refund added)", 3)
    (pay,) = live(rig, "Payment")
    assert D(str(pay["TotalAmt"])) == D("450.00") and pay["SyncToken"] != "0"
    assert sorted(D(str(e["TotalAmt"])) for e in live(rig, "Purchase")) == [D("10.00"), D("60.00")]
    assert D(str(pay["UnappliedAmt"])) == D("380.00")
    assert status(core, EntityType.PAYMENT, "p1").resync_available


def test_resync_lowering_a_linked_refund(core: CoreRig, rig: QboRig) -> None:
    core.succeed(core.service.sync_payment(core.principal, OPP, payment("p1", "500.00", refund("r1", "50.00"))))
    core.succeed(core.service.sync_payment(core.principal, OPP, payment("p1", "500.00", refund("r1", "40.00"))))
    (expense,) = live(rig, "Purchase")
    assert D(str(expense["TotalAmt"])) == D("40.00")


def test_a_name_clash_gets_a_suffix(core: CoreRig, rig: QboRig) -> None:
    rig.seed("Vendor", {"DisplayName": "Mary O'Brien"})
    core.succeed(core.service.sync_payment(core.principal, OPP, payment()))
    link = status(core, EntityType.CUSTOMER, "c1").quickbooks_id
    (customer,) = [c for c in rig.records("Customer") if c["Id"] == link]
    assert customer["DisplayName"] == "Mary O'Brien - 2"
    assert (customer["GivenName"], customer["FamilyName"]) == ("Mary", "O'Brien")


def test_more_than_a_hundred_customers_with_the_same_name_prefix(core: CoreRig, rig: QboRig) -> None:
    # No email: the customer is looked up by name prefix, and the match is past the first 100 rows.
    nameless = Opportunity("o9", "1009", Customer("c9", "Sam", "Lee"))
    for n in range(130):
        rig.seed("Customer", {"DisplayName": f"Sam Lee Jr {n}"})
    match = rig.seed("Customer", {"DisplayName": "Sam Lee"})
    rig.clear_log()
    core.succeed(core.service.sync_payment(core.principal, nameless, payment("p9", "75.00")))
    assert status(core, EntityType.CUSTOMER, "c9").quickbooks_id == match["Id"]
    queries = [e for e in rig.log() if e["operation"] == "query"]
    assert len(queries) >= 2  # paged
    assert len(rig.records("Customer")) == 131


def test_a_record_deleted_in_quickbooks_is_recreated_on_resync(core: CoreRig, rig: QboRig) -> None:
    deposit = payment("p1", "500.00", refund("r1", "50.00"))
    core.succeed(core.service.sync_payment(core.principal, OPP, deposit))
    old_payment = status(core, EntityType.PAYMENT, "p1").quickbooks_id
    old_refund = status(core, EntityType.REFUND, "r1").quickbooks_id
    rig.act("Payment", old_payment, "delete")
    rig.act("Purchase", old_refund, "delete")
    core.succeed(core.service.sync_payment(core.principal, OPP, deposit))
    (pay,) = live(rig, "Payment")
    (expense,) = live(rig, "Purchase")
    assert pay["Id"] != old_payment and expense["Id"] != old_refund
    assert status(core, EntityType.PAYMENT, "p1").quickbooks_id == pay["Id"]
    assert links(pay) == {("Expense", expense["Id"], D("50.00"))}
    assert status(core, EntityType.REFUND, "r1").state is SyncState.SYNCED


# --- R1: the linked customer made inactive in QuickBooks ------------------------------------------------
#
# Every combination of what an opportunity can have in QuickBooks when its customer is found inactive:
# deposits with no, partial and whole refunds, payments applied to invoices, refunds after close-out, and a
# second opportunity of the same customer. Then a sync of each kind. QBO (the emulator) refuses to move a
# record a payment links, and a payment linking another customer's records.

OPP_2 = Opportunity("o2", "1002", MARY)
# Intuit's 10 requests a second would make these 32 cases take 80 s; the limiter has its own tests.
UNTHROTTLED = RateLimits(per_minute=100_000, per_second=1_000, in_flight=10)
MOVE_2 = Job("j2", "INV-1002", date(2026, 4, 5), (InvoiceLine("Packing", D("1"), D("80.00"), D("80.00")),))
HISTORIES: dict[str, list[tuple[str, Opportunity, Any]]] = {
    "deposit": [("pay", OPP, payment("p1", "500.00"))],
    "deposit with a refund": [("pay", OPP, payment("p1", "500.00", refund("r1", "50.00")))],
    "fully refunded deposit": [("pay", OPP, payment("p1", "500.00", refund("r1", "200.00"), refund("r2", "300.00")))],
    "fully refunded check": [("pay", OPP, payment("p1", "120.00", refund("r1", "120.00"), method=PaymentMethod.CHECK))],
    "closed out, paid": [("close", OPP, (MOVE, [payment("p1", "500.00"), payment("p2", "40.00")]))],
    "closed out, then a refund": [
        ("close", OPP, (MOVE, [payment("p1", "300.00"), payment("p2", "100.00")])),
        ("pay", OPP, payment("p2", "100.00", refund("r1", "60.00"))),
    ],
    "fully refunded deposit, then closed out": [
        ("pay", OPP, payment("p1", "200.00", refund("r1", "200.00"))),
        ("close", OPP, (MOVE, [payment("p1", "200.00", refund("r1", "200.00")), payment("p2", "400.00")])),
    ],
    "two opportunities": [
        ("close", OPP, (MOVE, [payment("p1", "500.00", refund("r1", "25.00"))])),
        ("close", OPP_2, (MOVE_2, [payment("p2", "50.00", refund("r2", "50.00")), payment("p3", "60.00")])),
    ],
}


def _send(core: CoreRig, kind: str, opportunity: Opportunity, body: Any) -> None:
    if kind == "pay":
        core.succeed(core.service.sync_payment(core.principal, opportunity, body))
    elif kind == "close":
        core.succeed(core.service.close_out_job(core.principal, opportunity, *body))
    else:
        core.succeed(core.service.sync_invoice(core.principal, opportunity, *body))


def _then(history: list[tuple[str, Opportunity, Any]], how: str) -> tuple[str, Opportunity, Any]:
    """The sync that finds the customer inactive: the last payment again (perhaps with a new refund), the
    last invoice again, or a new payment."""
    kind, opportunity, body = history[-1]
    last_payment = body if kind == "pay" else body[1][-1]
    if how == "resync payment":
        return "pay", opportunity, last_payment
    if how == "refund now":
        room = last_payment.net_amount
        more = refund("r9", str(min(room, D("10.00")))) if room > 0 else None
        return (
            "pay",
            opportunity,
            Payment(
                last_payment.payment_id,
                last_payment.amount,
                last_payment.method,
                T,
                last_payment.reference,
                (*last_payment.refunds, *([more] if more else [])),
            ),
        )
    if how == "new payment":
        return "pay", opportunity, payment("p8", "70.00")
    assert how == "sync invoice"
    if kind == "close":
        return "invoice", opportunity, body
    return "close", opportunity, (MOVE, [last_payment])


@pytest.mark.parametrize("how", ["resync payment", "refund now", "new payment", "sync invoice"])
@pytest.mark.parametrize("story", sorted(HISTORIES))
def test_an_inactive_customer_is_replaced_and_everything_moves(emulator: EmulatorServer, story: str, how: str) -> None:
    rig = QboRig.connect(emulator, limits=UNTHROTTLED)
    core = CoreRig(rig)
    for kind, opportunity, body in HISTORIES[story]:
        _send(core, kind, opportunity, body)
    first = status(core, EntityType.CUSTOMER, "c1").quickbooks_id
    before = {entity: {r["Id"]: r for r in live(rig, entity)} for entity in ("Payment", "Purchase", "Invoice")}
    rig.act("Customer", first, "deactivate")

    _send(core, *_then(HISTORIES[story], how))

    second = status(core, EntityType.CUSTOMER, "c1").quickbooks_id
    assert second != first
    state = rig.state()
    voided = set(state["voided"])
    now = {
        entity: [r for r in state["entities"][entity] if f"{entity}/{r['Id']}" not in voided]
        for entity in ("Payment", "Purchase", "Invoice")
    }
    (successor,) = [c for c in state["entities"]["Customer"] if c["Id"] == second]
    assert successor["Active"] is True and successor["DisplayName"] == "Mary O'Brien - 2"
    for entity, owner in (("Payment", "CustomerRef"), ("Purchase", "EntityRef"), ("Invoice", "CustomerRef")):
        assert all(r[owner]["value"] == second for r in now[entity]), (entity, now[entity])
        # Moved in place: every record that existed is still there under the same Id.
        assert set(before[entity]) <= {r["Id"] for r in now[entity]}
    # R4: every refund linked once from its payment, for its whole amount.
    expenses = {r["Id"]: D(str(r["TotalAmt"])) for r in now["Purchase"]}
    linked = [(txn_id, amount) for p in now["Payment"] for (kind, txn_id, amount) in links(p) if kind != "Invoice"]
    assert sorted(linked) == sorted(expenses.items())
    # R5/R10: nothing over-applied, balances follow, and the old customer is left owing nothing.
    assert all(D(str(p["UnappliedAmt"])) >= 0 for p in now["Payment"])
    for invoice in now["Invoice"]:
        paid = sum((a for p in now["Payment"] for (k, i, a) in links(p) if k == "Invoice" and i == invoice["Id"]), D(0))
        assert D(str(invoice["Balance"])) == D(str(invoice["TotalAmt"])) - paid >= 0
    assert D(str(state["balances"]["customers"][first])) == D("0.00")


class _BeforeCall:
    """The adapter, with `action` run once just before its (n+1)th call: someone in QuickBooks mid-job."""

    # active_customers: a resync of an unchanged payment hears of an inactive customer by reading it.
    CALLS = ("find_customers", "create_customer", "create", "update", "find_by_marker", "active_customers")

    def __init__(self, systems: Any, n: int, action: Any) -> None:
        self._systems, self._left, self._action = systems, n, action

    def for_tenant(self, tenant_id: str, connection: Any = None, *, branch_id: str = "") -> Any:
        outer, inner = self, self._systems.for_tenant(tenant_id, connection, branch_id=branch_id)

        class Counting:
            def __getattr__(self, name: str) -> Any:
                method = getattr(inner, name)
                if name not in _BeforeCall.CALLS:
                    return method

                def call(*args: Any, **kwargs: Any) -> Any:
                    if outer._left == 0:
                        outer._action()
                    outer._left -= 1
                    return method(*args, **kwargs)

                return call

        return Counting()


@pytest.mark.parametrize(
    # The resync of an unchanged payment makes two such calls: the customer read, the one write left.
    ("sync", "n"),
    [("resync", 0), ("resync", 1), ("new payment", 0), ("new payment", 1)],
)
def test_a_customer_made_inactive_mid_job_is_replaced(emulator: EmulatorServer, sync: str, n: int) -> None:
    """R1 against QBO's rules: the customer is made inactive in QuickBooks just before the sync's nth call
    to it (each of its writes in turn); the job still succeeds, with everything of the customer moved."""
    rig = QboRig.connect(emulator, limits=UNTHROTTLED)
    first = {"id": ""}
    wrapper = _BeforeCall(rig.systems, 10**6, lambda: rig.act("Customer", first["id"], "deactivate"))
    core = CoreRig(rig, wrapper)
    for kind, opportunity, body in HISTORIES["two opportunities"]:
        _send(core, kind, opportunity, body)
    first["id"] = status(core, EntityType.CUSTOMER, "c1").quickbooks_id
    wrapper._left = n
    if sync == "resync":
        resynced = payment("p1", "500.00", refund("r1", "25.00"), refund("r7", "15.00"))
        core.succeed(core.service.sync_payment(core.principal, OPP, resynced))
    else:
        core.succeed(core.service.sync_payment(core.principal, OPP_2, payment("p9", "100.00", refund("r7", "15.00"))))
    assert wrapper._left < 0, "the customer was made inactive during the job"
    link = status(core, EntityType.CUSTOMER, "c1").quickbooks_id
    state = rig.state()
    customers = {c["Id"]: c for c in state["entities"]["Customer"]}
    assert customers[first["id"]]["Active"] is False and customers[link]["Active"] is True
    owners = {r["CustomerRef"]["value"] for e in ("Payment", "Invoice") for r in state["entities"][e]}
    owners |= {r["EntityRef"]["value"] for r in state["entities"]["Purchase"]}
    assert owners == {link}
    expenses = {r["Id"]: D(str(r["TotalAmt"])) for r in state["entities"]["Purchase"]}
    linked = [(t, a) for p in state["entities"]["Payment"] for (k, t, a) in links(p) if k != "Invoice"]
    assert sorted(linked) == sorted(expenses.items()) and len(expenses) == 3
    for invoice in state["entities"]["Invoice"]:
        assert D(str(invoice["Balance"])) >= 0
