"""Submissions: ``POST /v1/content`` (decide or queue one piece of content), ``GET /v1/content/{id}`` (its
decision and evidence), ``GET /v1/content?external_id=`` (find by the platform's id), and the organisation's own
intake settings (``GET/PATCH /v1/organisation``).

``POST /v1/content`` takes either ``multipart/form-data`` (a ``file`` part, or a ``text`` or ``url`` field) or
``application/json`` (``text`` or ``url``), with the metadata fields ``content_id`` (the platform's id, required),
``uploader_id``, ``jurisdictions`` (ISO 3166-1 alpha-2 codes: a JSON list, or comma-separated in a form),
``surface`` and ``language``. Answers: ``201`` decided in the request, ``202`` pending (a worker decides it; the
``decision.made`` webhook follows), ``200`` an idempotent replay (``Idempotent-Replayed: true``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.accounts.service import Principal
from bastion.api.deps import require_scope
from bastion.decisions.metrics import PipelineMetrics
from bastion.decisions.pipeline import DecisionPipeline
from bastion.errors import BastionError, ContentTooLarge, InvalidInput, NotFound, UnsupportedMediaType
from bastion.intake.service import IntakeService, Payload, SubmissionMeta
from bastion.matching.live import LiveMatcher
from bastion.storage.models import Organisation

Submitter = Annotated[Principal, Depends(require_scope("submit"))]
Reader = Annotated[Principal, Depends(require_scope("submit", "review"))]
OrgAdmin = Annotated[Principal, Depends(require_scope("admin"))]

_META_FIELDS = ("content_id", "uploader_id", "jurisdictions", "surface", "language", "reach")
_SUBMIT_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["content_id"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "text": {"type": "string"},
                        "url": {"type": "string"},
                        "content_id": {"type": "string"},
                        "uploader_id": {"type": "string"},
                        "jurisdictions": {"type": "string", "description": "comma-separated ISO 3166-1 codes"},
                        "surface": {"type": "string"},
                        "language": {"type": "string"},
                        "reach": {"type": "string", "description": "views/followers: raises review priority"},
                    },
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["content_id"],
                    "properties": {
                        "text": {"type": "string"},
                        "url": {"type": "string"},
                        "content_id": {"type": "string"},
                        "uploader_id": {"type": "string"},
                        "jurisdictions": {"type": "array", "items": {"type": "string"}},
                        "surface": {"type": "string"},
                        "language": {"type": "string"},
                        "reach": {"type": "integer", "minimum": 0},
                    },
                }
            },
        },
    }
}


class BodyLimit:
    """Refuse request bodies over the limit with 413 before they are read (Content-Length) or while they stream
    in (chunked): a huge body never fills memory or disk. Applies to ``POST /v1/content`` and the HMA uploads."""

    def __init__(self, app: ASGIApp, limit: int, prefixes: tuple[str, ...] = ("/v1/content", "/h/", "/m/")) -> None:
        self.app = app
        self.limit = limit
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT") or not scope["path"].startswith(
            self.prefixes
        ):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _too_large(send, self.limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    err = ContentTooLarge(f"the request body is over the limit of {limit} bytes", code="body_too_large", limit=limit)
    body = json.dumps({"error": err.to_dict()}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def live_matcher(app: FastAPI) -> LiveMatcher:
    """The app's one matcher (shared by the API's threads and its in-process workers)."""
    return app.state.live_matcher


def _intake(request: Request) -> IntakeService:
    return request.app.state.intake


def _jurisdictions(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v for v in (p.strip() for p in value.split(",")) if v]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise InvalidInput("jurisdictions must be a list of ISO 3166-1 alpha-2 codes", code="invalid_jurisdiction")


def _text_field(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", code="invalid_request", field=name)
    return value


async def _read_submission(request: Request) -> tuple[SubmissionMeta, Payload]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: bytes | None = None
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=20)
        except BastionError:
            raise
        except Exception as exc:  # python-multipart's parse errors
            if isinstance(exc, _BodyTooLarge):
                raise
            raise InvalidInput(f"the multipart body cannot be parsed: {exc}", code="invalid_multipart") from exc
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "file":
                    raise InvalidInput(f"unexpected file part {key!r}: send the content as 'file'",
                                       code="invalid_request")
                data = await value.read()
            else:
                fields[key] = value
    elif ctype == "application/json":
        try:
            fields = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"the JSON body cannot be parsed: {exc}", code="invalid_json") from exc
        if not isinstance(fields, dict):
            raise InvalidInput("the JSON body must be an object", code="invalid_json")
    else:
        raise UnsupportedMediaType(
            "send multipart/form-data (file, text or url) or application/json (text or url)", content_type=ctype
        )
    unknown = set(fields) - {*_META_FIELDS, "text", "url"}
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}", code="unknown_field",
                           fields=sorted(unknown))
    text, url = _text_field(fields, "text"), _text_field(fields, "url")
    given = [n for n, v in (("file", data), ("text", text), ("url", url)) if v is not None]
    if len(given) != 1:
        raise InvalidInput("send exactly one of: a file, a text, a url" + (f" (got {', '.join(given)})" if given
                                                                           else ""), code="missing_content")
    content_id = _text_field(fields, "content_id")
    if not content_id:
        raise InvalidInput("content_id (the platform's own id for the content) is required",
                           code="missing_content_id")
    meta = SubmissionMeta(
        external_id=content_id,
        uploader_id=_text_field(fields, "uploader_id"),
        jurisdictions=_jurisdictions(fields.get("jurisdictions")),
        surface=_text_field(fields, "surface"),
        language=_text_field(fields, "language"),
        reach=_reach(fields.get("reach")),
    )
    return meta, Payload(data=data, text=text, url=url)


def _reach(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidInput("reach must be a whole number from 0 to 10^12", code="invalid_reach")


class OrganisationSettings(BaseModel):
    url_fetch_enabled: bool | None = None
    classifiers: dict[str, Any] | None = Field(default=None, description="Per-classifier options (see docs).")


def add_content_routes(r: FastAPI) -> None:
    @r.post("/v1/content", openapi_extra=_SUBMIT_SCHEMA, status_code=201)
    async def submit(request: Request, principal: Submitter) -> JSONResponse:
        """Submit one piece of content for a decision (see the module docs for the body)."""
        meta, payload = await _read_submission(request)
        key = request.headers.get("idempotency-key")
        from starlette.concurrency import run_in_threadpool

        result = await run_in_threadpool(
            _intake(request).submit, principal.organisation_id, meta, payload, idempotency_key=key,
            actor=f"api-key:{principal.key_id}",
        )
        item = result.item
        status = 200 if not result.created else 201 if item["status"] != "pending" else 202
        headers = {"Location": f"/v1/content/{item['id']}"}
        if not result.created:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse({"content": item}, status_code=status, headers=headers)

    @r.get("/v1/content/{content_id}")
    def get_content(content_id: int, request: Request, principal: Reader) -> dict[str, Any]:
        """A submission, its decision in force with the evidence, and earlier decisions."""
        return {"content": _intake(request).get(principal.organisation_id, content_id)}

    @r.get("/v1/content")
    def find_content(
        request: Request, principal: Reader, external_id: Annotated[str, Query(min_length=1, max_length=200)]
    ) -> dict[str, Any]:
        """The caller's submissions with this platform content id (newest decision of each)."""
        return {"content": _intake(request).find(principal.organisation_id, external_id)}

    @r.get("/v1/organisation")
    def get_organisation(request: Request, principal: OrgAdmin) -> dict[str, Any]:
        """The caller's organisation and its intake settings."""
        return {"organisation": _organisation_dict(request, principal.organisation_id)}

    @r.patch("/v1/organisation")
    def update_organisation(body: OrganisationSettings, request: Request, principal: OrgAdmin) -> dict[str, Any]:
        """Switch URL fetching on or off, set classifier options; audited."""
        from bastion import audit

        db = request.app.state.db
        with db.session() as s:
            org = s.get(Organisation, principal.organisation_id)
            if org is None:
                raise NotFound("organisation not found")
            changes: dict[str, Any] = {}
            if body.url_fetch_enabled is not None and body.url_fetch_enabled != org.url_fetch_enabled:
                org.url_fetch_enabled = body.url_fetch_enabled
                changes["url_fetch_enabled"] = body.url_fetch_enabled
            if body.classifiers is not None:
                from bastion.classifiers import validate_classifier_config

                config = dict(org.config or {})
                config["classifiers"] = validate_classifier_config(body.classifiers)
                org.config = config
                changes["classifiers"] = config["classifiers"]
            if changes:
                request.app.state.pipeline.forget_organisation(org.id)
                audit.append(s, f"api-key:{principal.key_id}", "organisation_updated", f"organisation:{org.id}",
                             changes, organisation_id=org.id)
        return {"organisation": _organisation_dict(request, principal.organisation_id)}


def _organisation_dict(request: Request, organisation_id: int) -> dict[str, Any]:
    with request.app.state.db.session() as s:
        org = s.get(Organisation, organisation_id)
        if org is None:
            raise NotFound("organisation not found")
        return {"id": org.id, "name": org.name, "url_fetch_enabled": org.url_fetch_enabled,
                "classifiers": (org.config or {}).get("classifiers", {})}


def install_content(app: FastAPI) -> None:
    """The shared matcher, the pipeline and the intake service on ``app.state``; the routes; the body limit.
    Call after :func:`bastion.api.ops.install_ops` (the pipeline's metrics go to the app's registry)."""
    state = app.state
    state.live_matcher = LiveMatcher(state.db, state.settings)
    state.pipeline_metrics = PipelineMetrics(state.metrics.registry, state.db)
    state.pipeline = DecisionPipeline(state.db, state.settings, state.live_matcher, state.pipeline_metrics)
    state.intake = IntakeService(state.db, state.settings, state.pipeline)
    add_content_routes(app)
    app.add_middleware(BodyLimit, limit=state.settings.max_upload_bytes)
