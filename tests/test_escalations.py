"""Threat-to-life escalations on SQLite and PostgreSQL: a policy outcome ``escalate`` and a reviewer's
``escalate_law_enforcement`` report the content to the law-enforcement contact of its jurisdiction (Europol when
unclear) with an evidence package, by signed webhook and by e-mail through a real SMTP server on loopback
(aiosmtpd), with retries and receipts per channel. Content is generated benign text."""

from __future__ import annotations

import email
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import select

from bastion.accounts.service import AccountService
from bastion.api.app import create_app
from bastion.compliance.authorities import AuthorityService
from bastion.compliance.escalation import EscalationService
from bastion.policy.service import PolicyService
from bastion.review import Reviewer, ReviewService
from bastion.settings import get_settings, reset_settings_cache
from bastion.storage.models import AuditRecord, EscalationDelivery, Organisation
from bastion.webhooks import WebhookService, deliver_due, verify_signature

ESCALATE = """
version: 1
default:
  outcome: escalate
  reason: Everything here is treated as an imminent threat (test policy).
rules: []
"""
REVIEW = """
version: 1
default:
  outcome: review
  reason: A person looks.
rules: []
"""


class Mailbox:
    """aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802, ANN001 - aiosmtpd's hook
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                outer.requests.append(
                    (dict(self.headers.items()), self.rfile.read(int(self.headers["Content-Length"])))
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/le"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _lab(monkeypatch, port: int, **extra: str):
    monkeypatch.setenv("BASTION_WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.setenv("BASTION_WEBHOOK_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("BASTION_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("BASTION_SMTP_PORT", str(port))
    monkeypatch.setenv("BASTION_SMTP_FROM", "bastion@acme.example")
    for k, v in extra.items():
        monkeypatch.setenv(k, v)
    reset_settings_cache()
    return get_settings()


def _platform(db, policy: str) -> dict:
    accounts = AccountService(db)
    org = accounts.create_organisation("acme")
    PolicyService(db).set_policy(org.id, policy)
    with db.session() as s:
        s.get(Organisation, org.id).config = {"classifiers": {"semantic": False}}
    key = accounts.create_api_key("acme", "k", ["submit", "review"])[1]
    return {"id": org.id, "h": {"Authorization": f"Bearer {key}"}}


def _contacts(db, settings, receiver_url: str) -> tuple[int, int]:
    svc = AuthorityService(db)
    de = svc.create("lka-de", "law_enforcement", "DE", contact_email="lagezentrum@lka.example")
    eu = svc.create("europol", "law_enforcement", "EU", contact_email="iru@europol.example", fallback=True)
    _, secret = WebhookService(db, "test", settings).create(de.organisation_id, receiver_url)
    return de.id, eu.id, secret


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_policy_escalation_reaches_the_jurisdictions_contact_by_webhook_and_email(
    db, monkeypatch, smtp_server, receiver
):
    box, port = smtp_server
    settings = _lab(monkeypatch, port)
    de_id, eu_id, secret = _contacts(db, settings, receiver.url)
    acme = _platform(db, ESCALATE)
    with TestClient(create_app(db, settings)) as client:
        r = client.post(
            "/v1/content",
            headers=acme["h"],
            json={"content_id": "post-9", "text": "a benign test text", "uploader_id": "u-1", "jurisdictions": ["DE"]},
        )
        assert r.status_code == 201 and r.json()["content"]["decision"]["outcome"] == "escalate"
        escalations = client.get("/v1/escalations", headers=acme["h"]).json()["escalations"]
        assert len(escalations) == 1
        esc = escalations[0]
        assert (esc["status"], esc["jurisdiction"], esc["contact"]["name"]) == ("pending", "DE", "lka-de")
        assert {c["channel"] for c in esc["channels"]} == {"webhook", "email"}

        deliver_due(db, settings)  # the webhook sender
        assert EscalationService(db, settings).deliver_due() == 1  # the e-mail
        done = client.get(f"/v1/escalations/{esc['id']}", headers=acme["h"]).json()["escalation"]
    assert done["status"] == "delivered", [c["last_error"] for c in done["channels"]]
    receipts = {c["channel"]: c for c in done["channels"]}
    assert receipts["email"]["receipt"].startswith("250") and receipts["webhook"]["receipt"] == "HTTP 200"
    evidence = done["evidence"]
    assert evidence["content"]["external_id"] == "post-9" and evidence["uploader"]["id"] == "u-1"
    assert {h["type"] for h in evidence["hashes"]} and evidence["timestamps"]["submitted_at"]
    assert evidence["decisions"][0]["outcome"] == "escalate"

    # The e-mail went to the DE contact, with the evidence package attached as JSON.
    ((sender, rcpts, raw),) = box.messages
    assert sender == "bastion@acme.example" and rcpts == ["lagezentrum@lka.example"]
    msg = email.message_from_bytes(raw)
    assert "Threat to life" in msg["Subject"]
    attached = [p for p in msg.walk() if p.get_content_type() == "application/json"]
    assert json.loads(attached[0].get_payload(decode=True))["content"]["external_id"] == "post-9"

    # The webhook is signed with the contact's secret and carries the same package.
    ((headers, body),) = receiver.requests
    assert verify_signature(secret, headers, body)
    assert json.loads(body)["data"]["escalation"]["escalation_id"] == esc["id"]
    with db.session() as s:
        actions = list(s.scalars(select(AuditRecord.action).where(AuditRecord.organisation_id == acme["id"])))
    assert {"escalation_created", "escalation_email", "escalation_status"} <= set(actions)


def test_unclear_jurisdiction_goes_to_europol_and_email_is_retried_then_given_up(db, monkeypatch, receiver):
    port = _free_port()  # nothing listens there: every attempt fails
    settings = _lab(monkeypatch, port, BASTION_ESCALATION_MAX_ATTEMPTS="2")
    _contacts(db, settings, receiver.url)
    acme = _platform(db, ESCALATE)
    with TestClient(create_app(db, settings)) as client:
        r = client.post(
            "/v1/content", headers=acme["h"], json={"content_id": "p", "text": "benign", "jurisdictions": []}
        )
        assert r.status_code == 201
        esc = client.get("/v1/escalations", headers=acme["h"]).json()["escalations"][0]
    assert esc["contact"]["name"] == "europol" and esc["jurisdiction"] == "EU"
    assert [c["channel"] for c in esc["channels"]] == ["email"]  # Europol registered no webhook here
    svc = EscalationService(db, settings)
    assert svc.deliver_due() == 1
    with db.session() as s:
        d = s.scalars(select(EscalationDelivery)).one()
        assert (d.status, d.attempts) == ("pending", 1) and "SMTP" in d.last_error
        retry_at = d.next_attempt_at
    assert svc.deliver_due() == 0  # not due yet: backed off
    assert svc.deliver_due(retry_at) == 1
    got = svc.get(acme["id"], esc["id"])
    assert got["status"] == "failed" and got["channels"][0]["attempts"] == 2


def test_a_reviewers_threat_to_life_decision_escalates_with_the_notes(db, monkeypatch, smtp_server, receiver):
    _, port = smtp_server
    settings = _lab(monkeypatch, port)
    _contacts(db, settings, receiver.url)
    acme = _platform(db, REVIEW)
    lead_id = AccountService(db).create_user("acme", "lead@acme.example", "lead").id
    lead = Reviewer(lead_id, acme["id"], "lead", "lead@acme.example")
    with TestClient(create_app(db, settings)) as client:
        client.post(
            "/v1/content", headers=acme["h"], json={"content_id": "p", "text": "benign", "jurisdictions": ["FR"]}
        )
        reviews = ReviewService(db, settings)
        item = reviews.next_item(lead)
        reviews.decide(lead, item.id, "escalate_law_enforcement", note="Names a place and a time.")
        esc = client.get("/v1/escalations", headers=acme["h"]).json()["escalations"]
    assert len(esc) == 1 and esc[0]["contact"]["name"] == "europol"  # no FR contact configured
    evidence = EscalationService(db, settings).get(acme["id"], esc[0]["id"])["evidence"]
    assert evidence["reviewer_notes"][0]["note"] == "Names a place and a time."


def test_no_contact_configured_is_visible(db, monkeypatch, smtp_server):
    _, port = smtp_server
    settings = _lab(monkeypatch, port)
    acme = _platform(db, ESCALATE)
    with TestClient(create_app(db, settings)) as client:
        client.post("/v1/content", headers=acme["h"], json={"content_id": "p", "text": "benign"})
        esc = client.get("/v1/escalations", headers=acme["h"]).json()["escalations"]
        assert esc[0]["status"] == "no_contact" and esc[0]["channels"] == []
        r = client.get("/v1/escalations/999999", headers=acme["h"])
        assert (r.status_code, r.json()["error"]["code"]) == (404, "escalation_not_found")
