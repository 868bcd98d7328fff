"""The admin API under ``/_emulator``: JSON in, JSON out, no auth (loopback test tool).

Routes (bodies are JSON objects; every field optional unless said otherwise):

- ``GET  /_emulator/health`` → ``{"ok": true}``
- ``POST /_emulator/reset`` → forget everything (realms, tokens, faults, log, settings).
- ``GET|POST /_emulator/settings`` ``{"latency_ms", "throttle_format": "json"|"xml", "retry_after",
  "auth_required", "access_token_ttl", "refresh_token_rotation": "strict"|"lenient", "log_bodies", "limits":
  {"per_minute", "per_second", "concurrent", "batch_per_minute"}}`` (0 disables a limit) → the settings
  now in force. ``access_token_ttl`` (seconds, fractions allowed) applies to tokens issued from then on:
  short-lived tokens make refreshes frequent. ``refresh_token_rotation`` "strict" (the default) kills a
  refresh token the moment it is used, "lenient" only once its successor is used (see ``oauth.py``).
  ``log_bodies`` (off by default, to keep the log small) records each API request's JSON body in its log
  entry (``body``): what a client really sent.
- ``POST /_emulator/realms`` ``{"realm_id", "company_name", "client_id", "client_secret", "access_token",
  "refresh_token"}`` → ``{"realm_id", "client_id", "client_secret", "access_token", "refresh_token",
  "expires_in", ...}``; creates and seeds the realm if new, and connects the app to it.
- ``GET  /_emulator/realms`` → ``{"realms": [ids]}``
- ``GET  /_emulator/realms/{realm}/state`` → records of every entity (rendered as the API would; Deposits
  among them), deleted and voided ids, balances (invoices, customers, payments' unapplied, ``accounts``: the
  balance of each Bank and Other Current Asset account by Id — Undeposited Funds falls and the bank rises as
  payments are deposited — and ``payments_deposited``: payment Id → the Deposit holding it), notes, closing
  date, throttle gauge,
  ``tokens``: the live access and refresh tokens, ``refreshes`` (refresh grants answered) and
  ``dead_refreshes`` (refreshes refused because the token had been rotated away: a client lost one).
- ``GET|POST /_emulator/realms/{realm}/closing_date`` ``{"date": "yyyy-MM-dd" | null}`` → ``{"closing_date"}``:
  QBO's "Close the books". While set, API creates, updates, deletes and voids of a Payment, Purchase,
  Invoice or Deposit whose TxnDate (sent or stored) is on or before it answer Fault 6210 "Account Period Closed" (HTTP
  400, ValidationFault; the Detail ends with the closing date, which real QBO's does not). null (or ``""``)
  opens the books again. The ``records`` routes below are not refused: a bookkeeper in QBO can get past the
  closing date.
- ``GET|POST /_emulator/realms/{realm}/preferences`` ``{"home_currency": "CAD", "multicurrency": true}`` →
  ``{"CurrencyPrefs": {"HomeCurrency": {"value"}, "MultiCurrencyEnabled"}}``: the company's currency settings,
  as the API's ``GET /preferences`` serves them. QBO's rules hold: once multicurrency is on it cannot be
  turned off and the home currency cannot change (Fault 6000, HTTP 400). A new realm is USD, multicurrency off.
  The same route sets SPEC §10's preferences, each true or false: ``class_tracking_per_txn``,
  ``class_tracking_per_txn_line`` (QBO has one or the other: turning one on turns the other off),
  ``track_departments`` (locations), ``custom_txn_numbers`` (off: QuickBooks numbers an invoice sent without a
  DocNumber, one more than the highest number, 1001 first) and ``refuse_duplicate_doc_numbers`` (QBO's "warn
  if duplicate", off by default: on, an invoice with another invoice's DocNumber is Fault 6140 "Duplicate
  Document Number Error"). It answers ``CurrencyPrefs``, ``AccountingInfoPrefs``, ``SalesFormsPrefs`` and
  ``refuse_duplicate_doc_numbers``. A new realm tracks neither classes nor locations, and numbers invoices.
  Classes and locations are seeded as records: ``POST .../records/Class`` ``{"Name", "ParentRef": {"value"}}``,
  ``.../records/Department`` likewise, ``.../records/Class/{id}/deactivate``.
- ``GET|POST /_emulator/realms/{realm}/sales_tax`` ``{"sales_tax": "AUTOMATED"|"MANUAL"|"NONE", "ast_rate": "8.25",
  "invoice_total_drift": "0.01", "ignore_total_tax": true}`` → those four, as now in force: how the company
  treats sales tax (``sales_tax.py``; Preferences.TaxPrefs follows ``sales_tax``). AUTOMATED (the default)
  computes tax at ``ast_rate`` percent on the TAX lines of an invoice that sends no ``TxnTaxDetail.TotalTax``
  and keeps the TotalTax one sends; MANUAL takes the rate of the invoice's ``TxnTaxDetail.TxnTaxCodeRef`` (a
  company switched to MANUAL without tax codes gets one, "Sales tax" at ``ast_rate``); NONE refuses tax codes
  and tax. Testers' controls, to make the emulator disagree with a client: ``invoice_total_drift`` is added to
  every invoice's TotalAmt written from then on (a QBO rounding its own way), ``ignore_total_tax`` makes AST
  compute its own tax even when TotalTax is sent. More tax codes: ``POST .../records/TaxRate`` ``{"Name",
  "RateValue"}`` then ``.../records/TaxCode`` ``{"Name", "SalesTaxRateList": {"TaxRateDetail": [{"TaxRateRef":
  {"value": id}}]}}`` (the API itself refuses writes to them, as QBO does outside its TaxService).
- ``GET  /_emulator/realms/{realm}/limits`` → ``{"in_flight", "max_in_flight", "requests_total",
  "admitted_last_minute", "throttled"}``
- ``POST /_emulator/realms/{realm}/auth_code`` ``{"client_id", "redirect_uri"}`` → ``{"code"}`` for
  ``grant_type=authorization_code``.
- ``POST /_emulator/realms/{realm}/records/{Entity}`` entity JSON → create (or, with an Id, update without
  SyncToken check; ``"sparse": true`` merges) "as a bookkeeper would in QBO" (the closing date does not
  apply) → ``{Entity: record}``.
- ``POST /_emulator/realms/{realm}/records/{Entity}/{id}/{action}`` action ``delete`` | ``void`` |
  ``deactivate`` | ``activate`` | ``update`` (body: fields to merge) → ``{Entity: record}``.
  ``deactivate`` with ``{"after_calls": N}`` does it later instead: just before the (N+1)th API call to the
  realm from now (a record made inactive in the middle of a sync; see ``faults.py``). A ``deactivate`` or
  ``activate`` without it cancels a pending one.
- ``POST /_emulator/realms/{realm}/requestids/forget`` → ``{"forgotten": n}``: QBO does not always honour
  ``requestid`` replay; this makes the realm forget every answer kept for replay, so a test can prove a client
  does not rely on it (the fake's ``forget_request_ids``).
- ``POST /_emulator/faults`` ``{"kind" (required), "count": 1, "realm_id", "method", "entity",
  "operation", "seconds", "body"}`` → the armed rule; ``GET`` lists; ``DELETE`` (or ``POST
  /_emulator/faults/clear``) disarms all. Kinds and filters: see ``faults.py``.
- ``POST /_emulator/tokens/expire`` ``{"realm_id"}`` → ``{"expired": n}`` (access tokens die now).
- ``POST /_emulator/tokens/revoke`` ``{"realm_id", "refresh_token"}`` → ``{"revoked": n}``.
- ``GET  /_emulator/requests?realm_id=&entity=&operation=&since=<seq>`` → ``{"requests": [...]}``, each
  ``{seq, realm_id, method, path, entity, operation, requestid, minorversion, status, outcome, fault,
  throttled, replayed, started_at, ended_at, in_flight_at_start, intuit_tid}`` (and ``body`` with the
  ``log_bodies`` setting);
  ``DELETE`` (or ``POST /_emulator/requests/clear``) empties it and resets the max-in-flight marks.
- ``GET  /_emulator/errors`` → tracebacks of emulator bugs (should stay empty).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .api import Response, json_response
from .errors import QboFault
from .shapes import JsonDict, loads
from .store import ENTITIES

if TYPE_CHECKING:
    from .server import EmulatorState


class _BadRequest(Exception):
    pass


def parse_json(raw: bytes) -> JsonDict:
    """An admin body (empty means ``{}``)."""
    if not raw.strip():
        return {}
    body = loads(raw)
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def oauth_fault(kind: str, seconds: float) -> Response | None:
    """Injected faults on the token endpoint (None for commit-then kinds, which the caller completes)."""
    if kind == "timeout":
        return Response(action="timeout", seconds=seconds)
    if kind == "reset":
        return Response(action="reset")
    if kind in ("http500", "http503"):
        return Response(int(kind[4:]), b"<html><body>Service Unavailable</body></html>", "text/html")
    if kind in ("throttle", "throttle_xml"):
        return json_response(429, {"error": "rate_limit_exceeded"})
    if kind == "auth401":
        return json_response(401, {"error": "invalid_client"})
    return None


def handle(state: EmulatorState, method: str, path: str, params: dict[str, str], raw: bytes) -> Response:
    """Route one admin request."""
    try:
        body = parse_json(raw) if method == "POST" else {}
        return _route(state, method, path.split("/")[2:], params, body)
    except QboFault as fault:
        return json_response(fault.status, fault.body())
    except (ValueError, KeyError, TypeError, _BadRequest) as exc:
        return json_response(400, {"error": "bad_request", "detail": str(exc)})


def _route(state: EmulatorState, method: str, parts: list[str], params: dict[str, str], body: JsonDict) -> Response:
    head = parts[0] if parts else ""
    if head == "health":
        return json_response(200, {"ok": True})
    if head == "reset" and method == "POST":
        state.reset()
        return json_response(200, {"ok": True})
    if head == "settings":
        if method == "POST":
            _apply_settings(state, body)
        return json_response(200, state.describe_settings())
    if head == "realms":
        return _realms(state, method, parts[1:], body)
    if head == "faults":
        if method == "POST" and parts[1:] == []:
            try:
                rule = state.faults.arm(body)
            except ValueError as exc:
                raise _BadRequest(str(exc)) from exc
            return json_response(200, {"id": rule.id, "kind": rule.kind, "remaining": rule.remaining})
        if method == "DELETE" or parts[1:] == ["clear"]:
            state.faults.clear()
            return json_response(200, {"ok": True})
        return json_response(200, {"faults": state.faults.list()})
    if head == "tokens" and method == "POST" and len(parts) == 2:
        realm_id = str(body["realm_id"]) if body.get("realm_id") is not None else None
        if parts[1] == "expire":
            return json_response(200, {"expired": state.oauth.expire_access_tokens(realm_id)})
        if parts[1] == "revoke":
            count = state.oauth.revoke_refresh_tokens(realm_id, body.get("refresh_token"))
            return json_response(200, {"revoked": count})
    if head == "requests":
        if method == "DELETE" or parts[1:] == ["clear"]:
            state.log.clear()
            state.limiter.reset_counters()
            return json_response(200, {"ok": True})
        return json_response(200, {"requests": _requests(state, params)})
    if head == "errors":
        return json_response(200, {"errors": list(state.errors)})
    return json_response(404, {"error": "not_found", "path": "/".join(["", "_emulator", *parts])})


def _apply_settings(state: EmulatorState, body: JsonDict) -> None:
    settings = state.settings
    if "latency_ms" in body:
        settings.latency_ms = float(body["latency_ms"])
    if "throttle_format" in body:
        if body["throttle_format"] not in ("json", "xml"):
            raise _BadRequest("throttle_format must be json or xml")
        settings.throttle_format = body["throttle_format"]
    if "retry_after" in body:
        settings.retry_after = None if body["retry_after"] is None else int(body["retry_after"])
    if "auth_required" in body:
        settings.auth_required = bool(body["auth_required"])
    if "log_bodies" in body:
        settings.log_bodies = bool(body["log_bodies"])
    if "access_token_ttl" in body:
        state.oauth.access_ttl = float(body["access_token_ttl"])
    if "refresh_token_rotation" in body:
        try:
            state.oauth.set_rotation(str(body["refresh_token_rotation"]))
        except ValueError as exc:
            raise _BadRequest(str(exc)) from None
    if isinstance(body.get("limits"), dict):
        state.limits.update(body["limits"])


def _requests(state: EmulatorState, params: dict[str, str]) -> list[JsonDict]:
    since = int(params.get("since", 0))
    out = []
    for entry in list(state.log):
        if entry["seq"] <= since:
            continue
        if any(params.get(key) and str(entry.get(key)) != params[key] for key in ("realm_id", "entity", "operation")):
            continue
        out.append(entry)
    return out


def _realms(state: EmulatorState, method: str, parts: list[str], body: JsonDict) -> Response:
    if not parts:
        if method == "POST":
            return json_response(200, state.create_realm(body))
        return json_response(200, {"realms": sorted(state.realms)})
    realm = state.realm(parts[0])
    if realm is None:
        return json_response(404, {"error": "no_such_realm", "realm_id": parts[0]})
    rest = parts[1:]
    if rest == ["state"]:
        return json_response(
            200,
            {
                **realm.state(),
                "limits": state.limiter.snapshot(realm.realm_id),
                "tokens": state.oauth.summary(realm.realm_id),
                "at": time.time(),
            },
        )
    if rest == ["closing_date"]:
        if method == "POST":
            if "date" not in body:
                raise _BadRequest('send {"date": "yyyy-MM-dd"} or {"date": null}')
            realm.set_closing_date(body["date"])
        closing = realm.closing_date
        return json_response(200, {"closing_date": closing.isoformat() if closing else None})
    if rest == ["preferences"]:
        if method == "POST":
            multicurrency = body.get("multicurrency")
            if multicurrency is not None and not isinstance(multicurrency, bool):
                raise _BadRequest("multicurrency must be true or false")
            if "home_currency" in body or "multicurrency" in body:
                realm.set_currency(body.get("home_currency"), multicurrency)
            realm.set_tracking_preferences(body)
        return json_response(
            200, {"CurrencyPrefs": realm.preferences()["CurrencyPrefs"], **realm.tracking_preferences()}
        )
    if rest == ["sales_tax"]:
        if method == "POST":
            return json_response(200, realm.set_sales_tax(body))
        return json_response(200, realm.tax.describe())
    if rest == ["limits"]:
        return json_response(200, state.limiter.snapshot(realm.realm_id))
    if rest == ["auth_code"] and method == "POST":
        client_id = body.get("client_id") or next(iter(state.oauth.apps), "")
        code = state.oauth.authorization_code(str(client_id), realm.realm_id, str(body.get("redirect_uri", "")))
        return json_response(200, {"code": code})
    if rest == ["requestids", "forget"] and method == "POST":
        with realm.lock:
            forgotten = len(realm.replay) + len(realm.batch_replay)
            realm.replay.clear()
            realm.batch_replay.clear()
        return json_response(200, {"forgotten": forgotten})
    if rest and rest[0] == "records" and method == "POST":
        return _records(state, realm, rest[1:], body)
    return json_response(404, {"error": "not_found"})


def _records(state: EmulatorState, realm: Any, parts: list[str], body: JsonDict) -> Response:
    """Changes made "in the QBO UI": the store's rules apply, SyncTokens are not checked."""
    by_lower = {name.lower(): name for name in ENTITIES}
    if not parts or parts[0].lower() not in by_lower:
        raise _BadRequest(f"entity must be one of {list(ENTITIES)}")
    entity = by_lower[parts[0].lower()]
    if len(parts) == 1:
        if body.get("Id") not in (None, "", 0, "0"):
            return json_response(200, {entity: realm.update(entity, body, check_token=False, enforce_closing=False)})
        return json_response(200, {entity: realm.create(entity, body, enforce_closing=False)})
    if len(parts) != 3:
        raise _BadRequest("use /records/{Entity} or /records/{Entity}/{id}/{action}")
    entity_id, action = parts[1], parts[2]
    target = {"Id": entity_id}
    ui = {"check_token": False, "enforce_closing": False}
    if action == "delete":
        return json_response(200, {entity: realm.delete(entity, target, **ui)})
    if action == "void":
        return json_response(200, {entity: realm.void(entity, target, **ui)})
    if action in ("deactivate", "activate"):
        if action == "deactivate" and body.get("after_calls") is not None:
            state.faults.schedule_deactivation(realm.realm_id, entity, entity_id, int(body["after_calls"]))
            return json_response(200, {entity: realm.read(entity, entity_id)})
        state.faults.cancel_deactivation(realm.realm_id, entity, entity_id)
        change = {**target, "sparse": True, "Active": action == "activate"}
        return json_response(200, {entity: realm.update(entity, change, **ui)})
    if action == "update":
        change = {**body, **target, "sparse": True}
        return json_response(200, {entity: realm.update(entity, change, **ui)})
    raise _BadRequest(f"unknown action {action!r}")
