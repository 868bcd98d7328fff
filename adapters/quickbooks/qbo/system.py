"""`AccountingSystem` over python-quickbooks: one tenant's QuickBooks Online company.

Reads go through `CompanySession.call` as plain JSON (python-quickbooks' `get_single_object` and
`query`); writes build python-quickbooks objects (`mapping.py`) and `save(qb=..., request_id=...)` them.
QBO Faults are turned into the domain's errors here, where the operation's context (which customer,
which setting, which linked record) is known — see `_refusal`. Each write hands its `WriteFence` to
`CompanySession.call`, which checks it before every request of the write leaves (the resend under a fresh
requestid included).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from quickbooks.objects.invoice import Invoice as QboInvoice
from quickbooks.objects.payment import Payment as QboPayment
from quickbooks.objects.preferences import Preferences

from adapters.quickbooks.qbo.batch import batch_request_id, batches, query_item, send_batch, write_item
from adapters.quickbooks.qbo.calls import CompanySession
from adapters.quickbooks.qbo.changes import changed_since
from adapters.quickbooks.qbo.lists import read_list_entry
from adapters.quickbooks.qbo.liveness import active_customers, read_amounts, read_live
from adapters.quickbooks.qbo.lookups import CompanyLookups
from adapters.quickbooks.qbo.mapping import (
    QboTxn,
    accounting_customer,
    customer_object,
    entity_name,
    is_voided,
    kind_of,
    save_record,
    total_of,
    txn_object,
)
from adapters.quickbooks.qbo.queries import PAGE_SIZE, escape, page_select, query_all, query_page
from adapters.quickbooks.qbo.settings import (
    ITEM_SETTINGS,
    SETTING_INVALID,
    SettingsResolver,
    setting_error,
    settings_maybe_used,
)
from adapters.quickbooks.qbo.transport import QboFault, QuickBooksClient, tagged
from core.accounting import (
    AccountingCustomer,
    BatchWrite,
    ChangedEntity,
    ChangedRecord,
    CustomerLookup,
    DepositLineKind,
    DepositSpec,
    InvoiceSpec,
    NewCustomer,
    NumberedInvoice,
    PaymentSpec,
    QuickBooksAmounts,
    QuickBooksRef,
    RefundSpec,
    Tracking,
    TxnKind,
    TxnSpec,
)
from core.company_lists import ListEntry, ListKind
from core.company_preferences import CompanyPreferences
from core.company_tax import SalesTax
from core.connection import PRODUCTION, ClassTracking, ListRef
from core.currency import CompanyCurrency
from core.errors import (
    AccountingError,
    AccountingUnavailableError,
    BookkeepingError,
    CustomerUnusableError,
    DuplicateNameError,
    LinkedRecordGoneError,
    PaymentAlreadyDepositedError,
    ReconnectRequiredError,
    RecordGoneError,
    StaleRecordError,
    ThrottledError,
)
from core.money import ZERO
from core.ports import UNFENCED, AccountingSystem, CustomerCreate, UnitOfWorkFactory, WriteFence

log = logging.getLogger(__name__)

PRODUCTION_APP = "https://app.qbo.intuit.com"
SANDBOX_APP = "https://app.sandbox.qbo.intuit.com"
CLOSED_PERIOD = "QUICKBOOKS_CLOSED_PERIOD"
PAYMENT_ALREADY_DEPOSITED = "PAYMENT_ALREADY_DEPOSITED"
DOC_NUMBER_TAKEN = "DOC_NUMBER_TAKEN"  # SPEC §10: an invoice number QuickBooks already holds, refused (6140)
# How many pages (of PAGE_SIZE, newest first) of Deposits are read when looking for one: a deposit names no
# customer to narrow the query by, and the one looked for — a create whose answer was lost, or the deposit
# holding a payment — is among the newest. Bounded so that a company with years of deposits costs at most
# this many reads (*a judgement*: 2000 deposits is years of daily payouts from a few processors).
DEPOSIT_PAGES = 2
REQUEST_ID_MAX = 50


class QuickBooksAccountingSystem(AccountingSystem):
    """One tenant's company. Thread-safe: workers of one process share it."""

    def __init__(
        self,
        session: CompanySession,
        uow_factory: UnitOfWorkFactory,
        *,
        lookups: CompanyLookups,
    ) -> None:
        """`lookups`: the settings' look-ups, shared by the process's companies (lookups.py)."""
        self.session = session
        self._settings = SettingsResolver(session, uow_factory, lookups)

    # --- customers ---------------------------------------------------------------------------------

    def find_customers(self, display_name: str, email: str) -> list[AccountingCustomer]:
        rows = query_all(self.session, "Customer", _customer_where(display_name, email), what="looking up customers")
        return _active_customers(rows)

    def find_customers_many(self, lookups: Sequence[CustomerLookup]) -> list[list[AccountingCustomer]]:
        found: list[list[AccountingCustomer]] = []
        for chunk in batches(lookups):
            if not self._batch_now(chunk):
                found.extend(self.find_customers(lookup.display_name, lookup.email) for lookup in chunk)
                continue
            items = [
                query_item(str(i), page_select("Customer", _customer_where(lookup.display_name, lookup.email)))
                for i, lookup in enumerate(chunk)
            ]
            answers = self.session.call(
                partial(send_batch, items=items), write=False, what="looking up customers (batch)"
            )
            for i, lookup in enumerate(chunk):
                response = (answers.get(str(i)) or {}).get("QueryResponse")
                rows = response.get("Customer", []) if isinstance(response, dict) else None  # none found: {}
                if not isinstance(rows, list) or len(rows) >= PAGE_SIZE:
                    # A refused query, or a full page (more rows to page through): asked alone, as the single
                    # look-up does it, so the answer and its errors are the single look-up's.
                    found.append(self.find_customers(lookup.display_name, lookup.email))
                else:
                    found.append(_active_customers(rows))
        return found

    def create_customer(
        self, customer: NewCustomer, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> AccountingCustomer:
        def save(qb: QuickBooksClient) -> AccountingCustomer:
            return accounting_customer(save_record(customer_object(customer), qb, request_id))

        try:
            return self.session.call(
                save,
                write=True,
                what="creating a customer",
                recover=lambda: self._our_customer(customer),
                fence=fence,
            )
        except QboFault as fault:
            if "6240" in fault.codes:
                # Our own create may have committed on an attempt whose answer was lost, and a QBO that
                # ignored the requestid replay would then call it a duplicate: check before saying so.
                ours = self._our_customer(customer)
                if ours is not None:
                    return ours
                raise tagged(DuplicateNameError(customer.display_name), fault.intuit_tid) from None
            raise _rejected("create the customer " + repr(customer.display_name), fault) from None

    def create_customers_many(
        self, creates: Sequence[CustomerCreate], *, fence: WriteFence = UNFENCED
    ) -> list[AccountingCustomer | Exception]:
        results: list[AccountingCustomer | Exception] = []
        for chunk in batches(creates):
            if self._batch_now(chunk):
                results.extend(self._create_customer_batch(chunk, fence))
                continue
            for create in chunk:
                results.append(self._create_customer_alone(create, fence))
        return results

    def _create_customer_batch(
        self, chunk: Sequence[CustomerCreate], fence: WriteFence
    ) -> list[AccountingCustomer | Exception]:
        """One batch request for the creates of `chunk` (its requestid derived from theirs, batch.py), each
        settled as its single create would be:
        - every create's own fence is checked before each request leaves (`_CreateFences`): one that refuses
          is answered with its fence's error and the request goes without it, the others' still go;
        - after a send whose outcome is uncertain, a create already made (`_our_customer`: its DisplayName
          and the note with its marker) is adopted, not sent again (R7);
        - a create QBO refuses inside the batch is sent alone through `create_customer`, under its own request
          id: the error is then exactly the single create's (a 6240 first checked against our own lost create,
          R2), and the batch's requestid never replays that refusal on a later attempt. One more request, on
          the error path only."""
        results: dict[int, AccountingCustomer | Exception] = {}
        pending = dict(enumerate(chunk))
        items = {i: write_item(str(i), "create", customer_object(c.customer)) for i, c in pending.items()}

        def recover() -> dict[str, Any] | None:
            for i, create in list(pending.items()):
                ours = self._our_customer(create.customer)
                if ours is not None:
                    results[i] = ours
                    del pending[i]
            return {} if not pending else None

        answers: dict[str, Any] = {}
        uncertain = False  # an earlier request of this batch may have reached QuickBooks
        while pending:
            if uncertain and recover() is not None:
                break
            fences = _CreateFences(fence, pending, results)
            request_id = batch_request_id([create.request_id for create in pending.values()])
            try:
                answers = self.session.call(
                    partial(_send_pending, items=items, pending=pending, request_id=request_id),
                    write=True,
                    what=f"creating {len(pending)} customers (batch)",
                    recover=recover,
                    fence=fences,
                )
                break
            except _CreatesFenced:
                uncertain = uncertain or fences.attempts > 1  # the attempts before the refused one were sent
            except QboFault as fault:
                # The whole batch refused: each create goes alone, and says for itself what is wrong.
                log.warning("quickbooks refused a batch: %s", fault, extra={"intuit_tid": fault.intuit_tid})
                break
        for i, create in pending.items():
            answer = answers.get(str(i)) or {}
            if isinstance(answer.get("Customer"), dict) and "Fault" not in answer:
                results[i] = accounting_customer(_Obj(answer["Customer"]))
            else:
                results[i] = self._create_customer_alone(create, fence)
        return [results[i] for i in range(len(chunk))]

    def _create_customer_alone(self, create: CustomerCreate, fence: WriteFence) -> AccountingCustomer | Exception:
        """The create as a single `create_customer`: its customer, or its own refusal as a value. What concerns
        the request rather than the create (unavailable, throttled, reconnect, the batch's own `fence`) is
        raised."""
        fence.check()
        try:
            return self.create_customer(create.customer, request_id=create.request_id, fence=create.fence)
        except (AccountingUnavailableError, ThrottledError, ReconnectRequiredError):
            raise
        except Exception as refused:  # noqa: BLE001 - its refusal or its fence's: that create's answer alone
            return refused

    def _our_customer(self, customer: NewCustomer) -> AccountingCustomer | None:
        """The customer this very create made, if it exists (same DisplayName and the note qbsync wrote)."""
        where = f"DisplayName = '{escape(customer.display_name)}' AND Active IN (true, false)"
        for row in query_all(self.session, "Customer", where, what="looking up a customer"):
            if customer.note and str(row.get("Notes") or "") == customer.note:
                return accounting_customer(_Obj(row))
        return None

    # --- transactions ------------------------------------------------------------------------------

    def create(self, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED) -> QuickBooksRef:
        settings = self._settings.for_spec(spec)

        def send(rid: str) -> QuickBooksRef:
            def save(qb: QuickBooksClient) -> QuickBooksRef:
                record = txn_object(spec, settings, self.session.connection.sales_tax)
                return _ref_of(spec.kind, save_record(record, qb, rid))

            return self.session.call(
                save,
                write=True,
                what=f"creating the {_label(spec.kind)}",
                recover=lambda: self._find_written(spec.kind, spec.marker, spec.customer_id),
                fence=fence,
            )

        try:
            return send(request_id)
        except QboFault:
            pass
        try:
            return send(_fresh_request_id(request_id))  # see _fresh_request_id
        except QboFault as fault:
            raise self._refusal(spec, fault, action="create") from None

    def update(
        self, ref: QuickBooksRef, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> QuickBooksRef:
        settings = self._settings.for_spec(spec)

        def send(rid: str) -> QuickBooksRef:
            def save(qb: QuickBooksClient) -> QuickBooksRef:
                record = txn_object(spec, settings, self.session.connection.sales_tax)
                record.Id = ref.id
                record.SyncToken = ref.sync_token
                return _ref_of(spec.kind, save_record(record, qb, rid))

            return self.session.call(save, write=True, what=f"updating the {_label(spec.kind)} {ref.id}", fence=fence)

        rid, confirmed = request_id, False
        while True:
            try:
                return send(rid)
            except QboFault as fault:
                if "5010" in fault.codes:
                    raise self._stale(spec.kind, ref) from None
                if fault.codes & {"610", "6000"}:
                    # 610: deleted (or a reference made inactive); 6000: e.g. "voided and cannot be modified".
                    self._read_live(spec.kind, ref.id)  # raises RecordGoneError if gone or voided
                if confirmed:
                    raise self._refusal(spec, fault, action="update", own_id=ref.id) from None
                rid, confirmed = _fresh_request_id(request_id), True  # once more: see _fresh_request_id

    def void(self, ref: QuickBooksRef, *, fence: WriteFence = UNFENCED) -> QuickBooksRef:
        """`POST /{entity}?operation=void` for a Payment or Invoice (python-quickbooks' `void`, which sends
        no requestid); a Purchase — which QBO's API cannot void: its reference lists create, read, update and
        delete only, and the emulator answers its void as unsupported as QBO does — is deleted
        (`?operation=delete`, with a requestid). Exactly once rests on idempotency, not on a requestid: after
        any Fault the record is read, and one voided (or a Purchase deleted) already is the answer; a stale
        SyncToken is replaced by the current one once (a void changes no field the CRM wrote)."""
        if ref.kind is TxnKind.DEPOSIT:
            raise BookkeepingError(f"qbsync does not void deposits (deposit {ref.id})")
        entity = entity_name(ref.kind)
        label = _label(ref.kind)
        token = ref.sync_token
        for attempt in range(2):

            def send(qb: QuickBooksClient, sync_token: str = token) -> dict[str, Any]:
                body = {"Id": ref.id, "SyncToken": sync_token}
                if entity == "Purchase":
                    request_id = request_id_for_void(ref.id, sync_token)
                    return dict(qb.delete_object(entity, json.dumps(body), request_id=request_id) or {})
                record = (QboPayment if entity == "Payment" else QboInvoice)()
                record.Id, record.SyncToken = ref.id, sync_token
                return dict(record.void(qb=qb) or {})

            try:
                answer = self.session.call(send, write=True, what=f"voiding the {label} {ref.id}", fence=fence)
            except QboFault as fault:
                current = self._read(entity, ref.id)
                if current is None:
                    if entity == "Purchase":
                        return QuickBooksRef(ref.kind, ref.id, token, ZERO)  # deleted already: done
                    raise RecordGoneError(f"the {label} {ref.id} was deleted in QuickBooks") from None
                if is_voided(current):
                    return QuickBooksRef(ref.kind, ref.id, str(current.get("SyncToken", token)), ZERO)
                fresh = str(current.get("SyncToken", token))
                if attempt == 0 and fresh != token:
                    token = fresh
                    continue
                raise _rejected(f"void the {label} {ref.id}", fault) from None
            saved = dict(answer.get(entity) or {})
            return QuickBooksRef(ref.kind, ref.id, str(saved.get("SyncToken", token)), ZERO)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def write_many(
        self, writes: Sequence[BatchWrite], *, fence: WriteFence = UNFENCED
    ) -> list[QuickBooksRef | AccountingError]:
        results: list[QuickBooksRef | AccountingError] = []
        for chunk in batches(writes):
            if self._batch_now(chunk):
                results.extend(self._write_batch(chunk, fence))
            else:
                results.extend(self._write_alone(write, fence) for write in chunk)
        return results

    def batch_room(self) -> bool:
        return self.session.batch_room()

    def _batch_now(self, chunk: Sequence[object]) -> bool:
        """Whether `chunk` goes as one batch request: it holds more than one item and the company's batch
        window has room (QBO allows 40 batch requests a minute). When it is full the items go as single
        requests, each as cheap against the other limits as the batch, rather than wait up to a minute."""
        return len(chunk) > 1 and self.batch_room()

    def _write_batch(self, chunk: Sequence[BatchWrite], fence: WriteFence) -> list[QuickBooksRef | AccountingError]:
        """One batch request for `chunk` (see batch.py for its requestid). A write whose settings do not hold
        is answered with their error, unsent, as the single write raises it before sending. A write QBO
        refuses inside the batch is confirmed as a single write under its own request id: the batch's
        requestid would replay the refusal on every later attempt of the same writes (see
        `_fresh_request_id`), and the single write turns the Fault into the domain's error with its
        context (`_refusal`, the SyncToken read of `_stale`). One more request, on the error path only."""
        results: dict[int, QuickBooksRef | AccountingError] = {}
        pending: dict[int, BatchWrite] = {}
        items: dict[int, dict[str, Any]] = {}
        records: dict[int, QboTxn] = {}
        for i, write in enumerate(chunk):
            try:
                settings = self._settings.for_spec(write.spec)
            except BookkeepingError as refused:
                results[i] = refused
                continue
            record = txn_object(write.spec, settings, self.session.connection.sales_tax)
            if write.ref is not None:
                record.Id, record.SyncToken = write.ref.id, write.ref.sync_token
            items[i] = write_item(str(i), "create" if write.ref is None else "update", record)
            records[i], pending[i] = record, write
        request_id = batch_request_id([write.request_id for write in chunk])

        def recover() -> dict[str, Any] | None:
            # The batch may have committed with its answer lost: a create found by its marker is not sent
            # again (should QBO not replay the requestid); updates rely on the replay, and a re-applied one
            # would only meet a stale SyncToken (5010), which is never re-applied (`update`).
            for i, write in list(pending.items()):
                if write.ref is None:
                    found = self._find_written(write.spec.kind, write.spec.marker, write.spec.customer_id)
                    if found is not None:
                        results[i] = found
                        del pending[i]
            return {} if not pending else None

        answers: dict[str, Any] = {}
        if pending:
            try:
                answers = self.session.call(
                    lambda qb: send_batch(qb, [items[i] for i in pending], request_id=request_id),
                    write=True,
                    what=f"writing {len(pending)} records (batch)",
                    recover=recover,
                    fence=fence,
                )
            except QboFault as fault:
                # The whole batch refused (QBO has no documented reason for it with valid items): each write
                # goes alone, and says for itself what is wrong.
                log.warning("quickbooks refused a batch: %s", fault, extra={"intuit_tid": fault.intuit_tid})
        for i, write in pending.items():
            answer = answers.get(str(i)) or {}
            entity = records[i].qbo_object_name
            if isinstance(answer.get(entity), dict) and "Fault" not in answer:
                results[i] = _ref_of(write.spec.kind, type(records[i]).from_json(answer[entity]))
            else:
                results[i] = self._write_alone(write, fence)
        return [results[i] for i in range(len(chunk))]

    def _write_alone(self, write: BatchWrite, fence: WriteFence) -> QuickBooksRef | AccountingError:
        """The write as a single `create` or `update`: its answer, or its own refusal as a value. What concerns
        the request rather than the write (unavailable, throttled, reconnect, the fence) is raised."""
        try:
            if write.ref is None:
                return self.create(write.spec, request_id=write.request_id, fence=fence)
            return self.update(write.ref, write.spec, request_id=write.request_id, fence=fence)
        except (AccountingUnavailableError, ThrottledError, ReconnectRequiredError):
            raise
        except AccountingError as refused:
            return refused

    def _stale(self, kind: TxnKind, ref: QuickBooksRef) -> StaleRecordError:
        """QBO 5010: the SyncToken sent is not the record's (edited in QuickBooks, or written meanwhile by a
        worker that took the job over). Not re-applied here: what to write over a newer version is the
        core's decision (only while its lease is held, and only its newest snapshot). One read, for the
        current SyncToken; `RecordGoneError` if the record is gone."""
        current = self._read_live(kind, ref.id)
        token = str(current.get("SyncToken", ""))
        return StaleRecordError(
            f"the {_label(kind)} {ref.id} changed in QuickBooks since qbsync wrote it "
            f"(SyncToken {token}, not {ref.sync_token})",
            sync_token=token,
        )

    def find_by_marker(self, kind: TxnKind, marker: str, customer_id: str = "") -> QuickBooksRef | None:
        found = self._find_row_by_marker(kind, marker, customer_id)
        if found is None:
            return None
        entity, row = found
        return QuickBooksRef(kind_of(entity, row), str(row["Id"]), str(row.get("SyncToken", "0")))

    def _find_written(self, kind: TxnKind, marker: str, customer_id: str) -> QuickBooksRef | None:
        """The record a create whose answer was lost wrote, with its TotalAmt as a create's answer has it (so
        the core still compares the invoice's total, SPEC §8)."""
        found = self._find_row_by_marker(kind, marker, customer_id)
        if found is None:
            return None
        entity, row = found
        return QuickBooksRef(kind_of(entity, row), str(row["Id"]), str(row.get("SyncToken", "0")), total_of(_Obj(row)))

    def _find_row_by_marker(self, kind: TxnKind, marker: str, customer_id: str) -> tuple[str, dict[str, Any]] | None:
        # QBO cannot filter on PrivateNote. Payments and invoices can be filtered by customer (one page
        # usually holds all of a customer's); a Purchase's EntityRef is not filterable, so expenses or
        # checks are scanned newest first — the record looked for is usually among the newest. A deposit
        # names no customer: the newest DEPOSIT_PAGES pages of deposits are scanned.
        entity = entity_name(kind)
        pages: int | None = None
        if kind is TxnKind.PAYMENT or kind is TxnKind.INVOICE:
            where = f"CustomerRef = '{escape(customer_id)}'" if customer_id else ""
        elif kind is TxnKind.DEPOSIT:
            where, pages = "", DEPOSIT_PAGES
        else:
            where = f"PaymentType = '{'Check' if kind is TxnKind.CHECK else 'Cash'}'"
        for row in self._newest(entity, where, f"looking for a {_label(kind)} qbsync wrote", pages):
            if marker in str(row.get("PrivateNote") or "") and not is_voided(row):
                return entity, row
        return None

    def _newest(self, entity: str, where: str, what: str, pages: int | None) -> Iterator[dict[str, Any]]:
        """Rows newest first, a page at a time as they are consumed; at most `pages` pages (None: all)."""
        start, read = 1, 0
        while pages is None or read < pages:
            page = query_page(self.session, entity, where, order_by="MetaData.CreateTime DESC", start=start, what=what)
            read += 1
            yield from page
            if len(page) < PAGE_SIZE:
                return
            start += PAGE_SIZE

    def read_live(self, kind: TxnKind, ids: list[str]) -> dict[str, QuickBooksRef]:
        return read_live(self.session, kind, ids)

    def read_amounts(self, kind: TxnKind, ids: list[str]) -> dict[str, QuickBooksAmounts]:
        return read_amounts(self.session, kind, ids)

    def active_customers(self, ids: list[str]) -> set[str]:
        return active_customers(self.session, ids)

    def changed_since(self, entities: Sequence[ChangedEntity], since: datetime) -> list[ChangedRecord]:
        return changed_since(self.session, entities, since)

    def link_for(self, kind: TxnKind | None, quickbooks_id: str) -> str:
        connection = self.session.connection
        host = PRODUCTION_APP if connection.environment == PRODUCTION else SANDBOX_APP
        page = {
            None: f"customerdetail?nameId={quickbooks_id}",
            TxnKind.PAYMENT: f"recvpayment?txnId={quickbooks_id}",
            TxnKind.INVOICE: f"invoice?txnId={quickbooks_id}",
            TxnKind.EXPENSE: f"expense?txnId={quickbooks_id}",
            TxnKind.CHECK: f"check?txnId={quickbooks_id}",
            TxnKind.DEPOSIT: f"deposit?txnId={quickbooks_id}",
        }[kind]
        return f"{host}/app/{page}&deeplinkcompanyid={connection.realm_id}"

    # --- the company's lists ---------------------------------------------------------------------------

    def find_list_entry(self, kind: ListKind, ref: ListRef) -> ListEntry | None:
        return read_list_entry(self.session, kind, ref)

    def company_preferences(self) -> CompanyPreferences:
        # The raw JSON, not python-quickbooks' Preferences.get: its TaxPrefs starts with UsingSalesTax and
        # PartnerTaxEnabled True and keeps those defaults for whatever QBO leaves out, so a company without
        # sales tax would read as one with automated sales tax. The same GET /preferences it sends.
        answer = self.session.call(
            lambda qb: qb.get(f"{qb.api_url}/company/{qb.company_id}/preferences", {}),
            write=False,
            what="reading the company's preferences",
        )
        raw = answer.get("Preferences") if isinstance(answer, dict) else None
        raw = raw if isinstance(raw, dict) else {}
        accounting = raw.get("AccountingInfoPrefs")
        accounting = accounting if isinstance(accounting, dict) else {}
        sales_forms = raw.get("SalesFormsPrefs")
        return CompanyPreferences(
            _currency_of(Preferences.from_json(raw)),
            _sales_tax_of(raw.get("TaxPrefs")),
            class_tracking=_class_tracking_of(accounting),
            track_departments=accounting.get("TrackDepartments") is True,
            custom_txn_numbers=isinstance(sales_forms, dict) and sales_forms.get("CustomTxnNumbers") is True,
        )

    def invoices_numbered(self, doc_number: str) -> list[NumberedInvoice]:
        # Only the fields the answer needs, in one query: a number is on a handful of invoices at most, so one
        # page of QBO's largest size holds them all.
        select = (
            f"SELECT Id, DocNumber, PrivateNote FROM Invoice WHERE DocNumber = '{escape(doc_number)}' "
            f"ORDERBY Id STARTPOSITION 1 MAXRESULTS {PAGE_SIZE}"
        )
        answer = self.session.call(
            lambda qb: qb.query(select), write=False, what=f"looking up the invoices numbered {doc_number!r}"
        )
        rows = (answer or {}).get("QueryResponse", {}).get("Invoice", [])
        # Kept only when the number is exactly the one asked for (the port's contract), should the query
        # compare otherwise (case); lowest Id first, by number rather than as text.
        exact = [row for row in rows if str(row.get("DocNumber") or "") == doc_number]
        return [
            NumberedInvoice(str(row["Id"]), str(row.get("PrivateNote") or ""))
            for row in sorted(exact, key=lambda row: _id_order(str(row.get("Id", ""))))
        ]

    # --- reading ---------------------------------------------------------------------------------------

    def _read(self, entity: str, record_id: str) -> dict[str, Any] | None:
        """The record, or None when QBO has no such Id (deleted)."""
        try:
            answer = self.session.call(
                lambda qb: qb.get_single_object(entity, record_id), write=False, what=f"reading {entity} {record_id}"
            )
        except QboFault as fault:
            if "610" in fault.codes:
                return None
            raise _rejected(f"read {entity} {record_id}", fault) from None
        return dict(answer.get(entity) or {})

    def _read_live(self, kind: TxnKind, record_id: str) -> dict[str, Any]:
        entity = entity_name(kind)
        record = self._read(entity, record_id)
        if record is None:
            raise RecordGoneError(f"the {_label(kind)} {record_id} was deleted in QuickBooks")
        if is_voided(record):
            raise RecordGoneError(f"the {_label(kind)} {record_id} was voided in QuickBooks")
        return record

    # --- what a refusal means ----------------------------------------------------------------------

    def _gone_link(self, spec: TxnSpec, what: str) -> LinkedRecordGoneError | None:
        """For a payment: the first record a line links that was deleted or voided in QuickBooks, as the
        error the engine recovers from (it recreates the record), or None."""
        if not isinstance(spec, PaymentSpec):
            return None
        for link in spec.lines:
            target = self._read(entity_name(link.txn_kind), link.txn_id)
            if target is None or is_voided(target):
                return LinkedRecordGoneError(
                    f"QuickBooks refused to {what}: the {_label(link.txn_kind)} {link.txn_id} it links is gone"
                )
        return None

    def _deposit_refusal(self, spec: DepositSpec, fault: QboFault, what: str, own_id: str) -> AccountingError:
        """A refused Deposit, in what the core can act on: a linked payment gone (LinkedRecordGoneError: the
        engine syncs it again), a payment already in another deposit (PAYMENT_ALREADY_DEPOSITED), a setting
        QuickBooks refused. Found by reading the payments and the newest deposits (on this error path only),
        not from QBO's wording, which Intuit does not document for these rules."""
        payments = [line.txn_id for line in spec.lines if line.kind is DepositLineKind.PAYMENT]
        for payment_id in payments:
            target = self._read("Payment", payment_id)
            if target is None or is_voided(target):
                return LinkedRecordGoneError(
                    f"QuickBooks refused to {what}: the payment {payment_id} it deposits is gone ({_said(fault)})"
                )
        duplicated = sorted({p for p in payments if payments.count(p) > 1})
        if duplicated:
            return BookkeepingError(
                f"QuickBooks refused to {what}: it deposits the payment {duplicated[0]} twice ({_said(fault)})",
                reason=PAYMENT_ALREADY_DEPOSITED,
            )
        holders = self._deposits_holding(set(payments), own_id)
        if holders:
            payment_id, deposit_id = sorted(holders.items())[0]
            return PaymentAlreadyDepositedError(
                f"QuickBooks refused to {what}: the payment {payment_id} is already in the deposit {deposit_id} "
                f"(a payment can be in one deposit only) ({_said(fault)})"
            )
        elements = " ".join(e.element for e in fault.errors)
        if _is_reference_fault(fault):
            if "DepositToAccountRef" in elements:
                self._settings.forget("payout_bank_account")
                return setting_error("payout_bank_account", f"points to something QuickBooks refused ({_said(fault)})")
            return self._rechecked(spec) or _rejected(what, fault)
        return _rejected(what, fault)

    def _deposits_holding(self, payments: set[str], own_id: str) -> dict[str, str]:
        """payment Id → the other Deposit linking it, among the newest DEPOSIT_PAGES pages of deposits."""
        holders: dict[str, str] = {}
        if not payments:
            return holders
        for row in self._newest("Deposit", "", "looking for the deposits holding payments", DEPOSIT_PAGES):
            if str(row.get("Id")) == own_id:
                continue
            for line in row.get("Line") or []:
                for link in line.get("LinkedTxn") or []:
                    txn_id = str(link.get("TxnId", ""))
                    if link.get("TxnType") == "Payment" and txn_id in payments:
                        holders.setdefault(txn_id, str(row.get("Id")))
        return holders

    def _refusal(self, spec: TxnSpec, fault: QboFault, *, action: str, own_id: str = "") -> AccountingError:
        """The domain error for a Fault on a transaction write, carrying the refusal's `intuit_tid`."""
        return tagged(self._refusal_of(spec, fault, action=action, own_id=own_id), fault.intuit_tid)

    def _refusal_of(self, spec: TxnSpec, fault: QboFault, *, action: str, own_id: str = "") -> AccountingError:
        """The domain error for a Fault on a transaction write. The Fault's `element` names the field at
        fault when QBO gives it; when it does not, the references are checked one by one (a few reads,
        only on this error path) so that the error says what a person or the core can act on. `own_id`: the
        record an update writes."""
        what = f"{action} the {_label(spec.kind)}"
        if "6210" in fault.codes:
            day = spec.txn_date.isoformat()
            return BookkeepingError(
                f"QuickBooks refused to {what} dated {day}: the books are closed in QuickBooks on that date. "
                f"Reopen the period in QuickBooks (Settings > Account and settings > Advanced > Accounting > "
                f"Close the books: a closing date before {day}, or off), then retry the sync. "
                f"(QuickBooks said: {_said(fault)})",
                reason=CLOSED_PERIOD,
            )
        if "6140" in fault.codes:
            return BookkeepingError(
                f"QuickBooks refused to {what}: another invoice has the number {_doc_number_of(spec)!r} and the "
                f"company refuses duplicate invoice numbers ({_said(fault)})",
                reason=DOC_NUMBER_TAKEN,
            )
        tracking = _tracking_refusal(spec, fault, what)
        if tracking is not None:
            return tracking
        if isinstance(spec, DepositSpec):
            return self._deposit_refusal(spec, fault, what, own_id)
        elements = " ".join(e.element for e in fault.errors)
        if not _is_reference_fault(fault):
            # A line refused as over-applied may link an invoice voided in QuickBooks (its balance is zero).
            gone = self._gone_link(spec, what) if "Line" in elements else None
            return gone or _rejected(what, fault)
        if "LinkedTxn" in elements:
            return LinkedRecordGoneError(
                f"QuickBooks refused to {what}: it links a record that is gone ({_said(fault)})"
            )
        setting = _setting_of(elements, spec)
        if setting is not None:
            self._settings.forget(setting)
            return setting_error(setting, f"points to something QuickBooks refused ({_said(fault)})")
        if "ItemRef" in elements:
            # An invoice's items come from several settings (income, tips, surcharge): checked again, the
            # one at fault is named.
            return self._rechecked(spec) or _rejected(what, fault)
        if elements and "CustomerRef" not in elements and "EntityRef" not in elements:
            return _rejected(what, fault)
        customer = self._read("Customer", spec.customer_id)
        if customer is None or customer.get("Active") is False:
            state = "no longer exists" if customer is None else "is inactive"
            return CustomerUnusableError(f"the QuickBooks customer {spec.customer_id} {state}")
        if elements:
            return _rejected(what, fault)
        # No element: check what else the record refers to.
        gone = self._gone_link(spec, what)
        if gone is not None:
            return gone
        return self._rechecked(spec) or _rejected(what, fault)

    def _rechecked(self, spec: TxnSpec) -> BookkeepingError | None:
        """The settings `spec` used, checked again in QuickBooks: the error naming one that no longer does,
        or None when all do."""
        for name in _settings_used(spec):
            self._settings.forget(name)
        try:
            self._settings.for_spec(spec)
        except BookkeepingError as error:
            return error
        return None


def _send_pending(
    qb: QuickBooksClient, *, items: dict[int, dict[str, Any]], pending: dict[int, Any], request_id: str
) -> dict[str, Any]:
    """The batch of the items still pending (each keeps its `bId`: a replay maps back onto the same item)."""
    return send_batch(qb, [items[i] for i in pending], request_id=request_id)


class _CreatesFenced(Exception):
    """Some creates of a batch were refused by their fences at the moment the request would leave."""


class _CreateFences(WriteFence):
    """The fences of a batch of customer creates, checked as its request is admitted: the batch's own fence
    (its refusal raised as is: nothing of the batch goes), then each pending create's. A create whose fence
    refuses is answered with that refusal and taken out of `pending`, and `_CreatesFenced` stops this request,
    so that the batch is sent again without it; the others' fences held."""

    def __init__(
        self, fence: WriteFence, pending: dict[int, CustomerCreate], results: dict[int, AccountingCustomer | Exception]
    ) -> None:
        self._fence = fence
        self._pending = pending
        self._results = results
        self.attempts = 0  # requests this batch's call tried to send (checks of the fence)

    def check(self) -> None:
        self.attempts += 1
        self._fence.check()
        refused = False
        for i, create in list(self._pending.items()):
            try:
                create.fence.check()
            except Exception as fenced:  # noqa: BLE001 - whatever a fence raises is that create's answer
                self._results[i] = fenced
                del self._pending[i]
                refused = True
        if refused:
            raise _CreatesFenced()


def _customer_where(display_name: str, email: str) -> str:
    """By email when there is one (filterable, and few customers share one); else by name prefix, so that
    "Name - 2" comes too. Only active customers: QBO hides inactive ones unless asked, and we say so."""
    if email.strip():
        return f"PrimaryEmailAddr = '{escape(email.strip())}' AND Active = true"
    return f"DisplayName LIKE '{escape(' '.join(display_name.split()))}%' AND Active = true"


def _active_customers(rows: list[dict[str, Any]]) -> list[AccountingCustomer]:
    return [accounting_customer(_Obj(row)) for row in rows if row.get("Active") is not False]


class _Obj:
    """Attribute access over a JSON record, for `accounting_customer`."""

    def __init__(self, row: dict[str, Any]) -> None:
        self._row = row

    def __getattr__(self, name: str) -> Any:
        return self._row.get(name)


def _ref_of(kind: TxnKind, saved: QboTxn) -> QuickBooksRef:
    return QuickBooksRef(kind, str(saved.Id), str(saved.SyncToken), total_of(saved))


def _label(kind: TxnKind) -> str:
    return {
        TxnKind.PAYMENT: "payment",
        TxnKind.EXPENSE: "refund expense",
        TxnKind.CHECK: "refund check",
        TxnKind.INVOICE: "invoice",
        TxnKind.DEPOSIT: "deposit",
    }[kind]


def _said(fault: QboFault) -> str:
    parts = []
    for e in fault.errors:
        text = e.message if not e.detail or e.detail == e.message else f"{e.message}: {e.detail}"
        parts.append(f"{text} (code {e.code}{', element ' + e.element if e.element else ''})")
    said = "; ".join(parts) or f"HTTP {fault.status}"
    return said + (f" [intuit_tid {fault.intuit_tid}]" if fault.intuit_tid else "")


def _rejected(what: str, fault: QboFault) -> BookkeepingError:
    return tagged(BookkeepingError(f"QuickBooks refused to {what}: {_said(fault)}"), fault.intuit_tid)


def _is_reference_fault(fault: QboFault) -> bool:
    if fault.codes & {"2500", "610"}:
        return True
    text = " ".join(f"{e.message} {e.detail}" for e in fault.errors).lower()
    return "invalid reference" in text or "made inactive" in text


def _doc_number_of(spec: TxnSpec) -> str:
    return spec.doc_number if isinstance(spec, InvoiceSpec) else ""


def _tracking_refusal(spec: TxnSpec, fault: QboFault, what: str) -> BookkeepingError | None:
    """A refused ClassRef or DepartmentRef (SPEC §10: a branch mapping to a class or location that is missing
    or inactive, or a location in a company that tracks none), as the error naming it; None when the Fault
    is about something else. QBO names the reference in the Fault's `element` (the emulator does; Intuit's
    Faults for other references do)."""
    tracking = getattr(spec, "tracking", None)
    if not isinstance(tracking, Tracking) or not tracking.is_set:
        return None
    elements = " ".join(e.element for e in fault.errors)
    if "ClassRef" in elements and tracking.class_id:
        problem = f"the class {tracking.class_id} of the branch mapping is missing or inactive in QuickBooks"
    elif "DepartmentRef" in elements and tracking.department_id:
        if _is_reference_fault(fault):
            problem = (
                f"the location {tracking.department_id} of the branch mapping is missing or inactive in QuickBooks"
            )
        else:
            problem = (
                f"the branch mapping names the location {tracking.department_id}, and QuickBooks does not accept "
                "it: turn on location tracking in QuickBooks (Settings > Account and settings > Advanced > "
                "Categories), or map the branch to no location"
            )
    else:
        return None
    return BookkeepingError(f"QuickBooks refused to {what}: {problem} ({_said(fault)})", reason=SETTING_INVALID)


def _setting_of(elements: str, spec: TxnSpec) -> str | None:
    """The setting that supplied the reference QBO names in `element`."""
    if "DepositToAccountRef" in elements:
        return "deposit_account"  # a Deposit's is the payout bank account: see _deposit_refusal
    if "DiscountAccountRef" in elements:
        return "discount_account"
    if "TxnTaxCodeRef" in elements:
        return "tax_code"
    if "ItemRef" in elements:
        items = [name for name in _settings_used(spec) if name in ITEM_SETTINGS]
        return items[0] if len(items) == 1 else None  # several: see _refusal
    if "AccountBasedExpenseLineDetail.AccountRef" in elements:
        return "accounts_receivable_account"
    if "AccountRef" in elements and isinstance(spec, RefundSpec):
        return "refund_bank_account"
    if "PaymentMethodRef" in elements:
        return "payment method"
    return None


def _settings_used(spec: TxnSpec) -> tuple[str, ...]:
    return settings_maybe_used(spec)


def request_id_for_void(record_id: str, sync_token: str) -> str:
    """The requestid of a Purchase's delete (a refund's void, see `void`): the same for a resend of the same
    delete, so that QBO answers it with its first answer."""
    return hashlib.sha256(f"void|{record_id}|{sync_token}".encode()).hexdigest()[:40]


def _fresh_request_id(request_id: str) -> str:
    """A never-used requestid, to send once more a write that QBO refused.

    QBO replays a requestid's first answer, errors included, and the core sends the same requestid on every
    attempt of one logical write. So once a write was refused (a Fault: nothing was written), retrying the
    job after the cause was fixed in QuickBooks — books reopened, account reactivated — would only get the
    old refusal back, forever. A refusal is therefore confirmed under a fresh requestid before it is
    reported: one more send, on the error path only. Safe from duplicates: the refused send wrote nothing,
    and a lost answer to the fresh one is recovered by marker (the create's `recover`, the core's look-up
    before re-creating), as for any uncertain write."""
    return _derived_request_id(request_id, uuid.uuid4().hex[:12])


def _derived_request_id(request_id: str, suffix: str) -> str:
    """Another requestid for a re-applied write, ≤ 50 characters, the same for the same inputs."""
    candidate = f"{request_id}-{suffix}"
    if len(candidate) <= REQUEST_ID_MAX:
        return candidate
    return hashlib.sha256(candidate.encode()).hexdigest()[:40]


def _sales_tax_of(tax_prefs: object) -> SalesTax:
    """`TaxPrefs` as QBO sends it: PartnerTaxEnabled true is automated sales tax (AST decides the rates and
    keeps a TotalTax sent to it); else UsingSalesTax true is sales tax set up by hand; else none. A missing
    flag, or a missing TaxPrefs, is taken as false, as QBO leaves out booleans at their default (as with
    MultiCurrencyEnabled). *Verify* against a sandbox company with sales tax never set up: whether QBO sends
    UsingSalesTax false or omits TaxPrefs, and whether PartnerTaxEnabled is sent without UsingSalesTax."""
    prefs = tax_prefs if isinstance(tax_prefs, dict) else {}
    if prefs.get("PartnerTaxEnabled") is True:
        return SalesTax.AUTOMATED
    if prefs.get("UsingSalesTax") is True:
        return SalesTax.MANUAL
    return SalesTax.NONE


def _id_order(record_id: str) -> tuple[int, str]:
    return (int(record_id), record_id) if record_id.isdigit() else (2**63, record_id)


def _class_tracking_of(accounting_prefs: dict[str, Any]) -> ClassTracking:
    """`AccountingInfoPrefs` as QBO sends it: one class per line wins over one per transaction (QBO's settings
    offer one or the other; a company answering both is taken at the finer one, so no line goes unclassed);
    neither, or a missing flag, is no class tracking."""
    if accounting_prefs.get("ClassTrackingPerTxnLine") is True:
        return ClassTracking.PER_LINE
    if accounting_prefs.get("ClassTrackingPerTxn") is True:
        return ClassTracking.PER_TRANSACTION
    return ClassTracking.OFF


def _currency_of(preferences: Preferences) -> CompanyCurrency:
    """`CurrencyPrefs` as python-quickbooks parses it: HomeCurrency is a Ref whose value is the ISO code.
    QBO leaves out what is at its default, so a missing MultiCurrencyEnabled means off."""
    prefs = preferences.CurrencyPrefs
    home = getattr(getattr(prefs, "HomeCurrency", None), "value", "") or ""
    return CompanyCurrency(home=str(home).upper(), multicurrency=bool(getattr(prefs, "MultiCurrencyEnabled", False)))
