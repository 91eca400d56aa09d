"""Webhook signatures: HMAC-SHA256 over ``"{timestamp}.{body}"``, with a replay window.

Every delivery carries::

    Bastion-Event-Id: 7b1e...            (the event's id: deduplicate on it, deliveries are at-least-once)
    Bastion-Timestamp: 1764096000        (unix seconds when this attempt was signed)
    Bastion-Signature: v1=<hex>          (one v1= per active secret, comma-separated, during a secret rotation)

``<hex>`` is ``HMAC-SHA256(key=secret, msg=timestamp + "." + body)`` where ``secret`` is the whole ``whsec_...``
string (UTF-8) and ``body`` the exact bytes received. A receiver recomputes it, compares in constant time with each
``v1=`` value, and refuses a timestamp more than ``tolerance`` seconds from its clock (a captured request cannot be
replayed later). :func:`verify_signature` does all of that.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

EVENT_ID_HEADER = "Bastion-Event-Id"
TIMESTAMP_HEADER = "Bastion-Timestamp"
SIGNATURE_HEADER = "Bastion-Signature"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = 300


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"{timestamp}.".encode() + body`` keyed by ``secret``."""
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def signature_header(secrets: Iterable[str], timestamp: int, body: bytes) -> str:
    return ", ".join(f"{SIGNATURE_VERSION}={compute_signature(s, timestamp, body)}" for s in secrets)


def signed_headers(secrets: Iterable[str], event_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers of one delivery attempt (plus Content-Type)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: signature_header(secrets, ts, body),
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> bool:
    """True when ``body`` was signed with ``secret`` less than ``tolerance`` seconds from ``now`` (default: the clock).

    ``headers`` is any mapping (header names are matched case-insensitively). False for a missing or malformed
    header, a timestamp outside the window (either side), or no ``v1=`` value matching (constant-time compare).
    """
    ts_text = _header(headers, TIMESTAMP_HEADER)
    sig_text = _header(headers, SIGNATURE_HEADER)
    if not ts_text or not sig_text or not ts_text.strip().isdigit():
        return False
    ts = int(ts_text.strip())
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    expected = compute_signature(secret, ts, body)
    ok = False
    for part in sig_text.split(","):
        version, _, value = part.strip().partition("=")
        if version == SIGNATURE_VERSION and hmac.compare_digest(value.strip().encode(), expected.encode()):
            ok = True  # keep looping: the time taken does not depend on which value matched
    return ok
