"""Branches in storage (SPEC §10, issue 13): a tenant's connections keyed by branch, the routing of a branch to
its connection, each connection's own look-ups, and the branch of opportunities and jobs. Memory, SQLite and
PostgreSQL agree."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from persistence_builders import T0, Backend, opportunity, sync_job
from sqlalchemy import event
from test_persistence_connections import REFRESH_TOKEN, ROTATED, connection

from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory
from core.company_lookups import CompanyLookup, LookupKind
from core.company_preferences import CompanyPreferences
from core.company_tax import SalesTax
from core.connection import (
    BranchMapping,
    ClassTracking,
    CompanyFacts,
    ConnectionState,
    InvoiceNumbering,
    ListRef,
    QuickBooksConnection,
    QuickBooksSettings,
)
from core.currency import CompanyCurrency
from core.domain import SyncJobState
from core.errors import NotFoundError

NORTH = "north"


def default() -> QuickBooksConnection:
    return connection(realm_id="1000")


def north(**changes: object) -> QuickBooksConnection:
    """The branch's own company: another realm, other tokens, settings and preferences than the default's."""
    own = connection(
        realm_id="2000",
        branch_id=NORTH,
        refresh_token="RT-north-0123456789",
        access_token="AT-north-0123456789",
        access_token_expires=T0 + timedelta(minutes=30),
        company_name="Ann's Moving North",
        home_currency="CAD",
        sales_tax=SalesTax.MANUAL,
        class_tracking=ClassTracking.PER_LINE,
        track_departments=True,
        custom_txn_numbers=False,
        settings=QuickBooksSettings(deposit_account=ListRef("9", "North Checking"), doc_number_prefix="N-"),
    )
    return replace(own, **changes)  # type: ignore[arg-type]


def _save(backend: Backend, *connections: QuickBooksConnection) -> None:
    with backend.uow() as uow:
        for c in connections:
            uow.connections.save(c)
        uow.commit()


def _get(backend: Backend, branch_id: str = "", tenant_id: str = "t1") -> QuickBooksConnection | None:
    with backend.uow() as uow:
        return uow.connections.get(tenant_id, branch_id=branch_id)


def _for_branch(backend: Backend, branch_id: str, tenant_id: str = "t1") -> QuickBooksConnection | None:
    with backend.uow() as uow:
        return uow.connections.for_branch(tenant_id, branch_id)


# --- connections by branch ----------------------------------------------------------------------------


def test_a_tenant_keeps_a_connection_per_branch_each_whole(backend: Backend) -> None:
    _save(backend, default(), north())
    assert _get(backend) == default()
    assert _get(backend, NORTH) == north()
    assert _get(backend, "south") is None  # `get` is exactly the connection named: no fallback
    _save(backend, north(state=ConnectionState.DISCONNECTED, refresh_token=""))  # replaces the branch's only
    assert _get(backend, NORTH) == north(state=ConnectionState.DISCONNECTED, refresh_token="")
    assert _get(backend) == default()


def test_token_writers_touch_only_the_named_branch(backend: Backend) -> None:
    _save(backend, default(), north(refresh_token=REFRESH_TOKEN))  # the same refresh token in both rows
    with backend.uow() as uow:
        assert uow.connections.save_tokens("t1", ROTATED, replacing=REFRESH_TOKEN, branch_id=NORTH)
        uow.commit()
    assert _get(backend) == default()
    rotated = _get(backend, NORTH)
    assert rotated is not None and (rotated.refresh_token, rotated.access_token) == ("RT-rotated", "AT-rotated")
    with backend.uow() as uow:
        assert uow.connections.mark_reconnect_required("t1", "refused", refused_token=REFRESH_TOKEN)
        assert not uow.connections.mark_reconnect_required(
            "t1", "refused", refused_token=REFRESH_TOKEN, branch_id="south"
        )
        uow.commit()
    assert _get(backend) == default().refused("refused")
    assert _get(backend, NORTH) == rotated


def test_settings_preferences_and_authorization_writers_touch_only_the_named_branch(backend: Backend) -> None:
    _save(backend, default(), north())
    preferences = CompanyPreferences(
        CompanyCurrency("USD", True),
        SalesTax.AUTOMATED,
        class_tracking=ClassTracking.PER_TRANSACTION,
        track_departments=False,
        custom_txn_numbers=True,
    )
    with backend.uow() as uow:
        uow.connections.save_settings("t1", QuickBooksSettings(doc_number_prefix="N2-"), branch_id=NORTH)
        assert uow.connections.save_company_preferences("t1", preferences, branch_id=NORTH)
        uow.connections.save_authorization_request(
            "t1",
            environment="sandbox",
            redirect_uri="https://crm.example.com/n",
            oauth_state="n-state",
            branch_id=NORTH,
        )
        uow.commit()
    assert _get(backend) == default()
    assert _get(backend, NORTH) == north(
        settings=QuickBooksSettings(doc_number_prefix="N2-"),
        home_currency="USD",
        multicurrency=True,
        sales_tax=SalesTax.AUTOMATED,
        class_tracking=ClassTracking.PER_TRANSACTION,
        track_departments=False,
        custom_txn_numbers=True,
        environment="sandbox",
        redirect_uri="https://crm.example.com/n",
        oauth_state="n-state",
    )


def test_a_branch_without_its_own_connection_cannot_be_written(backend: Backend) -> None:
    """The partial writers never fall back to the default connection: they name one."""
    _save(backend, default())
    with backend.uow() as uow:
        with pytest.raises(NotFoundError):
            uow.connections.save_settings("t1", QuickBooksSettings(), branch_id=NORTH)
        with pytest.raises(NotFoundError):
            uow.connections.save_authorization_request(
                "t1", environment="sandbox", redirect_uri="", oauth_state="s", branch_id=NORTH
            )
        preferences = CompanyPreferences(CompanyCurrency("EUR"), SalesTax.NONE)
        assert not uow.connections.save_company_preferences("t1", preferences, branch_id=NORTH)
        assert not uow.connections.save_tokens("t1", ROTATED, replacing=REFRESH_TOKEN, branch_id=NORTH)
        uow.commit()
    assert _get(backend) == default()
    assert _get(backend, NORTH) is None


def test_the_new_preferences_round_trip_through_save(backend: Backend) -> None:
    for tracking in ClassTracking:
        _save(backend, connection(class_tracking=tracking))
        got = _get(backend)
        assert got is not None and got.class_tracking is tracking
    _save(backend, connection(track_departments=True, custom_txn_numbers=False))
    assert _get(backend) == connection(track_departments=True, custom_txn_numbers=False)


# --- routing: for_branch --------------------------------------------------------------------------------


def test_a_branch_syncs_to_its_own_connection_else_to_the_default(backend: Backend) -> None:
    assert _for_branch(backend, NORTH) is None  # no connection at all
    _save(backend, north())
    assert _for_branch(backend, NORTH) == north()
    assert _for_branch(backend, "south") is None  # neither its own nor a default
    assert _for_branch(backend, "") is None
    _save(backend, default())
    assert _for_branch(backend, NORTH) == north()
    assert _for_branch(backend, "south") == default()
    assert _for_branch(backend, "") == default()
    assert _for_branch(backend, NORTH, tenant_id="t2") is None


@pytest.mark.parametrize("state", [ConnectionState.DISCONNECTED, ConnectionState.RECONNECT_REQUIRED])
def test_a_branch_whose_own_connection_is_not_usable_still_gets_it(backend: Backend, state: ConnectionState) -> None:
    """Its syncs fail (reconnect) rather than write to another company."""
    _save(backend, default(), north(state=state))
    assert _for_branch(backend, NORTH) == north(state=state)


@pytest.mark.parametrize("branch_id", ["0", " ", "A", "a", "~", "\u00e9", "zz"])
def test_the_own_connection_wins_whatever_the_branch_id_sorts_like(backend: Backend, branch_id: str) -> None:
    _save(backend, default(), north(branch_id=branch_id))
    assert _for_branch(backend, branch_id) == north(branch_id=branch_id)
    assert _for_branch(backend, branch_id + "-other") == default()


def test_for_branch_is_one_statement(sql_backend: Backend) -> None:
    factory = sql_backend.uow
    assert isinstance(factory, SqlAlchemyUnitOfWorkFactory)
    _save(sql_backend, default(), north())
    statements: list[str] = []

    @event.listens_for(factory.engine, "before_cursor_execute")
    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    with factory() as uow:
        for branch_id in (NORTH, "south"):
            statements.clear()
            uow.connections.for_branch("t1", branch_id)
            assert len([s for s in statements if "quickbooks_connections" in s]) == 1


def test_of_tenant_lists_the_default_first_then_by_branch(backend: Backend) -> None:
    # Saved out of order; ids a locale collation would sort otherwise.
    _save(backend, north(branch_id="b"), north(branch_id="B"), default(), north(branch_id="a"), north(branch_id="_"))
    _save(backend, connection("t2"))
    with backend.uow() as uow:
        listed = uow.connections.of_tenant("t1")
        assert uow.connections.of_tenant("nobody") == []
    assert [c.branch_id for c in listed] == ["", "B", "_", "a", "b"]
    assert listed[0] == default() and listed[1] == north(branch_id="B")


def test_of_tenant_without_a_default_connection(backend: Backend) -> None:
    _save(backend, north())
    with backend.uow() as uow:
        assert uow.connections.of_tenant("t1") == [north()]


# --- company facts, cached per branch (SQL) ----------------------------------------------------------------


def _facts(c: QuickBooksConnection) -> CompanyFacts:
    return CompanyFacts.of(c)


def test_company_facts_follow_the_branchs_connection(backend: Backend) -> None:
    _save(backend, default(), north())
    assert backend.uow.company_facts("t1", NORTH) == _facts(north())
    assert backend.uow.company_facts("t1", "south") == _facts(default())
    assert backend.uow.company_facts("t1") == _facts(default())
    assert backend.uow.company_facts("t2", NORTH) is None


def test_cached_company_facts_see_a_branch_connected_or_the_default_changed_at_once(backend: Backend) -> None:
    _save(backend, default())
    assert backend.uow.company_facts("t1", NORTH) == _facts(default())
    _save(backend, north())  # the branch connects its own company: its facts are that company's at once
    assert backend.uow.company_facts("t1", NORTH) == _facts(north())
    assert backend.uow.company_facts("t1", "south") == _facts(default())
    with backend.uow() as uow:  # the default's preferences change: every branch it answers for sees it
        eur = CompanyPreferences(CompanyCurrency("EUR", True), SalesTax.NONE)
        assert uow.connections.save_company_preferences("t1", eur)
        uow.commit()
    changed = replace(default(), home_currency="EUR", multicurrency=True, sales_tax=SalesTax.NONE)
    assert backend.uow.company_facts("t1", "south") == _facts(changed)
    assert backend.uow.company_facts("t1") == _facts(changed)
    assert backend.uow.company_facts("t1", NORTH) == _facts(north())
    with backend.uow() as uow:  # a branch's token refused: only that branch
        assert uow.connections.mark_reconnect_required(
            "t1", "refused", refused_token=north().refresh_token, branch_id=NORTH
        )
        uow.commit()
    assert backend.uow.company_facts("t1", NORTH) == _facts(north().refused("refused"))
    assert backend.uow.company_facts("t1", "south") == _facts(changed)


# --- settings ------------------------------------------------------------------------------------------

MAPPINGS = (
    BranchMapping(NORTH, class_ref=ListRef("100", "North"), department_ref=ListRef("", "North Yard")),
    BranchMapping(NORTH, "long distance", class_ref=ListRef("", "North LD")),
    BranchMapping("south", department_ref=ListRef("7", "")),
)


@pytest.mark.parametrize("numbering", [*InvoiceNumbering, None])
def test_branch_mappings_and_invoice_numbering_round_trip(backend: Backend, numbering: InvoiceNumbering | None) -> None:
    settings = replace(default().settings, invoice_numbering=numbering, branch_mappings=MAPPINGS)
    _save(backend, connection(settings=settings))
    got = _get(backend)
    assert got is not None and got.settings == settings
    with backend.uow() as uow:
        uow.connections.save_settings("t1", replace(settings, branch_mappings=MAPPINGS[2:]))
        uow.commit()
    again = _get(backend)
    assert again is not None and again.settings.branch_mappings == MAPPINGS[2:]
    assert again.settings.invoice_numbering is numbering


def test_settings_without_the_new_fields_read_them_unset(backend: Backend) -> None:
    _save(backend, connection())
    got = _get(backend)
    assert got is not None
    assert (got.settings.invoice_numbering, got.settings.branch_mappings) == (None, ())


# --- company look-ups per connection ------------------------------------------------------------------------

DEFAULT_DEPOSIT = CompanyLookup("1000", LookupKind.SETTING, "deposit_account", "4", ListRef("4", "Undeposited"), T0)
NORTH_DEPOSIT = CompanyLookup("2000", LookupKind.SETTING, "deposit_account", "9", ListRef("9", "North Checking"), T0)
NORTH_RATE = CompanyLookup("2000", LookupKind.TAX_RATE, "boston", "boston", ListRef("3", "Boston"), T0)


def _lookups(backend: Backend, branch_id: str = "") -> set[CompanyLookup]:
    with backend.uow() as uow:
        return set(uow.company_lookups.of_tenant("t1", branch_id=branch_id))


def test_each_connection_keeps_its_own_look_ups(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.company_lookups.save("t1", [DEFAULT_DEPOSIT])
        uow.company_lookups.save("t1", [NORTH_DEPOSIT, NORTH_RATE], branch_id=NORTH)  # same kind and name
        uow.commit()
    assert _lookups(backend) == {DEFAULT_DEPOSIT}
    assert _lookups(backend, NORTH) == {NORTH_DEPOSIT, NORTH_RATE}
    assert _lookups(backend, "south") == set()
    with backend.uow() as uow:
        uow.company_lookups.forget("t1", LookupKind.SETTING, "deposit_account", branch_id=NORTH)
        uow.company_lookups.forget("t1", LookupKind.TAX_RATE)  # the default's: it has none
        uow.commit()
    assert _lookups(backend) == {DEFAULT_DEPOSIT}
    assert _lookups(backend, NORTH) == {NORTH_RATE}
    with backend.uow() as uow:
        uow.company_lookups.forget("t1", LookupKind.SETTING)
        uow.commit()
    assert _lookups(backend) == set()
    assert _lookups(backend, NORTH) == {NORTH_RATE}


# --- opportunities and jobs ---------------------------------------------------------------------------------


def test_an_opportunitys_branch_and_service_type_round_trip(backend: Backend) -> None:
    branched = replace(opportunity(), branch_id=NORTH, service_type="long distance")
    with backend.uow() as uow:
        uow.snapshots.save_opportunity("t1", branched)
        assert (
            uow.snapshots.save_opportunity_of_its_customer("t1", replace(opportunity("O2"), branch_id="south")) is None
        )
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.get_opportunity("t1", "O1") == branched
        assert uow.snapshots.get_opportunity("t1", "O2") == replace(opportunity("O2"), branch_id="south")
        assert uow.snapshots.opportunities_of_customer("t1", "C1") == [
            branched,
            replace(opportunity("O2"), branch_id="south"),
        ]
    with backend.uow() as uow:  # the accept path's upsert moves it to another branch
        assert uow.snapshots.save_opportunity_of_its_customer("t1", opportunity()) is None
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.get_opportunity("t1", "O1") == opportunity()


def test_a_jobs_branch_is_kept_wherever_the_job_is_read(backend: Backend) -> None:
    job = replace(sync_job("j1", request_id="r1"), branch_id=NORTH)
    with backend.uow() as uow:
        uow.jobs.add(job)
        uow.jobs.add(sync_job("j0", created=T0 - timedelta(days=1)))  # claimed first: of the default
        uow.commit()
    with backend.uow() as uow:
        assert uow.jobs.get("t1", "j1") == job
        assert uow.jobs.find_by_request_id("t1", "r1") == job
        assert [j.branch_id for j in uow.jobs.list_recent("t1", limit=10)] == [NORTH, ""]
    claimed = []
    for _ in range(2):
        with backend.uow() as uow:
            taken = uow.jobs.claim_next("w1", T0, T0 + timedelta(minutes=5))
            assert taken is not None
            claimed.append(taken.branch_id)
            uow.commit()
    assert claimed == ["", NORTH]
    with backend.uow() as uow:
        running = uow.jobs.get_for_update("t1", "j1")
        assert running is not None and running.branch_id == NORTH
        running.state = SyncJobState.FAILED
        uow.jobs.save(running)
        uow.commit()
    with backend.uow() as uow:
        assert [j.branch_id for j in uow.jobs.list_failed("t1", offset=0, limit=10)] == [NORTH]
