"""Rows stored before SPEC §8 (issue 9) still load: a job without tax, discounts, tip or surcharge, a line
that is not taxable, a payment without tip or fee — the domain's defaults, not a KeyError."""

from __future__ import annotations

import json
from decimal import Decimal

from persistence_builders import Backend, crm_job, payment
from sqlalchemy import text

from adapters.persistence.sqlalchemy import create_engine_for
from core.domain import Job, Payment

# The JSON the codec wrote before issue 9, key for key.
OLD_JOB = {
    "job_id": "J1",
    "number": "J-100",
    "service_date": "2025-02-28",
    "lines": [
        {"description": "Movers", "quantity": "3.5", "unit_price": "120.00", "amount": "420.00"},
        {"description": "Truck", "quantity": "1", "unit_price": "0.10", "amount": "0.10"},
    ],
}
OLD_PAYMENT = {
    "payment_id": "P1",
    "amount": "1234567.89",
    "method": "CHECK",
    "received_time": "2025-03-01T12:00:00.123456+00:00",
    "reference": "chk 42",
    "refunds": [],
}


def test_jobs_and_payments_stored_before_the_charges_load_with_none(sql_backend: Backend) -> None:
    with sql_backend.uow() as uow:
        uow.snapshots.save_job("t1", "O1", crm_job(), None)
        uow.snapshots.save_payment("t1", "O1", payment())
        uow.commit()
    assert sql_backend.url is not None
    engine = create_engine_for(sql_backend.url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE crm_jobs SET data = :data"), {"data": json.dumps(OLD_JOB)})
            connection.execute(text("UPDATE payments SET data = :data"), {"data": json.dumps(OLD_PAYMENT)})
    finally:
        engine.dispose()

    with sql_backend.uow() as uow:
        stored_job = uow.snapshots.get_job("t1", "J1")
        stored_payment = uow.snapshots.get_payment("t1", "P1")
    assert stored_job is not None and stored_payment is not None
    job: Job = stored_job.job
    assert job == crm_job()  # every new field at its default
    assert (job.tax, job.tax_rate_name, job.discounts, job.tip, job.surcharge) == (0, "", (), 0, 0)
    assert job.stated_total is None and not any(line.taxable for line in job.lines)
    assert job.total == Decimal("420.10")
    paid: Payment = stored_payment.payment
    assert paid == payment() and (paid.tip, paid.processing_fee) == (0, 0)
    assert isinstance(paid.tip, Decimal) and isinstance(job.tax, Decimal)
