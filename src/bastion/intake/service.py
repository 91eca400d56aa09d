"""Intake: accept one submission from a platform, decide it now or queue it, and never lose or half-store it.

A submission is refused (4xx, nothing stored) when its metadata or its content is bad: unknown jurisdiction or
surface, empty, oversized, mislabelled or undecodable content, a hostile URL. Otherwise it is stored, and:

- images and texts up to ``BASTION_INLINE_DECISION_BYTES`` (and URLs not fetched) are decided inside the request:
  hashing, matching, classifiers and policy run first, then one transaction stores the item, its decision, the
  audit record and the webhook event;
- videos, PDFs, larger files and URLs the organisation lets Bastion fetch are stored with their bytes and a job in
  one transaction, and a worker decides them (``pending`` now, ``decision.made`` by webhook later) — unless the
  URL's own signals already match a bank, which decides it at once.

``Idempotency-Key``: a retried request with the same key and the same body returns the first response's item
(nothing new stored); the same key with a different body is ``409 idempotency_key_reused``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import iso3166
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bastion.content import Content, ContentType
from bastion.decisions.pipeline import REVIEWED_OUTCOMES, DecisionPipeline, content_summary, decision_dict
from bastion.errors import BastionError, Conflict, InvalidInput, NotFound
from bastion.jobs.queue import JobQueue
from bastion.settings import Settings
from bastion.signals.url import canonical_url
from bastion.storage.db import Database
from bastion.storage.models import ContentBlob, ContentItem, Decision

log = logging.getLogger(__name__)

SURFACES = ("post", "comment", "message", "profile", "livestream", "story", "video", "image", "group", "channel",
            "advert", "search", "other")
EXTRA_JURISDICTIONS = {"EU"}  # the Union as a whole (EU Regulation 2021/784 orders can be Union-wide)
JURISDICTION_ALIASES = {"UK": "GB", "EL": "GR"}  # common non-ISO codes (EU usage) mapped to ISO 3166-1
_LANGUAGE = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{1,8})*$")
_ID = re.compile(r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$")  # printable ASCII, no surrounding spaces
PROCESS_JOB = "process_content"


def validate_jurisdiction(raw: str) -> str:
    """An ISO 3166-1 alpha-2 code (or EU), upper-cased, aliases resolved; InvalidInput ``invalid_jurisdiction``."""
    code = JURISDICTION_ALIASES.get(raw.strip().upper(), raw.strip().upper())
    if code not in EXTRA_JURISDICTIONS and code not in iso3166.countries_by_alpha2:
        raise InvalidInput(f"unknown jurisdiction {raw!r}: use ISO 3166-1 alpha-2 country codes (or EU)",
                           code="invalid_jurisdiction", jurisdiction=raw)
    return code


@dataclass
class SubmissionMeta:
    external_id: str
    uploader_id: str | None = None
    jurisdictions: list[str] = field(default_factory=list)
    surface: str | None = None
    language: str | None = None
    reach: int | None = None  # views, shares or followers the platform counts: raises review priority

    def validated(self) -> SubmissionMeta:
        if not self.external_id or len(self.external_id) > 200 or not _ID.fullmatch(self.external_id):
            raise InvalidInput("content_id must be 1-200 printable ASCII characters (the platform's own id)",
                               code="invalid_content_id")
        if self.uploader_id is not None and (len(self.uploader_id) > 200 or not _ID.fullmatch(self.uploader_id)):
            raise InvalidInput("uploader_id must be 1-200 printable ASCII characters", code="invalid_uploader_id")
        codes: list[str] = []
        for raw in self.jurisdictions:
            code = validate_jurisdiction(raw)
            if code not in codes:
                codes.append(code)
        surface = self.surface.strip().lower() if self.surface else None
        if surface is not None and surface not in SURFACES:
            raise InvalidInput(f"unknown surface {self.surface!r}; one of: {', '.join(SURFACES)}",
                               code="invalid_surface", surface=self.surface)
        language = self.language.strip() if self.language else None
        if language is not None and not _LANGUAGE.fullmatch(language):
            raise InvalidInput(f"language {self.language!r} is not a BCP 47 tag (e.g. 'en', 'fr', 'ar-SY')",
                               code="invalid_language")
        reach = self.reach
        if reach is not None and (isinstance(reach, bool) or not isinstance(reach, int) or not 0 <= reach <= 10**12):
            raise InvalidInput("reach must be a whole number from 0 to 10^12", code="invalid_reach")
        return SubmissionMeta(self.external_id, self.uploader_id, codes, surface, language, reach)


@dataclass
class Payload:
    """Exactly one of: uploaded bytes, a text, a URL."""

    data: bytes | None = None
    text: str | None = None
    url: str | None = None

    @property
    def source(self) -> str:
        return "upload" if self.data is not None else "text" if self.text is not None else "url"

    @functools.cached_property
    def sha256(self) -> str:
        """SHA-256 of the bytes (the UTF-8 text, the URL string): computed once, for the fingerprint and the item."""
        raw = self.data if self.data is not None else (self.text or self.url or "").encode("utf-8", "replace")
        return hashlib.sha256(raw).hexdigest()


@dataclass
class SubmitResult:
    item: dict[str, Any]
    created: bool  # False: an idempotent replay of an earlier request


def _fingerprint(meta: SubmissionMeta, payload: Payload) -> str:
    body = json.dumps([meta.external_id, meta.uploader_id, meta.jurisdictions, meta.surface, meta.language,
                       payload.source, payload.sha256] + ([meta.reach] if meta.reach is not None else []),
                      separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


class IntakeService:
    def __init__(self, db: Database, settings: Settings, pipeline: DecisionPipeline) -> None:
        self.db = db
        self.settings = settings
        self.pipeline = pipeline

    # -- submitting ---------------------------------------------------------------------------------------------------
    def submit(self, organisation_id: int, meta: SubmissionMeta, payload: Payload, *,
               idempotency_key: str | None = None, actor: str = "api") -> SubmitResult:
        meta = meta.validated()
        if idempotency_key is not None and (not idempotency_key or len(idempotency_key) > 200
                                            or not _ID.fullmatch(idempotency_key)):
            raise InvalidInput("Idempotency-Key must be 1-200 printable ASCII characters",
                               code="invalid_idempotency_key")
        fingerprint = _fingerprint(meta, payload)
        if idempotency_key:
            replay = self._replay(organisation_id, idempotency_key, fingerprint)
            if replay is not None:
                return replay
        content = self._content(payload)
        fetch_enabled = self.pipeline.organisation(organisation_id).url_fetch_enabled
        item = ContentItem(
            organisation_id=organisation_id, external_id=meta.external_id, uploader_id=meta.uploader_id,
            jurisdictions=meta.jurisdictions, surface=meta.surface, language=meta.language, reach=meta.reach,
            source=payload.source,
            url=content.url, content_type=content.content_type.value, media_type=content.mime,
            size_bytes=content.size, sha256=payload.sha256 if payload.source != "url" else None, signals=[],
            status="pending", idempotency_key=idempotency_key, request_fingerprint=fingerprint,
        )
        if self._decide_inline(content, fetch_enabled):
            try:
                analysis = self.pipeline.analyse(item, content)
            except BastionError:
                raise  # bad content (corrupt, mislabelled...): refused, nothing stored
            except Exception:  # noqa: BLE001 - an internal failure must not lose the submission: queue it instead
                log.exception("inline decision failed; queueing the submission for a worker")
            else:
                if content.content_type is ContentType.URL and fetch_enabled and analysis.verdict.outcome == "allow":
                    return self._store_pending(item, content, idempotency_key, fingerprint)
                return self._store_decided(item, content, analysis, idempotency_key, fingerprint, actor)
        return self._store_pending(item, content, idempotency_key, fingerprint)

    def _content(self, payload: Payload) -> Content:
        if payload.data is not None:
            content = Content.from_bytes(payload.data, self.settings)
        elif payload.text is not None:
            content = Content.from_text(payload.text, self.settings)
        else:
            canonical_url(payload.url or "")  # hostile or malformed URLs are refused here, with their code
            content = Content.from_url(payload.url or "", self.settings)
        if content.content_type is ContentType.OTHER:
            from bastion.errors import UnsupportedContent

            raise UnsupportedContent("the upload is not an image, video, PDF or text Bastion can analyse",
                                     code="unsupported_content")
        return content

    def _decide_inline(self, content: Content, fetch_enabled: bool) -> bool:
        if content.content_type is ContentType.URL:
            return True  # the URL's own signals; a fetch (if enabled) follows in a worker unless they decide it
        return content.content_type in (ContentType.IMAGE, ContentType.TEXT) and (
            (content.size or 0) <= self.settings.inline_decision_bytes
        )

    def _store_decided(self, item: ContentItem, content: Content, analysis: Any, key: str | None, fingerprint: str,
                       actor: str) -> SubmitResult:
        def write(s: Any) -> dict[str, Any]:
            if analysis.verdict.outcome in REVIEWED_OUTCOMES and content.content_type is not ContentType.URL:
                s.add(ContentBlob(content_id=item.id, data=content.data))  # the reviewer will need to see it
            decision = self.pipeline.record(s, item, analysis, actor="policy",
                                            data=None if content.content_type is ContentType.URL else content.data)
            return {**content_summary(item), "decision": decision_dict(decision)}

        self.pipeline.prepare(item, analysis)  # decided before it is inserted: one INSERT, no UPDATE
        return self._insert(item, key, fingerprint, write)

    def _store_pending(self, item: ContentItem, content: Content, key: str | None, fingerprint: str) -> SubmitResult:
        def write(s: Any) -> dict[str, Any]:
            if content.content_type is not ContentType.URL:
                s.add(ContentBlob(content_id=item.id, data=content.data))
            JobQueue.enqueue(s, PROCESS_JOB, organisation_id=item.organisation_id, content_id=item.id)
            return self._item_dict(s, item)

        return self._insert(item, key, fingerprint, write)

    def _insert(self, item: ContentItem, key: str | None, fingerprint: str,
                write: Callable[[Any], dict[str, Any]]) -> SubmitResult:
        """Insert ``item`` and what ``write`` adds in one transaction. A concurrent request with the same
        Idempotency-Key loses on the key's unique index and answers with the winner's item."""
        try:
            with self.db.session() as s:
                s.add(item)
                s.flush()
                out = write(s)
        except IntegrityError:
            replay = self._replay(item.organisation_id, key, fingerprint) if key else None
            if replay is None:
                raise
            return replay
        return SubmitResult(out, True)

    def _replay(self, organisation_id: int, key: str, fingerprint: str) -> SubmitResult | None:
        with self.db.session() as s:
            item = s.scalar(select(ContentItem).where(ContentItem.organisation_id == organisation_id,
                                                      ContentItem.idempotency_key == key))
            if item is None:
                return None
            if item.request_fingerprint != fingerprint:
                raise Conflict("this Idempotency-Key was used for a different request",
                               code="idempotency_key_reused", content_id=item.id)
            return SubmitResult(self._item_dict(s, item), False)

    # -- reading ------------------------------------------------------------------------------------------------------
    def get(self, organisation_id: int, content_id: int, *, history: bool = True) -> dict[str, Any]:
        """A submission with its decision in force and (``history``) every earlier version. Another organisation's
        submission is not found."""
        with self.db.session() as s:
            item = s.get(ContentItem, content_id)
            if item is None or item.organisation_id != organisation_id:
                raise NotFound(f"no content {content_id}", code="content_not_found")
            return self._item_dict(s, item, history=history)

    def find(self, organisation_id: int, external_id: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            items = s.scalars(select(ContentItem).where(ContentItem.organisation_id == organisation_id,
                                                        ContentItem.external_id == external_id)
                              .order_by(ContentItem.id)).all()
            return [self._item_dict(s, i, history=False) for i in items]

    @staticmethod
    def _item_dict(s: Any, item: ContentItem, *, history: bool = False) -> dict[str, Any]:
        out = content_summary(item)
        decisions = s.scalars(select(Decision).where(Decision.content_id == item.id)
                              .order_by(Decision.version.desc())).all()
        out["decision"] = decision_dict(decisions[0]) if decisions else None
        if history:
            out["signals"] = list(item.signals or [])
            out["history"] = [decision_dict(d) for d in decisions[1:]]
        return out
