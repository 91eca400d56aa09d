"""compliance: preservation, statements of reasons, notices, complaints, transparency reports

- ``preserved_content``: removed content and its data, AES-GCM encrypted, kept until ``expires_at`` (TCO Art. 6);
- ``statements_of_reasons``: one DSA Art. 17 statement per restriction, in the Transparency Database's fields;
- ``uploader_notices``: the TCO Art. 11 notice per removal, and an authority's delay;
- ``complaints``: TCO Art. 10 / DSA Art. 20 complaints (decided as appeals), their deadline and reminders;
- ``ix_decisions_outcome_id``: the sweep's path to restrictions not yet handled;
- ``transparency_reports``: published reports, verbatim with their SHA-256. On PostgreSQL a trigger rejects UPDATE,
  so a published version never changes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_PG_FUNCTION = """
CREATE FUNCTION transparency_reports_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a published transparency report never changes (publish a new version)';
END $$
"""
_PG_TRIGGER = """
CREATE TRIGGER transparency_reports_immutable BEFORE UPDATE ON transparency_reports
FOR EACH ROW EXECUTE FUNCTION transparency_reports_immutable()
"""


def _at(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "preserved_content",
        sa.Column("id", _ID, nullable=False),
        sa.Column("organisation_id", sa.BigInteger(), nullable=False),
        sa.Column("content_id", sa.BigInteger(), nullable=False),
        sa.Column("decision_id", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("has_bytes", sa.Boolean(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        _at("preserved_at"),
        _at("expires_at"),
        sa.Column("extensions", sa.JSON(), nullable=False),
        _at("purged_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_preserved_content")),
        sa.UniqueConstraint("decision_id", name=op.f("uq_preserved_content_decision_id")),
    )
    with op.batch_alter_table("preserved_content") as b:
        b.create_index(b.f("ix_preserved_content_organisation_id"), ["organisation_id"])
        b.create_index(b.f("ix_preserved_content_content_id"), ["content_id"])
        b.create_index(b.f("ix_preserved_content_expires_at"), ["expires_at"])

    op.create_table(
        "statements_of_reasons",
        sa.Column("id", _ID, nullable=False),
        sa.Column("organisation_id", sa.BigInteger(), nullable=False),
        sa.Column("content_id", sa.BigInteger(), nullable=False),
        sa.Column("decision_id", sa.BigInteger(), nullable=False),
        sa.Column("puid", sa.String(length=500), nullable=False),
        sa.Column("statement", sa.JSON(), nullable=False),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statements_of_reasons")),
        sa.UniqueConstraint("decision_id", name=op.f("uq_statements_of_reasons_decision_id")),
        sa.UniqueConstraint("organisation_id", "puid", name="uq_statements_of_reasons_organisation_id_puid"),
    )
    with op.batch_alter_table("statements_of_reasons") as b:
        b.create_index(b.f("ix_statements_of_reasons_content_id"), ["content_id"])
        b.create_index("ix_statements_of_reasons_org_created", ["organisation_id", "created_at"])

    op.create_table(
        "uploader_notices",
        sa.Column("id", _ID, nullable=False),
        sa.Column("organisation_id", sa.BigInteger(), nullable=False),
        sa.Column("content_id", sa.BigInteger(), nullable=False),
        sa.Column("decision_id", sa.BigInteger(), nullable=False),
        sa.Column("uploader_id", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        _at("delay_until", True),
        sa.Column("delay_renewals", sa.Integer(), nullable=False),
        sa.Column("delay_requested_by", sa.String(length=200), nullable=False),
        sa.Column("delay_reference", sa.String(length=200), nullable=False),
        _at("created_at"),
        _at("sent_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploader_notices")),
        sa.UniqueConstraint("decision_id", name=op.f("uq_uploader_notices_decision_id")),
    )
    with op.batch_alter_table("uploader_notices") as b:
        b.create_index(b.f("ix_uploader_notices_organisation_id"), ["organisation_id"])
        b.create_index(b.f("ix_uploader_notices_content_id"), ["content_id"])

    op.create_table(
        "complaints",
        sa.Column("id", _ID, nullable=False),
        sa.Column("organisation_id", sa.BigInteger(), nullable=False),
        sa.Column("content_id", sa.BigInteger(), nullable=False),
        sa.Column("appeal_id", sa.BigInteger(), nullable=False),
        sa.Column("regime", sa.String(length=8), nullable=False),
        sa.Column("complainant_id", sa.String(length=200), nullable=True),
        _at("deadline_at"),
        _at("reminded_at", True),
        _at("overdue_at", True),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaints")),
        sa.UniqueConstraint("appeal_id", name=op.f("uq_complaints_appeal_id")),
    )
    with op.batch_alter_table("complaints") as b:
        b.create_index(b.f("ix_complaints_organisation_id"), ["organisation_id"])
        b.create_index(b.f("ix_complaints_content_id"), ["content_id"])

    op.create_table(
        "transparency_reports",
        sa.Column("id", _ID, nullable=False),
        sa.Column("organisation_id", sa.BigInteger(), nullable=False),
        _at("period_from"),
        _at("period_to"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        _at("published_at"),
        sa.Column("published_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transparency_reports")),
        sa.UniqueConstraint(
            "organisation_id",
            "period_from",
            "period_to",
            "version",
            name="uq_transparency_reports_organisation_id_period_from",
        ),
    )
    op.create_index("ix_decisions_outcome_id", "decisions", ["outcome", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS transparency_reports_immutable ON transparency_reports")
        op.execute("DROP FUNCTION IF EXISTS transparency_reports_immutable()")
    op.drop_index("ix_decisions_outcome_id", table_name="decisions")
    op.drop_table("transparency_reports")
    op.drop_table("complaints")
    op.drop_table("uploader_notices")
    op.drop_table("statements_of_reasons")
    op.drop_table("preserved_content")
