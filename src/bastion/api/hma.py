"""HMA compatibility: the part of OpenMediaMatch's HTTP API that platforms integrate against (issue 3, §9).

A platform already calling Hasher-Matcher-Actioner switches to Bastion by changing its base URL and sending an
API key (``Authorization: Bearer``). Request and response shapes follow OpenMediaMatch's blueprints; errors use
Bastion's one JSON error shape (``{"error": {"code", "message"}}``) instead of HMA's ``{"message"}``.

Covered (HMA route -> Bastion behaviour):

- ``GET /status`` -> ``I-AM-ALIVE`` as text (public). HMA's 503 ``INDEX-STALE`` never happens here: the matcher is
  refreshed before every lookup.
- ``POST /h/hash`` -> one multipart file under the field ``photo`` or ``video`` -> ``{signal_type: hash}``;
  ``types=pdq,md5`` narrows it. ``GET /h/hash?url=`` answers 403 ``url_fetch_disabled`` (remote fetching is
  enabled per organisation later, through the SSRF-safe fetcher in intake/fetch.py).
- ``GET /m/raw_lookup?signal_type&signal[&include_distance][&banks]`` -> ``{"matches": [content_id, ...]}`` or,
  with distances, ``{"matches": [{"bank_content_id", "distance"}]}``; content ids are Bastion bank entry ids.
- ``GET /m/lookup?signal_type&signal[&banks]`` -> ``{bank: [{"bank_content_id", "distance"}]}``; ``POST /m/lookup``
  with a file -> ``{signal_type: {bank: [...]}}``. ``url=`` is refused like ``/h/hash``.
- ``POST /m/compare`` ``{signal_type: [a, b]}`` -> ``{signal_type: [is_match, {"distance": d}]}``.
- ``GET/POST /c/banks``, ``GET/PUT/DELETE /c/bank/{name}`` with HMA's bank shape
  ``{"name", "matching_enabled_ratio"}``; ``POST /c/bank/{name}/signal`` ``{signal_type: value}`` and
  ``POST /c/bank/{name}/content`` (multipart file) -> ``{"id", "signals"}``.

Tenancy: a bank created through ``POST /c/banks`` belongs to the caller's organisation. Every route sees only the
banks the caller's organisation owns or was shared (another organisation's bank answers 404, as a missing one
would); a shared bank can be read and matched but not changed (403 ``bank_read_only``). Lookups match only the
caller's banks. Bank names are unique across organisations (HMA's routes name banks), so creating a bank under a
name another organisation holds answers 409 ``bank_exists``.

Not covered or different: HMA's ``seed``/``bypass_coinflip`` (Bastion banks are on or off, so
``matching_enabled_ratio`` is only 0 or 1 and other values are refused); bank renames via PUT; the ``metadata``
of added content; ``DELETE /c/bank/{name}/content/{id}``, exchanges, signal-type and index-status routes; HMA's
``video_md5`` is Bastion's ``md5`` (signal names are Bastion's). Distances are strings, like HMA's
``pretty_str()``. ``raw_lookup`` sees only enabled entries of enabled banks (HMA's sees disabled ones too);
``lookup`` leaves out block matches overruled by an allow-list bank. Adding content already in the bank answers 409
``already_banked``; a duplicate bank name answers 409 ``bank_exists`` (HMA: 403). Unknown banks answer 404.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from bastion import signals as registry
from bastion.accounts.service import Principal
from bastion.api.deps import DB, require_scope
from bastion.banks.service import BankInfo, BankService
from bastion.content import Content, ContentType
from bastion.errors import Forbidden, InvalidInput
from bastion.matching.matcher import Match
from bastion.signals.base import Signal

Submitter = Annotated[Principal, Depends(require_scope("submit"))]
Curator = Annotated[Principal, Depends(require_scope("curate"))]

# HMA names content types "photo" and "video"; uploads carry the file under that field name.
_CONTENT_TYPES = {"photo": ContentType.IMAGE, "video": ContentType.VIDEO}


def _url_fetch(url: str | None) -> None:
    """Remote fetching by URL is off until organisations can enable it (issue 3): refuse it clearly."""
    if url:
        raise Forbidden("fetching content by URL is not enabled for this organisation", code="url_fetch_disabled")


def _distance(d: float) -> str:
    return str(int(d)) if float(d).is_integer() else str(d)


def _bank_shape(b: BankInfo) -> dict[str, Any]:
    return {"name": b.name, "matching_enabled_ratio": 1.0 if b.enabled else 0.0}


def _enabled_from(enabled: bool | None, ratio: float | None) -> bool | None:
    if ratio is not None:
        if ratio not in (0.0, 1.0):
            raise InvalidInput(
                "enabled_ratio must be 0 or 1: Bastion banks are either on or off", code="unsupported_enabled_ratio"
            )
        return ratio == 1.0
    return enabled


def _match(request: Request, principal: Principal, sigs: Iterable[Signal]) -> tuple[list[Match], list[Match]]:
    """(block matches, every match including allow-list and suppressed ones) against the banks the caller's
    organisation owns or was shared, with the app's shared, change-feed-fresh matcher."""
    bank_ids = BankService(request.app.state.db).visible_bank_ids(principal.organisation_id)
    result = request.app.state.live_matcher.match(sigs, bank_ids=bank_ids)
    return result.matches, result.matches + result.suppressed + result.allowed_by


def _query_signal(signal_type: str | None, signal: str | None) -> Signal:
    if not signal_type or not signal:
        raise InvalidInput("signal_type and signal are both required", code="missing_parameter")
    return Signal(signal_type, registry.validate(signal_type, signal))


def _banks(banks: str | None) -> set[str] | None:
    return {b.strip() for b in banks.split(",") if b.strip()} if banks else None


def _by_bank(matches: list[Match], banks: set[str] | None) -> dict[str, list[dict[str, Any]]]:
    best: dict[tuple[str, int], float] = {}
    for m in matches:
        if banks is None or m.bank in banks:
            key = (m.bank, m.entry_id)
            best[key] = min(best.get(key, m.distance), m.distance)
    out: dict[str, list[dict[str, Any]]] = {}
    for (bank, entry_id), d in sorted(best.items()):
        out.setdefault(bank, []).append({"bank_content_id": entry_id, "distance": _distance(d)})
    return out


async def _upload(request: Request) -> tuple[str, bytes]:
    """The one uploaded file of a multipart request, with its field name ("photo" or "video")."""
    try:
        form = await request.form()
    except Exception as exc:  # a body that is not multipart/form-data
        raise InvalidInput(f"expected a multipart/form-data file upload: {exc}", code="missing_file") from None
    files = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
    if not files:
        raise InvalidInput("missing multipart/form-data file upload", code="missing_file")
    if len(files) > 1:
        raise InvalidInput("only one file allowed per request", code="too_many_files")
    field, upload = files[0]
    if field not in _CONTENT_TYPES:
        raise InvalidInput(
            f"no such content_type: {field!r}; upload the file under 'photo' or 'video'", code="unknown_content_type"
        )
    return field, await upload.read()


def _hash(request: Request, field: str, data: bytes, types: str | None = None) -> list[Signal]:
    content = Content.from_bytes(data, request.app.state.settings)
    if content.content_type != _CONTENT_TYPES[field]:
        raise InvalidInput(
            f"the file under {field!r} is {content.content_type.value}, not {_CONTENT_TYPES[field].value}",
            code="content_type_mismatch",
        )
    sigs = registry.compute_all(content)
    if types:
        wanted = {t.strip() for t in types.split(",") if t.strip()}
        for t in wanted:
            registry.get(t)  # unknown_signal_type
        sigs = [s for s in sigs if s.type in wanted]
        if not sigs:
            raise InvalidInput("none of the requested signal types applies to this content", code="no_signals")
    return sigs


class BankRequest(BaseModel):
    name: str | None = None
    enabled: bool | None = None
    enabled_ratio: float | None = None


def _service(db: Any, principal: Principal) -> BankService:
    """The bank service acting for the caller's organisation (it sees only that organisation's banks)."""
    return BankService(db, f"api-key:{principal.key_id}", organisation_id=principal.organisation_id)


def _add_signals(db: Any, principal: Principal, bank: str, sigs: list[Signal], content_type: str | None) -> dict:
    svc = _service(db, principal)
    entry = svc.add_entry(bank, sigs, added_by=f"api-key:{principal.key_id}", content_type=content_type)
    return {"id": entry.id, "signals": {s.type: s.value for s in entry.signals}}


def add_hma_routes(r: FastAPI) -> None:
    """Added to the app itself (not through a router) so the scope-matrix test sees every endpoint."""

    @r.get("/status", response_class=PlainTextResponse)
    def status() -> str:
        """HMA's liveness check (no authentication)."""
        return "I-AM-ALIVE"

    # -- hashing ------------------------------------------------------------------------------------------------
    @r.get("/h/hash")
    def hash_url(_: Submitter, url: str | None = None) -> dict[str, str]:
        if not url:
            raise InvalidInput("url is required", code="missing_parameter")
        _url_fetch(url)
        return {}  # pragma: no cover - unreachable while URL fetching is disabled

    @r.post("/h/hash")
    async def hash_upload(request: Request, _: Submitter, types: str | None = None) -> dict[str, str]:
        field, data = await _upload(request)
        sigs = await run_in_threadpool(_hash, request, field, data, types)
        return {s.type: s.value for s in sigs}

    # -- matching -----------------------------------------------------------------------------------------------
    @r.get("/m/raw_lookup")
    def raw_lookup(
        request: Request,
        principal: Submitter,
        signal_type: str | None = None,
        signal: str | None = None,
        include_distance: bool = False,
        banks: str | None = None,
    ) -> dict[str, Any]:
        _, every = _match(request, principal, [_query_signal(signal_type, signal)])
        found = [m for ms in _by_bank(every, _banks(banks)).values() for m in ms]
        found.sort(key=lambda m: m["bank_content_id"])
        if include_distance:
            return {"matches": found}
        return {"matches": [m["bank_content_id"] for m in found]}

    @r.get("/m/lookup")
    def lookup_get(
        request: Request,
        principal: Submitter,
        signal_type: str | None = None,
        signal: str | None = None,
        url: str | None = None,
        banks: str | None = None,
    ) -> dict[str, Any]:
        _url_fetch(url)
        blocks, _every = _match(request, principal, [_query_signal(signal_type, signal)])
        return _by_bank(blocks, _banks(banks))

    @r.post("/m/lookup")
    async def lookup_post(request: Request, principal: Submitter, banks: str | None = None) -> dict[str, Any]:
        field, data = await _upload(request)
        sigs = await run_in_threadpool(_hash, request, field, data)
        blocks, _every = await run_in_threadpool(_match, request, principal, sigs)
        wanted = _banks(banks)
        return {
            t: _by_bank([m for m in blocks if m.signal_type == t], wanted) for t in dict.fromkeys(s.type for s in sigs)
        }

    @r.post("/m/compare")
    def compare(body: dict[str, Any], _: Submitter) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, pair in body.items():
            if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(h, str) for h in pair):
                raise InvalidInput(f"{name}: give exactly two hashes as a list", code="invalid_compare_pair")
            stype = registry.get(name)
            a, b = (stype.validate(h) for h in pair)
            d = stype.distance(a, b)
            out[name] = [bool(stype.is_match(d)), {"distance": int(d) if float(d).is_integer() else d}]
        return out

    # -- curation -----------------------------------------------------------------------------------------------
    @r.get("/c/banks")
    def banks_index(db: DB, principal: Curator) -> list[dict[str, Any]]:
        return [_bank_shape(b) for b in _service(db, principal).list_banks()]

    @r.post("/c/banks", status_code=201)
    def bank_create(body: BankRequest, db: DB, principal: Curator) -> dict[str, Any]:
        if not body.name:
            raise InvalidInput("name is required", code="missing_parameter")
        enabled = _enabled_from(body.enabled, body.enabled_ratio)
        svc = _service(db, principal)
        bank = svc.create_bank(body.name, created_by=svc.actor)
        if enabled is False:
            bank = svc.set_bank_enabled(body.name, False)
        return _bank_shape(bank)

    @r.get("/c/bank/{bank_name}")
    def bank_show(bank_name: str, db: DB, principal: Curator) -> dict[str, Any]:
        return _bank_shape(_service(db, principal).get_bank(bank_name))

    @r.put("/c/bank/{bank_name}")
    def bank_update(bank_name: str, body: BankRequest, db: DB, principal: Curator) -> dict[str, Any]:
        svc = _service(db, principal)
        bank = svc.get_bank(bank_name, writable=True)
        if body.name is not None and body.name != bank_name:
            raise InvalidInput("renaming banks is not supported", code="rename_unsupported")
        enabled = _enabled_from(body.enabled, body.enabled_ratio)
        if enabled is not None:
            bank = svc.set_bank_enabled(bank_name, enabled)
        return _bank_shape(bank)

    @r.delete("/c/bank/{bank_name}")
    def bank_delete(bank_name: str, db: DB, principal: Curator) -> dict[str, str]:
        _service(db, principal).delete_bank(bank_name)
        return {"message": "Done"}

    @r.post("/c/bank/{bank_name}/signal")
    def bank_add_signal(bank_name: str, body: dict[str, Any], db: DB, principal: Curator) -> dict[str, Any]:
        _service(db, principal).get_bank(bank_name, writable=True)  # 404 / bank_read_only before anything else
        if not body:
            raise InvalidInput("no signals given", code="no_signals")
        sigs = []
        for name, value in body.items():
            if not isinstance(value, str):
                raise InvalidInput(f"{name}: the signal must be a string", code="invalid_signal")
            sigs.append(Signal(name, registry.validate(name, value)))
        return _add_signals(db, principal, bank_name, sigs, None)

    @r.post("/c/bank/{bank_name}/content")
    async def bank_add_content(
        bank_name: str, request: Request, db: DB, principal: Curator, url: str | None = None
    ) -> dict[str, Any]:
        await run_in_threadpool(lambda: _service(db, principal).get_bank(bank_name, writable=True))
        _url_fetch(url)
        field, data = await _upload(request)
        sigs = registry.usable(await run_in_threadpool(_hash, request, field, data))
        ctype = _CONTENT_TYPES[field].value
        return await run_in_threadpool(_add_signals, db, principal, bank_name, sigs, ctype)
