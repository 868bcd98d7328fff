"""Fault injection: make the next N matching API calls fail the way real networks and QBO fail.

Kinds:
- ``http500``: 500 with a JSON ``SystemFault`` (code 10000); ``"body": "html"`` sends an HTML page instead.
- ``http503``: 503 with an HTML page (what a load balancer answers); ``"body": "json"`` for a JSON fault.
- ``throttle`` / ``throttle_xml``: 429 ThrottleExceeded (code 3001) as JSON or as QBO's XML.
- ``timeout``: hold the request ``seconds`` (default 5) without answering, then drop the connection.
- ``reset``: close the socket (TCP RST) without answering, before doing anything.
- ``commit_then_reset`` / ``commit_then_500``: apply the request, then lose the answer (RST, or a 500).
  With a ``requestid`` the committed answer is kept for replay, as QBO keeps it.
- ``auth401``: 401 AuthenticationFault as if the token had just expired.
- ``none``: the call goes through untouched; armed before other kinds, it aims them at later calls.
- ``item_fault``: one *item* of a batch is refused alone (a Fault in its ``BatchItemResponse``, code
  ``6000`` or the code in ``body``) and not applied, the others landing (batch.py). Matched per write item,
  never by whole calls: ``entity`` is the item's (Payment, Purchase, ...), ``operation`` its own (create,
  update, delete, void, or "write"); ``count`` items are refused.

Scheduled changes (``schedule_deactivation``): someone makes a record inactive in the QBO UI just before the
(N+1)th API call to its realm from now, which lands in the middle of a sync (the fake's
``deactivate_customer(after_calls=N)``). Every API call to the realm counts, reads included.

Filters (all optional): ``realm_id``, ``method`` (GET/POST), ``entity`` (Customer, ...; "query", "batch",
"oauth" for the token endpoint), ``operation`` (create, update, delete, void, read, query, batch, token, or
"write" for create/update/delete/void).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass

from .shapes import JsonDict

KINDS = frozenset(
    {
        "http500",
        "http503",
        "throttle",
        "throttle_xml",
        "timeout",
        "reset",
        "commit_then_reset",
        "commit_then_500",
        "auth401",
        "none",
        "item_fault",
    }
)
# Kinds taken by batch items (`take_item`), never by whole calls (`take`).
ITEM_KINDS = frozenset({"item_fault"})
WRITE_OPERATIONS = frozenset({"create", "update", "delete", "void"})
_ids = itertools.count(1)


@dataclass
class FaultRule:
    """One armed fault."""

    kind: str
    remaining: int = 1
    realm_id: str | None = None
    method: str | None = None
    entity: str | None = None
    operation: str | None = None
    seconds: float = 5.0
    body: str | None = None
    id: int = 0
    fired: int = 0

    def matches(self, realm_id: str | None, method: str, entity: str | None, operation: str | None) -> bool:
        """Whether a request with these attributes triggers this rule."""
        if self.realm_id is not None and self.realm_id != realm_id:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.entity is not None and (entity or "").lower() != self.entity.lower():
            return False
        if self.operation is not None:
            wanted = self.operation.lower()
            if wanted == "write":
                return operation in WRITE_OPERATIONS
            return wanted == (operation or "")
        return True


class FaultBook:
    """The armed faults, consumed first-armed first, and the scheduled deactivations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        # (realm, entity, id) -> API calls to let through before the record is made inactive
        self._deactivations: dict[tuple[str, str, str], int] = {}

    def schedule_deactivation(self, realm_id: str, entity: str, entity_id: str, after_calls: int) -> None:
        """Make the record inactive just before the (after_calls+1)th API call to the realm from now."""
        if after_calls < 0:
            raise ValueError("after_calls must be >= 0")
        with self._lock:
            self._deactivations[(realm_id, entity, entity_id)] = after_calls

    def cancel_deactivation(self, realm_id: str, entity: str, entity_id: str) -> None:
        with self._lock:
            self._deactivations.pop((realm_id, entity, entity_id), None)

    def due_deactivations(self, realm_id: str | None) -> list[tuple[str, str]]:
        """Counts one API call to the realm; (entity, id) of each record to make inactive before it runs."""
        due = []
        with self._lock:
            for key, calls_left in list(self._deactivations.items()):
                if key[0] != realm_id:
                    continue
                if calls_left == 0:
                    due.append((key[1], key[2]))
                    del self._deactivations[key]
                else:
                    self._deactivations[key] = calls_left - 1
        return due

    def arm(self, spec: JsonDict) -> FaultRule:
        """Add a rule from the admin payload; raises ``ValueError`` on a bad one."""
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}")
        count = int(spec.get("count", 1))
        if count < 1:
            raise ValueError("count must be >= 1")
        rule = FaultRule(
            kind=str(kind),
            remaining=count,
            realm_id=str(spec["realm_id"]) if spec.get("realm_id") is not None else None,
            method=spec.get("method"),
            entity=spec.get("entity"),
            operation=spec.get("operation"),
            seconds=float(spec.get("seconds", 5.0)),
            body=spec.get("body"),
            id=next(_ids),
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def take(self, realm_id: str | None, method: str, entity: str | None, operation: str | None) -> FaultRule | None:
        """The first rule matching the request, with one use consumed, or None."""
        return self._take(realm_id, method, entity, operation, items=False)

    def take_item(self, realm_id: str | None, entity: str, operation: str) -> FaultRule | None:
        """The first item rule matching a batch's write item, with one use consumed, or None."""
        return self._take(realm_id, "POST", entity, operation, items=True)

    def _take(
        self, realm_id: str | None, method: str, entity: str | None, operation: str | None, *, items: bool
    ) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if (rule.kind in ITEM_KINDS) == items and rule.matches(realm_id, method, entity, operation):
                    rule.remaining -= 1
                    rule.fired += 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def list(self) -> list[JsonDict]:
        """Armed rules, for the admin API."""
        with self._lock:
            return [asdict(rule) for rule in self._rules]

    def clear(self) -> None:
        """Disarm everything, scheduled deactivations included."""
        with self._lock:
            self._rules.clear()
            self._deactivations.clear()
