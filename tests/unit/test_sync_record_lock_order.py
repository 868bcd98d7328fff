"""Sync records written in one transaction are written in key order (core.domain.in_lock_order).

Two transactions that upsert overlapping sync records in different orders can deadlock on PostgreSQL (CI's
multi-process test once got UNAVAILABLE from exactly that); these pin the order, deterministically, with a
repository that records each save.
"""

from __future__ import annotations

import pytest

from adapters.persistence.memory import InMemorySyncRecordRepository, InMemoryUnitOfWorkFactory
from core.domain import EntityRef, EntityType, SyncRecord, in_lock_order
from core.outbox import mark_pending

TENANT = "t1"

REFS = [
    EntityRef(EntityType.REFUND, "r-b"),
    EntityRef(EntityType.PAYMENT, "p-2"),
    EntityRef(EntityType.REFUND, "r-a"),
    EntityRef(EntityType.PAYMENT, "p-1"),
]


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> list[EntityRef]:
    order: list[EntityRef] = []
    original = InMemorySyncRecordRepository.save

    def recording(self: InMemorySyncRecordRepository, record: SyncRecord) -> None:
        order.append(record.entity)
        original(self, record)

    monkeypatch.setattr(InMemorySyncRecordRepository, "save", recording)
    return order


def test_the_lock_order_is_the_key_order_whatever_the_order_given() -> None:
    expected = sorted(REFS, key=lambda ref: (ref.type.value, ref.id))
    assert in_lock_order(REFS) == expected
    assert in_lock_order(reversed(REFS)) == expected


def test_mark_pending_saves_in_key_order_and_answers_in_the_order_asked(saved: list[EntityRef]) -> None:
    with InMemoryUnitOfWorkFactory()() as uow:
        records = mark_pending(uow, TENANT, REFS)
        uow.commit()

    assert saved == in_lock_order(REFS)
    assert saved != REFS  # the order given is not already the key order: the test could fail
    assert [record.entity for record in records] == REFS
