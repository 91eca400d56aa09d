"""Ed25519 signatures over canonical JSON: what a member signs, and how anyone checks it.

A member signs each contribution, feedback and retraction it sends; the hub checks the signature against the
member's registered public key before storing anything, and stores the signature beside the fields. A member that
fetches the feed rebuilds the same canonical payload from the fields served and checks the signature again with
the key it pinned for the contributor, so a hub that altered a row (or made one up) is caught: the hub holds no
member's private key.

The canonical form is JSON with sorted keys, no whitespace and UTF-8 text (``ensure_ascii=False``). Every payload
names its kind, its member and its place in a batch (``batch``, ``index``): a signature cannot be moved to another
member, another batch or another position, which is what makes replayed and reordered batches detectable.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bastion.errors import InvalidInput

PAYLOAD_VERSION = 1


class InvalidSignatureError(InvalidInput):
    """A signature that does not verify against the signer's registered key (or is not a signature at all)."""

    code = "invalid_signature"
    http_status = 422


def canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def contribution_payload(
    member: str, batch: int, index: int, signal_type: str, value: str, labels: dict[str, Any], incident: str | None
) -> dict[str, Any]:
    return {
        "v": PAYLOAD_VERSION,
        "kind": "contribution",
        "member": member,
        "batch": batch,
        "index": index,
        "signal_type": signal_type,
        "value": value,
        "labels": dict(labels),
        "incident": incident,
    }


def feedback_payload(
    member: str, batch: int, index: int, contribution: int, kind: str, labels: dict[str, Any], note: str
) -> dict[str, Any]:
    return {
        "v": PAYLOAD_VERSION,
        "kind": "feedback",
        "member": member,
        "batch": batch,
        "index": index,
        "contribution": contribution,
        "feedback": kind,
        "labels": dict(labels),
        "note": note,
    }


def retraction_payload(member: str, batch: int, index: int, contribution: int) -> dict[str, Any]:
    return {
        "v": PAYLOAD_VERSION,
        "kind": "retraction",
        "member": member,
        "batch": batch,
        "index": index,
        "contribution": contribution,
    }


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(raw).decode("ascii")


def load_private_key(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text))


def public_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_public_key(text: str) -> Ed25519PublicKey:
    """A registered public key: 32 raw bytes, base64. InvalidInput ``invalid_public_key`` otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        if len(raw) != 32:
            raise ValueError("not 32 bytes")
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error, AttributeError):
        raise InvalidInput(
            "a public key is an Ed25519 key: 32 raw bytes, base64-encoded", code="invalid_public_key"
        ) from None


def sign(key: Ed25519PrivateKey, payload: dict[str, Any]) -> str:
    return base64.b64encode(key.sign(canonical(payload))).decode("ascii")


def verify(public_key: Ed25519PublicKey | str, payload: dict[str, Any], signature: str) -> None:
    """Raise :class:`InvalidSignatureError` unless ``signature`` is ``payload`` signed by ``public_key``."""
    key = load_public_key(public_key) if isinstance(public_key, str) else public_key
    try:
        raw = base64.b64decode(signature or "", validate=True)
        key.verify(raw, canonical(payload))
    except (InvalidSignature, binascii.Error, ValueError):
        raise InvalidSignatureError(
            f"the signature of {payload.get('kind')} {payload.get('index')} of batch {payload.get('batch')} by "
            f"{payload.get('member')!r} does not verify against the member's registered key",
            index=payload.get("index"),
        ) from None
