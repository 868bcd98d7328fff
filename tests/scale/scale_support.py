"""A qbsync deployment in miniature, for the scale tests and bench/throughput.py: one database, the QBO
emulator in its own process, API and worker processes started as an operator would (`qbsync serve
--role ...`), and tenants connected to emulator companies from the calling process.

Processes write their output to files, not pipes: a chatty worker must never block on a full pipe.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from google.type.date_pb2 import Date
from google.type.money_pb2 import Money
from sqlalchemy import text
from sqlalchemy.engine import URL

from adapters.persistence.encryption import generate_key
from adapters.persistence.sqlalchemy import create_engine_for, migrate
from adapters.persistence.sqlalchemy.engine import normalise_url
from core.auth import ApiKeys
from core.connections_service import ConnectionService
from core.domain import Permission
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.v1 import resources_pb2 as r

POSTGRES_ENV = "QBSYNC_TEST_DATABASE_URL"
QBSYNC = [sys.executable, "-m", "qbsync.cli"]
EMULATOR = [sys.executable, "-m", "adapters.quickbooks.emulator", "--port", "0"]

Json = dict[str, Any]


@contextmanager
def fresh_postgres_schema(base: str) -> Iterator[str]:
    """A new, migrated schema, first on the search_path of every connection made with the URL yielded
    (which every process can use as QBSYNC_DATABASE_URL); dropped afterwards."""
    base_url = normalise_url(base)
    schema = f"scale_{uuid.uuid4().hex[:12]}"
    admin = create_engine_for(base_url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        url: URL = base_url.update_query_dict({"options": f"-csearch_path={schema}"})
        migrate(url)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextmanager
def fresh_database(kind: str, postgres: str, workdir: Path) -> Iterator[str]:
    """A new, migrated database of `kind` ("sqlite": a file of its own in `workdir`; "postgresql": a fresh
    schema of the server at `postgres`, dropped afterwards); yields its URL, usable by every process."""
    if kind == "postgresql":
        with fresh_postgres_schema(postgres) as url:
            yield url
        return
    if kind != "sqlite":
        raise ValueError(f"unknown database kind {kind!r}: sqlite or postgresql")
    url = f"sqlite:///{workdir / f'{kind}-{uuid.uuid4().hex[:12]}.db'}"
    migrate(url)
    yield url


def rows(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows `sql` selects, straight from the database, on a connection of its own."""
    engine = create_engine_for(database_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql)).all()]
    finally:
        engine.dispose()


def job_states(database_url: str) -> Counter[str]:
    """How many sync jobs are in each state, straight from the database."""
    counted = rows(database_url, "SELECT state, count(*) FROM sync_jobs GROUP BY state")
    return Counter({str(state): int(count) for state, count in counted})


def running_claims(database_url: str) -> list[tuple[str, str]]:
    """(job_id, claimed_by) of every RUNNING job."""
    claims = rows(database_url, "SELECT job_id, claimed_by FROM sync_jobs WHERE state = 'RUNNING'")
    return [(str(job_id), str(claimed_by)) for job_id, claimed_by in claims]


def wait_until_settled(database_url: str, seconds: float, poll_seconds: float = 0.25) -> Counter[str]:
    """The jobs' states once none is PENDING or RUNNING (or `seconds` have passed)."""
    deadline = time.monotonic() + seconds
    while True:
        states = job_states(database_url)
        if states["PENDING"] + states["RUNNING"] == 0 or time.monotonic() > deadline:
            return states
        time.sleep(poll_seconds)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Emulator:
    """The QBO emulator in a process of its own, driven through its admin API."""

    def __init__(self, log_dir: Path) -> None:
        self._out = (log_dir / "emulator.log").open("w")
        self.process = subprocess.Popen(
            EMULATOR, stdout=subprocess.PIPE, stderr=self._out, text=True, env=dict(os.environ)
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if not first:
            raise RuntimeError(f"the emulator did not start; see {log_dir / 'emulator.log'}")
        info = json.loads(first)
        self.url: str = info["url"]
        self.base_api_url: str = info["base_api_url"]
        self.discovery_url: str = info["discovery_url"]

    def admin(self, method: str, path: str, body: Json | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}/_emulator/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read(), parse_float=Decimal)

    def create_realm(self, company_name: str) -> Json:
        return dict(self.admin("POST", "realms", {"company_name": company_name}))

    def state(self, realm_id: str) -> Json:
        return dict(self.admin("GET", f"realms/{realm_id}/state"))

    def live_records(self, realm_id: str, entity: str) -> list[Json]:
        """The records of one entity that are neither deleted nor voided."""
        state = self.state(realm_id)
        gone = set(state["deleted"]) | set(state["voided"])
        return [r for r in state["entities"].get(entity, []) if r["Id"] not in gone]

    def requests(self, realm_id: str = "") -> list[Json]:
        query = f"?realm_id={urllib.parse.quote(realm_id)}" if realm_id else ""
        return list(self.admin("GET", f"requests{query}")["requests"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # its wait() treats Ctrl-C as "stop"
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._out.close()


@dataclass
class Cluster:
    """qbsync processes sharing `database_url` and one encryption key."""

    database_url: str
    log_dir: Path
    encryption_key: str = field(default_factory=generate_key)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QBSYNC_")}
        env.update(
            QBSYNC_DATABASE_URL=self.database_url,
            QBSYNC_ENCRYPTION_KEY=self.encryption_key,
            QBSYNC_DATA_DIR=str(self.log_dir),
            QBSYNC_SHUTDOWN_GRACE_SECONDS="2",
            QBSYNC_WATCH_POLL_SECONDS="0.1",
        )
        env.update(extra)
        return env

    def settings(self) -> Settings:
        return Settings.from_env(self.env())

    def connect_tenant(self, tenant: str, emulator: Emulator) -> tuple[str, list[tuple[str, str]]]:
        """Connects `tenant` to a new emulator company from this process; returns the company's realm id
        and call metadata carrying a key of the tenant."""
        injector = bootstrap(settings=self.settings())
        company = emulator.create_realm(f"{tenant} Movers")
        injector.get(ConnectionService).connect_with_tokens(
            tenant,
            str(company["realm_id"]),
            str(company["client_id"]),
            str(company["client_secret"]),
            str(company["refresh_token"]),
            str(company["access_token"]),
            environment=emulator.discovery_url,
            api_base_url=emulator.base_api_url,
        )
        key = injector.get(ApiKeys).create(tenant, frozenset(Permission))
        return str(company["realm_id"]), [("authorization", f"Bearer {key}")]

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
        out = self.log_dir / f"{name}.out"
        with out.open("wb") as stdout, (self.log_dir / f"{name}.err").open("wb") as stderr:
            process = subprocess.Popen([*QBSYNC, "serve", *args], env=env, stdout=stdout, stderr=stderr)
        self.processes.append(process)
        return process, out

    def _first_line(self, process: subprocess.Popen[bytes], out: Path, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            content = out.read_text()
            if content.endswith("\n"):
                return content.splitlines()[0]
            if process.poll() is not None:
                errors = out.with_suffix(".err").read_text()
                raise RuntimeError(f"{out.stem} exited with {process.returncode}: {errors}")
            time.sleep(0.05)
        raise TimeoutError(f"{out.stem} did not start")

    def start_api(
        self, name: str = "api", *, role: str = "api", threads: int = 0
    ) -> tuple[subprocess.Popen[bytes], str]:
        """An API process on a free loopback port (with `threads` workers too for role "all"); returns it
        and its target (host:port)."""
        env = self.env(QBSYNC_WORKERS=str(threads))
        process, out = self._spawn(name, ["--role", role, "--listen", "127.0.0.1:0"], env)
        line = self._first_line(process, out)
        match = re.search(r"serving on (\S+:\d+)", line)
        if not match:
            raise RuntimeError(f"unexpected banner from {name}: {line}")
        return process, match.group(1)

    def start_worker(
        self, name: str, *, threads: int, lease_seconds: float = 120, wait: bool = True
    ) -> subprocess.Popen[bytes]:
        """A worker process (no API) with `threads` worker threads."""
        env = self.env(QBSYNC_ROLE="worker", QBSYNC_WORKERS=str(threads), QBSYNC_LEASE_SECONDS=str(lease_seconds))
        process, out = self._spawn(name, [], env)
        if wait:
            self._first_line(process, out)
        return process

    def stop_all(self) -> list[int | None]:
        """SIGTERM to every live process, then their exit codes (None for one that had to be killed)."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for process in self.processes:
            try:
                codes.append(process.wait(timeout=30))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                codes.append(None)
        return codes


@contextmanager
def running_emulator(log_dir: Path, settings: Json | None = None) -> Iterator[Emulator]:
    """The emulator in a process of its own, with `settings` (its admin API's `POST settings`) applied;
    stopped afterwards."""
    server = Emulator(log_dir)
    try:
        if settings is not None:
            server.admin("POST", "settings", settings)
        yield server
    finally:
        server.stop()


@contextmanager
def running_cluster(database_url: str, log_dir: Path) -> Iterator[Cluster]:
    """A deployment on `database_url`; every process it started is stopped afterwards."""
    deployment = Cluster(database_url, log_dir)
    try:
        yield deployment
    finally:
        deployment.stop_all()


# --- the CRM side: messages as a CRM would send them ----------------------------------------------------


def money(amount: Decimal) -> Money:
    units = int(amount)
    return Money(currency_code="USD", units=units, nanos=int((amount - units) * 10**9))


def when(seconds: int) -> Timestamp:
    return Timestamp(seconds=1767312000 + seconds)


def customer_message(customer_id: str, name: str) -> r.Opportunity:
    """An opportunity (one per customer here) with its customer."""
    first, last = name.split(" ", 1)
    return r.Opportunity(
        opportunity_id=f"opp-{customer_id}",
        number=customer_id.rsplit("-", 1)[-1],
        customer=r.Customer(
            customer_id=customer_id, first_name=first, last_name=last, email=f"{customer_id}@example.com"
        ),
    )


def payment_message(payment_id: str, amount: Decimal, refunds: dict[str, Decimal] | None = None) -> r.Payment:
    return r.Payment(
        payment_id=payment_id,
        amount=money(amount),
        method=r.PAYMENT_METHOD_CREDIT_CARD,
        received_time=when(0),
        reference="deposit",
        refunds=[
            r.Refund(refund_id=refund_id, amount=money(value), refunded_time=when(60), memo="partial refund")
            for refund_id, value in (refunds or {}).items()
        ],
    )


def job_message(job_id: str, hours: int, rate: Decimal) -> r.Job:
    return r.Job(
        job_id=job_id,
        number=f"J-{job_id}",
        service_date=Date(year=2026, month=1, day=10),
        lines=[
            r.InvoiceLine(
                description="Movers (hours)", quantity=str(hours), unit_price=money(rate), amount=money(hours * rate)
            )
        ],
    )
