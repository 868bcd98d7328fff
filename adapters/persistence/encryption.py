"""Encryption at rest for the QuickBooks secrets (client secret, OAuth tokens) with Fernet keys.

The keys come from configuration (`QBSYNC_ENCRYPTION_KEY`: one or more comma-separated Fernet keys, the
first one encrypting, all of them decrypting, so a key can be rotated by putting the new one first), or,
when none is configured, from a key file generated on first use (mode 0600) so that `make run` needs no
set-up. Nothing is read or written until a secret is first encrypted or decrypted: building the
persistence module, or running a server that never stores a connection, touches no file.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)

ENCRYPTION_KEY_ENV = "QBSYNC_ENCRYPTION_KEY"


class EncryptionKeyError(RuntimeError):
    """The configured keys are malformed, or none of them decrypts what is stored.

    The message names the configuration to fix and never contains a key or a secret.
    """


def parse_keys(text: str) -> tuple[str, ...]:
    """`QBSYNC_ENCRYPTION_KEY`'s value as a tuple of keys (comma-separated, blanks ignored)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def generate_key() -> str:
    """A new Fernet key, for an operator to put in QBSYNC_ENCRYPTION_KEY."""
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Encrypts and decrypts text with a MultiFernet built lazily from configured keys or a key file.

    Thread-safe: the first use (possibly creating the key file) happens once.
    """

    def __init__(self, keys: Sequence[str] = (), key_file: Path | None = None) -> None:
        if not keys and key_file is None:
            raise ValueError("give encryption keys or a key file to keep a generated key in")
        self._keys = tuple(keys)
        self._key_file = key_file
        self._fernet: MultiFernet | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # the keys stay out of logs and tracebacks
        source = f"{len(self._keys)} configured key(s)" if self._keys else f"key file {self._key_file}"
        return f"SecretBox({source})"

    def encrypt(self, plaintext: str) -> str:
        return self._multi().encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str, *, what: str = "a stored secret") -> str:
        """Raises EncryptionKeyError when no configured key opens `token` (wrong or rotated-out key)."""
        try:
            return self._multi().decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken as exc:
            raise EncryptionKeyError(
                f"cannot decrypt {what}: none of the configured encryption keys ({self._source()}) is the "
                f"one it was encrypted with. Restore the key it was written with (put it in "
                f"{ENCRYPTION_KEY_ENV}, after the new one when rotating), or reconnect the company."
            ) from exc

    def _source(self) -> str:
        return ENCRYPTION_KEY_ENV if self._keys else f"the key file {self._key_file}"

    def _multi(self) -> MultiFernet:
        with self._lock:
            if self._fernet is None:
                keys = self._keys or (_load_or_create_key_file(self._key_file),)  # type: ignore[arg-type]
                self._fernet = MultiFernet([_fernet(key, n, self._source()) for n, key in enumerate(keys)])
            return self._fernet


def _fernet(key: str, position: int, source: str) -> Fernet:
    try:
        return Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        # The key itself is not echoed: a typo'd key is still mostly a key.
        raise EncryptionKeyError(
            f"encryption key #{position + 1} from {source} is not a Fernet key (32 url-safe base64-encoded "
            f"bytes); make one with: python -c 'from cryptography.fernet import Fernet; "
            f"print(Fernet.generate_key().decode())'"
        ) from exc


def _load_or_create_key_file(path: Path) -> str:
    """The key in `path`, created (0600, exclusively, so two processes agree on one key) if missing."""
    try:
        key = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    else:
        if path.stat().st_mode & 0o077:
            log.warning("the encryption key file %s is readable by other users: chmod 600 it", path)
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process created it between our read and our create: use its key, not ours.
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    log.warning(
        "generated an encryption key for QuickBooks tokens in %s; back it up, or set %s, "
        "since the stored tokens cannot be read without it",
        path,
        ENCRYPTION_KEY_ENV,
    )
    return key
