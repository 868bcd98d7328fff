"""A fake Intuit OAuth2 code flow: for unit tests and for testers who drive ConnectionService offline.

It plays both Intuit's consent page (`consent`, which hands out a code as the redirect would) and its
token endpoint (`exchange_code`). Codes are single-use; tokens are distinct and recorded when revoked.
"""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timedelta
from urllib.parse import urlencode

from core.connection import QuickBooksConnection, TokenGrant
from core.errors import BookkeepingError
from core.ports import Clock, QuickBooksAuthorization

FAKE_AUTHORIZE_URL = "https://appcenter.intuit.test/connect/oauth2"
ACCESS_TOKEN_SECONDS = 3600
REFRESH_TOKEN_SECONDS = 8_726_400  # what Intuit reports in x_refresh_token_expires_in (101 days)


class FakeQuickBooksAuthorization(QuickBooksAuthorization):
    def __init__(self, clock: Clock, client_id: str = "fake-client", client_secret: str = "fake-secret") -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._clock = clock
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._codes: dict[str, tuple[str, str]] = {}  # code -> (environment, redirect_uri)
        self.revoked: list[str] = []  # the tokens revoked, in order
        self.fail_revoke = False  # revoking "fails" (the port says: silently)

    def __repr__(self) -> str:
        return f"FakeQuickBooksAuthorization(client_id={self.client_id!r})"

    def authorization_url(self, environment: str, redirect_uri: str, state: str) -> str:
        query = urlencode(
            {"client_id": self.client_id, "redirect_uri": redirect_uri, "state": state, "environment": environment}
        )
        return f"{FAKE_AUTHORIZE_URL}?{query}"

    def consent(self, environment: str, redirect_uri: str) -> str:
        """What the user's consent produces: a one-time code, valid for this environment and redirect URI."""
        with self._lock:
            code = f"code-{next(self._counter)}"
            self._codes[code] = (environment, redirect_uri)
            return code

    def exchange_code(self, environment: str, redirect_uri: str, code: str) -> TokenGrant:
        with self._lock:
            issued = self._codes.pop(code, None)
            n = next(self._counter)
        if issued != (environment, redirect_uri):
            raise BookkeepingError(
                "Intuit refused the authorization code: invalid_grant", reason="QUICKBOOKS_AUTHORIZATION_FAILED"
            )
        now: datetime = self._clock.now()
        return TokenGrant(
            access_token=f"fake-access-{n}",
            refresh_token=f"fake-refresh-{n}",
            access_token_expires=now + timedelta(seconds=ACCESS_TOKEN_SECONDS),
            refresh_token_expires=now + timedelta(seconds=REFRESH_TOKEN_SECONDS),
            access_token_lifetime=timedelta(seconds=ACCESS_TOKEN_SECONDS),
        )

    def revoke(self, connection: QuickBooksConnection) -> None:
        if self.fail_revoke:
            return
        with self._lock:
            self.revoked.append(connection.refresh_token or connection.access_token)
