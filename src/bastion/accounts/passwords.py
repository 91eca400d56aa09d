"""Passwords for console sign-in: argon2id hashes, a minimum length, and a dummy hash for unknown addresses.

Unlike API keys (256 random bits, a plain SHA-256 is enough: see :mod:`bastion.accounts.service`), passwords are
chosen by people and guessable, so they are stored as argon2id hashes (argon2-cffi's defaults: 64 MiB, 3 passes,
parallelism 4; RFC 9106's second recommended profile). A hash made with weaker parameters than today's is replaced
on the next successful sign-in (:func:`needs_rehash`).

:func:`dummy_verify` spends the same work as a real verification; sign-in calls it for an address with no user or
no password, so neither the answer nor its timing tells whether an address exists.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bastion.errors import InvalidInput

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 takes any length, but a megabyte "password" is a denial of service, not a secret

_hasher = PasswordHasher(type=Type.ID)


def validate_password(password: str) -> str:
    """``password`` unchanged, or InvalidInput ``weak_password`` (shorter than 12 characters, longer than 1024, or
    only white space)."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH or not password.strip():
        raise InvalidInput(f"a password needs at least {MIN_LENGTH} characters", code="weak_password")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"a password has at most {MAX_LENGTH} characters", code="weak_password")
    return password


def hash_password(password: str) -> str:
    """The argon2id hash of a validated password (``$argon2id$v=19$m=...``)."""
    return _hasher.hash(validate_password(password))


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (argon2 compares in constant time); a malformed hash is False."""
    if not isinstance(password, str) or len(password) > MAX_LENGTH:
        dummy_verify()
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when ``stored_hash`` was made with other parameters than today's (rehash it after a good sign-in)."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash("bastion-dummy-password-for-timing")


def dummy_verify() -> None:
    """Spend one verification's work and learn nothing (for unknown addresses and users without a password)."""
    with contextlib.suppress(VerificationError):
        _hasher.verify(_dummy_hash(), "not-the-dummy-password")
