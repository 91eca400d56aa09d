"""Webhooks and the outbox: signing, encryption at rest, emit in the caller's transaction, delivery with retries and
leases (real HTTP to a loopback receiver), SSRF checks at registration and at send time (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select, text

from bastion.accounts.service import AccountService
from bastion.errors import Conflict, InvalidInput, NotFound, SecretUnreadable, UrlForbiddenAddress, UrlSchemeUnsupported
from bastion.settings import Settings, get_settings, reset_settings_cache
from bastion.storage.db import Database, make_engine
from bastion.storage.models import AuditRecord, Event, WebhookDelivery, utcnow
from bastion.webhooks import WebhookService, deliver_due, emit, verify_signature
from bastion.webhooks import delivery as delivery_mod
from bastion.webhooks.service import active_secrets
from bastion.webhooks.signing import compute_signature, signed_headers


class Receiver:
    """A loopback HTTP server recording every request; answers the statuses in ``script`` in turn, then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []
        self.always: int | None = None
        self.on_request: Callable[[], int | None] | None = None  # may return a status to answer
        self.by_path: dict[str, int] = {}  # status to answer on these paths
        self.paths: list[str] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                forced = outer.on_request() if outer.on_request else None
                with outer.lock:
                    outer.requests.append((dict(self.headers.items()), body))
                    outer.paths.append(self.path)
                    status = (
                        forced
                        or outer.by_path.get(self.path)
                        or outer.always
                        or (outer.script.pop(0) if outer.script else 200)
                    )
                self.send_response(status)
                payload = b"receiver says no" if status >= 300 else b""
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def event_ids(self) -> list[str]:
        return [json.loads(body)["id"] for _, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def wsettings(db: Database, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings that let webhooks reach the loopback receiver over http."""
    monkeypatch.setenv("BASTION_WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.setenv("BASTION_WEBHOOK_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("BASTION_WEBHOOK_MAX_ATTEMPTS", "4")
    reset_settings_cache()
    return get_settings()


def _org(db: Database, name: str = "acme") -> int:
    return AccountService(db).create_organisation(name).id


def _emit(db: Database, org: int, type: str = "decision.made", **payload: object) -> str:
    with db.session() as s:
        return emit(s, org, type, payload or {"content_id": 1, "action": "remove"})


def _deliveries(db: Database) -> list[WebhookDelivery]:
    with db.session() as s:
        return list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


# signing


def test_signature_verifies_and_refuses_tampering_and_replays():
    secret, body, ts = "whsec_test", b'{"id":"e1"}', 1_764_000_000
    headers = signed_headers([secret], "e1", body, timestamp=ts)
    assert headers["Bastion-Signature"] == "v1=" + compute_signature(secret, ts, body)
    assert verify_signature(secret, headers, body, now=ts + 10)
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify_signature(secret, lower, body, now=ts)  # header names are case-insensitive
    assert not verify_signature(secret, headers, b'{"id":"e2"}', now=ts)  # tampered body
    assert not verify_signature("whsec_other", headers, body, now=ts)  # wrong secret
    assert not verify_signature(secret, headers, body, now=ts + 301)  # too old: a replay
    assert not verify_signature(secret, headers, body, now=ts - 301)  # from the future
    assert verify_signature(secret, headers, body, tolerance=600, now=ts + 301)
    forged = dict(headers, **{"Bastion-Timestamp": str(ts + 100)})  # a fresh timestamp on an old signature
    assert not verify_signature(secret, forged, body, now=ts + 100)
    assert not verify_signature(secret, {}, body, now=ts)
    assert not verify_signature(secret, dict(headers, **{"Bastion-Timestamp": "soon"}), body, now=ts)
    two = signed_headers(["whsec_new", secret], "e1", body, timestamp=ts)  # during a rotation
    assert verify_signature(secret, two, body, now=ts) and verify_signature("whsec_new", two, body, now=ts)


# secrets at rest


def test_secret_is_shown_once_and_stored_encrypted(db, wsettings, receiver):
    org = _org(db)
    info, secret = WebhookService(db, "test", wsettings).create(org, receiver.url, ["decision.made"])
    assert secret.startswith("whsec_") and len(secret) > 40
    with db.engine.connect() as conn:
        raw = conn.execute(text("SELECT secret_encrypted FROM webhooks WHERE id = :i"), {"i": info.id}).scalar_one()
    assert secret not in raw and secret[6:] not in raw and "whsec_" not in raw
    assert active_secrets(wsettings, raw) == [secret]
    assert secret not in json.dumps(info.to_dict())
    key_file = wsettings.data_dir / "secret.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600  # generated once, owner-only
    first_key = key_file.read_text()
    WebhookService(db, "test", wsettings).create(org, receiver.url)
    assert key_file.read_text() == first_key  # reused, not regenerated
    # with another key the stored secret cannot be read (and nothing is sent in clear instead)
    other = Settings(**{**wsettings.model_dump(), "secret_key": "a different key entirely"})
    with pytest.raises(SecretUnreadable):
        active_secrets(other, raw)


def test_configured_secret_key_is_used_instead_of_a_key_file(db, wsettings, receiver, monkeypatch):
    monkeypatch.setenv("BASTION_SECRET_KEY", "k" * 43)
    reset_settings_cache()
    settings = get_settings()
    info, secret = WebhookService(db, "test", settings).create(_org(db), receiver.url)
    assert not (settings.data_dir / "secret.key").exists()
    with db.session() as s:
        raw = s.scalar(text("SELECT secret_encrypted FROM webhooks"))
    assert active_secrets(settings, raw) == [secret]
    assert "k" * 43 not in str(settings) + repr(settings)  # the key is not printed with the settings


# emit: the outbox is written in the caller's transaction


def test_emit_in_a_rolled_back_transaction_sends_nothing(db, wsettings, receiver):
    org = _org(db)
    WebhookService(db, "test", wsettings).create(org, receiver.url)
    with pytest.raises(RuntimeError), db.session() as s:
        emit(s, org, "decision.made", {"content_id": 7})
        assert s.scalar(select(func.count(WebhookDelivery.id))) == 1  # written, inside the transaction
        raise RuntimeError("the decision failed after emitting")
    with db.session() as s:
        assert s.scalar(select(func.count(Event.id))) == 0
        assert s.scalar(select(func.count(WebhookDelivery.id))) == 0
    assert deliver_due(db, wsettings) == 0
    assert receiver.requests == []


def test_emit_fans_out_to_subscribed_enabled_webhooks_of_the_organisation(db, wsettings, receiver):
    acme, other = _org(db), _org(db, "other")
    svc = WebhookService(db, "test", wsettings)
    all_events = svc.create(acme, receiver.url)[0]
    reviews = svc.create(acme, receiver.url + "?reviews", ["review.completed"])[0]
    disabled = svc.create(acme, receiver.url + "?off")[0]
    svc.disable(acme, disabled.id)
    svc.create(other, receiver.url + "?other")
    _emit(db, acme, "decision.made")
    _emit(db, acme, "review.completed", review_id=3)
    by_hook: dict[int, list[str]] = {}
    with db.session() as s:
        for d, e in s.execute(select(WebhookDelivery, Event).join(Event, Event.id == WebhookDelivery.event_id)):
            by_hook.setdefault(d.webhook_id, []).append(e.type)
    assert by_hook == {all_events.id: ["decision.made", "review.completed"], reviews.id: ["review.completed"]}
    with pytest.raises(InvalidInput) as exc, db.session() as s:
        emit(s, acme, "decision.made.typo", {})
    assert exc.value.code == "invalid_event_type"
    with pytest.raises(InvalidInput) as exc, db.session() as s:
        emit(s, acme, "decision.made", {"x": object()})
    assert exc.value.code == "invalid_event_payload"


# delivery


def test_delivery_is_signed_json_with_the_event_id(db, wsettings, receiver):
    org = _org(db)
    _, secret = WebhookService(db, "test", wsettings).create(org, receiver.url)
    event_id = _emit(db, org, "decision.changed", content_id=5, action="restore")
    assert deliver_due(db, wsettings) == 1
    assert deliver_due(db, wsettings) == 0  # delivered: not sent again
    [(headers, body)] = receiver.requests
    assert verify_signature(secret, headers, body)
    assert headers["Bastion-Event-Id"] == event_id and headers["Content-Type"] == "application/json"
    event = json.loads(body)
    assert set(event) == {"id", "type", "created_at", "organisation_id", "data"}
    assert (event["id"], event["type"], event["organisation_id"]) == (event_id, "decision.changed", org)
    assert event["data"] == {"content_id": 5, "action": "restore"} and event["created_at"].endswith("Z")
    [d] = _deliveries(db)
    assert (d.status, d.attempts, d.last_status, d.locked_until) == ("delivered", 1, 200, None)
    assert d.delivered_at is not None


def test_failed_delivery_is_retried_with_exponential_backoff_then_succeeds(db, wsettings, receiver):
    org = _org(db)
    _, secret = WebhookService(db, "test", wsettings).create(org, receiver.url)
    event_id = _emit(db, org)
    receiver.script = [500, 503]
    t0 = utcnow() + timedelta(seconds=1)
    assert deliver_due(db, wsettings, now=t0) == 1
    [d] = _deliveries(db)
    assert (d.status, d.attempts, d.last_status) == ("pending", 1, 500)
    assert d.last_error == "HTTP 500: receiver says no"
    first_delay = (delivery_mod._utc(d.next_attempt_at) - t0).total_seconds()
    assert 8 <= first_delay <= 12  # 10 s +/- 20 %
    assert deliver_due(db, wsettings, now=t0 + timedelta(seconds=7)) == 0  # not due yet
    t1 = t0 + timedelta(seconds=13)
    assert deliver_due(db, wsettings, now=t1) == 1
    [d] = _deliveries(db)
    assert (d.status, d.attempts, d.last_status) == ("pending", 2, 503)
    assert 16 <= (delivery_mod._utc(d.next_attempt_at) - t1).total_seconds() <= 24  # doubled
    assert deliver_due(db, wsettings, now=t1 + timedelta(seconds=25)) == 1
    [d] = _deliveries(db)
    assert (d.status, d.attempts, d.last_status, d.last_error) == ("delivered", 3, 200, "")
    assert receiver.event_ids() == [event_id] * 3
    bodies = {body for _, body in receiver.requests}
    assert len(bodies) == 1  # the same bytes every time; each attempt freshly signed
    assert all(verify_signature(secret, h, b) for h, b in receiver.requests)


def test_backoff_schedule_doubles_and_is_capped(wsettings):
    delays = [delivery_mod.backoff_seconds(wsettings, n) for n in range(1, 16)]
    for n, delay in enumerate(delays[:8], start=1):
        assert 0.8 * 10 * 2 ** (n - 1) <= delay <= 1.2 * 10 * 2 ** (n - 1)
    assert all(d <= 3600 for d in delays) and delays[-1] >= 0.8 * 3600


def test_delivery_gives_up_after_max_attempts_and_can_be_redelivered(db, wsettings, receiver):
    org = _org(db)
    svc = WebhookService(db, "test", wsettings)
    hook, _ = svc.create(org, receiver.url)
    event_id = _emit(db, org)
    receiver.always = 500
    now = utcnow()
    for _ in range(wsettings.webhook_max_attempts):
        now += timedelta(hours=2)
        assert deliver_due(db, wsettings, now=now) == 1
    [d] = _deliveries(db)
    assert (d.status, d.attempts, d.last_status) == ("failed", 4, 500)
    assert deliver_due(db, wsettings, now=now + timedelta(days=30)) == 0  # given up
    assert len(receiver.requests) == 4
    with pytest.raises(NotFound):
        svc.redeliver(_org(db, "other"), d.id)
    receiver.always = None
    info = svc.redeliver(org, d.id, webhook_id=hook.id)
    assert (info.status, info.attempts, info.event_id) == ("pending", 0, event_id)
    with pytest.raises(Conflict) as exc:
        svc.redeliver(org, d.id)
    assert exc.value.code == "delivery_pending"
    assert deliver_due(db, wsettings) == 1
    assert _deliveries(db)[0].status == "delivered" and receiver.event_ids()[-1] == event_id


def test_unreachable_receiver_is_a_failed_attempt(db, wsettings, receiver):
    org = _org(db)
    receiver.server.shutdown()
    receiver.server.server_close()
    WebhookService(db, "test", wsettings).create(org, receiver.url)
    _emit(db, org)
    assert deliver_due(db, wsettings) == 1
    [d] = _deliveries(db)
    assert d.status == "pending" and d.attempts == 1 and d.last_status is None
    assert d.last_error.startswith("request failed: ConnectError")


def test_redirects_are_not_followed(db, wsettings, receiver):
    org = _org(db)
    WebhookService(db, "test", wsettings).create(org, receiver.url)
    _emit(db, org)
    receiver.script = [307]
    assert deliver_due(db, wsettings) == 1
    [d] = _deliveries(db)
    assert (d.status, d.last_status) == ("pending", 307) and len(receiver.requests) == 1


def test_concurrent_passes_never_send_a_delivery_twice(db, wsettings, receiver):
    org = _org(db)
    WebhookService(db, "test", wsettings).create(org, receiver.url)
    emitted = {_emit(db, org, content_id=i) for i in range(24)}
    counts: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run() -> None:
        try:
            start.wait()
            counts.append(deliver_due(db, wsettings))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = receiver.event_ids()
    assert sorted(ids) == sorted(emitted)  # each exactly once
    assert sum(counts) == 24
    assert {d.status for d in _deliveries(db)} == {"delivered"}


def test_one_pass_has_several_requests_in_flight(db, wsettings, receiver):
    """A receiver that answers only once two requests are waiting: a pass that sent one at a time would fail."""
    org = _org(db)
    WebhookService(db, "test", wsettings).create(org, receiver.url)
    emitted = {_emit(db, org, content_id=i) for i in range(2)}
    barrier = threading.Barrier(2, timeout=20)

    def both_waiting() -> int | None:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return 500
        return None

    receiver.on_request = both_waiting
    assert deliver_due(db, wsettings, concurrency=2) == 2
    assert set(receiver.event_ids()) == emitted
    assert [d.status for d in _deliveries(db)] == ["delivered", "delivered"]


def test_a_failing_webhook_gets_one_attempt_per_pass(db, wsettings, receiver):
    """A receiver that is down does not use up a pass: its other due deliveries wait for the next one."""
    org = _org(db)
    svc = WebhookService(db, "test", wsettings)
    down = svc.create(org, receiver.url + "?down")[0]
    up = svc.create(org, receiver.url + "?up")[0]
    receiver.by_path = {"/hook?down": 500}
    for i in range(3):
        _emit(db, org, content_id=i)
    assert deliver_due(db, wsettings, concurrency=1) == 4
    assert receiver.paths.count("/hook?down") == 1 and receiver.paths.count("/hook?up") == 3
    by_hook = {d.webhook_id: d.status for d in _deliveries(db) if d.attempts}
    assert by_hook == {down.id: "pending", up.id: "delivered"}
    assert sum(1 for d in _deliveries(db) if d.webhook_id == down.id and d.attempts == 0) == 2


def test_a_restarted_process_resumes_pending_and_abandoned_deliveries(db, wsettings, receiver):
    org = _org(db)
    WebhookService(db, "test", wsettings).create(org, receiver.url)
    abandoned = _emit(db, org, content_id=1)
    # A process claims the first delivery and dies before sending it (its lease stays in the database).
    claim = delivery_mod._claim_one(db, utcnow(), wsettings)
    assert claim is not None and claim.event_id == abandoned
    waiting = _emit(db, org, content_id=2)
    # A new process: a fresh engine on the same database, nothing shared in memory.
    engine = make_engine(db.engine.url.render_as_string(hide_password=False))
    try:
        fresh = Database(engine)
        assert deliver_due(fresh, wsettings) == 1  # the unclaimed one; the other is still leased
        assert receiver.event_ids() == [waiting]
        later = utcnow() + timedelta(seconds=delivery_mod.lease_seconds(wsettings) + 1)
        assert deliver_due(fresh, wsettings, now=later) == 1  # the lease expired: picked up again
        assert receiver.event_ids() == [waiting, abandoned]
    finally:
        engine.dispose()
    # the dead process's lease is gone: it could not record an outcome over the newer one
    assert delivery_mod._record(db, claim, delivery_mod._Outcome(False, 500, "x"), utcnow(), wsettings) == "lease_lost"
    assert {d.status for d in _deliveries(db)} == {"delivered"}


def test_disabled_webhook_keeps_its_deliveries_pending(db, wsettings, receiver):
    org = _org(db)
    svc = WebhookService(db, "test", wsettings)
    hook, _ = svc.create(org, receiver.url)
    _emit(db, org)
    svc.disable(org, hook.id)
    assert deliver_due(db, wsettings) == 0
    svc.enable(org, hook.id)
    assert deliver_due(db, wsettings) == 1 and len(receiver.requests) == 1


def test_rotated_secret_signs_and_the_previous_one_during_its_grace(db, wsettings, receiver):
    org = _org(db)
    svc = WebhookService(db, "test", wsettings)
    hook, old = svc.create(org, receiver.url)
    _, new = svc.rotate_secret(org, hook.id, keep_previous_seconds=3600)
    assert new != old and new.startswith("whsec_")
    _emit(db, org)
    deliver_due(db, wsettings)
    headers, body = receiver.requests[-1]
    assert headers["Bastion-Signature"].count("v1=") == 2
    assert verify_signature(new, headers, body) and verify_signature(old, headers, body)
    _, newest = svc.rotate_secret(org, hook.id)
    _emit(db, org)
    deliver_due(db, wsettings)
    headers, body = receiver.requests[-1]
    assert verify_signature(newest, headers, body) and not verify_signature(new, headers, body)
    with db.session() as s:
        actions = list(s.scalars(select(AuditRecord.action).where(AuditRecord.target == f"webhook:{hook.id}")))
    assert actions == ["webhook_created", "webhook_secret_rotated", "webhook_secret_rotated"]


def test_prune_deletes_finished_deliveries_and_their_events_but_keeps_pending(db, wsettings, receiver):
    from bastion.webhooks.service import prune

    org = _org(db)
    svc = WebhookService(db, "test", wsettings)
    svc.create(org, receiver.url + "?ok", ["decision.made"])
    svc.create(org, receiver.url + "?down", ["review.completed"])
    paused = svc.create(org, receiver.url + "?paused", ["decision.changed"])[0]
    receiver.by_path = {"/hook?down": 500}
    delivered, failed, waiting, unsent = (
        _emit(db, org, t) for t in ("decision.made", "review.completed", "decision.changed", "content.failed")
    )
    svc.disable(org, paused.id)  # its delivery stays pending
    now = utcnow()
    for _ in range(wsettings.webhook_max_attempts):
        now += timedelta(hours=2)
        deliver_due(db, wsettings, now=now)
    assert sorted(d.status for d in _deliveries(db)) == ["delivered", "failed", "pending"]
    assert prune(db, timedelta(days=30)) == (0, 0)  # nothing old enough yet
    later = now + timedelta(days=31)
    assert prune(db, timedelta(days=30), now=later, batch=1) == (2, 3)
    with db.session() as s:
        assert list(s.scalars(select(Event.event_id))) == [waiting]
    assert [d.status for d in _deliveries(db)] == ["pending"]
    assert prune(db, timedelta(days=30), now=later) == (0, 0)
    assert {delivered, failed, unsent}.isdisjoint({waiting})


# SSRF


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1/hook",
        "https://169.254.169.254/",
        "https://10.0.0.8/hook",
        "https://[::1]/hook",
        "https://2130706433/hook",  # 127.0.0.1 in decimal
        "https://[::ffff:169.254.169.254]/",
    ],
)
def test_private_and_metadata_addresses_are_refused(db, settings, url):
    org = _org(db)
    with pytest.raises((UrlForbiddenAddress, UrlSchemeUnsupported)) as exc:
        WebhookService(db, "test", settings).create(org, url)
    assert exc.value.code == ("url_scheme_unsupported" if url.startswith("http:") else "url_forbidden_address")
    allow_http = Settings(**{**settings.model_dump(), "webhook_allow_http": True})
    with pytest.raises(UrlForbiddenAddress):
        WebhookService(db, "test", allow_http).create(org, url)
    with db.session() as s:
        assert s.scalar(text("SELECT count(*) FROM webhooks")) == 0


def test_names_resolving_to_private_addresses_are_refused(db, settings):
    org = _org(db)
    svc = WebhookService(db, "test", settings, resolver=lambda host, port: ["93.184.216.34", "192.168.1.5"])
    with pytest.raises(UrlForbiddenAddress):
        svc.create(org, "https://hooks.example.com/x")
    for bad in ("ftp://example.com/x", "https://user:pw@example.com/", "not a url", ""):
        with pytest.raises(InvalidInput):
            WebhookService(db, "test", settings, resolver=lambda h, p: ["93.184.216.34"]).create(org, bad)


def test_dns_rebinding_is_caught_at_delivery_time(db, settings, receiver):
    org = _org(db)
    public = WebhookService(db, "test", settings, resolver=lambda host, port: ["93.184.216.34"])
    public.create(org, f"https://hooks.example.com:{receiver.server.server_address[1]}/hook")
    _emit(db, org)
    # the name now resolves to loopback: the delivery is refused before any packet is sent
    assert deliver_due(db, settings, resolver=lambda host, port: ["127.0.0.1"]) == 1
    [d] = _deliveries(db)
    assert d.status == "pending" and d.last_error.startswith("url_forbidden_address")
    assert receiver.requests == []


# management and isolation


def test_service_is_scoped_to_the_organisation(db, wsettings, receiver):
    acme, other = _org(db), _org(db, "other")
    svc = WebhookService(db, "test", wsettings)
    hook, _ = svc.create(acme, receiver.url, ["decision.made", "review.completed"])
    assert hook.events == ["decision.made", "review.completed"]
    for call in (
        lambda: svc.get(other, hook.id),
        lambda: svc.update(other, hook.id, enabled=False),
        lambda: svc.rotate_secret(other, hook.id),
        lambda: svc.send_test(other, hook.id),
        lambda: svc.list_deliveries(other, hook.id),
        lambda: svc.delete(other, hook.id),
    ):
        with pytest.raises(NotFound):
            call()
    assert svc.list(other) == [] and [w.id for w in svc.list(acme)] == [hook.id]
    with pytest.raises(InvalidInput) as exc:
        svc.create(acme, receiver.url, ["decision.made", "nope"])
    assert exc.value.code == "invalid_event_type"
    _emit(db, acme)
    svc.delete(acme, hook.id)
    assert svc.list(acme) == [] and _deliveries(db) == []


# the CLI


def test_webhook_cli(db, receiver, monkeypatch):
    from typer.testing import CliRunner

    from bastion.cli.main import app as cli

    monkeypatch.setenv("BASTION_WEBHOOK_ALLOW_HTTP", "1")
    monkeypatch.setenv("BASTION_WEBHOOK_ALLOW_PRIVATE", "1")
    reset_settings_cache()
    org = AccountService(db).create_organisation("acme").id
    run = CliRunner().invoke
    r = run(cli, ["webhook", "create", "acme", receiver.url, "--event", "decision.made"])
    assert r.exit_code == 0, r.output
    secret = r.stdout.strip()
    assert secret.startswith("whsec_") and "shown once" in r.stderr
    [hook] = [json.loads(line) for line in run(cli, ["webhook", "list", "acme", "--json"]).stdout.splitlines()]
    assert hook["url"] == receiver.url and hook["events"] == ["decision.made"]
    with db.session() as s:
        event_id = emit(s, org, "decision.made", {"content_id": 1})
    receiver.script = [500]
    assert run(cli, ["webhook", "deliver"]).stdout.strip() == "1 deliveries attempted"
    out = run(cli, ["webhook", "deliveries", "acme", str(hook["id"]), "--json"]).stdout
    [d] = [json.loads(line) for line in out.splitlines()]
    assert (d["event_id"], d["status"], d["attempts"], d["last_status"]) == (event_id, "pending", 1, 500)
    r = run(cli, ["webhook", "redeliver", "acme", str(d["id"])])
    assert r.exit_code == 4 and "error[delivery_pending]" in r.stderr
    r = run(cli, ["webhook", "rotate-secret", "acme", str(hook["id"])])
    assert r.exit_code == 0 and r.stdout.strip() != secret
    r = run(cli, ["webhook", "disable", "acme", str(hook["id"])])
    assert r.exit_code == 0
    assert "disabled" in run(cli, ["webhook", "list", "acme"]).stdout
    r = run(cli, ["webhook", "delete", "other-org", str(hook["id"])])
    assert r.exit_code == 3 and "error[not_found]" in r.stderr
    AccountService(db).create_organisation("other-org")
    r = run(cli, ["webhook", "delete", "other-org", str(hook["id"])])
    assert r.exit_code == 3 and "error[not_found]" in r.stderr  # another organisation's webhook
    assert run(cli, ["webhook", "delete", "acme", str(hook["id"])]).exit_code == 0
    assert run(cli, ["webhook", "prune", "--days", "0"]).stdout.strip() == "deleted 0 deliveries and 1 events"
    assert run(cli, ["webhook", "list", "acme"]).stdout == ""
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert verify_signature(secret, headers, body)
    monkeypatch.delenv("BASTION_WEBHOOK_ALLOW_PRIVATE")
    reset_settings_cache()
    r = run(cli, ["webhook", "create", "acme", "http://169.254.169.254/latest/meta-data/"])
    assert r.exit_code == 2 and "error[url_forbidden_address]" in r.stderr
