"""The adapter's HTTP session (adapters/quickbooks/qbo/http.py): what requests would have done for
python-quickbooks' requests, with the environment read once per session."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adapters.quickbooks.qbo.http import HttpSession, environment_proxy
from adapters.quickbooks.qbo.transport import PRODUCTION_API, SANDBOX_API

PROXY = "http://proxy.example:3128"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_the_environment_proxy_is_used_unless_no_proxy_lists_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    assert environment_proxy(PRODUCTION_API) == ""
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    assert environment_proxy(PRODUCTION_API) == PROXY
    assert HttpSession(PRODUCTION_API).proxy == PROXY
    assert environment_proxy("http://127.0.0.1:8080/v3") == ""  # HTTPS_PROXY is for https only
    monkeypatch.setenv("NO_PROXY", "quickbooks.api.intuit.com")
    assert environment_proxy(PRODUCTION_API) == ""
    assert environment_proxy(SANDBOX_API) == PROXY


def test_a_ca_bundle_from_the_environment_verifies_the_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert HttpSession(PRODUCTION_API).ca_certs.endswith(".pem")  # certifi's, as requests uses
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/curl.pem")
    assert HttpSession(PRODUCTION_API).ca_certs == "/etc/ssl/curl.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")
    assert HttpSession(PRODUCTION_API).ca_certs == "/etc/ssl/corporate.pem"


class _Echo(BaseHTTPRequestHandler):
    """Answers what it received, gzipped when asked, in the charset the path names; /moved redirects."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        if self.path.startswith("/moved"):
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        length = int(self.headers.get("Content-Length") or 0)
        echo = {
            "method": self.command,
            "path": self.path,
            "body": self.rfile.read(length).decode("utf-8"),
            "accept_encoding": self.headers.get("Accept-Encoding", ""),
            "authorization": self.headers.get("Authorization", ""),
            "name": "Zoë Müller",
        }
        charset = "iso-8859-1" if "latin" in self.path else "utf-8"
        body = gzip.compress(json.dumps(echo, ensure_ascii=False).encode(charset))
        self.send_response(200)
        content_type = "application/json" if "plain" in self.path else f"application/json;charset={charset}"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("intuit_tid", "tid-1")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_request_carries_its_query_body_and_headers_and_the_answer_is_decoded(echo_url: str) -> None:
    session = HttpSession(echo_url)
    answer = session.request(
        "POST",
        f"{echo_url}/v3/company/1/query",
        headers={"Authorization": "Bearer t", "Content-Type": "application/text"},
        params={"minorversion": 75, "requestid": "a b&c"},
        data="select * from Customer where DisplayName = 'Zoë'",
        timeout=5,
    )
    echo = json.loads(answer.text)
    assert answer.status_code == 200 and answer.headers.get("INTUIT_TID") == "tid-1"  # case-insensitive
    assert echo["path"] == "/v3/company/1/query?minorversion=75&requestid=a+b%26c"
    assert echo["body"] == "select * from Customer where DisplayName = 'Zoë'"  # sent as UTF-8
    assert "gzip" in echo["accept_encoding"] and echo["authorization"] == "Bearer t"
    assert echo["name"] == "Zoë Müller"


@pytest.mark.parametrize("path", ["latin", "plain"])  # the charset named, or none (JSON's UTF-8)
def test_the_answer_is_read_in_its_charset(echo_url: str, path: str) -> None:
    answer = HttpSession(echo_url).request("GET", f"{echo_url}/{path}", headers={}, params={}, data={}, timeout=5)  # type: ignore[arg-type]
    assert json.loads(answer.text)["name"] == "Zoë Müller"
    assert json.loads(answer.text)["method"] == "GET"


def test_a_redirect_is_answered_not_followed(echo_url: str) -> None:
    answer = HttpSession(echo_url).request("GET", f"{echo_url}/moved", headers={}, params=None, data=None, timeout=5)
    assert answer.status_code == 302  # every resend is the retry loop's, never the HTTP layer's
