"""The orders' pages, for both sides, and the leads' escalations page.

- An authority's people (role ``authority``) see the orders their authority sent, their clocks and the platform's
  answers and confirmations, and clarify an order the platform could not comply with.
- A platform's leads and admins see the orders sent to them, open clocks first with a live countdown (static
  ``order.js``; the minutes left are also in the page itself), the alerts raised at 30, 45 and 55 minutes, and
  execute an order waiting for review or answer "cannot comply" with a TCO reason. They also see every
  threat-to-life escalation with the state of each channel.

Reviewers get 403 ``forbidden_role``; an order that is not the signed-in person's organisation's is 404. Every
change goes through :class:`~bastion.compliance.orders.OrderService`, which validates and audits; a refused form
shows the page again with the message and its code in ``data-code``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from bastion.accounts.sessions import SessionUser
from bastion.api.deps import get_app_settings, get_db
from bastion.compliance.escalation import EscalationService
from bastion.compliance.orders import CANNOT_COMPLY_REASONS, OrderService
from bastion.console.deps import PREFIX, ConsoleUser
from bastion.console.render import render
from bastion.errors import BastionError, Forbidden

LEAD_ROLES = ("lead", "admin")
SAVED = {
    "executed": "Order executed: the content is removed, its hashes banked and the authority informed.",
    "cannot_comply": "Answered 'cannot comply': the clock is stopped until the authority clarifies.",
    "clarified": "Clarification sent: the platform's hour starts again.",
}
REASON_LABELS = {
    "force_majeure": "Force majeure (TCO Art. 3(7))",
    "de_facto_impossibility": "De facto impossibility not attributable to us (TCO Art. 3(7))",
    "manifest_error": "Manifest errors in the order (TCO Art. 3(8))",
    "insufficient_information": "Insufficient information to act (TCO Art. 3(8))",
}


def _svc(request: Request) -> OrderService:
    return OrderService(get_db(request), get_app_settings(request))


def _side(user: SessionUser) -> str:
    """``authority`` or ``platform``; a reviewer has no business here."""
    if user.role == "authority":
        return "authority"
    if user.role in LEAD_ROLES:
        return "platform"
    raise Forbidden("the orders are for leads, admins and authorities", code="forbidden_role")


def _lead(user: SessionUser) -> None:
    if user.role not in LEAD_ROLES:
        raise Forbidden("only a platform's leads and admins answer orders", code="forbidden_role")


def _minutes_left(seconds: int | None) -> str:
    if seconds is None:
        return ""
    if seconds <= 0:
        return "overdue"
    return f"{seconds // 60} min {seconds % 60:02d} s left"


def _order_page(request: Request, user: SessionUser, order_id: int, status: int = 200, **extra: Any) -> Response:
    order = _svc(request).get(user.organisation_id, order_id)
    ctx = {
        "order": order,
        "side": _side(user),
        "left": _minutes_left(order["seconds_left"]),
        "reasons": [(r, REASON_LABELS[r]) for r in CANNOT_COMPLY_REASONS],
        "saved": SAVED.get(request.query_params.get("saved", "")),
        "form": {},
        **extra,
    }
    return render(request, "order_detail.html", ctx, status_code=status)


def add_order_routes(router: APIRouter) -> None:
    """The pages of the module docstring."""

    @router.get("/orders", name="console_orders")
    def orders_page(request: Request, user: ConsoleUser) -> Response:
        """The authority's sent orders, or the platform's received ones (open clocks first)."""
        side = _side(user)
        orders = _svc(request).list(user.organisation_id)
        for o in orders:
            o["left"] = _minutes_left(o["seconds_left"])
        return render(request, "order_list.html", {"orders": orders, "side": side, "title": "Orders"})

    @router.get("/orders/{order_id}", name="console_order")
    def order_page(request: Request, user: ConsoleUser, order_id: int) -> Response:
        """One order: what it asks, its clock, the answers and the confirmation; the forms the viewer may use."""
        _side(user)
        return _order_page(request, user, order_id)

    @router.post("/orders/{order_id}/execute", name="console_order_execute")
    def execute(request: Request, user: ConsoleUser, order_id: int) -> Response:
        """A lead executes an order waiting for review."""
        _lead(user)
        try:
            _svc(request).execute(user.organisation_id, order_id, actor=f"user:{user.email}")
        except BastionError as exc:
            if exc.http_status == 404:
                raise
            return _order_page(request, user, order_id, exc.http_status, error=exc)
        return RedirectResponse(f"{PREFIX}/orders/{order_id}?saved=executed", status_code=303)

    @router.post("/orders/{order_id}/cannot-comply", name="console_order_cannot_comply")
    def cannot_comply(
        request: Request,
        user: ConsoleUser,
        order_id: int,
        reason: str = Form(""),
        explanation: str = Form("", max_length=10000),
    ) -> Response:
        """A lead answers 'cannot comply' with a TCO reason; the clock stops."""
        _lead(user)
        try:
            _svc(request).cannot_comply(user.organisation_id, order_id, reason, explanation, actor=f"user:{user.email}")
        except BastionError as exc:
            if exc.http_status == 404:
                raise
            return _order_page(
                request, user, order_id, exc.http_status, error=exc, form={"reason": reason, "explanation": explanation}
            )
        return RedirectResponse(f"{PREFIX}/orders/{order_id}?saved=cannot_comply", status_code=303)

    @router.post("/orders/{order_id}/clarification", name="console_order_clarify")
    def clarify(
        request: Request, user: ConsoleUser, order_id: int, clarification: str = Form("", max_length=10000)
    ) -> Response:
        """The authority clarifies; the order is executed or reviewed again at once."""
        if user.role != "authority":
            raise Forbidden("only the authority that sent an order clarifies it", code="forbidden_role")
        try:
            _svc(request).clarify(user.organisation_id, order_id, clarification, actor=f"user:{user.email}")
        except BastionError as exc:
            if exc.http_status == 404:
                raise
            return _order_page(
                request, user, order_id, exc.http_status, error=exc, form={"clarification": clarification}
            )
        return RedirectResponse(f"{PREFIX}/orders/{order_id}?saved=clarified", status_code=303)

    @router.get("/escalations", name="console_escalations")
    def escalations_page(request: Request, user: ConsoleUser) -> Response:
        """Threat-to-life escalations and each channel's receipt (leads and admins)."""
        _lead(user)
        svc = EscalationService(get_db(request), get_app_settings(request))
        return render(
            request, "order_escalations.html", {"escalations": svc.list(user.organisation_id), "title": "Escalations"}
        )
