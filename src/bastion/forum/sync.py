"""The member's sync with a joined exchange: pull what changed, push what it shares, send what its review found.

One pass (:func:`sync_exchange`, run by the workers every ``BASTION_FORUM_SYNC_SECONDS`` and by ``bastion forum
sync``):

1. **pull** pages of the delta feed by cursor. Each page is stored *with its next cursor* in one transaction, under
   the bank write lock, and only if the stored cursor is still the one the page was fetched from: a crash loses at
   most the page in flight, two workers never store the same page twice, and storing a page again changes nothing
   (an item is keyed by the exchange's id for it). New hashes become entries of the forum's bank (labels kept,
   plus ``forum_contributor``, ``forum_consensus``, ``forum_incident``); a retraction disables its entry; a
   consensus change updates the labels. Rows that fail the member's own signature check are not stored.
2. **rescan** the organisation's recent uploads against hashes of an active incident
   (:mod:`bastion.forum.incidents`), when a decision pipeline is at hand.
3. **push** the hashes of banks shared with the forum (``exchange_shared_banks``) that were not pushed yet, and
   **retract** pushed hashes whose entry was disabled or deleted here (an appeal overturned them, say).
4. **feedback** on content a forum hash matched, since the last pass: an automated removal or restriction is
   ``seen``; a reviewer's violation (or an appeal upheld) is ``agree``, "not violating" (or an appeal overturned)
   ``false_positive``, and replaces ``seen``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, exists, insert, or_, select, update
from sqlalchemy.orm import aliased

from bastion import audit
from bastion.banks.importer import lock_bank_writes
from bastion.banks.taxonomy import normalize_labels
from bastion.errors import BastionError
from bastion.exchanges.base import ExchangedSignal, Feedback, FetchPage
from bastion.forum.exchange import KIND, ForumExchange
from bastion.forum.member import open_exchange
from bastion.settings import Settings
from bastion.storage.db import Database
from bastion.storage.models import (
    Bank,
    BankChange,
    BankEntry,
    BankSignal,
    Decision,
    ExchangeItem,
    ExchangeSharedBank,
    OrganisationExchange,
    ReviewDecision,
    lookup_key,
    utcnow,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
MAX_PAGES = 200  # per pass; the next pass goes on
PUSH_BATCH = 1000
NOT_PUSHED = ("text_embedding",)  # classifier-only signals are not exchanged
FORUM_LABELS = ("forum", "forum_contributor", "forum_consensus", "forum_incident", "share_with_forum")
FEEDBACK_OF_VERDICT = {
    "violating": "agree",
    "uphold": "agree",
    "not_violating": "false_positive",
    "overturn": "false_positive",
}


@dataclass
class SyncReport:
    exchange: str
    pages: int = 0
    stored: int = 0
    updated: int = 0
    disabled: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    pushed: int = 0
    retracted: int = 0
    feedback: int = 0
    decisions: list[dict[str, Any]] = field(default_factory=list)
    cursor: str | None = None
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class StoredPage:
    stored: int
    updated: int
    disabled: int
    incident_signals: list[ExchangedSignal]


def due_exchanges(db: Database, every_seconds: float) -> list[int]:
    """Claim the forum exchanges whose last pass is older than ``every_seconds`` (one worker gets each)."""
    now = utcnow()
    cutoff = now - timedelta(seconds=every_seconds)
    claimed = []
    with db.session() as s:
        ids = list(
            s.scalars(
                select(OrganisationExchange.id).where(
                    OrganisationExchange.kind == KIND,
                    OrganisationExchange.enabled.is_(True),
                    or_(OrganisationExchange.last_sync_at.is_(None), OrganisationExchange.last_sync_at < cutoff),
                )
            )
        )
    for ex_id in ids:
        with db.session() as s:
            got = s.execute(
                update(OrganisationExchange)
                .where(
                    OrganisationExchange.id == ex_id,
                    or_(OrganisationExchange.last_sync_at.is_(None), OrganisationExchange.last_sync_at < cutoff),
                )
                .values(last_sync_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
        if got == 1:
            claimed.append(ex_id)
    return claimed


def sync_exchange(
    db: Database,
    settings: Settings,
    exchange_id: int,
    *,
    pipeline: Any = None,
    client: ForumExchange | None = None,
    page_size: int = PAGE_SIZE,
    max_pages: int = MAX_PAGES,
) -> SyncReport:
    """One pass (see the module docstring). ``pipeline``: a DecisionPipeline for incident rescans (None: skipped).
    An exchange error ends the pass with ``error`` set (and ``last_error`` stored); what was stored stays."""
    with db.session() as s:
        row = s.get(OrganisationExchange, exchange_id)
        if row is None:
            raise BastionError(f"no exchange {exchange_id}", code="exchange_not_found")
        s.expunge(row)
    report = SyncReport(row.name, cursor=row.cursor)
    own = client is None
    client = client or open_exchange(settings, row)
    incident_signals: list[ExchangedSignal] = []
    try:
        cursor = row.cursor
        for _ in range(max_pages):
            page = client.fetch(cursor, page_size)
            report.pages += 1
            report.rejected += client.rejected
            got = store_page(db, exchange_id, cursor, page, client.pinned_keys, client.rejected)
            if got is None:  # another worker stored this page first
                break
            report.stored += got.stored
            report.updated += got.updated
            report.disabled += got.disabled
            incident_signals += got.incident_signals
            cursor = page.next_cursor
            if not page.more:
                break
        report.cursor = cursor
        if incident_signals and pipeline is not None:
            report.decisions = _rescan(db, settings, pipeline, row, client, incident_signals)
        report.pushed = push_shared(db, exchange_id, client)
        report.retracted = retract_disabled(db, exchange_id, client)
        report.feedback = send_review_feedback(db, exchange_id, client)
        error = ""
    except BastionError as exc:
        report.error = exc.to_dict()
        error = f"{exc.code}: {exc.message}"
        log.warning("forum sync failed", extra={"exchange": row.name, "code": exc.code})
    finally:
        if own:
            client.close()
    with db.session() as s:
        s.execute(
            update(OrganisationExchange)
            .where(OrganisationExchange.id == exchange_id)
            .values(last_sync_at=utcnow(), last_error=error[:2000])
        )
    return report


def _forum_labels(ex: OrganisationExchange, sig: ExchangedSignal) -> dict[str, str]:
    try:
        labels = normalize_labels(sig.labels)
    except BastionError:  # verified, but not a label this instance knows: keep them as they came
        labels = {str(k): str(v) for k, v in sig.labels.items()}
    for key in FORUM_LABELS:
        labels.pop(key, None)
    labels["forum"] = ex.name
    if sig.contributor:
        labels["forum_contributor"] = sig.contributor
    if sig.extra.get("consensus"):
        labels["forum_consensus"] = str(sig.extra["consensus"])
    if sig.incident:
        labels["forum_incident"] = sig.incident
    return labels


def _allocate_entry_ids(s: Any, n: int) -> list[int]:
    """``n`` new bank entry ids in one step, under the bank write lock the caller holds (as the bulk importer does):
    never an id a deleted entry had (change-feed readers track ids)."""
    conn = s.connection()
    if conn.dialect.name == "postgresql":
        last = conn.exec_driver_sql(
            "SELECT setval(pg_get_serial_sequence('bank_entries', 'id'), "
            "nextval(pg_get_serial_sequence('bank_entries', 'id')) + %(n)s - 1)",
            {"n": n},
        ).scalar_one()
        return list(range(last - n + 1, last + 1))
    top = conn.exec_driver_sql(
        "SELECT max(coalesce((SELECT max(id) FROM bank_entries), 0), "
        "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'bank_entries'), 0))"
    ).scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + n))


def store_page(
    db: Database,
    exchange_id: int,
    cursor: str | None,
    page: FetchPage,
    pinned_keys: dict[str, str],
    rejected: list[dict[str, Any]],
) -> StoredPage | None:
    """Store one page and its next cursor in one transaction (None: the cursor moved meanwhile, nothing stored).
    The result lists the page's live signals served under an active incident (to rescan)."""
    now = utcnow()
    with db.session() as s:
        lock_bank_writes(s)
        ex = s.get(OrganisationExchange, exchange_id, populate_existing=True)
        assert ex is not None
        if ex.cursor != cursor:
            return None
        if ex.bank_id is None or s.get(Bank, ex.bank_id) is None:
            raise BastionError(
                f"the bank exchange {ex.name!r} stores its hashes in is gone; join again or set one",
                code="exchange_bank_missing",
            )
        latest: dict[str, ExchangedSignal] = {}
        for sig in page.signals:  # a page may carry one contribution twice (new, then consensus): the last wins
            latest[sig.source_id] = sig
        known = (
            {
                i.source_id: i
                for i in s.scalars(
                    select(ExchangeItem).where(
                        ExchangeItem.exchange_id == exchange_id,
                        ExchangeItem.direction == "in",
                        ExchangeItem.source_id.in_(list(latest)),
                    )
                )
            }
            if latest
            else {}
        )
        new = [sig for sid, sig in latest.items() if sid not in known]
        stored = updated = disabled = 0
        fresh = [sig for sig in new if not sig.retracted]
        if fresh:
            entry_rows = [
                {
                    "bank_id": ex.bank_id,
                    "enabled": True,
                    "content_type": None,
                    "labels": _forum_labels(ex, sig),
                    "source": "forum",
                    "note": "",
                    "origin": f"{ex.name}:{sig.source_id}",
                    "added_by": f"exchange:{ex.name}",
                    "added_at": now,
                }
                for sig in fresh
            ]
            ids = _allocate_entry_ids(s, len(entry_rows))  # one block: RETURNING would insert row by row on SQLite
            for eid, entry_row in zip(ids, entry_rows, strict=True):
                entry_row["id"] = eid
            s.execute(insert(BankEntry.__table__), entry_rows)
            s.execute(
                insert(BankSignal.__table__),
                [
                    {
                        "entry_id": eid,
                        "bank_id": ex.bank_id,
                        "signal_type": sig.signal_type,
                        "value": sig.value,
                        "lookup_key": lookup_key(sig.value),
                        "quality": None,
                    }
                    for eid, sig in zip(ids, fresh, strict=True)
                ],
            )
            entry_of = {sig.source_id: eid for eid, sig in zip(ids, fresh, strict=True)}
            stored = len(fresh)
        else:
            entry_of = {}
        if new:
            s.execute(
                insert(ExchangeItem.__table__),
                [
                    {
                        "exchange_id": exchange_id,
                        "direction": "in",
                        "source_id": sig.source_id,
                        "bank_entry_id": entry_of.get(sig.source_id),
                        "signal_type": sig.signal_type,
                        "lookup_key": lookup_key(sig.value),
                        "consensus": sig.extra.get("consensus"),
                        "retracted": sig.retracted,
                        "incident": sig.incident,
                        "updated_at": now,
                    }
                    for sig in new
                ],
            )
        for sid, item in known.items():
            sig = latest[sid]
            entry = s.get(BankEntry, item.bank_entry_id) if item.bank_entry_id else None
            labels = _forum_labels(ex, sig)
            if entry is not None and entry.labels != labels:
                entry.labels = labels
                updated += 1
            item.consensus, item.updated_at = sig.extra.get("consensus"), now
            if sig.retracted and not item.retracted:
                item.retracted = True
                if entry is not None and entry.enabled:
                    entry.enabled = False
                    s.add(BankChange(kind="entry_disabled", bank_id=entry.bank_id, entry_id=entry.id, at=now))
                    disabled += 1
        ex.cursor = page.next_cursor
        ex.state = {**(ex.state or {}), "pinned_keys": dict(pinned_keys)}
        s.flush()
        audit.append(
            s,
            f"exchange:{ex.name}",
            "exchange_page_stored",
            f"exchange:{ex.id}",
            {
                "cursor": page.next_cursor,
                "stored": stored,
                "updated": updated,
                "disabled": disabled,
                "rejected": [[r.get("id"), r.get("code")] for r in rejected][:50],
            },
            organisation_id=ex.organisation_id,
        )
    return StoredPage(
        stored,
        updated,
        disabled,
        [sig for sig in latest.values() if sig.incident and not sig.retracted and sig.extra.get("priority")],
    )


def _rescan(
    db: Database,
    settings: Settings,
    pipeline: Any,
    row: OrganisationExchange,
    client: ForumExchange,
    signals: list[ExchangedSignal],
) -> list[dict[str, Any]]:
    from bastion.forum.incidents import rescan_and_decide

    windows = {i["name"]: i["window_hours"] for i in client.incidents()}
    hours = max(
        (windows.get(s.incident or "", settings.forum_rescan_hours) for s in signals),
        default=settings.forum_rescan_hours,
    )
    return rescan_and_decide(db, pipeline, row.organisation_id, signals, float(hours), actor=f"forum:{row.name}")


def push_shared(db: Database, exchange_id: int, client: ForumExchange) -> int:
    """Push the not-yet-pushed hashes of the banks shared with the exchange; record the hub's ids."""
    pushed = 0
    out = aliased(ExchangeItem)
    while True:
        with db.session() as s:
            rows = s.execute(
                select(BankSignal.entry_id, BankSignal.signal_type, BankSignal.value, BankEntry.labels)
                .join(BankEntry, BankEntry.id == BankSignal.entry_id)
                .join(
                    ExchangeSharedBank,
                    and_(
                        ExchangeSharedBank.bank_id == BankEntry.bank_id, ExchangeSharedBank.exchange_id == exchange_id
                    ),
                )
                .where(
                    BankEntry.enabled.is_(True),
                    BankSignal.signal_type.not_in(NOT_PUSHED),
                    or_(ExchangeSharedBank.mode == "all", BankEntry.labels["share_with_forum"].as_string() == "yes"),
                    ~exists().where(
                        out.exchange_id == exchange_id,
                        out.direction == "out",
                        out.bank_entry_id == BankSignal.entry_id,
                        out.signal_type == BankSignal.signal_type,
                        out.lookup_key == BankSignal.lookup_key,
                    ),
                )
                .order_by(BankSignal.id)
                .limit(PUSH_BATCH)
            ).all()
        if not rows:
            return pushed
        signals = [  # an entry labelled incident=NAME is contributed under that (active) incident
            ExchangedSignal(
                t,
                v,
                {k: str(x) for k, x in (labels or {}).items() if k not in FORUM_LABELS and k != "incident"},
                incident=(labels or {}).get("incident") or None,
            )
            for _, t, v, labels in rows
        ]
        result = client.push(signals)
        now = utcnow()
        with db.session() as s:
            have = set(
                s.scalars(
                    select(ExchangeItem.source_id).where(
                        ExchangeItem.exchange_id == exchange_id,
                        ExchangeItem.direction == "out",
                        ExchangeItem.source_id.in_(client.last_ids),
                    )
                )
            )
            fresh = [
                {
                    "exchange_id": exchange_id,
                    "direction": "out",
                    "source_id": sid,
                    "bank_entry_id": entry_id,
                    "signal_type": t,
                    "lookup_key": lookup_key(v),
                    "retracted": False,
                    "updated_at": now,
                }
                for sid, (entry_id, t, v, _) in zip(client.last_ids, rows, strict=True)
                if sid not in have
            ]
            if fresh:
                s.execute(insert(ExchangeItem), fresh)
        pushed += result.accepted
        if len(rows) < PUSH_BATCH:
            return pushed


def retract_disabled(db: Database, exchange_id: int, client: ForumExchange) -> int:
    """Withdraw from the hub the pushed hashes whose entry here was disabled or deleted."""
    with db.session() as s:
        rows = s.execute(
            select(ExchangeItem.id, ExchangeItem.source_id)
            .outerjoin(BankEntry, BankEntry.id == ExchangeItem.bank_entry_id)
            .where(
                ExchangeItem.exchange_id == exchange_id,
                ExchangeItem.direction == "out",
                ExchangeItem.retracted.is_(False),
                or_(BankEntry.id.is_(None), BankEntry.enabled.is_(False)),
            )
            .limit(PUSH_BATCH)
        ).all()
    if not rows:
        return 0
    client.retract([sid for _, sid in rows])
    with db.session() as s:
        s.execute(
            update(ExchangeItem)
            .where(ExchangeItem.id.in_([i for i, _ in rows]))
            .values(retracted=True, updated_at=utcnow())
        )
    return len(rows)


def _forum_matches(evidence: dict[str, Any] | None, bank_id: int | None) -> set[int]:
    return {
        int(m["entry_id"])
        for m in (evidence or {}).get("matches", [])
        if m.get("bank_id") == bank_id and m.get("entry_id") is not None
    }


def send_review_feedback(db: Database, exchange_id: int, client: ForumExchange) -> int:
    """Feedback on forum hashes that matched the organisation's content, since the last pass: ``seen`` for an
    automated removal or restriction, then what a person concluded (review or appeal), which replaces it."""
    with db.session() as s:
        ex = s.get(OrganisationExchange, exchange_id)
        assert ex is not None
        state = dict(ex.state or {})
        member = state.get("member")
        automated = s.execute(
            select(Decision.id, Decision.evidence)
            .where(
                Decision.organisation_id == ex.organisation_id,
                Decision.id > int(state.get("seen_after", 0)),
                Decision.automated.is_(True),
                Decision.outcome.in_(("remove", "restrict")),
            )
            .order_by(Decision.id)
            .limit(500)
        ).all()
        decided = s.execute(
            select(ReviewDecision.id, ReviewDecision.content_id, ReviewDecision.verdict)
            .where(
                ReviewDecision.organisation_id == ex.organisation_id,
                ReviewDecision.id > int(state.get("feedback_after", 0)),
                ReviewDecision.verdict.in_(list(FEEDBACK_OF_VERDICT)),
            )
            .order_by(ReviewDecision.id)
            .limit(500)
        ).all()
        if not automated and not decided:
            return 0
        wanted: list[tuple[set[int], str]] = [(_forum_matches(ev, ex.bank_id), "seen") for _, ev in automated]
        for _, content_id, verdict in decided:
            entry_ids: set[int] = set()
            for evidence in s.scalars(
                select(Decision.evidence).where(Decision.content_id == content_id, Decision.automated.is_(True))
            ):
                entry_ids |= _forum_matches(evidence, ex.bank_id)
            wanted.append((entry_ids, FEEDBACK_OF_VERDICT[verdict]))
        votes: dict[str, str] = {}  # later wins: a person's conclusion replaces "seen"
        for entry_ids, kind in wanted:
            if not entry_ids:
                continue
            for sid, labels in s.execute(
                select(ExchangeItem.source_id, BankEntry.labels)
                .join(BankEntry, BankEntry.id == ExchangeItem.bank_entry_id)
                .where(
                    ExchangeItem.exchange_id == exchange_id,
                    ExchangeItem.direction == "in",
                    ExchangeItem.bank_entry_id.in_(entry_ids),
                )
            ):
                if (labels or {}).get("forum_contributor") != member:  # never on our own contributions
                    votes[sid] = kind
        if automated:
            state["seen_after"] = automated[-1][0]
        if decided:
            state["feedback_after"] = decided[-1][0]
    sent = client.send_feedback([Feedback(sid, kind) for sid, kind in votes.items()]) if votes else 0  # type: ignore[arg-type]
    with db.session() as s:
        ex = s.get(OrganisationExchange, exchange_id)
        assert ex is not None
        ex.state = {
            **(ex.state or {}),
            "seen_after": state.get("seen_after", 0),
            "feedback_after": state.get("feedback_after", 0),
        }
    return sent
