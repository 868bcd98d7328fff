"""The QBO Accounting API v3 surface: ``/v3/company/{realm}/...`` requests turned into store calls.

Order of checks for each call, chosen to mirror where QBO's layers sit: bearer token (401/403), injected
faults, throttling (429), ``requestid`` replay, then the write itself under the realm's lock.
"""

from __future__ import annotations

import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import errors
from .batch import run_batch
from .errors import QboFault
from .shapes import JsonDict, dumps, error_entry, fault_body, loads, response_time, xml_fault
from .store import ENTITIES, TAX_ENTITIES, Realm

if TYPE_CHECKING:
    from .server import EmulatorState

_ENTITY_BY_PATH = {name.lower(): name for name in ENTITIES}


@dataclass
class Response:
    """What to send back; ``action`` "reset" or "timeout" means send nothing and drop the connection."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    action: str | None = None
    seconds: float = 0.0


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer."""
    return Response(status=status, body=dumps(payload), headers=dict(headers or {}))


@dataclass
class ApiCall:
    """A parsed API request (also what the request log records)."""

    method: str
    path: str
    realm_id: str
    entity: str | None
    operation: str | None
    entity_id: str | None
    params: dict[str, str]
    body: Any = None
    body_error: str | None = None


def parse_call(method: str, path: str, params: dict[str, str], raw: bytes) -> ApiCall | None:
    """Work out entity and operation from the URL (and, for POST /{entity}, the body); None if not an API path."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 4 or parts[0] != "v3" or parts[1] != "company":
        return None
    realm_id, rest = parts[2], parts[3:]
    call = ApiCall(method, path, realm_id, None, None, None, params)
    head = rest[0].lower()
    if head == "query":
        call.entity, call.operation = "query", "query"
        call.body = raw.decode("utf-8", "replace") if method == "POST" else params.get("query", "")
        return call
    if head == "cdc":
        call.entity, call.operation = "cdc", "cdc"
        return call
    if head == "batch":
        call.entity, call.operation = "batch", "batch"
    else:
        call.entity = _ENTITY_BY_PATH.get(head, rest[0])
        if len(rest) > 1:
            call.entity_id = rest[1]
    if method == "GET":
        call.operation = "read"
        return call
    if raw.strip():
        try:
            call.body = loads(raw)
        except ValueError as exc:
            call.body_error = str(exc)
    if call.operation is None:
        operation = params.get("operation", "").lower()
        if operation == "delete":
            call.operation = "delete"
        elif operation == "void" or params.get("include", "").lower() == "void":
            call.operation = "void"
        elif isinstance(call.body, dict) and call.body.get("Id") not in (None, "", 0, "0"):
            call.operation = "update"
        else:
            call.operation = "create"
    return call


def throttle_response(state: EmulatorState, xml: bool) -> Response:
    """429 ThrottleExceeded, as JSON or as the XML QBO sometimes sends regardless of Accept."""
    message, detail = "message=ThrottleExceeded; errorCode=003001; statusCode=429", "The request limit was reached."
    headers = {}
    if state.settings.retry_after is not None:
        headers["Retry-After"] = str(state.settings.retry_after)
    if xml:
        return Response(429, xml_fault("3001", message, detail), "application/xml", headers)
    return json_response(429, fault_body([error_entry("3001", message, detail)], "SERVICE"), headers)


def _auth_fault(status: int, detail: str) -> Response:
    if status == 401:
        body = fault_body(
            [error_entry("3200", "message=AuthenticationFailed; errorCode=003200; statusCode=401", detail)],
            "AuthenticationFault",
        )
        return json_response(401, body, {"WWW-Authenticate": 'Bearer realm="Intuit", error="invalid_token"'})
    body = fault_body(
        [error_entry("3100", "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403", detail)],
        "AuthorizationFault",
    )
    return json_response(403, body)


def _server_error(status: int, as_json: bool) -> Response:
    if as_json:
        body = fault_body(
            [
                error_entry(
                    "10000",
                    "An application error has occurred while processing your request",
                    "System Failure Error: emulated",
                )
            ],
            "SystemFault",
        )
        return json_response(status, body)
    page = f"<html><body><h1>{status} Service Unavailable</h1></body></html>".encode()
    return Response(status, page, "text/html")


def execute(realm: Realm, call: ApiCall) -> tuple[int, JsonDict]:
    """Run one call against the store; QBO faults become (400, Fault body)."""
    try:
        return 200, {**_dispatch(realm, call), "time": response_time()}
    except QboFault as fault:
        return fault.status, fault.body()


def _entity_name(call: ApiCall) -> str:
    if call.entity not in ENTITIES:
        raise errors.unsupported(f"The emulator does not implement {call.entity} ({call.operation}).")
    return call.entity


def _dispatch(realm: Realm, call: ApiCall) -> JsonDict:
    if call.body_error is not None:
        raise errors.invalid_property(f"Request body is not valid JSON: {call.body_error}")
    if call.operation == "query":
        return {"QueryResponse": realm.query(str(call.body or ""))}
    if call.operation == "cdc":
        entities = [e for e in call.params.get("entities", "").split(",") if e]
        return {"CDCResponse": [{"QueryResponse": realm.changed_since(entities, call.params.get("changedSince", ""))}]}
    if call.entity == "preferences" and call.operation == "read":
        # GET /preferences: one object per company, no Id in the path (python-quickbooks' PrefMixin).
        return {"Preferences": realm.preferences()}
    entity = _entity_name(call)
    if call.operation == "read":
        if entity == "CompanyInfo":
            return {entity: realm.read(entity, "1")}
        return {entity: realm.read(entity, str(call.entity_id))}
    _writable_through_api(entity)
    body = call.body if isinstance(call.body, dict) else {}
    if not isinstance(call.body, dict):
        raise errors.invalid_property("Request body must be a JSON object")
    if call.operation == "delete":
        return {entity: realm.delete(entity, body)}
    if call.operation == "void":
        return {entity: realm.void(entity, body)}
    return {entity: realm.save(entity, body)}


def _writable_through_api(entity: str) -> None:
    if entity in TAX_ENTITIES:
        # QBO makes tax codes and rates through its TaxService endpoint, which the emulator does not offer;
        # the admin API's records route stands for a bookkeeper setting them up.
        raise errors.unsupported(f"Operation Create/Update is not supported for {entity}; use the TaxService.")


def handle_api(state: EmulatorState, call: ApiCall, headers: dict[str, str]) -> tuple[Response, JsonDict]:
    """Run a call through auth, faults, throttles and replay; returns the response and its log entry."""
    entry: JsonDict = {
        "realm_id": call.realm_id,
        "method": call.method,
        "path": call.path,
        "entity": call.entity,
        "operation": call.operation,
        "requestid": call.params.get("requestid"),
        "minorversion": call.params.get("minorversion"),
        "started_at": time.time(),
        "fault": None,
        "replayed": False,
        "throttled": None,
        "intuit_tid": str(uuid.uuid4()),
    }
    if state.settings.log_bodies and call.method == "POST" and call.operation != "query":
        entry["body"] = call.body
    entry["in_flight_at_start"] = state.limiter.enter(call.realm_id)
    try:
        response = _handle(state, call, headers, entry)
    except Exception:  # an emulator bug must still answer, the way QBO answers its own
        state.errors.append(traceback.format_exc())
        response = _server_error(500, as_json=True)
    finally:
        state.limiter.leave(call.realm_id)
    response.headers.setdefault("intuit_tid", entry["intuit_tid"])
    entry["status"] = response.status if response.action is None else None
    entry["outcome"] = response.action or "answered"
    entry["ended_at"] = time.time()
    return response, entry


def _handle(state: EmulatorState, call: ApiCall, headers: dict[str, str], entry: JsonDict) -> Response:
    if state.settings.latency_ms:
        time.sleep(state.settings.latency_ms / 1000)
    if state.settings.auth_required:
        check = state.oauth.check_bearer(headers.get("authorization"), call.realm_id)
        if check.status:
            return _auth_fault(check.status, check.detail)
    realm = state.realm(call.realm_id, create=not state.settings.auth_required)
    if realm is None:
        return _auth_fault(403, f"Company {call.realm_id} does not exist in the emulator")
    for entity, entity_id in state.faults.due_deactivations(call.realm_id):
        # Someone in the QBO UI, between two calls of a sync: no SyncToken check, the closing date does not apply.
        change = {"Id": entity_id, "sparse": True, "Active": False}
        realm.update(entity, change, check_token=False, enforce_closing=False)
    rule = state.faults.take(call.realm_id, call.method, call.entity, call.operation)
    if rule is not None:
        entry["fault"] = rule.kind
        early = _early_fault(state, rule.kind, rule.seconds, rule.body)
        if early is not None:
            return early
    reason = state.limiter.admit(call.realm_id, entry["in_flight_at_start"], call.operation == "batch")
    if reason is not None:
        entry["throttled"] = reason
        return throttle_response(state, state.settings.throttle_format == "xml")
    request_id = call.params.get("requestid") if call.method == "POST" else None
    with realm.lock:
        if call.operation == "batch":
            response = _batch(state, realm, call, request_id, entry)
        elif request_id and request_id in realm.replay:
            status, body = realm.replay[request_id]
            entry["replayed"] = True
            response = Response(status, body)
        else:
            status, payload = execute(realm, call)
            response = json_response(status, payload)
            if request_id:
                realm.replay[request_id] = (status, response.body)
    if rule is not None and rule.kind == "commit_then_reset":
        return Response(action="reset")
    if rule is not None and rule.kind == "commit_then_500":
        return _server_error(500, as_json=rule.body != "html")
    return response


def _batch(state: EmulatorState, realm: Realm, call: ApiCall, request_id: str | None, entry: JsonDict) -> Response:
    """A batch, replayed per item rather than whole (see batch.py)."""

    def item_fault(entity: str, operation: str) -> QboFault | None:
        rule = state.faults.take_item(call.realm_id, entity, operation)
        if rule is None:
            return None
        entry["fault"] = rule.kind
        return errors.item_refused(rule.body or "6000", f"{entity} {operation} refused (injected item fault)")

    if call.body_error is not None:
        status, payload = execute(realm, call)  # the invalid-JSON Fault, as any call answers it
        return json_response(status, payload)
    try:
        results, replayed = run_batch(realm, call.body, request_id, item_fault)
    except QboFault as fault:
        return json_response(fault.status, fault.body())
    entry["replayed"] = replayed > 0
    return json_response(200, {"BatchItemResponse": results, "time": response_time()})


def _early_fault(state: EmulatorState, kind: str, seconds: float, body: str | None) -> Response | None:
    """Faults that strike before the request is processed (None for the commit-then kinds)."""
    if kind == "http500":
        return _server_error(500, as_json=body != "html")
    if kind == "http503":
        return _server_error(503, as_json=body == "json")
    if kind in ("throttle", "throttle_xml"):
        return throttle_response(state, kind == "throttle_xml")
    if kind == "timeout":
        return Response(action="timeout", seconds=seconds)
    if kind == "reset":
        return Response(action="reset")
    if kind == "auth401":
        return _auth_fault(401, "Token expired")
    return None
