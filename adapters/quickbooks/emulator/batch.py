"""``POST /v3/company/{realm}/batch``: up to 30 operations in one request, each answered alone.

Items run one after the other, as QBO runs them, each through the same store calls (and so the same
validation and rules) as the single request it stands for: a create or update of any API-writable entity,
a delete or void, or a ``Query``. A refused item answers its own ``Fault`` (``{"bId", "Fault": {"Error":
[...], "type"}}``) and the others still land. More than 30 items refuse the whole request.

Replay. The batch's ``requestid`` (a query parameter of the whole request, as for a single write) is kept
per item: an item answered once under a requestid replays that answer — a Fault included, as QBO replays
a refused request's answer — when a batch with the same requestid carries the same ``bId`` again. A batch
resent whole after a lost answer so replays whole; an item new to the requestid runs. Queries are not
kept (they write nothing).

Injected item faults (``faults.py``, kind ``item_fault``): the next matching write item answers a Fault
(code ``6000``, a business validation error, unless the rule's ``body`` names another code) without being
applied, while the other items of the batch land.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import errors
from .errors import QboFault
from .shapes import JsonDict
from .store import ENTITIES, TAX_ENTITIES, Realm

MAX_BATCH_ITEMS = 30

# (entity, operation) of a write item -> the Fault to answer it with instead of applying it, or None.
ItemFault = Callable[[str, str], QboFault | None]


def run_batch(realm: Realm, body: Any, request_id: str | None, item_fault: ItemFault) -> tuple[list[JsonDict], int]:
    """The ``BatchItemResponse`` list, and how many of its answers were replayed. Raises ``QboFault`` when
    the request as a whole is refused. The caller holds the realm's lock: the batch runs as one call."""
    items = body.get("BatchItemRequest") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise errors.required_missing("BatchItemRequest")
    if len(items) > MAX_BATCH_ITEMS:
        # *guess* at the code; QBO refuses the whole batch above 30 operations.
        raise QboFault(
            "2050",
            "Invalid Request",
            f"Number of items in a batch request exceeded the limit of {MAX_BATCH_ITEMS}: {len(items)}",
        )
    results: list[JsonDict] = []
    replayed = 0
    for item in items:
        bid = str(item.get("bId", "")) if isinstance(item, dict) else ""
        key = (request_id, bid) if request_id else None
        if key is not None and key in realm.batch_replay:
            results.append(realm.batch_replay[key])
            replayed += 1
            continue
        answer = _run_item(realm, item, bid, item_fault)
        if key is not None and "QueryResponse" not in answer:
            realm.batch_replay[key] = answer
        results.append(answer)
    return results, replayed


def _run_item(realm: Realm, item: Any, bid: str, item_fault: ItemFault) -> JsonDict:
    try:
        if not isinstance(item, dict):
            raise errors.invalid_property("BatchItemRequest items must be JSON objects")
        if "Query" in item:
            return {"bId": bid, "QueryResponse": realm.query(str(item["Query"]))}
        entity = next((key for key in item if key in ENTITIES), None)
        if entity is None:
            raise errors.required_missing("BatchItemRequest entity")
        if entity in TAX_ENTITIES:
            raise errors.unsupported(f"Operation Create/Update is not supported for {entity}; use the TaxService.")
        payload = item[entity]
        if not isinstance(payload, dict):
            raise errors.invalid_property(f"{entity} must be a JSON object")
        operation = str(item.get("operation", "create")).lower()
        if str(item.get("optionsData", "")).lower() == "void":
            operation = "void"
        injected = item_fault(entity, operation)
        if injected is not None:
            raise injected
        return {"bId": bid, entity: _write(realm, entity, operation, payload)}
    except QboFault as fault:
        return {"bId": bid, "Fault": {"Error": [fault.entry()], "type": fault.fault_type}}


def _write(realm: Realm, entity: str, operation: str, payload: JsonDict) -> JsonDict:
    if operation == "create":
        return realm.create(entity, payload)
    if operation == "update":
        return realm.update(entity, payload)
    if operation == "delete":
        return realm.delete(entity, payload)
    if operation == "void":
        return realm.void(entity, payload)
    raise errors.unsupported(f"Batch operation {operation!r}")
