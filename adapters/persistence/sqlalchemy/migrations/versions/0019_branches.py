"""Branches (SPEC §10, issue 13): a tenant may connect one QuickBooks company per branch besides its default one.

`quickbooks_connections` is keyed by (tenant_id, branch_id); every existing connection gets branch "", which
is the tenant's default connection, so single-connection tenants keep syncing where they did with no operator
action. It also stores the company preferences read at connect that the branches' transactions depend on:
class tracking ('OFF' until read), location tracking (false) and custom transaction numbers (true: invoices keep
their DocNumber from the job number, as before this revision, until the preferences are read again).

`company_lookups` is keyed by connection too (each connection is its own company); existing look-ups are the
default connection's. `opportunities` stores the branch and service type the CRM sent, `sync_jobs` the branch a
job syncs to; both "" for rows written before.

The new settings (`invoice_numbering`, `branch_mappings`) live in the settings' JSON, which reads a row written
before them as unset (codec.settings_from_json). Every existing connection is given `invoice_numbering` CRM
explicitly, though: unset follows the company's custom-transaction-numbers preference once it is read again,
which could switch a company whose books are numbered by its CRM's job numbers to QuickBooks' sequence in the
middle of a month, with nobody having asked. A bookkeeper who wants QuickBooks' numbers sets it.

No index, constraint or foreign key names either table's key but their primary keys, rebuilt here.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONNECTIONS_KEY = ("tenant_id", "branch_id")
LOOKUPS_KEY = ("tenant_id", "branch_id", "kind", "name")


def _branch() -> sa.Column[str]:
    return sa.Column("branch_id", sa.String(), server_default="", nullable=False)


def upgrade() -> None:
    _rekey(
        "quickbooks_connections",
        CONNECTIONS_KEY,
        add=[
            _branch(),
            sa.Column("class_tracking", sa.String(), server_default="OFF", nullable=False),
            sa.Column("track_departments", sa.Boolean(), server_default=sa.false(), nullable=False),
            sa.Column("custom_txn_numbers", sa.Boolean(), server_default=sa.true(), nullable=False),
        ],
    )
    _rekey("company_lookups", LOOKUPS_KEY, add=[_branch()])
    # Plain ADD COLUMNs, on SQLite too (a constant default): no table rebuild, so sync_jobs' partial indexes
    # and PostgreSQL trigger are left as they are.
    op.add_column("opportunities", _branch())
    op.add_column("opportunities", sa.Column("service_type", sa.String(), server_default="", nullable=False))
    op.add_column("sync_jobs", _branch())
    # The company each record was written in: QuickBooks Ids are unique within one company only, so a record
    # whose branch now syncs to another company must not be updated there by its old Id (core.sync_run).
    op.add_column("sync_records", sa.Column("realm_id", sa.String(), server_default="", nullable=False))
    _keep_crm_numbering()


def _keep_crm_numbering() -> None:
    """The settings' JSON of every connection gains "invoice_numbering": "CRM" (see the module's docstring)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE quickbooks_connections SET settings = "
            '(settings::jsonb || \'{"invoice_numbering": "CRM"}\'::jsonb)::text'
        )
    else:
        op.execute("UPDATE quickbooks_connections SET settings = json_set(settings, '$.invoice_numbering', 'CRM')")


def downgrade() -> None:
    # The earlier schema holds one connection per tenant: the branches' own connections and look-ups go.
    op.execute("DELETE FROM quickbooks_connections WHERE branch_id <> ''")
    op.execute("DELETE FROM company_lookups WHERE branch_id <> ''")
    op.drop_column("sync_records", "realm_id")
    op.drop_column("sync_jobs", "branch_id")
    op.drop_column("opportunities", "service_type")
    op.drop_column("opportunities", "branch_id")
    _rekey("company_lookups", ("tenant_id", "kind", "name"), drop=["branch_id"])
    _rekey(
        "quickbooks_connections",
        ("tenant_id",),
        drop=["custom_txn_numbers", "track_departments", "class_tracking", "branch_id"],
    )


def _rekey(table: str, key: Sequence[str], *, add: Sequence[sa.Column[Any]] = (), drop: Sequence[str] = ()) -> None:
    """Adds or drops columns of `table` and makes `key` its primary key (keeping its name, pk_<table>). On
    SQLite, which cannot alter a primary key, the table is rebuilt (batch mode) with its rows."""
    name = f"pk_{table}"
    if op.get_bind().dialect.name == "postgresql":
        for column in add:
            op.add_column(table, column)
        op.drop_constraint(name, table, type_="primary")
        for column_name in drop:
            op.drop_column(table, column_name)
        op.create_primary_key(name, table, list(key))
        return
    with op.batch_alter_table(table, recreate="always") as batch:
        batch.drop_constraint(name, type_="primary")
        for column in add:
            batch.add_column(column)
        for column_name in drop:
            batch.drop_column(column_name)
        batch.create_primary_key(name, list(key))
