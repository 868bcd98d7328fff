"""`qbsync keys create --expires`, `keys list [--json]` and `keys revoke` through click's runner on a real
SQLite database, checked against what the server's own ApiKeys then accepts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for, migrate
from adapters.system import SystemClock, UuidIdSource
from core.auth import ApiKeys, presented_key_id
from core.errors import UnauthenticatedError
from qbsync.cli import main
from qbsync.key_commands import parse_expiry


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiKeys]:
    """Configuration as an operator's shell would have it; yields ApiKeys on the same database."""
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.setenv("QBSYNC_DATABASE_URL", url)
    monkeypatch.setenv("QBSYNC_DATA_DIR", str(tmp_path / "data"))
    migrate(url)
    engine = create_engine_for(url)
    try:
        yield ApiKeys(SqlAlchemyUnitOfWorkFactory(engine), SystemClock(), UuidIdSource())
    finally:
        engine.dispose()


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _create(*args: str) -> str:
    code, output = _run("keys", "create", *args)
    assert code == 0, output
    return output.strip().splitlines()[-1]


def test_list_shows_every_key_but_never_a_secret_or_hash(keys: ApiKeys) -> None:
    acme = _create("--tenant", "acme", "--permissions", "read,sync")
    beta = _create("--tenant", "beta", "--expires", "90d")
    keys.authenticate(acme, "ipv4:127.0.0.1")  # records a last use

    code, output = _run("keys", "list")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].split() == [
        "KEY",
        "ID",
        "TENANT",
        "PERMISSIONS",
        "STATE",
        "CREATED",
        "LAST",
        "USED",
        "EXPIRES",
        "REVOKED",
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {presented_key_id(acme), presented_key_id(beta)}
    acme_row = rows[presented_key_id(acme)]
    assert acme_row[1:4] == ["acme", "read,sync", "active"]
    assert acme_row[5] != "-" and acme_row[6:] == ["-", "-"]  # used; never expires; not revoked
    beta_row = rows[presented_key_id(beta)]
    assert beta_row[1] == "beta" and beta_row[5] == "-" and beta_row[6] != "-"
    for key in (acme, beta):
        secret = key.split("_", 2)[2]
        assert secret not in output
    stored = keys.list_keys()
    assert all(k.secret_hash not in output for k in stored)

    code, only_beta = _run("keys", "list", "--tenant", "beta")
    assert code == 0 and presented_key_id(beta) in only_beta and presented_key_id(acme) not in only_beta


def test_list_json_parses_and_carries_the_fields(keys: ApiKeys) -> None:
    key = _create("--tenant", "acme", "--permissions", "read", "--expires", "2099-01-31")
    code, output = _run("keys", "list", "--json")
    assert code == 0, output
    records = json.loads(output)
    assert records == [
        {
            "key_id": presented_key_id(key),
            "tenant": "acme",
            "permissions": ["read"],
            "state": "active",
            "create_time": records[0]["create_time"],
            "last_use_time": None,
            "expire_time": "2099-01-31T00:00:00Z",
            "revoke_time": None,
        }
    ]
    created = datetime.fromisoformat(records[0]["create_time"])
    assert abs(created - datetime.now(UTC)) < timedelta(minutes=1)
    assert key.split("_", 2)[2] not in output and "hash" not in output

    code, empty = _run("keys", "list", "--json", "--tenant", "nobody")
    assert code == 0 and json.loads(empty) == []


def test_revoke_stops_the_key_and_shows_in_the_list(keys: ApiKeys) -> None:
    key = _create("--tenant", "acme")
    other = _create("--tenant", "acme")
    key_id = presented_key_id(key)
    code, output = _run("keys", "revoke", key_id)
    assert code == 0 and f"revoked key {key_id}" in output, output
    with pytest.raises(UnauthenticatedError):
        keys.authenticate(key, "ipv4:127.0.0.1")
    assert keys.authenticate(other, "ipv4:127.0.0.1").tenant_id == "acme"

    code, again = _run("keys", "revoke", key_id)
    assert code == 0 and "already revoked" in again
    records = {r["key_id"]: r for r in json.loads(_run("keys", "list", "--json")[1])}
    assert records[key_id]["state"] == "revoked" and records[key_id]["revoke_time"] is not None
    assert records[presented_key_id(other)]["state"] == "active"

    result = CliRunner().invoke(main, ["keys", "revoke", "no-such-key"])
    assert result.exit_code == 1 and "no API key with id 'no-such-key'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback


@pytest.mark.parametrize(
    ("expires", "complaint"),
    [("90", "neither a duration"), ("soon", "neither a duration"), ("2001-01-01", "not in the future")],
)
def test_a_bad_expiry_names_the_option_and_creates_nothing(keys: ApiKeys, expires: str, complaint: str) -> None:
    result = CliRunner().invoke(main, ["keys", "create", "--tenant", "acme", "--expires", expires])
    assert result.exit_code == 2, result.output
    assert "--expires" in result.output and complaint in result.output
    assert isinstance(result.exception, SystemExit)
    assert keys.list_keys() == []


def test_expiry_forms() -> None:
    now = datetime(2026, 12, 2, 4, 30, tzinfo=UTC)
    assert parse_expiry("90d", now) == now + timedelta(days=90)
    assert parse_expiry("12h", now) == now + timedelta(hours=12)
    assert parse_expiry("8w", now) == now + timedelta(weeks=8)
    assert parse_expiry("2027-03-31", now) == datetime(2027, 3, 31, tzinfo=UTC)
    assert parse_expiry("2027-03-31T18:00:00", now) == datetime(2027, 3, 31, 18, tzinfo=UTC)
    assert parse_expiry("2027-03-31T18:00:00+02:00", now) == datetime(2027, 3, 31, 16, tzinfo=UTC)
    with pytest.raises(ValueError, match="duration"):
        parse_expiry("90 days", now)
