"""Webhook routes over HTTP (organisation isolation, secret shown once, audit), /metrics, and the documented example
receiver verifying real deliveries."""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bastion.accounts.service import AccountService
from bastion.api.app import create_app
from bastion.settings import get_settings, reset_settings_cache
from bastion.storage.models import AuditRecord, WebhookDelivery
from bastion.webhooks import deliver_due, emit
from bastion.webhooks.signing import signed_headers

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "webhook_receiver.py"


@pytest.fixture
def lab(db, monkeypatch):
    monkeypatch.setenv("BASTION_WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.setenv("BASTION_WEBHOOK_ALLOW_PRIVATE", "true")
    reset_settings_cache()
    return get_settings()


@pytest.fixture
def client(db, lab):
    with TestClient(create_app(db, lab)) as c:
        yield c


def _admin(db, org: str) -> tuple[int, dict[str, str]]:
    svc = AccountService(db)
    org_id = svc.create_organisation(org).id
    return org_id, {"Authorization": f"Bearer {svc.create_api_key(org, 'admin', ['admin'])[1]}"}


def _load_example():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("webhook_receiver_example", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example_server():  # type: ignore[no-untyped-def]
    """The documented example receiver, listening on loopback; yields (module, receiver, url, set_secret)."""
    module = _load_example()
    receiver = module.Receiver("unset")
    server = module.make_server(receiver, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield module, receiver, f"http://127.0.0.1:{server.server_address[1]}/bastion"
    server.shutdown()
    server.server_close()


def test_the_docs_show_the_example_receiver_verbatim():
    doc = (ROOT / "docs" / "webhooks.md").read_text()
    assert EXAMPLE.read_text() in doc
    for needle in ("Bastion-Signature", "Bastion-Timestamp", "Bastion-Event-Id", "at least once", "BASTION_SECRET_KEY"):
        assert needle in doc


def test_example_receiver_verifies_real_deliveries_and_deduplicates(db, lab, client, example_server):
    module, receiver, url = example_server
    org, headers = _admin(db, "acme")
    r = client.post("/v1/webhooks", headers=headers, json={"url": url, "events": ["decision.made"]})
    assert r.status_code == 201, r.text
    receiver.secret = r.json()["secret"]
    with db.session() as s:
        event_id = emit(s, org, "decision.made", {"content_id": 9, "outcome": "remove"})
    assert deliver_due(db, lab) == 1
    assert [e["id"] for e in receiver.events] == [event_id]
    assert receiver.events[0]["data"] == {"content_id": 9, "outcome": "remove"}
    [d] = client.get(f"/v1/webhooks/{r.json()['webhook']['id']}/deliveries", headers=headers).json()["deliveries"]
    assert (d["status"], d["event_id"], d["last_status"]) == ("delivered", event_id, 200)
    # a redelivery of the same event is acknowledged and not processed twice
    redo = client.post(f"/v1/webhooks/{d['webhook_id']}/deliveries/{d['id']}/redeliver", headers=headers)
    assert redo.status_code == 200 and redo.json()["delivery"]["status"] == "pending"
    assert deliver_due(db, lab) == 1
    assert len(receiver.events) == 1
    # forged, tampered and replayed requests are refused by the example
    body = json.dumps({"id": "x", "type": "decision.made", "data": {}}).encode()
    good = signed_headers([receiver.secret], "x", body)
    assert httpx.post(url, content=body, headers=signed_headers(["whsec_wrong"], "x", body)).status_code == 400
    assert httpx.post(url, content=body + b" ", headers=good).status_code == 400
    old = signed_headers([receiver.secret], "x", body, timestamp=int(time.time()) - 600)
    assert httpx.post(url, content=body, headers=old).status_code == 400
    assert httpx.post(url, content=body, headers=good).status_code == 200
    assert module.verify(receiver.secret, good["Bastion-Timestamp"], good["Bastion-Signature"], body)


def test_webhook_routes_and_organisation_isolation(db, lab, client):
    org_a, a = _admin(db, "org-a")
    _, b = _admin(db, "org-b")
    r = client.post("/v1/webhooks", headers=a, json={"url": "http://127.0.0.1:9/a", "events": ["review.completed"]})
    assert r.status_code == 201
    hook, secret = r.json()["webhook"], r.json()["secret"]
    assert secret.startswith("whsec_") and hook["events"] == ["review.completed"] and hook["enabled"] is True
    listing = client.get("/v1/webhooks", headers=a)
    assert [w["id"] for w in listing.json()["webhooks"]] == [hook["id"]] and secret not in listing.text
    assert secret not in client.get(f"/v1/webhooks/{hook['id']}", headers=a).text
    assert client.get("/v1/webhooks", headers=b).json() == {"webhooks": []}
    hid = hook["id"]
    for method, path, body in (
        ("GET", f"/v1/webhooks/{hid}", None),
        ("PATCH", f"/v1/webhooks/{hid}", {"enabled": False}),
        ("POST", f"/v1/webhooks/{hid}/rotate-secret", {}),
        ("POST", f"/v1/webhooks/{hid}/test", None),
        ("GET", f"/v1/webhooks/{hid}/deliveries", None),
        ("DELETE", f"/v1/webhooks/{hid}", None),
    ):
        r = client.request(method, path, headers=b, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found"), (method, path)
    assert client.get(f"/v1/webhooks/{hid}", headers=a).json()["webhook"]["enabled"] is True  # untouched by B
    r = client.patch(f"/v1/webhooks/{hid}", headers=a, json={"enabled": False, "events": []})
    assert r.status_code == 200 and r.json()["webhook"]["enabled"] is False and r.json()["webhook"]["events"] == []
    r = client.post(f"/v1/webhooks/{hid}/rotate-secret", headers=a)
    assert r.status_code == 200 and r.json()["secret"].startswith("whsec_") and r.json()["secret"] != secret
    r = client.post(f"/v1/webhooks/{hid}/test", headers=a)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "webhook_disabled")
    assert client.patch(f"/v1/webhooks/{hid}", headers=a, json={"enabled": True}).json()["webhook"]["enabled"]
    r = client.post(f"/v1/webhooks/{hid}/test", headers=a)
    assert r.status_code == 202
    [d] = client.get(f"/v1/webhooks/{hid}/deliveries", headers=a).json()["deliveries"]
    assert (d["event_id"], d["event_type"], d["status"]) == (r.json()["event_id"], "ping", "pending")
    r = client.post(f"/v1/webhooks/{hid}/deliveries/{d['id']}/redeliver", headers=b)
    assert r.status_code == 404
    r = client.post(f"/v1/webhooks/{hid}/deliveries/{d['id']}/redeliver", headers=a)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "delivery_pending")
    bad = client.post("/v1/webhooks", headers=a, json={"url": "http://127.0.0.1:9/", "events": ["nope"]})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_event_type")
    assert client.get(f"/v1/webhooks/{hid}/deliveries?status=odd", headers=a).status_code == 400
    assert client.delete(f"/v1/webhooks/{hid}", headers=a).status_code == 200
    assert client.get(f"/v1/webhooks/{hid}", headers=a).status_code == 404
    with db.session() as s:
        rows = s.execute(select(AuditRecord.action, AuditRecord.organisation_id, AuditRecord.actor)).all()
    webhook_rows = [r for r in rows if r.action.startswith("webhook_")]
    assert [r.action for r in webhook_rows] == [
        "webhook_created",
        "webhook_updated",
        "webhook_secret_rotated",
        "webhook_updated",
        "webhook_test_sent",
        "webhook_deleted",
    ]
    assert {r.organisation_id for r in webhook_rows} == {org_a}
    assert all(r.actor.startswith("api-key:") for r in webhook_rows)


def test_registration_refuses_private_addresses_by_default(db, settings):
    _, a = _admin(db, "acme")
    with TestClient(create_app(db, settings)) as c:
        for url, code in (
            ("http://127.0.0.1/hook", "url_scheme_unsupported"),
            ("https://127.0.0.1/hook", "url_forbidden_address"),
            ("https://169.254.169.254/latest/meta-data/", "url_forbidden_address"),
        ):
            r = c.post("/v1/webhooks", headers=a, json={"url": url})
            assert (r.status_code, r.json()["error"]["code"]) == (400, code), url
        assert c.get("/v1/webhooks", headers=a).json() == {"webhooks": []}


def test_metrics_report_delivery_state(db, lab, client):
    org, a = _admin(db, "acme")
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hook = client.post("/v1/webhooks", headers=a, json={"url": f"http://127.0.0.1:{port}/"}).json()["webhook"]
    with db.session() as s:
        for i in range(3):
            emit(s, org, "decision.made", {"content_id": i})
    text = client.get("/metrics", headers=a).text
    assert 'bastion_webhook_deliveries{status="pending"} 3.0' in text
    assert "bastion_webhook_deliveries_retrying 0.0" in text
    assert 'bastion_webhook_delivery_attempts_total{outcome="retry"}' in text
    before = _sample(text, 'bastion_webhook_delivery_attempts_total{outcome="retry"}')
    assert deliver_due(db, lab) == 3  # connection refused: three failed attempts
    text = client.get("/metrics", headers=a).text
    assert "bastion_webhook_deliveries_retrying 3.0" in text
    assert _sample(text, 'bastion_webhook_delivery_attempts_total{outcome="retry"}') == before + 3
    assert _sample(text, "bastion_webhook_oldest_pending_seconds") >= 0
    with db.session() as s:
        assert {d.last_error.split(":")[0] for d in s.scalars(select(WebhookDelivery))} == {"request failed"}
    client.delete(f"/v1/webhooks/{hook['id']}", headers=a)
    text = client.get("/metrics", headers=a).text
    assert 'bastion_webhook_deliveries{status="pending"} 0.0' in text
    assert "bastion_webhook_oldest_pending_seconds 0.0" in text


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics")
