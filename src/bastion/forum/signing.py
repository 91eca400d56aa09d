"""Ed25519 signatures over canonical JSON: what a member signs, and how anyone checks it.

A member signs each contribution, feedback and retraction it sends; the hub checks the signature against the
member's registered public key before storing anything, and stores the signature beside the fields. A member that
fetches the feed rebuilds the same canonical payload from the fields served and checks the signature again with
the key it pinned for the contributor, so a hub that altered a row (or made one up) is caught: the hub holds no
member's private key.

The canonical form is JSON with sorted keys, no whitespace and UTF-8 text (``ensure_ascii=False``). Every payload
names its kind, its member and its place in a batch (``batch``, ``index``): a signature cannot be moved to another
member, another batch or another position, which is what makes replayed and reordered batches detectable.

Contributions are signed a batch at a time. Checking an Ed25519 signature costs ~0.2 ms here, so one signature per
hash would make a member spend seconds verifying a 10,000-hash delta. Instead each contribution's canonical payload
is a leaf of a Merkle tree (SHA-256, with distinct prefixes for leaves and nodes so a node can never pass for a
leaf), and the member signs one :func:`batch_payload` naming the batch, its size and the tree's root. The hub stores
with each contribution the batch signature and the contribution's *proof* (the sibling hashes from its leaf to the
root), so a member fetching any one row, in any page, rebuilds the root from the row's own fields and checks the
batch signature once per batch (:class:`BatchVerifier` remembers the roots it has checked). Changing any field of
any row changes its leaf, hence the root it leads to, and the signature fails, exactly as before. Feedback and
retractions, which are few, keep one signature each.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bastion.errors import InvalidInput

PAYLOAD_VERSION = 1
_LEAF, _NODE = b"\x00", b"\x01"


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


# -- contributions: one signature per batch over a Merkle root ------------------------------------------------------
def batch_payload(member: str, batch: int, count: int, root: str) -> dict[str, Any]:
    """What a member signs for a batch of ``count`` contributions whose Merkle root is ``root`` (hex)."""
    return {
        "v": PAYLOAD_VERSION,
        "kind": "contribution_batch",
        "member": member,
        "batch": batch,
        "count": count,
        "root": root,
    }


def leaf_hash(payload: dict[str, Any]) -> bytes:
    return hashlib.sha256(_LEAF + canonical(payload)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def merkle_tree(leaves: list[bytes]) -> tuple[bytes, list[str]]:
    """The root of ``leaves`` and each leaf's proof: its siblings from the bottom up, base64-concatenated. Nodes are
    paired left to right at each level; an unpaired last node moves up unchanged (and adds nothing to its proof)."""
    if not leaves:
        raise InvalidInput("a batch has at least one contribution", code="empty_batch")
    proofs: list[list[bytes]] = [[] for _ in leaves]
    positions = list(range(len(leaves)))  # each leaf's index at the current level
    level = list(leaves)
    while len(level) > 1:
        for leaf, pos in enumerate(positions):
            sibling = pos ^ 1
            if sibling < len(level):
                proofs[leaf].append(level[sibling])
        level = [_node(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
        positions = [p // 2 for p in positions]
    return level[0], [base64.b64encode(b"".join(p)).decode("ascii") for p in proofs]


def merkle_root(leaves: list[bytes]) -> bytes:
    """The root :func:`merkle_tree` gives, without making the proofs (n - 1 hashes)."""
    if not leaves:
        raise InvalidInput("a batch has at least one contribution", code="empty_batch")
    level = list(leaves)
    while len(level) > 1:
        level = [_node(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    return level[0]


def root_from_proof(leaf: bytes, index: int, count: int, proof: str) -> bytes:
    """The root that ``leaf`` at ``index`` of a ``count``-leaf tree leads to through ``proof`` (see merkle_tree).
    A proof of the wrong length for that position raises :class:`InvalidSignatureError`."""
    try:
        raw = base64.b64decode(proof or "", validate=True)
    except (binascii.Error, ValueError):
        raw = b"\xff"  # not a multiple of 32: refused below
    if not 0 <= index < count or len(raw) % 32:
        raise InvalidSignatureError(f"contribution {index} of a batch of {count} has a malformed proof", index=index)
    siblings = [raw[i : i + 32] for i in range(0, len(raw), 32)]
    node, pos, size = leaf, index, count
    while size > 1:
        if pos ^ 1 < size:
            if not siblings:
                raise InvalidSignatureError(f"contribution {index}'s proof is too short", index=index)
            sibling = siblings.pop(0)
            node = _node(sibling, node) if pos & 1 else _node(node, sibling)
        pos, size = pos // 2, (size + 1) // 2
    if siblings:
        raise InvalidSignatureError(f"contribution {index}'s proof is too long", index=index)
    return node


def sign_contributions(key: Ed25519PrivateKey, member: str, batch: int, payloads: list[dict[str, Any]]) -> str:
    """The batch signature over the Merkle root of ``payloads`` (contribution payloads, in batch order)."""
    root, _ = merkle_tree([leaf_hash(p) for p in payloads])
    return sign(key, batch_payload(member, batch, len(payloads), root.hex()))


class BatchVerifier:
    """Checks contributions against their batch signature, verifying each (member, batch, root, signature) once."""

    def __init__(self) -> None:
        self._good: set[tuple[str, str, int, int, str, str]] = set()

    def verify(self, public_key: str, payload: dict[str, Any], count: int, proof: str, signature: str) -> None:
        """Raise :class:`InvalidSignatureError` unless ``payload`` is in a batch of ``count`` its member signed."""
        member, batch, index = str(payload.get("member")), int(payload.get("batch", 0)), int(payload.get("index", -1))
        root = root_from_proof(leaf_hash(payload), index, int(count), proof).hex()
        key = (public_key, member, batch, int(count), root, signature)
        if key in self._good:
            return
        try:
            verify(public_key, batch_payload(member, batch, int(count), root), signature)
        except InvalidSignatureError:
            raise InvalidSignatureError(
                f"contribution {index} of batch {batch} by {member!r} is not in the batch the member signed "
                "(its fields, proof or signature were altered)",
                index=index,
            ) from None
        self._good.add(key)
