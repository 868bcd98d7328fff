"""Configuration mistakes are ConfigErrors naming the variable; TLS and --insecure settings are read."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from qbsync.config import ConfigError, Settings
from qbsync.tls import check_listen_is_safe


def test_tls_and_insecure_settings_come_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "QBSYNC_TLS_CERT": str(tmp_path / "server.crt"),
            "QBSYNC_TLS_KEY": f" {tmp_path / 'server.key'} ",
            "QBSYNC_TLS_CLIENT_CA": str(tmp_path / "ca.crt"),
            "QBSYNC_INSECURE": "Yes",
        }
    )
    assert settings.tls and settings.insecure
    assert (settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file) == (
        tmp_path / "server.crt",
        tmp_path / "server.key",
        tmp_path / "ca.crt",
    )
    plain = Settings.from_env({"QBSYNC_INSECURE": "0", "QBSYNC_TLS_CERT": " "})
    assert not plain.tls and not plain.insecure


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"QBSYNC_WORKERS": "4.5"}, "QBSYNC_WORKERS"),
        ({"QBSYNC_SHUTDOWN_GRACE_SECONDS": "nan"}, "QBSYNC_SHUTDOWN_GRACE_SECONDS"),
        ({"QBSYNC_WATCH_POLL_SECONDS": "0"}, "QBSYNC_WATCH_POLL_SECONDS"),
        ({"QBSYNC_MAX_STREAMS_PER_KEY": "0"}, "QBSYNC_MAX_STREAMS_PER_KEY"),
        ({"QBSYNC_GRPC_THREADS": "0"}, "QBSYNC_GRPC_THREADS"),
        ({"QBSYNC_GRPC_THREADS": "many"}, "QBSYNC_GRPC_THREADS"),
        ({"QBSYNC_MAX_STREAMS_PER_KEY": "many"}, "QBSYNC_MAX_STREAMS_PER_KEY"),
        ({"QBSYNC_ROLE": "database"}, "QBSYNC_ROLE (--role)"),
        ({"QBSYNC_LISTEN": "localhost:65536"}, "QBSYNC_LISTEN (--listen)"),
        ({"QBSYNC_DATABASE_URL": "sqlite://"}, "QBSYNC_DATABASE_URL"),
        ({"QBSYNC_DATABASE_URL": "oracle://scott:tiger@db/x"}, "QBSYNC_DATABASE_URL"),
        ({"QBSYNC_TLS_KEY": "server.key"}, "QBSYNC_TLS_CERT"),
        ({"QBSYNC_TLS_CLIENT_CA": "ca.crt"}, "QBSYNC_TLS_CLIENT_CA"),
        ({"QBSYNC_INSECURE": "2"}, "QBSYNC_INSECURE"),
    ],
)
def test_each_mistake_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert raised.value.variable == variable
    assert str(raised.value).startswith(variable + " ")
    assert "tiger" not in str(raised.value)


@pytest.mark.parametrize("listen", ["127.0.0.1:50051", "localhost:0", "[::1]:50051", "127.8.9.10:1"])
def test_loopback_needs_no_tls(listen: str) -> None:
    check_listen_is_safe(replace(Settings.from_env({}), listen=listen))


@pytest.mark.parametrize("listen", ["0.0.0.0:50051", "[::]:50051", "10.0.0.7:50051", "qbsync.internal:50051"])
def test_beyond_loopback_plaintext_needs_insecure(listen: str) -> None:
    settings = replace(Settings.from_env({}), listen=listen)
    with pytest.raises(ConfigError, match="--insecure"):
        check_listen_is_safe(settings)
    check_listen_is_safe(replace(settings, insecure=True))
