"""The reviewer's pages: queues, the item view with its decision form, skipping, lease renewal, exposure reports,
wellbeing preferences, and the leads' daily-cap page.

The rules live in the domain (:mod:`bastion.review.service` leases and decides, :mod:`bastion.review.wellbeing`
keeps preferences, exposure and caps, :mod:`bastion.review.context` gathers what the item view shows); this module
turns requests into calls and answers into pages. Errors a reviewer can meet on the way (the item is someone
else's, the lease was lost, the day's cap is reached, a required field is missing) are pages that say so, with the
machine-readable code in ``data-code``; JSON callers (the page's own script) get the API's error shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from bastion.accounts.sessions import SessionUser
from bastion.api.deps import get_app_settings, get_db
from bastion.banks.taxonomy import CATEGORIES
from bastion.console.deps import PREFIX, ConsoleUser, require_role
from bastion.console.media import add_media_routes, media_url, pdf_page_urls
from bastion.console.pdf_pages import MAX_PAGES as PDF_MAX_PAGES
from bastion.console.render import render
from bastion.errors import BastionError, Conflict, Forbidden, InvalidInput, NotFound
from bastion.review.context import item_context
from bastion.review.service import LeaseLost, Reviewer, ReviewService
from bastion.review.wellbeing import (
    DEFAULT_PREFERENCES,
    GRAPHIC_CATEGORIES,
    MAX_BLUR,
    MAX_BREAK_MINUTES,
    MAX_CAP_MINUTES,
    WellbeingService,
    is_graphic,
)
from bastion.storage.models import Bank, as_utc, utcnow

LeadUser = Annotated[SessionUser, Depends(require_role("lead"))]
MEDIA_KINDS = ("image", "video", "audio", "pdf", "text", "other")

#: Keyboard shortcuts of the item view (the help overlay lists them; static/review.js implements them).
SHORTCUTS: list[tuple[str, str]] = [
    ("?", "Show or hide this help"),
    ("r", "Reveal or hide the media (toggle)"),
    ("h (hold)", "Reveal while held"),
    ("p", "Play or pause video or audio"),
    ("m", "Mute or unmute"),
    ("v", "Verdict: violating (then choose category and policy)"),
    ("n", "Verdict: not violating"),
    ("e", "Verdict: escalate to a lead"),
    ("l", "Verdict: escalate to law enforcement (imminent threat)"),
    ("u / o", "Appeal: uphold / overturn"),
    ("b", "Add the hashes to a bank (toggle)"),
    ("c", "Write a note"),
    ("d", "Submit the decision"),
    ("s", "Skip: give the item back to its queue"),
    ("j / k", "Next / previous section"),
    ("Esc", "Close this help, hide the media, leave a field"),
]


def _svc(request: Request) -> ReviewService:
    return ReviewService(get_db(request), get_app_settings(request))


def _wellbeing(request: Request) -> WellbeingService:
    return WellbeingService(get_db(request))


def reviewer_of(user: SessionUser) -> Reviewer:
    return Reviewer(user.user_id, user.organisation_id, user.role, user.email)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def _message(request: Request, status: int, code: str, heading: str, message: str, **extra: Any) -> Response:
    ctx = {"status": status, "code": code, "heading": heading, "message": message, "title": heading, **extra}
    return render(request, "review_message.html", ctx, status_code=status)


def _media_kind(content_type: str | None, media_type: str | None) -> str:
    mt = (media_type or "").lower()
    if content_type == "image" and "svg" not in mt:
        return "image"
    if content_type == "video":
        return "video"
    if mt.startswith("audio/"):
        return "audio"
    if content_type in ("pdf", "text"):
        return content_type
    return "other"


def _writable_banks(request: Request, organisation_id: int) -> list[str]:
    from sqlalchemy import select

    with get_db(request).session() as s:
        return list(
            s.scalars(
                select(Bank.name)
                .where(Bank.organisation_id == organisation_id, Bank.kind == "block", Bank.enabled.is_(True))
                .order_by(Bank.name)
            )
        )


def _iso(dt: datetime | None) -> str | None:
    return as_utc(dt).isoformat().replace("+00:00", "Z") if dt is not None else None


def _item_page(
    request: Request,
    user: SessionUser,
    item_id: int,
    *,
    status: int = 200,
    error: BastionError | None = None,
    form: dict[str, Any] | None = None,
    decided: int | None = None,
) -> Response:
    reviewer = reviewer_of(user)
    ctx = item_context(get_db(request), reviewer, item_id)
    row, content = ctx["item"], ctx["content"]
    wb = _wellbeing(request)
    prefs = wb.preferences(user.organisation_id, user.user_id)
    exposure = wb.exposure(user.organisation_id, user.user_id)
    kind = _media_kind(content.content_type, content.media_type)
    settings = get_app_settings(request)
    url = media_url(settings, row.id, content.id, user.user_id) if ctx["has_blob"] else None
    pdf_pages = ctx.get("pdf_text") or {}
    pdf_images = pdf_page_urls(url, min(pdf_pages.get("page_count", 0), PDF_MAX_PAGES)) if url and kind == "pdf" else []
    now = utcnow()
    deadline = as_utc(row.deadline_at) if row.deadline_at else None
    ctx.update(
        {
            "title": f"Item {row.id}",
            "media_kind": kind,
            "media_url": url,
            "pdf_images": pdf_images,
            "prefs": prefs,
            "exposure": exposure.to_dict(),
            "categories": CATEGORIES,
            "banks": _writable_banks(request, user.organisation_id) if row.kind in ("review", "escalation") else [],
            "shortcuts": SHORTCUTS,
            "deadline_iso": _iso(deadline),
            "deadline_seconds": int((deadline - now).total_seconds()) if deadline else None,
            "lease_iso": _iso(row.lease_expires_at),
            "error": error,
            "form": form or {},
            "decided": decided,
            "graphic": is_graphic(row.category),
            "is_appeal": row.kind == "appeal",
            "is_lead": reviewer.is_lead,
            "age": _age,
        }
    )
    return render(request, "review_item.html", ctx, status_code=status)


def add_review_routes(router: APIRouter) -> None:  # noqa: C901 - one function registering the pages
    """The reviewer's pages and the signed media route (:mod:`bastion.console.media`)."""
    add_media_routes(router)

    @router.get("/queues", name="console_queues")
    def queues(request: Request, user: ConsoleUser) -> Response:
        """The queues this user's role may work: depth, leased, oldest item's age; start reviewing."""
        summary = _svc(request).summary(reviewer_of(user))
        exposure = _wellbeing(request).exposure(user.organisation_id, user.user_id)
        notice = {
            "empty": "There is nothing to review in that queue right now.",
            "skipped": "The item went back to its queue.",
        }.get(request.query_params.get("notice", ""))
        return render(
            request,
            "review_queues.html",
            {
                "title": "Queues",
                "queues": summary,
                "age": _age,
                "exposure": exposure.to_dict(),
                "notice": notice,
                "total_open": sum(q["open"] for q in summary),
            },
        )

    @router.get("/next", name="console_next")
    def next_item(
        request: Request,
        user: ConsoleUser,
        queue: Annotated[str | None, Query(max_length=64)] = None,
        decided: Annotated[int | None, Query()] = None,
    ) -> Response:
        """Lease the next item (of one queue, or of all this user may work) and open it; refused at the day's cap."""
        try:
            _wellbeing(request).check_cap(user.organisation_id, user.user_id)
            got = _svc(request).next_item(reviewer_of(user), queue or None)
        except Forbidden as exc:
            return _message(request, 403, exc.code, "No more items for you now", exc.message)
        if got is None:
            return RedirectResponse(f"{PREFIX}/queues?notice=empty", status_code=303)
        query = {"queue": queue} if queue else {}
        if decided:
            query["decided"] = str(decided)
        suffix = f"?{urlencode(query)}" if query else ""
        return RedirectResponse(f"{PREFIX}/items/{got.id}{suffix}", status_code=303)

    @router.get("/items/{item_id}", name="console_item")
    def item_view(
        request: Request,
        item_id: int,
        user: ConsoleUser,
        warned: Annotated[int, Query()] = 0,
        decided: Annotated[int | None, Query()] = None,
    ) -> Response:
        """Lease the item to this user (when free) and show it with the evidence and the decision form."""
        svc, reviewer = _svc(request), reviewer_of(user)
        current = svc.get_item(reviewer, item_id)  # NotFound for another organisation's item: the error page
        held = current.status == "leased" and current.leased_by == user.user_id
        if current.status in ("done", "cancelled"):
            return _message(
                request,
                409,
                "already_decided",
                "Already decided",
                "This item has already been decided; nothing more to do here.",
            )
        if not held:
            try:
                _wellbeing(request).check_cap(user.organisation_id, user.user_id)
            except Forbidden as exc:
                return _message(request, 403, exc.code, "No more items for you now", exc.message)
        try:
            info = svc.open_item(reviewer, item_id)
        except Conflict as exc:
            return _message(request, 409, exc.code, "Someone else has this item", exc.message)
        except Forbidden as exc:
            return _message(request, 403, exc.code, "Not yours to decide", exc.message)
        if is_graphic(info.category) and not warned:
            return render(
                request,
                "review_warning.html",
                {
                    "title": "Content warning",
                    "item": info,
                    "category": CATEGORIES.get(info.category or "", ""),
                    "graphic_categories": GRAPHIC_CATEGORIES,
                },
            )
        return _item_page(request, user, item_id, decided=decided)

    @router.post("/items/{item_id}/renew", name="console_item_renew")
    def renew(request: Request, item_id: int, user: ConsoleUser) -> Response:
        """Extend this user's lease (the page calls it every minute). 409 ``lease_lost`` when it is gone."""
        info = _svc(request).renew(reviewer_of(user), item_id)
        return JSONResponse({"item_id": info.id, "lease_expires_at": _iso(info.lease_expires_at)})

    @router.post("/items/{item_id}/release", name="console_item_release")
    def release(request: Request, item_id: int, user: ConsoleUser) -> Response:
        """Skip: give the item back to its queue."""
        _svc(request).release(reviewer_of(user), item_id)
        return RedirectResponse(f"{PREFIX}/queues?notice=skipped", status_code=303)

    @router.post("/items/{item_id}/decide", name="console_item_decide")
    def decide(
        request: Request,
        item_id: int,
        user: ConsoleUser,
        verdict: Annotated[str, Form(max_length=40)] = "",
        category: Annotated[str, Form(max_length=64)] = "",
        policy_reference: Annotated[str, Form(max_length=200)] = "",
        action: Annotated[str, Form(max_length=16)] = "remove",
        restrict_in: Annotated[str, Form(max_length=400)] = "",
        note: Annotated[str, Form(max_length=5000)] = "",
        bank: Annotated[str, Form(max_length=100)] = "",
        add_to_bank: Annotated[str, Form(max_length=8)] = "",
        share_with_forum: Annotated[str, Form(max_length=8)] = "",
        disable_bank_entries: Annotated[str, Form(max_length=8)] = "",
        from_queue: Annotated[str, Form(max_length=64)] = "",
    ) -> Response:
        """Record the decision; then on to the next item. Missing fields: the form again with the message (the item
        stays leased); a lost lease: a page that says so (nothing was written)."""
        reviewer = reviewer_of(user)
        svc = _svc(request)
        form = {
            "verdict": verdict,
            "category": category,
            "policy_reference": policy_reference,
            "action": action,
            "restrict_in": restrict_in,
            "note": note,
            "bank": bank,
            "add_to_bank": bool(add_to_bank),
            "share_with_forum": bool(share_with_forum),
            "disable_bank_entries": bool(disable_bank_entries),
        }
        chosen_bank = bank if add_to_bank and bank else None
        jurisdictions = [j for j in restrict_in.replace(",", " ").upper().split() if j]
        try:
            if not verdict:
                raise InvalidInput("choose a verdict", code="verdict_required")
            if chosen_bank:
                try:
                    svc.check_bank(reviewer, chosen_bank)
                except NotFound as exc:
                    raise InvalidInput(
                        f"no bank {chosen_bank!r} your organisation can add to", code="bank_not_found"
                    ) from exc
            svc.decide(
                reviewer,
                item_id,
                verdict,
                category=category or None,
                policy_reference=policy_reference or None,
                action=action or None,
                restrict_in=jurisdictions,
                note=note,
                bank=chosen_bank,
                share_with_forum=bool(share_with_forum and chosen_bank),
                disable_bank_entries=bool(disable_bank_entries),
            )
        except LeaseLost as exc:
            return _message(
                request, 409, exc.code, "Your lease on this item was lost", exc.message, back_to_queue=from_queue
            )
        except Conflict as exc:
            return _message(request, 409, exc.code, "Not decided", exc.message, back_to_queue=from_queue)
        except InvalidInput as exc:
            return _item_page(request, user, item_id, status=400, error=exc, form=form)
        except Forbidden as exc:
            if exc.code in ("bank_read_only",):
                return _item_page(request, user, item_id, status=403, error=exc, form=form)
            return _message(request, 403, exc.code, "Not allowed", exc.message)
        query = {"decided": str(item_id)}
        if from_queue:
            query["queue"] = from_queue
        return RedirectResponse(f"{PREFIX}/next?{urlencode(query)}", status_code=303)

    @router.post("/exposure", name="console_exposure")
    def exposure(
        request: Request,
        user: ConsoleUser,
        seconds: Annotated[float, Form()] = 0.0,
        revealed_seconds: Annotated[float, Form()] = 0.0,
        item_id: Annotated[int | None, Form()] = None,
    ) -> Response:
        """The item page's report of seconds with media on screen (and revealed); answers today's totals."""
        result = _wellbeing(request).record(user.organisation_id, user.user_id, item_id, seconds, revealed_seconds)
        return JSONResponse(result.to_dict())

    @router.get("/preferences", name="console_settings")
    def preferences(request: Request, user: ConsoleUser) -> Response:
        """The user's wellbeing preferences: blur strength, greyscale, autoplay, break reminders."""
        return _preferences_page(request, user)

    @router.post("/preferences", name="console_settings_save")
    def save_preferences(
        request: Request,
        user: ConsoleUser,
        blur: Annotated[int, Form()] = DEFAULT_PREFERENCES["blur"],
        greyscale: Annotated[str, Form(max_length=8)] = "",
        autoplay: Annotated[str, Form(max_length=8)] = "",
        break_minutes: Annotated[int, Form()] = DEFAULT_PREFERENCES["break_minutes"],
    ) -> Response:
        try:
            _wellbeing(request).set_preferences(
                user.actor,
                user.organisation_id,
                user.user_id,
                {
                    "blur": blur,
                    "greyscale": bool(greyscale),
                    "autoplay": bool(autoplay),
                    "break_minutes": break_minutes,
                },
            )
        except InvalidInput as exc:
            return _preferences_page(request, user, status=400, error=exc)
        return _preferences_page(request, user, saved=True)

    @router.get("/caps", name="console_caps")
    def caps(request: Request, user: LeadUser) -> Response:
        """Leads: every person's exposure today and their daily cap."""
        return _caps_page(request, user)

    @router.post("/caps/{user_id}", name="console_caps_set")
    def set_cap(
        request: Request,
        user_id: int,
        user: LeadUser,
        minutes: Annotated[str, Form(max_length=8)] = "",
    ) -> Response:
        """Leads: set a person's daily exposure cap in minutes (empty: no cap)."""
        try:
            value = int(minutes) if minutes.strip() else None
        except ValueError:
            value = -1
        try:
            _wellbeing(request).set_daily_cap(user.actor, user.organisation_id, user_id, value)
        except InvalidInput as exc:
            return _caps_page(request, user, status=400, error=exc)
        return _caps_page(request, user, saved=user_id)


def _preferences_page(request: Request, user: SessionUser, status: int = 200, **extra: Any) -> Response:
    prefs = _wellbeing(request).preferences(user.organisation_id, user.user_id)
    exposure = _wellbeing(request).exposure(user.organisation_id, user.user_id)
    return render(
        request,
        "review_preferences.html",
        {
            "title": "Preferences",
            "prefs": prefs,
            "max_blur": MAX_BLUR,
            "max_break": MAX_BREAK_MINUTES,
            "exposure": exposure.to_dict(),
            **extra,
        },
        status_code=status,
    )


def _caps_page(request: Request, user: SessionUser, status: int = 200, **extra: Any) -> Response:
    team = _wellbeing(request).team_exposure(user.organisation_id)
    return render(
        request,
        "review_caps.html",
        {"title": "Exposure caps", "team": team, "max_cap": MAX_CAP_MINUTES, "age": _age, **extra},
        status_code=status,
    )


__all__ = ["SHORTCUTS", "add_review_routes", "reviewer_of"]
