"""The compliance dashboard's numbers: open orders and their clocks, missed deadlines, TCO Art. 5 "exposed"
status, and the largest fine each regime allows on the organisation's configured turnover.

The organisation's ``compliance`` configuration (``PUT /v1/compliance/settings``, :func:`configure`) holds:
``global_turnover_eur`` (worldwide annual turnover of the preceding business year), optionally
``qualifying_worldwide_revenue_gbp`` (UK Online Safety Act), ``dsa_ground`` (``illegal`` or ``incompatible``: the
ground statements of reasons give own-initiative removals), ``terms_url`` and ``terms_reference`` (the terms relied
on) and ``measures`` (the TCO Art. 7 report's description of the measures taken).

Maximum penalties:

- TCO Regulation (EU) 2021/784, Art. 18(3): up to 4 % of global turnover (systematic or persistent failure to act on
  removal orders within the hour);
- DSA Regulation (EU) 2022/2065, Art. 52(3): up to 6 % of annual worldwide turnover;
- UK Online Safety Act 2023, Sch. 13: the greater of £18 million and 10 % of qualifying worldwide revenue.

"Exposed" (TCO Art. 5(4)): a competent authority may decide a hosting service provider is exposed to terrorist
content when it has received two or more final removal orders in the last 12 months. Bastion counts removal orders
received in the last 365 days that were executed (acted on, so no longer open to dispute by the platform).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from bastion import audit
from bastion.errors import InvalidInput, NotFound
from bastion.storage.db import Database
from bastion.storage.models import Order, Organisation, as_utc, utcnow

TCO_SHARE = 0.04
DSA_SHARE = 0.06
OSA_FLOOR_GBP = 18_000_000
OSA_SHARE = 0.10
EXPOSED_ORDERS = 2
OPEN_STATUSES = ("received", "pending_review", "cannot_comply")
MAX_AMOUNT = 10**13  # ten trillion: larger than any company's turnover
CONFIG_KEYS = (
    "global_turnover_eur",
    "qualifying_worldwide_revenue_gbp",
    "dsa_ground",
    "terms_url",
    "terms_reference",
    "measures",
)


def _iso(dt: datetime | None) -> str | None:
    return as_utc(dt).isoformat().replace("+00:00", "Z") if dt is not None else None


def penalties(config: dict[str, Any]) -> dict[str, Any]:
    """The largest fine of each regime on the configured turnover (None where the turnover is not configured)."""
    turnover = config.get("global_turnover_eur")
    revenue = config.get("qualifying_worldwide_revenue_gbp")
    return {
        "tco": {
            "maximum": round(turnover * TCO_SHARE, 2) if turnover is not None else None,
            "currency": "EUR",
            "basis": "up to 4 % of global turnover (Regulation (EU) 2021/784, Art. 18(3))",
        },
        "dsa": {
            "maximum": round(turnover * DSA_SHARE, 2) if turnover is not None else None,
            "currency": "EUR",
            "basis": "up to 6 % of annual worldwide turnover (Regulation (EU) 2022/2065, Art. 52(3))",
        },
        "uk_osa": {
            "maximum": round(max(OSA_FLOOR_GBP, (revenue or 0) * OSA_SHARE), 2),
            "currency": "GBP",
            "basis": "the greater of £18m and 10 % of qualifying worldwide revenue (Online Safety Act 2023, Sch. 13)",
            "revenue_configured": revenue is not None,
        },
        "global_turnover_eur": turnover,
        "qualifying_worldwide_revenue_gbp": revenue,
    }


def configure(db: Database, actor: str, organisation_id: int, values: dict[str, Any]) -> dict[str, Any]:
    """Set keys of the organisation's ``compliance`` configuration (None removes a key); audited."""
    unknown = sorted(set(values) - set(CONFIG_KEYS))
    if unknown:
        raise InvalidInput(
            f"unknown compliance setting(s) {', '.join(unknown)}",
            code="invalid_compliance_setting",
            allowed=list(CONFIG_KEYS),
        )
    for key in ("global_turnover_eur", "qualifying_worldwide_revenue_gbp"):
        v = values.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= MAX_AMOUNT):
            raise InvalidInput(f"{key} is an amount from 0 to {MAX_AMOUNT}", code="invalid_amount", field=key)
    if values.get("dsa_ground") not in (None, "illegal", "incompatible"):
        raise InvalidInput("dsa_ground is 'illegal' or 'incompatible'", code="invalid_dsa_ground")
    url = values.get("terms_url")
    if url is not None and (not isinstance(url, str) or not url.startswith(("https://", "http://")) or len(url) > 500):
        raise InvalidInput("terms_url is an http(s) URL of at most 500 characters", code="invalid_terms_url")
    ref = values.get("terms_reference")
    if ref is not None and (not isinstance(ref, str) or len(ref) > 500):
        raise InvalidInput("terms_reference is at most 500 characters", code="invalid_terms_reference")
    measures = values.get("measures")
    if measures is not None and (
        not isinstance(measures, list)
        or not all(isinstance(m, str) and 0 < len(m) <= 2000 for m in measures)
        or len(measures) > 50
    ):
        raise InvalidInput("measures is a list of up to 50 texts of 1 to 2000 characters", code="invalid_measures")
    with db.session() as s:
        org = s.get(Organisation, organisation_id)
        if org is None:
            raise NotFound(f"no organisation {organisation_id}", code="organisation_not_found")
        config = dict(org.config or {})
        current = dict(config.get("compliance") or {})
        for k, v in values.items():
            if v is None:
                current.pop(k, None)
            else:
                current[k] = v
        config["compliance"] = current
        org.config = config
        audit.append(
            s,
            actor,
            "organisation_updated",
            f"organisation:{organisation_id}",
            {"compliance": sorted(values)},
            organisation_id=organisation_id,
        )
        return current


def compliance_config(db: Database, organisation_id: int) -> dict[str, Any]:
    with db.session() as s:
        config = s.scalar(select(Organisation.config).where(Organisation.id == organisation_id)) or {}
        return dict(config.get("compliance") or {})


def dashboard(db: Database, organisation_id: int, *, now: datetime | None = None) -> dict[str, Any]:
    """Open orders with their clocks, deadlines missed in the last 12 months, the exposed status and penalties."""
    now = now or utcnow()
    year_ago = now - timedelta(days=365)
    with db.session() as s:
        open_rows = s.scalars(
            select(Order)
            .where(Order.organisation_id == organisation_id, Order.status.in_(OPEN_STATUSES))
            .order_by(Order.deadline_at.is_(None), Order.deadline_at, Order.id)
        ).all()
        year = s.scalars(
            select(Order).where(
                Order.organisation_id == organisation_id, Order.kind == "removal_order", Order.received_at >= year_ago
            )
        ).all()
        config = dict(
            (s.scalar(select(Organisation.config).where(Organisation.id == organisation_id)) or {}).get("compliance")
            or {}
        )
    open_orders = []
    for o in open_rows:
        left = (as_utc(o.deadline_at) - now).total_seconds() if o.deadline_at is not None else None
        open_orders.append(
            {
                "id": o.id,
                "kind": o.kind,
                "reference": o.reference,
                "issuer": o.issuer,
                "member_state": o.member_state,
                "status": o.status,
                "received_at": _iso(o.received_at),
                "deadline_at": _iso(o.deadline_at),
                "seconds_left": round(left, 1) if left is not None else None,
                "overdue": left is not None and left < 0 and o.status != "cannot_comply",
                "clock_stopped": o.status == "cannot_comply",
            }
        )
    missed = []
    for o in year:
        if o.deadline_at is None:
            continue
        done = o.executed_at
        if (done is not None and as_utc(done) > as_utc(o.deadline_at)) or (
            done is None and o.status in ("received", "pending_review") and as_utc(o.deadline_at) < now
        ):
            missed.append(
                {
                    "id": o.id,
                    "reference": o.reference,
                    "member_state": o.member_state,
                    "deadline_at": _iso(o.deadline_at),
                    "executed_at": _iso(done),
                    "late_seconds": round(((as_utc(done) if done else now) - as_utc(o.deadline_at)).total_seconds(), 1),
                }
            )
    final = [o for o in year if o.status == "executed"]
    return {
        "now": _iso(now),
        "open_orders": open_orders,
        "missed_deadlines": sorted(missed, key=lambda m: m["deadline_at"] or ""),
        "exposed": {
            "exposed": len(final) >= EXPOSED_ORDERS,
            "final_orders_12_months": len(final),
            "threshold": EXPOSED_ORDERS,
            "basis": "two or more final removal orders in the last 12 months (Regulation (EU) 2021/784, Art. 5(4))",
        },
        "penalties": penalties(config),
    }


__all__ = ["CONFIG_KEYS", "compliance_config", "configure", "dashboard", "penalties"]
