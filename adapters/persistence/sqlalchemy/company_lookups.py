"""`CompanyLookupRepository` over SQL: the table `company_lookups` (models.CompanyLookupRow)."""

from __future__ import annotations

from sqlalchemy import delete

from adapters.persistence.sqlalchemy.models import CompanyLookupRow
from adapters.persistence.sqlalchemy.repositories import SqlRepository
from core.company_lookups import CompanyLookup, LookupKind
from core.connection import ListRef
from core.ports import CompanyLookupRepository

_KEYS = ("tenant_id", "branch_id", "kind", "name")  # branch_id: the connection's (revision 0019)


class SqlAlchemyCompanyLookupRepository(SqlRepository, CompanyLookupRepository):
    def of_tenant(self, tenant_id: str, *, branch_id: str = "") -> list[CompanyLookup]:
        table = CompanyLookupRow.__table__
        rows = self._session.connection().execute(
            table.select().where(table.c.tenant_id == tenant_id, table.c.branch_id == branch_id)
        )
        return [
            CompanyLookup(
                row.realm_id,
                LookupKind(row.kind),
                row.name,
                row.against,
                ListRef(row.found_id, row.found_name),
                row.checked_time,
            )
            for row in rows
        ]

    def save(self, tenant_id: str, lookups: list[CompanyLookup], *, branch_id: str = "") -> None:
        self._upsert_many(
            CompanyLookupRow,
            [
                {
                    "tenant_id": tenant_id,
                    "branch_id": branch_id,
                    "kind": lookup.kind.value,
                    "name": lookup.name,
                    "realm_id": lookup.realm_id,
                    "against": lookup.against,
                    "found_id": lookup.found.id,
                    "found_name": lookup.found.name,
                    "checked_time": lookup.checked_time,
                }
                for lookup in lookups
            ],
            _KEYS,
        )

    def forget(self, tenant_id: str, kind: LookupKind, name: str | None = None, *, branch_id: str = "") -> None:
        statement = delete(CompanyLookupRow).where(
            CompanyLookupRow.tenant_id == tenant_id,
            CompanyLookupRow.branch_id == branch_id,
            CompanyLookupRow.kind == kind.value,
        )
        if name is not None:
            statement = statement.where(CompanyLookupRow.name == name)
        self._session.execute(statement)
