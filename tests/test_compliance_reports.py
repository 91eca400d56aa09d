"""Transparency reports, the compliance dashboard and the compliance API over real HTTP (FastAPI's TestClient on
the app) on SQLite and PostgreSQL: figures counted from real rows, the DSA CSV, HTML charts without script, published
versions that never change, penalties and exposed status, and the routes' codes for bad input."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from bastion.accounts.service import AccountService
from bastion.api.app import create_app
from bastion.compliance import exposure, statements, transparency
from bastion.compliance.complaints import ComplaintService
from bastion.errors import InvalidInput
from bastion.review import Reviewer, ReviewService
from bastion.storage.models import (
    Authority,
    ContentItem,
    Decision,
    Order,
    OrderTarget,
    PreservedContent,
    ReviewItem,
    TransparencyReport,
    utcnow,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _org(db, name: str) -> int:
    return AccountService(db).create_organisation(name).id


def _restriction(
    db,
    org_id: int,
    external_id: str,
    *,
    at: datetime,
    delay: timedelta,
    outcome: str = "remove",
    automated: bool = True,
    matches: bool = True,
    jurisdictions=("FR",),
) -> tuple[int, int]:
    with db.session() as s:
        item = ContentItem(
            organisation_id=org_id,
            external_id=external_id,
            source="upload",
            content_type="image",
            jurisdictions=list(jurisdictions),
            status="decided",
            signals=[],
            created_at=at,
        )
        s.add(item)
        s.flush()
        d = Decision(
            content_id=item.id,
            organisation_id=org_id,
            version=1,
            outcome=outcome,
            restrict_in=["DE"] if outcome == "restrict" else [],
            automated=automated,
            reason="known content",
            evidence={"matches": [{"bank": "known", "entry_id": 1}]} if matches else {},
            created_at=at + delay,
        )
        s.add(d)
        s.flush()
        return item.id, d.id


def _order(
    db,
    org_id: int,
    authority_id: int,
    ref: str,
    *,
    received: datetime,
    status: str = "executed",
    executed_after: timedelta | None = timedelta(minutes=10),
    reason: str | None = None,
    decision_id: int | None = None,
    content_id: int | None = None,
) -> int:
    with db.session() as s:
        o = Order(
            authority_id=authority_id,
            organisation_id=org_id,
            kind="removal_order",
            reference=ref,
            issuer="OCLCTIC",
            member_state="FR",
            legal_basis="Art. 3 Regulation (EU) 2021/784",
            reasons="propaganda video",
            issued_at=received,
            received_at=received,
            status=status,
            deadline_at=received + timedelta(hours=1),
            cannot_comply_reason=reason,
            executed_at=received + executed_after if executed_after is not None else None,
            confirmed_at=received + executed_after if executed_after is not None else None,
        )
        s.add(o)
        s.flush()
        if decision_id is not None:
            s.add(
                OrderTarget(
                    order_id=o.id,
                    organisation_id=org_id,
                    reference=ref,
                    content_id=content_id,
                    status="removed",
                    decision_id=decision_id,
                )
            )
        return o.id


def _authority(db) -> int:
    org_id = _org(db, "pharos")
    with db.session() as s:
        a = Authority(organisation_id=org_id, kind="competent_authority", member_state="FR")
        s.add(a)
        s.flush()
        return a.id


@pytest.fixture
def platform(db, settings):
    """A platform with a year of activity: automated removals, a reviewed removal, an order, complaints."""
    org_id = _org(db, "alpha")
    authority = _authority(db)
    _restriction(db, org_id, "a1", at=T0, delay=timedelta(milliseconds=400))
    _restriction(db, org_id, "a2", at=T0, delay=timedelta(seconds=5), jurisdictions=("DE", "FR"))
    _restriction(
        db, org_id, "a3", at=T0, delay=timedelta(hours=3), automated=False, matches=False, jurisdictions=("DE",)
    )
    _restriction(db, org_id, "a4", at=T0, delay=timedelta(seconds=30), outcome="restrict")
    cid, did = _restriction(db, org_id, "o1", at=T0, delay=timedelta(minutes=10), automated=False, matches=False)
    _order(db, org_id, authority, "FR-1", received=T0, decision_id=did, content_id=cid)
    _order(
        db,
        org_id,
        authority,
        "FR-2",
        received=T0 + timedelta(days=1),
        status="cannot_comply",
        executed_after=None,
        reason="manifest_error",
    )
    _restriction(db, org_id, "outside", at=T0 - timedelta(days=400), delay=timedelta(seconds=1))  # before the period
    return org_id


def test_the_report_counts_what_happened_in_the_period(db, settings, platform):
    reviewer = AccountService(db).create_user("alpha", "r2@alpha.example", "reviewer")
    complaints = ComplaintService(db, settings)
    with db.session() as s:
        a2 = s.scalar(select(ContentItem.id).where(ContentItem.external_id == "a2"))
        a1 = s.scalar(select(ContentItem.id).where(ContentItem.external_id == "a1"))
    complaints.lodge("api-key:1", platform, a2, regime="dsa", now=T0 + timedelta(days=2))
    complaints.lodge("api-key:1", platform, a1, regime="tco", now=T0 + timedelta(days=2))
    review = ReviewService(db, settings)
    who = Reviewer(reviewer.id, platform, "reviewer", reviewer.email)
    with db.session() as s:
        first = s.scalars(select(ReviewItem).where(ReviewItem.kind == "appeal").order_by(ReviewItem.id)).first()
    review.open_item(who, first.id)
    review.decide(who, first.id, "overturn")  # a2 reinstated after its complaint

    doc = transparency.compute(db, platform, T0 - timedelta(days=1), utcnow() + timedelta(days=1))
    t = doc["tco_article_7"]
    assert (t["items_removed"], t["items_disabled"]) == (4, 1)
    assert t["items_by_source"] == {"hash_match": 3, "classifier": 0, "human_review": 1, "removal_order": 1}
    assert t["removal_orders"] == {
        "received": 2,
        "acted_on": 1,
        "not_acted_on": 1,
        "not_acted_on_reasons": {"manifest_error": 1},
        "referrals_received": 0,
    }
    assert t["complaints"]["received"] == 2 and t["complaints"]["reinstated"] == 1 and t["complaints"]["pending"] == 1
    assert t["complaints"]["by_regime"] == {"dsa": 1, "tco": 1}
    assert t["reinstatements"] == {"after_complaint": 1, "after_appeal": 0, "total": 1}
    charts = doc["charts"]
    assert dict(charts["time_to_removal"]["buckets"]) == {
        "< 1 s": 1,
        "1–10 s": 1,
        "10–60 s": 1,
        "1–10 min": 0,
        "10–60 min": 1,
        "1–24 h": 1,
        "> 24 h": 0,
    }
    assert charts["proactive_share"] == {"proactive": 3, "total": 5, "share": 0.6}
    assert charts["by_jurisdiction"] == {"FR": 4, "DE": 2}
    rows = list(csv.DictReader(io.StringIO(transparency.to_csv(doc))))
    assert list(rows[0]) == list(transparency.CSV_COLUMNS)
    by = {(r["section"], r["field"], r["member_state"]): r["value"] for r in rows}
    assert by[("1.1", "provider", "")] == "alpha"
    assert (
        by[("1.2.1", "number_of_orders", "FR")] == "2"
        and by[("1.2.1", "median_time_to_give_effect_hours", "FR")] == "0.1667"
    )
    assert by[("1.5.1", "decisions_reversed", "")] == "1" and by[("1.4", "items_removed", "")] == "4"
    assert all(r["category"] == "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY" for r in rows if r["section"] != "1.1")

    from bastion.console.transparency_html import standalone

    html = standalone(doc)
    assert html.count("<svg") == 4 and "<script" not in html and " onload" not in html and "Time to removal" in html


def test_a_published_report_is_versioned_and_never_changes(db, settings, platform):
    period = (T0 - timedelta(days=1), T0 + timedelta(days=30))
    first = transparency.publish(db, "user:cco", platform, *period)
    _restriction(db, platform, "late", at=T0 + timedelta(days=3), delay=timedelta(seconds=2))
    second = transparency.publish(db, "user:cco", platform, *period)
    assert (first["version"], second["version"]) == (1, 2) and first["sha256"] != second["sha256"]
    one = transparency.get_published(db, platform, first["id"])
    assert one["document"]["tco_article_7"]["items_removed"] == 4  # as it was when published
    assert transparency.get_published(db, platform, second["id"])["document"]["tco_article_7"]["items_removed"] == 5
    with pytest.raises(InvalidInput) as exc:
        transparency.publish(db, "user:cco", platform, period[1], period[0])
    assert exc.value.code == "invalid_period"
    if db.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="never changes"), db.session() as s:
            s.execute(text("UPDATE transparency_reports SET document = '{}' WHERE id = :id"), {"id": first["id"]})
    else:  # SQLite has no trigger: the hash shows an altered document
        with db.session() as s:
            s.get(TransparencyReport, first["id"]).document = '{"forged": true}'
        with pytest.raises(transparency.ReportTampered):
            transparency.get_published(db, platform, first["id"])


def test_dashboard_shows_clocks_missed_deadlines_exposure_and_penalties(db, settings):
    org_id = _org(db, "alpha")
    authority = _authority(db)
    now = utcnow()
    _order(
        db, org_id, authority, "open-1", received=now - timedelta(minutes=20), status="received", executed_after=None
    )
    _order(db, org_id, authority, "late-1", received=now - timedelta(days=30), executed_after=timedelta(hours=2))
    board = exposure.dashboard(db, org_id, now=now)
    assert [o["reference"] for o in board["open_orders"]] == ["open-1"]
    assert 2350 < board["open_orders"][0]["seconds_left"] <= 2400 and not board["open_orders"][0]["overdue"]
    assert [m["reference"] for m in board["missed_deadlines"]] == ["late-1"]
    assert board["missed_deadlines"][0]["late_seconds"] == 3600
    assert board["exposed"]["exposed"] is False and board["exposed"]["final_orders_12_months"] == 1
    _order(db, org_id, authority, "ok-2", received=now - timedelta(days=100))
    _order(db, org_id, authority, "old", received=now - timedelta(days=400))  # more than 12 months ago
    assert exposure.dashboard(db, org_id, now=now)["exposed"]["final_orders_12_months"] == 2
    assert exposure.dashboard(db, org_id, now=now)["exposed"]["exposed"] is True
    later = exposure.dashboard(db, org_id, now=now + timedelta(hours=1))
    assert later["open_orders"][0]["overdue"] is True
    assert "open-1" in [m["reference"] for m in later["missed_deadlines"]]

    assert board["penalties"]["tco"]["maximum"] is None and board["penalties"]["uk_osa"]["maximum"] == 18_000_000
    exposure.configure(
        db, "user:cco", org_id, {"global_turnover_eur": 2_000_000_000, "qualifying_worldwide_revenue_gbp": 100_000_000}
    )
    p = exposure.penalties(exposure.compliance_config(db, org_id))
    assert (p["tco"]["maximum"], p["dsa"]["maximum"], p["uk_osa"]["maximum"]) == (80_000_000, 120_000_000, 18_000_000)
    exposure.configure(db, "user:cco", org_id, {"qualifying_worldwide_revenue_gbp": 500_000_000})
    assert exposure.penalties(exposure.compliance_config(db, org_id))["uk_osa"]["maximum"] == 50_000_000
    for bad, code in (
        ({"global_turnover_eur": -1}, "invalid_amount"),
        ({"turnover": 1}, "invalid_compliance_setting"),
        ({"dsa_ground": "maybe"}, "invalid_dsa_ground"),
        ({"terms_url": "ftp://x"}, "invalid_terms_url"),
        ({"measures": "text"}, "invalid_measures"),
    ):
        with pytest.raises(InvalidInput) as exc:
            exposure.configure(
                db, "user:cco", org_id, {**bad, "global_turnover_eur": 1} if code != "invalid_amount" else bad
            )
        assert exc.value.code == code
    assert exposure.compliance_config(db, org_id)["global_turnover_eur"] == 2_000_000_000  # nothing half-written


# -- the HTTP API -----------------------------------------------------------------------------------------------------
@pytest.fixture
def client(db, settings):
    with TestClient(create_app(db, settings)) as c:
        yield c


def _key(db, org: str, scopes: list[str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {AccountService(db).create_api_key(org, 'k', scopes)[1]}"}


def _code(r) -> str:
    return r.json()["error"]["code"]


def test_complaints_statements_and_preservation_over_http(db, settings, client):
    org_id = _org(db, "alpha")
    submit, admin = _key(db, "alpha", ["submit"]), _key(db, "alpha", ["admin"])
    preserver = _key(db, "alpha", ["preservation"])
    cid, _ = _restriction(db, org_id, "h1", at=utcnow() - timedelta(minutes=1), delay=timedelta(seconds=1))

    r = client.post(f"/v1/content/{cid}/complaints", json={"regime": "eu"}, headers=submit)
    assert (r.status_code, _code(r)) == (400, "invalid_regime")
    r = client.post(f"/v1/content/{cid}/complaints", json={"regime": "dsa", "reason": "not terrorism"}, headers=submit)
    assert r.status_code == 201 and r.json()["complaint"]["outcome"] == "pending"
    complaint_id = r.json()["complaint"]["id"]
    assert client.get(f"/v1/complaints/{complaint_id}", headers=submit).json()["complaint"]["regime"] == "dsa"
    assert [c["id"] for c in client.get("/v1/complaints?open=true", headers=submit).json()["complaints"]] == [
        complaint_id
    ]

    r = client.get("/v1/compliance/statements", headers=submit)
    assert r.status_code == 403
    body = client.get("/v1/compliance/statements", headers=admin).json()  # sweeps the new restriction first
    assert len(body["statements"]) == 1 and body["next_after"] is None
    r = client.post("/v1/compliance/statements/validate", json={"statements": body["statements"]}, headers=submit)
    assert r.status_code == 200 and r.json() == {"valid": True, "statements": 1}
    broken = [{**body["statements"][0], "automated_detection": "maybe", "puid": ""}]
    r = client.post("/v1/compliance/statements/validate", json={"statements": broken}, headers=submit)
    assert (r.status_code, _code(r)) == (400, "invalid_statements")
    assert set(r.json()["error"]["details"]["errors"]["statement_0"]) == {"automated_detection", "puid"}

    r = client.get("/v1/preservation", headers=admin)
    assert r.status_code == 403  # not even an admin key: only the preservation scope
    listed = client.get("/v1/preservation", headers=preserver).json()["preserved"]
    assert [p["content_id"] for p in listed] == [cid]
    r = client.post(f"/v1/preservation/{listed[0]['id']}/read", json={"purpose": "court order 12"}, headers=preserver)
    assert r.status_code == 200 and r.json()["preserved"]["package"]["content"]["external_id"] == "h1"
    r = client.post(
        f"/v1/preservation/{listed[0]['id']}/extend",
        json={"until": "2020-01-01T00:00:00Z", "requested_by": "court", "reference": "x"},
        headers=preserver,
    )
    assert (r.status_code, _code(r)) == (400, "extension_not_later")

    r = client.post(
        f"/v1/content/{cid}/notice-delay", json={"requested_by": "OCLCTIC", "reference": "R"}, headers=admin
    )
    assert (r.status_code, _code(r)) == (409, "notice_already_sent")
    assert client.get("/v1/compliance/notices", headers=admin).json()["notices"][0]["status"] == "sent"


def test_transparency_and_dashboard_over_http(db, settings, client, platform):
    admin = _key(db, "alpha", ["admin"])
    q = "from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z"
    doc = client.get(f"/v1/compliance/transparency?{q}", headers=admin).json()
    assert doc["tco_article_7"]["items_removed"] == 4
    r = client.get(f"/v1/compliance/transparency?{q}&format=csv", headers=admin)
    assert r.headers["content-type"].startswith("text/csv") and r.text.startswith("section,field,")
    r = client.get(f"/v1/compliance/transparency?{q}&format=html", headers=admin)
    assert r.headers["content-type"].startswith("text/html") and "<script" not in r.text
    for bad, code in (
        ("from=2025-02-01T00:00:00Z&to=2025-01-01T00:00:00Z", "invalid_period"),
        ("to=2025-01-01T00:00:00Z", "invalid_period"),
        (f"{q}&format=pdf", "invalid_format"),
    ):
        r = client.get(f"/v1/compliance/transparency?{bad}", headers=admin)
        assert (r.status_code, _code(r)) == (400, code)
    r = client.post(
        "/v1/compliance/transparency",
        json={"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        headers=admin,
    )
    assert r.status_code == 201 and r.json()["report"]["version"] == 1
    rid = r.json()["report"]["id"]
    got = client.get(f"/v1/compliance/transparency/reports/{rid}", headers=admin).json()["report"]
    assert got["document"]["tco_article_7"]["items_removed"] == 4
    assert client.get(f"/v1/compliance/transparency/reports/{rid}?format=csv", headers=admin).text.startswith(
        "section,"
    )
    assert [x["id"] for x in client.get("/v1/compliance/transparency/reports", headers=admin).json()["reports"]] == [
        rid
    ]
    r = client.put("/v1/compliance/settings", json={"global_turnover_eur": 1_000_000_000}, headers=admin)
    assert r.json()["compliance"] == {"global_turnover_eur": 1_000_000_000}
    board = client.get("/v1/compliance/dashboard", headers=admin).json()
    assert board["penalties"]["dsa"]["maximum"] == 60_000_000 and board["exposed"]["final_orders_12_months"] == 0
    r = client.put("/v1/compliance/settings", json={"global_turnover_eur": "lots"}, headers=admin)
    assert (r.status_code, _code(r)) == (400, "invalid_amount")


def test_the_worker_runs_the_sweep(db, settings):
    from bastion.jobs.worker import Worker

    org_id = _org(db, "alpha")
    _restriction(db, org_id, "w1", at=utcnow(), delay=timedelta(seconds=1))
    worker = Worker(db, settings)
    try:
        worker.run_once()
        assert worker._compliance() is False  # not again before BASTION_COMPLIANCE_SWEEP_SECONDS
    finally:
        worker.matcher.stop_refresher()
    with db.session() as s:
        assert s.scalar(select(PreservedContent.decision_id)) is not None
    found = _statements(db)
    assert len(found) == 1 and statements.validate(found) == {}


def _statements(db) -> list[dict]:
    from bastion.storage.models import StatementOfReasons

    with db.session() as s:
        return [r.statement for r in s.scalars(select(StatementOfReasons))]
