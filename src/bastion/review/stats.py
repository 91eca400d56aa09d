"""The review dashboard's numbers for one organisation: how deep the queues are, how fast people decide, how often
they are overturned, and where the service levels slip.

Every number is an aggregate computed by the database (a handful of ``GROUP BY`` queries over indexed columns), so
the dashboard costs the same whether an organisation has a hundred items or a million. Percentiles are nearest-rank
(the value at rank ``ceil(p * n)``), computed with window functions that SQLite and PostgreSQL share: both
databases give the same answer for the same rows.

- ``queues``: per queue, open and leased items, the oldest waiting item's age, items open past their queue's
  ``sla_minutes`` (``sla_breaches``) or past an authority order's deadline (``past_deadline``).
- ``decisions_per_hour``: review decisions in each clock hour of the window (a series, oldest first).
- ``time_to_decision``: per queue (and ``all``), decisions in the window with median and p90 seconds from
  entering the queue to the decision, and how many were decided later than the queue's SLA (``late``).
- ``appeals``: decided in the window, overturned, ``overturn_rate`` = overturned / decided.
- ``qa``: second looks in the window, disagreements, ``disagreement_rate``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, literal, or_, select
from sqlalchemy.orm import Session

from bastion.errors import InvalidInput
from bastion.review.routing import BUILT_IN_QUEUES
from bastion.storage.db import Database
from bastion.storage.models import Appeal, ReviewDecision, ReviewItem, ReviewQueue, as_utc, utcnow

WINDOWS: dict[str, timedelta] = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
DEFAULT_WINDOW = "24h"
WAITING = ("open", "leased")


def parse_window(value: str | None) -> timedelta:
    """``24h`` (the default) or ``7d``; anything else is InvalidInput ``invalid_window``."""
    if value is None or value == "":
        return WINDOWS[DEFAULT_WINDOW]
    if value not in WINDOWS:
        raise InvalidInput(f"window must be one of {', '.join(WINDOWS)}", code="invalid_window")
    return WINDOWS[value]


def _iso(dt: datetime | None) -> str | None:
    return as_utc(dt).isoformat().replace("+00:00", "Z") if dt is not None else None


def _epoch(session: Session, column: Any) -> Any:
    """Whole seconds since 1970 of a datetime column, in SQL (the two databases spell it differently)."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", column)), Integer)
    return cast(func.strftime("%s", column), Integer)


def queue_depths(session: Session, organisation_id: int, now: datetime, sla: dict[str, int | None]) -> list[dict]:
    """Per queue with waiting items (plus every defined and built-in queue, at zero): see the module docstring."""
    breach = [
        and_(ReviewItem.queue == name, ReviewItem.created_at < now - timedelta(minutes=minutes))
        for name, minutes in sla.items()
        if minutes
    ]
    rows = session.execute(
        select(
            ReviewItem.queue,
            func.count().label("waiting"),
            func.sum(case((ReviewItem.status == "leased", 1), else_=0)).label("leased"),
            func.min(ReviewItem.created_at).label("oldest"),
            func.sum(case((or_(*breach), 1), else_=0) if breach else literal(0)).label("breaches"),
            func.sum(case((ReviewItem.deadline_at < now, 1), else_=0)).label("past_deadline"),
        )
        .where(ReviewItem.organisation_id == organisation_id, ReviewItem.status.in_(WAITING))
        .group_by(ReviewItem.queue)
    ).all()
    found = {r.queue: r for r in rows}
    out = []
    for name in sorted(set(found) | set(sla) | set(BUILT_IN_QUEUES)):
        r = found.get(name)
        oldest = as_utc(r.oldest) if r is not None and r.oldest is not None else None
        waiting = int(r.waiting) if r is not None else 0
        leased = int(r.leased or 0) if r is not None else 0
        out.append(
            {
                "queue": name,
                "open": waiting - leased,
                "leased": leased,
                "oldest_at": _iso(oldest),
                "oldest_age_seconds": round((now - oldest).total_seconds(), 3) if oldest else None,
                "sla_minutes": sla.get(name),
                "sla_breaches": int(r.breaches or 0) if r is not None else 0,
                "past_deadline": int(r.past_deadline or 0) if r is not None else 0,
            }
        )
    return out


def decisions_per_hour(session: Session, organisation_id: int, start: datetime, hours: int) -> list[dict]:
    """Review decisions in each clock hour from ``start`` (aligned to an hour), ``hours`` buckets, zeros included."""
    bucket = ((_epoch(session, ReviewDecision.created_at) - int(start.timestamp())) // 3600).label("bucket")
    rows = session.execute(
        select(bucket, func.count())
        .where(ReviewDecision.organisation_id == organisation_id, ReviewDecision.created_at >= start)
        .group_by(bucket)
    ).all()
    counts = {int(b): int(n) for b, n in rows}
    return [{"hour": _iso(start + timedelta(hours=i)), "decisions": counts.get(i, 0)} for i in range(hours)]


def time_to_decision(session: Session, organisation_id: int, since: datetime, sla: dict[str, int | None]) -> list[dict]:
    """Per queue of the decided item, and ``all``: count, mean, median and p90 seconds, and ``late`` (decided
    after the queue's SLA). Nearest-rank percentiles with window functions (one pass, in the database)."""
    late_if = [
        and_(ReviewItem.queue == name, ReviewDecision.seconds > minutes * 60.0)
        for name, minutes in sla.items()
        if minutes
    ]
    base = (
        select(
            ReviewItem.queue.label("queue"),
            ReviewDecision.seconds.label("seconds"),
            (case((or_(*late_if), 1), else_=0) if late_if else literal(0)).label("late"),
        )
        .join(ReviewItem, ReviewItem.id == ReviewDecision.item_id)
        .where(ReviewDecision.organisation_id == organisation_id, ReviewDecision.created_at >= since)
        .subquery()
    )
    out: list[dict[str, Any]] = []
    for per_queue in (True, False):
        part = [base.c.queue] if per_queue else []
        ranked = select(
            (base.c.queue if per_queue else literal("all")).label("queue"),
            base.c.seconds,
            base.c.late,
            func.row_number().over(partition_by=part, order_by=base.c.seconds).label("rn"),
            func.count().over(partition_by=part).label("n"),
        ).subquery()
        q = (
            select(
                ranked.c.queue,
                func.count(),
                func.avg(ranked.c.seconds),
                func.min(case((ranked.c.rn >= ranked.c.n * 0.5, ranked.c.seconds))),
                func.min(case((ranked.c.rn >= ranked.c.n * 0.9, ranked.c.seconds))),
                func.sum(ranked.c.late),
            )
            .group_by(ranked.c.queue)
            .order_by(ranked.c.queue)
        )
        for queue, n, mean, p50, p90, late in session.execute(q):
            out.append(
                {
                    "queue": queue,
                    "decisions": int(n),
                    "mean_seconds": _round(mean),
                    "median_seconds": _round(p50),
                    "p90_seconds": _round(p90),
                    "late": int(late or 0),
                }
            )
    return out


def _round(v: Any) -> float | None:
    return round(float(v), 3) if v is not None else None


def appeal_outcomes(session: Session, organisation_id: int, since: datetime) -> dict[str, Any]:
    decided, overturned = session.execute(
        select(func.count(), func.sum(case((Appeal.status == "overturned", 1), else_=0))).where(
            Appeal.organisation_id == organisation_id,
            Appeal.status.in_(("upheld", "overturned")),
            Appeal.decided_at >= since,
        )
    ).one()
    waiting = session.scalar(
        select(func.count())
        .select_from(Appeal)
        .where(Appeal.organisation_id == organisation_id, Appeal.status == "open")
    )
    decided, overturned = int(decided or 0), int(overturned or 0)
    return {
        "decided": decided,
        "overturned": overturned,
        "upheld": decided - overturned,
        "open": int(waiting or 0),
        "overturn_rate": round(overturned / decided, 3) if decided else None,
    }


def qa_outcomes(session: Session, organisation_id: int, since: datetime) -> dict[str, Any]:
    checked, disagreed = session.execute(
        select(func.count(), func.sum(case((ReviewDecision.agrees.is_(False), 1), else_=0))).where(
            ReviewDecision.organisation_id == organisation_id,
            ReviewDecision.agrees.is_not(None),
            ReviewDecision.created_at >= since,
        )
    ).one()
    checked, disagreed = int(checked or 0), int(disagreed or 0)
    return {
        "checked": checked,
        "disagreed": disagreed,
        "disagreement_rate": round(disagreed / checked, 3) if checked else None,
    }


def dashboard(
    db: Database, organisation_id: int, *, window: timedelta = WINDOWS[DEFAULT_WINDOW], now: datetime | None = None
) -> dict[str, Any]:
    """Every dashboard number for ``organisation_id`` over ``window`` (ending ``now``); see the module docstring."""
    now = as_utc(now) if now is not None else utcnow()
    hours = max(1, int(window.total_seconds() // 3600))
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)  # clock hours
    since = now - window
    with db.session() as s:
        sla = dict(
            s.execute(
                select(ReviewQueue.name, ReviewQueue.sla_minutes).where(ReviewQueue.organisation_id == organisation_id)
            ).all()
        )
        return {
            "organisation_id": organisation_id,
            "window_hours": hours,
            "since": _iso(since),
            "now": _iso(now),
            "queues": queue_depths(s, organisation_id, now, sla),
            "decisions_per_hour": decisions_per_hour(s, organisation_id, start, hours),
            "time_to_decision": time_to_decision(s, organisation_id, since, sla),
            "appeals": appeal_outcomes(s, organisation_id, since),
            "qa": qa_outcomes(s, organisation_id, since),
        }


__all__ = ["WINDOWS", "dashboard", "parse_window"]
