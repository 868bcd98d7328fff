"""The class and location a branch's transactions carry in QuickBooks (SPEC §10): its branch mapping, checked
against the company and resolved to QuickBooks Ids, once per run and for every process through the company's
look-ups (core/company_lookups.py).

A mapping is checked at UpdateSettings too, but the company may change after: a class made inactive, class or
location tracking turned off. A mapping QuickBooks cannot take fails the sync, naming the mapping and what to
change (reason BRANCH_MAPPING_INVALID) — never a transaction written without the class the bookkeeper
reports on. Whether the company tracks classes (and where) and locations is what its Preferences said when
last read; a mapping refused because tracking looked off reads them again first, so a bookkeeper who has
just turned tracking on is not refused on an old answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.accounting import NO_TRACKING, Tracking
from core.company_lists import ListKind, SettingRule
from core.company_lookups import CompanyLookup, LookupKind
from core.company_preferences import CompanyPreferences, read_company_preferences
from core.connection import BranchMapping, ClassTracking, ListRef, QuickBooksConnection, branch_mapping
from core.connection_rules import CLASS_RULE, DEPARTMENT_RULE
from core.domain import Opportunity, normalise
from core.errors import BookkeepingError
from core.ports import AccountingSystem, AccountingSystems, Clock, UnitOfWorkFactory

BRANCH_MAPPING_INVALID = "BRANCH_MAPPING_INVALID"

_LOOKUP_KINDS = {ListKind.CLASS: LookupKind.BRANCH_CLASS, ListKind.DEPARTMENT: LookupKind.BRANCH_DEPARTMENT}


@dataclass(frozen=True)
class CompanyTracking:
    """What the company's Preferences say of classes and locations."""

    classes: ClassTracking
    departments: bool

    @classmethod
    def of(cls, source: QuickBooksConnection | CompanyPreferences) -> CompanyTracking:
        return cls(source.class_tracking, source.track_departments)

    def problems(self, mapping: BranchMapping) -> list[str]:
        """Why the company cannot take what `mapping` names, in words a bookkeeper acts on."""
        found = []
        if _named(mapping.class_ref) and self.classes is ClassTracking.OFF:
            found.append(
                "class tracking is off in the QuickBooks company: turn on Track classes (Settings, Account and "
                "settings, Advanced, Categories) or take the class out of the mapping"
            )
        if _named(mapping.department_ref) and not self.departments:
            found.append(
                "location tracking is off in the QuickBooks company: locations need QuickBooks Online Plus or "
                "Advanced with Track locations turned on (Settings, Account and settings, Advanced, Categories), "
                "or take the location out of the mapping"
            )
        return found


def mapping_label(mapping: BranchMapping) -> str:
    """How an error names the mapping: "the branch mapping of branch 'north' (service type 'storage')"."""
    service = f" (service type {mapping.service_type!r})" if mapping.service_type else ""
    return f"the branch mapping of branch {mapping.branch_id!r}{service}"


def mapping_error(mapping: BranchMapping, problem: str) -> BookkeepingError:
    return BookkeepingError(f"{mapping_label(mapping)}: {problem}", reason=BRANCH_MAPPING_INVALID)


class BranchTracking:
    """Resolves the tracking of the opportunities one run syncs, for the connection it syncs to."""

    def __init__(
        self,
        connection: QuickBooksConnection | None,
        accounting: AccountingSystem,
        accounting_systems: AccountingSystems,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
    ) -> None:
        self._connection = connection
        self._accounting = accounting
        self._accounting_systems = accounting_systems
        self._uow_factory = uow_factory
        self._clock = clock
        self._resolved: dict[tuple[str, str], Tracking] = {}

    def for_opportunity(self, opportunity: Opportunity) -> Tracking:
        """The opportunity's class and location, as QuickBooks Ids (NO_TRACKING when its branch has no
        mapping). Raises: `BookkeepingError` (BRANCH_MAPPING_INVALID) when the company cannot take the mapping;
        the accounting system's errors when it cannot be read."""
        connection = self._connection
        if connection is None or not connection.settings.branch_mappings:
            return NO_TRACKING
        key = (opportunity.branch_id, opportunity.service_type)
        if key not in self._resolved:
            mapping = branch_mapping(connection.settings.branch_mappings, *key)
            self._resolved[key] = NO_TRACKING if mapping is None else self._resolve(connection, mapping)
        return self._resolved[key]

    def _resolve(self, connection: QuickBooksConnection, mapping: BranchMapping) -> Tracking:
        company = CompanyTracking.of(connection)
        if company.problems(mapping):
            preferences = read_company_preferences(
                connection.tenant_id,
                self._accounting_systems,
                self._uow_factory,
                self._clock,
                branch_id=connection.branch_id,
            )
            company = CompanyTracking.of(preferences) if preferences is not None else company
        problems = company.problems(mapping)
        if problems:
            raise mapping_error(mapping, "; ".join(problems))
        with self._uow_factory.read_only() as uow:  # one read for the class's and the location's look-ups
            known = uow.company_lookups.of_tenant(connection.tenant_id, branch_id=connection.branch_id)
        class_id = self._entry_id(connection, known, mapping, ListKind.CLASS, mapping.class_ref, CLASS_RULE)
        department_id = self._entry_id(
            connection, known, mapping, ListKind.DEPARTMENT, mapping.department_ref, DEPARTMENT_RULE
        )
        return Tracking(class_id, department_id, class_per_line=company.classes is ClassTracking.PER_LINE)

    def _entry_id(
        self,
        connection: QuickBooksConnection,
        known: list[CompanyLookup],
        mapping: BranchMapping,
        kind: ListKind,
        ref: ListRef,
        rule: SettingRule,
    ) -> str:
        """The Id of the active entry `ref` names: from a look-up of `known` that still stands, else read from
        QuickBooks and remembered for the company."""
        if not _named(ref):
            return ""
        lookup_kind, question = _LOOKUP_KINDS[kind], lookup_question(ref)
        now = self._clock.now()
        for lookup in known:
            if (
                lookup.kind is lookup_kind
                and lookup.name == question
                and lookup.answers(connection.realm_id, question, now)
            ):
                return lookup.found.id
        entry = self._accounting.find_list_entry(kind, ref)
        problem = rule.problem(ref, entry)
        if problem is not None or entry is None:
            raise mapping_error(mapping, problem or f"QuickBooks has no {rule.label} {ref.name or ref.id!r}")
        found = CompanyLookup(connection.realm_id, lookup_kind, question, question, entry.ref, now)
        with self._uow_factory() as uow:
            uow.company_lookups.save(connection.tenant_id, [found], branch_id=connection.branch_id)
            uow.commit()
        return entry.id


def lookup_question(ref: ListRef) -> str:
    """What a look-up of `ref` was asked: its Id, else its name as QuickBooks compares names."""
    return f"id:{ref.id}" if ref.id else f"name:{normalise(ref.name)}"


def _named(ref: ListRef) -> bool:
    return bool(ref.id or ref.name)
