"""The compliance pages of the console, for leads and admins (``require_role("lead")``): the dashboard (open
authority orders and their one-hour clocks, deadlines missed in the last 12 months, the TCO Art. 5 "exposed" status,
complaints near or past their deadline, preserved content, and the largest fine each regime allows on the configured
turnover) and the transparency report for a period, with its charts (server-side SVG, :mod:`.lead_charts`).

Only admins change the turnover (``POST /console/compliance/turnover``, CSRF-checked by the router); the numbers
come from :mod:`bastion.compliance.exposure`, always for the signed-in person's organisation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from bastion.accounts.sessions import SessionUser
from bastion.api.deps import get_app_settings, get_db
from bastion.compliance import exposure, transparency
from bastion.compliance.complaints import ComplaintService
from bastion.compliance.preservation import PreservationService
from bastion.console.deps import PREFIX, require_role
from bastion.console.render import render
from bastion.console.transparency_html import body as report_body
from bastion.errors import InvalidInput
from bastion.storage.models import utcnow

LeadUser = Annotated[SessionUser, Depends(require_role("lead"))]
AdminUser = Annotated[SessionUser, Depends(require_role("admin"))]


def _money(amount: float | None, currency: str) -> str:
    if amount is None:
        return "-"
    symbol = {"EUR": "€", "GBP": "£"}.get(currency, currency + " ")
    return f"{symbol}{amount:,.0f}"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    s = int(abs(seconds))
    return f"{sign}{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _day(value: str | None, default: datetime) -> datetime:
    if not value:
        return default
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput("dates are YYYY-MM-DD", code="invalid_period") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _dashboard(request: Request, user: SessionUser, status: int = 200, **extra: Any) -> Response:
    db, settings = get_db(request), get_app_settings(request)
    board = exposure.dashboard(db, user.organisation_id)
    complaints = ComplaintService(db, settings).list(user.organisation_id, open_only=True)
    ctx = {
        "board": board,
        "complaints": complaints,
        "overdue_complaints": sum(1 for c in complaints if c["overdue"]),
        "preserved": PreservationService(db, settings).counts(user.organisation_id),
        "config": exposure.compliance_config(db, user.organisation_id),
        "money": _money,
        "clock": _clock,
        "is_admin": user.role == "admin",
        "saved": request.query_params.get("saved") == "turnover",
        **extra,
    }
    return render(request, "compliance_dashboard.html", ctx, status_code=status)


def add_compliance_routes(router: APIRouter) -> None:
    """The compliance pages (see the module docstring)."""

    @router.get("/compliance", name="console_compliance")
    def compliance_page(request: Request, user: LeadUser) -> Response:
        """Open orders and clocks, missed deadlines, exposed status, complaints, preservation, penalties."""
        return _dashboard(request, user)

    @router.post("/compliance/turnover", name="console_compliance_turnover")
    async def set_turnover(request: Request, user: AdminUser) -> Response:
        """Set the global turnover (and the UK qualifying revenue) the penalty exposure is computed from."""
        form = await request.form()
        typed = {
            k: str(form.get(k, "") or "").strip().replace(",", "").replace("_", "")
            for k in ("global_turnover_eur", "qualifying_worldwide_revenue_gbp")
        }
        try:
            values: dict[str, Any] = {}
            for key, text in typed.items():
                if not text:
                    values[key] = None
                    continue
                try:
                    values[key] = float(text)
                except ValueError as exc:
                    raise InvalidInput(
                        f"{key.replace('_', ' ')} is an amount (digits)", code="invalid_amount", field=key
                    ) from exc
            exposure.configure(get_db(request), user.actor, user.organisation_id, values)
        except InvalidInput as exc:
            return _dashboard(request, user, status=400, error={"code": exc.code, "message": exc.message}, form=typed)
        return RedirectResponse(f"{PREFIX}/compliance?saved=turnover", status_code=303)

    @router.get("/compliance/transparency", name="console_compliance_transparency")
    def transparency_page(
        request: Request,
        user: LeadUser,
        since: Annotated[str | None, Query(alias="from", max_length=32)] = None,
        until: Annotated[str | None, Query(alias="to", max_length=32)] = None,
    ) -> Response:
        """The transparency report for a period (default: the last 365 days), with its charts."""
        now = utcnow()
        try:
            start = _day(since, now - timedelta(days=365))
            end = _day(until, now)
            document = transparency.compute(get_db(request), user.organisation_id, start, end)
        except InvalidInput as exc:
            return render(
                request,
                "compliance_transparency.html",
                {
                    "error": {"code": exc.code, "message": exc.message},
                    "report_html": None,
                    "since": since or "",
                    "until": until or "",
                },
                status_code=400,
            )
        ctx = {
            "report_html": report_body(document),
            "since": start.date().isoformat(),
            "until": end.date().isoformat(),
            "error": None,
            "published": transparency.list_published(get_db(request), user.organisation_id)[:10],
        }
        return render(request, "compliance_transparency.html", ctx)
