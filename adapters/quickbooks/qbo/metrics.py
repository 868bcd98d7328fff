"""The QuickBooks adapter's Prometheus metrics: its HTTP requests by operation and status, their latency,
throttling, resends, token refreshes and the request limiter's wait (recorded by `transport.py`,
`calls.py` and `tokens.py`, served on /metrics by the process: `qbsync.health`).

Labels are bounded sets: `operation` is the HTTP method and the path's first segment after the company
("POST invoice", "GET query"), never an id, a name or a query (`qbo_operation`); `status` the HTTP status,
"none" when no answer came; retry `cause` one of throttled, unauthorized, server_error, transport; token
refresh `outcome` one of refreshed, refused, failed. No tenant or realm label: it would grow with the
customer base (the warnings in the log carry both).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from prometheus_client import Counter, Histogram

# Seconds: QuickBooks answers in tenths of a second, slow ones in tens (timeouts, throttling).
_QBO_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

QBO_REQUESTS = Counter(
    "qbsync_qbo_requests", "HTTP requests sent to the QuickBooks API, by operation and status.", ["operation", "status"]
)
QBO_REQUEST_SECONDS = Histogram(
    "qbsync_qbo_request_duration_seconds",
    "Time a QuickBooks API request took once sent (the limiter's wait excluded), by operation.",
    ["operation"],
    buckets=_QBO_BUCKETS,
)
QBO_THROTTLED = Counter(
    "qbsync_qbo_throttled_responses",
    "Answers of QuickBooks saying it throttled a request (HTTP 429 or Fault 3001), by operation.",
    ["operation"],
)
QBO_RETRIES = Counter(
    "qbsync_qbo_request_retries",
    "QuickBooks requests sent again after a failure, by cause (throttled, unauthorized, server_error, transport).",
    ["cause"],
)
QBO_TOKEN_REFRESHES = Counter(
    "qbsync_qbo_token_refreshes",
    "Access token refreshes at Intuit, by outcome (refreshed, refused, failed).",
    ["outcome"],
)
QBO_LIMITER_WAIT_SECONDS = Histogram(
    "qbsync_qbo_limiter_wait_seconds",
    "Time a QuickBooks request waited for the per-company request limiter before it could be sent.",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0),
)


_SEGMENT = re.compile(r"[a-z]{1,40}")


def qbo_operation(method: str, url: str) -> str:
    """A bounded label for a QuickBooks API request: the HTTP method and the path's first segment after
    /company/{realm}/ ("POST invoice", "GET query"), never an id; "other" for anything else."""
    parts = urlsplit(url).path.strip("/").split("/")
    segment = "other"
    if "company" in parts:
        rest = parts[parts.index("company") + 2 :]
        if rest and _SEGMENT.fullmatch(rest[0].lower()):
            segment = rest[0].lower()
    return f"{method.upper()} {segment}"
