"""OAuth against the emulator with the real intuit-oauth AuthClient: discovery, rotation, expiry, revocation."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests
from emulator_harness import REDIRECT_URI, Connection
from intuitlib.client import AuthClient
from intuitlib.exceptions import AuthClientError
from quickbooks import QuickBooks
from quickbooks.exceptions import AuthorizationException
from quickbooks.objects.customer import Customer


def test_discovery_document_points_at_the_emulator(connection: Connection) -> None:
    client = connection.auth_client()
    base = connection.server.url
    assert client.token_endpoint == f"{base}/oauth2/v1/tokens/bearer"
    assert client.revoke_endpoint.startswith(base)
    assert client.user_info_url.startswith(base)
    assert client.jwks_uri.startswith(base)


def test_refresh_rotates_and_old_refresh_token_is_invalid_grant(
    connection: Connection, make_qb: Callable[..., QuickBooks]
) -> None:
    client = connection.auth_client()
    old_refresh, old_access = client.refresh_token, client.access_token

    client.refresh()

    assert client.refresh_token != old_refresh
    assert client.access_token != old_access
    assert client.expires_in == 3600
    # The new access token works through python-quickbooks.
    assert Customer.all(qb=make_qb(auth_client=client)) == []

    stale = connection.auth_client(refresh_token=old_refresh)
    with pytest.raises(AuthClientError) as raised:
        stale.refresh()
    assert raised.value.status_code == 400
    assert raised.value.response.json()["error"] == "invalid_grant"

    # The rotated token keeps working exactly once more.
    newest = client.refresh_token
    client.refresh()
    with pytest.raises(AuthClientError):
        client.refresh(refresh_token=newest)


def _refresh_fails(connection: Connection, refresh_token: str) -> bool:
    try:
        connection.auth_client(refresh_token=refresh_token).refresh()
    except AuthClientError as exc:
        assert exc.response.json()["error"] == "invalid_grant"
        return True
    return False


def test_strict_rotation_counts_refreshes_and_the_dead_tokens_sent(connection: Connection) -> None:
    assert connection.admin("GET", "/settings")["refresh_token_rotation"] == "strict"  # the default
    client = connection.auth_client()
    first = client.refresh_token
    client.refresh()
    assert _refresh_fails(connection, first)
    assert _refresh_fails(connection, "never-issued")
    tokens = connection.state()["tokens"]
    # Only a rotated-away token counts as dead: that is a client that lost its newest one.
    assert (tokens["refreshes"], tokens["dead_refreshes"]) == (1, 1)


def test_lenient_rotation_keeps_the_old_token_until_the_new_one_is_used(connection: Connection) -> None:
    """What Intuit is reported to do: the previous refresh token keeps working until its successor is used."""
    connection.admin("POST", "/settings", {"refresh_token_rotation": "lenient"})
    client = connection.auth_client()
    first = client.refresh_token
    client.refresh()
    second = client.refresh_token
    assert second != first
    assert not _refresh_fails(connection, first)  # still alive: its successor was never used
    client.refresh(refresh_token=second)
    assert _refresh_fails(connection, first)
    assert connection.state()["tokens"]["dead_refreshes"] == 1


def test_revoking_under_lenient_rotation_kills_the_token_it_replaced_too(connection: Connection) -> None:
    connection.admin("POST", "/settings", {"refresh_token_rotation": "lenient"})
    client = connection.auth_client()
    first = client.refresh_token
    client.refresh()
    assert client.revoke(token=client.refresh_token)
    assert _refresh_fails(connection, first)
    assert _refresh_fails(connection, client.refresh_token)


def test_an_unknown_rotation_is_refused(connection: Connection) -> None:
    response = requests.post(
        f"{connection.server.admin_url}/settings", json={"refresh_token_rotation": "sometimes"}, timeout=10
    )
    assert response.status_code == 400
    assert "strict, lenient" in response.text
    assert connection.admin("GET", "/settings")["refresh_token_rotation"] == "strict"


def test_wrong_client_secret_is_invalid_client(connection: Connection) -> None:
    client = AuthClient(
        connection.client_id,
        "not-the-secret",
        REDIRECT_URI,
        environment=connection.server.discovery_url,
        refresh_token=connection.refresh_token,
    )
    with pytest.raises(AuthClientError) as raised:
        client.refresh()
    assert raised.value.status_code == 401


def test_expired_access_token_raises_authorization_exception(
    connection: Connection, qb: QuickBooks, make_qb: Callable[..., QuickBooks]
) -> None:
    assert Customer.all(qb=qb) == []
    connection.admin("POST", "/tokens/expire", {"realm_id": connection.realm_id})

    with pytest.raises(AuthorizationException) as raised:
        Customer.all(qb=qb)
    assert raised.value.error_code == 401
    assert "3200" in raised.value.detail

    client = connection.auth_client()
    client.refresh()
    assert Customer.all(qb=make_qb(auth_client=client)) == []


def test_short_token_lifetime_expires_by_itself(connection: Connection, make_qb: Callable[..., QuickBooks]) -> None:
    connection.admin("POST", "/settings", {"access_token_ttl": 0.3})
    client = connection.auth_client()
    client.refresh()
    assert client.expires_in == 0.3
    qb = make_qb(auth_client=client)
    assert Customer.all(qb=qb) == []
    time.sleep(0.4)
    with pytest.raises(AuthorizationException):
        Customer.all(qb=qb)


def test_revoked_refresh_token_forces_reconnect(connection: Connection) -> None:
    connection.admin("POST", "/tokens/revoke", {"realm_id": connection.realm_id})
    with pytest.raises(AuthClientError) as raised:
        connection.auth_client().refresh()
    assert raised.value.response.json()["error"] == "invalid_grant"


def test_authorization_code_grant_and_authorize_redirect(connection: Connection) -> None:
    code = connection.admin(
        "POST",
        f"/realms/{connection.realm_id}/auth_code",
        {"client_id": connection.client_id, "redirect_uri": REDIRECT_URI},
    )["code"]
    client = AuthClient(
        connection.client_id, connection.client_secret, REDIRECT_URI, environment=connection.server.discovery_url
    )
    client.get_bearer_token(code, realm_id=connection.realm_id)
    assert client.access_token and client.refresh_token
    with pytest.raises(AuthClientError):  # codes are single-use
        client.get_bearer_token(code)

    url = f"{client.auth_endpoint}?client_id={connection.client_id}&redirect_uri={REDIRECT_URI}&state=xyz"
    redirect = requests.get(url, allow_redirects=False, timeout=5)
    assert redirect.status_code == 302
    assert "state=xyz" in redirect.headers["Location"]
    assert f"realmId={connection.realm_id}" in redirect.headers["Location"]


def test_token_for_another_realm_is_refused(connection: Connection) -> None:
    other = connection.admin("POST", "/realms", {"realm_id": "999"})
    response = requests.get(
        f"{connection.server.base_api_url}/company/{connection.realm_id}/customer/1",
        headers={"Authorization": f"Bearer {other['access_token']}"},
        timeout=5,
    )
    assert response.status_code == 403
    missing = requests.get(f"{connection.server.base_api_url}/company/{connection.realm_id}/customer/1", timeout=5)
    assert missing.status_code == 401
    assert missing.json()["Fault"]["type"] == "AuthenticationFault"
