"""The Connection's sales tax mode on the wire: each mode the core knows has its own enum value, and a mode
never read is UNSPECIFIED (never NONE, which would tell a client the company has no sales tax)."""

from __future__ import annotations

import pytest

from adapters.grpc.connection_convert import connection_to_proto
from core.company_tax import SalesTax
from core.connection import QuickBooksConnection
from qbsync.v1 import connection_service_pb2 as pb


def connection(sales_tax: SalesTax | None) -> QuickBooksConnection:
    return QuickBooksConnection("acme", "4620", "sandbox", "cid", "secret", "rt", sales_tax=sales_tax)


@pytest.mark.parametrize(
    ("mode", "shown"),
    [
        (SalesTax.AUTOMATED, pb.SALES_TAX_MODE_AUTOMATED),
        (SalesTax.MANUAL, pb.SALES_TAX_MODE_MANUAL),
        (SalesTax.NONE, pb.SALES_TAX_MODE_NONE),
        (None, pb.SALES_TAX_MODE_UNSPECIFIED),
    ],
)
def test_each_sales_tax_mode_is_shown_as_its_own_value(mode: SalesTax | None, shown: int) -> None:
    assert connection_to_proto(connection(mode)).sales_tax_mode == shown


def test_every_enum_value_but_unspecified_names_a_core_mode() -> None:
    names = {name for name in pb.SalesTaxMode.DESCRIPTOR.values_by_name if name != "SALES_TAX_MODE_UNSPECIFIED"}
    assert names == {f"SALES_TAX_MODE_{mode.value}" for mode in SalesTax}
