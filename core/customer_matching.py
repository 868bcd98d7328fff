"""R1 Customer match and R2 Unique names: which QuickBooks customer a CRM customer's records go to.

`CustomerMatching.resolve` is R1 on first use (match on name and email, the oldest wins, else create)
and the remembered link after that; `successor` is R1 again once QuickBooks says the linked customer is
deleted or inactive; `create_with_unique_name` is R2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from core.accounting import AccountingCustomer, NewCustomer, request_id_for
from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    SyncAction,
    SyncRecord,
    SyncResult,
    crm_customer_id,
    normalise,
)
from core.errors import CustomerNameConflictError, DuplicateNameError
from core.record_writer import SyncResults, marker_for
from core.sync_run import SyncRun

MAX_NAME_SUFFIX = 50


def name_matches(quickbooks_name: str, crm_name: str) -> bool:
    """R1/R2: the DisplayName is the CRM name, or the CRM name with the ` - N` qbsync adds on a clash."""
    wanted = normalise(crm_name)
    found = normalise(quickbooks_name)
    return found == wanted or re.fullmatch(re.escape(wanted) + r" - \d+", found) is not None


def oldest_first(customer: AccountingCustomer) -> tuple[int, str]:
    """QBO Ids are increasing numbers: the lowest is the oldest."""
    return (int(customer.id), customer.id) if customer.id.isdigit() else (2**63, customer.id)


@dataclass(frozen=True)
class CustomerChoice:
    """The QuickBooks customer found (LINKED) or made (CREATED) for a CRM customer, not linked yet."""

    record: SyncRecord
    customer: AccountingCustomer
    action: SyncAction


class CustomerMatching:
    def __init__(self, run: SyncRun, results: SyncResults) -> None:
        self._run = run
        self._results = results

    def resolve(self, customer: Customer) -> str:
        """The QuickBooks customer's id: the remembered link (no query), else R1's choice, linked now."""
        record = self._run.record(self._run.customer_ref(customer.customer_id))
        if record.quickbooks_id:
            return record.quickbooks_id
        choice = self._choose(customer, record)
        self.link(choice)
        return choice.customer.id

    def successor(self, customer: Customer) -> CustomerChoice:
        """R1 again, for a customer whose linked QuickBooks customer is gone or inactive. Not linked here:
        the link is saved only once everything of the CRM customer has moved to it, so that a move cut
        short (a crash, an outage) is done again by the retry, which finds the old customer unusable once
        more (R1, R7)."""
        # A copy: the run's own record keeps the old link until the successor is linked (a flush meanwhile
        # must not commit the new generation).
        record = replace(self._run.record(self._run.customer_ref(customer.customer_id)))
        # A new generation, so that creating the successor is not answered with the replay of the create
        # that made the unusable one. Not saved until the successor is linked: a retry counts the same.
        record.generation += 1
        return self._choose(customer, record)

    def link(self, choice: CustomerChoice) -> None:
        """Remembers the choice (R1: reused from now on, with no query)."""
        record = choice.record
        record.realm_id = self._run.realm_id or record.realm_id
        record.quickbooks_id = choice.customer.id
        record.display_name = choice.customer.display_name
        record.quickbooks_type = "Customer"
        record.mark_synced(self._run.clock.now())
        self._run.save(record)
        # Reported under the CRM customer's own id, whatever company the link is in.
        entity = EntityRef(EntityType.CUSTOMER, crm_customer_id(record.entity))
        self._results.report(SyncResult(entity, choice.customer.id, choice.action))

    def _choose(self, customer: Customer, record: SyncRecord) -> CustomerChoice:
        """R1: an active QuickBooks customer with the CRM name and email, the oldest of several; else new."""
        name, email = customer.display_name, customer.email.strip()
        matches = [
            c
            for c in self._run.accounting.find_customers(name, email)
            if c.active and name_matches(c.display_name, name) and normalise(c.email) == normalise(email)
        ]
        if matches:
            return CustomerChoice(record, min(matches, key=oldest_first), SyncAction.LINKED)
        return CustomerChoice(record, self.create_with_unique_name(customer, record), SyncAction.CREATED)

    def create_with_unique_name(self, customer: Customer, record: SyncRecord) -> AccountingCustomer:
        """R2: the CRM name, else the first free `Name - N`; the CRM name and email stay on the record."""
        name = customer.display_name
        tenant = self._run.tenant
        for n in range(1, MAX_NAME_SUFFIX + 1):
            candidate = name if n == 1 else f"{name} - {n}"
            new = NewCustomer(
                display_name=candidate,
                given_name=customer.first_name.strip(),
                family_name=customer.last_name.strip(),
                company_name=customer.company_name.strip(),
                email=customer.email.strip(),
                phone=customer.phone.strip(),
                note=f"CRM customer {customer.customer_id} " + marker_for(tenant, record.entity, record.generation),
            )
            try:
                return self._run.accounting.create_customer(
                    new, request_id=request_id_for(tenant, record.entity, candidate, record.generation)
                )
            except DuplicateNameError:
                continue
        raise CustomerNameConflictError(
            f"QuickBooks already has customers, vendors or employees named {name!r} up to "
            f"{name!r} - {MAX_NAME_SUFFIX}; rename one of them and retry",
            metadata={"display_name": name},
        )
