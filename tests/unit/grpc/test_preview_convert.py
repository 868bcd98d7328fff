"""PreviewSync's answer as protobuf: a PlannedOperation's amount as Money, its fields as a Struct."""

from __future__ import annotations

from decimal import Decimal

from google.protobuf.json_format import MessageToDict

from adapters.grpc.convert import planned_operation_to_proto
from core.domain import EntityRef, EntityType
from core.preview import PlannedAction, PlannedOperation
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s


def test_an_update_carries_its_id_amount_and_fields() -> None:
    fields: dict[str, object] = {
        "Id": "42",
        "TotalAmt": "450.10",
        "Line": [{"Amount": "450.10", "LinkedTxn": {"TxnId": "preview-1", "TxnType": "Invoice"}}],
    }
    operation = PlannedOperation(
        EntityRef(EntityType.PAYMENT, "p1"), "Payment", PlannedAction.UPDATE, "42", Decimal("450.10"), fields
    )
    msg = planned_operation_to_proto(operation)
    assert (msg.entity.type, msg.entity.id) == (r.ENTITY_TYPE_PAYMENT, "p1")
    assert (msg.quickbooks_entity, msg.action, msg.quickbooks_id) == ("Payment", s.PLANNED_ACTION_UPDATE, "42")
    assert (msg.amount.units, msg.amount.nanos) == (450, 100_000_000)
    assert MessageToDict(msg.fields) == fields


def test_a_customer_has_no_amount() -> None:
    operation = PlannedOperation(
        EntityRef(EntityType.CUSTOMER, "c1"), "Customer", PlannedAction.CREATE, "", None, {"Id": "preview-1"}
    )
    msg = planned_operation_to_proto(operation)
    assert not msg.HasField("amount") and msg.action == s.PLANNED_ACTION_CREATE and msg.quickbooks_id == ""
