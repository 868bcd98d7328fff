"""The emulator's admin powers the rules state machine relies on (admin.py, faults.py), each shown through the
real adapter: a customer made inactive after N API calls, requestid replay forgotten, and the "none" fault."""

from __future__ import annotations

import contextlib

from qbo_support import EmulatedCompany, QboRig

from core.accounting import NewCustomer
from core.errors import AccountingError

MARY = NewCustomer("Mary O'Brien", "Mary", "O'Brien", "", "mary@example.com", "", "")


def active_ids(rig: QboRig) -> list[str]:
    """One API call: the active customers QuickBooks finds for Mary's e-mail."""
    return [c.id for c in rig.system.find_customers("Mary O'Brien", "mary@example.com")]


def test_a_customer_is_made_inactive_just_before_the_call_after_the_nth(rig: QboRig) -> None:
    company = EmulatedCompany(rig)
    mary = company.add_customer("Mary O'Brien", "mary@example.com")
    company.deactivate_customer(mary, after_calls=2)
    assert active_ids(rig) == [mary]
    assert active_ids(rig) == [mary]
    assert active_ids(rig) == []  # the third call finds her inactive


def test_deactivating_or_activating_now_cancels_a_pending_deactivation(rig: QboRig) -> None:
    company = EmulatedCompany(rig)
    mary = company.add_customer("Mary O'Brien", "mary@example.com")
    company.deactivate_customer(mary, after_calls=0)
    rig.act("Customer", mary, "activate")
    assert [active_ids(rig) for _ in range(3)] == [[mary]] * 3


def test_forgotten_request_ids_are_not_replayed(rig: QboRig) -> None:
    company = EmulatedCompany(rig)
    first = rig.system.create_customer(MARY, request_id="req-1")
    assert rig.system.create_customer(MARY, request_id="req-1") == first  # replayed
    company.forget_request_ids()
    with contextlib.suppress(AccountingError):  # QBO now really runs it: the name is taken
        rig.system.create_customer(MARY, request_id="req-1")
    creates = [e for e in rig.log() if e["operation"] == "create"]
    assert [e["replayed"] for e in creates] == [False, True, False]
    assert len(rig.records("Customer")) == 1
    assert company.write_count() == 3


def test_a_none_fault_lets_one_call_through_and_aims_the_next_fault_at_the_call_after(rig: QboRig) -> None:
    rig.fault("none")
    rig.fault("http503")
    assert active_ids(rig) == []
    assert active_ids(rig) == []  # the adapter retried the 503
    assert [e["fault"] for e in rig.log()] == ["none", "http503", None]
