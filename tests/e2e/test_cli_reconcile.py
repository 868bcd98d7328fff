"""`qbsync reconcile` (SPEC §11) as an operator runs it, on a SQLite database: the differences as lines or
JSON, and an exit status a script can branch on (0 the books agree, 3 differences found, 2 a mistake)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.persistence.encryption import SecretBox
from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for, migrate
from core.domain import Customer, Opportunity, Payment, PaymentMethod
from qbsync.cli import main
from qbsync.operator_commands import DIFFERENCES_FOUND


@pytest.fixture
def ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqlAlchemyUnitOfWorkFactory]:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.setenv("QBSYNC_DATABASE_URL", url)
    monkeypatch.setenv("QBSYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("QBSYNC_ENCRYPTION_KEY", raising=False)
    migrate(url)
    engine = create_engine_for(url)
    try:
        factory = SqlAlchemyUnitOfWorkFactory(engine, SecretBox(key_file=tmp_path / "data" / "secret.key"))
        with factory() as uow:
            uow.tenants.ensure("acme")
            uow.commit()
        yield factory
    finally:
        engine.dispose()


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _received_not_synced(ops: SqlAlchemyUnitOfWorkFactory) -> None:
    """A payment qbsync received (its snapshot) but never synced: no QuickBooks read is needed to report it."""
    opportunity = Opportunity("o1", "1001", Customer("c1", "Mary", "Jones", email="mary@example.com"))
    received = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)
    with ops() as uow:
        uow.snapshots.save_opportunity("acme", opportunity)
        uow.snapshots.save_payment("acme", "o1", Payment("p1", Decimal("120.00"), PaymentMethod.CASH, received))
        uow.commit()


def test_a_company_whose_books_agree_exits_0(ops: SqlAlchemyUnitOfWorkFactory) -> None:
    code, output = _run("reconcile", "--tenant", "acme", "--from", "2026-04-01", "--to", "2026-04-30")
    assert (code, output.strip()) == (0, "no differences for tenant 'acme' from 2026-04-01 to 2026-04-30")
    assert _run("reconcile", "--tenant", "acme", "--from", "2026-04-01", "--to", "2026-04-30", "--json") == (0, "[]\n")


def test_differences_are_listed_and_exit_non_zero(ops: SqlAlchemyUnitOfWorkFactory) -> None:
    _received_not_synced(ops)
    code, output = _run("reconcile", "--tenant", "acme", "--from", "2026-04-01", "--to", "2026-04-30")
    assert code == DIFFERENCES_FOUND == 3
    assert output.splitlines() == ["payment:p1  -  crm=120.00  quickbooks=-  payment not synced to QuickBooks"]

    code, output = _run("reconcile", "--tenant", "acme", "--from", "2026-04-01", "--to", "2026-04-30", "--json")
    assert code == DIFFERENCES_FOUND
    assert json.loads(output) == [
        {
            "entity": {"type": "PAYMENT", "id": "p1"},
            "quickbooks_id": None,
            "what": "payment not synced to QuickBooks",
            "crm_amount": "120.00",
            "quickbooks_amount": None,
            "customer_id": "c1",
            "branch_id": None,
        }
    ]
    # Outside the period, nothing.
    assert _run("reconcile", "--tenant", "acme", "--from", "2026-05-01", "--to", "2026-05-31")[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "acme", "--from", "2026-04-30", "--to", "2026-04-01"], "end_date: must not be before start_date"),
        (["--tenant", "acme", "--from", "2025-01-01", "--to", "2026-04-01"], "end_date: the period is at most a year"),
        (["--tenant", "acm", "--from", "2026-04-01", "--to", "2026-04-30"], "unknown tenant 'acm'"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(ops: SqlAlchemyUnitOfWorkFactory, args: list[str], message: str) -> None:
    code, output = _run("reconcile", *args)
    assert code == 2 and message in output and "Traceback" not in output
