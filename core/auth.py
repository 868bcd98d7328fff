"""API keys: who is calling, for which tenant, with which permissions (SPEC.md sections 4 and 12).

A key reads `qbs_<key id>_<secret>`. Only a SHA-256 of the whole key is stored: the secret is 256 random
bits, so a fast hash is as safe as a slow one and keeps authentication cheap on every call. The key id is
not secret: operators list and revoke keys by it, and failed authentications are logged by it.

A revoked or expired key is refused exactly like an unknown one, in the same words, so that a caller
holding an old key learns nothing about which keys exist.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from core.auth_throttle import FailedAuthentications
from core.domain import ApiKey, Permission, Principal
from core.errors import FieldViolation, NotFoundError, UnauthenticatedError, ValidationError
from core.ports import Clock, IdSource, UnitOfWorkFactory

log = logging.getLogger(__name__)

KEY_PREFIX = "qbs_"
MALFORMED_KEY = "missing or malformed API key"
INVALID_KEY = "unknown, revoked or expired API key"  # one message for the three: never tell which

# A key's last use is recorded when the stored one is at least this old, not on every call: a write per
# call would turn every read RPC into a write transaction (on SQLite, queued behind the workers' writes for
# the one write lock; on PostgreSQL, a row update and its WAL per call on the hottest row). "Last used"
# answers "is anyone still using this key?", for which a minute is precise enough. The stored value itself
# is the memory, so every process agrees on it and each key costs at most about one write a minute.
LAST_USE_PRECISION = timedelta(minutes=1)

# Every RPC authenticates, and a database read per call cost more than a whole bare gRPC call (issue 12).
# So each process keeps the keys it looked up, by hash, for PRINCIPAL_CACHE_TTL. A revocation in this
# process forgets the key at once; one made elsewhere (`qbsync keys revoke` runs in a process of its own,
# another API process behind the balancer) is seen by this process within the TTL: that is the staleness
# bound across processes. Expiry needs no lookup - a cached key is judged against its expiry on every call -
# and unknown keys are never cached, so a key created anywhere works at once. The size bound keeps a caller
# from growing the cache: only keys that exist get in, least recently used leave first.
PRINCIPAL_CACHE_TTL = timedelta(seconds=10)
PRINCIPAL_CACHE_SIZE = 10_000

# What may be logged as the id part of a presented key: ids are short hex (uuid4) in production. Anything
# else is logged as "?" rather than echoed, so that a mangled key (say, a secret pasted without its id)
# never puts secret characters, or a forged log line, into the log.
_LOGGABLE_KEY_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


def hash_key(presented_key: str) -> str:
    return hashlib.sha256(presented_key.encode()).hexdigest()


def presented_key_id(presented_key: str) -> str:
    """The id part of a presented key when it has the shape `qbs_<id>_<secret>` and the id looks like
    one, else "" (the failures of such keys are counted per address alone)."""
    if not presented_key.startswith(KEY_PREFIX):
        return ""
    key_id, separator, secret = presented_key[len(KEY_PREFIX) :].partition("_")
    if not separator or not secret or not _LOGGABLE_KEY_ID.fullmatch(key_id):
        return ""
    return key_id


def parse_permissions(names: Iterable[str]) -> frozenset[Permission]:
    known = {p.value: p for p in Permission}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValidationError(
            [FieldViolation("permissions", f"unknown permission {n!r}; use {', '.join(known)}") for n in unknown]
        )
    return frozenset(known[n] for n in names)


@dataclass(frozen=True)
class _Cached:
    key: ApiKey
    read_at: datetime


class _KeyCache:
    """The keys looked up lately, by hash (PRINCIPAL_CACHE_TTL). Thread-safe: every gRPC thread shares it."""

    def __init__(self, clock: Clock, ttl: timedelta, size: int) -> None:
        self._clock = clock
        self._ttl = ttl
        self._size = size
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, _Cached] = OrderedDict()  # least recently used first

    def get(self, secret_hash: str) -> ApiKey | None:
        with self._lock:
            cached = self._keys.get(secret_hash)
            if cached is None:
                return None
            if not timedelta(0) <= self._clock.now() - cached.read_at < self._ttl:
                del self._keys[secret_hash]
                return None
            self._keys.move_to_end(secret_hash)
            return cached.key

    def put(self, key: ApiKey, read_at: datetime) -> None:
        with self._lock:
            self._keys[key.secret_hash] = _Cached(key, read_at)
            self._keys.move_to_end(key.secret_hash)
            while len(self._keys) > self._size:
                self._keys.popitem(last=False)

    def used(self, key: ApiKey, when: datetime) -> None:
        """The key's last use as just recorded, keeping when it was read (its TTL runs on)."""
        with self._lock:
            cached = self._keys.get(key.secret_hash)
            if cached is not None:
                self._keys[key.secret_hash] = replace(cached, key=replace(cached.key, last_use_time=when))

    def forget(self, key_id: str) -> None:
        with self._lock:
            for secret_hash in [h for h, cached in self._keys.items() if cached.key.key_id == key_id]:
                del self._keys[secret_hash]


class ApiKeys:
    """Issues, lists and revokes keys (operators, through the CLI) and authenticates them (every RPC)."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        ids: IdSource,
        failures: FailedAuthentications | None = None,
        *,
        cache_ttl: timedelta = PRINCIPAL_CACHE_TTL,
        cache_size: int = PRINCIPAL_CACHE_SIZE,
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._ids = ids
        self._failures = failures or FailedAuthentications(clock)
        self._cache = _KeyCache(clock, cache_ttl, cache_size)

    def create(self, tenant_id: str, permissions: frozenset[Permission], expire_time: datetime | None = None) -> str:
        """Creates the tenant if it is new and returns the key; only its hash is kept. `expire_time`, when
        given, must be in the future and name its time zone."""
        violations = []
        if not tenant_id.strip():
            violations.append(FieldViolation("tenant", "is required"))
        if expire_time is not None:
            if expire_time.tzinfo is None or expire_time.utcoffset() is None:
                violations.append(FieldViolation("expires", "must name its time zone (e.g. end in Z)"))
            elif expire_time <= self._clock.now():
                violations.append(FieldViolation("expires", f"{expire_time.isoformat()} is not in the future"))
        if violations:
            raise ValidationError(violations)
        key_id = self._ids.new_id()
        presented = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        with self._uow_factory() as uow:
            uow.tenants.ensure(tenant_id)
            uow.api_keys.add(
                ApiKey(
                    key_id=key_id,
                    tenant_id=tenant_id,
                    secret_hash=hash_key(presented),
                    permissions=permissions,
                    create_time=self._clock.now(),
                    expire_time=expire_time,
                )
            )
            uow.commit()
        return presented

    def list_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        """Every key (of one tenant, when named), revoked and expired ones included, oldest first."""
        with self._uow_factory.read_only() as uow:
            return uow.api_keys.list_keys(tenant_id)

    def revoke(self, key_id: str) -> ApiKey:
        """Revokes the key from now on and returns it; revoking it again changes nothing (it keeps its first
        revocation time). Raises NotFoundError for an unknown id. This process refuses the key from its next
        call on; other processes within PRINCIPAL_CACHE_TTL."""
        self._cache.forget(key_id)
        with self._uow_factory() as uow:
            if uow.api_keys.get(key_id) is None:
                raise NotFoundError(f"no API key with id {key_id!r}", metadata={"key_id": key_id})
            uow.api_keys.revoke(key_id, self._clock.now())
            uow.commit()
            revoked = uow.api_keys.get(key_id)
        # Again once committed: a call authenticated meanwhile may have cached the key as it was before.
        self._cache.forget(key_id)
        assert revoked is not None  # it was there, and keys are never deleted
        return revoked

    def authenticate(self, presented_key: str, peer: str = "") -> Principal:
        """The key's principal, or UnauthenticatedError (malformed, unknown, revoked or expired key).

        `peer` is the caller's address. A failure is logged by key id and address — never the key — and
        counted (core.auth_throttle): after a few in a row, the same key id from the same address is refused
        for a while with TooManyFailedAuthenticationsError, before the key is looked at."""
        key_id = presented_key_id(presented_key)
        self._failures.check(key_id, peer)
        try:
            principal = self._principal(presented_key)
        except UnauthenticatedError:
            in_a_row, refused_for = self._failures.failed(key_id, peer)
            logged_id = key_id or "?"
            log.warning(
                "failed authentication: key id %s from %s (%d in a row)",
                logged_id,
                peer or "?",
                in_a_row,
                extra={"key_id": logged_id, "peer": peer, "failures": in_a_row},
            )
            if refused_for:
                log.warning(
                    "refusing key id %s from %s for %.0f s after %d failed authentications",
                    logged_id,
                    peer or "?",
                    refused_for.total_seconds(),
                    in_a_row,
                    extra={"key_id": logged_id, "peer": peer, "failures": in_a_row},
                )
            raise
        self._failures.succeeded(key_id, peer)
        return principal

    def principal_of(self, key_id: str) -> Principal:
        """The principal of the key with this id while it is usable: how a session signed in with a key (the
        console's) is checked again on every request without keeping the secret. UnauthenticatedError, in
        the words of an unknown key, once it is revoked or expired (or was never issued)."""
        with self._uow_factory.read_only() as uow:
            key = uow.api_keys.get(key_id)
        if key is None or not key.is_usable(self._clock.now()):
            raise UnauthenticatedError(INVALID_KEY)
        return Principal(tenant_id=key.tenant_id, permissions=key.permissions)

    def _principal(self, presented_key: str) -> Principal:
        if not presented_key.startswith(KEY_PREFIX):
            raise UnauthenticatedError(MALFORMED_KEY)
        now = self._clock.now()
        secret_hash = hash_key(presented_key)
        key = self._cache.get(secret_hash)
        if key is None:
            with self._uow_factory.read_only() as uow:
                key = uow.api_keys.get_by_hash(secret_hash)
            if key is not None:
                self._cache.put(key, now)
        if key is None or not key.is_usable(now):
            raise UnauthenticatedError(INVALID_KEY)
        if key.last_use_time is None or now - key.last_use_time >= LAST_USE_PRECISION:
            # One conditional UPDATE (only ever moves the time forward), so it needs no read before it in
            # its transaction: the key read above may be a moment old without losing anyone's write.
            with self._uow_factory() as uow:
                uow.api_keys.record_use(key.key_id, now)
                uow.commit()
            self._cache.used(key, now)
        return Principal(tenant_id=key.tenant_id, permissions=key.permissions)
