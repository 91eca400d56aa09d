"""``/v1/policy``: the caller's organisation's rules file, its versions, validation and backtests (scope ``policy``).

Rules files travel as YAML text: either the request body itself (``Content-Type: application/yaml``, with
``?comment=`` or ``?since=`` in the query) or JSON ``{"source": "...", "comment": "..."}``. An invalid file is a
422 ``invalid_policy`` whose ``details.problems`` list each problem with its line. Everything acts on the calling
key's organisation only; another organisation's versions do not exist here (404).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool

from bastion.accounts.service import Principal
from bastion.api.deps import DB, require_scope
from bastion.errors import ContentTooLarge, InvalidInput, InvalidPolicy, UnsupportedContent
from bastion.policy.rules import MAX_SOURCE_CHARS

PolicyScope = Annotated[Principal, Depends(require_scope("policy"))]

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"})
MAX_BODY_BYTES = MAX_SOURCE_CHARS * 4 + 4096


async def _read_body(request: Request, allowed: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """The rules text and the other fields (from the JSON object, or the query string for a YAML body)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ContentTooLarge(f"the request body is over the limit of {MAX_BODY_BYTES} bytes", code="body_too_large")
    if ctype in YAML_TYPES:
        try:
            source = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("the rules file must be UTF-8 text", code="invalid_encoding") from None
        fields = {k: v for k, v in request.query_params.items() if k in allowed}
        return source, fields
    if ctype == "application/json":
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"the JSON body cannot be parsed: {exc}", code="invalid_json") from None
        if not isinstance(data, dict):
            raise InvalidInput("the JSON body must be an object", code="invalid_json")
        unknown = sorted(set(data) - {"source", *allowed})
        if unknown:
            raise InvalidInput(f"unknown field(s): {', '.join(unknown)}", code="unknown_field", fields=unknown)
        source = data.get("source")
        if not isinstance(source, str):
            raise InvalidInput("'source' (the rules file as YAML text) is required", code="invalid_request",
                               field="source")
        return source, {k: v for k, v in data.items() if k != "source"}
    raise UnsupportedContent(
        "send the rules file as application/yaml, or application/json {\"source\": ...}",
        code="unsupported_media_type",
        content_type=ctype,
    )


def _actor(principal: Principal) -> str:
    return f"api-key:{principal.key_id}"


def add_policy_routes(r: FastAPI) -> None:
    """Added to the app itself (not a router), so the route matrix in tests/test_api_auth.py sees every one."""

    from bastion.policy.engine import compile_policy, default_source
    from bastion.policy.service import PolicyService

    @r.get("/v1/policy")
    def get_policy(db: DB, principal: PolicyScope) -> dict[str, Any]:
        """The rules in force for the caller's organisation (``version`` null: the built-in default)."""
        info = PolicyService(db).current_info(principal.organisation_id)
        if info is None:
            source = default_source()
            return {"version": None, "builtin": True, "source": source, **_summary(compile_policy(source))}
        try:
            summary = _summary(compile_policy(info.source or ""))
        except InvalidPolicy as exc:  # stored before the checks were tightened: shown, with its problems
            summary = {"problems": exc.details.get("problems", [])}
        return {**info.to_dict(), "builtin": False, **summary}

    @r.put("/v1/policy")
    async def put_policy(request: Request, db: DB, principal: PolicyScope) -> dict[str, Any]:
        """Check and store a new version of the rules; 422 invalid_policy (nothing stored) when it has problems."""
        source, fields = await _read_body(request, ("comment",))
        comment = fields.get("comment") or ""
        if not isinstance(comment, str):
            raise InvalidInput("'comment' must be text", code="invalid_request", field="comment")
        svc = PolicyService(db, _actor(principal))
        info = await run_in_threadpool(svc.set_policy, principal.organisation_id, source, comment)
        return {"policy": info.to_dict(), "changed": info.changed}

    @r.get("/v1/policy/versions")
    def list_versions(
        db: DB, principal: PolicyScope, diff: Annotated[bool, Query(description="Include unified diffs.")] = False
    ) -> dict[str, Any]:
        """Every stored version, newest first (who, when, comment; with ``diff=true`` each one's changes)."""
        versions = PolicyService(db).history(principal.organisation_id, diff=diff)
        return {"versions": [v.to_dict() for v in versions]}

    @r.get("/v1/policy/versions/{version}")
    def get_version(version: int, db: DB, principal: PolicyScope) -> dict[str, Any]:
        """One stored version with its text."""
        return PolicyService(db).get(principal.organisation_id, version).to_dict()

    @r.post("/v1/policy/validate")
    async def validate_policy(request: Request, principal: PolicyScope) -> dict[str, Any]:
        """Check a rules file without storing it: its summary, or 422 invalid_policy with every problem."""
        source, _ = await _read_body(request, ())
        policy = await run_in_threadpool(compile_policy, source)
        return {"valid": True, **_summary(policy)}

    @r.post("/v1/policy/backtest")
    async def backtest_policy(request: Request, db: DB, principal: PolicyScope) -> dict[str, Any]:
        """What a draft would have decided about the organisation's submissions of the window (``since``, e.g.
        "7d"), item by item against the decisions made, with totals per outcome. Nothing is stored."""
        from bastion.policy.backtest import backtest

        source, fields = await _read_body(request, ("since", "max_items"))
        since = fields.get("since", "7d")
        max_items = fields.get("max_items", 1000)
        try:
            max_items = int(max_items)
        except (TypeError, ValueError):
            raise InvalidInput("'max_items' must be a whole number", code="invalid_request") from None
        if not 0 <= max_items <= 10_000:
            raise InvalidInput("'max_items' must be from 0 to 10000", code="invalid_request")
        if not isinstance(since, str | int) or isinstance(since, bool):
            raise InvalidInput("'since' must be a duration such as \"7d\"", code="invalid_duration")
        report = await run_in_threadpool(
            lambda: backtest(db, principal.organisation_id, source, since, max_items=max_items)
        )
        return report.to_dict()


def _summary(policy: Any) -> dict[str, Any]:
    s = policy.summary()
    return {"rules": s["rules"], "shadow_rules": s["shadow_rules"], "default": s["default"],
            "rule_names": s["rule_names"]}
