"""The adapter's HTTP: one urllib3 pool per company's API root, sending what python-quickbooks asks.

python-quickbooks sends through a `requests.Session`; `QuickBooksClient.process_request` (transport.py)
replaces that call, so the adapter chooses the HTTP client. It is urllib3, which requests itself sends
through: requests' own layers around each request (preparing it, merging session settings, reading the
environment, hooks, cookies) were a third of a worker's CPU per sync (bench/worker_cpu.py; issue 12), and
the adapter uses none of them. What requests would do for these requests is kept, read once per pool:

- the environment's proxy for the API host (HTTPS_PROXY/HTTP_PROXY/ALL_PROXY, unless NO_PROXY lists it)
  and CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE; otherwise certifi's, as requests uses);
- certificates verified, gzip/deflate accepted and decoded, connections kept alive, 10 per pool;
- no retry and no redirect followed by the HTTP layer: every resend is the retry loop's (calls.py), which
  knows whether a write may have committed;
- the body as text in the answer's charset (UTF-8, JSON's, when it names none).

Failures are urllib3's exceptions (`connect_failed`, `HttpTimeout`, ...); transport.py classifies them.
"""

from __future__ import annotations

import codecs
import os
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError

POOL_SIZE = 10  # QBO's in-flight cap per company: more connections would only wait for the limiter
DEFAULT_HEADERS = {"Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}

# Re-exported for transport.py, which maps them to "sent or not".
HttpError = HTTPError
ConnectTimeout = ConnectTimeoutError
ConnectFailed = NewConnectionError
ReadTimeout = ReadTimeoutError


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: what python-quickbooks (`status_code`, `text`) and transport.py (`headers`) read."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive (urllib3's HTTPHeaderDict)
    text: str


class HttpSession:
    """Requests to one API root (`base_url`) over a kept-alive connection pool; safe to share between
    threads (urllib3's pools are)."""

    def __init__(self, base_url: str) -> None:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
        tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED", "ca_certs": bundle}
        proxy = environment_proxy(base_url)
        common: dict[str, Any] = {"maxsize": POOL_SIZE, "retries": False, **tls}
        self.proxy = proxy
        self.ca_certs = bundle
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(proxy, **common) if proxy else urllib3.PoolManager(**common)
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, Any] | None,
        data: str | bytes | None,
        timeout: float,
    ) -> Answer:
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params, doseq=True)}"
        response = self._pool.request(
            method,
            url,
            # python-quickbooks passes {} for no body; a str is sent as UTF-8 (urllib3), as requests does
            body=data or None,
            headers={**DEFAULT_HEADERS, **headers},
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            redirect=False,
            retries=False,
            preload_content=True,
        )
        return Answer(response.status, response.headers, response.data.decode(_charset(response.headers), "replace"))


def environment_proxy(base_url: str) -> str:
    """The proxy the environment names for `base_url` ("" for none), as requests would choose it."""
    parts = urlsplit(base_url)
    proxies = urllib.request.getproxies_environment()
    if urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):  # type: ignore[attr-defined]
        return ""
    return proxies.get(parts.scheme) or proxies.get("all") or ""


def _charset(headers: Mapping[str, str]) -> str:
    """The answer's charset; UTF-8 (JSON's) when it names none, or one Python does not know."""
    for part in headers.get("Content-Type", "").split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            try:
                return codecs.lookup(value.strip('"')).name
            except LookupError:
                break
    return "utf-8"
