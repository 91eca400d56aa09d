"""Database tables. Every change to them comes with an Alembic migration (a test checks they agree)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


LOOKUP_KEY_MAX = 160  # bank_signals.lookup_key holds values up to this length, digests of longer ones


def lookup_key(value: str) -> str:
    """The indexed form of a signal value: itself when short, else ``sha256:<hex>`` of it (vPDQ, TMK values)."""
    if len(value) <= LOOKUP_KEY_MAX:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(dt: datetime) -> datetime:
    """``dt`` as an aware UTC datetime (a naive one is taken to be UTC, as Bastion stores every time in UTC)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``UTCDateTime()`` that always gives back aware UTC datetimes: SQLite keeps no zone and returns
    naive values, PostgreSQL returns the session's zone; callers compare and format them without fixing up."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value) if value is not None else None


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Bank(Base):
    """A named collection of known content. ``kind`` is "block" (match to act) or "allow" (known false positives)."""

    __tablename__ = "banks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="block")
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    # The owning organisation; NULL for an operator's bank made with the CLI, which no organisation sees or
    # matches against until it is given an owner or shared (bank_shares).
    organisation_id: Mapped[int | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="SET NULL"), nullable=True, index=True
    )

    entries: Mapped[list[BankEntry]] = relationship(back_populates="bank", cascade="all, delete-orphan",
                                                    passive_deletes=True)


class BankEntry(Base):
    """One piece of known content in a bank: its labels and provenance. Its signals are in ``bank_signals``."""

    __tablename__ = "bank_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    content_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str] = mapped_column(String(32), default="own_review")
    note: Mapped[str] = mapped_column(Text, default="")
    origin: Mapped[str] = mapped_column(Text, default="")  # file name or external id it came from
    added_by: Mapped[str] = mapped_column(String(200), default="")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    bank: Mapped[Bank] = relationship(back_populates="entries")
    # No database cascade to bank_signals (no foreign key, see BankSignal): the ORM deletes an entry's signals.
    signals: Mapped[list[BankSignal]] = relationship(
        back_populates="entry",
        cascade="all, delete-orphan",
        primaryjoin="BankEntry.id == foreign(BankSignal.entry_id)",
    )

    # AUTOINCREMENT: SQLite must never reuse the id of a deleted row (change-feed readers track ids).
    __table_args__ = {"sqlite_autoincrement": True}


class BankSignal(Base):
    """One signal of a bank entry. ``lookup_key`` is the value itself, or a digest of it for long values.

    ``entry_id`` and ``bank_id`` carry no foreign keys: on PostgreSQL the per-row referential checks doubled the
    cost of bulk imports (a million hashes must load in under a minute). BankService, the only writer, allocates
    the ids it inserts under a lock and deletes signals explicitly with their entry or bank; readers join
    ``bank_entries``, so a stray signal could never match.
    """

    __tablename__ = "bank_signals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(BigId, index=True)
    bank_id: Mapped[int] = mapped_column(BigId, index=True)
    signal_type: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(Text)
    lookup_key: Mapped[str] = mapped_column(String(160))
    quality: Mapped[int | None] = mapped_column(Integer, nullable=True)

    entry: Mapped[BankEntry] = relationship(back_populates="signals",
                                            primaryjoin="BankEntry.id == foreign(BankSignal.entry_id)")

    __table_args__ = (
        Index("ix_bank_signals_type_key", "signal_type", "lookup_key"),
        # AUTOINCREMENT: on SQLite a deleted last row's id would otherwise be reused, and matchers load "id > last".
        {"sqlite_autoincrement": True},
    )


class BankChange(Base):
    """The change feed matchers follow to keep in-memory indexes fresh without reloading everything.

    New signals are found by id (ids only grow); this table records what id order cannot show: entries and banks
    disabled, enabled or deleted.
    """

    __tablename__ = "bank_changes"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    bank_id: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = {"sqlite_autoincrement": True}


class ImportRun(Base):
    """A record of each bank import: counts and the first rejected rows, for the curator's audit trail."""

    __tablename__ = "import_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"), index=True)
    format: Mapped[str] = mapped_column(String(32))
    source_name: Mapped[str] = mapped_column(Text, default="")
    imported: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # already in the bank, or withdrawn
    errors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)



class Organisation(Base):
    """A platform (or other member) using Bastion. API keys and users belong to exactly one."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Remote URLs in submissions are fetched only when the organisation switched it on.
    url_fetch_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Per-organisation configuration: {"classifiers": {name: {options}}, ...}.
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")


class User(Base):
    """A person in an organisation (reviewer, curator, admin). Sign-in comes with the console."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(32), default="reviewer")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)  # argon2id; None: cannot sign in
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # console preferences: blur strength, greyscale, autoplay, break reminder minutes (review/wellbeing.py)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    daily_cap_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)  # exposure cap a lead set

    __table_args__ = (UniqueConstraint("organisation_id", "email", name="uq_users_organisation_id_email"),)


class ApiKey(Base):
    """An API key of an organisation. Only a hash of its secret is stored (see bastion.accounts.service)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditRecord(Base):
    """One entry of the append-only, hash-chained audit log (see :mod:`bastion.audit`).

    ``seq`` is assigned by :func:`bastion.audit.append` under a lock (never by the database), so a gap means a
    removed record. ``hash`` is SHA-256 over the canonical encoding of every other column plus ``prev_hash``. On
    PostgreSQL a trigger rejects UPDATE and DELETE; on SQLite only the chain (and the anchor) protect it.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    organisation_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(300))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditAnchor(Base):
    """The audit log's head (last seq and hash), one row updated with every append: deleting the tail shows."""

    __tablename__ = "audit_anchor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BankShare(Base):
    """A bank its owner shares with another organisation: that organisation matches against it (read only)."""

    __tablename__ = "bank_shares"

    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")

    __table_args__ = (PrimaryKeyConstraint("bank_id", "organisation_id", name="pk_bank_shares"),)


class ContentItem(Base):
    """One submission of a platform: who uploaded what, where, and the signals computed from it.

    The bytes themselves are not kept once the decision is made (``content_blobs`` holds them only while a worker
    still needs them); the signals are, so a policy can be backtested and a forum's new hashes re-scanned.
    """

    __tablename__ = "content_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(200))  # the platform's own content id
    uploader_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    jurisdictions: Mapped[list[str]] = mapped_column(JSON, default=list)  # ISO 3166-1 alpha-2 codes
    surface: Mapped[str | None] = mapped_column(String(32), nullable=True)
    language: Mapped[str | None] = mapped_column(String(16), nullable=True)
    source: Mapped[str] = mapped_column(String(16))  # upload | text | url
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    media_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    signals: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | decided | failed
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reach: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # views/followers the platform reported
    request_fingerprint: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("organisation_id", "idempotency_key", name="uq_content_items_organisation_id_idempotency_key"),
        Index("ix_content_items_org_external", "organisation_id", "external_id"),
        Index("ix_content_items_org_uploader", "organisation_id", "uploader_id"),
        Index("ix_content_items_org_created", "organisation_id", "created_at"),
    )


class ContentBlob(Base):
    """The bytes (or text) of a submission a worker has yet to process; deleted when its decision is made."""

    __tablename__ = "content_blobs"

    content_id: Mapped[int] = mapped_column(ForeignKey("content_items.id", ondelete="CASCADE"), primary_key=True,
                                            autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Decision(Base):
    """What was decided about a content item, and why. Version 1 is the automated decision; later versions
    (a review, an appeal, an authority order) change it. The newest version is the one in force."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("content_items.id", ondelete="CASCADE"))
    organisation_id: Mapped[int] = mapped_column(BigInteger, index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    outcome: Mapped[str] = mapped_column(String(16))  # remove | restrict | review | escalate | allow
    restrict_in: Mapped[list[str]] = mapped_column(JSON, default=list)  # jurisdictions, for "restrict"
    queue: Mapped[str | None] = mapped_column(String(64), nullable=True)  # for "review" and "escalate"
    priority: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rule: Mapped[str | None] = mapped_column(String(100), nullable=True)
    policy_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    automated: Mapped[bool] = mapped_column(Boolean, default=True)
    actor: Mapped[str] = mapped_column(String(200), default="policy")
    reason: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    shadow: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # shadow rules that fired, not acted on
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("content_id", "version", name="uq_decisions_content_id_version"),)


class Job(Base):
    """A unit of background work (see :mod:`bastion.jobs`): claimed with a lease, retried when a worker dies."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    organisation_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    content_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued | running | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_jobs_status_run_after", "status", "run_after"),)


class PolicyVersion(Base):
    """One version of an organisation's rules file (YAML, kept verbatim). The highest version is in force."""

    __tablename__ = "policy_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("organisation_id", "version", name="uq_policy_versions_organisation_id_version"),
    )


class Webhook(Base):
    """A URL of an organisation's that receives signed events. The signing secret is stored encrypted."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)  # event types; empty = all
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")


class Event(Base):
    """The outbox: an event written in the same transaction as what it reports, delivered by the webhook sender."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)  # the receiver's idempotency key
    organisation_id: Mapped[int] = mapped_column(BigInteger, index=True)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookDelivery(Base):
    """One event owed to one webhook: retried with exponential back-off until delivered or given up."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),)


# -- the review console (issue 4) -------------------------------------------------------------------------------------
class UserSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored (like API keys)."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    organisation_id: Mapped[int] = mapped_column(BigInteger)
    csrf_secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    user_agent: Mapped[str] = mapped_column(String(300), default="")


class LoginAttempt(Base):
    """One sign-in attempt, for throttling by e-mail address and by client address (and for the audit trail)."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class ReviewQueue(Base):
    """A named queue of an organisation: which items land in it (policy outcome, jurisdictions, languages,
    categories) and which roles may work it."""

    __tablename__ = "review_queues"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    criteria: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # outcomes, jurisdictions, languages...
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty = every role
    sla_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    position: Mapped[int] = mapped_column(Integer, default=0)  # routing order: the first queue whose criteria hold
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("organisation_id", "name", name="uq_review_queues_organisation_id_name"),)


class ReviewItem(Base):
    """One piece of content waiting for (or done with) a person: first review, an escalation, a QA second look or
    an appeal. Leased to one reviewer at a time until ``lease_expires_at``."""

    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(BigInteger)
    content_id: Mapped[int] = mapped_column(ForeignKey("content_items.id", ondelete="CASCADE"), index=True)
    decision_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # the decision that sent it here
    kind: Mapped[str] = mapped_column(String(16), default="review")  # review | escalation | qa | appeal
    queue: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)  # higher first
    severity: Mapped[str] = mapped_column(String(16), default="normal")  # threat_to_life | high | normal | low
    category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    language: Mapped[str | None] = mapped_column(String(16), nullable=True)
    jurisdictions: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | leased | done | cancelled
    leased_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    excluded_user_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # QA and appeals: not this one
    parent_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # QA: the review item it checks
    appeal_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # an authority order's
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


# The next-item query's order (priority DESC, created_at, id): within one queue, and across queues (migration 0008).
Index("ix_review_items_queue_next", ReviewItem.organisation_id, ReviewItem.status, ReviewItem.queue,
      ReviewItem.priority.desc(), ReviewItem.created_at, ReviewItem.id)
Index("ix_review_items_org_next", ReviewItem.organisation_id, ReviewItem.status, ReviewItem.priority.desc(),
      ReviewItem.created_at, ReviewItem.id)


class ReviewDecision(Base):
    """What a person decided on a review item (and, for QA, whether it agreed with the first reviewer)."""

    __tablename__ = "review_decisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"), unique=True)
    organisation_id: Mapped[int] = mapped_column(BigInteger, index=True)
    content_id: Mapped[int] = mapped_column(BigInteger, index=True)
    reviewer_id: Mapped[int] = mapped_column(BigInteger, index=True)
    # violating | not_violating | escalate_lead | escalate_law_enforcement | uphold | overturn
    verdict: Mapped[str] = mapped_column(String(32))
    action: Mapped[str | None] = mapped_column(String(16), nullable=True)  # remove | restrict | allow | None
    category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    policy_reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    restrict_in: Mapped[list[str]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    bank_entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # hashes banked by this decision
    share_with_forum: Mapped[bool] = mapped_column(Boolean, default=False)
    decision_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # the content decision it wrote
    qa_of: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # QA: the review decision checked
    agrees: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # time to decision: queued to decided
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class Appeal(Base):
    """A user's appeal against a decision on their content, sent by the platform through the API."""

    __tablename__ = "appeals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(BigInteger, index=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("content_items.id", ondelete="CASCADE"), index=True)
    decision_id: Mapped[int] = mapped_column(BigInteger)  # the decision appealed
    appellant_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | upheld | overturned
    original_reviewer_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    decided_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ExposureRecord(Base):
    """Seconds a reviewer spent with one item's media on screen (revealed or not): wellbeing breaks and daily caps."""

    __tablename__ = "exposure_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    item_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    day: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD, UTC
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    revealed_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_exposure_records_user_day", "user_id", "day"),)


# -- compliance: authorities, removal orders and referrals, threat-to-life escalations (issue 6) ----------------------
class Authority(Base):
    """An organisation that is an authority: a competent authority under Regulation (EU) 2021/784 (TCO), a national
    internet referral unit (the UK's CTIRU, France's OFAC/PHAROS) or a law-enforcement contact for threat-to-life
    escalations (Europol: ``fallback``). Its people and API keys are the organisation's (role and scope
    ``authority``); this row says what kind of authority it is and holds the Ed25519 key its signed files carry."""

    __tablename__ = "authorities"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # competent_authority | referral_unit | law_enforcement
    member_state: Mapped[str] = mapped_column(String(2))  # ISO 3166-1 alpha-2, or "EU" for a Union body
    contact_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    public_key: Mapped[str | None] = mapped_column(String(100), nullable=True)  # Ed25519, raw 32 bytes, base64
    fallback: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # escalate here if unclear
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuthorityPlatform(Base):
    """A platform organisation accepts orders and referrals from an authority (by the operator's or its own act)."""

    __tablename__ = "authority_platforms"

    authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id", ondelete="CASCADE"))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (PrimaryKeyConstraint("authority_id", "organisation_id", name="pk_authority_platforms"),)


class Order(Base):
    """A removal order (binding, TCO Art. 3: act within one hour of receipt) or a referral (non-binding, assessed
    against the platform's terms) from an authority to one platform organisation."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id", ondelete="CASCADE"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # removal_order | referral
    reference: Mapped[str] = mapped_column(String(200))  # the authority's own reference (unique per authority)
    issuer: Mapped[str] = mapped_column(String(200))
    member_state: Mapped[str] = mapped_column(String(2))
    legal_basis: Mapped[str] = mapped_column(Text)
    reasons: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the authority's timestamp
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())  # Bastion's: the clock starts here
    channel: Mapped[str] = mapped_column(String(16), default="api")  # api | file
    # received | pending_review | cannot_comply | executed | assessed (a referral decided)
    status: Mapped[str] = mapped_column(String(16), default="received")
    clock_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # binding orders only
    alerts: Mapped[list[int]] = mapped_column(JSON, default=list)  # minutes of the alerts sent on this clock
    cannot_comply_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    cannot_comply_explanation: Mapped[str] = mapped_column(Text, default="")
    cannot_comply_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    clarification: Mapped[str] = mapped_column(Text, default="")
    clarified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    executed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    confirmation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(200), default="")

    __table_args__ = (
        UniqueConstraint("authority_id", "reference", name="uq_orders_authority_id_reference"),
        Index("ix_orders_org_status", "organisation_id", "status"),
    )


class OrderTarget(Base):
    """One piece of content an order names (the platform's content id or a URL), resolved to a content item."""

    __tablename__ = "order_targets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    organisation_id: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str] = mapped_column(Text)  # as the authority wrote it
    content_id: Mapped[int] = mapped_column(ForeignKey("content_items.id", ondelete="CASCADE"), index=True)
    review_item_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | removed | restricted | kept
    decision_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bank_entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    actioned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Escalation(Base):
    """Content showing an imminent threat to life, reported to the law-enforcement contact of its jurisdiction
    (TCO Art. 14(5), DSA Art. 18) with an evidence package."""

    __tablename__ = "escalations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(BigInteger, index=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("content_items.id", ondelete="CASCADE"), index=True)
    decision_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    authority_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # None: no contact configured
    jurisdiction: Mapped[str] = mapped_column(String(2))  # the contact's member state ("EU": Europol)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed | no_contact
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EscalationDelivery(Base):
    """One channel of an escalation (the signed webhook event, an e-mail) and its receipt."""

    __tablename__ = "escalation_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    escalation_id: Mapped[int] = mapped_column(ForeignKey("escalations.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # webhook | email
    target: Mapped[str] = mapped_column(String(320))  # the event id, or the address
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    receipt: Mapped[str] = mapped_column(Text, default="")  # the server's answer (SMTP reply, HTTP status)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_escalation_deliveries_status_next", "status", "next_attempt_at"),)


# -- compliance: preservation, users' rights and transparency reports (issue 6) ---------------------------------------
class PreservedContent(Base):
    """Removed content and its data kept for authorities (TCO Art. 6): AES-GCM ciphertext of a JSON package, kept
    until ``expires_at`` (six months, extendable at an authority's or court's request), then purged (ciphertext
    dropped, the row kept as the record that it existed and when it went). No foreign key to the content: the
    preserved copy must outlive the content item it came from."""

    __tablename__ = "preserved_content"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(BigInteger, index=True)
    content_id: Mapped[int] = mapped_column(BigInteger, index=True)
    decision_id: Mapped[int] = mapped_column(BigInteger, unique=True)  # the removal or restriction preserved for
    key_id: Mapped[str] = mapped_column(String(64))  # which key encrypted it (the KeyProvider's id)
    nonce: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # None once purged
    has_bytes: Mapped[bool] = mapped_column(Boolean, default=False)  # the content's own bytes are in the package
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # of the plaintext package
    preserved_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    extensions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # {until, requested_by, reference}
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class StatementOfReasons(Base):
    """The DSA Art. 17 statement of reasons for one restriction, in the DSA Transparency Database's fields."""

    __tablename__ = "statements_of_reasons"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(BigInteger)
    content_id: Mapped[int] = mapped_column(BigInteger, index=True)
    decision_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    puid: Mapped[str] = mapped_column(String(500))
    statement: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("organisation_id", "puid", name="uq_statements_of_reasons_organisation_id_puid"),
        Index("ix_statements_of_reasons_org_created", "organisation_id", "created_at"),
    )


class UploaderNotice(Base):
    """The notice owed to the uploader of removed content (TCO Art. 11), delivered by the platform from the
    ``uploader.notice`` webhook event, unless an authority asked for a delay (six weeks, renewable once)."""

    __tablename__ = "uploader_notices"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(BigInteger, index=True)
    content_id: Mapped[int] = mapped_column(BigInteger, index=True)
    decision_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    uploader_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="sent")  # delayed | sent
    delay_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    delay_renewals: Mapped[int] = mapped_column(Integer, default=0)
    delay_requested_by: Mapped[str] = mapped_column(String(200), default="")
    delay_reference: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Complaint(Base):
    """A complaint against a removal (TCO Art. 10, DSA Art. 20). It is decided as an appeal (the appeals queue,
    someone other than the original reviewer, reinstatement through ``decision.changed``); this row adds the
    regime, the two-week deadline and its reminders."""

    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(BigInteger, index=True)
    content_id: Mapped[int] = mapped_column(BigInteger, index=True)
    appeal_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    regime: Mapped[str] = mapped_column(String(8))  # tco | dsa
    complainant_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # when found overdue
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TransparencyReport(Base):
    """A published transparency report: its JSON document, verbatim, with its SHA-256. Never updated: publishing
    the same period again makes the next version."""

    __tablename__ = "transparency_reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(BigInteger)
    period_from: Mapped[datetime] = mapped_column(UTCDateTime())
    period_to: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[str] = mapped_column(Text)  # canonical JSON
    sha256: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    published_by: Mapped[str] = mapped_column(String(200), default="")

    __table_args__ = (
        UniqueConstraint("organisation_id", "period_from", "period_to", "version",
                         name="uq_transparency_reports_organisation_id_period_from"),
    )


# The compliance sweep finds restrictions without a notice yet: remove/restrict decisions in id order (migration 0012).
Index("ix_decisions_outcome_id", Decision.outcome, Decision.id)


# -- the industry forum (issue 5): the hub's tables, then a member platform's exchanges ------------------------------
class ForumMember(Base):
    """Hub side: a member organisation of the forum. Its API key is stored as a SHA-256 (shown once); its Ed25519
    public key (raw 32 bytes, base64) verifies everything it signs; ``last_batch`` is the newest batch accepted
    (batches must arrive numbered last_batch + 1: a replayed or reordered batch is refused)."""

    __tablename__ = "forum_members"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="member")  # member | lead
    key_prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_batch: Mapped[int] = mapped_column(BigInteger, default=0)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ForumIncident(Base):
    """Hub side: an incident a forum lead activated (a livestreamed attack...): its contributions go out first."""

    __tablename__ = "forum_incidents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    window_hours: Mapped[int] = mapped_column(Integer, default=24)  # how far back members rescan their uploads
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    activated_by: Mapped[str] = mapped_column(String(100), default="")
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ForumContribution(Base):
    """Hub side: one hash a member contributed, with its labels, the member's Ed25519 signature over its batch's
    Merkle root, and its proof (siblings up to that root; bastion.forum.signing)."""

    __tablename__ = "forum_contributions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("forum_members.id", ondelete="CASCADE"))
    signal_type: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(Text)
    lookup_key: Mapped[str] = mapped_column(String(160))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    incident: Mapped[str | None] = mapped_column(String(100), nullable=True)
    batch: Mapped[int] = mapped_column(BigInteger)
    batch_index: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer)
    signature: Mapped[str] = mapped_column(String(128))  # the batch's
    proof: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    consensus: Mapped[str] = mapped_column(String(32), default="unconfirmed")
    feedback_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    retracted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    retraction: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # batch, index, signature

    __table_args__ = (
        UniqueConstraint("member_id", "signal_type", "lookup_key", name="uq_forum_contributions_member_id"),
        Index("ix_forum_contributions_type_key", "signal_type", "lookup_key"),
    )


class ForumFeedback(Base):
    """Hub side: one member's (latest) feedback on one contribution, signed like the contribution."""

    __tablename__ = "forum_feedback"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contribution_id: Mapped[int] = mapped_column(ForeignKey("forum_contributions.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("forum_members.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # agree | disagree_label | false_positive | seen
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    note: Mapped[str] = mapped_column(Text, default="")
    batch: Mapped[int] = mapped_column(BigInteger)
    batch_index: Mapped[int] = mapped_column(Integer)
    signature: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("contribution_id", "member_id", name="uq_forum_feedback_contribution_id_member_id"),
    )


class ForumChange(Base):
    """Hub side: the delta feed members follow by cursor (``seq`` only grows): a contribution was added,
    retracted, or its consensus changed. ``priority`` rows (made under an active incident) are served first."""

    __tablename__ = "forum_changes"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True)
    contribution_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # new | retracted | consensus
    priority: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_forum_changes_priority_seq", "priority", "seq"), {"sqlite_autoincrement": True})


class OrganisationExchange(Base):
    """Member side: an exchange an organisation takes hashes from (a forum hub, ThreatExchange...). Its
    credentials (API key, Ed25519 signing key) are encrypted at rest; ``cursor`` is stored in the same transaction
    as the page it follows, so a sync resumes where it stopped; ``state`` holds pinned member keys and the
    feedback position."""

    __tablename__ = "exchanges"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(Text, default="")
    secrets_encrypted: Mapped[str] = mapped_column(Text, default="")
    public_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bank_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # where its hashes land
    cursor: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")

    __table_args__ = (UniqueConstraint("organisation_id", "name", name="uq_exchanges_organisation_id_name"),)


class ExchangeItem(Base):
    """Member side: one hash taken from an exchange ("in": the bank entry it became) or pushed to it ("out": the
    local entry and signal it came from), keyed by the exchange's own id for it."""

    __tablename__ = "exchange_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    exchange_id: Mapped[int] = mapped_column(ForeignKey("exchanges.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    source_id: Mapped[str] = mapped_column(String(200))
    bank_entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    signal_type: Mapped[str] = mapped_column(String(32))
    lookup_key: Mapped[str] = mapped_column(String(160))
    consensus: Mapped[str | None] = mapped_column(String(32), nullable=True)
    retracted: Mapped[bool] = mapped_column(Boolean, default=False)
    incident: Mapped[str | None] = mapped_column(String(100), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("exchange_id", "direction", "source_id", name="uq_exchange_items_exchange_id"),
        Index("ix_exchange_items_entry", "exchange_id", "direction", "bank_entry_id"),
    )


class ExchangeSharedBank(Base):
    """Member side: a bank of the organisation whose confirmed hashes are pushed to an exchange. ``mode`` "marked"
    pushes only entries a reviewer marked share_with_forum; "all" pushes every enabled entry."""

    __tablename__ = "exchange_shared_banks"

    exchange_id: Mapped[int] = mapped_column(ForeignKey("exchanges.id", ondelete="CASCADE"))
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(16), default="marked")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (PrimaryKeyConstraint("exchange_id", "bank_id", name="pk_exchange_shared_banks"),)
