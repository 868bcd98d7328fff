"""The company look-ups repository's contract (core/company_lookups.py): memory, SQLite and PostgreSQL agree."""

from __future__ import annotations

from datetime import timedelta

from persistence_builders import T0, Backend

from core.company_lookups import CompanyLookup, LookupKind
from core.connection import ListRef

CHECKED = CompanyLookup("4620", LookupKind.SETTING, "deposit_account", "2", ListRef("2", "Undeposited Funds"), T0)
RATE = CompanyLookup("4620", LookupKind.TAX_RATE, "boston", "boston", ListRef("3", "Boston"), T0)
OTHER_RATE = CompanyLookup("4620", LookupKind.TAX_RATE, "ma state", "ma state", ListRef("4", "MA State"), T0)
METHODS = CompanyLookup("4620", LookupKind.PAYMENT_METHODS, "", "ach", ListRef(), T0)


def _stored(backend: Backend, tenant: str = "acme") -> set[CompanyLookup]:
    with backend.uow() as uow:
        return set(uow.company_lookups.of_tenant(tenant))


def _save(backend: Backend, *lookups: CompanyLookup, tenant: str = "acme") -> None:
    with backend.uow() as uow:
        uow.company_lookups.save(tenant, list(lookups))
        uow.commit()


def test_look_ups_round_trip_exactly_per_tenant(backend: Backend) -> None:
    _save(backend, CHECKED, RATE, METHODS)
    _save(backend, OTHER_RATE, tenant="globex")
    assert _stored(backend) == {CHECKED, RATE, METHODS}
    assert _stored(backend, "globex") == {OTHER_RATE}
    assert _stored(backend, "nobody") == set()


def test_a_newer_look_up_of_the_same_kind_and_name_replaces_the_older(backend: Backend) -> None:
    _save(backend, CHECKED)
    newer = CompanyLookup(
        "9130", LookupKind.SETTING, "deposit_account", "7", ListRef("7", "Savings"), T0 + timedelta(1)
    )
    _save(backend, newer)
    assert _stored(backend) == {newer}


def test_forget_one_look_up_or_every_one_of_a_kind_of_one_tenant(backend: Backend) -> None:
    _save(backend, CHECKED, RATE, OTHER_RATE, METHODS)
    _save(backend, RATE, tenant="globex")
    with backend.uow() as uow:
        uow.company_lookups.forget("acme", LookupKind.SETTING, "deposit_account")
        uow.company_lookups.forget("acme", LookupKind.SETTING, "tips_item")  # none: nothing happens
        uow.commit()
    assert _stored(backend) == {RATE, OTHER_RATE, METHODS}
    with backend.uow() as uow:
        uow.company_lookups.forget("acme", LookupKind.TAX_RATE)
        uow.commit()
    assert _stored(backend) == {METHODS}
    assert _stored(backend, "globex") == {RATE}


def test_nothing_lasts_without_a_commit(backend: Backend) -> None:
    _save(backend, CHECKED)
    with backend.uow() as uow:
        uow.company_lookups.save("acme", [RATE])
        uow.company_lookups.forget("acme", LookupKind.SETTING)
    assert _stored(backend) == {CHECKED}
