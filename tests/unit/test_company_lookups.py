"""When a stored look-up of a company's lists still answers (core/company_lookups.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.company_lookups import LOOKUP_LIFETIME, LookupKind, setting_checked
from core.connection import ListRef

CHECKED_AT = datetime(2026, 4, 3, 9, 0, tzinfo=UTC)
CHECKED = setting_checked("4620", "deposit_account", ListRef("2", "Undeposited Funds"), CHECKED_AT)


def test_a_setting_checked_is_recorded_against_the_id_it_was_found_by() -> None:
    assert (CHECKED.kind, CHECKED.name, CHECKED.against) == (LookupKind.SETTING, "deposit_account", "2")


def test_it_answers_for_the_same_company_and_value_until_it_expires() -> None:
    assert CHECKED.answers("4620", "2", CHECKED_AT + LOOKUP_LIFETIME - timedelta(seconds=1))
    assert not CHECKED.answers("4620", "2", CHECKED_AT + LOOKUP_LIFETIME)


def test_it_does_not_answer_for_a_changed_setting_or_another_company() -> None:
    assert not CHECKED.answers("4620", "7", CHECKED_AT)  # the setting now points elsewhere
    assert not CHECKED.answers("9130", "2", CHECKED_AT)  # reconnected to another company
