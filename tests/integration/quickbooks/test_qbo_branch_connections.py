"""A tenant's connections are keyed by (tenant, branch) in the real adapter (SPEC §10): each has its own
system, token-refresh lock and look-ups, and the connection handed in says which one it is."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from qbo_support import TENANT, QboRig

from adapters.quickbooks.emulator import run_emulator
from adapters.quickbooks.qbo.lookups import lookup_lock_key
from adapters.quickbooks.qbo.tokens import refresh_lock_key


@pytest.fixture
def rig() -> Iterator[QboRig]:
    server = run_emulator("127.0.0.1", 0)
    try:
        yield QboRig.connect(server)
    finally:
        server.stop()


def test_each_branch_connection_gets_a_system_of_its_own(rig: QboRig) -> None:
    default = rig.connection()
    north = dataclasses.replace(default, branch_id="north")
    default_system = rig.systems.for_tenant(TENANT, default)
    north_system = rig.systems.for_tenant(TENANT, north)
    assert north_system is not default_system
    assert rig.systems.for_tenant(TENANT, north) is north_system  # cached per (tenant, branch)
    assert north_system.session.connection.branch_id == "north"
    assert rig.systems.for_tenant(TENANT, default) is default_system


def test_locks_are_per_connection_and_the_default_keeps_its_old_key() -> None:
    assert refresh_lock_key("acme") == "qbo-token-refresh/acme"
    assert lookup_lock_key("acme") == "lookups:acme"
    keys = {refresh_lock_key("acme", ""), refresh_lock_key("acme", "north"), refresh_lock_key("acme/north")}
    assert len(keys) == 3
    assert len({lookup_lock_key("acme", "north"), lookup_lock_key("acme"), lookup_lock_key("acmenorth")}) == 3
