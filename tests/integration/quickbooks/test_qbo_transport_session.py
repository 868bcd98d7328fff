"""The adapter's HTTP session reads the proxy and CA settings of the environment once, not per request."""

from __future__ import annotations

import pytest

from adapters.quickbooks.qbo.transport import PRODUCTION_API, api_session

PROXY = "http://proxy.example:3128"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
    ):
        monkeypatch.delenv(name, raising=False)


def test_the_environment_proxy_is_kept_after_the_environment_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    session = api_session(PRODUCTION_API)
    monkeypatch.delenv("HTTPS_PROXY")
    settings = session.merge_environment_settings(PRODUCTION_API + "/company/1/query", {}, None, None, None)
    assert settings["proxies"]["https"] == PROXY
    assert session.trust_env is False  # so requests does not read os.environ (or ~/.netrc) per request


def test_a_host_listed_in_no_proxy_gets_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    monkeypatch.setenv("NO_PROXY", "quickbooks.api.intuit.com")
    assert api_session(PRODUCTION_API).proxies == {}
    assert api_session("https://sandbox-quickbooks.api.intuit.com/v3").proxies["https"] == PROXY


def test_a_ca_bundle_from_the_environment_verifies_the_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert api_session(PRODUCTION_API).verify is True
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/curl.pem")
    assert api_session(PRODUCTION_API).verify == "/etc/ssl/curl.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")
    assert api_session(PRODUCTION_API).verify == "/etc/ssl/corporate.pem"
