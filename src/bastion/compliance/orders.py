"""Removal orders and referrals from authorities: received, timed, executed or answered, confirmed.

A **removal order** (TCO Art. 3) binds: the platform acts within one hour of receipt. A **referral** does not: the
platform assesses the content against its own terms. Both name the content by the platform's content id (the
``external_id`` it submitted) or by URL; every one must resolve to a submission of the platform, or nothing is
stored (404 ``unknown_content``).

The path of an order (every step audited, and reported as a webhook event):

1. **received** (:meth:`OrderService.receive`, by API or a signed file): validated, stored with its targets; the
   clock starts at ``received_at``; ``order.received`` to the platform.
2. Binding orders of an organisation in ``auto`` mode (the default) are **executed** in the same transaction: each
   target gets a new decision version ``remove`` (``decision.changed``) and the order ``order.executed``. In
   ``review`` mode, and for every referral, each target becomes a review item (binding orders: the escalation
   queue, with the deadline, which puts them on top); a lead executes from the order page, or a reviewer decides
   the item (:func:`review_decided`).
3. **confirmed** (:meth:`OrderService.confirm`, right after execution or by the worker's sweep): the content's
   hashes are banked (re-uploads are then removed by policy), and the confirmation (what, when, where) is stored for
   the authority to read and sent as ``order.confirmed`` to the authority's own webhooks (signed as every event).

"Cannot comply" (TCO Art. 3(7) and (8): force majeure or de facto impossibility, manifest errors, insufficient
information) stops the clock; the authority's clarification restarts it (a full hour from the clarification) and
the order goes through step 2 again. Alerts at 30, 45 and 55 minutes of a running clock go to the platform's leads
(``order.alert``, and the console), by :meth:`OrderService.sweep`, which takes the time as an argument so tests use
a controllable clock.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bastion import audit
from bastion.compliance.authorities import ORDERING_KINDS, accepts, authority_of, validate_member_state
from bastion.errors import Conflict, Forbidden, InvalidInput, NotFound
from bastion.settings import Settings
from bastion.storage.db import Database
from bastion.storage.models import (
    Authority,
    ContentItem,
    Decision,
    Order,
    OrderTarget,
    Organisation,
    ReviewItem,
    as_utc,
    utcnow,
)

log = logging.getLogger(__name__)

KINDS = ("removal_order", "referral")
MODES = ("auto", "review")
DEADLINE = timedelta(hours=1)
ALERT_MINUTES = (30, 45, 55)
# TCO Art. 3(7): force majeure or de facto impossibility not attributable to the provider; Art. 3(8): manifest
# errors or insufficient information.
CANNOT_COMPLY_REASONS = ("force_majeure", "de_facto_impossibility", "manifest_error", "insufficient_information")
OPEN_STATUSES = ("received", "pending_review")
MAX_TARGETS = 100
MAX_TEXT = 5000
MAX_FUTURE_SKEW = timedelta(minutes=5)
# Labels of the bank entries made from ordered content: an order names no category; "high" severity makes the
# default policy's remove-high-severity-exact rule remove an exact re-upload.
ORDER_LABELS = {"category": "other", "severity": "high"}
_REFERENCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _./:#-]{0,199}$")


def _iso(dt: datetime | None) -> str | None:
    return as_utc(dt).isoformat().replace("+00:00", "Z") if dt is not None else None


def parse_timestamp(value: Any, field: str = "issued_at") -> datetime:
    """An ISO 8601 timestamp with a zone (``Z`` or an offset), as aware UTC; InvalidInput ``invalid_timestamp``."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(
            f"{field} is an ISO 8601 timestamp with a time zone, e.g. 2026-11-26T09:30:00Z",
            code="invalid_timestamp",
            field=field,
        )
    text = value.strip()
    try:
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise InvalidInput(
            f"{field} {text[:60]!r} is not an ISO 8601 timestamp", code="invalid_timestamp", field=field
        ) from None
    if dt.tzinfo is None:
        raise InvalidInput(f"{field} needs a time zone (Z or +hh:mm)", code="invalid_timestamp", field=field)
    return as_utc(dt)


def _text(data: dict[str, Any], key: str, *, required: bool = True, limit: int = MAX_TEXT) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidInput(f"{key} is required (text)", code=f"{key}_required")
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(f"{key} is at most {limit} characters", code=f"{key}_too_long")
    return value


@dataclass(frozen=True)
class OrderRequest:
    """A validated order, before it is stored."""

    platform: str
    kind: str
    reference: str
    issuer: str
    member_state: str
    legal_basis: str
    reasons: str
    issued_at: datetime
    content: list[tuple[str, str]]  # ("content_id" | "url", value)


def validate_order(data: Any, now: datetime) -> OrderRequest:
    """Check an order's fields (API body or signed file); InvalidInput with a code per problem."""
    if not isinstance(data, dict):
        raise InvalidInput("an order is a JSON object", code="invalid_order")
    kind = data.get("kind")
    if kind not in KINDS:
        raise InvalidInput(f"kind is one of {', '.join(KINDS)}", code="invalid_order_kind")
    platform = data.get("platform")
    if isinstance(platform, int):
        platform = str(platform)
    if not isinstance(platform, str) or not platform.strip():
        raise InvalidInput("platform (the organisation's name) is required", code="platform_required")
    reference = _text(data, "reference", limit=200)
    if not _REFERENCE_RE.match(reference):
        raise InvalidInput("reference is 1-200 letters, digits, spaces or _ . / : # -", code="invalid_reference")
    issued_at = parse_timestamp(data.get("issued_at"))
    if issued_at > now + MAX_FUTURE_SKEW:
        raise InvalidInput("issued_at is in the future", code="invalid_timestamp", field="issued_at")
    try:
        member_state = validate_member_state(data.get("member_state") or "")
    except InvalidInput as exc:
        raise InvalidInput(exc.message, code="invalid_member_state") from None
    content = data.get("content")
    if not isinstance(content, list) or not content:
        raise InvalidInput(
            'content lists what the order is about: [{"content_id": ...} or {"url": ...}]', code="content_required"
        )
    if len(content) > MAX_TARGETS:
        raise InvalidInput(f"an order names at most {MAX_TARGETS} pieces of content", code="too_many_targets")
    refs: list[tuple[str, str]] = []
    for entry in content:
        if isinstance(entry, dict) and len(entry) == 1:
            ((key, value),) = entry.items()
            if key in ("content_id", "url") and isinstance(value, str) and value.strip() and len(value) <= 2000:
                if (key, value.strip()) not in refs:
                    refs.append((key, value.strip()))
                continue
        raise InvalidInput(
            'each content entry is {"content_id": "..."} or {"url": "..."}', code="invalid_content_reference"
        )
    return OrderRequest(
        platform=platform.strip(),
        kind=kind,
        reference=reference,
        issuer=_text(data, "issuer", limit=200),
        member_state=member_state,
        legal_basis=_text(data, "legal_basis"),
        reasons=_text(data, "reasons"),
        issued_at=issued_at,
        content=refs,
    )


def organisation_mode(org: Organisation | None) -> str:
    mode = ((org.config or {}).get("orders") or {}).get("mode") if org is not None else None
    return mode if mode in MODES else "auto"


def _latest(s: Session, content_id: int) -> Decision | None:
    return s.scalars(
        select(Decision).where(Decision.content_id == content_id).order_by(Decision.version.desc()).limit(1)
    ).first()


def _emit(s: Session, organisation_id: int, event_type: str, payload: dict[str, Any]) -> None:
    from bastion.webhooks import emit

    emit(s, organisation_id, event_type, payload)


class OrderService:
    """Orders as an authority and as a platform see them. ``clock`` gives "now" (tests pass a controllable one)."""

    def __init__(self, db: Database, settings: Settings, *, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock or utcnow

    # -- receiving ----------------------------------------------------------------------------------------------------
    def receive(self, authority_organisation_id: int, data: Any, *, actor: str, channel: str = "api") -> dict[str, Any]:
        """Store an order from the authority organisation ``authority_organisation_id`` and act on it (module
        docstring). Errors, with nothing stored: ``not_an_authority`` (403), ``invalid_*`` (400),
        ``platform_not_found`` (404: no such platform, or it does not accept this authority), ``unknown_content``
        (404, with the references not found), ``duplicate_order`` (409, with the existing order's id)."""
        now = self.clock()
        req = validate_order(data, now)
        try:
            with self.db.session() as s:
                authority = authority_of(s, authority_organisation_id)
                if authority is None or authority.kind not in ORDERING_KINDS:
                    raise Forbidden("only an authority's key sends orders", code="not_an_authority")
                platform = self._platform(s, authority, req.platform)
                dup = s.scalar(
                    select(Order.id).where(Order.authority_id == authority.id, Order.reference == req.reference)
                )
                if dup is not None:
                    raise Conflict(
                        f"order {req.reference!r} was already received (order {dup})",
                        code="duplicate_order",
                        order_id=dup,
                    )
                items = self._resolve(s, platform.id, req.content)
                order = Order(
                    authority_id=authority.id,
                    organisation_id=platform.id,
                    kind=req.kind,
                    reference=req.reference,
                    issuer=req.issuer,
                    member_state=req.member_state,
                    legal_basis=req.legal_basis,
                    reasons=req.reasons,
                    issued_at=req.issued_at,
                    received_at=now,
                    channel=channel,
                    status="received",
                    alerts=[],
                    confirmation={},
                    created_by=actor,
                    cannot_comply_explanation="",
                    clarification="",
                )
                if req.kind == "removal_order":
                    order.clock_started_at, order.deadline_at = now, now + DEADLINE
                s.add(order)
                s.flush()
                targets = [
                    OrderTarget(
                        order_id=order.id,
                        organisation_id=platform.id,
                        reference=ref,
                        content_id=item.id,
                        status="pending",
                    )
                    for ref, item in items
                ]
                s.add_all(targets)
                s.flush()
                audit.append(
                    s,
                    actor,
                    "order_received",
                    f"order:{order.id}",
                    {
                        "kind": order.kind,
                        "reference": order.reference,
                        "authority_id": authority.id,
                        "channel": channel,
                        "content": [t.reference for t in targets][:20],
                        "deadline_at": _iso(order.deadline_at),
                    },
                    organisation_id=platform.id,
                )
                _emit(s, platform.id, "order.received", {"order": _order_dict(s, order)})
                self._dispatch(s, order, platform, now, actor)
                order_id, executed = order.id, order.status == "executed"
        except IntegrityError as exc:  # a concurrent duplicate
            raise Conflict(f"order {req.reference!r} was already received", code="duplicate_order") from exc
        if executed:
            self.confirm(order_id)
        return self.get_for_authority(authority_organisation_id, order_id)

    @staticmethod
    def _platform(s: Session, authority: Authority, ref: str) -> Organisation:
        org = (
            s.get(Organisation, int(ref))
            if ref.isdigit()
            else s.scalar(select(Organisation).where(Organisation.name == ref))
        )
        if org is None or not accepts(s, authority.id, org.id):  # the same answer: existence does not leak
            raise NotFound(f"no platform {ref!r} accepts orders from this authority", code="platform_not_found")
        return org

    @staticmethod
    def _resolve(s: Session, platform_id: int, refs: list[tuple[str, str]]) -> list[tuple[str, ContentItem]]:
        found, missing, seen = [], [], set()
        for key, value in refs:
            column = ContentItem.external_id if key == "content_id" else ContentItem.url
            item = s.scalars(
                select(ContentItem)
                .where(ContentItem.organisation_id == platform_id, column == value)
                .order_by(ContentItem.id.desc())
                .limit(1)
            ).first()
            if item is None:
                missing.append(value)
            elif item.id not in seen:
                seen.add(item.id)
                found.append((value, item))
        if missing:
            raise NotFound(
                f"the platform has no content {', '.join(repr(m[:100]) for m in missing[:5])}",
                code="unknown_content",
                missing=missing[:MAX_TARGETS],
            )
        return found

    def _dispatch(self, s: Session, order: Order, platform: Organisation, now: datetime, actor: str) -> None:
        """Execute at once (binding, ``auto``) or put each target in front of people."""
        from bastion.review.routing import ESCALATIONS
        from bastion.review.service import enqueue

        targets = _targets(s, order.id)
        if order.kind == "removal_order" and organisation_mode(platform) == "auto":
            self._execute(s, order, targets, self.clock(), actor, automated=True)  # the time of the action itself
            return
        for t in targets:
            item = s.get(ContentItem, t.content_id)
            assert item is not None
            if order.kind == "removal_order":
                row = enqueue(s, item, None, queue=ESCALATIONS, deadline_at=order.deadline_at, severity="high")
            else:
                row = enqueue(s, item, None)
            t.review_item_id = row.id
        order.status = "pending_review"
        s.flush()

    def _execute(
        self, s: Session, order: Order, targets: list[OrderTarget], now: datetime, actor: str, *, automated: bool
    ) -> None:
        """Remove every pending target (a new decision version each) and close their review items."""
        from bastion.decisions.pipeline import content_summary, decision_dict

        authority = s.get(Authority, order.authority_id)
        for t in targets:
            if t.status != "pending":
                continue
            item = s.get(ContentItem, t.content_id)
            assert item is not None
            previous = _latest(s, item.id)
            d = Decision(
                content_id=item.id,
                organisation_id=item.organisation_id,
                version=(previous.version + 1) if previous else 1,
                outcome="remove",
                restrict_in=[],
                rule=None,
                policy_version=previous.policy_version if previous else None,
                automated=automated,
                actor=actor,
                reason=f"removal order {order.reference} ({order.legal_basis[:200]})"[:2000],
                evidence={
                    "order_id": order.id,
                    "order_reference": order.reference,
                    "authority_id": order.authority_id,
                    "member_state": authority.member_state if authority else order.member_state,
                    "previous": {"version": previous.version, "outcome": previous.outcome} if previous else None,
                },
                created_at=now,
            )
            s.add(d)
            s.flush()
            if item.status != "decided":
                item.status, item.decided_at = "decided", now
            t.status, t.decision_id, t.actioned_at = "removed", d.id, now
            audit.append(
                s,
                actor,
                "decision_changed",
                f"content:{item.id}",
                {
                    "version": d.version,
                    "outcome": "remove",
                    "previous": previous.outcome if previous else None,
                    "order_id": order.id,
                },
                organisation_id=item.organisation_id,
            )
            _emit(
                s,
                item.organisation_id,
                "decision.changed",
                {
                    "content": content_summary(item),
                    "decision": decision_dict(d),
                    "previous_outcome": previous.outcome if previous else None,
                    "reinstated": False,
                    "order_id": order.id,
                },
            )
            if t.review_item_id:
                s.execute(
                    update(ReviewItem)
                    .where(ReviewItem.id == t.review_item_id, ReviewItem.status.in_(("open", "leased")))
                    .values(status="cancelled", done_at=now, lease_expires_at=None)
                    .execution_options(synchronize_session=False)
                )
        self._close(s, order, now, actor)

    @staticmethod
    def _close(s: Session, order: Order, now: datetime, actor: str) -> None:
        order.status = "executed" if order.kind == "removal_order" else "assessed"
        order.executed_at = now
        s.flush()
        targets = _targets(s, order.id)
        audit.append(
            s,
            actor,
            f"order_{order.status}",
            f"order:{order.id}",
            {
                "reference": order.reference,
                "targets": {t.reference[:200]: t.status for t in targets},
                "within_deadline": order.deadline_at is None or now <= as_utc(order.deadline_at),
            },
            organisation_id=order.organisation_id,
        )
        _emit(s, order.organisation_id, "order.executed", {"order": _order_dict(s, order)})

    # -- confirming ---------------------------------------------------------------------------------------------------
    def confirm(self, order_id: int) -> bool:
        """Bank the removed content's hashes, then store and send the confirmation (once). True if it confirmed."""
        with self.db.session() as s:
            order = s.get(Order, order_id)
            if order is None or order.confirmed_at is not None or order.status not in ("executed", "assessed"):
                return False
            org_id = order.organisation_id
            todo = [
                (t.id, t.content_id) for t in _targets(s, order_id) if t.status == "removed" and t.bank_entry_id is None
            ]
            signals = {
                cid: (list(i.signals or []), i.content_type)
                for cid, i in ((cid, s.get(ContentItem, cid)) for _, cid in todo)
                if i is not None
            }
        banked: dict[int, int] = {}
        errors: list[str] = []
        for target_id, content_id in todo:
            sigs, content_type = signals.get(content_id, ([], None))
            try:
                entry_id = self._bank(org_id, order_id, content_id, sigs, content_type)
            except Exception as exc:  # noqa: BLE001 - the confirmation says what could not be banked
                log.warning("banking an order's content failed", extra={"order": order_id, "content": content_id})
                errors.append(f"content {content_id}: {exc}")
                continue
            if entry_id is not None:
                banked[target_id] = entry_id
        now = self.clock()
        with self.db.session() as s:
            order = s.get(Order, order_id, with_for_update=s.get_bind().dialect.name == "postgresql")
            if order is None or order.confirmed_at is not None:
                return False
            targets = _targets(s, order_id)
            for t in targets:
                if t.id in banked:
                    t.bank_entry_id = banked[t.id]
            order.confirmed_at = now
            order.confirmation = {
                "status": order.status,
                "executed_at": _iso(order.executed_at),
                "confirmed_at": _iso(now),
                "within_deadline": order.deadline_at is None or as_utc(order.executed_at) <= as_utc(order.deadline_at),
                "actions": [
                    {
                        "content": t.reference,
                        "action": t.status,
                        "at": _iso(t.actioned_at),
                        "where": "the platform's service, all jurisdictions" if t.status == "removed" else None,
                        "hashes_banked": t.bank_entry_id is not None,
                    }
                    for t in targets
                ],
                "banking_errors": errors,
            }
            s.flush()
            audit.append(
                s,
                "system",
                "order_confirmed",
                f"order:{order.id}",
                {"reference": order.reference, "banked": sorted(banked.values())},
                organisation_id=order.organisation_id,
            )
            authority = s.get(Authority, order.authority_id)
            if authority is not None:
                _emit(s, authority.organisation_id, "order.confirmed", {"order": _order_dict(s, order)})
        return True

    def _bank(
        self, org_id: int, order_id: int, content_id: int, signals: list[dict[str, Any]], content_type: str | None
    ) -> int | None:
        from bastion.banks.service import BankService
        from bastion.signals.base import Signal

        sigs = [
            Signal(d["type"], d["value"], d.get("quality")) for d in signals if d.get("type") not in ("text_embedding",)
        ]
        if not sigs:
            return None
        svc = BankService(self.db, f"order:{order_id}", organisation_id=org_id)
        bank = order_bank_name(org_id)
        try:
            svc.get_bank(bank, writable=True)
        except NotFound:
            try:
                svc.create_bank(
                    bank, description="Content removed under authorities' orders (hashes only)", created_by="orders"
                )
            except Conflict as exc:
                if exc.code != "bank_exists":
                    raise
        try:
            entry = svc.add_entry(
                bank,
                sigs,
                ORDER_LABELS,
                source="authority_order",
                note=f"order {order_id}",
                added_by=f"order:{order_id}",
                origin=f"content:{content_id}",
                content_type=content_type,
            )
            return entry.id
        except Conflict as exc:
            if exc.code != "already_banked":
                raise
            return int(exc.details["entry_id"])

    # -- the platform's answers ---------------------------------------------------------------------------------------
    def execute(self, organisation_id: int, order_id: int, *, actor: str) -> dict[str, Any]:
        """A lead executes an order waiting for review (all its pending targets removed)."""
        now = self.clock()
        with self.db.session() as s:
            order = self._platform_order(s, organisation_id, order_id, lock=True)
            if order.status not in OPEN_STATUSES:
                raise Conflict(f"this order is {order.status}; only an open order is executed", code="order_not_open")
            self._execute(s, order, _targets(s, order.id), now, actor, automated=False)
        self.confirm(order_id)
        return self.get_for_platform(organisation_id, order_id)

    def cannot_comply(
        self, organisation_id: int, order_id: int, reason: str, explanation: str, *, actor: str
    ) -> dict[str, Any]:
        """The platform cannot comply (one of :data:`CANNOT_COMPLY_REASONS`): the clock stops until clarified."""
        if reason not in CANNOT_COMPLY_REASONS:
            raise InvalidInput(
                f"reason is one of {', '.join(CANNOT_COMPLY_REASONS)}",
                code="invalid_reason",
                allowed=list(CANNOT_COMPLY_REASONS),
            )
        explanation = (explanation or "").strip()
        if not explanation:
            raise InvalidInput("say why (the authority reads it)", code="explanation_required")
        if len(explanation) > MAX_TEXT:
            raise InvalidInput(f"an explanation is at most {MAX_TEXT} characters", code="explanation_too_long")
        now = self.clock()
        with self.db.session() as s:
            order = self._platform_order(s, organisation_id, order_id, lock=True)
            if order.status not in OPEN_STATUSES:
                raise Conflict(
                    f"this order is {order.status}; only an open order is answered 'cannot comply'",
                    code="order_not_open",
                )
            order.status, order.cannot_comply_reason = "cannot_comply", reason
            order.cannot_comply_explanation, order.cannot_comply_at = explanation, now
            for t in _targets(s, order.id):
                if t.review_item_id:
                    s.execute(
                        update(ReviewItem)
                        .where(ReviewItem.id == t.review_item_id, ReviewItem.status.in_(("open", "leased")))
                        .values(status="cancelled", done_at=now, lease_expires_at=None)
                        .execution_options(synchronize_session=False)
                    )
            s.flush()
            audit.append(
                s,
                actor,
                "order_cannot_comply",
                f"order:{order.id}",
                {
                    "reason": reason,
                    "explanation": explanation[:500],
                    "minutes_on_clock": _minutes(order.clock_started_at, now),
                },
                organisation_id=order.organisation_id,
            )
            payload = {"order": _order_dict(s, order)}
            _emit(s, order.organisation_id, "order.cannot_comply", payload)
            authority = s.get(Authority, order.authority_id)
            if authority is not None:
                _emit(s, authority.organisation_id, "order.cannot_comply", payload)
        return self.get_for_platform(organisation_id, order_id)

    # -- the authority's answer ---------------------------------------------------------------------------------------
    def clarify(
        self, authority_organisation_id: int, order_id: int, clarification: str, *, actor: str
    ) -> dict[str, Any]:
        """The authority clarifies an order answered 'cannot comply': the clock restarts (a full hour from now)
        and the order is executed or reviewed again, as on receipt."""
        clarification = (clarification or "").strip()
        if not clarification:
            raise InvalidInput("clarification is required (text)", code="clarification_required")
        if len(clarification) > MAX_TEXT:
            raise InvalidInput(f"a clarification is at most {MAX_TEXT} characters", code="clarification_too_long")
        now = self.clock()
        with self.db.session() as s:
            order = self._authority_order(s, authority_organisation_id, order_id, lock=True)
            if order.status != "cannot_comply":
                raise Conflict(
                    f"this order is {order.status}; only an order answered 'cannot comply' is clarified",
                    code="not_awaiting_clarification",
                )
            order.clarification, order.clarified_at = clarification, now
            order.status, order.alerts = "received", []
            if order.kind == "removal_order":
                order.clock_started_at, order.deadline_at = now, now + DEADLINE
            for t in _targets(s, order.id):
                t.review_item_id = None
            s.flush()
            audit.append(
                s,
                actor,
                "order_clarified",
                f"order:{order.id}",
                {"clarification": clarification[:500], "deadline_at": _iso(order.deadline_at)},
                organisation_id=order.organisation_id,
            )
            _emit(s, order.organisation_id, "order.clarified", {"order": _order_dict(s, order)})
            platform = s.get(Organisation, order.organisation_id)
            assert platform is not None
            self._dispatch(s, order, platform, now, actor)
            executed = order.status == "executed"
        if executed:
            self.confirm(order_id)
        return self.get_for_authority(authority_organisation_id, order_id)

    # -- the clock ----------------------------------------------------------------------------------------------------
    def sweep(self, now: datetime | None = None) -> dict[str, int]:
        """One pass of the clock (the worker runs it): alerts due at 30, 45 and 55 minutes of every running clock,
        and confirmations still owed (orders executed by a review decision, or a crash between the steps)."""
        now = now or self.clock()
        alerts = 0
        with self.db.session() as s:
            due = s.scalars(
                select(Order)
                .where(
                    Order.status.in_(OPEN_STATUSES),
                    Order.kind == "removal_order",
                    Order.clock_started_at <= now - timedelta(minutes=ALERT_MINUTES[0]),
                )
                .order_by(Order.id)
                .limit(500)
            ).all()
            for order in due:
                minutes = _minutes(order.clock_started_at, now)
                sent = set(order.alerts or [])
                new = [m for m in ALERT_MINUTES if m <= minutes and m not in sent]
                if not new:
                    continue
                order.alerts = sorted(sent | set(new))
                mark = max(new)
                s.flush()
                audit.append(
                    s,
                    "system",
                    "order_alert",
                    f"order:{order.id}",
                    {"minutes": mark, "deadline_at": _iso(order.deadline_at)},
                    organisation_id=order.organisation_id,
                )
                _emit(
                    s,
                    order.organisation_id,
                    "order.alert",
                    {"minutes": mark, "minutes_left": max(0, 60 - mark), "order": _order_dict(s, order, now)},
                )
                alerts += 1
            owed = list(
                s.scalars(
                    select(Order.id)
                    .where(Order.status.in_(("executed", "assessed")), Order.confirmed_at.is_(None))
                    .limit(500)
                )
            )
        confirmed = sum(1 for order_id in owed if self.confirm(order_id))
        return {"alerts": alerts, "confirmed": confirmed}

    # -- reading ------------------------------------------------------------------------------------------------------
    def _platform_order(self, s: Session, organisation_id: int, order_id: int, *, lock: bool = False) -> Order:
        order = (
            s.get(Order, order_id, with_for_update=lock and s.get_bind().dialect.name == "postgresql")
            if 0 < order_id < 2**63
            else None
        )
        if order is None or order.organisation_id != organisation_id:
            raise NotFound(f"no order {order_id}", code="order_not_found")
        return order

    def _authority_order(
        self, s: Session, authority_organisation_id: int, order_id: int, *, lock: bool = False
    ) -> Order:
        authority = authority_of(s, authority_organisation_id)
        order = (
            s.get(Order, order_id, with_for_update=lock and s.get_bind().dialect.name == "postgresql")
            if 0 < order_id < 2**63
            else None
        )
        if order is None or authority is None or order.authority_id != authority.id:
            raise NotFound(f"no order {order_id}", code="order_not_found")
        return order

    def get_for_platform(self, organisation_id: int, order_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            return _order_dict(s, self._platform_order(s, organisation_id, order_id), self.clock())

    def get_for_authority(self, authority_organisation_id: int, order_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            return _order_dict(s, self._authority_order(s, authority_organisation_id, order_id), self.clock())

    def get(self, organisation_id: int, order_id: int) -> dict[str, Any]:
        """The order as the caller's organisation sees it: the authority that sent it, or the platform it was sent
        to (anyone else: NotFound ``order_not_found``)."""
        with self.db.session() as s:
            order = s.get(Order, order_id) if 0 < order_id < 2**63 else None
            authority = authority_of(s, organisation_id)
            mine = order is not None and (
                order.organisation_id == organisation_id
                or (authority is not None and order.authority_id == authority.id)
            )
            if order is None or not mine:
                raise NotFound(f"no order {order_id}", code="order_not_found")
            return _order_dict(s, order, self.clock())

    def list(self, organisation_id: int, *, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The caller's orders (sent, for an authority; received, for a platform), open clocks first."""
        with self.db.session() as s:
            authority = authority_of(s, organisation_id)
            q = select(Order)
            q = (
                q.where(Order.authority_id == authority.id)
                if authority is not None
                else q.where(Order.organisation_id == organisation_id)
            )
            if status:
                q = q.where(Order.status == status)
            open_first = func.coalesce(Order.deadline_at, Order.received_at)
            rows = s.scalars(
                q.order_by(or_(Order.status.in_(OPEN_STATUSES)).desc(), open_first, Order.id.desc()).limit(
                    max(1, min(limit, 1000))
                )
            ).all()
            now = self.clock()
            return [_order_dict(s, o, now, targets=False) for o in rows]


def _order_dict(s: Session, order: Order, now: datetime | None = None, *, targets: bool = True) -> dict[str, Any]:
    now = now or utcnow()
    authority = s.get(Authority, order.authority_id)
    auth_org = s.get(Organisation, authority.organisation_id) if authority else None
    platform = s.get(Organisation, order.organisation_id)
    running = order.kind == "removal_order" and order.status in OPEN_STATUSES and order.deadline_at is not None
    out: dict[str, Any] = {
        "id": order.id,
        "kind": order.kind,
        "reference": order.reference,
        "status": order.status,
        "authority": {
            "name": auth_org.name if auth_org else None,
            "kind": authority.kind if authority else None,
            "member_state": authority.member_state if authority else None,
        },
        "platform": platform.name if platform else None,
        "issuer": order.issuer,
        "member_state": order.member_state,
        "legal_basis": order.legal_basis,
        "reasons": order.reasons,
        "channel": order.channel,
        "issued_at": _iso(order.issued_at),
        "received_at": _iso(order.received_at),
        "clock_started_at": _iso(order.clock_started_at),
        "deadline_at": _iso(order.deadline_at),
        "clock": "running" if running else ("stopped" if order.status == "cannot_comply" else "none"),
        "seconds_left": round((as_utc(order.deadline_at) - as_utc(now)).total_seconds()) if running else None,
        "alerts": list(order.alerts or []),
        "cannot_comply": {
            "reason": order.cannot_comply_reason,
            "explanation": order.cannot_comply_explanation,
            "at": _iso(order.cannot_comply_at),
        }
        if order.cannot_comply_at
        else None,
        "clarification": {"text": order.clarification, "at": _iso(order.clarified_at)} if order.clarified_at else None,
        "executed_at": _iso(order.executed_at),
        "confirmed_at": _iso(order.confirmed_at),
        "confirmation": dict(order.confirmation or {}) or None,
    }
    if targets:
        out["content"] = [
            {
                "reference": t.reference,
                "status": t.status,
                "actioned_at": _iso(t.actioned_at),
                "hashes_banked": t.bank_entry_id is not None,
            }
            for t in _targets(s, order.id)
        ]
    return out


def _targets(s: Session, order_id: int) -> list[OrderTarget]:
    return list(s.scalars(select(OrderTarget).where(OrderTarget.order_id == order_id).order_by(OrderTarget.id)))


def _minutes(start: datetime | None, now: datetime) -> float:
    return (as_utc(now) - as_utc(start)).total_seconds() / 60 if start is not None else 0.0


def order_bank_name(organisation_id: int) -> str:
    """The bank an organisation's ordered content is hashed into (one per organisation, created on first use)."""
    return f"authority-orders-{organisation_id}"


def set_mode(db: Database, organisation: str | int, mode: str, *, actor: str) -> str:
    """Binding orders to ``organisation`` execute at once (``auto``) or wait for a lead (``review``)."""
    from bastion.accounts.service import AccountService

    if mode not in MODES:
        raise InvalidInput(f"mode is one of {', '.join(MODES)}", code="invalid_order_mode")
    with db.session() as s:
        org = AccountService._org(s, organisation)
        config = dict(org.config or {})
        config["orders"] = {**(config.get("orders") or {}), "mode": mode}
        org.config = config
        audit.append(s, actor, "order_mode_set", f"organisation:{org.id}", {"mode": mode}, org.id)
    return mode


def review_decided(s: Session, row: ReviewItem, decision: Decision | None, actor: str) -> None:
    """Called in a review decision's transaction: a target of an order under review gets the decision's outcome;
    a binding order cannot be decided "not violating" (Conflict ``binding_order``: answer 'cannot comply')."""
    targets = list(
        s.scalars(select(OrderTarget).where(OrderTarget.review_item_id == row.id, OrderTarget.status == "pending"))
    )
    if not targets or decision is None:
        return
    now = decision.created_at or utcnow()
    for t in targets:
        order = s.get(Order, t.order_id)
        if order is None or order.status != "pending_review":
            continue
        if order.kind == "removal_order" and decision.outcome not in ("remove", "escalate"):
            raise Conflict(
                "a removal order binds: remove the content, or answer 'cannot comply' on the order's page",
                code="binding_order",
                order_id=order.id,
            )
        t.status = {"remove": "removed", "restrict": "restricted", "escalate": "removed"}.get(decision.outcome, "kept")
        t.decision_id, t.actioned_at = decision.id, now
        s.flush()
        if all(x.status != "pending" for x in s.scalars(select(OrderTarget).where(OrderTarget.order_id == order.id))):
            OrderService._close(s, order, now, actor)


__all__ = [
    "ALERT_MINUTES",
    "CANNOT_COMPLY_REASONS",
    "KINDS",
    "MODES",
    "OrderService",
    "order_bank_name",
    "parse_timestamp",
    "review_decided",
    "set_mode",
    "validate_order",
]


# -- signed files (authorities that cannot call the API) ---------------------------------------------------------------
def import_envelope(db: Database, settings: Settings, envelope: Any) -> dict[str, Any]:
    """Receive the order in a signed file's envelope ``{"authority", "order", "signature"}`` (see
    :func:`bastion.compliance.authorities.sign_envelope`): the signature must verify with the named authority's
    registered key (Forbidden ``invalid_signature`` / ``no_signing_key``), then it is an order like any other."""
    from bastion.compliance.authorities import verify_envelope

    if not isinstance(envelope, dict) or not isinstance(envelope.get("authority"), str):
        raise InvalidInput(
            'a signed order file is {"authority": ..., "order": {...}, "signature": ...}', code="invalid_order_file"
        )
    with db.session() as s:
        org = s.scalar(select(Organisation).where(Organisation.name == envelope["authority"]))
        authority = authority_of(s, org.id) if org is not None else None
        if org is None or authority is None:
            raise NotFound(f"no authority {envelope['authority'][:100]!r}", code="authority_not_found")
        org_id, public_key = org.id, authority.public_key
    verify_envelope(public_key, envelope)
    return OrderService(db, settings).receive(
        org_id, envelope.get("order"), actor=f"file:{envelope['authority']}", channel="file"
    )


def import_file(db: Database, settings: Settings, path: Any) -> dict[str, Any]:
    """Read and receive one signed order file (InvalidInput ``invalid_order_file`` when it is not JSON)."""
    import json
    from pathlib import Path

    try:
        envelope = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"cannot read the order file: {exc}", code="invalid_order_file") from None
    return import_envelope(db, settings, envelope)


def watch_drop_dir(db: Database, settings: Settings) -> int:
    """Import every ``*.json`` in ``BASTION_ORDERS_DROP_DIR``; each moves to ``processed/`` or, refused, to
    ``rejected/``, each beside a ``.result.json`` (the order id, or the error). Returns the files handled."""
    import json
    import os

    from bastion.errors import BastionError

    folder = settings.orders_drop_dir
    if folder is None or not folder.is_dir():
        return 0
    handled = 0
    for path in sorted(folder.glob("*.json")):
        claimed = path.with_suffix(".importing")
        try:
            os.rename(path, claimed)  # atomic: two workers never import one file
        except OSError:
            continue
        try:
            order = import_file(db, settings, claimed)
            dest, note = folder / "processed", {"order_id": order["id"], "status": order["status"]}
        except BastionError as exc:
            dest, note = folder / "rejected", {"error": exc.to_dict()}
        dest.mkdir(exist_ok=True)
        os.replace(claimed, dest / path.name)
        (dest / (path.stem + ".result.json")).write_text(json.dumps(note, indent=2), encoding="utf-8")
        handled += 1
    return handled
