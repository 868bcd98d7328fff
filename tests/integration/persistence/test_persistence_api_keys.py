"""API key management in every persistence backend (SPEC.md section 12): expiry, revocation and last use
round-trip, lists are per tenant and ordered, a revocation keeps its first time, a last use only moves
forward, and neither change undoes the other when two units of work make them at once."""

from __future__ import annotations

import threading
from dataclasses import replace

from persistence_builders import Backend, at

from core.domain import ApiKey, Permission


def _key(key_id: str, tenant_id: str = "t1", minute: float = 0, **fields: object) -> ApiKey:
    key = ApiKey(key_id, tenant_id, f"hash-{key_id}", frozenset({Permission.READ}), at(minute))
    return replace(key, **fields)  # type: ignore[arg-type]


def _add(backend: Backend, *keys: ApiKey) -> None:
    with backend.uow() as uow:
        for key in keys:
            uow.tenants.ensure(key.tenant_id)
            uow.api_keys.add(key)
        uow.commit()


def test_expiry_revocation_and_last_use_round_trip(backend: Backend) -> None:
    key = _key("k1", expire_time=at(60 * 24 * 90), revoke_time=at(5), last_use_time=at(4))
    _add(backend, key, _key("k2", minute=1))
    with backend.uow() as uow:
        assert uow.api_keys.get("k1") == key
        assert uow.api_keys.get_by_hash("hash-k1") == key
        fresh = uow.api_keys.get("k2")
        assert fresh is not None
        assert (fresh.expire_time, fresh.revoke_time, fresh.last_use_time) == (None, None, None)
        assert uow.api_keys.get("k3") is None


def test_list_is_per_tenant_oldest_first_revoked_included(backend: Backend) -> None:
    _add(backend, _key("kb", "t1", 2), _key("ka", "t1", 2), _key("kc", "t2", 0), _key("k0", "t1", 1))
    with backend.uow() as uow:
        uow.api_keys.revoke("k0", at(3))
        uow.commit()
    with backend.uow() as uow:
        assert [k.key_id for k in uow.api_keys.list_keys("t1")] == ["k0", "ka", "kb"]
        assert [k.key_id for k in uow.api_keys.list_keys("t2")] == ["kc"]
        assert [k.key_id for k in uow.api_keys.list_keys()] == ["kc", "k0", "ka", "kb"]
        assert uow.api_keys.list_keys("t3") == []
        assert uow.api_keys.list_keys("t1")[0].revoke_time == at(3)


def test_a_revocation_keeps_its_first_time_and_an_unknown_id_changes_nothing(backend: Backend) -> None:
    _add(backend, _key("k1"))
    with backend.uow() as uow:
        uow.api_keys.revoke("k1", at(10))
        uow.api_keys.revoke("nope", at(10))
        uow.commit()
    with backend.uow() as uow:
        uow.api_keys.revoke("k1", at(20))
        uow.commit()
    with backend.uow() as uow:
        revoked = uow.api_keys.get("k1")
        assert revoked is not None and revoked.revoke_time == at(10)
        assert uow.api_keys.get("nope") is None
        assert [k.key_id for k in uow.api_keys.list_keys()] == ["k1"]


def test_a_last_use_only_moves_forward(backend: Backend) -> None:
    _add(backend, _key("k1"))
    for minute in (5, 3, 7):
        with backend.uow() as uow:
            uow.api_keys.record_use("k1", at(minute))
            uow.commit()
    with backend.uow() as uow:
        used = uow.api_keys.get("k1")
        assert used is not None and used.last_use_time == at(7)
        assert used.revoke_time is None


def test_an_uncommitted_revocation_is_discarded_and_seen_inside_its_unit_of_work(backend: Backend) -> None:
    _add(backend, _key("k1"))
    with backend.uow() as uow:
        uow.api_keys.revoke("k1", at(1))
        inside = uow.api_keys.get("k1")
        assert inside is not None and inside.revoke_time == at(1)
        uow.rollback()
    with backend.uow() as uow:
        after = uow.api_keys.get("k1")
        assert after is not None and after.revoke_time is None


def test_a_use_recorded_meanwhile_does_not_undo_a_revocation(backend: Backend) -> None:
    """An authentication records a use while an operator revokes the key in another unit of work that
    commits first (the fake) or waits for the row (SQL): the key ends revoked and the use is kept."""
    _add(backend, _key("k1"))
    revoked = threading.Event()

    def revoke() -> None:
        with backend.uow() as revoking:
            revoking.api_keys.revoke("k1", at(2))
            revoking.commit()
        revoked.set()

    with backend.uow() as using:
        using.api_keys.record_use("k1", at(3))
        operator = threading.Thread(target=revoke)
        operator.start()
        revoked.wait(0.5)  # the fake: committed by now; SQL: waiting for this unit of work's lock
        using.commit()
    operator.join(30)
    assert revoked.is_set()
    with backend.uow() as uow:
        key = uow.api_keys.get("k1")
        assert key is not None
        assert (key.revoke_time, key.last_use_time) == (at(2), at(3))
