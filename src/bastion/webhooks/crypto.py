"""Encryption of secrets Bastion must read back (webhook signing secrets), with Fernet (AES-128-CBC + HMAC-SHA256).

An API key can be stored as a hash because Bastion only ever compares it; a webhook signing secret must be used to
sign, so it is stored encrypted. The key comes from ``BASTION_SECRET_KEY`` (any string; its SHA-256 becomes the
Fernet key). When that is unset, a random key is generated once and kept in ``data_dir/secret.key`` with mode 0600:
fine for one machine, but every machine of a multi-machine deployment must share the key, so set the setting there.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import stat
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from bastion.errors import SecretUnreadable
from bastion.settings import Settings

log = logging.getLogger(__name__)

KEY_FILE_NAME = "secret.key"


def key_file(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE_NAME


def _read_or_create_key_file(path: Path) -> str:
    """The key in ``path``, creating it (0600, atomically: never seen half-written) when it does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
            try:
                os.link(tmp, path)  # fails if another process created it first: then theirs is the key
                log.warning("generated a secret key in %s; multi-machine deployments must set BASTION_SECRET_KEY", path)
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links: create it in place, still exclusively
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    pass
                else:
                    with os.fdopen(fd, "w") as f:
                        f.write(tmp.read_text())
        finally:
            tmp.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s is readable by other users (mode %o): chmod 600 it", path, mode)
    key = path.read_text().strip()
    if not key:
        raise SecretUnreadable(f"{path} is empty: restore it or set BASTION_SECRET_KEY", path=str(path))
    return key


def _key_material(settings: Settings) -> str:
    if settings.secret_key is not None and settings.secret_key.get_secret_value().strip():
        return settings.secret_key.get_secret_value().strip()
    return _read_or_create_key_file(key_file(settings))


@lru_cache(maxsize=8)
def _fernet(material: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material.encode("utf-8")).digest()))


def encrypt(settings: Settings, plaintext: str) -> str:
    return _fernet(_key_material(settings)).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(settings: Settings, token: str) -> str:
    try:
        return _fernet(_key_material(settings)).decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError):
        raise SecretUnreadable(
            "a stored secret cannot be decrypted with the current secret key (BASTION_SECRET_KEY or "
            "data_dir/secret.key changed?): restore the key or rotate the secret"
        ) from None
