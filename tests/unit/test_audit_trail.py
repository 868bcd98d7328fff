"""The audit trail the use cases write: one event per accepted request and per ending of a job run, under the
kind names the audit log has always stored."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from adapters.quickbooks.fake import Fault
from core.domain import (
    AuditKind,
    Customer,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    SyncJobKind,
    SyncJobState,
)
from tests.unit.support import Harness

T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
OPP = Opportunity("o1", "1001", Customer("c1", "Mary", "O'Brien", email="mary@example.com"))
MOVE = Job("j1", "INV-1001", date(2026, 4, 3), (InvoiceLine("Move", Decimal(1), Decimal(350), Decimal(350)),))
DEPOSIT = Payment("p1", Decimal(500), PaymentMethod.CASH, T)


def trail(h: Harness) -> list[str]:
    with h.uow_factory() as uow:
        return [event.kind.value for event in reversed(uow.audit.list("acme", limit=100))]


def test_every_accepted_kind_of_job_has_its_audit_kind() -> None:
    assert {AuditKind.accepted(kind).value for kind in SyncJobKind} == {f"{k.value}_ACCEPTED" for k in SyncJobKind}


def test_accepting_running_failing_and_retrying_are_audited() -> None:
    h = Harness()
    p = h.principal()
    h.service.sync_payment(p, OPP, DEPOSIT)
    h.worker.drain()
    h.service.close_out_job(p, OPP, MOVE, [DEPOSIT])
    h.worker.drain()
    h.service.sync_invoice(p, OPP, MOVE, [DEPOSIT])
    h.worker.drain()
    assert trail(h) == [
        "SYNC_PAYMENT_ACCEPTED",
        "SYNC_SUCCEEDED",
        "CLOSE_OUT_JOB_ACCEPTED",
        "SYNC_SUCCEEDED",
        "SYNC_INVOICE_ACCEPTED",
        "SYNC_SUCCEEDED",
    ]

    second = Payment("p2", Decimal(100), PaymentMethod.CASH, T)
    h.qbo().inject(*[Fault.UNAVAILABLE] * 8)
    job = h.service.sync_payment(p, OPP, second)
    h.worker.drain()
    assert h.service.get_job(p, job.name).state is SyncJobState.FAILED
    h.service.retry(p, job.name)
    h.worker.drain()
    assert trail(h)[6:] == ["SYNC_PAYMENT_ACCEPTED", *["SYNC_RETRY_SCHEDULED"] * 7, "SYNC_FAILED"] + [
        "RETRY_REQUESTED",
        "SYNC_SUCCEEDED",
    ]
