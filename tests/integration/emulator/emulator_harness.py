"""Helpers for the emulator tests: a connected realm and python-quickbooks pointed at the emulator.

(A uniquely named module rather than conftest, so test modules can import it unambiguously.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from intuitlib.client import AuthClient
from quickbooks import QuickBooks

from adapters.quickbooks.emulator import EmulatorServer

REDIRECT_URI = "http://localhost/callback"


@dataclass
class Connection:
    """A realm of the emulator and the credentials of the app connected to it."""

    server: EmulatorServer
    realm_id: str
    client_id: str
    client_secret: str
    access_token: str
    refresh_token: str

    def admin(self, method: str, route: str, payload: Any = None) -> Any:
        """Call the admin API (``route`` after ``/_emulator``) and return its JSON."""
        response = requests.request(method, f"{self.server.admin_url}{route}", json=payload, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def state(self) -> Any:
        return self.admin("GET", f"/realms/{self.realm_id}/state")

    def seed(self, entity: str, record: dict[str, Any]) -> dict[str, Any]:
        """Create a record as a bookkeeper would, without going through the client (or its throttles)."""
        return self.admin("POST", f"/realms/{self.realm_id}/records/{entity}", record)[entity]  # type: ignore[no-any-return]

    def api(self, method: str, route: str, **kwargs: Any) -> requests.Response:
        """A raw API call with the realm's access token (``route`` after ``/v3/company/{realm}``)."""
        headers = {
            "Authorization": f"Bearer {self.access_token}",
            "Accept": "application/json",
            **kwargs.pop("headers", {}),
        }
        return requests.request(
            method, f"{self.server.base_api_url}/company/{self.realm_id}{route}", headers=headers, timeout=10, **kwargs
        )

    def auth_client(self, **overrides: Any) -> AuthClient:
        values = {"access_token": self.access_token, "refresh_token": self.refresh_token, **overrides}
        return AuthClient(
            self.client_id, self.client_secret, REDIRECT_URI, environment=self.server.discovery_url, **values
        )


def client_class(base_api_url: str, timeout: float | None = None) -> type[QuickBooks]:
    """python-quickbooks pointed at the emulator, optionally with an HTTP timeout (the library sets none)."""

    class EmulatedQuickBooks(QuickBooks):
        api_url_v3 = base_api_url
        sandbox_api_url_v3 = base_api_url

        def process_request(
            self, request_type: str, url: str, headers: Any = "", params: Any = "", data: Any = ""
        ) -> Any:
            if self.session is None:
                raise AssertionError("no session")
            headers.update({"Authorization": "Bearer " + self.session.access_token})
            return self.session.request(request_type, url, headers=headers, params=params, data=data, timeout=timeout)

    return EmulatedQuickBooks
