"""Webhooks: registration (URL vetted against SSRF, secret shown once, stored encrypted) and the event outbox.

:func:`emit` is called by whatever makes a decision, inside that decision's transaction: it writes one
:class:`~bastion.storage.models.Event` and one pending :class:`~bastion.storage.models.WebhookDelivery` per enabled
webhook of the organisation subscribed to the event's type. If the transaction rolls back, no event exists and
nothing is ever sent; if it commits, the delivery pass (:mod:`bastion.webhooks.delivery`) sends it, at least once.
"""

from __future__ import annotations

import json
import secrets
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastion import audit
from bastion.errors import Conflict, InvalidInput, NotFound, UrlFetchFailed, UrlSchemeUnsupported
from bastion.intake.fetch import Resolver, _vet
from bastion.settings import Settings, get_settings
from bastion.storage.db import Database
from bastion.storage.models import Event, Organisation, Webhook, WebhookDelivery, utcnow
from bastion.webhooks import crypto

# Types a webhook can subscribe to (an empty subscription list means all of them). "ping" is only ever sent to one
# webhook, by its test route, whatever its subscriptions.
EVENT_TYPES = ("decision.made", "decision.changed", "review.completed", "content.failed")
# authorities (issue 6): orders and their clock, threat-to-life escalations to law enforcement
EVENT_TYPES = (*EVENT_TYPES, "order.received", "order.executed", "order.confirmed", "order.alert",
               "order.cannot_comply", "order.clarified", "escalation.created")
# users' rights (issue 6): the uploader's notice to deliver, a complaint near or past its deadline
EVENT_TYPES = (*EVENT_TYPES, "uploader.notice", "complaint.reminder", "complaint.overdue")
PING = "ping"
SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2000
MAX_WEBHOOKS_PER_ORGANISATION = 25
ALL_PORTS = frozenset(range(1, 65536))
DELIVERY_STATUSES = ("pending", "delivered", "failed")



def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if dt is not None else None


@dataclass(frozen=True)
class WebhookInfo:
    """What may be shown about a webhook: never its secret."""

    id: int
    organisation_id: int
    url: str
    events: list[str]
    enabled: bool
    created_at: datetime
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["created_at"] = _iso(self.created_at)
        return out


@dataclass(frozen=True)
class DeliveryInfo:
    id: int
    webhook_id: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str
    delivered_at: datetime | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k in ("next_attempt_at", "last_attempt_at", "delivered_at", "created_at"):
            out[k] = _iso(out[k])
        if self.status != "pending":
            out["next_attempt_at"] = None
        return out


def _webhook_info(w: Webhook) -> WebhookInfo:
    return WebhookInfo(
        id=w.id,
        organisation_id=w.organisation_id,
        url=w.url,
        events=list(w.events or []),
        enabled=w.enabled,
        created_at=w.created_at,
        created_by=w.created_by,
    )


def _delivery_info(d: WebhookDelivery, e: Event) -> DeliveryInfo:
    return DeliveryInfo(
        id=d.id,
        webhook_id=d.webhook_id,
        event_id=e.event_id,
        event_type=e.type,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        last_attempt_at=d.last_attempt_at,
        last_status=d.last_status,
        last_error=d.last_error,
        delivered_at=d.delivered_at,
        created_at=e.created_at,
    )


# secrets: the encrypted blob holds the current secret and, for a while after a rotation, the previous one


def _seal(settings: Settings, current: str, previous: str | None = None, previous_until: datetime | None = None) -> str:
    doc: dict[str, Any] = {"v": 1, "current": current}
    if previous and previous_until:
        doc["previous"] = previous
        doc["previous_until"] = previous_until.astimezone(UTC).timestamp()
    return crypto.encrypt(settings, json.dumps(doc))


def _unseal(settings: Settings, sealed: str) -> dict[str, Any]:
    return json.loads(crypto.decrypt(settings, sealed))


def active_secrets(settings: Settings, sealed: str, now: datetime | None = None) -> list[str]:
    """The secrets a delivery is signed with now: the current one, plus the previous one during its grace period."""
    doc = _unseal(settings, sealed)
    out = [doc["current"]]
    until = doc.get("previous_until")
    if doc.get("previous") and until is not None and (now or utcnow()).timestamp() < float(until):
        out.append(doc["previous"])
    return out


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


# URLs


def _system_resolver(host: str, port: int) -> list[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def vet_url(url: str, settings: Settings, resolver: Resolver | None = None) -> str:
    """``url`` stripped, if Bastion may deliver to it: https (http only with BASTION_WEBHOOK_ALLOW_HTTP), no user
    info, and a host whose every address is public (unless BASTION_WEBHOOK_ALLOW_PRIVATE), resolved now. Delivery
    resolves and checks again before every request (the name may since point elsewhere: DNS rebinding)."""
    url = url.strip()
    if not url or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"a webhook URL is 1-{MAX_URL_LENGTH} characters", code="url_invalid")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme != "https" and not (scheme == "http" and settings.webhook_allow_http):
        raise UrlSchemeUnsupported(
            "webhook URLs must be https://" + (" (http:// is not allowed here)" if scheme == "http" else ""), url=url
        )
    try:
        _vet(
            url,
            resolver=resolver or _system_resolver,
            allow_private=settings.webhook_allow_private,
            allowed_ports=ALL_PORTS,
        )
    except UrlFetchFailed as exc:
        raise InvalidInput(
            f"the webhook URL's host cannot be resolved: {exc.message}", code="url_unresolvable"
        ) from None
    return url


def _validate_events(events: list[str] | tuple[str, ...] | None) -> list[str]:
    chosen = list(events or [])
    unknown = sorted(set(chosen) - set(EVENT_TYPES))
    if unknown:
        raise InvalidInput(
            f"unknown event type(s) {', '.join(unknown)}; allowed: {', '.join(EVENT_TYPES)} (none = all)",
            code="invalid_event_type",
            allowed=list(EVENT_TYPES),
        )
    return [t for t in EVENT_TYPES if t in chosen]


# the outbox


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return _iso(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _add_event(session: Session, organisation_id: int, type: str, payload: dict[str, Any]) -> Event:
    try:
        clean = json.loads(json.dumps(payload, default=_json_default, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"event payload is not JSON: {exc}", code="invalid_event_payload") from None
    if not isinstance(clean, dict):
        raise InvalidInput("an event payload is a JSON object", code="invalid_event_payload")
    event = Event(event_id=str(uuid.uuid4()), organisation_id=organisation_id, type=type, payload=clean)
    session.add(event)
    session.flush()
    return event


def _add_delivery(session: Session, event: Event, webhook_id: int, now: datetime) -> None:
    session.add(WebhookDelivery(event_id=event.id, webhook_id=webhook_id, status="pending", next_attempt_at=now))


def emit(session: Session, organisation_id: int, type: str, payload: dict[str, Any]) -> str:
    """Write an event to the outbox in ``session``'s transaction; returns its ``event_id`` (a UUID string).

    One pending delivery is added per enabled webhook of ``organisation_id`` subscribed to ``type`` (the event is
    written even when none is, so it has an id to report). Nothing is sent here: the delivery pass sends it once the
    transaction has committed; a rollback leaves neither event nor delivery. ``payload`` must be a JSON object
    (datetimes become ISO 8601 strings). Raises InvalidInput (``invalid_event_type``) for an unknown type.
    """
    if type not in EVENT_TYPES:
        raise InvalidInput(f"unknown event type {type!r}", code="invalid_event_type", allowed=list(EVENT_TYPES))
    event = _add_event(session, organisation_id, type, payload)
    now = utcnow()
    hooks = session.execute(
        select(Webhook.id, Webhook.events).where(Webhook.organisation_id == organisation_id, Webhook.enabled)
    ).all()
    for hook_id, subscribed in hooks:
        if not subscribed or type in subscribed:
            _add_delivery(session, event, hook_id, now)
    session.flush()
    return event.event_id


def event_body(event: Event) -> bytes:
    """The JSON body delivered for ``event`` (the same bytes on every attempt)."""
    envelope = {
        "id": event.event_id,
        "type": event.type,
        "created_at": _iso(event.created_at),
        "organisation_id": event.organisation_id,
        "data": event.payload,
    }
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class WebhookService:
    """Manage an organisation's webhooks; every change is audited as ``actor``. Another organisation's webhook or
    delivery is not found."""

    def __init__(
        self, db: Database, actor: str = "cli", settings: Settings | None = None, resolver: Resolver | None = None
    ) -> None:
        self.db = db
        self.actor = actor
        self.settings = settings or get_settings()
        self.resolver = resolver

    @staticmethod
    def _hook(s: Session, organisation_id: int, webhook_id: int) -> Webhook:
        hook = s.get(Webhook, webhook_id)
        if hook is None or hook.organisation_id != organisation_id:
            raise NotFound(f"no webhook {webhook_id}")
        return hook

    def _audit(self, s: Session, action: str, hook: Webhook, details: dict[str, Any] | None = None) -> None:
        audit.append(s, self.actor, action, f"webhook:{hook.id}", details or {}, hook.organisation_id)

    def create(
        self, organisation_id: int, url: str, events: list[str] | tuple[str, ...] | None = None
    ) -> tuple[WebhookInfo, str]:
        """Register ``url``; returns the webhook and its signing secret (``whsec_...``), shown this once."""
        clean_url = vet_url(url, self.settings, self.resolver)
        clean_events = _validate_events(events)
        secret = new_secret()
        sealed = _seal(self.settings, secret)
        with self.db.session() as s:
            if s.get(Organisation, organisation_id) is None:
                raise NotFound(f"no organisation {organisation_id}")
            count = s.scalar(select(func.count(Webhook.id)).where(Webhook.organisation_id == organisation_id)) or 0
            if count >= MAX_WEBHOOKS_PER_ORGANISATION:
                raise Conflict(
                    f"an organisation has at most {MAX_WEBHOOKS_PER_ORGANISATION} webhooks", code="too_many_webhooks"
                )
            hook = Webhook(
                organisation_id=organisation_id,
                url=clean_url,
                secret_encrypted=sealed,
                events=clean_events,
                enabled=True,
                created_by=self.actor,
            )
            s.add(hook)
            s.flush()
            self._audit(s, "webhook_created", hook, {"url": clean_url, "events": clean_events})
            return _webhook_info(hook), secret

    def list(self, organisation_id: int) -> list[WebhookInfo]:
        with self.db.session() as s:
            rows = s.scalars(select(Webhook).where(Webhook.organisation_id == organisation_id).order_by(Webhook.id))
            return [_webhook_info(w) for w in rows]

    def get(self, organisation_id: int, webhook_id: int) -> WebhookInfo:
        with self.db.session() as s:
            return _webhook_info(self._hook(s, organisation_id, webhook_id))

    def update(
        self,
        organisation_id: int,
        webhook_id: int,
        *,
        enabled: bool | None = None,
        events: list[str] | None = None,
    ) -> WebhookInfo:
        """Enable/disable a webhook or change its subscriptions. A disabled webhook gets no new deliveries and its
        pending ones wait (they are sent when it is enabled again)."""
        clean_events = _validate_events(events) if events is not None else None
        with self.db.session() as s:
            hook = self._hook(s, organisation_id, webhook_id)
            changes: dict[str, Any] = {}
            if enabled is not None and enabled != hook.enabled:
                hook.enabled = changes["enabled"] = enabled
            if clean_events is not None and clean_events != list(hook.events or []):
                hook.events = changes["events"] = clean_events
            if changes:
                s.flush()
                self._audit(s, "webhook_updated", hook, changes)
            return _webhook_info(hook)

    def disable(self, organisation_id: int, webhook_id: int) -> WebhookInfo:
        return self.update(organisation_id, webhook_id, enabled=False)

    def enable(self, organisation_id: int, webhook_id: int) -> WebhookInfo:
        return self.update(organisation_id, webhook_id, enabled=True)

    def delete(self, organisation_id: int, webhook_id: int) -> WebhookInfo:
        """Delete a webhook and its deliveries (pending ones are never sent)."""
        with self.db.session() as s:
            hook = self._hook(s, organisation_id, webhook_id)
            info = _webhook_info(hook)
            s.execute(WebhookDelivery.__table__.delete().where(WebhookDelivery.webhook_id == hook.id))
            self._audit(s, "webhook_deleted", hook, {"url": hook.url})
            s.delete(hook)
            return info

    def rotate_secret(
        self, organisation_id: int, webhook_id: int, keep_previous_seconds: int = 0
    ) -> tuple[WebhookInfo, str]:
        """A new signing secret (returned, shown this once). For ``keep_previous_seconds`` after the rotation
        deliveries carry a second ``v1=`` signature made with the old secret, so receivers can switch over."""
        if not 0 <= keep_previous_seconds <= 7 * 86400:
            raise InvalidInput("keep_previous_seconds is 0 to 604800 (a week)", code="invalid_grace_period")
        secret = new_secret()
        with self.db.session() as s:
            hook = self._hook(s, organisation_id, webhook_id)
            previous = _unseal(self.settings, hook.secret_encrypted)["current"] if keep_previous_seconds else None
            until = utcnow() + timedelta(seconds=keep_previous_seconds) if keep_previous_seconds else None
            hook.secret_encrypted = _seal(self.settings, secret, previous, until)
            s.flush()
            self._audit(s, "webhook_secret_rotated", hook, {"keep_previous_seconds": keep_previous_seconds})
            return _webhook_info(hook), secret

    def send_test(self, organisation_id: int, webhook_id: int) -> str:
        """Queue a ``ping`` event for this webhook alone (whatever its event types); returns the event id. A
        disabled webhook is refused (``webhook_disabled``): nothing would be sent until it is enabled."""
        with self.db.session() as s:
            hook = self._hook(s, organisation_id, webhook_id)
            if not hook.enabled:
                raise Conflict(f"webhook {webhook_id} is disabled: enable it first", code="webhook_disabled")
            event = _add_event(s, organisation_id, PING, {"webhook_id": hook.id})
            _add_delivery(s, event, hook.id, utcnow())
            s.flush()
            self._audit(s, "webhook_test_sent", hook, {"event_id": event.event_id})
            return event.event_id

    def list_deliveries(
        self,
        organisation_id: int,
        webhook_id: int,
        *,
        status: str | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[DeliveryInfo]:
        """A webhook's deliveries, newest first (``before_id`` pages on)."""
        if status is not None and status not in DELIVERY_STATUSES:
            raise InvalidInput(f"status is one of {', '.join(DELIVERY_STATUSES)}", code="invalid_status")
        if not 1 <= limit <= 500:
            raise InvalidInput("limit is 1 to 500", code="invalid_limit")
        with self.db.session() as s:
            self._hook(s, organisation_id, webhook_id)
            q = (
                select(WebhookDelivery, Event)
                .join(Event, Event.id == WebhookDelivery.event_id)
                .where(WebhookDelivery.webhook_id == webhook_id)
            )
            if status is not None:
                q = q.where(WebhookDelivery.status == status)
            if before_id is not None:
                q = q.where(WebhookDelivery.id < before_id)
            rows = s.execute(q.order_by(WebhookDelivery.id.desc()).limit(limit)).all()
            return [_delivery_info(d, e) for d, e in rows]

    def redeliver(self, organisation_id: int, delivery_id: int, *, webhook_id: int | None = None) -> DeliveryInfo:
        """Send a failed (or delivered) delivery again: back to pending, attempts reset, due now. The event and its
        id are unchanged, so a receiver that already processed it can recognise it."""
        with self.db.session() as s:
            row = s.execute(
                select(WebhookDelivery, Event, Webhook)
                .join(Event, Event.id == WebhookDelivery.event_id)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.id == delivery_id)
            ).first()
            if (
                row is None
                or row[2].organisation_id != organisation_id
                or (webhook_id is not None and row[2].id != webhook_id)
            ):
                raise NotFound(f"no delivery {delivery_id}")
            delivery, event, hook = row
            if delivery.status == "pending":
                raise Conflict(f"delivery {delivery_id} is already pending", code="delivery_pending")
            delivery.status, delivery.attempts = "pending", 0
            delivery.next_attempt_at, delivery.locked_until, delivery.delivered_at = utcnow(), None, None
            s.flush()
            self._audit(s, "webhook_redelivered", hook, {"delivery_id": delivery.id, "event_id": event.event_id})
            return _delivery_info(delivery, event)


def prune(db: Database, older_than: timedelta, *, now: datetime | None = None, batch: int = 5000) -> tuple[int, int]:
    """Delete finished deliveries (delivered, or given up) last attempted before ``now - older_than``, then events
    created before it that have no delivery left (pending deliveries and their events are always kept). Returns
    (deliveries, events) deleted. Works in batches of short transactions, so writers are never held up for long.
    """
    if older_than < timedelta(0):
        raise InvalidInput("older_than cannot be negative", code="invalid_retention")
    cutoff = (now or utcnow()) - older_than
    counts = [0, 0]
    finished = select(WebhookDelivery.id).where(
        WebhookDelivery.status.in_(("delivered", "failed")),
        func.coalesce(WebhookDelivery.last_attempt_at, WebhookDelivery.next_attempt_at) < cutoff,
    )
    orphans = select(Event.id).where(
        Event.created_at < cutoff, ~select(WebhookDelivery.id).where(WebhookDelivery.event_id == Event.id).exists()
    )
    for i, (table, id_col, ids) in enumerate(
        ((WebhookDelivery.__table__, WebhookDelivery.id, finished), (Event.__table__, Event.id, orphans))
    ):
        while True:
            with db.session() as s:
                chosen = list(s.scalars(ids.limit(batch)))
                if chosen:
                    s.execute(table.delete().where(id_col.in_(chosen)))
            counts[i] += len(chosen)
            if len(chosen) < batch:
                break
    return counts[0], counts[1]
