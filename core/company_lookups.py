"""What the sync-time checks of a company's settings found in its lists, remembered per company for every
process of the deployment (issue 12): a new worker process's first sync of a company whose settings another
process checked makes no look-ups.

Each look-up is kept with what it was made against — the setting's Id, the job's tax rate name, the
payment methods that were unset — so that a changed setting is checked again rather than trusted, and
with when it was made: after `LOOKUP_LIFETIME` it is made again, since an entry may be deactivated in
QuickBooks without any write of ours noticing. A write QuickBooks refuses for a reference a look-up
supplied forgets it at once (the adapter's refusal handling), so a stale entry fails the way a missing
one does, once, and is read again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.connection import ListRef

# *A judgement*: a day. Long enough that a busy company's workers look its lists up once a day, short
# enough that an entry made inactive in QuickBooks (which refuses nothing until it is used) is noticed the
# same day even by a process whose writes never touch it. A refused write notices it at once anyway.
LOOKUP_LIFETIME = timedelta(hours=24)


class LookupKind(enum.Enum):
    """What was looked up (`CompanyLookup.name` and `.against` mean something else for each)."""

    # A configured setting checked to exist, be active and of the right type: name is the setting
    # (QuickBooksSettings' field), against its Id, found the entry.
    SETTING = "setting"
    # A job's tax_rate_name found among the company's sales tax rates: name is the normalised rate name,
    # found the TaxCode.
    TAX_RATE = "tax_rate"
    # The company's payment methods queried for the methods left unset: name is "", against the unset
    # methods (sorted, comma separated) — a method QuickBooks lacks stays unset without asking again.
    PAYMENT_METHODS = "payment_methods"
    # A branch mapping's class or location found active (core/branch_tracking.py): name and against are the
    # question (the mapping's Id, or its normalised name), found the entry.
    BRANCH_CLASS = "branch_class"
    BRANCH_DEPARTMENT = "branch_department"


@dataclass(frozen=True)
class CompanyLookup:
    realm_id: str  # the company looked in: a tenant reconnected to another company starts afresh
    kind: LookupKind
    name: str
    against: str
    found: ListRef
    checked_time: datetime

    def answers(self, realm_id: str, against: str, now: datetime) -> bool:
        """True when this look-up still stands for the same company and the same question."""
        return self.realm_id == realm_id and self.against == against and now - self.checked_time < LOOKUP_LIFETIME


def setting_checked(realm_id: str, setting: str, found: ListRef, now: datetime) -> CompanyLookup:
    """A list setting (QuickBooksSettings' field) found usable as `found` (its Id and name) in the company:
    what UpdateSettings' check and the sync-time check both record, so that neither repeats the other's."""
    return CompanyLookup(realm_id, LookupKind.SETTING, setting, found.id, found, now)
