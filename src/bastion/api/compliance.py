"""Users' rights, preservation and transparency routes of the JSON API (docs/compliance.md). Everything is within
the calling key's organisation: another organisation's content, complaint, preserved item or report is not found.

- ``POST /v1/content/{content_id}/complaints`` {regime: tco|dsa, reason, complainant_id} -> 201 (``submit``): a
  complaint against the removal in force (TCO Art. 10, DSA Art. 20), decided in the appeals queue by a reviewer
  other than the one who decided, within ``BASTION_COMPLAINT_DEADLINE_DAYS``
- ``GET /v1/complaints`` (?open=true) and ``GET /v1/complaints/{complaint_id}`` (``submit`` or ``review``)
- ``GET /v1/compliance/statements`` ?from&to&after (``admin``): one Transparency Database batch body,
  ``{"statements": [<= 100]}``, and ``next_after`` for the next call; ``POST /v1/compliance/statements/validate``
  ``{"statements": [...]}`` (``submit`` or ``admin``): 200 when valid, else 400 ``invalid_statements`` with every
  problem by ``statement_<i>`` and field
- ``GET /v1/compliance/notices`` ?content_id (``admin``); ``POST /v1/content/{content_id}/notice-delay``
  {requested_by, reference, renew} (``admin``): an authority's request to delay the uploader's notice (TCO Art. 11)
- ``GET /v1/preservation`` ?content_id, ``POST /v1/preservation/{preservation_id}/read`` {purpose} and
  ``POST /v1/preservation/{preservation_id}/extend`` {until, requested_by, reference} (``preservation`` only)
- ``GET /v1/compliance/transparency`` ?from&to&format=json|csv|html (``admin``): the report, computed now;
  ``POST /v1/compliance/transparency`` {from, to} -> 201: published as the period's next version;
  ``GET /v1/compliance/transparency/reports`` and ``/reports/{report_id}`` (?format) (``admin``)
- ``GET /v1/compliance/dashboard`` (``admin``): open orders and clocks, missed deadlines, exposed status, penalties;
  ``GET`` / ``PUT /v1/compliance/settings`` (``admin``): turnover and the statement and report texts
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Query
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from bastion.accounts.service import Principal
from bastion.api.deps import DB, AppSettings, require_scope
from bastion.compliance import exposure, statements, transparency
from bastion.compliance.complaints import ComplaintService
from bastion.compliance.notices import NoticeService
from bastion.compliance.preservation import Accessor, PreservationService
from bastion.compliance.sweep import handle_restrictions
from bastion.errors import InvalidInput

Submitter = Annotated[Principal, Depends(require_scope("submit"))]
ComplaintReader = Annotated[Principal, Depends(require_scope("submit", "review"))]
Admin = Annotated[Principal, Depends(require_scope("admin"))]
Validator = Annotated[Principal, Depends(require_scope("submit", "admin"))]
Preserver = Annotated[Principal, Depends(require_scope("preservation"))]
FORMATS = ("json", "csv", "html")


class ComplaintRequest(BaseModel):
    regime: str = Field(
        description="tco (Regulation (EU) 2021/784, Art. 10) or dsa (Regulation (EU) 2022/2065, Art. 20)."
    )
    reason: str = Field(default="", description="The user's words (at most 5000 characters).")
    complainant_id: str | None = Field(default=None, description="The platform's id of the user.")


class DelayRequest(BaseModel):
    requested_by: str = Field(description="The competent authority that asked.")
    reference: str = Field(description="The authority's reference for the request.")
    renew: bool = Field(default=False, description="Renew a running delay for six more weeks (once).")


class ReadRequest(BaseModel):
    purpose: str = Field(description="Why the preserved content is read (audited): the request it answers.")


class ExtendRequest(BaseModel):
    until: datetime = Field(description="The new expiry (ISO 8601, with a zone).")
    requested_by: str = Field(description="The authority or court that asked.")
    reference: str = Field(description="Its reference.")


class PeriodRequest(BaseModel):
    from_: datetime = Field(alias="from", description="Start of the period (inclusive, ISO 8601).")
    to: datetime = Field(description="End of the period (exclusive).")


def _actor(principal: Principal) -> str:
    return f"api-key:{principal.key_id}"


def _accessor(principal: Principal) -> Accessor:
    return Accessor(_actor(principal), principal.organisation_id, frozenset(principal.scopes))


def _period(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    if since is None or until is None:
        raise InvalidInput("give the period as from=...&to=... (ISO 8601)", code="invalid_period")
    return transparency.check_period(since, until)


def _format(document: dict[str, Any], fmt: str) -> Response | dict[str, Any]:
    if fmt not in FORMATS:
        raise InvalidInput(f"format is one of {', '.join(FORMATS)}", code="invalid_format")
    if fmt == "csv":
        return PlainTextResponse(transparency.to_csv(document), media_type="text/csv; charset=utf-8")
    if fmt == "html":
        from bastion.console.transparency_html import standalone

        return HTMLResponse(
            standalone(document),
            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:"},
        )
    return document


def add_compliance_routes(r: FastAPI) -> None:
    """Added to the app itself (not a router) so the route-matrix test sees every endpoint."""

    # -- complaints ----------------------------------------------------------------------------------------------
    @r.post("/v1/content/{content_id}/complaints", status_code=201)
    def lodge_complaint(
        content_id: int, body: ComplaintRequest, db: DB, settings: AppSettings, principal: Submitter
    ) -> dict[str, Any]:
        """A complaint against the removal or restriction in force on this content."""
        return {
            "complaint": ComplaintService(db, settings).lodge(
                _actor(principal),
                principal.organisation_id,
                content_id,
                regime=body.regime,
                reason=body.reason,
                complainant_id=body.complainant_id,
            )
        }

    @r.get("/v1/complaints")
    def list_complaints(
        db: DB, settings: AppSettings, principal: ComplaintReader, open: bool = False
    ) -> dict[str, Any]:  # noqa: A002 - the query parameter's name
        return {"complaints": ComplaintService(db, settings).list(principal.organisation_id, open_only=open)}

    @r.get("/v1/complaints/{complaint_id}")
    def get_complaint(complaint_id: int, db: DB, settings: AppSettings, principal: ComplaintReader) -> dict[str, Any]:
        return {"complaint": ComplaintService(db, settings).get(principal.organisation_id, complaint_id)}

    # -- statements of reasons -------------------------------------------------------------------------------------
    @r.get("/v1/compliance/statements")
    def export_statements(
        db: DB,
        settings: AppSettings,
        principal: Admin,
        since: Annotated[datetime | None, Query(alias="from")] = None,
        until: Annotated[datetime | None, Query(alias="to")] = None,
        after: int = 0,
    ) -> dict[str, Any]:
        """One batch body for the Transparency Database's multiple endpoint (at most 100 statements), oldest
        first; pass ``next_after`` as ``after`` for the next batch. Restrictions not yet swept get theirs first."""
        handle_restrictions(db, settings, organisation_id=principal.organisation_id, limit=1000)
        with db.session() as s:
            rows = statements.query(s, principal.organisation_id, since, until, after_id=after)
            body = [row.statement for row in rows]
        if body:
            statements.check(body)  # what Bastion built must pass the Transparency Database's rules
        return {"statements": body, "next_after": rows[-1].id if len(rows) == statements.BATCH_SIZE else None}

    @r.post("/v1/compliance/statements/validate")
    def validate_statements(principal: Validator, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        """Check a batch body against the Transparency Database's rules (400 ``invalid_statements`` with every
        problem, or ``{"valid": true}``)."""
        statements.check(body.get("statements"))
        return {"valid": True, "statements": len(body["statements"])}

    # -- notices ---------------------------------------------------------------------------------------------------
    @r.get("/v1/compliance/notices")
    def list_notices(db: DB, settings: AppSettings, principal: Admin, content_id: int | None = None) -> dict[str, Any]:
        return {"notices": NoticeService(db, settings).list(principal.organisation_id, content_id=content_id)}

    @r.post("/v1/content/{content_id}/notice-delay")
    def delay_notice(
        content_id: int, body: DelayRequest, db: DB, settings: AppSettings, principal: Admin
    ) -> dict[str, Any]:
        """An authority's request not to notify the uploader yet: six weeks, renewable once."""
        return {
            "notice": NoticeService(db, settings).delay(
                _actor(principal),
                principal.organisation_id,
                content_id,
                requested_by=body.requested_by,
                reference=body.reference,
                renew=body.renew,
            )
        }

    # -- preservation ----------------------------------------------------------------------------------------------
    @r.get("/v1/preservation")
    def list_preserved(
        db: DB, settings: AppSettings, principal: Preserver, content_id: int | None = None
    ) -> dict[str, Any]:
        return {"preserved": PreservationService(db, settings).list(_accessor(principal), content_id=content_id)}

    @r.post("/v1/preservation/{preservation_id}/read")
    def read_preserved(
        preservation_id: int, body: ReadRequest, db: DB, settings: AppSettings, principal: Preserver
    ) -> dict[str, Any]:
        """The decrypted package (audited with its purpose)."""
        return {
            "preserved": PreservationService(db, settings).read(
                _accessor(principal), preservation_id, purpose=body.purpose
            )
        }

    @r.post("/v1/preservation/{preservation_id}/extend")
    def extend_preserved(
        preservation_id: int, body: ExtendRequest, db: DB, settings: AppSettings, principal: Preserver
    ) -> dict[str, Any]:
        return {
            "preserved": PreservationService(db, settings).extend(
                _accessor(principal),
                preservation_id,
                until=body.until,
                requested_by=body.requested_by,
                reference=body.reference,
            )
        }

    # -- transparency ----------------------------------------------------------------------------------------------
    @r.get("/v1/compliance/transparency", response_model=None)
    def transparency_report(
        db: DB,
        principal: Admin,
        since: Annotated[datetime | None, Query(alias="from")] = None,
        until: Annotated[datetime | None, Query(alias="to")] = None,
        format: str = "json",
    ) -> Response | dict[str, Any]:  # noqa: A002
        period = _period(since, until)
        if format not in FORMATS:
            raise InvalidInput(f"format is one of {', '.join(FORMATS)}", code="invalid_format")
        return _format(transparency.compute(db, principal.organisation_id, *period), format)

    @r.post("/v1/compliance/transparency", status_code=201)
    def publish_report(body: PeriodRequest, db: DB, principal: Admin) -> dict[str, Any]:
        return {"report": transparency.publish(db, _actor(principal), principal.organisation_id, body.from_, body.to)}

    @r.get("/v1/compliance/transparency/reports")
    def list_reports(db: DB, principal: Admin) -> dict[str, Any]:
        return {"reports": transparency.list_published(db, principal.organisation_id)}

    @r.get("/v1/compliance/transparency/reports/{report_id}", response_model=None)
    def get_report(report_id: int, db: DB, principal: Admin, format: str = "json") -> Response | dict[str, Any]:  # noqa: A002
        if format not in FORMATS:
            raise InvalidInput(f"format is one of {', '.join(FORMATS)}", code="invalid_format")
        report = transparency.get_published(db, principal.organisation_id, report_id)
        if format == "json":
            return {"report": report}
        return _format(report["document"], format)

    # -- dashboard and settings ------------------------------------------------------------------------------------
    @r.get("/v1/compliance/dashboard")
    def compliance_dashboard(db: DB, principal: Admin) -> dict[str, Any]:
        return exposure.dashboard(db, principal.organisation_id)

    @r.get("/v1/compliance/settings")
    def get_compliance_settings(db: DB, principal: Admin) -> dict[str, Any]:
        return {"compliance": exposure.compliance_config(db, principal.organisation_id)}

    @r.put("/v1/compliance/settings")
    def put_compliance_settings(db: DB, principal: Admin, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        return {"compliance": exposure.configure(db, _actor(principal), principal.organisation_id, body)}
