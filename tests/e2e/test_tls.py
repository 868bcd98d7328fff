"""TLS and mTLS on the real gRPC server over loopback, the refusal of plaintext beyond loopback, and a
taken port: certificates made here with `cryptography` (a CA, a server certificate for localhost and
127.0.0.1, client certificates of that CA and of a stranger's)."""

from __future__ import annotations

import datetime
import ipaddress
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.grpc.server import ListenError
from adapters.persistence.sqlalchemy.migrate import migrate
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.quickbooks.module import FakeQuickBooksModule
from core.auth import ApiKeys
from core.domain import Permission
from qbsync.bootstrap import bootstrap
from qbsync.config import ConfigError, Settings
from qbsync.runtime import Runtime
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from qbsync.v1 import sync_service_pb2_grpc as g

QBSYNC = [sys.executable, "-m", "qbsync.cli"]


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes()


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Pem
    client: Pem  # signed by `ca`
    stranger: Pem  # a client certificate of another CA


def _issue(
    folder: Path,
    name: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> tuple[Pem, x509.Name, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    elif server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    pem = Pem(folder / f"{name}.crt", folder / f"{name}.key")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pem, subject, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_name, ca_key = _issue(folder, "ca", None, ca=True)
    server, _, _ = _issue(folder, "server", (ca_name, ca_key), server=True)
    client, _, _ = _issue(folder, "client", (ca_name, ca_key))
    _, other_name, other_key = _issue(folder, "other-ca", None, ca=True)
    stranger, _, _ = _issue(folder, "stranger", (other_name, other_key))
    return Pki(ca.cert, server, client, stranger)


@dataclass
class Served:
    port: int
    metadata: list[tuple[str, str]]


def _settings(tmp_path: Path, **changes: object) -> Settings:
    database_url = f"sqlite:///{tmp_path / 'qbsync.db'}"
    migrate(database_url)
    base = Settings(
        database_url=database_url, listen="127.0.0.1:0", workers=0, grace_seconds=1, watch_poll_seconds=0.05
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    runtimes: list[Runtime] = []

    def start(**changes: object) -> Served:
        injector = bootstrap(FakeQuickBooksModule(FakeQuickBooksCompanies()), settings=_settings(tmp_path, **changes))
        runtime = Runtime(injector)
        port = runtime.start()
        runtimes.append(runtime)
        key = injector.get(ApiKeys).create("acme", frozenset(Permission))
        return Served(port, [("authorization", f"Bearer {key}")])

    yield start
    for runtime in runtimes:
        runtime.stop(grace=0)


def _health(channel: grpc.Channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status  # type: ignore[no-any-return]


def _authenticated_call_code(channel: grpc.Channel, metadata: list[tuple[str, str]]) -> grpc.StatusCode:
    """NOT_FOUND means the call got through TLS, authentication and the servicer."""
    with pytest.raises(grpc.RpcError) as raised:
        g.SyncServiceStub(channel).GetSyncStatus(
            s.GetSyncStatusRequest(entity=r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="nope")),
            metadata=metadata,
            timeout=5,
        )
    return raised.value.code()  # type: ignore[no-any-return]


def _unavailable(channel: grpc.Channel) -> str:
    with pytest.raises(grpc.RpcError) as raised:
        _health(channel)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    return str(raised.value.details())


def test_tls_calls_succeed_and_plaintext_to_the_tls_port_fails(serve, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    served = serve(tls_cert_file=pki.server.cert, tls_key_file=pki.server.key)
    trusted = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    for host in ("localhost", "127.0.0.1"):  # both names the certificate holds
        with grpc.secure_channel(f"{host}:{served.port}", trusted) as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
            assert _authenticated_call_code(channel, served.metadata) == grpc.StatusCode.NOT_FOUND

    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as plaintext:
        _unavailable(plaintext)
    # A client that does not trust the server's CA refuses the handshake.
    untrusting = grpc.ssl_channel_credentials(root_certificates=pki.stranger.cert.read_bytes())
    with grpc.secure_channel(f"localhost:{served.port}", untrusting) as channel:
        _unavailable(channel)


def test_mtls_needs_a_client_certificate_of_the_client_ca(serve, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    served = serve(tls_cert_file=pki.server.cert, tls_key_file=pki.server.key, tls_client_ca_file=pki.ca)
    target = f"localhost:{served.port}"
    cert, key = pki.client.read()
    with grpc.secure_channel(target, grpc.ssl_channel_credentials(pki.ca.read_bytes(), key, cert)) as channel:
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert _authenticated_call_code(channel, served.metadata) == grpc.StatusCode.NOT_FOUND
        # A client certificate does not replace the API key: it only lets the caller in.
        assert _authenticated_call_code(channel, []) == grpc.StatusCode.UNAUTHENTICATED

    with grpc.secure_channel(target, grpc.ssl_channel_credentials(pki.ca.read_bytes())) as no_cert:
        _unavailable(no_cert)
    stranger_cert, stranger_key = pki.stranger.read()
    with grpc.secure_channel(
        target, grpc.ssl_channel_credentials(pki.ca.read_bytes(), stranger_key, stranger_cert)
    ) as stranger:
        _unavailable(stranger)
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as plaintext:
        _unavailable(plaintext)


def test_plaintext_beyond_loopback_is_refused_unless_insecure(serve, tmp_path: Path, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as refused:
        serve(listen="0.0.0.0:0")
    assert refused.value.variable.startswith("QBSYNC_LISTEN") and "--insecure" in str(refused.value)

    served = serve(listen="0.0.0.0:0", insecure=True)
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
    tls = serve(listen="0.0.0.0:0", tls_cert_file=pki.server.cert, tls_key_file=pki.server.key)
    with grpc.secure_channel(f"localhost:{tls.port}", grpc.ssl_channel_credentials(pki.ca.read_bytes())) as channel:
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING


def test_a_second_server_on_a_taken_port_refuses_to_start(serve) -> None:  # type: ignore[no-untyped-def]
    first = serve()
    with pytest.raises(ListenError, match=rf"127\.0\.0\.1:{first.port}: the port is taken"):
        serve(listen=f"127.0.0.1:{first.port}")
    with grpc.insecure_channel(f"127.0.0.1:{first.port}") as channel:  # the first one still serves alone
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING


# ---- the `qbsync` command, as an operator runs it ----


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("QBSYNC_")}
    return {**env, "QBSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "QBSYNC_WORKERS": "0", **extra}


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([*QBSYNC, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "serving on" not in line:
        process.kill()
        _, stderr = process.communicate(timeout=10)
        pytest.fail(f"qbsync did not start: {line!r} {stderr}")
    return process, line


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    _, stderr = process.communicate(timeout=30)
    return stderr


def _refused(args: list[str], env: dict[str, str]) -> str:
    """Runs `qbsync args`, which must fail as a configuration mistake: one line on stderr, no traceback."""
    done = subprocess.run([*QBSYNC, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 78, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_cli_serves_tls_and_mtls_and_says_so(tmp_path: Path, pki: Pki) -> None:
    env = _env(
        tmp_path,
        QBSYNC_TLS_CERT=str(pki.server.cert),
        QBSYNC_TLS_KEY=str(pki.server.key),
        QBSYNC_TLS_CLIENT_CA=str(pki.ca),
    )
    subprocess.run([*QBSYNC, "migrate"], env=env, check=True, capture_output=True, timeout=60)
    server, line = _start(["serve", "--listen", "0.0.0.0:0"], env)  # beyond loopback: TLS, so allowed
    try:
        assert "(mTLS: client certificates required; database" in line
        port = int(re.search(r"serving on 0\.0\.0\.0:(\d+)", line).group(1))  # type: ignore[union-attr]
        cert, key = pki.client.read()
        with grpc.secure_channel(
            f"localhost:{port}", grpc.ssl_channel_credentials(pki.ca.read_bytes(), key, cert)
        ) as ok:
            assert _health(ok) == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plaintext:
            _unavailable(plaintext)
    finally:
        stderr = _stop(server)
    assert "BEGIN" not in stderr  # no PEM, least of all the private key, reaches a log line


def test_the_first_call_over_mtls_to_the_demo(tmp_path: Path, pki: Pki) -> None:
    """`make run` with TLS settings, then the README's first call with its TLS options."""
    env = _env(
        tmp_path,
        QBSYNC_DATA_DIR=str(tmp_path),
        QBSYNC_WORKERS="1",
        QBSYNC_TLS_CERT=str(pki.server.cert),
        QBSYNC_TLS_KEY=str(pki.server.key),
        QBSYNC_TLS_CLIENT_CA=str(pki.ca),
    )
    demo = subprocess.Popen(
        [*QBSYNC, "demo", "--listen", "localhost:0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert demo.stdout is not None
        banner = ""
        while "-m qbsync.first_call" not in banner:
            line = demo.stdout.readline()
            assert line, f"demo exited early: {demo.stderr.read() if demo.stderr else ''}"
            banner += line
        command = re.search(r"first_call --target (\S+) --key (\S+) --tls-ca", banner)
        assert command, banner
        first_call = [
            sys.executable,
            "-m",
            "qbsync.first_call",
            "--target",
            command.group(1),
            "--key",
            command.group(2),
        ]
        tls = ["--tls-ca", str(pki.ca)]
        call = subprocess.run(
            [*first_call, *tls, "--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert call.returncode == 0, call.stderr
        assert "STATE_SUCCEEDED" in call.stdout and "View in QuickBooks: https://" in call.stdout
        refused = subprocess.run([*first_call, *tls], capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "UNAVAILABLE" in refused.stderr  # no client certificate
    finally:
        demo.terminate()
        demo.communicate(timeout=30)


def test_cli_refuses_plaintext_beyond_loopback_unless_insecure(tmp_path: Path) -> None:
    env = _env(tmp_path)
    subprocess.run([*QBSYNC, "migrate"], env=env, check=True, capture_output=True, timeout=60)
    line = _refused(["serve", "--listen", "0.0.0.0:0"], env)
    assert "QBSYNC_LISTEN" in line and "QBSYNC_TLS_CERT" in line and "--insecure" in line

    for args, extra in ((["--insecure"], {}), ([], {"QBSYNC_INSECURE": "1"})):
        server, started = _start(["serve", "--listen", "0.0.0.0:0", *args], {**env, **extra})
        try:
            assert "(plaintext; database" in started
        finally:
            stderr = _stop(server)
        assert "plaintext gRPC on 0.0.0.0:0 (--insecure)" in stderr  # said once, as a warning


def test_cli_refuses_a_taken_port(tmp_path: Path) -> None:
    env = _env(tmp_path)
    subprocess.run([*QBSYNC, "migrate"], env=env, check=True, capture_output=True, timeout=60)
    first, line = _start(["serve", "--listen", "127.0.0.1:0"], env)
    try:
        target = re.search(r"serving on (127\.0\.0\.1:\d+)", line).group(1)  # type: ignore[union-attr]
        refusal = _refused(["serve", "--listen", target], env)
        assert f"cannot listen on {target}: the port is taken" in refusal and "QBSYNC_LISTEN" in refusal
        with grpc.insecure_channel(target) as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
    finally:
        _stop(first)


def test_cli_configuration_mistakes_are_one_line_naming_the_variable(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "no-such.pem"
    serving = ["serve", "--listen", "127.0.0.1:0"]
    mistakes: list[tuple[dict[str, str], list[str], list[str]]] = [
        ({"QBSYNC_WORKERS": "four"}, ["QBSYNC_WORKERS", "'four'", "whole number"], serving),
        ({"QBSYNC_WORKERS": "-2"}, ["QBSYNC_WORKERS", "negative"], serving),
        ({"QBSYNC_LEASE_SECONDS": "soon"}, ["QBSYNC_LEASE_SECONDS", "number"], serving),
        ({"QBSYNC_ROLE": "db"}, ["QBSYNC_ROLE", "api, worker, all"], serving),
        ({"QBSYNC_DATABASE_URL": "not a url"}, ["QBSYNC_DATABASE_URL", "sqlite:///"], ["migrate"]),
        ({"QBSYNC_DATABASE_URL": "mysql://u:hunter2@db/x"}, ["QBSYNC_DATABASE_URL", "'mysql'"], ["migrate"]),
        ({"QBSYNC_LISTEN": "50051"}, ["QBSYNC_LISTEN", "host:port"], ["serve"]),
        ({"QBSYNC_INSECURE": "perhaps"}, ["QBSYNC_INSECURE", "'perhaps'"], serving),
        (
            {"QBSYNC_TLS_CERT": str(missing), "QBSYNC_TLS_KEY": str(pki.server.key)},
            ["QBSYNC_TLS_CERT", str(missing)],
            serving,
        ),
        ({"QBSYNC_TLS_CERT": str(pki.server.cert)}, ["QBSYNC_TLS_KEY", "must be set"], serving),
        (
            {"QBSYNC_TLS_CERT": str(pki.server.key), "QBSYNC_TLS_KEY": str(pki.server.key)},
            ["QBSYNC_TLS_CERT", "no PEM certificate"],
            serving,
        ),
        (
            {"QBSYNC_TLS_CERT": str(pki.server.cert), "QBSYNC_TLS_KEY": str(pki.client.key)},
            ["QBSYNC_TLS_KEY", "not the key of"],
            serving,
        ),
        (
            {"QBSYNC_TLS_CERT": str(pki.server.cert), "QBSYNC_TLS_KEY": str(pki.server.cert)},
            ["QBSYNC_TLS_KEY", "private key"],
            serving,
        ),
        (
            {
                "QBSYNC_TLS_CERT": str(pki.server.cert),
                "QBSYNC_TLS_KEY": str(pki.server.key),
                "QBSYNC_TLS_CLIENT_CA": str(missing),
            },
            ["QBSYNC_TLS_CLIENT_CA", "cannot be read"],
            serving,
        ),
        # Every command, not only serve, reads the configuration the same way.
        ({"QBSYNC_WORKERS": "four"}, ["QBSYNC_WORKERS"], ["keys", "create", "--tenant", "acme"]),
        ({"QBSYNC_LEASE_SECONDS": "inf"}, ["QBSYNC_LEASE_SECONDS", "finite"], ["errors", "--tenant", "acme"]),
        ({}, ["QBSYNC_LISTEN", "--insecure"], ["demo", "--listen", "0.0.0.0:0"]),
    ]
    migrated = _env(tmp_path)
    subprocess.run([*QBSYNC, "migrate"], env=migrated, check=True, capture_output=True, timeout=60)
    for extra, words, args in mistakes:
        line = _refused(args, {**migrated, **extra})
        assert line.startswith("Error: configuration: ")
        for word in words:
            assert word in line, (extra, line)
        assert "hunter2" not in line  # a database URL's password is never echoed


def test_cli_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = _env(tmp_path, QBSYNC_DATABASE_URL=f"postgresql://qbsync:hunter2@127.0.0.1:{port}/qbsync?connect_timeout=2")
    done = subprocess.run([*QBSYNC, "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "QBSYNC_DATABASE_URL" in done.stderr and "hunter2" not in done.stderr

    # A database that was never migrated: said so, with what to do.
    fresh = _env(tmp_path, QBSYNC_DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}")
    done = subprocess.run(
        [*QBSYNC, "keys", "create", "--tenant", "acme"], env=fresh, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "Error: the database of QBSYNC_DATABASE_URL is unavailable (no such table" in done.stderr
    assert "`qbsync migrate`" in done.stderr


def test_cli_version() -> None:
    from importlib.metadata import version

    done = subprocess.run([*QBSYNC, "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == f"qbsync {version('qbsync')}"


def test_grpc_itself_will_not_share_a_port_with_a_reuseport_listener(serve, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The probe before binding aside, grpc's own SO_REUSEPORT is off: a listener that allows sharing (an
    older qbsync, any SO_REUSEPORT server) is not joined silently."""
    import socket

    import adapters.grpc.server as server_module

    with socket.socket() as sharing:
        sharing.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sharing.bind(("127.0.0.1", 0))
        sharing.listen()
        port = sharing.getsockname()[1]
        monkeypatch.setattr(server_module, "_is_taken", lambda listen: False)
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve(listen=f"127.0.0.1:{port}")
