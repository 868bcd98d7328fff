"""Fixtures: the bundled QBO emulator over real HTTP, a tenant connected to one of its realms, and the real
python-quickbooks adapter built on an in-memory unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from qbo_support import QboRig

from adapters.quickbooks.emulator import EmulatorServer, run_emulator


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    server = run_emulator("127.0.0.1", 0)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def rig(emulator: EmulatorServer) -> QboRig:
    return QboRig.connect(emulator)


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "emulator: runs the real QuickBooks adapter against the emulator")
