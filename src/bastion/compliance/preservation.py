"""Preservation of removed content for authorities (TCO Art. 6).

When content is removed or disabled, Bastion keeps a *package* of it (the content's record and signals, every
decision on it, the review decisions, and the bytes themselves while Bastion still holds them) for
``BASTION_PRESERVATION_DAYS`` (six months), so that an authority can obtain it for the prevention, detection,
investigation or prosecution of terrorist offences, or for a complaint or judicial review. An authority or court may
ask for longer for one item (:meth:`PreservationService.extend`). Then the workers purge it
(:meth:`PreservationService.purge_due`): the ciphertext is dropped and the row remains as the record that it existed.

The package is encrypted with AES-256-GCM. The key comes from a :class:`KeyProvider`: :class:`ConfigKeyProvider`
reads ``BASTION_PRESERVATION_KEY`` (or derives one from the instance secret); a deployment with a KMS implements the
two methods of the protocol over it. The additional authenticated data binds each ciphertext to its row
(organisation, content, decision), so moving a ciphertext to another row fails to decrypt.

Reading a package is for the ``preservation`` scope only, and every read, extension and purge is written to the
audit log in the same transaction.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion import audit
from bastion.errors import BastionError, Conflict, Forbidden, InvalidInput, NotFound
from bastion.settings import Settings
from bastion.storage.db import Database
from bastion.storage.models import (
    ContentBlob,
    ContentItem,
    Decision,
    PreservedContent,
    ReviewDecision,
    as_utc,
    utcnow,
)

log = logging.getLogger(__name__)
PRESERVATION_SCOPE = "preservation"
MAX_EXTENSION_DAYS = 5 * 366  # one request extends by at most five years
MAX_TEXT = 500


class PreservationKeyError(BastionError):
    """The key that encrypted a preserved package is not available, or does not open it."""

    code = "preservation_key_error"
    http_status = 500
    exit_code = 1


class KeyProvider(Protocol):
    """Where preservation keys come from: the configured key, or a KMS."""

    def current(self) -> tuple[str, bytes]:
        """The id and the 32 bytes of the key new packages are encrypted with."""

    def get(self, key_id: str) -> bytes:
        """The key with this id (raise :class:`PreservationKeyError` when it is not available)."""


def _key_id(key: bytes) -> str:
    return "cfg-" + hashlib.sha256(b"bastion-preservation-key-id:" + key).hexdigest()[:16]


class ConfigKeyProvider:
    """``BASTION_PRESERVATION_KEY`` (base64 of 32 bytes), or HKDF-SHA256 of the instance secret when unset."""

    def __init__(self, settings: Settings) -> None:
        raw = settings.preservation_key.get_secret_value().strip() if settings.preservation_key else ""
        if raw:
            try:
                key = base64.b64decode(raw, validate=True)
            except ValueError as exc:
                raise InvalidInput("BASTION_PRESERVATION_KEY is not base64", code="invalid_preservation_key") from exc
            if len(key) != 32:
                raise InvalidInput(
                    "BASTION_PRESERVATION_KEY must be 32 bytes (AES-256), base64-encoded",
                    code="invalid_preservation_key",
                )
        else:
            from bastion.webhooks.crypto import _key_material

            key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"bastion preservation v1").derive(
                _key_material(settings).encode()
            )
        self._key = key
        self._id = _key_id(key)

    def current(self) -> tuple[str, bytes]:
        return self._id, self._key

    def get(self, key_id: str) -> bytes:
        if key_id != self._id:
            raise PreservationKeyError(
                f"preserved content was encrypted with key {key_id}, which is not the configured key ({self._id}); "
                "restore that key (BASTION_PRESERVATION_KEY or the KMS) to read it",
                code="preservation_key_unavailable",
            )
        return self._key


_installed: KeyProvider | None = None
_config_providers: dict[int, tuple[Settings, ConfigKeyProvider]] = {}


def install_key_provider(provider: KeyProvider | None) -> None:
    """The KMS hook: every later preservation (the pipeline's, the sweep's, the services') uses ``provider``; None
    goes back to the configured key."""
    global _installed
    _installed = provider


def key_provider(settings: Settings) -> KeyProvider:
    """The installed provider, else the configured key (derived once per settings object)."""
    if _installed is not None:
        return _installed
    cached = _config_providers.get(id(settings))
    if cached is None or cached[0] is not settings:
        cached = (settings, ConfigKeyProvider(settings))
        _config_providers[id(settings)] = cached
    return cached[1]


def preserve_on_decision(
    session: Session, settings: Settings, item: ContentItem, decision: Decision, data: bytes | None
) -> PreservedContent | None:
    """Preserve a restriction in the decision's own transaction, while its bytes are still at hand (the pipeline
    drops them once decided). A key that cannot be had does not stop the removal: it is logged, and the workers'
    sweep preserves the item (without the bytes) once the key is fixed."""
    try:
        keys = key_provider(settings)
        keys.current()
    except BastionError:
        log.exception("preservation key unavailable; content %s will be preserved by the sweep", item.id)
        return None
    return preserve(session, keys, item, decision, days=settings.preservation_days, data=data, actor=decision.actor)


@dataclass(frozen=True)
class Accessor:
    """Who reads preserved content: an actor of an organisation and the scopes (or role) they hold."""

    actor: str
    organisation_id: int | None  # None: the operator (CLI), every organisation
    scopes: frozenset[str]

    def check(self) -> None:
        if PRESERVATION_SCOPE not in self.scopes:
            raise Forbidden("preserved content is only for the preservation scope", code="preservation_forbidden")


def _aad(row: PreservedContent) -> bytes:
    return f"bastion-preservation:v1:{row.organisation_id}:{row.content_id}:{row.decision_id}".encode()


def _iso(dt: datetime | None) -> str | None:
    return as_utc(dt).isoformat().replace("+00:00", "Z") if dt is not None else None


def package(session: Session, item: ContentItem, data: bytes | None = None) -> dict[str, Any]:
    """What is preserved of ``item``: its record, signals, decisions and review decisions, and its bytes if given or
    still held (``content_blobs``)."""
    from bastion.decisions.pipeline import content_summary, decision_dict

    if data is None:
        data = session.scalar(select(ContentBlob.data).where(ContentBlob.content_id == item.id))
    decisions = session.scalars(select(Decision).where(Decision.content_id == item.id).order_by(Decision.version))
    reviews = session.scalars(
        select(ReviewDecision).where(ReviewDecision.content_id == item.id).order_by(ReviewDecision.id)
    )
    return {
        "content": content_summary(item),
        "signals": list(item.signals or []),
        "decisions": [decision_dict(d) for d in decisions],
        "reviews": [
            {
                "id": r.id,
                "reviewer_id": r.reviewer_id,
                "verdict": r.verdict,
                "action": r.action,
                "category": r.category,
                "policy_reference": r.policy_reference,
                "note": r.note,
                "decided_at": _iso(r.created_at),
            }
            for r in reviews
        ],
        "bytes_base64": base64.b64encode(data).decode() if data is not None else None,
    }


def preserve(
    session: Session,
    keys: KeyProvider,
    item: ContentItem,
    decision: Decision,
    *,
    days: int,
    data: bytes | None = None,
    now: datetime | None = None,
    actor: str = "compliance",
) -> PreservedContent:
    """Preserve ``item`` for ``decision`` in ``session`` (once per decision: an existing row is returned)."""
    existing = session.scalars(select(PreservedContent).where(PreservedContent.decision_id == decision.id)).first()
    if existing is not None:
        return existing
    now = now or utcnow()
    body = package(session, item, data)
    plaintext = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    key_id, key = keys.current()
    row = PreservedContent(
        organisation_id=item.organisation_id,
        content_id=item.id,
        decision_id=decision.id,
        key_id=key_id,
        has_bytes=body["bytes_base64"] is not None,
        size_bytes=len(plaintext),
        preserved_at=now,
        expires_at=now + timedelta(days=days),
        extensions=[],
    )
    nonce = os.urandom(12)
    row.nonce = nonce
    row.ciphertext = AESGCM(key).encrypt(nonce, plaintext, _aad(row))
    session.add(row)
    session.flush()
    audit.append(
        session,
        actor,
        "content_preserved",
        f"preservation:{row.id}",
        {
            "content": item.id,
            "decision": decision.id,
            "expires_at": _iso(row.expires_at),
            "has_bytes": row.has_bytes,
            "key_id": key_id,
        },
        organisation_id=item.organisation_id,
    )
    return row


def preservation_dict(row: PreservedContent) -> dict[str, Any]:
    return {
        "id": row.id,
        "content_id": row.content_id,
        "decision_id": row.decision_id,
        "key_id": row.key_id,
        "has_bytes": row.has_bytes,
        "size_bytes": row.size_bytes,
        "preserved_at": _iso(row.preserved_at),
        "expires_at": _iso(row.expires_at),
        "extensions": list(row.extensions or []),
        "purged_at": _iso(row.purged_at),
        "status": "purged" if row.purged_at else "preserved",
    }


class PreservationService:
    """Reading, extending, listing and purging preserved content."""

    def __init__(self, db: Database, settings: Settings, keys: KeyProvider | None = None) -> None:
        self.db = db
        self.settings = settings
        self.keys = keys or key_provider(settings)

    def _row(self, s: Session, who: Accessor, preservation_id: int) -> PreservedContent:
        row = s.get(PreservedContent, preservation_id)
        if row is None or (who.organisation_id is not None and row.organisation_id != who.organisation_id):
            raise NotFound(f"no preserved content {preservation_id}", code="preservation_not_found")
        return row

    def list(self, who: Accessor, *, content_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        who.check()
        with self.db.session() as s:
            q = select(PreservedContent).order_by(PreservedContent.id.desc()).limit(max(1, min(limit, 1000)))
            if who.organisation_id is not None:
                q = q.where(PreservedContent.organisation_id == who.organisation_id)
            if content_id is not None:
                q = q.where(PreservedContent.content_id == content_id)
            return [preservation_dict(r) for r in s.scalars(q)]

    def read(self, who: Accessor, preservation_id: int, *, purpose: str) -> dict[str, Any]:
        """Decrypt one package. The read is audited with its stated purpose (an authority's request, a complaint)."""
        who.check()
        purpose = (purpose or "").strip()
        if not purpose or len(purpose) > MAX_TEXT:
            raise InvalidInput(
                f"say why you read preserved content (1 to {MAX_TEXT} characters)", code="purpose_required"
            )
        with self.db.session() as s:
            row = self._row(s, who, preservation_id)
            if row.purged_at is not None or row.ciphertext is None:
                raise Conflict(
                    f"preserved content {row.id} was purged at {_iso(row.purged_at)}", code="preservation_purged"
                )
            key = self.keys.get(row.key_id)
            try:
                plaintext = AESGCM(key).decrypt(row.nonce or b"", row.ciphertext, _aad(row))
            except InvalidTag as exc:
                raise PreservationKeyError(
                    f"preserved content {row.id} does not decrypt with key {row.key_id}: the key is wrong or the "
                    "stored bytes were altered",
                    code="preservation_decrypt_failed",
                ) from exc
            audit.append(
                s,
                who.actor,
                "preservation_read",
                f"preservation:{row.id}",
                {"content": row.content_id, "purpose": purpose},
                organisation_id=row.organisation_id,
            )
            return {**preservation_dict(row), "package": json.loads(plaintext)}

    def extend(
        self,
        who: Accessor,
        preservation_id: int,
        *,
        until: datetime,
        requested_by: str,
        reference: str,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Keep one item longer at an authority's or court's request (TCO Art. 6(2))."""
        who.check()
        now = now or utcnow()
        requested_by, reference = (requested_by or "").strip(), (reference or "").strip()
        if not requested_by or len(requested_by) > 200:
            raise InvalidInput(
                "name the authority or court that asked (1 to 200 characters)", code="requested_by_required"
            )
        if not reference or len(reference) > 200:
            raise InvalidInput("give the request's reference (1 to 200 characters)", code="reference_required")
        until = as_utc(until)
        with self.db.session() as s:
            row = self._row(s, who, preservation_id)
            if row.purged_at is not None:
                raise Conflict(f"preserved content {row.id} was already purged", code="preservation_purged")
            if until <= as_utc(row.expires_at):
                raise InvalidInput(
                    f"an extension must end after the current expiry ({_iso(row.expires_at)})",
                    code="extension_not_later",
                )
            if until > now + timedelta(days=MAX_EXTENSION_DAYS):
                raise InvalidInput("one extension is at most five years from now", code="extension_too_long")
            previous = row.expires_at
            row.expires_at = until
            row.extensions = [
                *list(row.extensions or []),
                {
                    "until": _iso(until),
                    "previous": _iso(previous),
                    "requested_by": requested_by,
                    "reference": reference,
                    "at": _iso(now),
                    "by": who.actor,
                },
            ]
            audit.append(
                s,
                who.actor,
                "preservation_extended",
                f"preservation:{row.id}",
                {
                    "content": row.content_id,
                    "until": _iso(until),
                    "previous": _iso(previous),
                    "requested_by": requested_by,
                    "reference": reference,
                },
                organisation_id=row.organisation_id,
            )
            s.flush()
            return preservation_dict(row)

    def purge_due(self, *, now: datetime | None = None, batch: int = 500) -> int:
        """Purge every package past its expiry: the ciphertext is dropped, the purge audited. Returns how many."""
        now = now or utcnow()
        done = 0
        with self.db.session() as s:
            rows = s.scalars(
                select(PreservedContent)
                .where(PreservedContent.purged_at.is_(None), PreservedContent.expires_at <= now)
                .order_by(PreservedContent.id)
                .limit(batch)
            ).all()
            for row in rows:
                row.ciphertext, row.nonce, row.purged_at = None, None, now
                audit.append(
                    s,
                    "compliance",
                    "preservation_purged",
                    f"preservation:{row.id}",
                    {"content": row.content_id, "expired_at": _iso(row.expires_at)},
                    organisation_id=row.organisation_id,
                )
                done += 1
        return done

    def counts(self, organisation_id: int) -> dict[str, int]:
        from sqlalchemy import func

        with self.db.session() as s:
            rows = dict(
                s.execute(
                    select(PreservedContent.purged_at.is_(None), func.count())
                    .where(PreservedContent.organisation_id == organisation_id)
                    .group_by(PreservedContent.purged_at.is_(None))
                ).all()
            )
        return {"preserved": int(rows.get(True, 0)), "purged": int(rows.get(False, 0))}


__all__ = [
    "Accessor",
    "ConfigKeyProvider",
    "KeyProvider",
    "PreservationKeyError",
    "PreservationService",
    "install_key_provider",
    "key_provider",
    "package",
    "preservation_dict",
    "preserve",
    "preserve_on_decision",
]
