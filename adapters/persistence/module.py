"""Injector modules that bind the `UnitOfWorkFactory` port to one persistence adapter.

The coordination ports (`RequestLimiter`, `CompanyLock`) are not bound here: how far they must reach is
the deployment's choice, made once by the composition root (`adapters.coordination`).

Neither module does I/O when it is built or imported: engines are created the first time the injector is
asked for something that needs them (and once only: each owns a connection pool).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from injector import Module, provider, singleton

from adapters.persistence.encryption import SecretBox
from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from core.ports import UnitOfWorkFactory


class InMemoryPersistenceModule(Module):
    """Everything in process memory: for tests and demos that need no database."""

    @singleton
    @provider
    def unit_of_work_factory(self) -> UnitOfWorkFactory:
        return InMemoryUnitOfWorkFactory()


class SqlAlchemyPersistenceModule(Module):
    """SQLite or PostgreSQL at `database_url`. The schema is not migrated here: that is `qbsync migrate`'s
    (or the composition root's) decision, made once, not on every injector.

    The QuickBooks secrets are encrypted with `encryption_keys` (the first encrypts, all decrypt), or,
    when none are given, with a key generated into `key_file` the first time a secret is stored.
    """

    def __init__(
        self,
        database_url: str,
        encryption_keys: Sequence[str] = (),
        key_file: Path = Path("var/secret.key"),
    ) -> None:
        self.database_url = database_url
        self._secrets = SecretBox(encryption_keys, key_file)  # lazy: reads no key until first used

    @singleton
    @provider
    def unit_of_work_factory(self) -> UnitOfWorkFactory:
        # Imported here so that choosing the in-memory module never imports SQLAlchemy.
        from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for

        return SqlAlchemyUnitOfWorkFactory(create_engine_for(self.database_url), self._secrets)
