"""What a valid QuickBooks environment, endpoint URL and settings change look like.

Pure checks returning `FieldViolation`s, shared by the connection use cases and the operators' CLI, so
that both refuse the same things with the same words.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.company_lists import LIST_SETTINGS, PAYMENT_METHOD_RULE, ListKind, SettingRule
from core.connection import PRODUCTION, SANDBOX, BranchMapping, ListRef, QuickBooksSettings
from core.domain import PaymentMethod
from core.errors import FieldViolation, quoted
from core.text import is_control, usable_as_id
from core.validation import text_id_violations

# What a branch mapping's class and location may be (SPEC §10): any active class, any active location.
CLASS_RULE = SettingRule("class", ListKind.CLASS)
DEPARTMENT_RULE = SettingRule("location", ListKind.DEPARTMENT)

# The settings an UpdateSettings mask may name (QuickBooksSettings' fields).
SETTINGS_FIELDS = (
    "deposit_account",
    "refund_bank_account",
    "accounts_receivable_account",
    "income_item",
    "tax_code",
    "discount_account",
    "tips_item",
    "surcharge_item",
    "processing_fee_account",
    "payout_bank_account",
    "chargeback_account",
    "adjustment_account",
    "payment_methods",
    "doc_number_prefix",
    "invoice_numbering",
    "branch_mappings",
)

# QBO's DocNumber holds 21 characters; the job number needs most of them.
MAX_DOC_NUMBER_PREFIX = 10


def is_loopback(host: str) -> bool:
    """Whether `host` (a URL's hostname) is this machine: the one place plain http may go (see `check_url`)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, field: str) -> list[FieldViolation]:
    """An absolute https URL, or plain http to this machine only: tokens and the client secret travel
    over it, and the emulator (or a test double) on a loopback port is the one reason to skip TLS.

    Control characters are refused before parsing: urlsplit drops tabs and newlines, so it would judge
    another URL than the one stored, and a NUL is no text PostgreSQL can hold."""
    if any(is_control(char) for char in url):
        return [FieldViolation(field, "must not contain control characters (tabs, line breaks, NUL...)")]
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return [FieldViolation(field, f"{quoted(url)} is not a URL")]
    if parts.scheme not in ("http", "https") or not host:
        return [FieldViolation(field, f"{quoted(url)} is not an http(s) URL")]
    if parts.scheme == "http" and not is_loopback(host):
        return [
            FieldViolation(
                field,
                f"plain http is refused for {quoted(host)}: tokens would cross the network unencrypted; "
                "use https (plain http is allowed for loopback addresses only)",
            )
        ]
    return []


def check_environment(environment: str, field: str = "environment") -> list[FieldViolation]:
    """Exactly "sandbox" or "production" (python-quickbooks silently sends "Sandbox" to production), or the
    URL of an OpenID discovery document (the emulator, a test double)."""
    if environment in (SANDBOX, PRODUCTION):
        return []
    if "://" not in environment:
        return [FieldViolation(field, f"{quoted(environment)}: use sandbox, production or a discovery document URL")]
    return check_url(environment, field)


def check_realm_id(realm_id: str, field: str = "realm_id") -> list[FieldViolation]:
    """The company's id is a key: stored with the connection and part of every QuickBooks URL, so one with
    a control or formatting character (a NUL PostgreSQL cannot hold) is refused like any other id."""
    if not usable_as_id(realm_id):
        return [FieldViolation(field, "must not contain control or invisible formatting characters")]
    return []


def check_required(**values: str) -> list[FieldViolation]:
    return [FieldViolation(name, "is required") for name, value in values.items() if not value.strip()]


def settings_to_change(settings: QuickBooksSettings, mask: list[str]) -> list[str]:
    """The settings an update changes: those in `mask` or, with no mask, those the caller filled in."""
    if mask:
        return list(mask)
    defaults = QuickBooksSettings()
    return [name for name in SETTINGS_FIELDS if getattr(settings, name) != getattr(defaults, name)]


@dataclass(frozen=True)
class ListSettingToCheck:
    """One mapping of a settings update that points into the company's lists: `field` is its path in
    UpdateSettingsRequest (what a violation names); `method` is set for a payment method's mapping."""

    field: str
    setting: str
    rule: SettingRule
    ref: ListRef
    method: PaymentMethod | None = None
    mapping: int | None = None  # a branch mapping's class or location: its index in `branch_mappings`


def list_settings_to_check(settings: QuickBooksSettings, fields: list[str]) -> list[ListSettingToCheck]:
    """The mappings an update sets (by id or by name) that must be found in the company before they are
    stored. A mapping left empty goes back to its default and needs no check. Payment methods are
    numbered in the order given, as UpdateSettingsRequest's `settings.payment_methods` list is."""
    wanted: list[ListSettingToCheck] = []
    for name, rule in LIST_SETTINGS.items():
        ref: ListRef = getattr(settings, name)
        if name in fields and (ref.id or ref.name):
            wanted.append(ListSettingToCheck(f"settings.{name}", name, rule, ref))
    if "payment_methods" in fields:
        for i, (method, ref) in enumerate(settings.payment_methods.items()):
            if ref.id or ref.name:
                path = f"settings.payment_methods[{i}].quickbooks_payment_method"
                wanted.append(ListSettingToCheck(path, "payment_methods", PAYMENT_METHOD_RULE, ref, method))
    if "branch_mappings" in fields:
        for i, mapping in enumerate(settings.branch_mappings):
            for part, rule, ref in (
                ("class", CLASS_RULE, mapping.class_ref),
                ("department", DEPARTMENT_RULE, mapping.department_ref),
            ):
                if ref.id or ref.name:
                    path = f"settings.branch_mappings[{i}].{part}_{'id' if ref.id else 'name'}"
                    wanted.append(ListSettingToCheck(path, "branch_mappings", rule, ref, mapping=i))
    return wanted


def check_branch_mappings(mappings: tuple[BranchMapping, ...]) -> list[FieldViolation]:
    """Each mapping names its branch (an id's rules) and a class or a location; one per branch and service type."""
    violations = []
    seen: dict[tuple[str, str], int] = {}
    for i, mapping in enumerate(mappings):
        path = f"settings.branch_mappings[{i}]"
        violations += text_id_violations(mapping.branch_id, f"{path}.branch_id")
        violations += text_id_violations(mapping.service_type, f"{path}.service_type", required=False)
        if not mapping.names_something:
            violations.append(FieldViolation(path, "names neither a class nor a location (department)"))
        key = (mapping.branch_id, mapping.service_type)
        if key in seen:
            violations.append(
                FieldViolation(f"{path}.service_type", f"repeats the mapping of branch_mappings[{seen[key]}]")
            )
        seen.setdefault(key, i)
    return violations


def check_settings_update(settings: QuickBooksSettings, mask: list[str]) -> list[FieldViolation]:
    fields = settings_to_change(settings, mask)
    violations = [
        FieldViolation(f"update_mask.paths[{i}]", f"unknown setting {quoted(name)}; use {', '.join(SETTINGS_FIELDS)}")
        for i, name in enumerate(fields)
        if name not in SETTINGS_FIELDS
    ]
    if "branch_mappings" in fields:
        violations += check_branch_mappings(settings.branch_mappings)
    if "doc_number_prefix" in fields and len(settings.doc_number_prefix) > MAX_DOC_NUMBER_PREFIX:
        violations.append(
            FieldViolation(
                "settings.doc_number_prefix",
                f"at most {MAX_DOC_NUMBER_PREFIX} characters (QuickBooks' DocNumber holds 21 in all)",
            )
        )
    return violations
