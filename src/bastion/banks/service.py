"""BankService: the one place banks are created, filled, switched off, imported and exported.

A bank is a named collection of known content. ``kind="block"`` banks hold content to act on; ``kind="allow"``
banks hold known false positives (the matcher uses them to suppress matches from block banks). Entries can be
disabled without being deleted.

Matchers stay fresh by following two things this service guarantees: new signals appear in ``bank_signals`` in id
order (every write takes :func:`bastion.banks.importer.lock_bank_writes` first), and every disable, enable or
delete of an entry or a bank writes a :class:`~bastion.storage.models.BankChange` row in the same transaction.
Every change (and every export) is also recorded in the audit log (:mod:`bastion.audit`), in the same transaction.

Tenancy: a bank belongs to one organisation (``banks.organisation_id``) or to nobody (an operator's bank, made with
the CLI). Its owner may share it with other organisations (``bank_shares``), which then see and match against it but
cannot change it. A service made with ``organisation_id`` acts for that organisation: a bank it neither owns nor is
shared is reported exactly like a missing one (NotFound, never Forbidden: existence does not leak), and a change to
a shared bank is Forbidden ``bank_read_only``. A service without ``organisation_id`` is the operator's (the CLI) and
sees and changes everything. Bank names stay unique across all organisations (HMA's routes name banks).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from bastion import audit
from bastion import signals as registry
from bastion.banks import formats
from bastion.banks.importer import ImportResult, lock_bank_writes, run_import
from bastion.banks.taxonomy import normalize_labels, normalize_source
from bastion.content import Content
from bastion.errors import BastionError, Conflict, Forbidden, ImportFailed, InvalidInput, NotFound, UnreadableFile
from bastion.signals import Signal
from bastion.storage.db import Database
from bastion.storage.models import (
    Bank,
    BankChange,
    BankEntry,
    BankShare,
    BankSignal,
    ImportRun,
    Organisation,
    lookup_key,
    utcnow,
)

BANK_KINDS = ("block", "allow")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
RUN_ERRORS_KEPT = 100


@dataclass
class BankInfo:
    id: int
    name: str
    kind: str
    description: str
    enabled: bool
    created_at: datetime
    created_by: str
    entries: int = 0
    enabled_entries: int = 0
    signals: int = 0
    organisation_id: int | None = None  # the owner; None for an operator's bank
    owner: str | None = None  # the owner's name
    # How the service's organisation holds it: "owner", "shared" (read only) or "operator" (an unscoped service).
    access: str = "operator"
    shared_with: list[str] = field(default_factory=list)  # organisation names; empty for a sharee

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        out["shared_with"] = list(self.shared_with)
        return out


@dataclass
class SignalInfo:
    id: int
    type: str
    value: str
    quality: int | None = None


@dataclass
class EntryInfo:
    id: int
    bank: str
    enabled: bool
    content_type: str | None
    labels: dict[str, str]
    source: str
    note: str
    origin: str
    added_by: str
    added_at: datetime
    signals: list[SignalInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["added_at"] = self.added_at.isoformat() if self.added_at else None
        out["signals"] = [dict(s.__dict__) for s in self.signals]
        return out


@dataclass
class FileOutcome:
    path: str
    status: str  # "added", "already_banked" or "failed"
    entry_id: int | None = None
    signals: list[str] = field(default_factory=list)
    error: dict[str, str] | None = None


@dataclass
class AddFilesReport:
    added: list[FileOutcome] = field(default_factory=list)
    already_banked: list[FileOutcome] = field(default_factory=list)
    failed: list[FileOutcome] = field(default_factory=list)


def _bank_info(
    bank: Bank,
    counts: dict[str, int] | None = None,
    *,
    owner: str | None = None,
    access: str = "operator",
    shared_with: list[str] | None = None,
) -> BankInfo:
    return BankInfo(
        bank.id,
        bank.name,
        bank.kind,
        bank.description,
        bank.enabled,
        bank.created_at,
        bank.created_by,
        **(counts or {}),
        organisation_id=bank.organisation_id,
        owner=owner,
        access=access,
        shared_with=list(shared_with or []) if access != "shared" else [],
    )


def _entry_info(entry: BankEntry, bank_name: str, signals: Sequence[BankSignal]) -> EntryInfo:
    return EntryInfo(
        entry.id,
        bank_name,
        entry.enabled,
        entry.content_type,
        dict(entry.labels or {}),
        entry.source,
        entry.note,
        entry.origin,
        entry.added_by,
        entry.added_at,
        [SignalInfo(s.id, s.signal_type, s.value, s.quality) for s in signals],
    )


def visible_banks_clause(organisation_id: int) -> Any:
    """A WHERE clause on :class:`Bank`: the banks ``organisation_id`` owns or is shared."""
    shared = select(BankShare.bank_id).where(BankShare.organisation_id == organisation_id)
    return (Bank.organisation_id == organisation_id) | Bank.id.in_(shared)


def visible_bank_ids(session: Session, organisation_id: int) -> list[int]:
    """:meth:`BankService.visible_bank_ids` inside a caller's session (e.g. a decision's transaction)."""
    return list(session.scalars(select(Bank.id).where(visible_banks_clause(organisation_id)).order_by(Bank.id)))


class BankService:
    """Bank operations over one :class:`~bastion.storage.db.Database`; every method is one transaction.

    ``organisation_id`` scopes the service to one organisation (the API's caller): it sees only the banks that
    organisation owns or is shared, and changes only those it owns (see the module's docstring). Without it the
    service is the operator's and sees everything.
    """

    def __init__(self, db: Database, actor: str = "cli", *, organisation_id: int | None = None) -> None:
        self.db = db
        self.actor = actor  # who the audit log names: "cli", "api-key:<id>", a user
        self.organisation_id = organisation_id

    def _audit(self, s: Session, action: str, target: str, *, owner: int | None = None, **details: Any) -> None:
        """One audit record; ``owner`` (the bank's organisation) files it under that organisation."""
        audit.append(s, self.actor, action, target, details, owner)

    # -- tenancy --------------------------------------------------------------------------------------------------
    def _access(self, s: Session, bank: Bank) -> str | None:
        """How this service's organisation holds ``bank``: "operator", "owner", "shared", or None (not at all)."""
        if self.organisation_id is None:
            return "operator"
        if bank.organisation_id == self.organisation_id:
            return "owner"
        shared = s.scalar(
            select(BankShare.bank_id).where(
                BankShare.bank_id == bank.id, BankShare.organisation_id == self.organisation_id
            )
        )
        return "shared" if shared is not None else None

    def _bank(self, s: Session, name: str, *, write: bool = False) -> Bank:
        """The bank named ``name`` as this service may use it: NotFound when it does not exist or is not visible
        (the same error either way), Forbidden ``bank_read_only`` when ``write`` and it is only shared."""
        bank = s.scalar(select(Bank).where(Bank.name == name))
        access = None if bank is None else self._access(s, bank)
        if bank is None or access is None:
            raise NotFound(f"no bank named {name!r}", bank=name)
        if write and access == "shared":
            raise Forbidden(
                f"bank {name!r} is shared with your organisation read only: only its owner can change it",
                code="bank_read_only",
                bank=name,
            )
        return bank

    def _info(self, s: Session, bank: Bank, counts: dict[str, int] | None = None) -> BankInfo:
        owner = None
        if bank.organisation_id is not None:
            owner = s.scalar(select(Organisation.name).where(Organisation.id == bank.organisation_id))
        shared_with = list(
            s.scalars(
                select(Organisation.name)
                .join(BankShare, BankShare.organisation_id == Organisation.id)
                .where(BankShare.bank_id == bank.id)
                .order_by(Organisation.name)
            )
        )
        return _bank_info(bank, counts, owner=owner, access=self._access(s, bank) or "", shared_with=shared_with)

    @staticmethod
    def _organisation(s: Session, ref: int | str) -> Organisation:
        """An organisation by id (int) or name (str; a name of digits only falls back to the id)."""
        org = None
        if isinstance(ref, int):
            org = s.get(Organisation, ref)
        elif isinstance(ref, str):
            org = s.scalar(select(Organisation).where(Organisation.name == ref))
            if org is None and ref.isdigit():
                org = s.get(Organisation, int(ref))
        if org is None:
            raise NotFound(f"no organisation {ref!r}", code="organisation_not_found", organisation=str(ref))
        return org

    def visible_bank_ids(self, organisation_id: int) -> list[int]:
        """Ids of the banks ``organisation_id`` owns or is shared, enabled or not (the matcher skips disabled
        ones): pass them to :meth:`bastion.matching.matcher.Matcher.match` as ``bank_ids``."""
        with self.db.session() as s:
            return visible_bank_ids(s, organisation_id)

    def share_bank(self, name: str, organisation: int | str) -> BankInfo:
        """Share bank ``name`` with ``organisation`` (id or name), read only. Its owner or the operator only;
        sharing again changes nothing."""
        with self.db.session() as s:
            lock_bank_writes(s)
            bank = self._bank(s, name, write=True)
            org = self._organisation(s, organisation)
            if org.id == bank.organisation_id:
                raise InvalidInput(f"organisation {org.name!r} owns bank {name!r}", code="share_with_owner")
            exists = s.get(BankShare, (bank.id, org.id))
            if exists is None:
                s.add(BankShare(bank_id=bank.id, organisation_id=org.id, created_at=utcnow(), created_by=self.actor))
                s.flush()
                self._audit(s, "bank_shared", f"bank:{name}", owner=bank.organisation_id, organisation=org.name)
            return self._info(s, bank, self._counts(s, [bank.id]).get(bank.id))

    def unshare_bank(self, name: str, organisation: int | str) -> BankInfo:
        """Stop sharing bank ``name`` with ``organisation``; NotFound ``not_shared`` when it was not shared."""
        with self.db.session() as s:
            lock_bank_writes(s)
            bank = self._bank(s, name, write=True)
            org = self._organisation(s, organisation)
            share = s.get(BankShare, (bank.id, org.id))
            if share is None:
                raise NotFound(
                    f"bank {name!r} is not shared with {org.name!r}", code="not_shared", organisation=org.name
                )
            s.delete(share)
            s.flush()
            self._audit(s, "bank_unshared", f"bank:{name}", owner=bank.organisation_id, organisation=org.name)
            return self._info(s, bank, self._counts(s, [bank.id]).get(bank.id))

    def set_owner(self, name: str, organisation: int | str | None) -> BankInfo:
        """Give bank ``name`` to ``organisation`` (None: back to the operator). The operator only (the CLI). A share
        with the new owner is dropped: it owns the bank now."""
        if self.organisation_id is not None:
            raise Forbidden("only the operator can change a bank's owner", code="owner_change_forbidden")
        with self.db.session() as s:
            lock_bank_writes(s)
            bank = self._bank(s, name, write=True)
            org = None if organisation is None else self._organisation(s, organisation)
            new_id = None if org is None else org.id
            if bank.organisation_id != new_id:
                previous = bank.organisation_id
                bank.organisation_id = new_id
                if new_id is not None:
                    s.execute(
                        delete(BankShare).where(BankShare.bank_id == bank.id, BankShare.organisation_id == new_id)
                    )
                s.flush()
                self._audit(
                    s,
                    "bank_owner_changed",
                    f"bank:{name}",
                    owner=new_id,
                    organisation=org.name if org else None,
                    previous_organisation_id=previous,
                )
            return self._info(s, bank, self._counts(s, [bank.id]).get(bank.id))

    # -- banks ----------------------------------------------------------------------------------------------------
    def create_bank(
        self,
        name: str,
        kind: str = "block",
        description: str = "",
        created_by: str = "",
        *,
        organisation_id: int | None = None,
    ) -> BankInfo:
        """A new, empty bank owned by ``organisation_id`` (default: the service's organisation; None and an
        unscoped service: an operator's bank, which no organisation sees until it is given an owner or shared)."""
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidInput(
                f"bank name {name!r} is not allowed: 1-100 characters A-Z a-z 0-9 _ . -, starting with a letter or "
                "digit",
                code="invalid_bank_name",
            )
        if kind not in BANK_KINDS:
            raise InvalidInput(f"bank kind {kind!r} is not one of {', '.join(BANK_KINDS)}", code="invalid_bank_kind")
        owner = self.organisation_id if organisation_id is None else organisation_id
        if self.organisation_id is not None and owner != self.organisation_id:
            raise Forbidden("an organisation creates banks only for itself", code="owner_change_forbidden")
        with self.db.session() as s:
            lock_bank_writes(s)
            if owner is not None:
                self._organisation(s, owner)
            if s.scalar(select(Bank.id).where(Bank.name == name)) is not None:
                # Names are unique across organisations: the name is taken, whoever holds it.
                raise Conflict(f"a bank named {name!r} already exists", code="bank_exists", bank=name)
            bank = Bank(
                name=name,
                kind=kind,
                description=description or "",
                created_by=created_by or "",
                enabled=True,
                created_at=utcnow(),
                organisation_id=owner,
            )
            s.add(bank)
            s.flush()
            self._audit(s, "bank_created", f"bank:{name}", owner=owner, kind=kind, description=bank.description)
            return self._info(s, bank)

    def _counts(self, s: Session, bank_ids: list[int] | None = None) -> dict[int, dict[str, int]]:
        entries = select(BankEntry.bank_id, func.count(), func.count().filter(BankEntry.enabled.is_(True))).group_by(
            BankEntry.bank_id
        )
        signals = select(BankSignal.bank_id, func.count()).group_by(BankSignal.bank_id)
        if bank_ids is not None:
            entries = entries.where(BankEntry.bank_id.in_(bank_ids))
            signals = signals.where(BankSignal.bank_id.in_(bank_ids))
        out: dict[int, dict[str, int]] = {}
        for bank_id, total, enabled in s.execute(entries):
            out.setdefault(bank_id, {})["entries"] = total
            out[bank_id]["enabled_entries"] = enabled
        for bank_id, total in s.execute(signals):
            out.setdefault(bank_id, {})["signals"] = total
        return out

    def list_banks(self) -> list[BankInfo]:
        """Every bank this service sees (all of them, or an organisation's own and shared ones) with its entry and
        signal counts, by name."""
        with self.db.session() as s:
            q = select(Bank).order_by(Bank.name)
            if self.organisation_id is not None:
                q = q.where(visible_banks_clause(self.organisation_id))
            banks = s.scalars(q).all()
            counts = self._counts(s)
            names: dict[int, str] = {i: n for i, n in s.execute(select(Organisation.id, Organisation.name))}
            shares: dict[int, list[str]] = {}
            for bank_id, org_name in s.execute(
                select(BankShare.bank_id, Organisation.name)
                .join(Organisation, Organisation.id == BankShare.organisation_id)
                .order_by(Organisation.name)
            ):
                shares.setdefault(bank_id, []).append(org_name)
            out = []
            for b in banks:
                if self.organisation_id is None:
                    access = "operator"
                else:
                    access = "owner" if b.organisation_id == self.organisation_id else "shared"
                out.append(
                    _bank_info(
                        b,
                        counts.get(b.id),
                        owner=names.get(b.organisation_id) if b.organisation_id is not None else None,
                        access=access,
                        shared_with=shares.get(b.id),
                    )
                )
            return out

    def get_bank(self, name: str, *, writable: bool = False) -> BankInfo:
        """One bank; with ``writable``, Forbidden ``bank_read_only`` unless this service may change it."""
        with self.db.session() as s:
            bank = self._bank(s, name, write=writable)
            return self._info(s, bank, self._counts(s, [bank.id]).get(bank.id))

    def set_bank_enabled(self, name: str, enabled: bool) -> BankInfo:
        with self.db.session() as s:
            lock_bank_writes(s)
            bank = self._bank(s, name, write=True)
            if bank.enabled != enabled:
                bank.enabled = enabled
                s.add(BankChange(kind="bank_enabled" if enabled else "bank_disabled", bank_id=bank.id, at=utcnow()))
                self._audit(
                    s, "bank_enabled" if enabled else "bank_disabled", f"bank:{name}", owner=bank.organisation_id
                )
            s.flush()
            return self._info(s, bank, self._counts(s, [bank.id]).get(bank.id))

    def delete_bank(self, name: str) -> None:
        """Delete a bank with all its entries, signals, shares and import records."""
        with self.db.session() as s:
            lock_bank_writes(s)
            bank = self._bank(s, name, write=True)
            s.add(BankChange(kind="bank_deleted", bank_id=bank.id, at=utcnow()))
            entries = s.scalar(select(func.count()).select_from(BankEntry).where(BankEntry.bank_id == bank.id))
            self._audit(s, "bank_deleted", f"bank:{name}", owner=bank.organisation_id, entries=entries)
            s.execute(delete(BankShare).where(BankShare.bank_id == bank.id))
            s.execute(delete(BankSignal).where(BankSignal.bank_id == bank.id))
            s.execute(delete(BankEntry).where(BankEntry.bank_id == bank.id))
            s.execute(delete(ImportRun).where(ImportRun.bank_id == bank.id))
            s.execute(delete(Bank).where(Bank.id == bank.id))

    # -- entries --------------------------------------------------------------------------------------------------
    def add_entry(
        self,
        bank: str,
        signals: Sequence[Signal],
        labels: dict[str, Any] | None = None,
        *,
        source: str | None = "own_review",
        note: str = "",
        added_by: str = "",
        origin: str = "",
        content_type: str | None = None,
    ) -> EntryInfo:
        """Bank one piece of content by its signals. Conflict ``already_banked`` when every signal is already there."""
        clean_labels = normalize_labels(labels)
        clean_source = normalize_source(source)
        canon: dict[tuple[str, str], tuple[str, str, int | None]] = {}
        for sig in signals:
            value = registry.validate(sig.type, sig.value)
            canon.setdefault((sig.type, value), (sig.type, value, sig.quality))
        if not canon:
            raise InvalidInput("an entry needs at least one signal", code="no_signals")
        with self.db.session() as s:
            lock_bank_writes(s)
            b = self._bank(s, bank, write=True)
            existing = self._find(s, b.id, [(t, v) for t, v, _ in canon.values()])
            if existing is not None:
                raise Conflict(
                    f"already in bank {bank!r} as entry {existing}", code="already_banked", entry_id=existing
                )
            entry = BankEntry(
                bank_id=b.id,
                enabled=True,
                content_type=content_type,
                labels=clean_labels,
                source=clean_source,
                note=note or "",
                origin=origin or "",
                added_by=added_by or "",
                added_at=utcnow(),
            )
            s.add(entry)
            s.flush()
            rows = [
                BankSignal(entry_id=entry.id, bank_id=b.id, signal_type=t, value=v, lookup_key=lookup_key(v), quality=q)
                for t, v, q in canon.values()
            ]
            s.add_all(rows)
            s.flush()
            self._audit(
                s,
                "entry_added",
                f"entry:{entry.id}",
                owner=b.organisation_id,
                bank=b.name,
                signals=sorted({r.signal_type for r in rows}),
            )
            return _entry_info(entry, b.name, rows)

    @staticmethod
    def _find(s: Session, bank_id: int, pairs: list[tuple[str, str]]) -> int | None:
        """The entry holding all of ``pairs`` (type, value) when one does, else None."""
        holders: set[int] | None = None
        for stype, value in pairs:
            found = set(
                s.scalars(
                    select(BankSignal.entry_id).where(
                        BankSignal.bank_id == bank_id,
                        BankSignal.signal_type == stype,
                        BankSignal.lookup_key == lookup_key(value),
                        BankSignal.value == value,
                    )
                )
            )
            holders = found if holders is None else holders & found
            if not holders:
                return None
        return min(holders) if holders else None

    def add_files(
        self,
        bank: str,
        paths: Iterable[str | Path],
        labels: dict[str, Any] | None = None,
        *,
        source: str | None = "own_review",
        note: str = "",
        added_by: str = "",
    ) -> AddFilesReport:
        """Hash each file and bank it; a file with no usable signal (or unreadable) is reported, not banked."""
        normalize_labels(labels)
        normalize_source(source)
        self.get_bank(bank, writable=True)  # NotFound (or bank_read_only) before hashing anything
        report = AddFilesReport()
        for path in paths:
            outcome = FileOutcome(str(path), "failed")
            try:
                content = Content.from_path(path)
                usable = registry.usable(registry.compute_all(content))
                if not usable:
                    raise InvalidInput(
                        f"{path}: no usable signal (e.g. a PDQ hash below the quality minimum)", code="no_usable_signal"
                    )
                stored = [Signal(sig.type, sig.value, sig.quality) for sig in usable]  # meta (PDQ variants) not kept
                entry = self.add_entry(
                    bank,
                    stored,
                    labels,
                    source=source,
                    note=note,
                    added_by=added_by,
                    origin=Path(path).name,
                    content_type=content.content_type.value,
                )
                outcome.status, outcome.entry_id = "added", entry.id
                outcome.signals = [sig.type for sig in entry.signals]
                report.added.append(outcome)
            except Conflict as exc:
                outcome.status, outcome.entry_id = "already_banked", exc.details.get("entry_id")
                report.already_banked.append(outcome)
            except BastionError as exc:
                outcome.error = {"code": exc.code, "message": exc.message}
                report.failed.append(outcome)
        return report

    def _entry(self, s: Session, entry_id: int, *, write: bool = False) -> tuple[BankEntry, Bank]:
        """An entry and its bank, as this service may use them (an entry of a bank it cannot see is not found)."""
        entry = s.get(BankEntry, entry_id)
        bank = None if entry is None else s.get(Bank, entry.bank_id)
        if entry is None or bank is None or self._access(s, bank) is None:
            raise NotFound(f"no bank entry {entry_id}", entry_id=entry_id)
        self._bank(s, bank.name, write=write)  # bank_read_only for a sharee's change
        return entry, bank

    def set_entry_enabled(self, entry_id: int, enabled: bool) -> EntryInfo:
        with self.db.session() as s:
            lock_bank_writes(s)
            entry, bank = self._entry(s, entry_id, write=True)
            if entry.enabled != enabled:
                s.execute(update(BankEntry).where(BankEntry.id == entry_id).values(enabled=enabled))
                s.add(
                    BankChange(
                        kind="entry_enabled" if enabled else "entry_disabled",
                        bank_id=entry.bank_id,
                        entry_id=entry_id,
                        at=utcnow(),
                    )
                )
                self._audit(
                    s,
                    "entry_enabled" if enabled else "entry_disabled",
                    f"entry:{entry_id}",
                    owner=bank.organisation_id,
                    bank_id=entry.bank_id,
                )
                s.flush()
                s.refresh(entry)
            return self._entry_with_signals(s, entry)

    def delete_entry(self, entry_id: int) -> None:
        with self.db.session() as s:
            lock_bank_writes(s)
            entry, bank = self._entry(s, entry_id, write=True)
            s.add(BankChange(kind="entry_deleted", bank_id=entry.bank_id, entry_id=entry_id, at=utcnow()))
            self._audit(s, "entry_deleted", f"entry:{entry_id}", owner=bank.organisation_id, bank_id=entry.bank_id)
            s.execute(delete(BankSignal).where(BankSignal.entry_id == entry_id))
            s.execute(delete(BankEntry).where(BankEntry.id == entry_id))

    def _entry_with_signals(self, s: Session, entry: BankEntry) -> EntryInfo:
        bank_name = s.scalar(select(Bank.name).where(Bank.id == entry.bank_id)) or ""
        sigs = s.scalars(select(BankSignal).where(BankSignal.entry_id == entry.id).order_by(BankSignal.id)).all()
        return _entry_info(entry, bank_name, sigs)

    def get_entry(self, entry_id: int) -> EntryInfo:
        with self.db.session() as s:
            return self._entry_with_signals(s, self._entry(s, entry_id)[0])

    def list_entries(
        self, bank: str, *, limit: int | None = 100, offset: int = 0, include_disabled: bool = True
    ) -> list[EntryInfo]:
        with self.db.session() as s:
            b = self._bank(s, bank)
            q = select(BankEntry).where(BankEntry.bank_id == b.id).order_by(BankEntry.id).offset(offset).limit(limit)
            if not include_disabled:
                q = q.where(BankEntry.enabled.is_(True))
            entries = s.scalars(q).all()
            by_entry: dict[int, list[BankSignal]] = {e.id: [] for e in entries}
            if entries:
                for sig in s.scalars(
                    select(BankSignal).where(BankSignal.entry_id.in_(list(by_entry))).order_by(BankSignal.id)
                ):
                    by_entry[sig.entry_id].append(sig)
            return [_entry_info(e, b.name, by_entry[e.id]) for e in entries]

    # -- import and export ----------------------------------------------------------------------------------------
    def import_rows(
        self,
        bank: str,
        records: Iterable[formats.Record],
        *,
        fmt: str,
        source_name: str = "",
        source: str | None = None,
        note: str = "",
        added_by: str = "",
        skip_existing: bool = True,
        progress: Callable[[ImportResult], None] | None = None,
    ) -> ImportResult:
        """Import records (see :mod:`bastion.banks.formats`) in one transaction; bad rows are reported, not fatal."""
        default_source = normalize_source(source, "tech_against_terrorism" if fmt == "tat" else "other")
        result = ImportResult(bank, fmt, source_name)
        with self.db.session() as s:
            lock_bank_writes(s)
            b = self._bank(s, bank, write=True)
            run = ImportRun(bank_id=b.id, format=fmt, source_name=source_name[:2000], started_at=utcnow())
            s.add(run)
            s.flush()
            run_import(
                s,
                b.id,
                records,
                result,
                default_source=default_source,
                note=note,
                added_by=added_by,
                skip_existing=skip_existing,
                progress=progress,
            )
            run.imported, run.rejected, run.skipped = result.imported, result.rejected, result.skipped
            run.errors = [e.to_dict() for e in result.errors[:RUN_ERRORS_KEPT]]
            run.finished_at = utcnow()
            result.run_id = run.id
            self._audit(
                s,
                "bank_imported",
                f"bank:{bank}",
                owner=b.organisation_id,
                format=fmt,
                source_name=source_name[:200],
                run_id=run.id,
                imported=result.imported,
                rejected=result.rejected,
                skipped=result.skipped,
            )
        return result

    def import_file(self, bank: str, path: str | Path, fmt: str, **kwargs: Any) -> ImportResult:
        """Import a hash-list file (streamed, never loaded whole)."""
        if fmt not in formats.FORMATS:
            raise ImportFailed(f"unknown format {fmt!r}; known: {', '.join(formats.FORMATS)}", code="unknown_format")
        p = Path(path)
        try:
            fh = open(p, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise UnreadableFile(f"{p}: no such file", code="file_not_found") from None
        except OSError as exc:
            raise UnreadableFile(f"{p}: {exc.strerror or exc}") from None
        with fh:
            kwargs.setdefault("source_name", p.name)
            return self.import_rows(bank, formats.read_records(fmt, fh), fmt=fmt, **kwargs)

    def import_runs(self, bank: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            b = self._bank(s, bank)
            runs = s.scalars(select(ImportRun).where(ImportRun.bank_id == b.id).order_by(ImportRun.id)).all()
            return [
                {
                    "id": r.id,
                    "format": r.format,
                    "source_name": r.source_name,
                    "imported": r.imported,
                    "rejected": r.rejected,
                    "skipped": r.skipped,
                    "errors": list(r.errors or []),
                    "started_at": r.started_at,
                    "finished_at": r.finished_at,
                }
                for r in runs
            ]

    def iter_export(
        self, bank: str, *, include_disabled: bool = False, page: int = 2000
    ) -> Iterator[formats.ExportEntry]:
        """Entries of a bank as :class:`formats.ExportEntry`, by id, fetched a page at a time."""
        with self.db.session() as s:
            b = self._bank(s, bank)
            last = 0
            while True:
                q = select(BankEntry).where(BankEntry.bank_id == b.id, BankEntry.id > last)
                if not include_disabled:
                    q = q.where(BankEntry.enabled.is_(True))
                entries = s.scalars(q.order_by(BankEntry.id).limit(page)).all()
                if not entries:
                    return
                sigs: dict[int, list[tuple[str, str]]] = {e.id: [] for e in entries}
                rows = s.execute(
                    select(BankSignal.entry_id, BankSignal.signal_type, BankSignal.value)
                    .where(BankSignal.bank_id == b.id, BankSignal.entry_id.in_(list(sigs)))
                    .order_by(BankSignal.entry_id, BankSignal.id)
                )
                for entry_id, stype, value in rows:
                    sigs[entry_id].append((stype, value))
                for e in entries:
                    yield formats.ExportEntry(
                        e.id,
                        dict(e.labels or {}),
                        e.source,
                        e.note,
                        e.origin,
                        e.content_type,
                        e.enabled,
                        e.added_at,
                        e.added_by,
                        sigs[e.id],
                    )
                last = entries[-1].id
                s.expunge_all()

    def export(self, bank: str, fmt: str, out: IO[str], *, include_disabled: bool = False) -> int:
        """Write a bank to ``out`` in ``fmt`` (see :data:`formats.FORMATS`); returns the number of signals written."""
        info = self.get_bank(bank)
        if fmt not in formats.FORMATS:
            raise InvalidInput(f"unknown format {fmt!r}; known: {', '.join(formats.FORMATS)}", code="unknown_format")
        written = formats.write_export(
            fmt,
            self.iter_export(bank, include_disabled=include_disabled),
            out,
            bank_name=info.name,
            bank_enabled=info.enabled,
        )
        with self.db.session() as s:  # after the fact: an export changes nothing, the record says it happened
            self._audit(
                s,
                "bank_exported",
                f"bank:{bank}",
                owner=info.organisation_id,
                format=fmt,
                signals=written,
                include_disabled=include_disabled,
            )
        return written
