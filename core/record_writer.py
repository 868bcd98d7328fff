"""R6 Resync updates, never duplicates; R7 Exactly once: how one CRM record's QuickBooks record is written.

Before a create is sent, its intent (`create_started`) is committed (core.sync_run: a plan's intents
together, up front); what QuickBooks confirmed is committed with the run's next transaction. So a crash
anywhere loses nothing QuickBooks has: a create whose answer was not committed yet is found again — by
the request id QuickBooks replays and by the marker in the record's private note — not written twice. A record
deleted or voided in QuickBooks is recreated under a new generation, so that its create is not answered
with the replay of the first one.

Several records' writes may share one request (`RecordWriter.write_many`, QuickBooks' batch endpoint): each
is prepared, and its answer settled, by the same steps as a lone write (`write`), with its own request id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from core.accounting import BatchWrite, InvoiceSpec, QuickBooksRef, TxnKind, TxnSpec, request_id_for, spec_fingerprint
from core.domain import COMPANY_SEPARATOR, EntityRef, SyncAction, SyncRecord, SyncResult
from core.errors import AccountingError, BookkeepingError, RecordGoneError, StaleRecordError
from core.sync_run import SyncRun

DOC_NUMBER_TAKEN = "DOC_NUMBER_TAKEN"

# Of two writes of one record in a job (lowered, then raised), the result reports the stronger.
_STRENGTH = [SyncAction.UNCHANGED, SyncAction.LINKED, SyncAction.UPDATED, SyncAction.CREATED]


def marker_for(tenant_id: str, entity: EntityRef, generation: int) -> str:
    """The tag written into a record's private note so that qbsync can find it again (R7)."""
    suffix = f"/{generation}" if generation else ""
    # A customer's link in a branch's company joins the ids with a control character, which no note may hold.
    shown = entity.id.replace(COMPANY_SEPARATOR, "@")
    return f"[qbsync {tenant_id}/{entity.type.value.lower()}/{shown}{suffix}]"


def _marks(note: str, own: str) -> bool:
    """Whether `note` carries the marker prefix `own` of one of a record's generations ("...]" or ".../2]")."""
    start = note.find(own)
    return start >= 0 and note[start + len(own) : start + len(own) + 1] in ("]", "/")


class SyncResults:
    """What a job did: one result per record, the strongest of its actions."""

    def __init__(self) -> None:
        self._results: list[SyncResult] = []

    def report(self, result: SyncResult) -> None:
        for i, earlier in enumerate(self._results):
            if earlier.entity == result.entity:
                if _STRENGTH.index(result.action) < _STRENGTH.index(earlier.action):
                    result = SyncResult(result.entity, result.quickbooks_id, earlier.action)
                self._results[i] = result
                return
        self._results.append(result)

    def as_list(self) -> list[SyncResult]:
        return list(self._results)


@dataclass(frozen=True)
class Written:
    """A record as written: its sync record, and its total as QuickBooks holds it now (None when nothing
    was sent, the record being unchanged, or when QuickBooks' answer does not say)."""

    record: SyncRecord
    quickbooks_total: Decimal | None = None


SpecBuilder = Callable[[str], TxnSpec]  # the record's spec, given the marker of its generation
OnWritten = Callable[[SyncRecord], None]  # what the caller remembers of what was written


@dataclass(frozen=True)
class WriteItem:
    """One record for `RecordWriter.write_many` to write, as `RecordWriter.write` takes it."""

    entity: EntityRef
    build: SpecBuilder
    on_written: OnWritten
    force: bool = False
    resync: bool = False


@dataclass(frozen=True)
class _Pending:
    """A write ready to be sent (`request`), and what its record becomes once QuickBooks confirms it."""

    item: WriteItem
    record: SyncRecord
    digest: str
    request: BatchWrite
    action: SyncAction
    updates: bool = False  # an update of the record's own QuickBooks record (not a create, nor an adoption)


class RecordWriter:
    """Writes records of one QuickBooks customer (`customer_id`) for one run."""

    def __init__(self, run: SyncRun, customer_id: str, results: SyncResults, *, replaced_customer_id: str = "") -> None:
        self._run = run
        self.customer_id = customer_id
        # The customer `customer_id` replaces (R1), when this run moves records to it: a create sent for the
        # old one and never answered left its record there, so that is where R7 must look for it too.
        self._replaced_customer_id = replaced_customer_id
        self._results = results
        # Set once QuickBooks refused a payment for linking a record deleted there: from then on, what a
        # payment links is checked (one read each, at most once per run) and recreated if gone. Off by
        # default because reads are metered and such deletions are rare.
        self._verify_links = False
        self._confirmed: set[EntityRef] = set()  # records this run wrote, or saw live in QuickBooks
        self._gone: set[EntityRef] = set()  # records a read found deleted or voided in QuickBooks

    def verify_links_from_now_on(self) -> None:
        self._verify_links = True

    def unchanged(self, entity: EntityRef, build: SpecBuilder) -> bool:
        """Whether QuickBooks holds the record as `build` would write it now (as far as qbsync knows)."""
        record = self._run.record(entity)
        return record.quickbooks_id is not None and record.content_hash == spec_fingerprint(build(self._marker(record)))

    def check_live(self, kind: TxnKind, entities: list[EntityRef]) -> None:
        """Reads, in one request, whether the written records of `entities` (all of `kind`) are still live
        in QuickBooks, unless this run knows already: a live one is not rewritten by a resync (R6), a gone
        one is recreated by its next write. One whose SyncToken moved (edited in QuickBooks) is neither:
        a resync rewrites it, from its current SyncToken."""
        records = [
            r
            for e in dict.fromkeys(entities)
            if e not in self._confirmed and e not in self._gone and (r := self._run.record(e)).quickbooks_id
        ]
        if not records:
            return
        live = self._run.accounting.read_live(kind, [r.quickbooks_id for r in records if r.quickbooks_id])
        for record in records:
            found = live.get(record.quickbooks_id or "")
            if found is None:
                self._gone.add(record.entity)
            elif found.sync_token == record.sync_token:
                self._confirmed.add(record.entity)
            else:
                record.sync_token = found.sync_token
                self._run.save(record)

    def write(
        self, entity: EntityRef, build: SpecBuilder, *, force: bool, on_written: OnWritten, resync: bool = False
    ) -> Written:
        """Creates or updates one record (R6), exactly once (R7). `force` writes even when nothing
        changed. `resync` (an explicit sync) reads an unchanged record instead (`check_live`): left alone
        when live, recreated when deleted or voided in QuickBooks, rewritten when edited there."""
        [written] = self.write_many([WriteItem(entity, build, on_written, force=force, resync=resync)])
        if isinstance(written, AccountingError):
            raise written
        return written

    def write_many(self, items: list[WriteItem]) -> list[Written | AccountingError]:
        """`write` for each of `items`, their writes sent together (QuickBooks' batch endpoint; a lone write
        as its single request), answered in the order given. A write QuickBooks refused is answered with the
        error `write` would raise, already acted on as `write` acts on it (a stale record keeps its current
        SyncToken; a gone one is recreated under its next generation, in a further request): the caller
        raises it once the others are kept. Each write keeps its own request id, and every create its
        committed intent, so a batch sent again after its answer was lost writes nothing twice (R7)."""
        answers: dict[int, Written | AccountingError] = {}
        pending: dict[int, _Pending] = {}
        for i, item in enumerate(items):
            prepared = self._prepare(item)
            if isinstance(prepared, Written):
                answers[i] = prepared
            else:
                pending[i] = prepared
        while pending:  # a second round only for records found gone by their update: their creates
            again: dict[int, _Pending] = {}
            for (i, write), reply in zip(pending.items(), self._send(list(pending.values())), strict=True):
                settled = self._settle(write, reply)
                if isinstance(settled, _Pending):
                    again[i] = settled
                else:
                    answers[i] = settled
            pending = again
        return [answers[i] for i in range(len(items))]

    def _prepare(self, item: WriteItem) -> Written | _Pending:
        """What writing `item` takes: nothing (an unchanged record, finished here), or the write to send."""
        entity, build, force = item.entity, item.build, item.force
        record = self._run.record(entity)
        if entity in self._gone:  # found so by a read: recreated, nothing is sent to the gone record
            self._forget_gone(record)
        spec = build(self._marker(record))
        digest = spec_fingerprint(spec)
        unchanged = record.quickbooks_id is not None and record.content_hash == digest
        if unchanged and item.resync and not force:
            self.check_live(spec.kind, [entity])
            if entity in self._gone:
                self._forget_gone(record)
                spec = build(self._marker(record))
                digest = spec_fingerprint(spec)
                unchanged = False
            else:
                force = entity not in self._confirmed  # edited in QuickBooks: rewritten
        if unchanged and not force:
            self._finish(record, digest, None, SyncAction.UNCHANGED, item.on_written)
            return Written(record)
        if record.quickbooks_id:
            # R6: the same QuickBooks record, in place.
            current = QuickBooksRef(spec.kind, record.quickbooks_id, record.sync_token or "0")
            request_id = request_id_for(self._run.tenant, entity, "update", record.sync_token, digest)
            action = SyncAction.UNCHANGED if unchanged else SyncAction.UPDATED
            return _Pending(item, record, digest, BatchWrite(spec, request_id, current), action, updates=True)
        return self._create_once(item, record, spec, digest)

    def _send(self, writes: list[_Pending]) -> list[QuickBooksRef | AccountingError]:
        for write in writes:
            if write.request.ref is None:
                self._run.sending_create(write.record)  # the intent is committed before the create leaves (R7)
        accounting = self._run.accounting
        if len(writes) > 1:
            return accounting.write_many([write.request for write in writes])
        request = writes[0].request
        try:
            if request.ref is None:
                return [accounting.create(request.spec, request_id=request.request_id)]
            return [accounting.update(request.ref, request.spec, request_id=request.request_id)]
        except AccountingError as refused:
            return [refused]

    def _settle(self, write: _Pending, reply: QuickBooksRef | AccountingError) -> Written | AccountingError | _Pending:
        """What QuickBooks' reply to `write` leaves: the record written, the error to raise, or (the record
        found gone by its update) the create of its next generation."""
        record = write.record
        if isinstance(reply, QuickBooksRef):
            self._finish(record, write.digest, reply, write.action, write.item.on_written)
            return Written(record, reply.total)
        if write.updates and isinstance(reply, StaleRecordError):
            # Changed in QuickBooks since qbsync wrote it: keep its current SyncToken, and let the run
            # start over from the newest snapshots (SyncEngine.run) rather than re-send this spec.
            record.sync_token = reply.sync_token
            self._run.save(record)
        elif write.updates and isinstance(reply, RecordGoneError):
            # Deleted or voided in QuickBooks: the new generation's spec is created instead.
            self._forget_gone(record)
            spec = write.item.build(self._marker(record))
            return self._create_once(write.item, record, spec, spec_fingerprint(spec))
        return reply

    def still_live(self, entity: EntityRef, kind: TxnKind) -> bool:
        """False when the record qbsync wrote for `entity` is gone from QuickBooks (deleted or voided
        there); True when it is live or was never written (the write that follows creates it)."""
        if entity in self._gone:
            return False
        if not self._verify_links or entity in self._confirmed:
            return True
        record = self._run.record(entity)
        if not record.quickbooks_id:
            return True
        if self._run.accounting.find_by_marker(kind, self._marker(record), self.customer_id) is None:
            return False
        self._confirmed.add(entity)
        return True

    def _forget_gone(self, record: SyncRecord) -> None:
        """The record is gone from QuickBooks: made ready to be recreated under its next generation."""
        record.quickbooks_id = None
        record.sync_token = None
        record.generation += 1
        record.create_started = False
        self._gone.discard(record.entity)
        self._run.save(record)

    def _create_once(self, item: WriteItem, record: SyncRecord, spec: TxnSpec, digest: str) -> _Pending:
        """R7: a create an earlier attempt sent and never heard back from may exist already: adopt it."""
        tenant = self._run.tenant
        # An intent this run declared and committed, its create not sent yet: nothing to find.
        if record.create_started and not self._run.intent_unsent(record):
            found = self._find_created(spec.kind, self._marker(record))
            if found is not None:
                request_id = request_id_for(tenant, record.entity, "adopt", found.sync_token, digest)
                return _Pending(item, record, digest, BatchWrite(spec, request_id, found), SyncAction.CREATED)
        if isinstance(spec, InvoiceSpec) and spec.doc_number:
            self._check_doc_number_free(record, spec.doc_number)
        if not record.create_started:
            record.create_started = True
            self._run.save(record)
        request_id = request_id_for(tenant, record.entity, "create", record.generation)
        return _Pending(item, record, digest, BatchWrite(spec, request_id), SyncAction.CREATED)

    def _check_doc_number_free(self, record: SyncRecord, doc_number: str) -> None:
        """SPEC §10, InvoiceNumbering.CRM: an invoice about to be created under a number another invoice of the
        company has (typed into QuickBooks, or another CRM's) fails instead, naming both. One of this record's
        own earlier generations (a voided or deleted one) does not count: the number is still this job's.
        Raises: `BookkeepingError` (DOC_NUMBER_TAKEN)."""
        own = marker_for(self._run.tenant, record.entity, 0)[:-1]  # "[qbsync t/invoice/id": any generation
        taken = [i for i in self._run.accounting.invoices_numbered(doc_number) if not _marks(i.private_note, own)]
        if taken:
            raise BookkeepingError(
                f"invoice number {doc_number} is already used in QuickBooks by invoice {taken[0].id}, which is not "
                f"this job's ({record.entity}): change the job number or the invoice number prefix, renumber that "
                "invoice in QuickBooks, or let QuickBooks number invoices (setting invoice_numbering QUICKBOOKS)",
                reason=DOC_NUMBER_TAKEN,
            )

    def _find_created(self, kind: TxnKind, marker: str) -> QuickBooksRef | None:
        found = self._run.accounting.find_by_marker(kind, marker, self.customer_id)
        if found is None and self._replaced_customer_id:
            found = self._run.accounting.find_by_marker(kind, marker, self._replaced_customer_id)
        return found

    def _finish(
        self, record: SyncRecord, digest: str, ref: QuickBooksRef | None, action: SyncAction, on_written: OnWritten
    ) -> None:
        if ref is not None:
            self._confirmed.add(record.entity)
            record.realm_id = self._run.realm_id or record.realm_id  # the company it is in (SPEC §10)
            record.quickbooks_id = ref.id
            record.sync_token = ref.sync_token
            record.quickbooks_type = ref.kind.value
        record.content_hash = digest
        record.create_started = False
        record.mark_synced(self._run.clock.now())
        on_written(record)
        self._run.save(record)
        assert record.quickbooks_id is not None
        self._results.report(SyncResult(record.entity, record.quickbooks_id, action))

    def _marker(self, record: SyncRecord) -> str:
        return marker_for(self._run.tenant, record.entity, record.generation)
