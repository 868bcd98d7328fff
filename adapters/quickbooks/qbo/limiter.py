"""Keeping under QuickBooks' per-company request limits, so that qbsync does not provoke 429s.

Every HTTP request the adapter sends goes through `RequestLimiter.acquire(realm_id)`. The port and
`RateLimits` live in `core.ports`; the in-process limiter (one process, e.g. on SQLite) in
`adapters.inprocess`, the one shared by every process of a PostgreSQL deployment in
`adapters.persistence.sqlalchemy.limiter`. Which one a deployment gets is the composition root's
choice (`adapters.coordination`). The names are re-exported here so that existing imports keep working.
"""

from __future__ import annotations

from adapters.inprocess import InProcessRequestLimiter, UnlimitedRequestLimiter
from core.ports import RateLimits, RequestLimiter

__all__ = ["InProcessRequestLimiter", "RateLimits", "RequestLimiter", "UnlimitedRequestLimiter"]
