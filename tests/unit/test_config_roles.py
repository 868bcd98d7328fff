"""The role, worker count and lease of a `qbsync serve` process come from the environment."""

from __future__ import annotations

import pytest

from qbsync.config import Settings


def test_defaults_run_everything_in_one_process() -> None:
    settings = Settings.from_env({})
    assert (settings.role, settings.serves_api, settings.runs_workers) == ("all", True, True)
    assert settings.lease_seconds == 120


@pytest.mark.parametrize(("role", "api", "workers"), [("api", True, False), ("Worker", False, True)])
def test_a_role_splits_the_api_from_the_workers(role: str, api: bool, workers: bool) -> None:
    settings = Settings.from_env({"QBSYNC_ROLE": role, "QBSYNC_WORKERS": "2", "QBSYNC_LEASE_SECONDS": "5"})
    assert (settings.serves_api, settings.runs_workers) == (api, workers)
    assert (settings.workers, settings.lease_seconds) == (2, 5)


@pytest.mark.parametrize("env", [{"QBSYNC_ROLE": "db"}, {"QBSYNC_WORKERS": "-1"}, {"QBSYNC_LEASE_SECONDS": "0"}])
def test_nonsense_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Settings.from_env(env)
