"""The leads' pages: the review dashboard, QA agreement, appeals, and queue settings (queues, their SLA and roles,
the QA share). Leads and admins only (``require_role("lead")``): a reviewer gets 403 ``forbidden_role``.

Everything shown is the signed-in person's organisation's (the numbers come from :mod:`bastion.review.stats` and
:meth:`~bastion.review.service.ReviewService.agreement`, always called with ``user.organisation_id``). Charts are
server-side SVG (:mod:`bastion.console.lead_charts`), each with the same numbers in a table. Forms post back with
the console's CSRF token (checked centrally by the router); changes go through
:class:`~bastion.review.service.ReviewService`, which validates and writes the audit log. A refused change shows
the page again with the message, its code in ``data-code`` and what was typed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from bastion.accounts.sessions import SessionUser
from bastion.api.deps import get_app_settings, get_db
from bastion.banks.taxonomy import CATEGORIES
from bastion.console import lead_charts
from bastion.console.deps import PREFIX, require_role
from bastion.console.render import render
from bastion.errors import Conflict, InvalidInput
from bastion.review.routing import ROUTABLE_OUTCOMES
from bastion.review.service import APPEAL_STATUSES, DEFAULT_QA_SHARE, REVIEW_ROLES, ReviewService
from bastion.review.stats import DEFAULT_WINDOW, WINDOWS, dashboard
from bastion.storage.models import Organisation, utcnow

LeadUser = Annotated[SessionUser, Depends(require_role("lead"))]
WINDOW_LABELS = {"24h": "Last 24 hours", "7d": "Last 7 days"}
SAVED = {
    "queue_created": "Queue created.",
    "queue_deleted": "Queue deleted.",
    "qa_share": "QA share saved.",
}


def _svc(request: Request) -> ReviewService:
    return ReviewService(get_db(request), get_app_settings(request))


def _window(value: str | None) -> str:
    return value if value in WINDOWS else DEFAULT_WINDOW


def _duration(seconds: float | None) -> str:
    """A short human duration: 42 s, 7 min, 3.5 h, 2.1 d."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _dashboard_charts(stats: dict[str, Any], window: str) -> dict[str, str]:
    series = stats["decisions_per_hour"]
    per_day = len(series) > 48
    hourly = lead_charts.bar(
        show_legend=False,
        x_label_rotation=0,
        show_minor_x_labels=False,
        x_labels_major_every=24 if per_day else 3,
    )
    hourly.x_labels = [p["hour"][5:10] if per_day else p["hour"][11:16] for p in series]
    hourly.add("Decisions", [p["decisions"] for p in series])
    total = sum(p["decisions"] for p in series)
    queues = [q for q in stats["queues"] if q["open"] or q["leased"]] or stats["queues"]
    depth = lead_charts.stacked_bar()
    depth.x_labels = [q["queue"] for q in queues]
    depth.add("Open", [q["open"] for q in queues])
    depth.add("Leased", [q["leased"] for q in queues])
    timing = stats["time_to_decision"]
    ttd = lead_charts.bar()
    ttd.x_labels = [t["queue"] for t in timing]
    ttd.add("Median (min)", [round((t["median_seconds"] or 0) / 60, 1) for t in timing])
    ttd.add("90th percentile (min)", [round((t["p90_seconds"] or 0) / 60, 1) for t in timing])
    label = WINDOW_LABELS[window].lower()
    return {
        "hourly": lead_charts.render(
            hourly,
            title=f"Decisions per hour, {label}",
            description=f"{total} review decisions in {len(series)} hours; the table below lists every hour.",
        ),
        "depth": lead_charts.render(
            depth,
            title="Items waiting per queue",
            description="Open and leased items in each queue now; the queue table lists them.",
        ),
        "ttd": lead_charts.render(
            ttd,
            title=f"Time to decision per queue, {label} (minutes)",
            description="Median and 90th percentile minutes from entering the queue to the decision.",
        ),
    }


def _settings_page(request: Request, user: SessionUser, status: int = 200, **extra: Any) -> Response:
    svc = _svc(request)
    with get_db(request).session() as s:
        config = s.scalar(select(Organisation.config).where(Organisation.id == user.organisation_id)) or {}
    share = (config.get("review") or {}).get("qa_share", DEFAULT_QA_SHARE)
    ctx = {
        "queues": svc.list_queues(user.organisation_id),
        "qa_share_percent": round(share * 100, 1),
        "roles": REVIEW_ROLES,
        "outcomes": ROUTABLE_OUTCOMES,
        "categories": list(CATEGORIES),
        "form": {},
        "saved": SAVED.get(request.query_params.get("saved", "")),
        **extra,
    }
    return render(request, "lead_queues.html", ctx, status_code=status)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]


def add_lead_routes(router: APIRouter) -> None:
    """The leads' pages (see the module docstring)."""

    @router.get("/lead/charts.css", name="console_lead_charts_css")
    def charts_css(user: LeadUser) -> Response:
        """The charts' colours and fonts (pygal's CSS, served rather than inlined: the CSP forbids inline style)."""
        return Response(lead_charts.stylesheet(), media_type="text/css")

    @router.get("/lead/dashboard", name="console_dashboard")
    def dashboard_page(
        request: Request, user: LeadUser, window: Annotated[str | None, Query(max_length=8)] = None
    ) -> Response:
        """Queue depth and oldest items, decisions per hour, time to decision, overturn rate, QA, SLA breaches."""
        win = _window(window)
        stats = dashboard(get_db(request), user.organisation_id, window=WINDOWS[win])
        ctx = {
            "stats": stats,
            "window": win,
            "windows": WINDOW_LABELS,
            "charts": _dashboard_charts(stats, win),
            "duration": _duration,
            "percent": _percent,
            "sla_breaches": sum(q["sla_breaches"] for q in stats["queues"]),
            "past_deadline": sum(q["past_deadline"] for q in stats["queues"]),
            "waiting": sum(q["open"] + q["leased"] for q in stats["queues"]),
            "late": next((t["late"] for t in stats["time_to_decision"] if t["queue"] == "all"), 0),
            "decided": sum(p["decisions"] for p in stats["decisions_per_hour"]),
        }
        return render(request, "lead_dashboard.html", ctx)

    @router.get("/lead/qa", name="console_lead_qa")
    def qa_page(
        request: Request, user: LeadUser, window: Annotated[str | None, Query(max_length=8)] = None
    ) -> Response:
        """QA agreement per first reviewer and per category (second looks decided in the window)."""
        win = _window(window)
        agreement = _svc(request).agreement(user.organisation_id, since=utcnow() - WINDOWS[win])
        chart = None
        if agreement["per_reviewer"]:
            people = lead_charts.horizontal_bar(show_legend=False, range=(0, 100))
            people.x_labels = [r["key"] for r in agreement["per_reviewer"]]
            people.add("Agreement (%)", [round(r["agreement"] * 100, 1) for r in agreement["per_reviewer"]])
            chart = lead_charts.render(
                people,
                title="QA agreement per reviewer (%)",
                description="The share of each reviewer's checked decisions the second reviewer agreed with; "
                "the table below lists the counts.",
            )
        ctx = {"agreement": agreement, "window": win, "windows": WINDOW_LABELS, "chart": chart, "percent": _percent}
        return render(request, "lead_qa.html", ctx)

    @router.get("/lead/appeals", name="console_appeals")
    def appeals_page(
        request: Request, user: LeadUser, status: Annotated[str | None, Query(max_length=16)] = None
    ) -> Response:
        """Users' appeals: where each stands in the appeals queue (open, or with whom), who made the decision
        appealed, and how it was decided (upheld or overturned, by whom). Reviewers decide them from the appeals
        queue; a person never gets an appeal against their own decision."""
        chosen = status if status in APPEAL_STATUSES else None
        appeals = _svc(request).list_appeals(user.organisation_id, status=chosen)
        counts = _svc(request).appeal_counts(user.organisation_id)
        ctx = {"appeals": appeals, "status": chosen or "", "statuses": APPEAL_STATUSES, "counts": counts}
        return render(request, "lead_appeals.html", ctx)

    @router.get("/lead/queues", name="console_lead_queues")
    def queues_page(request: Request, user: LeadUser) -> Response:
        """The organisation's queues (criteria, roles, SLA) with forms to add and delete them, and the QA share."""
        return _settings_page(request, user)

    @router.post("/lead/queues", name="console_lead_queue_create")
    async def create_queue(request: Request, user: LeadUser) -> Response:
        """Create a queue from the form (criteria as checkboxes and comma-separated lists)."""
        form = await request.form()
        values = {
            k: str(form.get(k, "") or "") for k in ("name", "description", "sla_minutes", "jurisdictions", "languages")
        }
        chosen = {k: [str(v) for v in form.getlist(k)] for k in ("outcomes", "categories", "roles")}
        criteria: dict[str, list[str]] = {}
        for key in ("outcomes", "categories"):
            if chosen[key]:
                criteria[key] = chosen[key]
        for key in ("jurisdictions", "languages"):
            if _split(values[key]):
                criteria[key] = [v.upper() if key == "jurisdictions" else v for v in _split(values[key])]
        try:
            sla_text = values["sla_minutes"].strip()
            if sla_text and not sla_text.isdigit():
                raise InvalidInput("the SLA is a whole number of minutes from 1 to 525600", code="invalid_sla")
            _svc(request).create_queue(
                user.actor,
                user.organisation_id,
                values["name"].strip(),
                criteria=criteria,
                roles=chosen["roles"],
                sla_minutes=int(sla_text) if sla_text else None,
                description=values["description"].strip(),
            )
        except (InvalidInput, Conflict) as exc:
            status = 409 if isinstance(exc, Conflict) else 400
            return _settings_page(request, user, status=status, error=exc, form={**values, **chosen})
        return RedirectResponse(f"{PREFIX}/lead/queues?saved=queue_created", status_code=303)

    @router.post("/lead/queues/{name}/delete", name="console_lead_queue_delete")
    def delete_queue(request: Request, name: str, user: LeadUser) -> Response:
        """Delete one of the organisation's queues (another organisation's or an unknown one: 404)."""
        _svc(request).delete_queue(user.actor, user.organisation_id, name)
        return RedirectResponse(f"{PREFIX}/lead/queues?saved=queue_deleted", status_code=303)

    @router.post("/lead/qa-share", name="console_lead_qa_share")
    async def set_qa_share(request: Request, user: LeadUser) -> Response:
        """Set the share of first decisions a second reviewer checks blind (a percentage in the form)."""
        form = await request.form()
        raw = str(form.get("percent", "") or "").strip()
        try:
            try:
                percent = float(raw)
            except ValueError:
                raise InvalidInput("the QA share is a percentage from 0 to 100", code="invalid_qa_share") from None
            _svc(request).set_qa_share(user.actor, user.organisation_id, percent / 100)
        except InvalidInput as exc:
            return _settings_page(request, user, status=400, qa_error=exc, qa_form=raw)
        return RedirectResponse(f"{PREFIX}/lead/queues?saved=qa_share", status_code=303)


__all__ = ["add_lead_routes"]
