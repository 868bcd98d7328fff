"""A non-Python client: Node.js loads proto/ with @grpc/proto-loader and calls the running server."""

from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import google.type.money_pb2
import grpc_tools
import pytest

from tests.e2e.conftest import Server

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = Path(__file__).with_name("node")


@pytest.fixture(scope="module")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed for the polyglot client test; install Node.js to run it")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300, capture_output=True
        )
    return node


def test_node_client_syncs_a_payment_with_a_refund(server: Server, node: str) -> None:
    key = server.key("acme")[0][1].removeprefix("Bearer ")
    google_protos = Path(google.type.money_pb2.__file__).parents[2]  # the googleapis-common-protos wheel
    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    run = subprocess.run(
        [node, "client.js", server.target, key, str(ROOT / "proto"), str(google_protos), str(well_known)],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout.strip().splitlines()[-1])
    assert job["state"] == "STATE_SUCCEEDED", job
    assert {(res["entity"]["type"], res["action"]) for res in job["results"]} == {
        ("ENTITY_TYPE_CUSTOMER", "SYNC_ACTION_CREATED"),
        ("ENTITY_TYPE_REFUND", "SYNC_ACTION_CREATED"),
        ("ENTITY_TYPE_PAYMENT", "SYNC_ACTION_CREATED"),
    }
    qbo = server.companies.for_tenant("acme")
    [payment] = qbo.live("Payment")
    [refund] = qbo.live("Purchase")
    assert payment.total == Decimal("250.50") and refund.total == Decimal("20.00")
    assert refund.kind.value == "Check"  # a refund of a check is paid by check
    [customer] = qbo.customers.values()
    assert customer.display_name == "Zoë Łukasz"
