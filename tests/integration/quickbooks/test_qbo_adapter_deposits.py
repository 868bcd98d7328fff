"""The deposit contract of SPEC §9, run against the in-memory fake and against the real adapter talking HTTP
to the emulator: a payout is one Deposit taking its payments out of Undeposited Funds, netting fees and
refunds; a payment is in one deposit only; a resync that drops a payment releases it; a deposit whose create
answer was lost is found by its marker, never written twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
from qbo_support import Company, EmulatedCompany, FakeCompany, QboRig

from adapters.quickbooks.emulator import run_emulator
from adapters.quickbooks.fake import FakeQuickBooks, Fault
from core.accounting import (
    DepositLine,
    DepositLineKind,
    DepositSpec,
    NewCustomer,
    PaymentSpec,
    QuickBooksRef,
    TxnKind,
)
from core.company_lists import ListKind
from core.domain import PaymentMethod
from core.errors import AccountingUnavailableError, BookkeepingError, LinkedRecordGoneError

D = Decimal
PAYMENT, FEE, REFUND = DepositLineKind.PAYMENT, DepositLineKind.FEE, DepositLineKind.REFUND


@pytest.fixture(params=["fake", "emulator"])
def company(request: pytest.FixtureRequest) -> Iterator[Company]:
    if request.param == "fake":
        yield FakeCompany(FakeQuickBooks())
        return
    server = run_emulator("127.0.0.1", 0)
    try:
        yield EmulatedCompany(QboRig.connect(server))
    finally:
        server.stop()


def customer(company: Company) -> str:
    return company.system.create_customer(NewCustomer("Pat Mover", "", "", "", "", "", "c1"), request_id="c-1").id


def paid(company: Company, customer_id: str, amount: str, n: int) -> str:
    spec = PaymentSpec(
        customer_id,
        D(amount),
        date(2026, 1, 2),
        PaymentMethod.CREDIT_CARD,
        f"ch_{n}",
        (),
        f"p{n} [m-p{n}]",
        f"[m-p{n}]",
    )
    return company.system.create(spec, request_id=f"p-{n}").id


def payout(*lines: DepositLine, marker: str = "[qbsync acme/payout/po_1]") -> DepositSpec:
    return DepositSpec(date(2026, 1, 5), tuple(lines), f"CRM payout po_1 {marker}", marker)


def fee_account(company: Company) -> None:
    """The account QBO Payments books its fees to, found by name as the processing-fee account's default."""
    company.add_list_entry(ListKind.ACCOUNT, "Merchant account fees", "Expense", "BankCharges")


def test_a_card_payout_nets_fees_and_a_refund_into_one_deposit(company: Company) -> None:
    fee_account(company)
    who = customer(company)
    first, second = paid(company, who, "300.10", 1), paid(company, who, "200.00", 2)
    assert company.undeposited_funds() == D("500.10")
    spec = payout(
        DepositLine(PAYMENT, D("300.10"), first),
        DepositLine(PAYMENT, D("200.00"), second),
        DepositLine(FEE, D("-14.50"), memo="Stripe fees"),
        DepositLine(REFUND, D("-50.00"), memo="refund re_1"),
    )
    made = company.system.create(spec, request_id="d-1")
    assert made.kind is TxnKind.DEPOSIT and made.sync_token == "0"
    assert made.total == D("435.60") == spec.total  # QuickBooks' TotalAmt, answered with the write
    assert company.deposit_figures(made.id) == (D("435.60"), [first, second])
    assert company.undeposited_funds() == 0
    assert company.live_count("Deposit") == 1
    assert company.system.link_for(TxnKind.DEPOSIT, made.id).startswith(
        f"https://app.sandbox.qbo.intuit.com/app/deposit?txnId={made.id}&deeplinkcompanyid="
    )


def test_a_cash_deposit_slip_is_one_payment_and_no_fees(company: Company) -> None:
    who = customer(company)
    cash = paid(company, who, "80.00", 1)
    made = company.system.create(payout(DepositLine(PAYMENT, D("80.00"), cash)), request_id="d-1")
    assert made.total == D("80.00")
    assert company.deposit_figures(made.id) == (D("80.00"), [cash])
    assert company.undeposited_funds() == 0


def test_an_update_that_drops_a_payment_releases_it(company: Company) -> None:
    who = customer(company)
    first, second = paid(company, who, "300.10", 1), paid(company, who, "200.00", 2)
    made = company.system.create(
        payout(DepositLine(PAYMENT, D("300.10"), first), DepositLine(PAYMENT, D("200.00"), second)), request_id="d-1"
    )
    updated = company.system.update(made, payout(DepositLine(PAYMENT, D("300.10"), first)), request_id="d-2")
    assert (updated.id, updated.sync_token, updated.total) == (made.id, "1", D("300.10"))
    assert company.deposit_figures(made.id) == (D("300.10"), [first])
    assert company.undeposited_funds() == D("200.00")
    # Released, the payment can go in another payout.
    other = company.system.create(
        payout(DepositLine(PAYMENT, D("200.00"), second), marker="[qbsync acme/payout/po_2]"), request_id="d-3"
    )
    assert company.deposit_figures(other.id) == (D("200.00"), [second])


def test_a_payment_in_two_deposits_is_refused_with_the_domain_error(company: Company) -> None:
    who = customer(company)
    payment = paid(company, who, "300.10", 1)
    company.system.create(payout(DepositLine(PAYMENT, D("300.10"), payment)), request_id="d-1")
    with pytest.raises(BookkeepingError) as refused:
        company.system.create(
            payout(DepositLine(PAYMENT, D("300.10"), payment), marker="[qbsync acme/payout/po_2]"), request_id="d-2"
        )
    assert refused.value.reason == "PAYMENT_ALREADY_DEPOSITED"
    assert payment in str(refused.value)
    assert company.live_count("Deposit") == 1


def test_a_deposit_linking_a_payment_gone_is_refused_as_linked_gone(company: Company) -> None:
    who = customer(company)
    payment = paid(company, who, "300.10", 1)
    company.delete(TxnKind.PAYMENT, payment)
    with pytest.raises(LinkedRecordGoneError):
        company.system.create(payout(DepositLine(PAYMENT, D("300.10"), payment)), request_id="d-1")
    assert company.live_count("Deposit") == 0


def test_a_deposited_payment_cannot_change_its_amount(company: Company) -> None:
    who = customer(company)
    spec = PaymentSpec(who, D("300.10"), date(2026, 1, 2), PaymentMethod.CASH, "", (), "p1 [m-p1]", "[m-p1]")
    payment = company.system.create(spec, request_id="p-1")
    company.system.create(payout(DepositLine(PAYMENT, D("300.10"), payment.id)), request_id="d-1")
    with pytest.raises(BookkeepingError):
        company.system.update(payment, PaymentSpec(**{**spec.__dict__, "amount": D("310.00")}), request_id="p-2")
    assert company.payment_amount(payment.id) == D("300.10")


def test_a_deposit_whose_create_answer_was_lost_is_adopted_by_its_marker(company: Company) -> None:
    """R7 for payouts: QuickBooks commits, the answer is lost, and QBO does not replay the requestid. The
    writer's look-up by marker finds the deposit (the adapter does it within the create, the fake leaves it
    to the writer): exactly one Deposit, and its ref as a create's answer has it."""
    who = customer(company)
    payment = paid(company, who, "300.10", 1)
    spec = payout(DepositLine(PAYMENT, D("300.10"), payment))
    if isinstance(company, EmulatedCompany):
        # Aimed at the write itself (settings are looked up first): the deposit commits and the connection
        # resets; with the requestids forgotten, only the marker can find it.
        company.rig.fault("commit_then_reset", entity="Deposit", operation="create")
    else:
        company.inject(Fault.COMMIT_THEN_LOSE)
    company.forget_request_ids()
    try:
        adopted: QuickBooksRef | None = company.system.create(spec, request_id="d-1")
    except AccountingUnavailableError as lost:
        assert lost.maybe_committed and isinstance(company, FakeCompany)
        adopted = None
    if isinstance(company, EmulatedCompany):
        creates = [e["outcome"] for e in company.rig.log() if e["entity"] == "Deposit" and e["operation"] == "create"]
        assert creates == ["reset"]  # sent once: the adapter found it by its marker instead of sending again
    found = company.system.find_by_marker(TxnKind.DEPOSIT, spec.marker, "")
    assert found is not None and found.kind is TxnKind.DEPOSIT
    if adopted is not None:
        assert (adopted.id, adopted.total) == (found.id, D("300.10"))
    assert company.live_count("Deposit") == 1
    assert company.system.find_by_marker(TxnKind.DEPOSIT, "[qbsync acme/payout/po_9]", "") is None
    # Adopted, a resync updates that deposit rather than making a second.
    updated = company.system.update(found, spec, request_id="d-2")
    assert updated.id == found.id and company.live_count("Deposit") == 1


def test_a_resync_may_keep_its_payments_but_not_take_another_deposits(company: Company) -> None:
    fee_account(company)
    who = customer(company)
    first, second = paid(company, who, "300.10", 1), paid(company, who, "200.00", 2)
    one = company.system.create(payout(DepositLine(PAYMENT, D("300.10"), first)), request_id="d-1")
    two = company.system.create(
        payout(DepositLine(PAYMENT, D("200.00"), second), marker="[qbsync acme/payout/po_2]"), request_id="d-2"
    )
    kept = company.system.update(
        one, payout(DepositLine(PAYMENT, D("300.10"), first), DepositLine(FEE, D("-1.00"))), request_id="d-3"
    )
    assert kept.total == D("299.10")
    with pytest.raises(BookkeepingError) as refused:
        company.system.update(
            two,
            payout(
                DepositLine(PAYMENT, D("200.00"), second),
                DepositLine(PAYMENT, D("300.10"), first),
                marker="[qbsync acme/payout/po_2]",
            ),
            request_id="d-4",
        )
    assert refused.value.reason == "PAYMENT_ALREADY_DEPOSITED"
    assert company.deposit_figures(two.id) == (D("200.00"), [second])
