"""API keys: who is calling, for which tenant, with which permissions (SPEC.md section 4).

A key reads `qbs_<key id>_<secret>`. Only a SHA-256 of the whole key is stored: the secret is 256 random
bits, so a fast hash is as safe as a slow one and keeps authentication cheap on every call.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from core.domain import ApiKey, Permission, Principal
from core.errors import FieldViolation, UnauthenticatedError, ValidationError
from core.ports import Clock, IdSource, UnitOfWorkFactory

KEY_PREFIX = "qbs_"


def hash_key(presented_key: str) -> str:
    return hashlib.sha256(presented_key.encode()).hexdigest()


def parse_permissions(names: Iterable[str]) -> frozenset[Permission]:
    known = {p.value: p for p in Permission}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValidationError(
            [FieldViolation("permissions", f"unknown permission {n!r}; use {', '.join(known)}") for n in unknown]
        )
    return frozenset(known[n] for n in names)


class ApiKeys:
    """Issues keys (operators, through the CLI) and authenticates them (every RPC)."""

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, ids: IdSource) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._ids = ids

    def create(self, tenant_id: str, permissions: frozenset[Permission]) -> str:
        """Creates the tenant if it is new and returns the key; only its hash is kept."""
        if not tenant_id.strip():
            raise ValidationError([FieldViolation("tenant", "is required")])
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
                )
            )
            uow.commit()
        return presented

    def authenticate(self, presented_key: str) -> Principal:
        if not presented_key.startswith(KEY_PREFIX):
            raise UnauthenticatedError("missing or malformed API key")
        with self._uow_factory() as uow:
            key = uow.api_keys.get_by_hash(hash_key(presented_key))
        if key is None:
            raise UnauthenticatedError("unknown API key")
        return Principal(tenant_id=key.tenant_id, permissions=key.permissions)
