"""Sending the outbox: :func:`deliver_due` is one pass of the delivery worker.

Each due delivery is **claimed** with a lease before it is sent, in a short transaction of its own:

- PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks a due row no other pass is claiming, then its
  ``locked_until`` is set;
- SQLite (and as a second guard on PostgreSQL): the claim is a conditional ``UPDATE ... SET locked_until = :lease
  WHERE id = :id AND status = 'pending' AND next_attempt_at <= :now AND (locked_until IS NULL OR locked_until <=
  :now)``; only the pass whose UPDATE changed the row sends it.

The transaction commits before the HTTP request (no transaction is held open while a receiver takes its time). The
outcome is written in another short transaction, only while the lease is still ours (``locked_until`` equals the
value we set, a fencing token), so a pass that overran its lease cannot overwrite a newer attempt's outcome. All
state is in the database: a process that dies mid-delivery leaves a lease that expires, and the next pass, in any
process, sends that delivery again (hence at-least-once: receivers deduplicate on the event id).

Every request is vetted like a fetch (:mod:`bastion.intake.fetch`): the host is resolved and every address checked
again at send time (a name may have been re-pointed at an internal address since registration: DNS rebinding),
the request goes to the vetted IP with the original Host header and TLS name, redirects are not followed, proxies
from the environment are ignored, and the response body is read only up to 1 KiB (for ``last_error``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import or_, select, update

from bastion.errors import BastionError
from bastion.intake.fetch import Resolver, _vet
from bastion.settings import Settings
from bastion.storage.db import Database
from bastion.storage.models import Event, Webhook, WebhookDelivery, utcnow
from bastion.webhooks import metrics
from bastion.webhooks.service import ALL_PORTS, _system_resolver, active_secrets, event_body
from bastion.webhooks.signing import signed_headers

log = logging.getLogger(__name__)

_CANDIDATES = 20  # SQLite: due rows considered per claim (a concurrent pass may win some of them)
_ERROR_BODY_BYTES = 1024
USER_AGENT = "Bastion-Webhooks/1"


@dataclass(frozen=True)
class _Claim:
    delivery_id: int
    webhook_id: int
    token: datetime  # the locked_until we set: our lease and fencing token
    attempts: int
    url: str
    secret_encrypted: str
    event_id: str
    body: bytes


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    status: int | None
    error: str


def _utc(dt: datetime | None) -> datetime:
    if dt is None:
        return utcnow()
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def lease_seconds(settings: Settings) -> float:
    """How long a claim is ours: longer than one request can take (connect, send and read each time-limited)."""
    return 3 * settings.webhook_timeout_seconds + 30


def backoff_seconds(settings: Settings, attempts: int, rng: random.Random | None = None) -> float:
    """Delay before the next attempt after ``attempts`` failed ones: base * 2^(attempts-1) with +/-20 % jitter (so
    receivers coming back from an outage are not hit by every retry at once), at most the maximum."""
    exponent = min(max(attempts - 1, 0), 40)
    delay = settings.webhook_retry_base_seconds * 2**exponent * (rng or random).uniform(0.8, 1.2)
    return min(delay, settings.webhook_retry_max_seconds)


def _due(now: datetime):  # type: ignore[no-untyped-def]
    return (
        WebhookDelivery.status == "pending",
        WebhookDelivery.next_attempt_at <= now,
        or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until <= now),
    )


def _claim_one(
    db: Database, now: datetime, settings: Settings, skip_webhooks: frozenset[int] = frozenset()
) -> _Claim | None:
    # A token unique to this claim (microseconds of jitter), later than now by the lease.
    token = now + timedelta(seconds=lease_seconds(settings), microseconds=random.randrange(1, 1_000_000))
    with db.session() as s:
        postgres = s.get_bind().dialect.name == "postgresql"
        q = (
            select(WebhookDelivery.id)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(*_due(now), Webhook.enabled)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(1 if postgres else _CANDIDATES)
        )
        if skip_webhooks:
            q = q.where(WebhookDelivery.webhook_id.not_in(skip_webhooks))
        if postgres:
            q = q.with_for_update(skip_locked=True, of=WebhookDelivery)
        for delivery_id in list(s.scalars(q)):
            won = s.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, *_due(now))
                .values(locked_until=token)
                .execution_options(synchronize_session=False)
            ).rowcount
            if won != 1:
                continue  # another pass claimed it between our SELECT and UPDATE (SQLite)
            d, e, w = s.execute(
                select(WebhookDelivery, Event, Webhook)
                .join(Event, Event.id == WebhookDelivery.event_id)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.id == delivery_id)
            ).one()
            return _Claim(d.id, w.id, token, d.attempts, w.url, w.secret_encrypted, e.event_id, event_body(e))
    return None


def _send(client: httpx.Client, claim: _Claim, settings: Settings, resolver: Resolver | None) -> _Outcome:
    try:
        secrets = active_secrets(settings, claim.secret_encrypted)
        tgt = _vet(
            claim.url,
            resolver=resolver or _system_resolver,
            allow_private=settings.webhook_allow_private,
            allowed_ports=ALL_PORTS,
        )
    except BastionError as exc:
        return _Outcome(False, None, f"{exc.code}: {exc.message}"[:500])
    if tgt.scheme != "https" and not settings.webhook_allow_http:
        return _Outcome(False, None, "url_scheme_unsupported: http:// webhooks are not allowed")
    ip_host = f"[{tgt.ip}]" if tgt.ip.version == 6 else str(tgt.ip)
    default_port = 443 if tgt.scheme == "https" else 80
    host = f"[{tgt.host}]" if ":" in tgt.host else tgt.host
    headers = signed_headers(secrets, claim.event_id, claim.body)
    headers["Host"] = host if tgt.port == default_port else f"{host}:{tgt.port}"
    headers["User-Agent"] = USER_AGENT
    try:
        request = client.build_request(
            "POST",
            f"{tgt.scheme}://{ip_host}:{tgt.port}{tgt.target}",
            content=claim.body,
            headers=headers,
            extensions={"sni_hostname": tgt.host} if tgt.scheme == "https" else {},
            timeout=settings.webhook_timeout_seconds,
        )
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            status = response.status_code
            if 200 <= status < 300:
                return _Outcome(True, status, "")
            snippet = b""
            for chunk in response.iter_raw():
                snippet += chunk
                if len(snippet) >= _ERROR_BODY_BYTES:
                    break
            text = snippet[:_ERROR_BODY_BYTES].decode("utf-8", "replace").strip()
            return _Outcome(False, status, f"HTTP {status}" + (f": {text[:200]}" if text else ""))
        finally:
            response.close()
    except httpx.TimeoutException:
        return _Outcome(False, None, "timeout")
    except httpx.HTTPError as exc:
        return _Outcome(False, None, f"request failed: {type(exc).__name__}: {exc}"[:500])


def _record(db: Database, claim: _Claim, outcome: _Outcome, at: datetime, settings: Settings) -> str:
    attempts = claim.attempts + 1
    values: dict[str, object] = {
        "attempts": attempts,
        "last_attempt_at": at,
        "last_status": outcome.status,
        "last_error": outcome.error,
        "locked_until": None,
    }
    if outcome.ok:
        result = "delivered"
        values.update(status="delivered", delivered_at=at)
    elif attempts >= settings.webhook_max_attempts:
        result = "gave_up"
        values.update(status="failed")
    else:
        result = "retry"
        values.update(next_attempt_at=at + timedelta(seconds=backoff_seconds(settings, attempts)))
    with db.session() as s:
        changed = s.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == claim.delivery_id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.locked_until == claim.token,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
    if changed != 1:
        log.warning("webhook delivery %s: lease lost before its outcome was recorded", claim.delivery_id)
        result = "lease_lost"
    return result


def deliver_due(
    db: Database,
    settings: Settings,
    *,
    limit: int = 100,
    now: datetime | None = None,
    client: httpx.Client | None = None,
    resolver: Resolver | None = None,
    concurrency: int = 4,
) -> int:
    """Send up to ``limit`` due deliveries; returns how many were attempted (0: nothing was due).

    ``concurrency`` requests are in flight at once (each claim, send, record in turn), and a webhook whose attempt
    failed gets no more attempts in this pass (its other due deliveries wait for the next), so a receiver that is
    down or times out does not hold up the others. Safe to run in several threads or processes at once: a delivery
    is claimed by exactly one pass. ``now`` fixes the clock (tests); by default the wall clock is read for each
    claim. ``client`` is the httpx client to send with (default: one made for this pass, no proxies, no
    redirects). ``resolver`` replaces DNS (tests).
    """
    if limit < 1 or concurrency < 1:
        return 0
    own = client is None
    http = client or httpx.Client(trust_env=False, follow_redirects=False, timeout=settings.webhook_timeout_seconds)
    fixed = _utc(now) if now is not None else None
    lock = threading.Lock()
    started_count = 0  # claims begun, so the pass never exceeds ``limit``
    failing: set[int] = set()  # webhooks that failed an attempt in this pass
    attempted = 0

    def loop() -> None:
        nonlocal started_count, attempted
        while True:
            with lock:
                if started_count >= limit:
                    return
                started_count += 1
            with lock:
                skip = frozenset(failing)
            claim = _claim_one(db, fixed or utcnow(), settings, skip)
            if claim is None:
                return
            began = time.perf_counter()
            outcome = _send(http, claim, settings, resolver)
            metrics.observe(outcome.ok, time.perf_counter() - began)
            result = _record(db, claim, outcome, fixed or utcnow(), settings)
            metrics.count(result)
            with lock:
                attempted += 1
                if not outcome.ok:
                    failing.add(claim.webhook_id)

    try:
        workers = min(concurrency, limit)
        if workers == 1:
            loop()
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook-delivery") as pool:
                for future in [pool.submit(loop) for _ in range(workers)]:
                    future.result()  # re-raise a worker's exception (a database error...)
    finally:
        if own:
            http.close()
    return attempted
