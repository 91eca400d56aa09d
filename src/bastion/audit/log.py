"""Appending to and verifying the hash-chained audit log (the reasons are in :mod:`bastion.audit`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from bastion.storage.db import Database
from bastion.storage.models import AuditAnchor, AuditRecord, utcnow

GENESIS_HASH = "0" * 64
_ANCHOR_ID = 1
_PG_LOCK_KEY = 0x42A5_7A0D  # pg_advisory_xact_lock key of audit appends (the bank lock uses another)
_PAGE = 1000


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _timestamp(at: datetime) -> str:
    """ISO 8601 in UTC with microseconds; SQLite hands back naive datetimes, which are stored as UTC."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def compute_hash(
    seq: int,
    at: datetime,
    actor: str,
    organisation_id: int | None,
    action: str,
    target: str,
    details: dict[str, Any],
    prev_hash: str,
) -> str:
    payload = {
        "seq": seq,
        "at": _timestamp(at),
        "actor": actor,
        "organisation_id": organisation_id,
        "action": action,
        "target": target,
        "details": details,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(_canonical(payload).encode("utf-8")).hexdigest()


def _record_hash(r: AuditRecord) -> str:
    return compute_hash(r.seq, r.at, r.actor, r.organisation_id, r.action, r.target, r.details, r.prev_hash)


def lock_audit(session: Session) -> None:
    """Serialise appends until the transaction ends (PostgreSQL: advisory lock; SQLite: the write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    else:
        session.execute(text("UPDATE audit_anchor SET seq = seq WHERE 0 = 1"))


def append(
    session: Session,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
    organisation_id: int | None = None,
) -> AuditRecord:
    """Add a record in ``session``'s transaction (it commits or rolls back with the change it records)."""
    lock_audit(session)
    anchor = session.get(AuditAnchor, _ANCHOR_ID, populate_existing=True)
    # The anchor is the head; without one (a fresh log) the last record is, else the genesis.
    if anchor is not None:
        seq, prev = anchor.seq, anchor.hash
    else:
        last = session.execute(
            select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
        ).first()
        seq, prev = (last[0], last[1]) if last else (0, GENESIS_HASH)
    clean = json.loads(_canonical(details or {}))  # exactly what the JSON column will give back
    now = utcnow()
    record = AuditRecord(
        seq=seq + 1,
        at=now,
        actor=actor,
        organisation_id=organisation_id,
        action=action,
        target=target,
        details=clean,
        prev_hash=prev,
    )
    record.hash = _record_hash(record)
    session.add(record)
    if anchor is None:
        session.add(AuditAnchor(id=_ANCHOR_ID, seq=record.seq, hash=record.hash, updated_at=now))
    else:
        anchor.seq, anchor.hash, anchor.updated_at = record.seq, record.hash, now
    session.flush()
    return record


@dataclass
class VerifyReport:
    """The outcome of :func:`verify`. ``reason`` is None when intact, else one of the codes in :mod:`bastion.audit`."""

    records: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    reason: str | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def verify(db: Database) -> VerifyReport:
    """Walk the chain in seq order; report the first broken record, then check the end against the anchor."""
    count, expected_seq, prev = 0, 1, GENESIS_HASH
    with db.session() as s:
        last_seq = 0
        while True:
            page = s.scalars(
                select(AuditRecord).where(AuditRecord.seq > last_seq).order_by(AuditRecord.seq).limit(_PAGE)
            ).all()
            if not page:
                break
            for r in page:
                if r.seq != expected_seq:
                    return VerifyReport(
                        count,
                        expected_seq - 1,
                        prev,
                        r.seq,
                        "seq_gap",
                        f"record {r.seq} follows {expected_seq - 1}: record(s) removed",
                    )
                if r.prev_hash != prev:
                    return VerifyReport(
                        count,
                        r.seq - 1,
                        prev,
                        r.seq,
                        "prev_mismatch",
                        f"record {r.seq} does not chain to record {r.seq - 1}: inserted or reordered",
                    )
                if _record_hash(r) != r.hash:
                    return VerifyReport(
                        count,
                        r.seq - 1,
                        prev,
                        r.seq,
                        "hash_mismatch",
                        f"record {r.seq} does not match its hash: altered",
                    )
                count, expected_seq, prev = count + 1, r.seq + 1, r.hash
            last_seq = page[-1].seq
            s.expunge_all()
        anchor = s.get(AuditAnchor, _ANCHOR_ID)
        head_seq = expected_seq - 1
        anchor_seq, anchor_hash = (anchor.seq, anchor.hash) if anchor is not None else (0, GENESIS_HASH)
        if (anchor_seq, anchor_hash) != (head_seq, prev):
            return VerifyReport(
                count,
                head_seq,
                prev,
                head_seq + 1 if anchor_seq > head_seq else head_seq,
                "head_mismatch",
                f"the log ends at record {head_seq} but its anchor says {anchor_seq}: "
                "records removed from the end (or the anchor altered)",
            )
    return VerifyReport(count, head_seq, prev)


def list_records(db: Database, limit: int | None = 50) -> list[dict[str, Any]]:
    """The last ``limit`` records (all when None), oldest first, as plain dicts."""
    with db.session() as s:
        q = select(AuditRecord).order_by(AuditRecord.seq.desc())
        if limit is not None:
            q = q.limit(limit)
        rows = list(s.scalars(q))[::-1]
        return [
            {
                "seq": r.seq,
                "at": _timestamp(r.at),
                "actor": r.actor,
                "organisation_id": r.organisation_id,
                "action": r.action,
                "target": r.target,
                "details": r.details,
                "prev_hash": r.prev_hash,
                "hash": r.hash,
            }
            for r in rows
        ]
