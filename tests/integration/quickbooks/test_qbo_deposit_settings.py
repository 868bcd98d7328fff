"""SPEC section 9's settings and mapping through the real adapter against the emulator: what python-quickbooks
sends for a payout, each line on the account its setting names, the defaults (checking for the payout bank,
Accounts Receivable for refunds and chargebacks), and the settings a payout without such lines never needs."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from qbo_support import QboRig

from adapters.quickbooks.qbo.settings import SETTING_INVALID, settings_needed
from core.accounting import DepositLine, DepositLineKind, DepositSpec, NewCustomer, PaymentSpec, RefundSpec, TxnKind
from core.connection import ListRef, QuickBooksSettings
from core.domain import PaymentMethod
from core.errors import BookkeepingError

D = Decimal
CHECKING, UNDEPOSITED, RECEIVABLE = "1", "2", "3"  # the seeded chart's Ids


def _payment(rig: QboRig, amount: str = "300.10") -> str:
    who = rig.system.create_customer(NewCustomer("Pat Mover", "", "", "", "", "", ""), request_id="c1").id
    spec = PaymentSpec(who, D(amount), date(2026, 1, 2), PaymentMethod.CASH, "", (), "p1 [m-p1]", "[m-p1]")
    return rig.system.create(spec, request_id="p1").id


def _payout(*lines: DepositLine) -> DepositSpec:
    return DepositSpec(date(2026, 1, 5), lines, "CRM payout po_1 [m-po1]", "[m-po1]")


def _account(rig: QboRig, name: str, account_type: str, sub_type: str = "") -> str:
    return str(rig.seed("Account", {"Name": name, "AccountType": account_type, "AccountSubType": sub_type})["Id"])


def _sent_deposit(rig: QboRig) -> dict[str, Any]:
    [body] = [e["body"] for e in rig.log() if e["entity"] == "Deposit" and e["operation"] == "create"]
    return body  # type: ignore[no-any-return]


def test_each_line_books_to_the_account_its_setting_names(rig: QboRig) -> None:
    rig.settings(log_bodies=True)
    payment = _payment(rig)
    fees = _account(rig, "Merchant account fees", "Expense", "BankCharges")
    losses = _account(rig, "Chargeback losses", "Other Expense")
    reserve = _account(rig, "Processor reserve", "Other Current Asset")
    savings = _account(rig, "Payout savings", "Bank")
    rig.use_settings(
        payout_bank_account=ListRef(savings), chargeback_account=ListRef(losses), adjustment_account=ListRef(reserve)
    )
    spec = _payout(
        DepositLine(DepositLineKind.PAYMENT, D("300.10"), payment, "ch_1"),
        DepositLine(DepositLineKind.FEE, D("-9.00"), memo="fees"),
        DepositLine(DepositLineKind.CHARGEBACK, D("-20.00"), memo="dispute du_1"),
        DepositLine(DepositLineKind.REFUND, D("-30.00"), memo="refund re_1"),
        DepositLine(DepositLineKind.ADJUSTMENT, D("5.25"), memo="reserve released"),
    )
    made = rig.system.create(spec, request_id="d1")
    assert made.total == D("246.35")

    sent = _sent_deposit(rig)
    assert sent["DepositToAccountRef"] == {"value": savings}
    assert "TotalAmt" not in sent  # QuickBooks sums the lines; the core compares
    assert sent["Line"][0] == {
        "Amount": "300.10",
        "Description": "ch_1",
        "LinkedTxn": [{"TxnId": payment, "TxnType": "Payment", "TxnLineId": "0"}],
    }
    accounts = [line["DepositLineDetail"]["AccountRef"]["value"] for line in sent["Line"][1:]]
    assert accounts == [fees, losses, CHECKING, reserve]  # the refund: back to the refund bank account
    assert all(line["DetailType"] == "DepositLineDetail" for line in sent["Line"][1:])
    assert [line["Amount"] for line in sent["Line"]] == ["300.10", "-9.00", "-20.00", "-30.00", "5.25"]

    balances = rig.exact_state()["balances"]["accounts"]
    assert balances[savings] == D("246.35") and balances[reserve] == D("-5.25")


def test_the_defaults_are_checking_and_accounts_receivable(rig: QboRig) -> None:
    payment = _payment(rig)
    spec = _payout(
        DepositLine(DepositLineKind.PAYMENT, D("300.10"), payment),
        DepositLine(DepositLineKind.CHARGEBACK, D("-50.00")),
        DepositLine(DepositLineKind.REFUND, D("-20.00")),
    )
    made = rig.system.create(spec, request_id="d1")
    [deposit] = rig.records("Deposit")
    assert deposit["Id"] == made.id and deposit["DepositToAccountRef"]["value"] == CHECKING
    assert deposit["Line"][1]["DepositLineDetail"]["AccountRef"]["value"] == RECEIVABLE
    assert deposit["Line"][2]["DepositLineDetail"]["AccountRef"]["value"] == CHECKING  # the refund bank account
    settings = rig.connection().settings  # saved, so later payouts need no look-ups
    assert (settings.payout_bank_account.id, settings.chargeback_account.id) == (CHECKING, RECEIVABLE)
    assert not settings.adjustment_account.is_set and not settings.processing_fee_account.is_set


def test_an_adjustment_without_its_account_fails_naming_the_setting(rig: QboRig) -> None:
    payment = _payment(rig)
    spec = _payout(
        DepositLine(DepositLineKind.PAYMENT, D("300.10"), payment), DepositLine(DepositLineKind.ADJUSTMENT, D("-1.00"))
    )
    with pytest.raises(BookkeepingError) as failed:
        rig.system.create(spec, request_id="d1")
    assert failed.value.reason == SETTING_INVALID and "adjustment account" in str(failed.value)
    assert rig.records("Deposit") == []


def test_a_fee_without_a_fee_account_fails_naming_the_setting(rig: QboRig) -> None:
    payment = _payment(rig)
    spec = _payout(
        DepositLine(DepositLineKind.PAYMENT, D("300.10"), payment), DepositLine(DepositLineKind.FEE, D("-1.00"))
    )
    with pytest.raises(BookkeepingError) as failed:
        rig.system.create(spec, request_id="d1")
    assert failed.value.reason == SETTING_INVALID and "processing-fee account" in str(failed.value)


@pytest.mark.parametrize(
    ("setting", "account_type"),
    [("payout_bank_account", "Other Current Asset"), ("chargeback_account", "Income")],
)
def test_a_wrong_typed_setting_fails_naming_it(rig: QboRig, setting: str, account_type: str) -> None:
    payment = _payment(rig)
    wrong = _account(rig, "Wrong place", account_type)
    rig.use_settings(**{setting: ListRef(wrong)})
    spec = _payout(
        DepositLine(DepositLineKind.PAYMENT, D("300.10"), payment), DepositLine(DepositLineKind.CHARGEBACK, D("-5.00"))
    )
    with pytest.raises(BookkeepingError) as failed:
        rig.system.create(spec, request_id="d1")
    assert failed.value.reason == SETTING_INVALID and "Wrong place" in str(failed.value)


def test_a_payout_needs_only_the_settings_of_its_lines() -> None:
    cash = _payout(DepositLine(DepositLineKind.PAYMENT, D("80.00"), "7"))
    assert settings_needed(cash, None) == ("payout_bank_account",)
    card = _payout(
        DepositLine(DepositLineKind.PAYMENT, D("80.00"), "7"),
        DepositLine(DepositLineKind.FEE, D("-2.00")),
        DepositLine(DepositLineKind.REFUND, D("-3.00")),
        DepositLine(DepositLineKind.CHARGEBACK, D("-4.00")),
    )
    assert settings_needed(card, None) == (
        "payout_bank_account",
        "processing_fee_account",
        "refund_bank_account",
        "chargeback_account",
    )


def test_a_default_an_admins_stale_settings_save_dropped_is_still_sent_and_recorded_again(rig: QboRig) -> None:
    """UpdateSettings saves the whole settings it read; a worker may have recorded a default since. A payment
    whose look-up of payment methods then saves settings must still be written with the deposit account it
    checked, never a blank DepositToAccountRef (which QuickBooks refuses for good)."""
    rig.settings(log_bodies=True)
    system = rig.system  # one session throughout, as one worker's
    who = system.create_customer(NewCustomer("Pat Mover", "", "", "", "", "", ""), request_id="c1").id
    refund = RefundSpec(who, D("5.00"), date(2026, 1, 2), TxnKind.EXPENSE, "refund", "r1 [m-r1]", "[m-r1]")
    system.create(refund, request_id="r1")  # resolves and records every §5 account, the deposit account too
    assert rig.connection().settings.deposit_account.is_set
    with rig.uow_factory() as uow:  # the admin's save, of settings read before those defaults were recorded
        uow.connections.save_settings("acme", QuickBooksSettings(doc_number_prefix="M-"))
        uow.commit()
    payment = PaymentSpec(who, D("80.00"), date(2026, 1, 2), PaymentMethod.CASH, "", (), "p1 [m-p1]", "[m-p1]")
    system.create(payment, request_id="p1")  # looks up payment methods (unset) and saves them
    [sent] = [e["body"] for e in rig.log() if e["entity"] == "Payment" and e["operation"] == "create"]
    assert sent["DepositToAccountRef"]["value"] == UNDEPOSITED
    stored = rig.connection().settings
    assert (stored.deposit_account.id, stored.doc_number_prefix) == (UNDEPOSITED, "M-")
