"""The review dashboard's numbers (bastion.review.stats) from known rows, on SQLite and PostgreSQL (``db``)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from bastion.accounts.service import AccountService
from bastion.errors import InvalidInput
from bastion.review.stats import dashboard, parse_window
from bastion.storage.models import Appeal, ContentItem, ReviewDecision, ReviewItem, ReviewQueue

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
_ext = itertools.count(1)


class Rows:
    """Writes review rows with chosen times for one organisation."""

    def __init__(self, db, org: str) -> None:
        self.db = db
        self.org = AccountService(db).create_organisation(org).id

    def content(self, s) -> int:
        item = ContentItem(organisation_id=self.org, external_id=f"post-{next(_ext)}", source="text", signals=[])
        s.add(item)
        s.flush()
        return item.id

    def waiting(self, queue: str, age: timedelta, *, status: str = "open", deadline: timedelta | None = None) -> None:
        with self.db.session() as s:
            s.add(
                ReviewItem(
                    organisation_id=self.org,
                    content_id=self.content(s),
                    queue=queue,
                    status=status,
                    created_at=NOW - age,
                    deadline_at=NOW + deadline if deadline is not None else None,
                )
            )

    def decided(self, queue: str, at: timedelta, seconds: float, *, agrees: bool | None = None) -> None:
        with self.db.session() as s:
            cid = self.content(s)
            item = ReviewItem(
                organisation_id=self.org,
                content_id=cid,
                queue=queue,
                status="done",
                created_at=NOW - at - timedelta(seconds=seconds),
                done_at=NOW - at,
            )
            s.add(item)
            s.flush()
            s.add(
                ReviewDecision(
                    item_id=item.id,
                    organisation_id=self.org,
                    content_id=cid,
                    reviewer_id=1,
                    verdict="not_violating",
                    seconds=seconds,
                    agrees=agrees,
                    created_at=NOW - at,
                )
            )

    def appeal(self, status: str, decided_ago: timedelta | None) -> None:
        with self.db.session() as s:
            s.add(
                Appeal(
                    organisation_id=self.org,
                    content_id=self.content(s),
                    decision_id=1,
                    status=status,
                    decided_at=NOW - decided_ago if decided_ago is not None else None,
                )
            )

    def queue(self, name: str, sla_minutes: int | None) -> None:
        with self.db.session() as s:
            s.add(ReviewQueue(organisation_id=self.org, name=name, sla_minutes=sla_minutes))


@pytest.fixture
def rows(db):
    alpha = Rows(db, "alpha")
    alpha.queue("fr", 60)
    alpha.queue("de", None)
    # waiting: fr has 3 (two older than its 60-minute SLA, one leased), review has 2 (one past a deadline)
    alpha.waiting("fr", timedelta(minutes=90))
    alpha.waiting("fr", timedelta(minutes=61), status="leased")
    alpha.waiting("fr", timedelta(minutes=5))
    alpha.waiting("review", timedelta(hours=30), deadline=timedelta(minutes=-1))
    alpha.waiting("review", timedelta(minutes=1), deadline=timedelta(hours=2))
    # decided in the last 24 h: fr 10..100 s (one later than 60 min), review 5 s twice; one decided 3 days ago
    for i, secs in enumerate([10, 20, 30, 40, 50, 60, 70, 80, 90, 4000]):
        alpha.decided("fr", timedelta(minutes=10 + i), secs)
    alpha.decided("review", timedelta(hours=2, minutes=5), 5, agrees=True)
    alpha.decided("review", timedelta(hours=2, minutes=10), 5, agrees=False)
    alpha.decided("qa", timedelta(hours=5), 7, agrees=True)
    alpha.decided("fr", timedelta(days=3), 999, agrees=False)
    alpha.appeal("overturned", timedelta(hours=1))
    alpha.appeal("upheld", timedelta(hours=3))
    alpha.appeal("upheld", timedelta(hours=4))
    alpha.appeal("overturned", timedelta(days=2))  # outside 24 h, inside 7 days
    alpha.appeal("open", None)
    # another organisation's rows never count
    beta = Rows(db, "beta")
    beta.queue("fr", 1)
    beta.waiting("fr", timedelta(hours=5))
    beta.decided("fr", timedelta(minutes=3), 1, agrees=False)
    beta.appeal("overturned", timedelta(minutes=3))
    return alpha


def test_queue_depth_oldest_item_and_sla_breaches(db, rows):
    out = dashboard(db, rows.org, now=NOW)
    queues = {q["queue"]: q for q in out["queues"]}
    assert set(queues) == {"appeals", "de", "escalation", "fr", "qa", "review"}
    fr = queues["fr"]
    assert (fr["open"], fr["leased"], fr["sla_minutes"], fr["sla_breaches"]) == (2, 1, 60, 2)
    assert fr["oldest_age_seconds"] == 90 * 60 and fr["oldest_at"] == "2026-03-10T11:00:00Z"
    review = queues["review"]
    assert (review["open"], review["sla_minutes"], review["sla_breaches"], review["past_deadline"]) == (2, None, 0, 1)
    assert review["oldest_age_seconds"] == 30 * 3600
    assert queues["de"] == {
        "queue": "de",
        "open": 0,
        "leased": 0,
        "oldest_at": None,
        "oldest_age_seconds": None,
        "sla_minutes": None,
        "sla_breaches": 0,
        "past_deadline": 0,
    }


def test_time_to_decision_median_p90_and_late_per_queue(db, rows):
    ttd = {t["queue"]: t for t in dashboard(db, rows.org, now=NOW)["time_to_decision"]}
    assert set(ttd) == {"all", "fr", "qa", "review"}
    fr = ttd["fr"]
    assert (fr["decisions"], fr["median_seconds"], fr["p90_seconds"], fr["late"]) == (10, 50, 90, 1)
    assert fr["mean_seconds"] == pytest.approx((450 + 4000) / 10)
    assert (ttd["review"]["decisions"], ttd["review"]["median_seconds"], ttd["review"]["late"]) == (2, 5, 0)
    everything = ttd["all"]  # 5, 5, 7, 10..90, 4000: 13 values
    assert (everything["decisions"], everything["median_seconds"], everything["p90_seconds"]) == (13, 40, 90)
    assert everything["late"] == 1


def test_decisions_per_hour_series(db, rows):
    series = dashboard(db, rows.org, now=NOW)["decisions_per_hour"]
    assert len(series) == 24
    assert series[-1] == {"hour": "2026-03-10T12:00:00Z", "decisions": 10}  # 12:11..12:20
    assert series[0]["hour"] == "2026-03-09T13:00:00Z"
    by_hour = {p["hour"]: p["decisions"] for p in series}
    assert by_hour["2026-03-10T10:00:00Z"] == 2 and by_hour["2026-03-10T07:00:00Z"] == 1
    assert sum(by_hour.values()) == 13
    week = dashboard(db, rows.org, now=NOW, window=parse_window("7d"))
    assert len(week["decisions_per_hour"]) == 168 and sum(p["decisions"] for p in week["decisions_per_hour"]) == 14


def test_overturn_rate_and_qa_disagreement(db, rows):
    out = dashboard(db, rows.org, now=NOW)
    assert out["appeals"] == {"decided": 3, "overturned": 1, "upheld": 2, "open": 1, "overturn_rate": 0.333}
    assert out["qa"] == {"checked": 3, "disagreed": 1, "disagreement_rate": 0.333}
    week = dashboard(db, rows.org, now=NOW, window=parse_window("7d"))
    assert week["appeals"]["overturn_rate"] == 0.5 and week["qa"]["checked"] == 4


def test_an_empty_organisation_has_zeros_and_no_rates(db):
    org = AccountService(db).create_organisation("empty").id
    out = dashboard(db, org, now=NOW)
    assert all(q["open"] == 0 for q in out["queues"]) and out["time_to_decision"] == []
    assert out["appeals"]["overturn_rate"] is None and out["qa"]["disagreement_rate"] is None
    assert sum(p["decisions"] for p in out["decisions_per_hour"]) == 0


def test_window_names():
    assert parse_window(None) == timedelta(hours=24) and parse_window("7d") == timedelta(days=7)
    with pytest.raises(InvalidInput) as err:
        parse_window("1y")
    assert err.value.code == "invalid_window"
