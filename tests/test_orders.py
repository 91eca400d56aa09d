"""Authorities' orders over the API (FastAPI TestClient) on SQLite and PostgreSQL: received -> executed -> confirmed
(with the authority's signed webhook and a blocked re-upload), received -> cannot comply -> clarified -> executed,
alerts at 30/45/55 minutes on a controllable clock (never sleeping), signed files, and bad input with nothing
stored. Content is generated benign images (bastion.samples)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from bastion import samples
from bastion.accounts.service import AccountService
from bastion.api.app import create_app
from bastion.compliance.authorities import AuthorityService, new_signing_key, sign_envelope
from bastion.compliance.orders import OrderService, import_envelope, set_mode
from bastion.review import Reviewer, ReviewService
from bastion.settings import get_settings, reset_settings_cache
from bastion.storage.models import AuditRecord, Decision, Event, Order, OrderTarget, Organisation, ReviewItem, utcnow
from bastion.webhooks import WebhookService, deliver_due, verify_signature


class Receiver:
    """A loopback HTTP server recording every webhook delivery."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, type_: str) -> list[dict]:
        return [json.loads(b) for _, b in self.requests if json.loads(b)["type"] == type_]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def lab(db, monkeypatch):
    monkeypatch.setenv("BASTION_WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.setenv("BASTION_WEBHOOK_ALLOW_PRIVATE", "true")
    reset_settings_cache()
    return get_settings()


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world(db, lab):
    """A platform ("acme", auto mode) that accepts one competent authority ("bka"); keys for both."""
    accounts = AccountService(db)
    accounts.create_organisation("acme")
    with db.session() as s:
        org = s.scalar(select(Organisation).where(Organisation.name == "acme"))
        org.config = {"classifiers": {"semantic": False}}
    authorities = AuthorityService(db)
    bka = authorities.create("bka", "competent_authority", "DE", contact_email="orders@bka.example")
    authorities.accept("bka", "acme")
    _, authority_key = accounts.create_api_key("bka", "orders", ["authority"])
    _, platform_key = accounts.create_api_key("acme", "platform", ["submit", "review"])
    return {
        "platform_id": accounts.get_organisation("acme").id,
        "authority": bka,
        "authority_h": {"Authorization": f"Bearer {authority_key}"},
        "platform_h": {"Authorization": f"Bearer {platform_key}"},
    }


@pytest.fixture
def client(db, lab):
    with TestClient(create_app(db, lab)) as c:
        yield c


def _upload(client, world, content_id: str, seed: int = 5) -> dict:
    data = samples.encode(samples.generate_image(seed), quality=90)
    r = client.post(
        "/v1/content",
        files={"file": ("a.jpg", data, "image/jpeg")},
        data={"content_id": content_id},
        headers=world["platform_h"],
    )
    assert r.status_code == 201, r.text
    return r.json()["content"]


def _order(reference: str = "BKA-2026-0001", content: list | None = None, **extra) -> dict:
    return {
        "platform": "acme",
        "kind": "removal_order",
        "reference": reference,
        "issuer": "BKA Referat ST 14",
        "member_state": "DE",
        "legal_basis": "Regulation (EU) 2021/784, Art. 3",
        "reasons": "Terrorist content within the meaning of Art. 2(7)",
        "issued_at": "2026-01-05T09:00:00Z",
        "content": content if content is not None else [{"content_id": "post-1"}],
        **extra,
    }


def _actions(db, org_id: int | None = None) -> list[str]:
    with db.session() as s:
        q = select(AuditRecord.action).order_by(AuditRecord.seq)
        return list(s.scalars(q.where(AuditRecord.organisation_id == org_id) if org_id else q))


def test_binding_order_is_executed_banked_and_confirmed_to_the_authority(db, lab, client, world, receiver):
    _, authority_secret = WebhookService(db, "test", lab).create(world["authority"].organisation_id, receiver.url)
    _, platform_secret = WebhookService(db, "test", lab).create(world["platform_id"], receiver.url + "/platform")
    first = _upload(client, world, "post-1")
    assert first["decision"]["outcome"] == "allow"  # unknown to every bank: it stays up until ordered down

    r = client.post("/v1/orders", json=_order(), headers=world["authority_h"])
    assert r.status_code == 201, r.text
    order = r.json()["order"]
    assert order["status"] == "executed" and order["confirmed_at"] and order["clock"] == "none"
    assert order["content"] == [
        {"reference": "post-1", "status": "removed", "actioned_at": order["executed_at"], "hashes_banked": True}
    ]
    assert order["confirmation"]["within_deadline"] is True
    assert order["confirmation"]["actions"][0]["action"] == "removed"
    with db.session() as s:
        latest = s.scalars(
            select(Decision).where(Decision.content_id == first["id"]).order_by(Decision.version.desc())
        ).first()
        assert (latest.version, latest.outcome, latest.evidence["order_id"]) == (2, "remove", order["id"])
    actions = _actions(db, world["platform_id"])
    assert actions.index("order_received") < actions.index("order_executed") < actions.index("order_confirmed")

    # The authority reads the confirmation, and gets it as a signed webhook to its own callback.
    got = client.get(f"/v1/orders/{order['id']}", headers=world["authority_h"]).json()["order"]
    assert got["confirmation"] == order["confirmation"]
    deliver_due(db, lab)
    confirmed = receiver.events("order.confirmed")
    assert len(confirmed) == 1 and confirmed[0]["data"]["order"]["reference"] == "BKA-2026-0001"
    headers, body = next((h, b) for h, b in receiver.requests if json.loads(b)["type"] == "order.confirmed")
    assert verify_signature(authority_secret, headers, body)  # signed for the authority, not the platform
    assert not verify_signature(platform_secret, headers, body)
    changed = [e for e in receiver.events("decision.changed") if e["data"].get("order_id") == order["id"]]
    assert len(changed) == 1 and receiver.events("order.executed")

    # The platform sees the same order; another organisation does not.
    assert client.get(f"/v1/orders/{order['id']}", headers=world["platform_h"]).json()["order"]["status"] == "executed"
    AccountService(db).create_organisation("other")
    other = {"Authorization": f"Bearer {AccountService(db).create_api_key('other', 'k', ['review', 'authority'])[1]}"}
    r = client.get(f"/v1/orders/{order['id']}", headers=other)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "order_not_found")

    # A re-upload of the ordered image is removed by policy: its hashes were banked. A new bank reaches every
    # process's matching within the index refresh interval (1 s by default; 5 s is the contract), hence the retries.
    deadline, attempt = time.monotonic() + 10, 0
    while True:
        attempt += 1
        again = _upload(client, world, f"post-1-reupload-{attempt}")
        if again["decision"]["outcome"] == "remove" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert again["decision"]["outcome"] == "remove", again["decision"]


def test_cannot_comply_stops_the_clock_until_clarified_then_it_is_executed(db, lab, client, world):
    clock = Clock()
    set_mode(db, "acme", "review", actor="test")
    _upload(client, world, "post-1")
    svc = OrderService(db, lab, clock=clock)
    order = svc.receive(world["authority"].organisation_id, _order(), actor="test")
    assert order["status"] == "pending_review" and order["clock"] == "running"
    with db.session() as s:  # the order's content waits on top of the escalation queue, with the deadline
        item = s.scalars(select(ReviewItem)).one()
        assert item.queue == "escalation" and item.deadline_at is not None and item.priority >= 50_000

    r = client.post(
        f"/v1/orders/{order['id']}/cannot-comply",
        headers=world["platform_h"],
        json={"reason": "because", "explanation": "x"},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_reason")
    r = client.post(
        f"/v1/orders/{order['id']}/cannot-comply",
        headers=world["platform_h"],
        json={"reason": "insufficient_information", "explanation": "Which of the user's posts?"},
    )
    assert r.status_code == 200, r.text
    stopped = r.json()["order"]
    assert stopped["status"] == "cannot_comply" and stopped["clock"] == "stopped" and stopped["seconds_left"] is None
    assert stopped["cannot_comply"]["reason"] == "insufficient_information"
    with db.session() as s:
        assert s.scalars(select(ReviewItem)).one().status == "cancelled"

    clock.now += timedelta(minutes=58)  # a stopped clock raises no alert
    assert svc.sweep(clock.now)["alerts"] == 0
    r = client.post(f"/v1/orders/{order['id']}/clarification", headers=world["platform_h"], json={"clarification": "x"})
    assert r.status_code == 403  # the platform's key cannot clarify
    r = client.post(f"/v1/orders/{order['id']}/execute", headers=world["platform_h"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "order_not_open")

    set_mode(db, "acme", "auto", actor="test")  # the clarified order executes at once, as on receipt
    r = client.post(
        f"/v1/orders/{order['id']}/clarification",
        headers=world["authority_h"],
        json={"clarification": "The post with id post-1."},
    )
    assert r.status_code == 200, r.text
    done = r.json()["order"]
    assert done["status"] == "executed" and done["confirmed_at"]
    assert done["clarification"]["text"] == "The post with id post-1."
    assert done["clock_started_at"] == done["clarification"]["at"]  # the hour restarted at the clarification
    r = client.post(
        f"/v1/orders/{order['id']}/clarification", headers=world["authority_h"], json={"clarification": "again"}
    )
    assert (r.status_code, r.json()["error"]["code"]) == (409, "not_awaiting_clarification")
    actions = _actions(db, world["platform_id"])
    for step in ("order_received", "order_cannot_comply", "order_clarified", "order_executed", "order_confirmed"):
        assert step in actions


def test_alerts_at_30_45_and_55_minutes_then_a_reviewer_executes(db, lab, client, world):
    clock = Clock()
    set_mode(db, "acme", "review", actor="test")
    _upload(client, world, "post-1")
    svc = OrderService(db, lab, clock=clock)
    order = svc.receive(world["authority"].organisation_id, _order(), actor="test")
    start = clock.now
    for minutes, expected in ((29, []), (30, [30]), (31, [30]), (45, [30, 45]), (55, [30, 45, 55]), (59, [30, 45, 55])):
        svc.sweep(start + timedelta(minutes=minutes))
        assert svc.get_for_platform(world["platform_id"], order["id"])["alerts"] == expected, minutes
    with db.session() as s:
        alerts = [
            e.payload["minutes"] for e in s.scalars(select(Event).where(Event.type == "order.alert").order_by(Event.id))
        ]
    assert alerts == [30, 45, 55]

    # A lead decides the review item: "not violating" is refused for a binding order, removal executes it.
    lead_id = AccountService(db).create_user("acme", "lead@acme.example", "lead").id
    lead = Reviewer(lead_id, world["platform_id"], "lead", "lead@acme.example")
    reviews = ReviewService(db, lab)
    item = reviews.next_item(lead)
    from bastion.errors import Conflict

    with pytest.raises(Conflict) as refused:
        reviews.decide(lead, item.id, "not_violating")
    assert refused.value.code == "binding_order"
    reviews.decide(lead, item.id, "violating", category="propaganda", policy_reference="TCO removal order")
    assert svc.get_for_platform(world["platform_id"], order["id"])["status"] == "executed"
    assert svc.sweep(clock.now)["confirmed"] == 1  # the worker's sweep confirms what a review executed
    assert svc.get_for_authority(world["authority"].organisation_id, order["id"])["confirmed_at"]


def test_a_referral_is_assessed_against_the_terms(db, lab, client, world):
    _upload(client, world, "post-1")
    r = client.post("/v1/orders", json=_order(kind="referral", reference="IRU-1"), headers=world["authority_h"])
    assert r.status_code == 201 and r.json()["order"]["status"] == "pending_review"
    assert r.json()["order"]["deadline_at"] is None  # a referral binds to no hour
    lead_id = AccountService(db).create_user("acme", "r@acme.example", "reviewer").id
    reviewer = Reviewer(lead_id, world["platform_id"], "reviewer", "r@acme.example")
    reviews = ReviewService(db, lab)
    item = reviews.next_item(reviewer)
    reviews.decide(reviewer, item.id, "not_violating")
    got = client.get(f"/v1/orders/{r.json()['order']['id']}", headers=world["authority_h"]).json()["order"]
    assert got["status"] == "assessed" and got["content"][0]["status"] == "kept"


def _count(db, model) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_bad_orders_get_clear_errors_and_store_nothing(db, lab, client, world):
    _upload(client, world, "post-1")
    cases = [
        (_order(content=[{"content_id": "post-1"}, {"content_id": "no-such-post"}]), 404, "unknown_content"),
        (_order(content=[{"url": "https://example.org/nothing"}]), 404, "unknown_content"),
        (_order(issued_at="yesterday"), 400, "invalid_timestamp"),
        (_order(issued_at="2026-01-05T09:00:00"), 400, "invalid_timestamp"),  # no zone
        (_order(issued_at="2999-01-01T00:00:00Z"), 400, "invalid_timestamp"),  # in the future
        (_order(issued_at=12), 400, "invalid_timestamp"),
        (_order(kind="suggestion"), 400, "invalid_order_kind"),
        (_order(member_state="XX"), 400, "invalid_member_state"),
        (_order(content=[]), 400, "content_required"),
        (_order(content=[{"content_id": ""}]), 400, "invalid_content_reference"),
        (_order(reasons=""), 400, "reasons_required"),
        (_order(platform="nobody"), 404, "platform_not_found"),
    ]
    for body, status, code in cases:
        r = client.post("/v1/orders", json=body, headers=world["authority_h"])
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)
    assert _count(db, Order) == 0 and _count(db, OrderTarget) == 0
    assert "order_received" not in _actions(db)
    missing = client.post("/v1/orders", json=cases[0][0], headers=world["authority_h"]).json()["error"]
    assert missing["details"]["missing"] == ["no-such-post"]

    # A platform that did not accept the authority is "not found" too; a platform key cannot send orders.
    AccountService(db).create_organisation("elsewhere")
    r = client.post("/v1/orders", json=_order(platform="elsewhere"), headers=world["authority_h"])
    assert (r.status_code, r.json()["error"]["code"]) == (404, "platform_not_found")
    r = client.post("/v1/orders", json=_order(), headers=world["platform_h"])
    assert r.status_code == 403
    notauth = AccountService(db).create_api_key("elsewhere", "k", ["authority"])[1]
    r = client.post("/v1/orders", json=_order(), headers={"Authorization": f"Bearer {notauth}"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_an_authority")

    # Duplicates: the second is refused with the first's id, and one order exists.
    first = client.post("/v1/orders", json=_order(), headers=world["authority_h"])
    assert first.status_code == 201
    r = client.post("/v1/orders", json=_order(), headers=world["authority_h"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "duplicate_order")
    assert r.json()["error"]["details"]["order_id"] == first.json()["order"]["id"]
    assert _count(db, Order) == 1

    # A revoked authority key is refused before anything is read.
    accounts = AccountService(db)
    key_info, key = accounts.create_api_key("bka", "old", ["authority"])
    accounts.revoke_key(key_info.id)
    r = client.post("/v1/orders", json=_order(reference="BKA-2"), headers={"Authorization": f"Bearer {key}"})
    assert (r.status_code, r.json()["error"]["code"]) == (401, "api_key_revoked")
    assert _count(db, Order) == 1


def test_signed_file_orders_verify_the_authoritys_key(db, lab, client, world, tmp_path, monkeypatch):
    from bastion.compliance.orders import watch_drop_dir
    from bastion.errors import Forbidden

    _upload(client, world, "post-1")
    private, public = new_signing_key()
    AuthorityService(db).set_public_key("bka", public)
    envelope = sign_envelope(private, "bka", _order(reference="FILE-1"))
    tampered = json.loads(json.dumps(envelope))
    tampered["order"]["content"] = [{"content_id": "post-2"}]
    with pytest.raises(Forbidden) as bad:
        import_envelope(db, lab, tampered)
    assert bad.value.code == "invalid_signature" and _count(db, Order) == 0
    other_private, _ = new_signing_key()
    with pytest.raises(Forbidden):
        import_envelope(db, lab, sign_envelope(other_private, "bka", _order(reference="FILE-1")))

    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "good.json").write_text(json.dumps(envelope))
    (drop / "bad.json").write_text(json.dumps(tampered))
    (drop / "junk.json").write_text("{not json")
    monkeypatch.setenv("BASTION_ORDERS_DROP_DIR", str(drop))
    reset_settings_cache()
    assert watch_drop_dir(db, get_settings()) == 3
    assert sorted(p.name for p in (drop / "processed").iterdir()) == ["good.json", "good.result.json"]
    rejected = json.loads((drop / "rejected" / "bad.result.json").read_text())
    assert rejected["error"]["code"] == "invalid_signature"
    assert json.loads((drop / "rejected" / "junk.result.json").read_text())["error"]["code"] == "invalid_order_file"
    with db.session() as s:
        order = s.scalars(select(Order)).one()
        assert (order.reference, order.channel, order.status) == ("FILE-1", "file", "executed")


def test_the_worker_imports_dropped_files(db, lab, client, world, tmp_path, monkeypatch):
    from bastion.jobs.worker import Worker

    _upload(client, world, "post-1")
    private, public = new_signing_key()
    AuthorityService(db).set_public_key("bka", public)
    (tmp_path / "order.json").write_text(json.dumps(sign_envelope(private, "bka", _order(reference="W-1"))))
    monkeypatch.setenv("BASTION_ORDERS_DROP_DIR", str(tmp_path))
    reset_settings_cache()
    Worker(db, get_settings()).run_once()
    assert (tmp_path / "processed" / "order.json").exists()
    with db.session() as s:
        assert s.scalars(select(Order.status)).one() == "executed"
