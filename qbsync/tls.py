"""The API's transport security, from the settings: the TLS files read and checked, and the rule that
plaintext gRPC stays on this machine unless the operator says `--insecure`.

Both run before the port is bound, so that a wrong path, a key of another certificate or a forgotten
QBSYNC_TLS_CERT is one line naming the variable rather than a handshake failure later (grpc itself only
says "Failed to bind" for a bad PEM).
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from adapters.grpc.server import ServerTls
from core.connection_rules import is_loopback
from qbsync.config import INSECURE_ENV, TLS_CERT_ENV, TLS_CLIENT_CA_ENV, TLS_KEY_ENV, ConfigError, Settings

log = logging.getLogger(__name__)


def check_listen_is_safe(settings: Settings) -> None:
    """Refuses plaintext on an address beyond loopback (bearer keys would cross the network in clear),
    unless `--insecure` / QBSYNC_INSECURE=1 says a proxy or the network takes care of it."""
    host = settings.listen_host
    if settings.tls or is_loopback(host):
        return
    if not settings.insecure:
        raise ConfigError(
            "QBSYNC_LISTEN (--listen)",
            f"is {settings.listen}, beyond this machine, and {TLS_CERT_ENV}/{TLS_KEY_ENV} are not set: "
            f"API keys would cross the network in clear (serve TLS, or pass --insecure / {INSECURE_ENV}=1)",
        )
    log.warning("serving plaintext gRPC on %s (--insecure): API keys cross the network unencrypted", settings.listen)


def load_server_tls(settings: Settings) -> ServerTls | None:
    """The PEM bytes the server presents and checks clients against, or None without TLS settings."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    cert_pem = _read(TLS_CERT_ENV, settings.tls_cert_file)
    key_pem = _read(TLS_KEY_ENV, settings.tls_key_file)
    certificates = _certificates(TLS_CERT_ENV, settings.tls_cert_file, cert_pem)
    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:  # TypeError: the key is encrypted
        raise ConfigError(
            TLS_KEY_ENV, f"({settings.tls_key_file}) is not an unencrypted PEM private key: {_first_line(exc)}"
        ) from None
    if key.public_key() != certificates[0].public_key():
        raise ConfigError(TLS_KEY_ENV, f"({settings.tls_key_file}) is not the key of the certificate in {TLS_CERT_ENV}")
    client_ca = None
    if settings.tls_client_ca_file is not None:
        client_ca = _read(TLS_CLIENT_CA_ENV, settings.tls_client_ca_file)
        _certificates(TLS_CLIENT_CA_ENV, settings.tls_client_ca_file, client_ca)
    return ServerTls(certificate_chain=cert_pem, private_key=key_pem, client_ca=client_ca)


def _read(variable: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(variable, f"({path}) cannot be read: {exc.strerror or exc}") from None


def _certificates(variable: str, path: Path, pem: bytes) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ConfigError(variable, f"({path}) holds no PEM certificate: {_first_line(exc)}") from None
    return certificates


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
