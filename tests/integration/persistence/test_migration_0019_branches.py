"""Migration 0019 (branches, SPEC §10) on a database holding data: a tenant's only connection becomes its default
connection (branch "") with everything it had, and its look-ups, opportunities and jobs are the default's, with
no operator action. The rows are written as the 0018 schema holds them (its tables reflected, not the models),
on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from persistence_builders import T0, opportunity, sync_job
from sqlalchemy import Engine, MetaData, text
from sqlalchemy.engine import URL
from test_persistence_connections import connection

from adapters.persistence.encryption import SecretBox, generate_key
from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, codec, create_engine_for
from adapters.persistence.sqlalchemy.connections import LIFETIME, SECRET_FIELDS
from adapters.persistence.sqlalchemy.engine import normalise_url
from adapters.persistence.sqlalchemy.migrate import alembic_config
from core.company_lookups import CompanyLookup, LookupKind
from core.company_tax import SalesTax
from core.connection import ClassTracking, InvoiceNumbering, ListRef, QuickBooksConnection
from core.domain import SyncJob
from tests.postgres_schema import postgres_base_url

BEFORE = "0018"
LOOKUP = CompanyLookup("9130", LookupKind.SETTING, "deposit_account", "4", ListRef("4", "Undeposited Funds"), T0)


def _migrate(url: URL, revision: str, *, down: bool = False) -> None:
    engine = create_engine_for(url)
    try:
        with engine.begin() as db:
            config = alembic_config(url)
            config.attributes["connection"] = db
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url_at_0018(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    """An empty database (SQLite file, or a PostgreSQL schema of its own) migrated to 0018 only."""
    if request.param == "sqlite":
        url = normalise_url(f"sqlite:///{tmp_path / 'before.db'}")
        _migrate(url, BEFORE)
        yield url
        return
    base = postgres_base_url()
    schema = f"m19_{uuid.uuid4().hex[:12]}"
    admin = create_engine_for(base)
    with admin.begin() as db:
        db.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        url = base.update_query_dict({"options": f"-csearch_path={schema}"})
        _migrate(url, BEFORE)
        yield url
    finally:
        with admin.begin() as db:
            db.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _time(engine: Engine, value: datetime | None) -> datetime | None:
    """A time as 0018's columns take it: UTC wall time on SQLite (what UtcDateTime stores), aware on PostgreSQL."""
    if value is None or engine.dialect.name != "sqlite":
        return value
    return value.replace(tzinfo=None) - (value.utcoffset() or timedelta())


def _settings_as_0018_stored_them(stored: QuickBooksConnection) -> str:
    data = json.loads(codec.settings_to_json(stored.settings))
    del data["invoice_numbering"], data["branch_mappings"]  # the keys 0019's code added
    return json.dumps(data)


def _write_0018_rows(engine: Engine, box: SecretBox, stored: QuickBooksConnection, job: SyncJob) -> None:
    tables = MetaData()
    tables.reflect(engine)
    secrets: dict[str, Any] = {name: getattr(stored, name) for name in SECRET_FIELDS}
    assert stored.access_token_lifetime is not None
    secrets[LIFETIME] = stored.access_token_lifetime.total_seconds()
    customer = opportunity().customer
    with engine.begin() as db:
        db.execute(tables.tables["tenants"].insert(), {"tenant_id": "t1"})
        db.execute(
            tables.tables["quickbooks_connections"].insert(),
            {
                "tenant_id": stored.tenant_id,
                "realm_id": stored.realm_id,
                "environment": stored.environment,
                "api_base_url": stored.api_base_url,
                "client_id": stored.client_id,
                "secrets": box.encrypt(json.dumps(secrets)),
                "access_token_expires": _time(engine, stored.access_token_expires),
                "refresh_token_expires": _time(engine, stored.refresh_token_expires),
                "state": stored.state.value,
                "connect_time": _time(engine, stored.connect_time),
                "company_name": stored.company_name,
                "home_currency": stored.home_currency,
                "multicurrency": stored.multicurrency,
                "sales_tax": None if stored.sales_tax is None else stored.sales_tax.value,
                "last_error": stored.last_error,
                "settings": _settings_as_0018_stored_them(stored),
                "redirect_uri": stored.redirect_uri,
            },
        )
        db.execute(
            tables.tables["company_lookups"].insert(),
            {
                "tenant_id": "t1",
                "kind": LOOKUP.kind.value,
                "name": LOOKUP.name,
                "realm_id": LOOKUP.realm_id,
                "against": LOOKUP.against,
                "found_id": LOOKUP.found.id,
                "found_name": LOOKUP.found.name,
                "checked_time": _time(engine, LOOKUP.checked_time),
            },
        )
        db.execute(
            tables.tables["opportunities"].insert(),
            {
                "tenant_id": "t1",
                "opportunity_id": "O1",
                "number": opportunity().number,
                "customer_id": customer.customer_id,
                "first_name": customer.first_name,
                "last_name": customer.last_name,
                "company_name": customer.company_name,
                "email": customer.email,
                "phone": customer.phone,
            },
        )
        db.execute(
            tables.tables["sync_jobs"].insert(),
            {
                "tenant_id": job.tenant_id,
                "job_id": job.job_id,
                "kind": job.kind.value,
                "target_type": job.target.type.value,
                "target_id": job.target.id,
                "opportunity_id": job.opportunity_id,
                "customer_id": job.customer_id,
                "lock_key": job.lock_key,
                "identity_key": job.identity_key,
                "state": job.state.value,
                "resync": job.resync,
                "attempts": job.attempts,
                "max_attempts": job.max_attempts,
                "results": "[]",
                "error": None,
                "request_id": job.request_id,
                "request_fingerprint": job.request_fingerprint,
                "next_attempt_time": None,
                "claimed_by": "",
                "lease_expires": None,
                "create_time": _time(engine, job.create_time),
                "update_time": _time(engine, job.update_time),
                "dismiss_time": None,
            },
        )


def test_an_existing_tenant_keeps_everything_as_its_default_connection(url_at_0018: URL) -> None:
    box = SecretBox([generate_key()])
    stored = connection(sales_tax=SalesTax.MANUAL, home_currency="CAD", multicurrency=True)
    job = sync_job("j1", request_id="r1", identity_key="ann lee")
    engine = create_engine_for(url_at_0018)
    try:
        _write_0018_rows(engine, box, stored, job)
    finally:
        engine.dispose()

    _migrate(url_at_0018, "head")

    engine = create_engine_for(url_at_0018)
    factory = SqlAlchemyUnitOfWorkFactory(engine, box)
    try:
        with factory() as uow:
            default = uow.connections.get("t1")
            # Whole, with the tokens under their old encryption, and as a company that tracks no class or
            # location and numbers its own invoices: DocNumber from the job number, as before the upgrade —
            # pinned (CRM), so that reading the company's preferences again cannot switch its numbering.
            assert default is not None and default.branch_id == ""
            assert default.settings.invoice_numbering is InvoiceNumbering.CRM
            stored = replace(stored, settings=replace(stored.settings, invoice_numbering=InvoiceNumbering.CRM))
            assert default == stored
            assert (default.class_tracking, default.track_departments, default.custom_txn_numbers) == (
                ClassTracking.OFF,
                False,
                True,
            )
            assert default.settings.branch_mappings == ()
            assert uow.connections.for_branch("t1", "north") == stored  # every branch syncs where it did
            assert uow.connections.of_tenant("t1") == [stored]
            assert uow.company_lookups.of_tenant("t1") == [LOOKUP]
            assert uow.company_lookups.of_tenant("t1", branch_id="north") == []
            assert uow.snapshots.get_opportunity("t1", "O1") == opportunity()  # branch and service type ""
            assert uow.jobs.get("t1", "j1") == job
            assert uow.jobs.find_by_request_id("t1", "r1") == job
        with factory() as uow:
            claimed = uow.jobs.claim_next("w1", T0, T0 + timedelta(minutes=5))
            assert claimed is not None and (claimed.job_id, claimed.branch_id) == ("j1", "")
            uow.commit()
        assert factory.company_facts("t1", "north") is not None

        # The new keys hold: a branch connects its own company and keeps its own look-ups beside the default's.
        north = replace(stored, branch_id="north", realm_id="2000", refresh_token="RT-north")
        north_lookup = replace(LOOKUP, realm_id="2000", found=ListRef("9", "North Checking"))
        with factory() as uow:
            uow.connections.save(north)
            uow.company_lookups.save("t1", [north_lookup], branch_id="north")
            uow.commit()
        with factory() as uow:
            assert uow.connections.of_tenant("t1") == [stored, north]
            assert uow.company_lookups.of_tenant("t1") == [LOOKUP]
            assert uow.company_lookups.of_tenant("t1", branch_id="north") == [north_lookup]
    finally:
        engine.dispose()


def test_a_downgrade_keeps_the_default_connection_and_drops_the_branches(url_at_0018: URL) -> None:
    _migrate(url_at_0018, "head")
    box = SecretBox([generate_key()])
    engine = create_engine_for(url_at_0018)
    factory = SqlAlchemyUnitOfWorkFactory(engine, box)
    try:
        with factory() as uow:
            uow.connections.save(connection())
            uow.connections.save(connection(branch_id="north", realm_id="2000"))
            uow.company_lookups.save("t1", [LOOKUP])
            uow.company_lookups.save("t1", [LOOKUP], branch_id="north")
            uow.commit()
    finally:
        engine.dispose()
    _migrate(url_at_0018, BEFORE, down=True)
    engine = create_engine_for(url_at_0018)
    try:
        with engine.connect() as db:
            realms = db.execute(text("SELECT tenant_id, realm_id FROM quickbooks_connections")).all()
            lookups = db.execute(text("SELECT tenant_id, realm_id FROM company_lookups")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in realms] == [("t1", "9130")]
    assert [tuple(r) for r in lookups] == [("t1", "9130")]
    _migrate(url_at_0018, "head")
    engine = create_engine_for(url_at_0018)
    try:
        with SqlAlchemyUnitOfWorkFactory(engine, box)() as uow:
            # As it was, numbering pinned to the CRM's by the upgrade (see 0019).
            pinned = connection()
            pinned = replace(pinned, settings=replace(pinned.settings, invoice_numbering=InvoiceNumbering.CRM))
            assert uow.connections.of_tenant("t1") == [pinned]
    finally:
        engine.dispose()
