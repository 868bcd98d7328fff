"""The system clock and id source: the only adapters of the Clock and IdSource ports in production."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from core.ports import Clock, IdSource


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidIdSource(IdSource):
    def new_id(self) -> str:
        return uuid.uuid4().hex
