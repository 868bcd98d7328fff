"""What the tenant's QuickBooks company allows of a request, judged by what qbsync last read of it (its
currency and sales tax mode, SPEC §7 and §8) and its settings (the DocNumber prefix). Each check reads the
company again when what is stored cannot answer (read failed at connect time), never when it can."""

from __future__ import annotations

from collections.abc import Sequence

from core.company_preferences import read_company_preferences, sales_tax_violations
from core.company_tax import SalesTax
from core.connection import ConnectionState, InvoiceNumbering
from core.currency import AmountCurrency, CompanyCurrency, currency_violations
from core.domain import Job
from core.errors import FailedPreconditionError, FieldViolation
from core.ports import AccountingSystems, Clock, UnitOfWork, UnitOfWorkFactory
from core.validation import text_id_violations

BRANCH_NOT_CONNECTED = "BRANCH_NOT_CONNECTED"


class CompanyChecks:
    def __init__(self, uow_factory: UnitOfWorkFactory, accounting: AccountingSystems, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._accounting = accounting
        self._clock = clock

    def require_company(self, tenant: str, branch_id: str) -> None:
        """SPEC §10: a branch's job is refused when there is no company for it to go to — neither a connection of
        its own nor a default one. (The default connection's jobs are accepted before any connection, as they
        always were: they fail with QUICKBOOKS_RECONNECT_REQUIRED until the tenant connects.)
        Raises: `FailedPreconditionError` (reason BRANCH_NOT_CONNECTED) naming the branch."""
        if branch_id and self._uow_factory.company_facts(tenant, branch_id) is None:
            raise FailedPreconditionError(
                f"branch {branch_id!r} has no QuickBooks connection and the tenant has no default one: connect the "
                "branch's company (ConnectionService with branch_id) or a default company first",
                metadata={"branch_id": branch_id},
                reason=BRANCH_NOT_CONNECTED,
            )

    def currency_violations(
        self, tenant: str, currencies: Sequence[AmountCurrency], branch_id: str = ""
    ) -> list[FieldViolation]:
        """SPEC §7 against the currency of the company the branch syncs to, as last read from QuickBooks
        (core/currency.py)."""
        if not any(amount.code for amount in currencies) or not _storable(branch_id):
            return []  # an empty currency_code is the home currency, whatever it is: nothing to look up
        # The facts may be a few seconds old when another process changed the connection (the adapter's
        # cache); a change made here is seen at once, and so is the read below.
        connection = self._uow_factory.company_facts(tenant, branch_id)
        if connection is None:
            return currency_violations(currencies, CompanyCurrency())
        company = connection.company_currency
        if not company.known and connection.state is ConnectionState.CONNECTED:
            # Connected, but QuickBooks could not be read at connect time: read it now rather than judge a
            # labelled amount against the USD guess. Once read, this never happens again for the company.
            preferences = read_company_preferences(
                tenant, self._accounting, self._uow_factory, self._clock, branch_id=connection.branch_id
            )
            company = preferences.currency if preferences is not None else company
        return currency_violations(currencies, company)

    def sales_tax_violations(self, tenant: str, job: Job, branch_id: str = "") -> list[FieldViolation]:
        """SPEC §8: a job charging tax for a company without sales tax set up in QuickBooks is refused
        (core/company_preferences.py), judged by the company's sales tax mode as last read."""
        if job.tax <= 0 or not _storable(branch_id):
            return []  # no tax charged: whatever the company's mode, nothing to look up
        connection = self._uow_factory.company_facts(tenant, branch_id)  # as for the currency
        if connection is None:
            return []  # not connected: the mode is unknown, and an unknown mode refuses nothing
        sales_tax = connection.sales_tax
        if sales_tax in (None, SalesTax.NONE) and connection.state is ConnectionState.CONNECTED:
            # None: QuickBooks could not be read at connect time; read it now, as for the currency. NONE: the
            # refusal tells the bookkeeper to set sales tax up in QuickBooks and send the job again, so the
            # resend must see what QuickBooks says now, not the stored answer (a read on refusals only).
            preferences = read_company_preferences(
                tenant, self._accounting, self._uow_factory, self._clock, branch_id=connection.branch_id
            )
            sales_tax = preferences.sales_tax if preferences is not None else sales_tax
        return sales_tax_violations(job.tax, sales_tax)

    def doc_number_fits(self, uow: UnitOfWork, tenant: str, job: Job, branch_id: str = "") -> list[FieldViolation]:
        """The invoice number QuickBooks gets is the DocNumber prefix of the company the branch syncs to + the
        job number: both must fit QBO's DocNumber (validation checked the number alone; the prefix is a
        setting). Nothing to fit when QuickBooks numbers the invoices (SPEC §10)."""
        connection = uow.connections.for_branch(tenant, branch_id)
        if connection is not None and connection.invoice_numbering is InvoiceNumbering.QUICKBOOKS:
            return []
        prefix = connection.settings.doc_number_prefix if connection is not None else ""
        room = self._accounting.field_limits.doc_number - len(prefix)
        if prefix and len(job.number) > room:
            return [
                FieldViolation(
                    "job.number",
                    f"must be at most {room} characters: QuickBooks' DocNumber holds "
                    f"{self._accounting.field_limits.doc_number}, and the invoice number prefix {prefix!r} comes first",
                )
            ]
        return []


def _storable(branch_id: str) -> bool:
    """Whether the branch can be looked up at all: one validation refuses (a NUL, a line break) is never sent to
    the database, whose answer would be an error of ours rather than the caller's INVALID_ARGUMENT."""
    return not text_id_violations(branch_id, "branch_id", required=False)
