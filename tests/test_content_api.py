"""POST /v1/content and GET /v1/content/{id}: intake, inline decisions by hash match, queued decisions by a worker,
idempotency, bad input (nothing stored), organisation isolation."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from bastion import samples
from bastion.accounts.service import AccountService
from bastion.api.app import create_app
from bastion.banks.service import BankService
from bastion.content import Content
from bastion.jobs.worker import Worker
from bastion.signals import compute_all
from bastion.storage.models import ContentBlob, ContentItem, Decision, Event, Job

BANKED_SEEDS = (11, 12)


def _jpeg(seed: int, size: tuple[int, int] | None = None, quality: int = 90) -> bytes:
    img = samples.generate_image(seed)
    if size:
        img = img.resize(size)
    return samples.encode(img, quality=quality)


@pytest.fixture
def orgs(db):
    svc = AccountService(db)
    keys = {}
    for name in ("alpha", "beta"):
        org = svc.create_organisation(name)
        keys[name] = (org.id, svc.create_api_key(name, "all", ["submit", "review", "curate", "policy", "admin"])[1])
    bank = BankService(db, organisation_id=keys["alpha"][0])
    bank.create_bank("alpha-known")
    for seed in BANKED_SEEDS:
        sigs = compute_all(Content.from_bytes(_jpeg(seed)))
        bank.add_entry("alpha-known", sigs, labels={"category": "branded_publication"}, content_type="image")
    return keys


@pytest.fixture
def client(db, settings):
    with TestClient(create_app(db, settings)) as c:
        yield c


def _h(orgs, name="alpha", **extra):
    return {"Authorization": f"Bearer {orgs[name][1]}", **extra}


def _submit_image(client, orgs, data: bytes, content_id="post-1", org="alpha", key=None, **fields):
    headers = _h(orgs, org, **({"Idempotency-Key": key} if key else {}))
    form = {"content_id": content_id, **fields}
    return client.post("/v1/content", files={"file": ("upload.jpg", data, "image/jpeg")}, data=form, headers=headers)


def test_altered_copy_of_banked_image_is_removed_in_the_request(client, orgs, db):
    altered = _jpeg(BANKED_SEEDS[0], size=(500, 375), quality=70)
    r = _submit_image(client, orgs, altered, uploader_id="u-1", jurisdictions="fr,DE", surface="post")
    assert r.status_code == 201, r.text
    item = r.json()["content"]
    assert item["status"] == "decided" and item["decision"]["outcome"] == "remove"
    assert item["jurisdictions"] == ["FR", "DE"] and item["uploader_id"] == "u-1"
    assert item["sha256"] == hashlib.sha256(altered).hexdigest() and item["size_bytes"] == len(altered)
    evidence = item["decision"]["evidence"]
    assert evidence["matches"] and evidence["matches"][0]["bank"] == "alpha-known"
    assert evidence["matches"][0]["signal_type"] == "pdq" and evidence["matches"][0]["distance"] <= 31
    assert item["decision"]["rule"] and item["decision"]["policy_version"] is None or isinstance(
        item["decision"]["policy_version"], int)
    got = client.get(f"/v1/content/{item['id']}", headers=_h(orgs)).json()["content"]
    assert got["decision"] == item["decision"] and got["signals"]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Decision)) == 1
        assert s.scalar(select(func.count()).select_from(ContentBlob)) == 0  # decided inline: bytes never kept
        event = s.scalars(select(Event)).one()
        assert event.type == "decision.made" and event.payload["content"]["id"] == item["id"]


def test_unrelated_image_is_allowed(client, orgs):
    r = _submit_image(client, orgs, _jpeg(99), content_id="post-2")
    assert r.status_code == 201, r.text
    decision = r.json()["content"]["decision"]
    assert decision["outcome"] == "allow" and decision["evidence"]["matches"] == []


def test_another_organisation_neither_matches_nor_sees(client, orgs):
    r = _submit_image(client, orgs, _jpeg(BANKED_SEEDS[0]), org="beta", content_id="b-1")
    assert r.status_code == 201, r.text
    assert r.json()["content"]["decision"]["outcome"] == "allow"  # alpha's bank is not beta's
    mine = _submit_image(client, orgs, _jpeg(BANKED_SEEDS[1]), content_id="a-1").json()["content"]
    other = client.get(f"/v1/content/{mine['id']}", headers=_h(orgs, "beta"))
    assert other.status_code == 404 and other.json()["error"]["code"] == "content_not_found"
    assert client.get("/v1/content?external_id=a-1", headers=_h(orgs, "beta")).json()["content"] == []
    assert len(client.get("/v1/content?external_id=a-1", headers=_h(orgs)).json()["content"]) == 1


def test_text_is_decided_inline(client, orgs):
    r = client.post("/v1/content", json={"content_id": "c-1", "text": "A recipe for lemon cake with sugar."},
                    headers=_h(orgs))
    assert r.status_code == 201, r.text
    assert r.json()["content"]["content_type"] == "text"
    assert r.json()["content"]["decision"]["outcome"] == "allow"


def test_idempotency_key_replays_and_conflicts(client, orgs, db):
    data = _jpeg(BANKED_SEEDS[0], size=(320, 240))
    first = _submit_image(client, orgs, data, key="k-1")
    again = _submit_image(client, orgs, data, key="k-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["content"]["id"] == first.json()["content"]["id"]
    clash = _submit_image(client, orgs, _jpeg(99), key="k-1")
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "idempotency_key_reused"
    # the key is per organisation: beta may use the same one
    assert _submit_image(client, orgs, data, key="k-1", org="beta").status_code == 201
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ContentItem)) == 2
        assert s.scalar(select(func.count()).select_from(Decision)) == 2


def test_concurrent_retries_with_one_key_store_one_item(client, orgs, db):
    data = _jpeg(BANKED_SEEDS[1])
    results = []

    def go():
        results.append(_submit_image(client, orgs, data, key="same").status_code)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count(201) == 1 and set(results) <= {200, 201}
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ContentItem)) == 1
        assert s.scalar(select(func.count()).select_from(Decision)) == 1


def _truncated_jpeg() -> bytes:
    return _jpeg(5)[:2000]


def _gif_named_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "GIF")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"files": {"file": ("x.jpg", b"", "image/jpeg")}, "data": {"content_id": "x"}}, 422, "empty_content"),
        ({"files": {"file": ("x.jpg", _truncated_jpeg(), "image/jpeg")}, "data": {"content_id": "x"}}, 422,
         "corrupt_content"),
        ({"files": {"file": ("x.bin", b"\x00\x01binary" * 50, "image/jpeg")}, "data": {"content_id": "x"}}, 415,
         "unsupported_content"),
        ({"files": {"file": ("x.jpg", _jpeg(1), "image/jpeg")}, "data": {}}, 400, "missing_content_id"),
        ({"files": {"file": ("x.jpg", _jpeg(1), "image/jpeg")}, "data": {"content_id": "x", "text": "hi"}}, 400,
         "missing_content"),
        ({"json": {"content_id": "x"}}, 400, "missing_content"),
        ({"json": {"content_id": "x", "text": "hello", "jurisdictions": ["XX"]}}, 400, "invalid_jurisdiction"),
        ({"json": {"content_id": "x", "text": "hello", "surface": "billboard"}}, 400, "invalid_surface"),
        ({"json": {"content_id": "x", "text": "hello", "language": "not a tag"}}, 400, "invalid_language"),
        ({"json": {"content_id": "x", "text": "hello", "colour": "red"}}, 400, "unknown_field"),
        ({"json": {"content_id": "x\n", "text": "hello"}}, 400, "invalid_content_id"),
        ({"json": {"content_id": "x", "url": "javascript:alert(1)"}}, 400, None),
        ({"json": {"content_id": "x", "url": "http://exa mple.com/"}}, 400, None),
        ({"json": ["not", "an", "object"]}, 400, "invalid_json"),
        ({"content": b"{broken", "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
    ],
)
def test_bad_input_is_refused_with_a_code_and_nothing_is_stored(client, orgs, db, kwargs, status, code):
    kwargs = dict(kwargs)  # parameters are shared by the SQLite and PostgreSQL runs
    headers = {**_h(orgs), **kwargs.pop("headers", {})}
    r = client.post("/v1/content", headers=headers, **kwargs)
    assert r.status_code == status, r.text
    if code:
        assert r.json()["error"]["code"] == code
    else:
        assert r.json()["error"]["code"].startswith("url_") or r.json()["error"]["code"].startswith("invalid")
    with db.session() as s:
        for model in (ContentItem, Decision, Job, ContentBlob, Event):
            assert s.scalar(select(func.count()).select_from(model)) == 0


def test_huge_body_is_refused_before_it_is_read(db, monkeypatch, orgs):
    monkeypatch.setenv("BASTION_MAX_UPLOAD_BYTES", "10000")
    from bastion.settings import get_settings, reset_settings_cache

    reset_settings_cache()
    with TestClient(create_app(db, get_settings())) as c:
        r = c.post("/v1/content", files={"file": ("big.jpg", b"\xff" * 20000)}, data={"content_id": "x"},
                   headers=_h(orgs))
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

        def chunks():
            for _ in range(40):
                yield b"a" * 1000

        r = c.post("/v1/content", content=chunks(), headers={**_h(orgs), "content-type": "application/json"})
        assert r.status_code == 413
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ContentItem)) == 0


def test_submit_needs_submit_scope(client, db, orgs):
    _, key = AccountService(db).create_api_key("alpha", "curator", ["curate"])
    r = client.post("/v1/content", json={"content_id": "x", "text": "t"}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403


def test_video_is_queued_and_decided_by_a_worker(client, orgs, db, settings, tmp_path):
    samples.generate_video(tmp_path / "v.mp4", seconds=2)
    r = client.post("/v1/content", files={"file": ("v.mp4", (tmp_path / "v.mp4").read_bytes(), "video/mp4")},
                    data={"content_id": "v-1"}, headers=_h(orgs))
    assert r.status_code == 202, r.text
    item = r.json()["content"]
    assert item["status"] == "pending" and item["decision"] is None
    with db.session() as s:
        assert s.get(ContentBlob, item["id"]) is not None
    worker = Worker(db, settings)
    assert worker.run_once() >= 1
    got = client.get(f"/v1/content/{item['id']}", headers=_h(orgs)).json()["content"]
    assert got["status"] == "decided" and got["decision"]["outcome"] == "allow"
    assert any(s["type"] == "vpdq" for s in got["signals"])
    with db.session() as s:
        assert s.get(ContentBlob, item["id"]) is None  # bytes dropped once decided
        assert s.scalars(select(Job)).one().status == "done"
    assert worker.run_once() == 0


def test_corrupt_video_fails_cleanly_in_the_worker(client, orgs, db, settings, tmp_path):
    samples.generate_video(tmp_path / "v.mp4", seconds=2)
    video = (tmp_path / "v.mp4").read_bytes()
    broken = video[: len(video) // 3]
    r = client.post("/v1/content", files={"file": ("v.mp4", broken, "video/mp4")}, data={"content_id": "v-2"},
                    headers=_h(orgs))
    assert r.status_code == 202, r.text
    Worker(db, settings).run_once()
    got = client.get(f"/v1/content/{r.json()['content']['id']}", headers=_h(orgs)).json()["content"]
    assert got["status"] == "failed" and got["error"]["code"]
    with db.session() as s:
        assert [e.type for e in s.scalars(select(Event))] == ["content.failed"]


def test_organisation_settings(client, orgs):
    r = client.get("/v1/organisation", headers=_h(orgs))
    assert r.status_code == 200 and r.json()["organisation"]["url_fetch_enabled"] is False
    r = client.patch("/v1/organisation", json={"url_fetch_enabled": True}, headers=_h(orgs))
    assert r.json()["organisation"]["url_fetch_enabled"] is True
    assert client.get("/v1/organisation", headers=_h(orgs, "beta")).json()["organisation"]["url_fetch_enabled"] is False


class _ImageServer:
    """A loopback HTTP server answering every GET with one JPEG."""

    def __init__(self, body: bytes) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/photo.jpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _app_with(db, monkeypatch, **env):
    from bastion.settings import get_settings, reset_settings_cache

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_settings_cache()
    return get_settings()


def test_url_is_not_fetched_unless_the_organisation_enabled_it(db, orgs, monkeypatch):
    settings = _app_with(db, monkeypatch, BASTION_FETCH_ALLOW_PRIVATE="true")
    server = _ImageServer(_jpeg(BANKED_SEEDS[0], size=(400, 300)))
    try:
        with TestClient(create_app(db, settings)) as c:
            r = c.post("/v1/content", json={"content_id": "u-1", "url": server.url}, headers=_h(orgs))
            assert r.status_code == 201, r.text  # decided on the URL's own signals, never fetched
            assert r.json()["content"]["decision"]["outcome"] == "allow"
            assert Worker(db, settings).run_once() == 0
            assert server.hits == 0

            assert c.patch("/v1/organisation", json={"url_fetch_enabled": True}, headers=_h(orgs)).status_code == 200
            r = c.post("/v1/content", json={"content_id": "u-2", "url": server.url}, headers=_h(orgs))
            assert r.status_code == 202, r.text
            Worker(db, settings).run_once()
            got = c.get(f"/v1/content/{r.json()['content']['id']}", headers=_h(orgs)).json()["content"]
            assert server.hits == 1, got
            assert got["status"] == "decided" and got["decision"]["outcome"] == "remove"
            assert got["decision"]["evidence"]["matches"][0]["bank"] == "alpha-known"
    finally:
        server.server.shutdown()


@pytest.mark.parametrize("url", ["http://127.0.0.1/photo.jpg", "http://169.254.169.254/latest/meta-data/",
                                 "http://[::ffff:10.0.0.1]/x.jpg"])
def test_url_fetch_refuses_private_addresses(db, orgs, monkeypatch, url):
    settings = _app_with(db, monkeypatch)  # SSRF protection on (the default)
    with TestClient(create_app(db, settings)) as c:
        c.patch("/v1/organisation", json={"url_fetch_enabled": True}, headers=_h(orgs))
        r = c.post("/v1/content", json={"content_id": "u-3", "url": url}, headers=_h(orgs))
        assert r.status_code == 202, r.text
        Worker(db, settings).run_once()
        got = c.get(f"/v1/content/{r.json()['content']['id']}", headers=_h(orgs)).json()["content"]
        assert got["status"] == "failed" and got["error"]["code"] == "url_forbidden_address", got
        assert got["decision"] is None


def test_metrics_count_submissions_and_decisions(client, orgs, db):
    _submit_image(client, orgs, _jpeg(BANKED_SEEDS[0], size=(320, 240)), content_id="m-1")
    _submit_image(client, orgs, _jpeg(99), content_id="m-2")
    _, key = AccountService(db).create_api_key("alpha", "prometheus", ["metrics"])
    text = client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).text
    assert 'bastion_decisions_total{outcome="remove"} 1.0' in text
    assert 'bastion_decisions_total{outcome="allow"} 1.0' in text
    assert 'bastion_matches_total{bank="alpha-known"} 1.0' in text
    assert 'bastion_submissions_total{content_type="image",source="upload"} 2.0' in text
    assert "bastion_hash_duration_seconds_count 2.0" in text
    assert 'bastion_jobs{status="queued"} 0.0' in text


def test_banked_url_is_removed_in_the_request_without_fetching(client, db, orgs):
    from bastion.signals import compute_all as signals_of

    url = "https://files.example.org/propaganda-standin.mp4?utm_source=x"
    BankService(db, organisation_id=orgs["alpha"][0]).add_entry(
        "alpha-known", signals_of(Content.from_url(url)), labels={"category": "branded_publication"}
    )
    client.patch("/v1/organisation", json={"url_fetch_enabled": True}, headers=_h(orgs))
    r = client.post("/v1/content", json={"content_id": "u-9", "url": "HTTPS://files.example.org/propaganda-standin.mp4"},
                    headers=_h(orgs))
    assert r.status_code == 201, r.text  # the canonical URL matched: no fetch needed, decided now
    decision = r.json()["content"]["decision"]
    assert decision["outcome"] == "remove" and decision["evidence"]["matches"][0]["signal_type"] in ("url", "url_md5")


def test_decisions_and_settings_changes_are_audited(client, orgs, db):
    from bastion import audit

    item = _submit_image(client, orgs, _jpeg(BANKED_SEEDS[0], size=(320, 240)), content_id="aud-1").json()["content"]
    client.patch("/v1/organisation", json={"url_fetch_enabled": True}, headers=_h(orgs))
    records = {r["action"]: r for r in audit.list_records(db, limit=None)}
    made = records["decision_made"]
    assert made["target"] == f"content:{item['id']}" and made["organisation_id"] == orgs["alpha"][0]
    assert made["details"]["outcome"] == "remove" and made["details"]["matches"][0][0] == "alpha-known"
    assert records["organisation_updated"]["details"] == {"url_fetch_enabled": True}
    assert audit.verify(db).ok


def test_worker_decides_a_batch_in_one_pass_and_sets_a_bad_file_apart(db, orgs, monkeypatch, tmp_path):
    settings = _app_with(db, monkeypatch, BASTION_INLINE_DECISION_BYTES="1")  # everything goes to the queue
    samples.generate_video(tmp_path / "v.mp4", seconds=2)
    broken = (tmp_path / "v.mp4").read_bytes()[:3000]
    with TestClient(create_app(db, settings)) as c:
        ids = [_submit_image(c, orgs, _jpeg(seed), content_id=f"b-{seed}").json()["content"]["id"]
               for seed in (BANKED_SEEDS[0], 31, 32, 33)]
        bad = c.post("/v1/content", files={"file": ("v.mp4", broken, "video/mp4")}, data={"content_id": "b-bad"},
                     headers=_h(orgs)).json()["content"]["id"]
        assert Worker(db, settings, batch=8).run_once() >= 5
        got = {i: c.get(f"/v1/content/{i}", headers=_h(orgs)).json()["content"] for i in [*ids, bad]}
    assert [got[i]["decision"]["outcome"] for i in ids] == ["remove", "allow", "allow", "allow"]
    assert got[bad]["status"] == "failed" and got[bad]["decision"] is None
    with db.session() as s:
        assert {j.status for j in s.scalars(select(Job))} == {"done"}
        assert s.scalar(select(func.count()).select_from(ContentBlob)) == 0
        assert s.scalar(select(func.count()).select_from(Decision)) == 4


def test_worker_prunes_the_outbox_hourly(db, orgs, settings):
    from datetime import timedelta

    from bastion.storage.models import Webhook, WebhookDelivery, utcnow
    from bastion.webhooks import emit

    with db.session() as s:
        hook = Webhook(organisation_id=orgs["alpha"][0], url="https://receiver.example/", secret_encrypted="x",
                       events=[], enabled=True)
        s.add(hook)
        s.flush()
        emit(s, orgs["alpha"][0], "decision.made", {"n": 1})
        emit(s, orgs["alpha"][0], "decision.made", {"n": 2})
    with db.session() as s:
        old, pending = s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        old.status, old.last_attempt_at = "delivered", utcnow() - timedelta(days=31)
        s.get(Event, old.event_id).created_at = utcnow() - timedelta(days=31)
    worker = Worker(db, settings)
    assert worker._maintain(now=1.0) is True
    assert worker._maintain(now=2.0) is False  # not again within the hour
    with db.session() as s:
        assert [d.status for d in s.scalars(select(WebhookDelivery))] == ["pending"]
        assert s.scalar(select(func.count()).select_from(Event)) == 1
