"""Exchanges and banks: import what an exchange serves into a bank, export a bank as an exchange dataset, and the
member-side registry of an organisation's exchanges (kind, name, encrypted credentials, cursor).

Two ways in:

* **one-shot** (``bastion exchange fetch`` / ``import``): signals are turned into bank-import records and go through
  the bank importer (:meth:`bastion.banks.service.BankService.import_rows`): one transaction per page, bad rows
  reported with their code, rows the bank already holds skipped, the import run recorded and audited;
* **registered** (``bastion exchange add`` then ``sync``): the exchange is a row of ``exchanges`` (the forum's
  member-side table, migration 0009) whose credentials are encrypted at rest (:mod:`bastion.webhooks.crypto`), and
  a sync stores each page *with its next cursor* in one transaction through the forum's
  :func:`bastion.forum.sync.store_page` (idempotent by the exchange's id for each hash; a retraction disables the
  entry it made), so ThreatExchange, TAT and files resume and retract exactly as a forum hub does.

Export goes the other way: a bank's entries as :class:`ExchangedSignal` (one per signal, labels kept), written as
JSON Lines, STIX 2.1 or ThreatExchange CSV by plain functions over ``Iterable[ExchangedSignal]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select

from bastion import audit
from bastion.banks import formats
from bastion.banks.importer import ImportResult
from bastion.banks.service import BankService
from bastion.errors import BastionError, Conflict, InvalidInput, NotFound
from bastion.exchanges import files, jsonl, stix, tat, threatexchange
from bastion.exchanges.base import Exchange, ExchangedSignal
from bastion.settings import Settings
from bastion.storage.db import Database
from bastion.storage.models import Bank, Organisation, OrganisationExchange, utcnow
from bastion.webhooks import crypto

EXPORT_FORMATS = ("jsonl", "stix", "te-csv")
IMPORT_FORMATS = files.FILE_FORMATS
#: the kinds an organisation can register here, and the credentials / options each needs
KINDS: dict[str, dict[str, tuple[str, ...]]] = {
    threatexchange.KIND: {"secrets": ("access_token",), "options": ("privacy_group",)},
    tat.KIND: {"secrets": ("username", "password"), "options": ()},
    files.KIND: {"secrets": (), "options": ("path", "format")},
}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
MAX_PAGES = 1000


# -- signals <-> bank entries -----------------------------------------------------------------------------------------
def signals_to_records(signals: Iterable[ExchangedSignal], kind: str) -> Iterator[formats.Record]:
    """Bank-import records, one entry per signal (retracted ones skipped); the source's labels are kept."""
    for n, sig in enumerate(signals, start=1):
        if sig.retracted:
            yield formats.RowSkip(n, "retracted by the source")
            continue
        labels: dict[str, Any] = dict(sig.labels)
        source = labels.pop("source", None)
        if sig.contributor and "contributor" not in labels:
            labels[f"{_label_prefix(kind)}_contributor"] = sig.contributor
        if sig.incident:
            labels["incident"] = sig.incident
        yield formats.ImportRecord(
            n,
            [(n, sig.signal_type, sig.value)],
            labels,
            source=source,
            origin=f"{kind}:{sig.source_id}" if sig.source_id else kind,
            content_type=sig.extra.get("content_type") if isinstance(sig.extra.get("content_type"), str) else None,
        )


def _label_prefix(kind: str) -> str:
    return {"threatexchange": "te", "tat": "tat", "bastion-forum": "forum"}.get(kind, "exchange")


def import_signals(
    db: Database,
    bank: str,
    signals: Iterable[ExchangedSignal],
    *,
    kind: str,
    actor: str = "cli",
    organisation_id: int | None = None,
    source_name: str = "",
) -> ImportResult:
    """Import signals into ``bank`` through the bank importer (one transaction)."""
    service = BankService(db, actor, organisation_id=organisation_id)
    return service.import_rows(
        bank, signals_to_records(signals, kind), fmt=kind[:32], source_name=source_name, added_by=actor
    )


def bank_signals(
    db: Database, bank: str, *, organisation_id: int | None = None, include_disabled: bool = False
) -> Iterator[ExchangedSignal]:
    """A bank's entries as exchanged signals (one per signal; a disabled entry is a retracted signal)."""
    service = BankService(db, "cli", organisation_id=organisation_id)
    for entry in service.iter_export(bank, include_disabled=include_disabled):
        labels = {k: str(v) for k, v in entry.labels.items()}
        if entry.source and "source" not in labels:
            labels["source"] = entry.source
        for stype, value in entry.signals:
            yield ExchangedSignal(
                stype,
                value,
                labels,
                source_id=entry.origin if entry.origin and len(entry.signals) == 1 else f"{bank}:{entry.id}:{stype}",
                created_at=entry.added_at,
                retracted=not entry.enabled,
                extra={"content_type": entry.content_type} if entry.content_type else {},
            )


def write_signals(fmt: str, signals: Iterable[ExchangedSignal], out: IO[str]) -> int:
    """Write ``signals`` in an export format (``EXPORT_FORMATS``); returns how many were written."""
    if fmt == "jsonl":
        return jsonl.write_jsonl(signals, out)
    if fmt == "stix":
        return stix.write_stix(signals, out)
    if fmt == "te-csv":
        return threatexchange.write_te_csv(signals, out)
    raise InvalidInput(f"unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}", code="unknown_format")


def read_file(fmt: str, path: str | Path, *, default_type: str | None = None) -> list[ExchangedSignal]:
    """Every signal of a file, read and checked *before* anything is stored (a bad row raises with its line)."""
    exchange = files.FileExchange(Path(path).name, path, fmt, default_type=default_type)
    page = exchange.fetch(None, limit=1 << 62)
    if exchange.rejected:
        first = exchange.rejected[0]
        raise InvalidInput(
            f"{len(exchange.rejected)} rows cannot be read; first: {first['message']}", code=str(first["code"])
        )
    return page.signals


# -- one-shot fetch into a bank ---------------------------------------------------------------------------------------
@dataclass
class FetchResult:
    pages: int = 0
    imported: int = 0
    skipped: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    cursor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def fetch_into_bank(
    db: Database,
    exchange: Exchange,
    bank: str,
    *,
    cursor: str | None = None,
    actor: str = "cli",
    organisation_id: int | None = None,
    page_size: int = 1000,
    max_pages: int = MAX_PAGES,
) -> FetchResult:
    """Fetch pages from ``exchange`` from ``cursor`` and import each into ``bank`` (a transaction per page)."""
    result = FetchResult(cursor=cursor)
    BankService(db, actor, organisation_id=organisation_id).get_bank(bank, writable=True)  # before any request
    for _ in range(max_pages):
        page = exchange.fetch(result.cursor, page_size)
        result.pages += 1
        result.rejected += list(getattr(exchange, "rejected", []))
        if page.signals:
            got = import_signals(
                db,
                bank,
                page.signals,
                kind=exchange.kind,
                actor=actor,
                organisation_id=organisation_id,
                source_name=f"{exchange.kind}:{exchange.name}",
            )
            result.imported += got.imported
            result.skipped += got.skipped
            result.rejected += [e.to_dict() for e in got.errors]
        result.cursor = page.next_cursor
        if not page.more:
            break
    return result


# -- the registry -----------------------------------------------------------------------------------------------------
def _organisation(db: Database, ref: int | str) -> Organisation:
    with db.session() as s:
        org = (
            s.get(Organisation, ref)
            if isinstance(ref, int)
            else s.scalars(select(Organisation).where(Organisation.name == ref)).first()
        )
        if org is None:
            raise NotFound(f"no organisation {ref!r}", code="organisation_not_found")
        s.expunge(org)
        return org


def add_exchange(
    db: Database,
    settings: Settings,
    organisation: int | str,
    kind: str,
    name: str,
    bank: str,
    *,
    secrets: dict[str, str] | None = None,
    options: dict[str, str] | None = None,
    url: str = "",
    actor: str = "cli",
) -> dict[str, Any]:
    """Register an exchange of ``kind`` for the organisation; its hashes land in ``bank`` (created if missing).
    Credentials are encrypted at rest; options (privacy group, file path) are kept in the row's state."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown exchange kind {kind!r}; known: {', '.join(KINDS)}", code="unknown_exchange_kind")
    if not _NAME_RE.match(name):
        raise InvalidInput("an exchange's name is lower-case letters, digits, '_', '.' or '-'", code="invalid_name")
    secrets, options = dict(secrets or {}), dict(options or {})
    need = KINDS[kind]
    missing = [k for k in need["secrets"] if not secrets.get(k)] + [k for k in need["options"] if not options.get(k)]
    if missing:
        raise InvalidInput(f"a {kind} exchange needs {', '.join(missing)}", code="missing_credentials")
    if url and not url.startswith(("http://", "https://")):
        raise InvalidInput("an exchange's URL starts with http:// or https://", code="invalid_url")
    org = _organisation(db, organisation)
    open_client(settings, kind, name, url, secrets, options)  # checks the options (a bad privacy group, format)
    banks = BankService(db, actor, organisation_id=org.id)
    with db.session() as s:
        taken = s.scalar(
            select(OrganisationExchange.id).where(
                OrganisationExchange.organisation_id == org.id, OrganisationExchange.name == name
            )
        )
        if taken is not None:
            raise Conflict(f"{org.name} already has an exchange named {name!r}", code="exchange_exists")
    try:
        banks.get_bank(bank, writable=True)
    except NotFound:
        banks.create_bank(bank, "block", f"hashes from the {kind} exchange {name}", actor)
    with db.session() as s:
        row = OrganisationExchange(
            organisation_id=org.id,
            kind=kind,
            name=name,
            url=url.rstrip("/"),
            secrets_encrypted=crypto.encrypt(settings, json.dumps(secrets)) if secrets else "",
            bank_id=s.scalar(select(Bank.id).where(Bank.name == bank)),
            cursor=None,
            state={"options": options, "pinned_keys": {}},
            enabled=True,
            last_error="",
            created_at=utcnow(),
            created_by=actor,
        )
        s.add(row)
        s.flush()
        audit.append(
            s,
            actor,
            "exchange_added",
            f"exchange:{row.id}",
            {"kind": kind, "name": name, "url": row.url, "bank": bank, "options": options},
            organisation_id=org.id,
        )
        return {
            "id": row.id,
            "organisation": org.name,
            "kind": kind,
            "name": name,
            "url": row.url,
            "bank": bank,
            "options": options,
        }


def open_client(
    settings: Settings, kind: str, name: str, url: str, secrets: dict[str, str], options: dict[str, str]
) -> Any:
    """The :class:`Exchange` of a registered kind, from its (decrypted) credentials and options."""
    if kind == threatexchange.KIND:
        return threatexchange.ThreatExchangeAPI(
            name,
            secrets.get("access_token", ""),
            options.get("privacy_group", ""),
            base_url=url or threatexchange.DEFAULT_API,
        )
    if kind == tat.KIND:
        return tat.TATHashListAPI(
            name, secrets.get("username", ""), secrets.get("password", ""), base_url=url or tat.DEFAULT_API
        )
    if kind == files.KIND:
        return files.FileExchange(
            name, options.get("path", ""), options.get("format", ""), default_type=options.get("default_type")
        )
    raise InvalidInput(f"unknown exchange kind {kind!r}; known: {', '.join(KINDS)}", code="unknown_exchange_kind")


def open_registered(
    db: Database, settings: Settings, organisation: int | str, name: str
) -> tuple[OrganisationExchange, Any]:
    org = _organisation(db, organisation)
    with db.session() as s:
        row = s.scalars(
            select(OrganisationExchange).where(
                OrganisationExchange.organisation_id == org.id, OrganisationExchange.name == name
            )
        ).first()
        if row is None or row.kind not in KINDS:
            raise NotFound(
                f"{org.name} has no exchange named {name!r} of a kind this command syncs ({', '.join(KINDS)})",
                code="exchange_not_found",
            )
        s.expunge(row)
    secrets = json.loads(crypto.decrypt(settings, row.secrets_encrypted)) if row.secrets_encrypted else {}
    options = dict((row.state or {}).get("options") or {})
    return row, open_client(settings, row.kind, row.name, row.url, secrets, options)


def sync_registered(
    db: Database,
    settings: Settings,
    organisation: int | str,
    name: str,
    *,
    client: Any = None,
    page_size: int = 1000,
    max_pages: int = MAX_PAGES,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Pull a registered exchange from its stored cursor into its bank, a page and its cursor per transaction."""
    from bastion.forum.sync import store_page  # the forum's member-side page store (shared, idempotent)

    row, opened = open_registered(db, settings, organisation, name)
    client = client or opened
    cursor, pages, stored, disabled, rejected = row.cursor, 0, 0, 0, []
    error = ""
    try:
        for _ in range(max_pages):
            page = client.fetch(cursor, page_size)
            pages += 1
            page_rejected = list(getattr(client, "rejected", []))
            rejected += page_rejected
            got = store_page(db, row.id, cursor, page, {}, page_rejected)
            if got is None:  # another process stored this page first
                break
            stored += got.stored
            disabled += got.disabled
            cursor = page.next_cursor
            if progress is not None:
                progress(pages, stored)
            if not page.more:
                break
    except BastionError as exc:
        error = f"{exc.code}: {exc.message}"
        raise
    finally:
        with db.session() as s:
            ex = s.get(OrganisationExchange, row.id)
            if ex is not None:
                ex.last_sync_at, ex.last_error = utcnow(), error[:2000]
    return {
        "exchange": name,
        "kind": row.kind,
        "pages": pages,
        "stored": stored,
        "disabled": disabled,
        "rejected": rejected,
        "cursor": cursor,
    }


__all__ = [
    "EXPORT_FORMATS",
    "IMPORT_FORMATS",
    "KINDS",
    "add_exchange",
    "bank_signals",
    "fetch_into_bank",
    "import_signals",
    "open_client",
    "open_registered",
    "read_file",
    "signals_to_records",
    "sync_registered",
    "write_signals",
]
