"""How every qbsync process logs: structlog over the standard library, configured once by the CLI.

Everything goes through one handler on the root logger, so qbsync's own `logging` calls (the core logs
through stdlib `logging` only), the libraries' (grpc, SQLAlchemy, urllib3, alembic) and `structlog`
loggers all come out the same way:

- JSON, one object per line, when stderr is not a terminal (a supervisor, a container, a file): every
  `extra=` field a call passed is a key of its own (`what`, `attempt`, `intuit_tid`, ...);
- readable text (structlog's console renderer: time, level, event, then key=value) on a terminal.

`QBSYNC_LOG_FORMAT` (`auto`, the default, `json` or `text`) and `QBSYNC_LOG_LEVEL` (`DEBUG`, `INFO`, the
default, `WARNING`, `ERROR`) override that; `--verbose` means DEBUG.

Nothing is meant to log a secret: tokens, keys and passwords are kept out of messages where they are
made. `redact` is the belt over those braces: the last step before a line is written, it masks values
under secret-sounding keys (`authorization`, `access_token`, `client_secret`, ...), `Bearer`/`Basic`
credentials, qbsync API keys (the key id is kept, the secret masked), Fernet keys, `token=` pairs of
form bodies and JSON, and the configured secrets themselves (`register_secret`), in every value —
the message and a traceback included.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from qbsync.config import ConfigError

LOG_FORMAT_ENV = "QBSYNC_LOG_FORMAT"
LOG_LEVEL_ENV = "QBSYNC_LOG_LEVEL"
FORMATS = ("auto", "json", "text")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDACTED = "[REDACTED]"

# Keys whose value is a secret whatever it looks like (compared lower-case, `-` read as `_`).
_SECRET_KEY = re.compile(
    r"(^|_)(authorization|proxy_authorization|cookie|set_cookie|password|passwd|secret|client_secret|"
    r"api_key|apikey|key_secret|encryption_key|encryption_keys|fernet_key|token|access_token|refresh_token|"
    r"id_token|bearer)$"
)
# Secrets recognisable by their shape wherever they appear in a value.
_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # An HTTP credential: "Authorization: Bearer <token>", "Basic <base64 id:secret>" (long enough not to
    # be words: "a Bearer token" stays).
    (re.compile(r"(?i)(?<![/\w])(bearer)(\s+)(?!HTTP/)[A-Za-z0-9._~+/=-]{8,}"), rf"\1\2{REDACTED}"),
    (re.compile(r"\b(Basic)(\s+)[A-Za-z0-9+/]{12,}={0,2}"), rf"\1\2{REDACTED}"),
    # A qbsync API key (core/auth.py: qbs_<key id>_<secret>): the key id names it, the secret is masked.
    (re.compile(r"\b(qbs_[A-Za-z0-9-]+)_[A-Za-z0-9_-]+"), rf"\1_{REDACTED}"),
    # OAuth fields in a form body, a query string or JSON.
    (
        re.compile(r"(?i)\b(access_token|refresh_token|id_token|client_secret|password)=[^&\s\"',;]+"),
        rf"\1={REDACTED}",
    ),
    # An OAuth authorization code (a redirect's ?code=...); short "code=" values are QuickBooks' error codes.
    (re.compile(r"(?i)\b(code)=[^&\s\"',;]{10,}"), rf"\1={REDACTED}"),
    (
        re.compile(
            r"(?i)([\"'](?:access_token|refresh_token|id_token|client_secret|password)[\"']\s*:\s*)[\"'][^\"']*[\"']"
        ),
        rf'\1"{REDACTED}"',
    ),
    # A Fernet key: 32 bytes as URL-safe base64, 44 characters ending in "=".
    (re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}=(?![A-Za-z0-9_=-])"), REDACTED),
)
MIN_REGISTERED_SECRET = 8  # shorter values would mask ordinary words

_registered: set[str] = set()
_registered_guard = threading.Lock()


def register_secret(*values: str) -> None:
    """Masks these exact values in every log line from now on (the configured encryption keys, the Intuit
    app's client secret). Values shorter than MIN_REGISTERED_SECRET characters are ignored."""
    with _registered_guard:
        _registered.update(v for v in values if v and len(v) >= MIN_REGISTERED_SECRET)


def redact_text(text: str) -> str:
    """`text` with every secret it visibly holds masked."""
    with _registered_guard:
        literals = sorted(_registered, key=len, reverse=True)
    for literal in literals:
        if literal in text:
            text = text.replace(literal, REDACTED)
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redacted(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key.lower().replace("-", "_")) and value not in (None, "", b""):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {str(k): _redacted(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redacted("", v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact_text(str(value))  # what a renderer would print anyway (a repr may carry a secret)


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The structlog processor: every key and value of the event, masked as the module docstring says."""
    return {key: _redacted(key, value) for key, value in event_dict.items()}


@dataclass(frozen=True)
class LogSettings:
    """How to log: `format` "json" or "text" (resolved from "auto"), `level` a `logging` level."""

    format: str
    level: int

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], *, verbose: bool = False, stream: TextIO | None = None
    ) -> LogSettings:
        """From QBSYNC_LOG_FORMAT and QBSYNC_LOG_LEVEL; `verbose` forces DEBUG; "auto" is JSON unless
        `stream` (stderr by default) is a terminal. Raises ValueError naming the variable that is wrong."""
        chosen = environ.get(LOG_FORMAT_ENV, "").strip().lower() or "auto"
        if chosen not in FORMATS:
            raise ConfigError(LOG_FORMAT_ENV, f"must be one of {', '.join(FORMATS)}, not {chosen!r}")
        if chosen == "auto":
            chosen = "text" if _is_terminal(stream or sys.stderr) else "json"
        level_name = environ.get(LOG_LEVEL_ENV, "").strip().upper() or "INFO"
        if level_name not in LEVELS:
            raise ConfigError(LOG_LEVEL_ENV, f"must be one of {', '.join(LEVELS)}, not {level_name!r}")
        return cls(chosen, logging.DEBUG if verbose else logging.getLevelNamesMapping()[level_name])


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a line is written (click's test runner swaps it), as
    `logging.lastResort` does."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        logging.Handler.__init__(self, level)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


_OURS = "_qbsync_handler"


def configure(settings: LogSettings, *, stream: TextIO | None = None, secrets: Iterable[str] = ()) -> logging.Handler:
    """Routes the standard library's logging and structlog through one handler on the root logger, as
    `settings` say, and returns that handler. `stream` (default: stderr at the time of each line) is where
    lines go. Idempotent: a second call replaces the handler the first installed; handlers others put on
    the root (pytest's) are left alone. `secrets` are passed to `register_secret`."""
    register_secret(*secrets)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    # What a stdlib record goes through before the shared steps: its level, logger name and extra= fields.
    foreign: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        timestamper,
    ]
    renderer: Processor
    if settings.format == "json":
        renderer = structlog.processors.JSONRenderer(default=str)
        tracebacks: Processor = structlog.processors.format_exc_info
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_is_terminal(stream or sys.stderr), sort_keys=False)
        tracebacks = structlog.processors.format_exc_info  # rendered as text, so that redact sees it
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            tracebacks,
            redact,
            renderer,
        ],
    )
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(formatter)
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level)
    # Alembic narrates every plugin it loads at INFO; an operator only needs to hear about problems.
    logging.getLogger("alembic").setLevel(logging.DEBUG if settings.level <= logging.DEBUG else logging.WARNING)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.PositionalArgumentsFormatter(),
            timestamper,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return handler
