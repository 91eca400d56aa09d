"""Transparency reports: the TCO Art. 7 annual report and the DSA figures for terrorist content.

:func:`compute` counts, in the database, what one organisation did in a period ``[from, to)``:

- TCO Regulation (EU) 2021/784, Art. 7(3): the measures taken (the organisation's ``compliance.measures`` text, or a
  description of what Bastion does), the items removed or disabled (by how they were found), the removal orders
  received and those not acted on with the reasons, the complaints and their outcomes, and the reinstatements;
- DSA figures for the category ``STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY`` / ``KEYWORD_TERRORIST_CONTENT`` in the
  sections of the quantitative template of Implementing Regulation (EU) 2024/2835 that concern it (1.2.1 Member
  State orders to act against illegal content, 1.4 own-initiative moderation, 1.5.1 internal complaints, 1.6
  automated means), written by :func:`to_csv` as one row per figure;
- the series the HTML report charts: time to removal, proactive-detection share, volumes by source and by
  jurisdiction.

:func:`publish` stores a report's JSON document verbatim with its SHA-256; publishing the same period again makes the
next version, and nothing ever updates a published one (on PostgreSQL a trigger refuses it; :func:`get_published`
checks the hash on every read).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import statistics
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastion import audit
from bastion.errors import BastionError, InvalidInput, NotFound
from bastion.storage.db import Database
from bastion.storage.models import (
    Appeal,
    Complaint,
    ContentItem,
    Decision,
    Order,
    OrderTarget,
    Organisation,
    TransparencyReport,
    as_utc,
    utcnow,
)

CATEGORY = "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY"
KEYWORD = "KEYWORD_TERRORIST_CONTENT"
RESTRICTIONS = ("remove", "restrict")
DEFAULT_MEASURES = (
    "Uploads are hashed (PDQ, vPDQ, MD5/SHA-256, text MinHash) and matched against banks of known terrorist content, "
    "including hashes shared through an industry forum; matches are removed or sent to review by the platform's "
    "rules.",
    "Text is checked against the UN, UK and EU lists of designated organisations and by semantic similarity to "
    "known texts; uncertain items go to trained reviewers.",
    "Reviewed terrorist content is banked so that re-uploads are blocked automatically.",
    "Removal orders from competent authorities are executed within one hour; referrals are assessed against the "
    "terms of service.",
)
# time-to-removal buckets: (label, upper bound in seconds)
BUCKETS = (
    ("< 1 s", 1),
    ("1–10 s", 10),
    ("10–60 s", 60),
    ("1–10 min", 600),
    ("10–60 min", 3600),
    ("1–24 h", 86400),
    ("> 24 h", float("inf")),
)
SOURCES = ("hash_match", "classifier", "human_review", "removal_order")


class ReportTampered(BastionError):
    code = "report_tampered"
    http_status = 500


def _iso(dt: datetime | None) -> str | None:
    return as_utc(dt).isoformat().replace("+00:00", "Z") if dt is not None else None


def check_period(period_from: datetime, period_to: datetime) -> tuple[datetime, datetime]:
    period_from, period_to = as_utc(period_from), as_utc(period_to)
    if period_to <= period_from:
        raise InvalidInput("the period's end must be after its start", code="invalid_period")
    if (period_to - period_from).days > 800:
        raise InvalidInput("a report covers at most two years", code="invalid_period")
    return period_from, period_to


def _source(d: Decision, order_decisions: set[int]) -> str:
    evidence = dict(d.evidence or {})
    if d.id in order_decisions:
        return "removal_order"
    if not d.automated:
        return "human_review"
    if evidence.get("matches"):
        return "hash_match"
    return "classifier"


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def compute(db: Database, organisation_id: int, period_from: datetime, period_to: datetime) -> dict[str, Any]:
    """The report document for ``[period_from, period_to)`` (see the module docstring)."""
    period_from, period_to = check_period(period_from, period_to)
    with db.session() as s:
        org = s.get(Organisation, organisation_id)
        if org is None:
            raise NotFound(f"no organisation {organisation_id}", code="organisation_not_found")
        config = dict((org.config or {}).get("compliance") or {})
        tco, dsa_rows, charts = _figures(s, organisation_id, period_from, period_to)
    measures = config.get("measures")
    return {
        "report": {
            "organisation": org.name,
            "from": _iso(period_from),
            "to": _iso(period_to),
            "generated_at": _iso(utcnow()),
            "regulations": [
                "Regulation (EU) 2021/784, Article 7",
                "Regulation (EU) 2022/2065, Articles 15 and 24; Implementing Regulation (EU) 2024/2835",
            ],
        },
        "tco_article_7": {"measures": list(measures) if isinstance(measures, list) else list(DEFAULT_MEASURES), **tco},
        "dsa": dsa_rows,
        "charts": charts,
    }


def _figures(
    s: Session, org_id: int, since: datetime, until: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    in_period = (Decision.organisation_id == org_id, Decision.created_at >= since, Decision.created_at < until)
    restrictions = s.execute(
        select(Decision, ContentItem.created_at, ContentItem.jurisdictions)
        .join(ContentItem, ContentItem.id == Decision.content_id)
        .where(*in_period, Decision.outcome.in_(RESTRICTIONS))
        .order_by(Decision.id)
    ).all()
    order_decisions = set(
        s.scalars(
            select(OrderTarget.decision_id).where(
                OrderTarget.organisation_id == org_id, OrderTarget.decision_id.is_not(None)
            )
        )
    )
    removed, disabled = set(), set()
    by_source: Counter[str] = Counter()
    by_jurisdiction: Counter[str] = Counter()
    to_removal: list[float] = []
    automated = Counter()
    seen: set[int] = set()
    for d, submitted_at, jurisdictions in restrictions:
        (removed if d.outcome == "remove" else disabled).add(d.content_id)
        if d.content_id in seen:
            continue
        seen.add(d.content_id)
        source = _source(d, order_decisions)
        by_source[source] += 1
        for j in jurisdictions or ["unknown"]:
            by_jurisdiction[j] += 1
        to_removal.append(max(0.0, (as_utc(d.created_at) - as_utc(submitted_at)).total_seconds()))
        detected = bool((d.evidence or {}).get("matches") or (d.evidence or {}).get("classifier_scores") or d.automated)
        automated["fully" if d.automated else "partially" if detected else "not"] += 1

    orders = s.scalars(
        select(Order).where(Order.organisation_id == org_id, Order.received_at >= since, Order.received_at < until)
    ).all()
    binding = [o for o in orders if o.kind == "removal_order"]
    not_acted = [o for o in binding if o.status != "executed"]
    reasons = Counter(o.cannot_comply_reason or o.status for o in not_acted)
    give_effect = [
        (as_utc(o.executed_at) - as_utc(o.received_at)).total_seconds() for o in binding if o.executed_at is not None
    ]
    confirm = [
        (as_utc(o.confirmed_at) - as_utc(o.received_at)).total_seconds() for o in binding if o.confirmed_at is not None
    ]

    complaints = s.execute(
        select(Complaint, Appeal)
        .join(Appeal, Appeal.id == Complaint.appeal_id)
        .where(Complaint.organisation_id == org_id, Complaint.created_at >= since, Complaint.created_at < until)
    ).all()
    outcome = Counter(
        {"open": "pending", "upheld": "rejected", "overturned": "reinstated"}[a.status] for _, a in complaints
    )
    regimes = Counter(c.regime for c, _ in complaints)
    decided_days = [
        (as_utc(a.decided_at) - as_utc(c.created_at)).total_seconds() / 86400
        for c, a in complaints
        if a.decided_at is not None
    ]
    late = sum(1 for c, a in complaints if a.decided_at is not None and as_utc(a.decided_at) > as_utc(c.deadline_at))
    complaint_appeals = set(s.scalars(select(Complaint.appeal_id).where(Complaint.organisation_id == org_id)))
    overturned = s.scalars(
        select(Appeal.id).where(
            Appeal.organisation_id == org_id,
            Appeal.status == "overturned",
            Appeal.decided_at >= since,
            Appeal.decided_at < until,
        )
    ).all()
    after_complaint = sum(1 for a in overturned if a in complaint_appeals)

    tco = {
        "items_removed": len(removed),
        "items_disabled": len(disabled - removed),
        "items_by_source": {k: by_source.get(k, 0) for k in SOURCES},
        "removal_orders": {
            "received": len(binding),
            "acted_on": len(binding) - len(not_acted),
            "not_acted_on": len(not_acted),
            "not_acted_on_reasons": dict(sorted(reasons.items())),
            "referrals_received": len(orders) - len(binding),
        },
        "complaints": {
            "received": len(complaints),
            "by_regime": dict(sorted(regimes.items())),
            "pending": outcome.get("pending", 0),
            "rejected": outcome.get("rejected", 0),
            "reinstated": outcome.get("reinstated", 0),
            "decided_after_deadline": late,
            "median_days_to_decision": _median(decided_days),
        },
        "reinstatements": {
            "after_complaint": after_complaint,
            "after_appeal": len(overturned) - after_complaint,
            "total": len(overturned),
        },
        "legal_proceedings": {"initiated": None, "note": "legal proceedings are not recorded in Bastion"},
    }

    dsa: list[dict[str, Any]] = []

    def row(section: str, field: str, value: Any, member_state: str = "") -> None:
        dsa.append(
            {
                "section": section,
                "field": field,
                "category": CATEGORY,
                "specification": KEYWORD,
                "member_state": member_state,
                "value": "" if value is None else value,
            }
        )

    per_state: dict[str, list[Order]] = {}
    for o in binding:
        per_state.setdefault(o.member_state, []).append(o)
    for state in sorted(per_state):
        os_ = per_state[state]
        row("1.2.1", "number_of_orders", len(os_), state)
        row(
            "1.2.1",
            "median_time_to_inform_receipt_hours",
            _hours([(as_utc(o.confirmed_at) - as_utc(o.received_at)).total_seconds() for o in os_ if o.confirmed_at]),
            state,
        )
        row(
            "1.2.1",
            "median_time_to_give_effect_hours",
            _hours([(as_utc(o.executed_at) - as_utc(o.received_at)).total_seconds() for o in os_ if o.executed_at]),
            state,
        )
    row("1.2.1", "number_of_orders", len(binding), "EU")
    row("1.2.1", "median_time_to_give_effect_hours", _hours(give_effect), "EU")
    row("1.2.1", "median_time_to_inform_receipt_hours", _hours(confirm), "EU")
    own = sum(by_source.get(k, 0) for k in ("hash_match", "classifier", "human_review"))
    row("1.4", "items_restricted_own_initiative", own)
    row("1.4", "items_removed", len(removed))
    row("1.4", "items_disabled", len(disabled - removed))
    row("1.4", "items_detected_by_automated_means", by_source.get("hash_match", 0) + by_source.get("classifier", 0))
    row("1.5.1", "complaints_received", len(complaints))
    row("1.5.1", "decisions_upheld", outcome.get("rejected", 0))
    row("1.5.1", "decisions_reversed", outcome.get("reinstated", 0))
    row("1.5.1", "complaints_pending", outcome.get("pending", 0))
    row("1.5.1", "median_time_to_decision_days", _median(decided_days))
    row("1.6", "decisions_fully_automated", automated.get("fully", 0))
    row("1.6", "decisions_partially_automated", automated.get("partially", 0))
    row("1.6", "decisions_not_automated", automated.get("not", 0))
    restricted = len(seen)
    row("1.6", "reversal_rate_after_complaint", round(after_complaint / restricted, 4) if restricted else None)

    buckets = Counter()
    for seconds in to_removal:
        buckets[next(label for label, upper in BUCKETS if seconds < upper)] += 1
    proactive = by_source.get("hash_match", 0) + by_source.get("classifier", 0)
    charts = {
        "time_to_removal": {
            "buckets": [[label, buckets.get(label, 0)] for label, _ in BUCKETS],
            "median_seconds": _median(to_removal),
            "p90_seconds": round(sorted(to_removal)[int(0.9 * (len(to_removal) - 1))], 3) if to_removal else None,
        },
        "proactive_share": {
            "proactive": proactive,
            "total": restricted,
            "share": round(proactive / restricted, 4) if restricted else None,
        },
        "by_source": {k: by_source.get(k, 0) for k in SOURCES},
        "by_jurisdiction": dict(sorted(by_jurisdiction.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
    return tco, dsa, charts


def _hours(seconds: list[float]) -> float | None:
    return round(statistics.median(seconds) / 3600, 4) if seconds else None


# -- formats ----------------------------------------------------------------------------------------------------------
CSV_COLUMNS = ("section", "field", "category", "specification", "member_state", "value")


def to_csv(document: dict[str, Any]) -> str:
    """The DSA figures, one row per figure (columns :data:`CSV_COLUMNS`), preceded by the report's identification
    rows (section 1.1)."""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    r = document["report"]
    for field, value in (
        ("provider", r["organisation"]),
        ("reporting_period_start", r["from"]),
        ("reporting_period_end", r["to"]),
    ):
        w.writerow(
            {"section": "1.1", "field": field, "category": "", "specification": "", "member_state": "", "value": value}
        )
    for row in document["dsa"]:
        w.writerow(row)
    return out.getvalue()


def canonical(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# -- publishing -------------------------------------------------------------------------------------------------------
def report_dict(r: TransparencyReport, *, with_document: bool = False) -> dict[str, Any]:
    out = {
        "id": r.id,
        "version": r.version,
        "from": _iso(r.period_from),
        "to": _iso(r.period_to),
        "sha256": r.sha256,
        "published_at": _iso(r.published_at),
        "published_by": r.published_by,
    }
    if with_document:
        out["document"] = json.loads(r.document)
    return out


def publish(
    db: Database, actor: str, organisation_id: int, period_from: datetime, period_to: datetime
) -> dict[str, Any]:
    """Compute and store the report for the period as its next version (1, 2, ...)."""
    document = compute(db, organisation_id, period_from, period_to)
    period_from, period_to = check_period(period_from, period_to)
    body = canonical(document)
    digest = hashlib.sha256(body.encode()).hexdigest()
    with db.session() as s:
        version = (
            s.scalar(
                select(func.max(TransparencyReport.version)).where(
                    TransparencyReport.organisation_id == organisation_id,
                    TransparencyReport.period_from == period_from,
                    TransparencyReport.period_to == period_to,
                )
            )
            or 0
        ) + 1
        r = TransparencyReport(
            organisation_id=organisation_id,
            period_from=period_from,
            period_to=period_to,
            version=version,
            document=body,
            sha256=digest,
            published_by=actor,
        )
        s.add(r)
        s.flush()
        audit.append(
            s,
            actor,
            "transparency_report_published",
            f"transparency_report:{r.id}",
            {"from": _iso(period_from), "to": _iso(period_to), "version": version, "sha256": digest},
            organisation_id=organisation_id,
        )
        return report_dict(r)


def get_published(db: Database, organisation_id: int, report_id: int) -> dict[str, Any]:
    """A published report with its document; ReportTampered if the stored document no longer has its hash."""
    with db.session() as s:
        r = s.get(TransparencyReport, report_id)
        if r is None or r.organisation_id != organisation_id:
            raise NotFound(f"no transparency report {report_id}", code="report_not_found")
        if hashlib.sha256(r.document.encode()).hexdigest() != r.sha256:
            raise ReportTampered(f"transparency report {report_id} does not match its published SHA-256")
        return report_dict(r, with_document=True)


def list_published(db: Database, organisation_id: int) -> list[dict[str, Any]]:
    with db.session() as s:
        rows = s.scalars(
            select(TransparencyReport)
            .where(TransparencyReport.organisation_id == organisation_id)
            .order_by(TransparencyReport.period_from.desc(), TransparencyReport.version.desc())
        )
        return [report_dict(r) for r in rows]


__all__ = [
    "CSV_COLUMNS",
    "ReportTampered",
    "canonical",
    "check_period",
    "compute",
    "get_published",
    "list_published",
    "publish",
    "report_dict",
    "to_csv",
]
