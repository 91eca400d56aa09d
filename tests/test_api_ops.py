"""Operations endpoints (api/ops.py), JSON logs (bastion.logging) and ``bastion --version``."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bastion import __version__
from bastion.accounts.service import AccountService
from bastion.api.app import create_app
from bastion.banks.service import BankService
from bastion.cli.main import app as cli_app
from bastion.logging import JsonFormatter, configure_logging
from bastion.signals import Signal
from bastion.storage.db import Database, make_engine


@pytest.fixture
def client(db, settings):
    with TestClient(create_app(db, settings)) as c:
        yield c


def _key(db, scopes: list[str]) -> dict[str, str]:
    svc = AccountService(db)
    if "ops" not in {o.name for o in svc.list_organisations()}:
        svc.create_organisation("ops")
    return {"Authorization": f"Bearer {svc.create_api_key('ops', 'k', scopes)[1]}"}


def _sample(text: str, name: str, labels: dict[str, str]) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_healthz_needs_no_key(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "version": __version__}


def test_readyz_ok_on_migrated_db(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ready"] is True
    assert body["checks"]["database"]["ok"] and body["checks"]["migrations"]["ok"]
    assert body["checks"]["migrations"]["current"] == body["checks"]["migrations"]["head"] != []
    assert body["checks"]["index"] == {"ok": True, "loaded": False, "note": body["checks"]["index"]["note"]}


def test_readyz_reports_matcher_lag(db, settings, client):
    bank = BankService(db).create_bank("lag")
    matcher = client.app.state.live_matcher.matcher  # loads it
    index = client.get("/readyz").json()["checks"]["index"]
    assert index["loaded"] and index["signals_behind"] == 0 and index["changes_behind"] == 0
    BankService(db).add_entry(bank.name, [Signal("pdq", "f" * 64)])
    index = client.get("/readyz").json()["checks"]["index"]
    assert index["signals_behind"] == 1 and index["changes_behind"] >= 0
    matcher.refresh()
    index = client.get("/readyz").json()["checks"]["index"]
    assert index["signals_behind"] == 0 and index["changes_behind"] == 0


def test_readyz_503_when_database_unreachable(tmp_path, settings):
    gone = tmp_path / "gone"
    gone.mkdir()
    db = Database(make_engine(f"sqlite:///{gone / 'db.sqlite3'}"))
    gone.rmdir()
    with TestClient(create_app(db, settings)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        checks = r.json()["checks"]
        assert checks["database"]["ok"] is False and checks["migrations"]["ok"] is False
        assert c.get("/healthz").status_code == 200  # alive even so
    db.engine.dispose()


def test_readyz_503_when_not_migrated(tmp_path, settings):
    db = Database(make_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}"))
    with TestClient(create_app(db, settings)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        checks = r.json()["checks"]
        assert checks["database"]["ok"] is True
        assert checks["migrations"]["ok"] is False and checks["migrations"]["current"] == []
    db.engine.dispose()


def test_metrics_needs_metrics_or_admin_scope(db, client):
    r = client.get("/metrics")
    assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthenticated")
    r = client.get("/metrics", headers=_key(db, ["submit", "curate"]))
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden_scope")
    for scopes in (["metrics"], ["admin"]):
        r = client.get("/metrics", headers=_key(db, scopes))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")


def test_metrics_content(db, client):
    BankService(db).create_bank("metrics-bank")
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    client.get("/v1/me", headers={"Authorization": "Bearer bst_aaaaaaaa_" + "x" * 43})
    client.get("/v1/me")
    text = client.get("/metrics", headers=_key(db, ["metrics"])).text
    assert _sample(text, "bastion_http_requests_total", {"method": "GET", "route": "/healthz", "status": "200"}) == 3
    assert _sample(text, "bastion_http_requests_total", {"method": "GET", "route": "/v1/me", "status": "401"}) == 2
    assert _sample(text, "bastion_auth_failures_total", {"code": "invalid_api_key"}) == 1
    assert _sample(text, "bastion_auth_failures_total", {"code": "unauthenticated"}) == 1
    assert _sample(text, "bastion_bank_signals", {"bank": "metrics-bank"}) == 0
    assert "bastion_http_request_duration_seconds_bucket{" in text
    assert "process_cpu_seconds_total" in text or "process_" in text


def test_each_app_has_its_own_registry(db, settings):
    with TestClient(create_app(db, settings)) as a, TestClient(create_app(db, settings)) as b:
        a.get("/healthz")
        text = b.get("/metrics", headers=_key(db, ["metrics"])).text
        assert (
            _sample(text, "bastion_http_requests_total", {"method": "GET", "route": "/healthz", "status": "200"})
            is None
        )


def test_request_id_echoed_or_assigned(client):
    r = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    generated = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    bad = client.get("/healthz", headers={"X-Request-ID": "evil value\twith junk"}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", bad)
    assert client.get("/no-such-path").headers["x-request-id"]


def test_json_log_line_carries_request_id(db, settings):
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("json", stream=stream)
        app = create_app(db, settings)

        @app.get("/_logtest")
        def _logtest() -> dict[str, str]:
            logging.getLogger("bastion.test").info("hello %s", "world")
            return {}

        with TestClient(app) as c:
            rid = c.get("/_logtest", headers={"X-Request-ID": "req-42"}).headers["x-request-id"]
        lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
        ours = [x for x in lines if x["logger"] == "bastion.test"]
        assert len(ours) == 1
        assert ours[0]["message"] == "hello world" and ours[0]["level"] == "info"
        assert ours[0]["request_id"] == rid == "req-42" and ours[0]["ts"]
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


def test_json_formatter_outside_request_and_bad_format():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "plain", None, None)
    out = json.loads(JsonFormatter().format(record))
    assert out["level"] == "warning" and out["message"] == "plain" and "request_id" not in out
    with pytest.raises(ValueError):
        configure_logging("xml")


def test_cli_version_option():
    result = CliRunner().invoke(cli_app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == __version__
