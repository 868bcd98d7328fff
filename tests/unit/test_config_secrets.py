"""Settings read the encryption keys and Intuit app from the environment and keep them out of reprs."""

from __future__ import annotations

from pathlib import Path

from adapters.persistence.encryption import generate_key
from qbsync.config import Settings


def test_keys_app_and_key_file_come_from_the_environment() -> None:
    first, second = generate_key(), generate_key()
    settings = Settings.from_env(
        {
            "QBSYNC_DATA_DIR": "/srv/qbsync",
            "QBSYNC_ENCRYPTION_KEY": f" {first} , {second},",
            "QBSYNC_QBO_CLIENT_ID": "app-id",
            "QBSYNC_QBO_CLIENT_SECRET": "app-secret",
            "QBSYNC_QBO_REDIRECT_URI": "https://crm.example.com/cb",
        }
    )
    assert settings.encryption_keys == (first, second)
    assert settings.key_file == Path("/srv/qbsync/secret.key")
    assert (settings.qbo_client_id, settings.qbo_client_secret) == ("app-id", "app-secret")
    assert settings.qbo_environment == "sandbox"
    for secret in (first, second, "app-secret"):
        assert secret not in repr(settings)


def test_by_default_the_key_is_generated_under_var() -> None:
    settings = Settings.from_env({})
    assert settings.encryption_keys == ()
    assert settings.key_file == Path("var/secret.key")
