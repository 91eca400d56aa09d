"""The hub: members, their signed contributions, feedback, retractions, incidents and the delta feed.

``HubService`` is the one writer of the hub's tables (``forum_*``). Every write takes the audit lock first
(:func:`bastion.audit.log.lock_audit`), so hub transactions commit one at a time in the order they numbered their
feed rows: a member reading ``forum_changes`` by ``seq`` never skips a row that commits late. Every write is also
recorded in the hub's own hash-chained audit log, in the same transaction.

Batches: a member numbers each batch it sends (contributions, feedback and retractions share one counter); the hub
takes batch ``last_batch + 1`` only. A lower number is a replay (``batch_replayed``), a higher one arrived out of
order (``batch_out_of_order``); either way nothing is stored. Every item's payload names the batch and its index in
it (:mod:`bastion.forum.signing`), so a replayed or reshuffled batch also fails its signatures. Contributions carry
one signature per batch, over the Merkle root of their payloads; the hub rebuilds the root from the items it got,
checks the signature once, and stores each contribution's proof so members can check any row on its own.

Consensus (recomputed whenever feedback arrives; one vote per member, its latest; the contributor's own is not
taken): with ``support`` = agree + seen, ``fp`` = false_positive and ``disputes`` = disagree_label,

- ``likely_false_positive``: fp >= 2 and fp > support
- ``disputed``: any fp or disputes (and not the above)
- ``confirmed``: support >= 2 and no fp or disputes
- ``unconfirmed``: otherwise (new contributions start here)

and ``score`` = support - 2 x fp - disputes. A change of status or score is a ``consensus`` row of the feed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, and_, cast, insert, not_, select, update
from sqlalchemy.orm import Session

from bastion import audit
from bastion import signals as registry
from bastion.audit.log import lock_audit
from bastion.banks.taxonomy import normalize_labels
from bastion.errors import BastionError, Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from bastion.exchanges.base import FEEDBACK_KINDS
from bastion.forum import signing
from bastion.storage.db import Database
from bastion.storage.models import (
    ForumChange,
    ForumContribution,
    ForumFeedback,
    ForumIncident,
    ForumMember,
    as_utc,
    lookup_key,
    utcnow,
)

KEY_PREFIX = "bfm"
ROLES = ("member", "lead")
MAX_BATCH = 10_000
MAX_PAGE = 10_000
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_KEY_RE = re.compile(r"^bfm_([a-z0-9]{12})_([A-Za-z0-9_-]{20,100})$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class BatchRejected(Conflict):
    """A batch whose number is not the member's next one (codes ``batch_replayed``, ``batch_out_of_order``)."""

    code = "batch_rejected"


@dataclass(frozen=True)
class HubMember:
    """The authenticated caller of the hub API."""

    id: int
    name: str
    role: str

    @property
    def is_lead(self) -> bool:
        return self.role == "lead"

    @property
    def actor(self) -> str:
        return f"member:{self.name}"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def consensus_of(counts: dict[str, int]) -> tuple[str, int]:
    """(status, score) from feedback counts (the rule is in the module docstring)."""
    support = counts.get("agree", 0) + counts.get("seen", 0)
    fp, disputes = counts.get("false_positive", 0), counts.get("disagree_label", 0)
    score = support - 2 * fp - disputes
    if fp >= 2 and fp > support:
        return "likely_false_positive", score
    if fp or disputes:
        return "disputed", score
    if support >= 2:
        return "confirmed", score
    return "unconfirmed", score


def parse_cursor(cursor: str | None) -> tuple[int, int]:
    """``"A"`` or ``"A.I"``: the main feed position and the incident (priority) position. InvalidInput otherwise."""
    if cursor in (None, "", "0"):
        return 0, 0
    parts = str(cursor).split(".")
    if len(parts) > 2 or not all(p.isdigit() for p in parts):
        raise InvalidInput(f"cursor {cursor!r} is not one this hub made", code="invalid_cursor")
    return int(parts[0]), int(parts[1]) if len(parts) == 2 else 0


def make_cursor(main: int, priority: int) -> str:
    return f"{main}.{priority}" if priority > main else str(main)


def _iso(dt: datetime | None) -> str | None:
    return as_utc(dt).isoformat().replace("+00:00", "Z") if dt is not None else None


class HubService:
    def __init__(self, db: Database, actor: str = "cli") -> None:
        self.db = db
        self.actor = actor

    # -- members -----------------------------------------------------------------------------------------------------
    def add_member(self, name: str, role: str = "member") -> tuple[dict[str, Any], str]:
        """A new member and its API key (``bfm_<prefix>_<secret>``, shown once: only its SHA-256 is kept)."""
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidInput("member names are 1-100 letters, digits, '_', '.' or '-'", code="invalid_member_name")
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}", code="invalid_role")
        prefix = "".join(secrets.choice(_ALPHABET) for _ in range(12))
        secret = secrets.token_urlsafe(32)
        with self.db.session() as s:
            lock_audit(s)
            if s.scalar(select(ForumMember.id).where(ForumMember.name == name)) is not None:
                raise Conflict(f"a member named {name!r} already exists", code="member_exists")
            m = ForumMember(
                name=name,
                role=role,
                key_prefix=prefix,
                key_hash=hash_key(secret),
                last_batch=0,
                disabled=False,
                created_at=utcnow(),
            )
            s.add(m)
            s.flush()
            audit.append(s, self.actor, "forum_member_added", f"member:{name}", {"role": role, "prefix": prefix})
            return _member_dict(m), f"{KEY_PREFIX}_{prefix}_{secret}"

    def _member(self, s: Session, name: str) -> ForumMember:
        m = s.scalars(select(ForumMember).where(ForumMember.name == name)).first()
        if m is None:
            raise NotFound(f"no member {name!r}", code="member_not_found")
        return m

    def set_role(self, name: str, role: str) -> dict[str, Any]:
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}", code="invalid_role")
        with self.db.session() as s:
            lock_audit(s)
            m = self._member(s, name)
            if m.role != role:
                audit.append(s, self.actor, "forum_member_role", f"member:{name}", {"from": m.role, "to": role})
                m.role = role
            return _member_dict(m)

    def register_key(self, name: str, public_key: str, *, replace: bool = False) -> dict[str, Any]:
        """Register the member's Ed25519 public key. A member registers its first key itself (API); replacing a key
        is the operator's (``replace``, the CLI), and members that pinned the old one will refuse the new one until
        they accept it, so the hub cannot quietly swap a key to forge contributions."""
        signing.load_public_key(public_key)
        with self.db.session() as s:
            lock_audit(s)
            m = self._member(s, name)
            if m.public_key == public_key.strip():
                return _member_dict(m)
            if m.public_key is not None and not replace:
                raise Conflict(
                    "this member already registered a public key; the forum operator replaces keys",
                    code="public_key_registered",
                )
            audit.append(
                s,
                self.actor,
                "forum_key_registered",
                f"member:{name}",
                {"public_key": public_key.strip(), "replaced": m.public_key},
            )
            m.public_key = public_key.strip()
            return _member_dict(m)

    def list_members(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [_member_dict(m) for m in s.scalars(select(ForumMember).order_by(ForumMember.name))]

    def authenticate(self, plaintext: str) -> HubMember:
        m = _KEY_RE.match((plaintext or "").strip())
        if m is None:
            raise Unauthenticated("not a forum member key", code="invalid_api_key")
        prefix, secret = m.groups()
        with self.db.session() as s:
            row = s.scalars(select(ForumMember).where(ForumMember.key_prefix == prefix)).first()
            stored = row.key_hash if row is not None else hash_key("")
            if not hmac.compare_digest(stored, hash_key(secret)) or row is None or row.disabled:
                raise Unauthenticated("invalid forum member key", code="invalid_api_key")
            return HubMember(row.id, row.name, row.role)

    def me(self, member: HubMember) -> dict[str, Any]:
        with self.db.session() as s:
            return _member_dict(self._member(s, member.name))

    # -- batches -----------------------------------------------------------------------------------------------------
    def _take_batch(self, s: Session, member: HubMember, batch: int, count: int) -> ForumMember:
        """Check and claim the batch number (in the caller's transaction: nothing is stored if anything fails)."""
        if not isinstance(batch, int) or batch < 1:
            raise InvalidInput("a batch is numbered from 1", code="invalid_batch")
        if count < 1 or count > MAX_BATCH:
            raise InvalidInput(f"a batch holds 1 to {MAX_BATCH} items", code="invalid_batch")
        row = s.get(ForumMember, member.id, populate_existing=True)
        assert row is not None
        if row.public_key is None:
            raise Conflict(
                "register your Ed25519 public key before sending signed batches", code="public_key_not_registered"
            )
        if batch <= row.last_batch:
            raise BatchRejected(
                f"batch {batch} was already received (the last was {row.last_batch}): a replay",
                code="batch_replayed",
                expected=row.last_batch + 1,
            )
        if batch != row.last_batch + 1:
            raise BatchRejected(
                f"batch {batch} arrived out of order: the hub expects {row.last_batch + 1}",
                code="batch_out_of_order",
                expected=row.last_batch + 1,
            )
        done = s.execute(
            update(ForumMember)
            .where(ForumMember.id == row.id, ForumMember.last_batch == batch - 1)
            .values(last_batch=batch)
            .execution_options(synchronize_session=False)
        ).rowcount
        if done != 1:  # pragma: no cover - the audit lock serialises writers
            raise BatchRejected("another batch was taken meanwhile", code="batch_out_of_order")
        return row

    @staticmethod
    def _active_incidents(s: Session) -> set[str]:
        return set(s.scalars(select(ForumIncident.name).where(ForumIncident.active.is_(True))))

    # -- contributions -----------------------------------------------------------------------------------------------
    def contribute(self, member: HubMember, batch: int, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Store a signed batch of contributions, all or nothing. Returns the contribution ids, in order (a hash the
        member had contributed before keeps its id and is counted in ``already``)."""
        now = utcnow()
        with self.db.session() as s:
            lock_audit(s)
            row = self._take_batch(s, member, batch, len(items))
            active = self._active_incidents(s)
            parsed: list[tuple[int, str, str, str, dict[str, Any], str | None, str]] = []
            payloads: list[dict[str, Any]] = []
            for index, item in enumerate(items):
                labels = item.get("labels") or {}
                if not isinstance(labels, dict):
                    raise InvalidInput("labels are an object of strings", code="invalid_label", index=index)
                payloads.append(
                    signing.contribution_payload(
                        member.name,
                        batch,
                        index,
                        str(item.get("signal_type", "")),
                        str(item.get("value", "")),
                        labels,
                        item.get("incident"),
                    )
                )
            # One signature for the batch, over the Merkle root of its contributions (bastion.forum.signing).
            signature = str(items[0].get("signature", "")) if items else ""
            stray = next((i for i, item in enumerate(items) if str(item.get("signature", "")) != signature), None)
            if stray is not None:
                raise signing.InvalidSignatureError(
                    "every contribution of a batch carries the batch's one signature", index=stray
                )
            root, proofs = signing.merkle_tree([signing.leaf_hash(p) for p in payloads])
            signing.verify(
                row.public_key or "", signing.batch_payload(member.name, batch, len(items), root.hex()), signature
            )
            for index, item in enumerate(items):
                try:
                    stype, value = str(item.get("signal_type", "")), str(item.get("value", ""))
                    labels, incident = item.get("labels") or {}, item.get("incident")
                    canon = registry.validate(stype, value)
                    if canon != value:
                        raise InvalidInput(
                            f"{stype} value is not in its canonical form ({canon!r})", code="signal_not_canonical"
                        )
                    clean = normalize_labels(labels)
                    if clean != labels:
                        raise InvalidInput(
                            f"labels are not in their canonical form ({clean!r})", code="labels_not_canonical"
                        )
                    if incident is not None and incident not in active:
                        raise InvalidInput(f"incident {incident!r} is not active", code="incident_not_active")
                except BastionError as exc:
                    exc.details.setdefault("index", index)
                    raise
                parsed.append((index, stype, value, lookup_key(value), labels, incident, proofs[index]))
            # Hashes this member contributed before keep their id (read in chunks, not one query per item).
            known: dict[tuple[str, str], int] = {}
            keys = sorted({p[3] for p in parsed})
            for i in range(0, len(keys), 500):
                for cid, stype, value in s.execute(
                    select(ForumContribution.id, ForumContribution.signal_type, ForumContribution.value).where(
                        ForumContribution.member_id == member.id, ForumContribution.lookup_key.in_(keys[i : i + 500])
                    )
                ):
                    known[(stype, value)] = cid
            fresh: list[dict[str, Any]] = []
            for index, stype, value, key, labels, incident, proof in parsed:
                if (stype, value) in known:
                    continue
                known[(stype, value)] = -1  # the same hash twice in one batch: stored once
                fresh.append(
                    {
                        "member_id": member.id,
                        "signal_type": stype,
                        "value": value,
                        "lookup_key": key,
                        "labels": labels,
                        "incident": incident,
                        "batch": batch,
                        "batch_index": index,
                        "batch_size": len(items),
                        "signature": signature,
                        "proof": proof,
                        "created_at": now,
                        "consensus": "unconfirmed",
                        "feedback_counts": {},
                    }
                )
            if fresh:
                new_ids = _allocate_ids(s, "forum_contributions", len(fresh))  # under the audit lock
                for cid, f in zip(new_ids, fresh, strict=True):
                    f["id"] = cid
                s.execute(insert(ForumContribution.__table__), fresh)  # plain executemany: no per-row RETURNING
                s.execute(
                    insert(ForumChange.__table__),
                    [
                        {"contribution_id": cid, "kind": "new", "priority": f["incident"] is not None, "at": now}
                        for cid, f in zip(new_ids, fresh, strict=True)
                    ],
                )
                for cid, f in zip(new_ids, fresh, strict=True):
                    known[(f["signal_type"], f["value"])] = cid
            ids = [known[(p[1], p[2])] for p in parsed]
            new, already = len(fresh), len(parsed) - len(fresh)
            s.flush()
            audit.append(
                s,
                member.actor,
                "forum_contributed",
                f"batch:{member.name}:{batch}",
                {
                    "new": new,
                    "already": already,
                    "first_id": ids[0] if ids else None,
                    "incidents": sorted({i.get("incident") for i in items if i.get("incident")}),
                },
            )
            return {"batch": batch, "accepted": len(ids), "new": new, "already": already, "ids": ids}

    def _contribution(self, s: Session, contribution_id: Any) -> ForumContribution:
        try:
            cid = int(contribution_id)
        except (TypeError, ValueError):
            cid = -1
        c = s.get(ForumContribution, cid) if cid > 0 else None
        if c is None:
            raise NotFound(f"no contribution {contribution_id}", code="contribution_not_found")
        return c

    def retract(self, member: HubMember, batch: int, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Retract contributions (only the contributor may: ``not_contributor`` otherwise), all or nothing."""
        now = utcnow()
        with self.db.session() as s:
            lock_audit(s)
            row = self._take_batch(s, member, batch, len(items))
            active = self._active_incidents(s)
            done = []
            for index, item in enumerate(items):
                try:
                    c = self._contribution(s, item.get("contribution"))
                    payload = signing.retraction_payload(member.name, batch, index, c.id)
                    signing.verify(row.public_key or "", payload, str(item.get("signature", "")))
                    if c.member_id != member.id:
                        raise Forbidden(
                            "only the member that contributed a hash may retract it",
                            code="not_contributor",
                            contribution=c.id,
                        )
                except BastionError as exc:
                    exc.details.setdefault("index", index)
                    raise
                if c.retracted_at is None:
                    c.retracted_at = now
                    c.retraction = {"batch": batch, "index": index, "signature": str(item["signature"])}
                    s.add(ForumChange(contribution_id=c.id, kind="retracted", priority=c.incident in active, at=now))
                done.append(c.id)
            s.flush()
            audit.append(s, member.actor, "forum_retracted", f"batch:{member.name}:{batch}", {"contributions": done})
            return {"batch": batch, "accepted": len(done), "ids": done}

    def feedback(self, member: HubMember, batch: int, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Record signed feedback (one vote per member and contribution: the latest replaces the earlier) and
        recompute the consensus of each contribution touched."""
        now = utcnow()
        with self.db.session() as s:
            lock_audit(s)
            row = self._take_batch(s, member, batch, len(items))
            active = self._active_incidents(s)
            touched: dict[int, ForumContribution] = {}
            for index, item in enumerate(items):
                try:
                    c = self._contribution(s, item.get("contribution"))
                    kind, labels, note = str(item.get("kind", "")), item.get("labels") or {}, str(item.get("note", ""))
                    if not isinstance(labels, dict):
                        raise InvalidInput("labels are an object of strings", code="invalid_label")
                    payload = signing.feedback_payload(member.name, batch, index, c.id, kind, labels, note)
                    signing.verify(row.public_key or "", payload, str(item.get("signature", "")))
                    if kind not in FEEDBACK_KINDS:
                        raise InvalidInput(
                            f"feedback is one of {', '.join(FEEDBACK_KINDS)}", code="invalid_feedback_kind"
                        )
                    if kind == "disagree_label":
                        normalize_labels(labels)
                    if c.member_id == member.id:
                        raise Forbidden(
                            "a member does not give feedback on its own contribution", code="own_contribution"
                        )
                except BastionError as exc:
                    exc.details.setdefault("index", index)
                    raise
                fb = s.scalars(
                    select(ForumFeedback).where(
                        ForumFeedback.contribution_id == c.id, ForumFeedback.member_id == member.id
                    )
                ).first()
                if fb is None:
                    fb = ForumFeedback(contribution_id=c.id, member_id=member.id)
                    s.add(fb)
                fb.kind, fb.labels, fb.note, fb.batch, fb.batch_index = kind, labels, note[:2000], batch, index
                fb.signature, fb.created_at = str(item["signature"]), now
                touched[c.id] = c
            s.flush()
            changed = []
            for c in touched.values():
                counts: dict[str, int] = {}
                for k in s.scalars(select(ForumFeedback.kind).where(ForumFeedback.contribution_id == c.id)):
                    counts[k] = counts.get(k, 0) + 1
                status, score = consensus_of(counts)
                counts_out = {**counts, "score": score}
                if status != c.consensus or counts_out != (c.feedback_counts or {}):
                    c.consensus, c.feedback_counts = status, counts_out
                    s.add(ForumChange(contribution_id=c.id, kind="consensus", priority=c.incident in active, at=now))
                    changed.append(c.id)
            s.flush()
            audit.append(
                s,
                member.actor,
                "forum_feedback",
                f"batch:{member.name}:{batch}",
                {
                    "contributions": sorted(touched),
                    "kinds": sorted({str(i.get("kind")) for i in items}),
                    "consensus_changed": changed,
                },
            )
            return {"batch": batch, "accepted": len(items), "consensus_changed": changed}

    def get_contribution(self, contribution_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            c = self._contribution(s, contribution_id)
            names = dict(s.execute(select(ForumMember.id, ForumMember.name)).all())
            return _contribution_dict(c, names.get(c.member_id, ""))

    # -- incidents ---------------------------------------------------------------------------------------------------
    def activate_incident(
        self, lead: HubMember | None, name: str, description: str = "", window_hours: int = 24
    ) -> dict[str, Any]:
        """A forum lead (or the operator: ``lead`` None) activates an incident; re-activating one is allowed."""
        if lead is not None and not lead.is_lead:
            raise Forbidden("only a forum lead activates an incident", code="lead_only")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidInput(
                "incident names are 1-100 letters, digits, '_', '.' or '-'", code="invalid_incident_name"
            )
        if not 1 <= int(window_hours) <= 24 * 30:
            raise InvalidInput("the rescan window is 1 to 720 hours", code="invalid_window")
        actor = lead.actor if lead else self.actor
        with self.db.session() as s:
            lock_audit(s)
            inc = s.scalars(select(ForumIncident).where(ForumIncident.name == name)).first()
            if inc is None:
                inc = ForumIncident(name=name)
                s.add(inc)
            inc.description, inc.window_hours, inc.active = description[:5000], int(window_hours), True
            inc.activated_by, inc.activated_at, inc.deactivated_at = actor, utcnow(), None
            s.flush()
            audit.append(
                s,
                actor,
                "forum_incident_activated",
                f"incident:{name}",
                {"window_hours": inc.window_hours, "description": inc.description[:500]},
            )
            return _incident_dict(inc)

    def deactivate_incident(self, lead: HubMember | None, name: str) -> dict[str, Any]:
        if lead is not None and not lead.is_lead:
            raise Forbidden("only a forum lead deactivates an incident", code="lead_only")
        actor = lead.actor if lead else self.actor
        with self.db.session() as s:
            lock_audit(s)
            inc = s.scalars(select(ForumIncident).where(ForumIncident.name == name)).first()
            if inc is None:
                raise NotFound(f"no incident {name!r}", code="incident_not_found")
            if inc.active:
                inc.active, inc.deactivated_at = False, utcnow()
                audit.append(s, actor, "forum_incident_deactivated", f"incident:{name}", {})
            return _incident_dict(inc)

    def list_incidents(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [_incident_dict(i) for i in s.scalars(select(ForumIncident).order_by(ForumIncident.id))]

    # -- the feed ----------------------------------------------------------------------------------------------------
    def changes(self, after: str | None, limit: int = 1000) -> dict[str, Any]:
        """The next page of the delta feed: changes made under an active incident first, then the rest in order.

        The cursor holds two positions: ``main`` (every change up to it was served) and ``priority`` (every
        priority change up to it was served). Priority changes past both are served first; the main feed then
        skips priority changes it has already served."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit is 1 to {MAX_PAGE}", code="invalid_limit")
        main, prio = parse_cursor(after)
        c = ForumContribution
        columns = (
            ForumChange.seq,
            ForumChange.kind,
            ForumChange.priority,
            c.id,
            ForumMember.name,
            c.signal_type,
            c.value,
            c.incident,
            c.batch,
            c.batch_index,
            c.batch_size,
            c.signature,
            c.proof,
            c.created_at,
            c.retracted_at,
            # JSON read as text and decoded once per distinct value (a batch's rows share their labels): decoding
            # every row's JSON was half the time of a 10,000-row page.
            cast(c.labels, Text).label("labels_json"),
            cast(c.retraction, Text).label("retraction_json"),
            c.consensus,
            cast(c.feedback_counts, Text).label("feedback_counts_json"),
        )
        page = (
            select(*columns)
            .join(c, c.id == ForumChange.contribution_id)
            .join(ForumMember, ForumMember.id == c.member_id)
            .order_by(ForumChange.seq)
        )
        with self.db.session() as s:  # plain rows, no ORM objects: a page of 10,000 is one pass over two joins
            rows = s.execute(
                page.where(ForumChange.priority.is_(True), ForumChange.seq > max(main, prio)).limit(limit)
            ).all()
            if rows:
                prio = rows[-1].seq
            if len(rows) < limit:
                rest = s.execute(
                    page.where(
                        ForumChange.seq > main, not_(and_(ForumChange.priority.is_(True), ForumChange.seq <= prio))
                    ).limit(limit - len(rows))
                ).all()
                if rest:
                    main = rest[-1].seq
                rows += rest
            decoded: dict[str | None, Any] = {None: None}

            def load(text: str | None) -> Any:
                if text not in decoded:
                    decoded[text] = json.loads(text)
                return decoded[text]

            out = []
            for r in rows:
                counts = dict(load(r.feedback_counts_json) or {})
                out.append(
                    {
                        "id": r.id,
                        "contributor": r.name,
                        "signal_type": r.signal_type,
                        "value": r.value,
                        "labels": dict(load(r.labels_json) or {}),
                        "incident": r.incident,
                        "batch": r.batch,
                        "index": r.batch_index,
                        "batch_size": r.batch_size,
                        "signature": r.signature,
                        "proof": r.proof,
                        "created_at": _iso(r.created_at),
                        "retracted": r.retracted_at is not None,
                        "retraction": load(r.retraction_json),
                        "consensus": {"status": r.consensus, "score": counts.pop("score", 0), "counts": counts},
                        "seq": r.seq,
                        "change": r.kind,
                        "priority": r.priority,
                    }
                )
            return {"changes": out, "next_cursor": make_cursor(main, prio), "more": len(rows) >= limit}


def _allocate_ids(s: Session, table: str, n: int) -> list[int]:
    """``n`` new ids of ``table`` in one step; the caller holds the audit lock, so no other hub writer is between."""
    conn = s.connection()
    if conn.dialect.name == "postgresql":
        last = conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), nextval(pg_get_serial_sequence('{table}', 'id'))"
            " + %(n)s - 1)",
            {"n": n},
        ).scalar_one()
        return list(range(last - n + 1, last + 1))
    top = conn.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {table}").scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + n))


def _member_dict(m: ForumMember) -> dict[str, Any]:
    return {
        "name": m.name,
        "role": m.role,
        "public_key": m.public_key,
        "last_batch": m.last_batch,
        "created_at": _iso(m.created_at),
    }


def _incident_dict(i: ForumIncident) -> dict[str, Any]:
    return {
        "name": i.name,
        "description": i.description,
        "window_hours": i.window_hours,
        "active": i.active,
        "activated_by": i.activated_by,
        "activated_at": _iso(i.activated_at),
        "deactivated_at": _iso(i.deactivated_at),
    }


def _contribution_dict(c: ForumContribution, member: str) -> dict[str, Any]:
    counts = dict(c.feedback_counts or {})
    return {
        "id": c.id,
        "contributor": member,
        "signal_type": c.signal_type,
        "value": c.value,
        "labels": dict(c.labels or {}),
        "incident": c.incident,
        "batch": c.batch,
        "index": c.batch_index,
        "batch_size": c.batch_size,
        "signature": c.signature,
        "proof": c.proof,
        "created_at": _iso(c.created_at),
        "retracted": c.retracted_at is not None,
        "retraction": c.retraction,
        "consensus": {"status": c.consensus, "score": counts.pop("score", 0), "counts": counts},
    }
