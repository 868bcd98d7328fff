"""The adapter sends python-quickbooks objects as the library's own `to_json` would, compactly (issue 12)."""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from quickbooks.objects.base import LinkedTxn
from quickbooks.objects.payment import Payment, PaymentLine

from adapters.quickbooks.qbo.mapping import blank, customer_object, record_json, ref
from core.accounting import NewCustomer

cents = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999999.99"), places=2)


@given(total=cents, lines=st.lists(cents, min_size=0, max_size=4), note=st.text(max_size=40))
def test_a_payment_is_the_json_the_library_writes(total: Decimal, lines: list[Decimal], note: str) -> None:
    payment = blank(Payment)
    payment.TotalAmt = total
    payment.CustomerRef = ref("58")
    payment.PrivateNote = note or None
    payment.Line = []
    for n, amount in enumerate(lines):
        line = blank(PaymentLine)
        line.Amount = amount
        linked = blank(LinkedTxn)
        linked.TxnId, linked.TxnType = str(100 + n), "Expense"
        line.LinkedTxn = [linked]
        payment.Line.append(line)
    sent = record_json(payment)
    assert json.loads(sent) == json.loads(payment.to_json())
    assert "\n" not in sent and json.loads(sent)["TotalAmt"] == str(total)  # money as a string, never a float


def test_a_customer_is_the_json_the_library_writes() -> None:
    customer = customer_object(NewCustomer("Ann Lee", "Ann", "Lee", "", "ann@example.com", "555-0100", "CRM c1"))
    assert json.loads(record_json(customer)) == json.loads(customer.to_json())
