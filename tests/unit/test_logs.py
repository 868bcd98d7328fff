"""qbsync/logs.py: how the format and level are chosen, what a line holds in JSON and in text, the redaction of
secrets, and the worker's one line per job outcome (through the configured handler, as a process logs)."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import structlog
from click.testing import CliRunner

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.fake import FakeQuickBooksCompanies, Fault
from core.domain import Customer, Opportunity, Payment, PaymentMethod, Permission, Principal, SyncJobState
from core.errors import BookkeepingError
from core.service import SyncService
from core.sync_engine import SyncEngine
from core.worker import SyncWorker
from qbsync.cli import main
from qbsync.logs import REDACTED, LogSettings, configure, redact_text, register_secret
from tests.unit.support import STEP_CLOCK_LEASE, CountingIds, HookedCompanies, StepClock


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Whatever a test configures is undone: the root logger's handlers and level, structlog's defaults."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    alembic = logging.getLogger("alembic").level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("alembic").setLevel(alembic)
        logging.captureWarnings(False)
        structlog.reset_defaults()


@pytest.fixture
def json_lines(restored_logging: None) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure(LogSettings("json", logging.DEBUG), stream=stream)
    yield stream


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# --- format and level ---------------------------------------------------------------------------------------


def test_auto_is_json_off_a_terminal_and_text_on_one() -> None:
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal:
        assert LogSettings.from_env({}, stream=terminal) == LogSettings("text", logging.INFO)
    os.close(leader)
    assert LogSettings.from_env({}, stream=io.StringIO()) == LogSettings("json", logging.INFO)
    assert LogSettings.from_env({"QBSYNC_LOG_FORMAT": "auto"}, stream=io.StringIO()).format == "json"


def test_format_and_level_from_the_environment_and_verbose() -> None:
    env = {"QBSYNC_LOG_FORMAT": " Text ", "QBSYNC_LOG_LEVEL": "warning"}
    assert LogSettings.from_env(env, stream=io.StringIO()) == LogSettings("text", logging.WARNING)
    assert LogSettings.from_env(env, verbose=True, stream=io.StringIO()).level == logging.DEBUG


@pytest.mark.parametrize(
    ("env", "variable"),
    [({"QBSYNC_LOG_FORMAT": "xml"}, "QBSYNC_LOG_FORMAT"), ({"QBSYNC_LOG_LEVEL": "LOUD"}, "QBSYNC_LOG_LEVEL")],
)
def test_a_bad_setting_is_named(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ValueError, match=variable):
        LogSettings.from_env(env)


def test_the_cli_refuses_a_bad_log_setting_without_a_traceback(
    restored_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QBSYNC_LOG_LEVEL", "chatty")
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code == 78  # EX_CONFIG, as every configuration mistake (qbsync/cli.py)
    assert "configuration: QBSYNC_LOG_LEVEL must be one of DEBUG, INFO" in result.output
    assert "Traceback" not in result.output


# --- lines --------------------------------------------------------------------------------------------------


def test_json_lines_keep_extra_fields_for_qbsync_libraries_and_structlog(json_lines: io.StringIO) -> None:
    logging.getLogger("adapters.quickbooks.qbo.calls").warning(
        "quickbooks request failed", extra={"what": "creating the payment", "attempt": 2, "intuit_tid": "tid-9"}
    )
    logging.getLogger("urllib3.connectionpool").debug("Starting new HTTP connection (%d): %s", 1, "127.0.0.1")
    structlog.get_logger("qbsync.thing").info("bound", tenant="acme")
    first, library, native = parsed(json_lines)
    assert {k: first[k] for k in ("event", "level", "logger", "what", "attempt", "intuit_tid")} == {
        "event": "quickbooks request failed",
        "level": "warning",
        "logger": "adapters.quickbooks.qbo.calls",
        "what": "creating the payment",
        "attempt": 2,
        "intuit_tid": "tid-9",
    }
    assert datetime.fromisoformat(first["timestamp"]).tzinfo is not None
    assert (library["event"], library["logger"]) == (
        "Starting new HTTP connection (1): 127.0.0.1",
        "urllib3.connectionpool",
    )
    assert (native["event"], native["tenant"], native["logger"]) == ("bound", "acme", "qbsync.thing")


def test_the_level_filters_and_a_second_configure_replaces_the_first(restored_logging: None) -> None:
    other = logging.NullHandler()  # someone else's handler (pytest's, an operator's): left alone
    logging.getLogger().addHandler(other)
    first, second = io.StringIO(), io.StringIO()
    configure(LogSettings("json", logging.INFO), stream=first)
    configure(LogSettings("json", logging.WARNING), stream=second)
    logging.getLogger("qbsync.x").info("quiet")
    logging.getLogger("qbsync.x").warning("loud")
    assert first.getvalue() == ""
    assert [line["event"] for line in parsed(second)] == ["loud"]
    assert other in logging.getLogger().handlers
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_qbsync_handler", False)]
    assert len(ours) == 1


def test_text_lines_are_readable_key_value(restored_logging: None) -> None:
    stream = io.StringIO()
    configure(LogSettings("text", logging.INFO), stream=stream)
    logging.getLogger("core.worker").warning(
        "sync job failed", extra={"reason": "QUICKBOOKS_CLOSED_PERIOD", "attempts": 1}
    )
    [line] = stream.getvalue().splitlines()
    assert "sync job failed" in line and "[warning" in line and "[core.worker]" in line
    assert "reason=QUICKBOOKS_CLOSED_PERIOD" in line and "attempts=1" in line
    assert "\x1b[" not in line  # no colours off a terminal


def test_a_traceback_is_one_json_field_with_its_secrets_masked(json_lines: io.StringIO) -> None:
    try:
        raise RuntimeError("refused header Authorization: Bearer eyJhbGciOi.payload.signature")
    except RuntimeError:
        logging.getLogger("adapters.grpc.errors").exception("unexpected error serving %s", "/qbsync.v1.SyncService/X")
    [line] = parsed(json_lines)
    assert (
        line["level"] == "error"
        and "RuntimeError: refused header Authorization: Bearer [REDACTED]" in line["exception"]
    )
    assert "eyJhbGciOi" not in json_lines.getvalue()


# --- redaction ------------------------------------------------------------------------------------------------


KEY = "qbs_0f3c9a1b2c3d4e5f60718293a4b5c6d7_Zm9vYmFyLWJhei1xdXV4LXNlY3JldC12YWx1ZS0xMjM0"
FERNET = "hX0vQ2mF3b1Yk8n7s6L5p4O3i2U1y0T9r8E7w6Q5a4Z="


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer emu-at-3fJ8kq0zLw", f"Authorization: Bearer {REDACTED}"),
        ("Authorization: Basic Y2xpZW50OnNlY3JldHZhbHVl", f"Authorization: Basic {REDACTED}"),
        (f"key {KEY} refused", f"key qbs_0f3c9a1b2c3d4e5f60718293a4b5c6d7_{REDACTED} refused"),
        (
            "grant_type=refresh_token&refresh_token=AB11xyz-secret&x=1",
            f"grant_type=refresh_token&refresh_token={REDACTED}&x=1",
        ),
        ('{"access_token": "eyJx.y.z", "expires_in": 3600}', f'{{"access_token": "{REDACTED}", "expires_in": 3600}}'),
        ("client_secret=s3cr3t", f"client_secret={REDACTED}"),
        ("/callback?code=AB11-auth-code-long&state=x", f"/callback?code={REDACTED}&state=x"),
        (f"QBSYNC_ENCRYPTION_KEY={FERNET}", f"QBSYNC_ENCRYPTION_KEY={REDACTED}"),
    ],
)
def test_secrets_are_masked_by_their_shape(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Authorization header missing or not a Bearer token",
        'http://127.0.0.1:8 "POST /oauth2/v1/tokens/bearer HTTP/1.1" 200 199',
        "QuickBooks refused it (code=6210)",
        "basic settings of the company",
        "intuit_tid 4365e72d-47e5-4a05-a0d8-65e4577180c2",
        "sync job failed: QUICKBOOKS_CLOSED_PERIOD",
    ],
)
def test_ordinary_words_are_kept(text: str) -> None:
    assert redact_text(text) == text


def test_secret_keys_and_registered_secrets_are_masked_wherever_they_are(json_lines: io.StringIO) -> None:
    register_secret("the-app-client-secret-value", "short")
    logging.getLogger("adapters.quickbooks.oauth").warning(
        "sent %s",
        "the-app-client-secret-value",
        extra={
            "headers": {"Authorization": "Bearer whatever-it-is", "Accept": "application/json"},
            "refresh_token": "AB11plain",
            "api_key": KEY,
            "tokens": ["x", "Bearer abcdefghij"],
            "what": "short",  # too short to be registered: words would go
        },
    )
    [line] = parsed(json_lines)
    assert line["event"] == f"sent {REDACTED}"
    assert line["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert (line["refresh_token"], line["api_key"], line["what"]) == (REDACTED, REDACTED, "short")
    assert line["tokens"] == ["x", f"Bearer {REDACTED}"]  # inside lists and mappings too


def test_the_cli_registers_the_configured_secrets(restored_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBSYNC_QBO_CLIENT_SECRET", "configured-client-secret-42")
    monkeypatch.setenv("QBSYNC_LOG_FORMAT", "json")
    assert redact_text("it was configured-client-secret-42") == "it was configured-client-secret-42"
    result = CliRunner().invoke(main, ["keys", "--help"])  # the group's callback runs, then the help
    assert result.exit_code == 0, result.output
    assert redact_text("it was configured-client-secret-42") == f"it was {REDACTED}"


# --- the worker's outcome lines -----------------------------------------------------------------------------


def _opportunity(n: int) -> Opportunity:
    return Opportunity(f"o{n}", f"100{n}", Customer(f"c{n}", "Ann", f"Lee{n}"))


def _payment(n: int) -> Payment:
    return Payment(f"p{n}", Decimal("100.00"), PaymentMethod.CHECK, datetime(2026, 1, 5, tzinfo=UTC))


def test_one_line_per_job_outcome_with_the_job_its_reason_and_intuit_tid(json_lines: io.StringIO) -> None:
    uow_factory = InMemoryUnitOfWorkFactory()
    fake = FakeQuickBooksCompanies()
    companies = HookedCompanies(fake)
    clock = StepClock()
    service = SyncService(uow_factory, companies, clock, CountingIds())
    engine = SyncEngine(uow_factory, companies, clock)
    worker = SyncWorker(
        uow_factory, engine, clock, lease=STEP_CLOCK_LEASE, backoff_base=timedelta(0), backoff_cap=timedelta(0)
    )
    with uow_factory() as uow:
        uow.tenants.ensure("acme")
        uow.commit()
    principal = Principal("acme", frozenset(Permission))

    def run() -> SyncJobState:
        ran = worker.run_next("w1")
        assert ran is not None
        return ran.state

    ok = service.sync_payment(principal, _opportunity(1), _payment(1))
    assert run() is SyncJobState.SUCCEEDED
    fake.for_tenant("acme").inject(Fault.UNAVAILABLE)
    flaky = service.sync_payment(principal, _opportunity(2), _payment(2))
    assert (run(), run()) == (SyncJobState.PENDING, SyncJobState.SUCCEEDED)

    # QuickBooks refuses the next write as it refuses one in a closed period (the adapter's error).
    closed = BookkeepingError("the books are closed", reason="QUICKBOOKS_CLOSED_PERIOD")
    closed.metadata["intuit_tid"] = "tid-closed"

    def refuse() -> None:
        raise closed

    companies.hook("acme", "create", "before", refuse)
    refused = service.sync_payment(principal, _opportunity(3), _payment(3))
    assert run() is SyncJobState.FAILED

    outcomes = [line for line in parsed(json_lines) if line["logger"] == "core.worker"]
    assert [(line["job"], line["outcome"], line["level"]) for line in outcomes] == [
        (ok.name, "succeeded", "info"),
        (flaky.name, "retry_scheduled", "info"),
        (flaky.name, "succeeded", "info"),
        (refused.name, "failed", "warning"),
    ]
    for line in outcomes:
        assert (line["tenant"], line["kind"], line["worker"]) == ("acme", "SYNC_PAYMENT", "w1")
        assert line["target"].startswith("payment p") and line["duration_ms"] >= 0
        assert line["event"] == "sync job " + line["outcome"].replace("_", " ")
    assert outcomes[1]["reason"] == "QUICKBOOKS_UNAVAILABLE" and outcomes[1]["next_attempt_time"]
    assert (outcomes[2]["attempts"], "reason" in outcomes[2]) == (2, False)
    failed = outcomes[3]
    assert (failed["reason"], failed["intuit_tid"], failed["error"]) == (
        "QUICKBOOKS_CLOSED_PERIOD",
        "tid-closed",
        "the books are closed",
    )
