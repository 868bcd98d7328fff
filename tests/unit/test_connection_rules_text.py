"""A URL or realm id is judged as it was sent: control characters refused before urlsplit (which drops tabs
and newlines) gets to see it, and before a NUL reaches the database (PostgreSQL cannot hold one)."""

from __future__ import annotations

import pytest

from core.connection_rules import check_realm_id, check_url


@pytest.mark.parametrize(
    "url",
    [
        "https://crm.example.com/cb\x00",
        "https://crm.exa\tmple.com/cb",
        "https://crm.example.com/\ncb",
        "http://127.0.0.1\r/",
    ],
)
def test_a_url_with_a_control_character_is_refused_naming_the_field(url: str) -> None:
    assert [v.field for v in check_url(url, "redirect_uri")] == ["redirect_uri"]


def test_a_plain_url_passes() -> None:
    assert check_url("https://crm.example.com/qbo/callback?x=1", "redirect_uri") == []


@pytest.mark.parametrize("realm_id", ["46\x0020", "4620\n", "46\u200b20", "\u202e4620"])
def test_a_realm_id_with_a_control_or_format_character_is_refused(realm_id: str) -> None:
    assert [v.field for v in check_realm_id(realm_id)] == ["realm_id"]


def test_a_realm_id_as_intuit_hands_it_over_passes() -> None:
    assert check_realm_id("9130347596285735") == []
