"""Intuit's OAuth 2.0 side, enough for intuit-oauth's ``AuthClient`` and python-quickbooks' bearer calls.

``AuthClient(environment=<discovery URL>)`` reads ``authorization_endpoint``, ``token_endpoint``,
``revocation_endpoint``, ``issuer``, ``jwks_uri`` and ``userinfo_endpoint`` from the discovery document, then
``refresh()`` posts ``grant_type=refresh_token`` with HTTP Basic client credentials and copies every key of
the JSON answer onto itself (so the answer must not carry an ``id_token``, which it would try to verify).

Refresh tokens rotate on every use. By default (``rotation = "strict"``) the old one dies at once
(answering ``invalid_grant``): the strict reading of Intuit's rotation, so a client that loses the new token
is caught in tests. ``"lenient"`` is what Intuit is reported to do in practice (QUICKBOOKS.md, *verify*):
the old token keeps working until the new one is first used. Either way, each realm counts its refreshes
and the refreshes sent with a rotated-away token (``dead_refreshes``), so a test can prove none was lost.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from .shapes import JsonDict

ACCESS_TOKEN_TTL = 3600.0
REFRESH_TOKEN_TTL = 8_726_400.0  # 101 days, what Intuit reports in x_refresh_token_expires_in
ROTATIONS = ("strict", "lenient")


@dataclass
class _Access:
    client_id: str
    realm_id: str
    expires_at: float


@dataclass
class _Refresh:
    client_id: str
    realm_id: str
    expires_at: float
    predecessor: str = ""  # lenient rotation: the token this one replaced, alive until this one is used


@dataclass(frozen=True)
class BearerCheck:
    """Outcome of checking an API call's Authorization header: ``status`` 0 means accepted."""

    status: int
    detail: str = ""


class OAuthRegistry:
    """Apps (client id/secret), tokens and authorization codes, for every realm. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.apps: dict[str, str] = {}
        self.access: dict[str, _Access] = {}
        self.refresh: dict[str, _Refresh] = {}
        self.codes: dict[str, tuple[str, str, str]] = {}  # code → (client_id, realm_id, redirect_uri)
        self.access_ttl = ACCESS_TOKEN_TTL
        self.retired: dict[str, tuple[str, str]] = {}  # dead refresh token → (realm, "rotated" | "revoked")
        self.rotation = "strict"
        self.refreshes: dict[str, int] = {}  # realm → refresh_token grants answered
        self.dead_refreshes: dict[str, int] = {}  # realm → refreshes refused because the token was rotated away

    def set_rotation(self, rotation: str) -> None:
        if rotation not in ROTATIONS:
            raise ValueError(f"refresh_token_rotation must be one of {', '.join(ROTATIONS)}")
        with self._lock:
            self.rotation = rotation

    def register(
        self,
        realm_id: str,
        client_id: str | None = None,
        client_secret: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
    ) -> JsonDict:
        """Add an app (or reuse one) connected to ``realm_id``, with a live access and refresh token."""
        with self._lock:
            client_id = client_id or f"emu-client-{secrets.token_hex(6)}"
            client_secret = client_secret or self.apps.get(client_id) or secrets.token_urlsafe(24)
            self.apps[client_id] = client_secret
            tokens = self._issue(client_id, realm_id, access_token, refresh_token)
            return {"realm_id": realm_id, "client_id": client_id, "client_secret": client_secret, **tokens}

    def _issue(
        self, client_id: str, realm_id: str, access_token: str | None = None, refresh_token: str | None = None
    ) -> JsonDict:
        access_token = access_token or f"emu-at-{secrets.token_urlsafe(24)}"
        refresh_token = refresh_token or f"emu-rt-{secrets.token_urlsafe(24)}"
        self.access[access_token] = _Access(client_id, realm_id, time.time() + self.access_ttl)
        self.refresh[refresh_token] = _Refresh(client_id, realm_id, time.time() + REFRESH_TOKEN_TTL)
        return {
            "access_token": access_token,
            "refresh_token": refresh_token,
            "token_type": "bearer",
            "expires_in": int(self.access_ttl) if self.access_ttl >= 1 else self.access_ttl,
            "x_refresh_token_expires_in": int(REFRESH_TOKEN_TTL),
        }

    # ------------------------------------------------------------------ API side
    def check_bearer(self, header: str | None, realm_id: str) -> BearerCheck:
        """401 for a missing, unknown or expired token; 403 for a token of another company."""
        if not header or not header.startswith("Bearer "):
            return BearerCheck(401, "Authorization header missing or not a Bearer token")
        token = header[len("Bearer ") :].strip()
        with self._lock:
            grant = self.access.get(token)
            if grant is None:
                return BearerCheck(401, "Token invalid")
            if grant.expires_at <= time.time():
                return BearerCheck(401, "Token expired")
            if grant.realm_id != realm_id:
                return BearerCheck(403, f"Token was issued for company {grant.realm_id}")
            return BearerCheck(0)

    # ------------------------------------------------------------------ token endpoint
    def _client(self, authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Basic "):
            return None
        try:
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return client_id if self.apps.get(client_id) == secret and secret else None

    def token(self, authorization: str | None, form: dict[str, str]) -> tuple[int, JsonDict]:
        """POST /oauth2/v1/tokens/bearer. Returns (status, JSON body) the way Intuit answers."""
        with self._lock:
            client_id = self._client(authorization)
            if client_id is None:
                return 401, {"error": "invalid_client"}
            grant_type = form.get("grant_type")
            if grant_type == "refresh_token":
                return self._refresh_grant(client_id, form.get("refresh_token", ""))
            if grant_type == "authorization_code":
                entry = self.codes.pop(form.get("code", ""), None)
                if entry is None or entry[0] != client_id:
                    return 400, {"error": "invalid_grant"}
                if entry[2] and form.get("redirect_uri") != entry[2]:
                    return 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"}
                return 200, self._issue(client_id, entry[1])
            return 400, {"error": "unsupported_grant_type"}

    def _refresh_grant(self, client_id: str, token: str) -> tuple[int, JsonDict]:
        grant = self.refresh.get(token)
        if grant is None or grant.client_id != client_id or grant.expires_at <= time.time():
            realm, why = self.retired.get(token, ("", ""))
            if why == "rotated":
                self.dead_refreshes[realm] = self.dead_refreshes.get(realm, 0) + 1
            return 400, {"error": "invalid_grant"}
        self._retire(grant.predecessor, "rotated")  # the new token is in use: the one it replaced dies
        if self.rotation == "strict":
            self._retire(token, "rotated")
        answer = self._issue(client_id, grant.realm_id)
        if self.rotation == "lenient":
            self.refresh[str(answer["refresh_token"])].predecessor = token
        self.refreshes[grant.realm_id] = self.refreshes.get(grant.realm_id, 0) + 1
        return 200, answer

    def _retire(self, token: str, why: str) -> None:
        grant = self.refresh.pop(token, None)
        if grant is not None:
            self.retired[token] = (grant.realm_id, why)

    def revoke(self, authorization: str | None, token: str) -> int:
        """POST /oauth2/v1/tokens/revoke: kills a refresh token and every access token of its connection."""
        with self._lock:
            client_id = self._client(authorization)
            if client_id is None:
                return 401
            grant = self.refresh.pop(token, None)
            if grant is not None:
                self.retired[token] = (grant.realm_id, "revoked")
                self._retire(grant.predecessor, "revoked")  # lenient rotation: the one it replaced goes too
                self.access = {
                    k: v
                    for k, v in self.access.items()
                    if not (v.client_id == grant.client_id and v.realm_id == grant.realm_id)
                }
            self.access.pop(token, None)
            return 200

    def authorization_code(self, client_id: str, realm_id: str, redirect_uri: str = "") -> str:
        """Mint a one-time code (what the user's consent would produce)."""
        with self._lock:
            code = f"emu-code-{secrets.token_urlsafe(16)}"
            self.codes[code] = (client_id, realm_id, redirect_uri)
            return code

    def authorize_redirect(self, params: dict[str, str], realm_ids: list[str]) -> str | None:
        """GET authorization_endpoint: consent is implied; redirect back with code, state and realmId."""
        client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri", "")
        if client_id not in self.apps or not redirect_uri:
            return None
        realm_id = params.get("realmId") or (realm_ids[0] if realm_ids else "")
        code = self.authorization_code(client_id, realm_id, redirect_uri)
        query = urlencode({"code": code, "state": params.get("state", ""), "realmId": realm_id})
        return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}"

    # ------------------------------------------------------------------ admin
    def expire_access_tokens(self, realm_id: str | None = None) -> int:
        """Make every access token (of one realm) expired now; returns how many."""
        with self._lock:
            hit = [g for g in self.access.values() if realm_id is None or g.realm_id == realm_id]
            for grant in hit:
                grant.expires_at = time.time() - 1
            return len(hit)

    def revoke_refresh_tokens(self, realm_id: str | None = None, token: str | None = None) -> int:
        """Invalidate refresh tokens (one, or all of a realm, or all): the company must reconnect."""
        with self._lock:
            doomed = [
                t
                for t, g in self.refresh.items()
                if (token is None or t == token) and (realm_id is None or g.realm_id == realm_id)
            ]
            for t in doomed:
                self._retire(t, "revoked")
            return len(doomed)

    def summary(self, realm_id: str) -> JsonDict:
        """Live tokens of a realm and its refresh counts (for the admin state)."""
        with self._lock:
            now = time.time()
            return {
                "access_tokens": [
                    {"token": t, "expires_in": round(g.expires_at - now, 3)}
                    for t, g in self.access.items()
                    if g.realm_id == realm_id
                ],
                "refresh_tokens": [t for t, g in self.refresh.items() if g.realm_id == realm_id],
                "refreshes": self.refreshes.get(realm_id, 0),
                "dead_refreshes": self.dead_refreshes.get(realm_id, 0),
            }


def discovery_document(base_url: str) -> JsonDict:
    """The OpenID discovery document, every endpoint on this emulator."""
    return {
        "issuer": f"{base_url}/oauth2",
        "authorization_endpoint": f"{base_url}/oauth2/v1/authorize",
        "token_endpoint": f"{base_url}/oauth2/v1/tokens/bearer",
        "userinfo_endpoint": f"{base_url}/v1/openid_connect/userinfo",
        "revocation_endpoint": f"{base_url}/oauth2/v1/tokens/revoke",
        "jwks_uri": f"{base_url}/oauth2/v1/keys",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile", "address", "phone", "com.intuit.quickbooks.accounting"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
    }
