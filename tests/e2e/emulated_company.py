"""Connecting a tenant to a company of the bundled emulator, as `qbsync connect` would after Intuit's OAuth."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
from injector import Injector

from adapters.persistence.sqlalchemy.migrate import migrate
from adapters.quickbooks.emulator import run_emulator
from adapters.quickbooks.emulator.server import EmulatorServer
from core.connection import QuickBooksConnection
from core.connections_service import ConnectionService
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime


@dataclass(frozen=True)
class ApiStack:
    """qbsync's API role over a SQLite file, wired as in production (QuickBooksModule over HTTP to `emulator`),
    with no workers: a story runs them itself (`injector.get(SyncWorker).drain()`)."""

    channel: grpc.Channel
    injector: Injector
    emulator: EmulatorServer


@contextmanager
def api_stack(data_dir: Path) -> Iterator[ApiStack]:
    database_url = f"sqlite:///{data_dir / 'qbsync.db'}"
    migrate(database_url)
    settings = replace(
        Settings.from_env({"QBSYNC_DATA_DIR": str(data_dir)}),
        database_url=database_url,
        listen="127.0.0.1:0",
        workers=0,
        grace_seconds=2,
        watch_poll_seconds=0.05,
    )
    emulator = run_emulator("127.0.0.1", 0)
    injector = bootstrap(settings=settings)
    runtime = Runtime(injector, role="api")
    port = runtime.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield ApiStack(channel, injector, emulator)
    finally:
        channel.close()
        runtime.stop(grace=1)
        emulator.stop()


def number_invoices_by_the_crm(emulator: EmulatorServer, realm_id: str) -> None:
    """The company's custom transaction numbers turned on (a new QBO company has them off and numbers invoices
    itself): qbsync then sends the CRM's job numbers as DocNumbers, as the stories that check them expect."""
    emulator.state.realms[str(realm_id)].set_tracking_preferences({"custom_txn_numbers": True})


def connect_to_emulated(
    connections: ConnectionService, tenant: str, company: dict[str, Any], emulator: EmulatorServer
) -> QuickBooksConnection:
    """`company`: what `EmulatorServer.create_realm` answered (its realm and the app's credentials)."""
    return connections.connect_with_tokens(
        tenant,
        str(company["realm_id"]),
        company["client_id"],
        company["client_secret"],
        company["refresh_token"],
        company["access_token"],
        environment=emulator.discovery_url,
        api_base_url=emulator.base_api_url,
    )
