"""API key management in the core (SPEC.md section 12): expiry, revocation, last use recorded about once a
minute, and failed authentications logged by key id and slowed per key id and address."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from core.auth import INVALID_KEY, LAST_USE_PRECISION, PRINCIPAL_CACHE_TTL, ApiKeys, presented_key_id
from core.auth_throttle import FailedAuthentications, ThrottlePolicy
from core.domain import Permission, Principal
from core.errors import NotFoundError, TooManyFailedAuthenticationsError, UnauthenticatedError, ValidationError
from tests.unit.support import CountingIds, ManualClock

READ = frozenset({Permission.READ})
POLICY = ThrottlePolicy(
    free_failures=3,
    first_delay=timedelta(seconds=10),
    max_delay=timedelta(seconds=60),
    forget_after=timedelta(minutes=5),
)
PEER = "ipv4:10.0.0.7"
OTHER_PEER = "ipv4:10.0.0.8"


class Recorder(InMemoryUnitOfWorkFactory):
    """Counts the units of work that commit: how many writes authentication costs."""

    def __init__(self) -> None:
        super().__init__()
        self.commits = 0

    def __call__(self):  # type: ignore[no-untyped-def]
        uow = super().__call__()
        commit = uow.commit

        def counted() -> None:
            self.commits += 1
            commit()

        uow.commit = counted  # type: ignore[method-assign]
        return uow


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def uow() -> Recorder:
    return Recorder()


@pytest.fixture
def keys(uow: Recorder, clock: ManualClock) -> ApiKeys:
    return ApiKeys(uow, clock, CountingIds(), FailedAuthentications(clock, POLICY))


def wrong_secret(key: str) -> str:
    return key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")


def test_an_expired_or_revoked_key_is_refused_in_the_words_used_for_an_unknown_one(
    keys: ApiKeys, clock: ManualClock
) -> None:
    expiring = keys.create("t1", READ, expire_time=clock.now() + timedelta(days=90))
    revoked = keys.create("t1", READ)
    assert keys.authenticate(expiring, PEER) == Principal("t1", READ)
    keys.revoke(presented_key_id(revoked))

    messages = []
    for key in (revoked, wrong_secret(expiring)):
        with pytest.raises(UnauthenticatedError) as refused:
            keys.authenticate(key, PEER)
        messages.append(refused.value.message)
    clock.advance(timedelta(days=90))  # the expiry itself: no longer usable
    with pytest.raises(UnauthenticatedError) as expired:
        keys.authenticate(expiring, PEER)
    assert messages + [expired.value.message] == [INVALID_KEY] * 3


def test_a_key_works_until_just_before_its_expiry(keys: ApiKeys, clock: ManualClock) -> None:
    key = keys.create("t1", READ, expire_time=clock.now() + timedelta(hours=1))
    clock.advance(timedelta(hours=1) - timedelta(microseconds=1))
    assert keys.authenticate(key, PEER).tenant_id == "t1"
    clock.advance(timedelta(microseconds=1))
    with pytest.raises(UnauthenticatedError):
        keys.authenticate(key, PEER)


def test_an_expiry_in_the_past_or_without_a_time_zone_names_the_field(keys: ApiKeys, clock: ManualClock) -> None:
    for bad in (clock.now(), clock.now() - timedelta(days=1), clock.now().replace(tzinfo=None) + timedelta(days=1)):
        with pytest.raises(ValidationError) as refused:
            keys.create("t1", READ, expire_time=bad)
        assert [v.field for v in refused.value.violations] == ["expires"]
    assert keys.list_keys() == []


def test_revoking_keeps_the_first_time_and_an_unknown_id_is_not_found(keys: ApiKeys, clock: ManualClock) -> None:
    key_id = presented_key_id(keys.create("t1", READ))
    first = keys.revoke(key_id)
    clock.advance(timedelta(hours=1))
    again = keys.revoke(key_id)
    assert first.revoke_time == again.revoke_time == clock.now() - timedelta(hours=1)
    with pytest.raises(NotFoundError):
        keys.revoke("no-such-key")


def test_list_keys_per_tenant_with_state_and_never_a_secret(keys: ApiKeys, clock: ManualClock) -> None:
    a = keys.create("t1", READ)
    clock.advance(timedelta(seconds=1))
    b = keys.create("t2", frozenset(Permission), expire_time=clock.now() + timedelta(days=1))
    clock.advance(timedelta(seconds=1))
    c = keys.create("t1", READ)
    keys.revoke(presented_key_id(c))
    assert [k.key_id for k in keys.list_keys()] == [presented_key_id(k) for k in (a, b, c)]
    t1 = keys.list_keys("t1")
    assert [(k.key_id, k.revoke_time is not None) for k in t1] == [
        (presented_key_id(a), False),
        (presented_key_id(c), True),
    ]
    secret_parts = {k.split("_", 2)[2] for k in (a, b, c)}
    assert not any(part in repr(k) for k in keys.list_keys() for part in secret_parts)


def test_last_use_is_written_at_most_once_a_minute(keys: ApiKeys, uow: Recorder, clock: ManualClock) -> None:
    key = keys.create("t1", READ)
    key_id = presented_key_id(key)
    created_at = clock.now()
    assert keys.list_keys()[0].last_use_time is None
    before = uow.commits
    for _ in range(50):  # fifty calls within the same minute: one write
        keys.authenticate(key, PEER)
        clock.advance(timedelta(seconds=1))
    assert uow.commits - before == 1
    assert keys.list_keys()[0].last_use_time == created_at
    clock.advance(LAST_USE_PRECISION)  # 110 s after the first use: recorded again
    keys.authenticate(key, PEER)
    assert uow.commits - before == 2
    assert keys.list_keys()[0].last_use_time == clock.now()
    assert keys.list_keys()[0].key_id == key_id


def test_failures_are_logged_by_key_id_and_address_never_the_secret(
    keys: ApiKeys, caplog: pytest.LogCaptureFixture
) -> None:
    key = keys.create("t1", READ)
    bad = wrong_secret(key)
    caplog.set_level(logging.WARNING, logger="core.auth")
    with pytest.raises(UnauthenticatedError):
        keys.authenticate(bad, PEER)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"failed authentication: key id {presented_key_id(key)} from {PEER} (1 in a row)"]
    assert caplog.records[0].key_id == presented_key_id(key)  # type: ignore[attr-defined]
    text = caplog.text
    assert bad.split("_", 2)[2] not in text and key.split("_", 2)[2] not in text


def test_a_mangled_key_logs_no_part_of_itself(keys: ApiKeys, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="core.auth")
    for mangled in ("qbs_s3cr3t-without-an-id", "qbs_<script>_x", "not-even-ours"):
        with pytest.raises(UnauthenticatedError):
            keys.authenticate(mangled, PEER)
    assert all("key id ? from" in r.getMessage() for r in caplog.records)
    assert "s3cr3t" not in caplog.text and "script" not in caplog.text and "not-even" not in caplog.text


def test_a_burst_of_failures_is_slowed_with_a_growing_delay(keys: ApiKeys, clock: ManualClock) -> None:
    key = keys.create("t1", READ)
    bad = wrong_secret(key)
    for _ in range(POLICY.free_failures):
        with pytest.raises(UnauthenticatedError) as plain:
            keys.authenticate(bad, PEER)
        assert not isinstance(plain.value, TooManyFailedAuthenticationsError)
    delays = []
    for _ in range(4):  # refused before the key is looked at, even the right one, until the delay passes
        with pytest.raises(TooManyFailedAuthenticationsError) as slowed:
            keys.authenticate(key, PEER)
        delays.append(slowed.value.retry_after_seconds)
        clock.advance(timedelta(seconds=slowed.value.retry_after_seconds))
        with pytest.raises(UnauthenticatedError):
            keys.authenticate(bad, PEER)  # one more guess is let through, and fails
    assert delays == [10, 20, 40, 60]  # doubling, capped at max_delay
    clock.advance(POLICY.max_delay)
    assert keys.authenticate(key, PEER).tenant_id == "t1"  # the right key, once the delay is over
    with pytest.raises(UnauthenticatedError) as fresh:
        keys.authenticate(bad, PEER)  # the success forgot the failures: plain again
    assert not isinstance(fresh.value, TooManyFailedAuthenticationsError)


def test_other_keys_and_other_addresses_are_unaffected(keys: ApiKeys) -> None:
    attacked = keys.create("t1", READ)
    other = keys.create("t1", READ)
    for _ in range(POLICY.free_failures):
        with pytest.raises(UnauthenticatedError):
            keys.authenticate(wrong_secret(attacked), PEER)
    with pytest.raises(TooManyFailedAuthenticationsError):
        keys.authenticate(attacked, PEER)
    assert keys.authenticate(other, PEER).tenant_id == "t1"  # another key id, same address
    assert keys.authenticate(attacked, OTHER_PEER).tenant_id == "t1"  # the same key id, another address


def test_an_unknown_key_id_is_slowed_like_a_known_one(keys: ApiKeys) -> None:
    """The answers for a key id that does not exist are the same: they do not reveal which ids exist."""
    invented = "qbs_0123456789abcdef_" + "x" * 43
    for _ in range(POLICY.free_failures):
        with pytest.raises(UnauthenticatedError) as refused:
            keys.authenticate(invented, PEER)
        assert refused.value.message == INVALID_KEY
    with pytest.raises(TooManyFailedAuthenticationsError):
        keys.authenticate(invented, PEER)


def test_failures_are_forgotten_after_a_quiet_spell(keys: ApiKeys, clock: ManualClock) -> None:
    bad = wrong_secret(keys.create("t1", READ))
    for _ in range(POLICY.free_failures - 1):
        with pytest.raises(UnauthenticatedError):
            keys.authenticate(bad, PEER)
    clock.advance(POLICY.forget_after)
    for _ in range(POLICY.free_failures - 1):  # counted afresh: still below the limit
        with pytest.raises(UnauthenticatedError) as refused:
            keys.authenticate(bad, PEER)
        assert not isinstance(refused.value, TooManyFailedAuthenticationsError)


def test_the_memory_of_failures_is_bounded(clock: ManualClock) -> None:
    failures = FailedAuthentications(clock, ThrottlePolicy(free_failures=1, max_tracked=100))
    for n in range(1000):
        failures.failed(f"id{n}", PEER)  # each pair refused from its first failure on
    assert failures.tracked() == 100
    failures.check("id0", PEER)  # the longest ago: forgotten, not refused
    with pytest.raises(TooManyFailedAuthenticationsError):
        failures.check("id999", PEER)


def test_a_session_signed_in_with_a_key_ends_when_the_key_is_revoked_or_expires(
    keys: ApiKeys, clock: ManualClock
) -> None:
    """principal_of: how the console checks its session's key again on each request, by id only."""
    admin = frozenset({Permission.ADMIN})
    expiring = keys.create("t1", admin, expire_time=clock.now() + timedelta(hours=1))
    revoked = keys.create("t2", admin)
    assert keys.principal_of(presented_key_id(expiring)) == Principal("t1", admin)
    assert keys.principal_of(presented_key_id(revoked)) == Principal("t2", admin)
    keys.revoke(presented_key_id(revoked))
    clock.advance(timedelta(hours=1))
    for key_id in (presented_key_id(expiring), presented_key_id(revoked), "never-issued"):
        with pytest.raises(UnauthenticatedError) as refused:
            keys.principal_of(key_id)
        assert refused.value.message == INVALID_KEY


# --- the principal cache (issue 12): a key looked up lately is not looked up again within PRINCIPAL_CACHE_TTL


class Lookups(InMemoryUnitOfWorkFactory):
    """Counts the units of work opened: how many lookups authentication costs."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = 0

    def __call__(self):  # type: ignore[no-untyped-def]
        self.opened += 1
        return super().__call__()


def test_a_key_authenticated_lately_is_not_looked_up_again_until_the_ttl_passes(clock: ManualClock) -> None:
    uow = Lookups()
    keys = ApiKeys(uow, clock, CountingIds())
    key = keys.create("t1", READ)
    keys.authenticate(key, PEER)  # looked up, and its first use recorded
    opened = uow.opened
    for _ in range(9):
        clock.advance(PRINCIPAL_CACHE_TTL / 10)
        assert keys.authenticate(key, PEER) == Principal("t1", READ)
    assert uow.opened == opened
    clock.advance(PRINCIPAL_CACHE_TTL / 10)  # the TTL is up: looked up again
    keys.authenticate(key, PEER)
    assert uow.opened == opened + 1


def test_a_key_revoked_in_this_process_is_refused_at_once_though_cached(keys: ApiKeys, clock: ManualClock) -> None:
    key = keys.create("t1", READ)
    assert keys.authenticate(key, PEER) == Principal("t1", READ)  # now cached
    keys.revoke(presented_key_id(key))
    with pytest.raises(UnauthenticatedError) as refused:
        keys.authenticate(key, PEER)
    assert refused.value.message == INVALID_KEY


def test_an_expired_key_is_refused_though_cached(keys: ApiKeys, clock: ManualClock) -> None:
    key = keys.create("t1", READ, expire_time=clock.now() + PRINCIPAL_CACHE_TTL / 2)
    assert keys.authenticate(key, PEER) == Principal("t1", READ)  # now cached, for longer than it lives
    clock.advance(PRINCIPAL_CACHE_TTL / 2)  # the expiry itself, well within the TTL
    with pytest.raises(UnauthenticatedError) as refused:
        keys.authenticate(key, PEER)
    assert refused.value.message == INVALID_KEY


def test_a_key_revoked_by_another_process_is_refused_once_the_ttl_passes(clock: ManualClock) -> None:
    """The staleness bound across processes: `qbsync keys revoke` runs in a process of its own."""
    shared = InMemoryUnitOfWorkFactory()
    api, cli = ApiKeys(shared, clock, CountingIds()), ApiKeys(shared, clock, CountingIds())
    key = api.create("t1", READ)
    api.authenticate(key, PEER)
    cli.revoke(presented_key_id(key))
    clock.advance(PRINCIPAL_CACHE_TTL)
    with pytest.raises(UnauthenticatedError):
        api.authenticate(key, PEER)


def test_unknown_keys_are_not_cached_so_a_key_created_elsewhere_works_at_once(clock: ManualClock) -> None:
    shared = InMemoryUnitOfWorkFactory()
    api, cli = ApiKeys(shared, clock, CountingIds()), ApiKeys(shared, clock, CountingIds())
    with pytest.raises(UnauthenticatedError):
        api.authenticate("qbs_nokey_secret", PEER)
    key = cli.create("t1", READ)
    assert api.authenticate(key, PEER) == Principal("t1", READ)


def test_the_cache_is_bounded(clock: ManualClock) -> None:
    uow = Lookups()
    keys = ApiKeys(uow, clock, CountingIds(), cache_size=2)
    first, *others = [keys.create("t1", READ) for _ in range(3)]
    for key in (first, *others):
        keys.authenticate(key, PEER)
    opened = uow.opened
    keys.authenticate(first, PEER)  # the least recently used, pushed out by the other two
    assert uow.opened == opened + 1
