"""`qbsync keys`: create, list and revoke API keys (SPEC.md sections 4 and 12).

Registered on the `qbsync` group by qbsync.cli. A key is printed once, when it is created; `list` shows
what an operator needs to decide about a key (whose, what it may do, when it was last used, whether it
still works) and never its secret nor its hash.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta

import click

from core.auth import ApiKeys, parse_permissions
from core.domain import ApiKey
from core.errors import NotFoundError, QbsyncError, ValidationError
from core.ports import Clock
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings

ALL_PERMISSIONS = "sync,read,quickbooks.view,admin"
_DURATION = re.compile(r"(\d+)\s*([hdw])")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_COLUMNS = ("KEY ID", "TENANT", "PERMISSIONS", "STATE", "CREATED", "LAST USED", "EXPIRES", "REVOKED")


def parse_expiry(text: str, now: datetime) -> datetime:
    """When a key given `--expires TEXT` at `now` stops working: a duration from now (`12h`, `90d`, `8w`),
    a date (the key stops working at 00:00 UTC that day) or an ISO date-time (UTC unless it says otherwise).
    Raises ValueError saying what is accepted."""
    text = text.strip()
    duration = _DURATION.fullmatch(text)
    if duration:
        return now + int(duration.group(1)) * _UNITS[duration.group(2)]
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (12h, 90d, 8w), a date (2027-03-31) nor an ISO date-time "
            "(2027-03-31T18:00:00Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def state(key: ApiKey, now: datetime) -> str:
    if key.revoke_time is not None:
        return "revoked"
    return "active" if key.is_usable(now) else "expired"


def key_record(key: ApiKey, now: datetime) -> dict[str, object]:
    """What `keys list --json` prints for one key: everything but the secret's hash."""
    return {
        "key_id": key.key_id,
        "tenant": key.tenant_id,
        "permissions": sorted(p.value for p in key.permissions),
        "state": state(key, now),
        "create_time": _iso(key.create_time),
        "last_use_time": _iso(key.last_use_time),
        "expire_time": _iso(key.expire_time),
        "revoke_time": _iso(key.revoke_time),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _settings() -> Settings:
    settings = Settings.from_env()  # a ConfigError is one line naming the variable (the qbsync group maps it)
    settings.ensure_data_dir()
    return settings


def _keys_and_clock() -> tuple[ApiKeys, Clock]:
    injector = bootstrap(settings=_settings())
    return injector.get(ApiKeys), injector.get(Clock)  # type: ignore[type-abstract]


@click.group()
def keys() -> None:
    """API keys: create, list, revoke."""


@keys.command("create")
@click.option("--tenant", required=True, help="The tenant (moving company) the key belongs to; created if new.")
@click.option("--permissions", default=ALL_PERMISSIONS, show_default=True, help="Comma-separated permissions.")
@click.option(
    "--expires",
    default=None,
    metavar="WHEN",
    help="When the key stops working: 90d, 12h, 8w from now, a date (00:00 UTC that day) or an ISO date-time.",
)
def keys_create(tenant: str, permissions: str, expires: str | None) -> None:
    """Creates an API key and prints it as the last line; only its hash is stored."""
    api_keys, clock = _keys_and_clock()
    expire_time = None
    if expires is not None:
        try:
            expire_time = parse_expiry(expires, clock.now())
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--expires") from exc
    try:
        perms = parse_permissions([p.strip() for p in permissions.split(",") if p.strip()])
        key = api_keys.create(tenant, perms, expire_time)
    except ValidationError as exc:
        raise click.UsageError("; ".join(f"{_option(v.field)}: {v.description}" for v in exc.violations)) from exc
    until = f", expiring {_iso(expire_time)}" if expire_time else ""
    click.echo(f"created a key for tenant {tenant!r} with permissions {permissions}{until}; keep it secret:")
    click.echo(key)


@keys.command("list")
@click.option("--tenant", default=None, help="Only this tenant's keys.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per key.")
def keys_list(tenant: str | None, as_json: bool) -> None:
    """Lists API keys, revoked and expired ones included, oldest first; never a secret."""
    api_keys, clock = _keys_and_clock()
    try:
        listed = api_keys.list_keys(tenant)
    except QbsyncError as exc:
        raise click.ClickException(exc.message) from exc
    now = clock.now()
    records = [key_record(key, now) for key in listed]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo(f"no API keys{f' for tenant {tenant!r}' if tenant else ''}")
        return
    rows = [
        [
            str(r["key_id"]),
            str(r["tenant"]),
            ",".join(r["permissions"]),  # type: ignore[arg-type]
            str(r["state"]),
            *(str(r[f] or "-") for f in ("create_time", "last_use_time", "expire_time", "revoke_time")),
        ]
        for r in records
    ]
    widths = [max(len(row[i]) for row in [list(_COLUMNS), *rows]) for i in range(len(_COLUMNS))]
    for row in [list(_COLUMNS), *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revokes a key (by its id, as `keys list` shows it): every call with it is refused from now on."""
    api_keys, clock = _keys_and_clock()
    asked = clock.now()
    try:
        revoked = api_keys.revoke(key_id)
    except NotFoundError as exc:
        raise click.ClickException(f"{exc.message}; `qbsync keys list` shows the ids") from exc
    except QbsyncError as exc:
        raise click.ClickException(exc.message) from exc
    if revoked.revoke_time is not None and revoked.revoke_time < asked:
        click.echo(f"key {key_id} (tenant {revoked.tenant_id!r}) was already revoked at {_iso(revoked.revoke_time)}")
    else:
        click.echo(f"revoked key {key_id} (tenant {revoked.tenant_id!r}) at {_iso(revoked.revoke_time)}")


def _option(field: str) -> str:
    return f"--{field}" if field in ("tenant", "permissions", "expires") else field
