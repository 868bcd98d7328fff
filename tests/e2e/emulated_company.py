"""Connecting a tenant to a company of the bundled emulator, as `qbsync connect` would after Intuit's OAuth."""

from __future__ import annotations

from typing import Any

from adapters.quickbooks.emulator.server import EmulatorServer
from core.connection import QuickBooksConnection
from core.connections_service import ConnectionService


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
