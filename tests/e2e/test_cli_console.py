"""`qbsync console` as an operator runs it: serves the sign-in page, stops on SIGTERM, and refuses its
configuration mistakes in one line naming the variable (exit 78)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests
from click.testing import CliRunner, Result

from qbsync.cli import main
from qbsync.config import ConfigError
from qbsync.console import SECRET_FILE_NAME, ConsoleSettings

QBSYNC = [sys.executable, "-m", "qbsync.cli"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBSYNC_CONSOLE_")}
    return {**env, "QBSYNC_DATA_DIR": str(tmp_path), "QBSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", **extra}


def test_console_serves_the_sign_in_page_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = _env(tmp_path)
    subprocess.run([*QBSYNC, "migrate"], env=env, check=True, capture_output=True, timeout=60)
    console = subprocess.Popen(
        [*QBSYNC, "console", "--listen", "127.0.0.1:0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert console.stdout is not None
        line = console.stdout.readline()
        match = re.search(r"serving on 127\.0\.0\.1:(\d+) \(open (http://127\.0\.0\.1:\d+)/\)", line)
        assert match, line
        assert console.stdout.readline().strip().endswith(f"{match.group(2)}/oauth/callback")
        page = requests.get(f"{match.group(2)}/", timeout=10)
        assert page.status_code == 200 and page.url.endswith("/signin") and 'name="api_key"' in page.text
        assert page.headers["x-frame-options"] == "DENY"
        secret = (tmp_path / SECRET_FILE_NAME).read_text().strip()
        assert len(secret) >= 32 and (tmp_path / SECRET_FILE_NAME).stat().st_mode & 0o077 == 0
        console.send_signal(signal.SIGTERM)
        assert console.wait(timeout=20) == 0
        _, stderr = console.communicate(timeout=5)
        assert secret not in stderr
    finally:
        if console.poll() is None:
            console.kill()


def test_a_taken_port_and_bad_settings_are_one_line_naming_them(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def run(*args: str, **extra: str) -> Result:
        for name, value in _env(tmp_path, **extra).items():
            monkeypatch.setenv(name, value)
        for name in ("QBSYNC_CONSOLE_LISTEN", "QBSYNC_CONSOLE_SESSION_SECRET", "QBSYNC_CONSOLE_URL"):
            if name not in extra:
                monkeypatch.delenv(name, raising=False)
        return CliRunner().invoke(main, ["console", *args])

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = run("--listen", f"127.0.0.1:{port}")
    assert busy.exit_code == 78, busy.output
    assert f"127.0.0.1:{port}" in busy.output and "Traceback" not in busy.output
    for extra, named in (
        ({"QBSYNC_CONSOLE_LISTEN": "nowhere"}, "QBSYNC_CONSOLE_LISTEN (--listen)"),
        ({"QBSYNC_CONSOLE_LISTEN": "0.0.0.0:8080"}, "QBSYNC_CONSOLE_LISTEN (--listen)"),
        ({"QBSYNC_CONSOLE_SESSION_SECRET": "short"}, "QBSYNC_CONSOLE_SESSION_SECRET"),
        ({"QBSYNC_CONSOLE_URL": "ftp://console"}, "QBSYNC_CONSOLE_URL"),
    ):
        bad = run(**extra)
        assert bad.exit_code == 78, (extra, bad.output)
        [message] = bad.output.strip().splitlines()
        assert message.startswith(f"Error: configuration: {named} "), message


def test_beyond_loopback_needs_an_https_url_or_insecure(tmp_path: Path) -> None:
    env = {"QBSYNC_CONSOLE_SESSION_SECRET": "x" * 40}
    try:
        ConsoleSettings.from_env(env, tmp_path, listen="0.0.0.0:8080")
    except ConfigError as exc:
        assert "QBSYNC_CONSOLE_URL" in str(exc) and "--insecure" in str(exc)
    else:
        raise AssertionError("plain http beyond loopback was accepted")
    behind_proxy = ConsoleSettings.from_env(
        {**env, "QBSYNC_CONSOLE_URL": "https://ops.example.com/"}, tmp_path, listen="0.0.0.0:8080"
    )
    assert behind_proxy.url_for_port(8080) == "https://ops.example.com"
    assert ConsoleSettings.from_env(env, tmp_path, listen="0.0.0.0:8080", insecure=True).listen == "0.0.0.0:8080"
    assert "x" * 40 not in repr(behind_proxy)
    assert ConsoleSettings.from_env(env, tmp_path, listen="127.0.0.1:0").url_for_port(4321) == "http://127.0.0.1:4321"
    assert not (tmp_path / SECRET_FILE_NAME).exists()  # a configured secret is not written anywhere
