"""QBO's batch endpoint: `POST /v3/company/<realm>/batch` carrying up to 30 operations, each answered alone.

The body is `{"BatchItemRequest": [{"bId": "0", "operation": "create", "Payment": {...}}, {"bId": "1",
"Query": "SELECT ..."}]}`; the answer `{"BatchItemResponse": [{"bId": "0", "Payment": {...}}, {"bId": "1",
"Fault": {...}}]}`, in any order (matched on `bId`, never on position: QUICKBOOKS.md lists "batch results
matched to the wrong item" among integrators' classic mistakes). Intuit runs the items one after the other,
each succeeding or failing alone; an item does not see what an earlier item of the same batch wrote.

Why not python-quickbooks' `BatchManager` (`batch_create`, `batch_update`): it sends no `requestid` (so a
batch resent after a lost answer would write everything twice), numbers items with random uuids, takes
one operation per batch and no queries. Its `QuickBooks.post` is used instead, so the batch goes through
`QuickBooksClient.process_request` like every call: the request limiter (one batch, one admission), the
timeout, and the classification of 401/429/5xx that `CompanySession.call` retries on.

Limits. A batch is one request to the company's request limiter (one admission, one in flight) and counts
once against QBO's 10 a second and 500 a minute; QBO also allows only 40 batch requests a minute per
company, which the limiter counts in a batch window of its own (`RequestLimiter.acquire(batch=True)`). When
that window is full the adapter sends the items as single requests instead (`batch_room`, system.py
`_batch_now`): each is as cheap as the batch against the other limits, and waiting would hold them up to a
minute.

Idempotency. QBO's `requestid` is a query parameter of the whole batch request (Intuit's SDKs set one per
batch; ≤ 36 characters there, QUICKBOOKS.md), and a repeated one replays the first answer. A batch's
requestid is therefore derived from what it carries: the request ids of its writes, in order
(`batch_request_id`). The same writes sent again — a resend inside `CompanySession.call` after a reset,
or the core retrying the job — carry the same requestid, and QBO replays instead of writing twice; each
item's `bId` is its position in that batch, so the replayed answer maps back onto the same writes. (Our
emulator keeps the replay per item, keyed by the batch's requestid and the item's `bId`, which is the same
thing for a batch of the same writes.) A batch of other writes is another request to QBO: a write whose
earlier answer was lost inside a different batch is found again the way any uncertain create is (its
marker: the recovery below, and the core's look-up before re-creating, R7).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from quickbooks.mixins import DecimalEncoder

from adapters.quickbooks.qbo.mapping import record_json
from adapters.quickbooks.qbo.transport import QuickBooksClient

# Intuit's limit per batch request (QUICKBOOKS.md: ≤ 30; an older page says 10): a longer list is split.
BATCH_MAX_ITEMS = 30
BATCH_REQUEST_ID_MAX = 36

T = TypeVar("T")
Answer = dict[str, Any]


def batches(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """`items` in consecutive runs of at most `BATCH_MAX_ITEMS`: one batch request each."""
    for start in range(0, len(items), BATCH_MAX_ITEMS):
        yield items[start : start + BATCH_MAX_ITEMS]


def batch_request_id(request_ids: Sequence[str]) -> str:
    """The batch's `requestid`: the same for the same writes in the same order, ≤ 36 characters."""
    return hashlib.sha256("|".join(request_ids).encode()).hexdigest()[:BATCH_REQUEST_ID_MAX]


def write_item(bid: str, operation: str, record: Any) -> dict[str, Any]:
    """A create or update item for a python-quickbooks object (its JSON as `mapping.save_record` sends it)."""
    return {"bId": bid, "operation": operation, record.qbo_object_name: json.loads(record_json(record))}


def query_item(bid: str, select: str) -> dict[str, Any]:
    return {"bId": bid, "Query": select}


def send_batch(qb: QuickBooksClient, items: Sequence[dict[str, Any]], *, request_id: str = "") -> dict[str, Answer]:
    """POSTs one batch; its answers by `bId`. An item QBO left out of its answer is absent (the caller treats
    it as not written). A Fault on the whole request raises as any call's does (`QboFault`)."""
    if len(items) > BATCH_MAX_ITEMS:
        raise ValueError(f"a batch holds at most {BATCH_MAX_ITEMS} items, not {len(items)}")
    url = f"{qb.api_url}/company/{qb.company_id}/batch"
    body = json.dumps({"BatchItemRequest": list(items)}, cls=DecimalEncoder)
    answer = qb.post(url, body, request_id=request_id or None)
    answers = answer.get("BatchItemResponse") if isinstance(answer, dict) else None
    return {str(item.get("bId")): item for item in answers or [] if isinstance(item, dict)}
