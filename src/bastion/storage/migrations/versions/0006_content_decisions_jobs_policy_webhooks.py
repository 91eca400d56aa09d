"""content intake, decisions, jobs, policy versions, webhooks and their outbox; bank ownership and sharing

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 18:36:50.357503
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", _ID, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_events_event_id")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_organisation_id"), ["organisation_id"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("organisation_id", sa.BigInteger(), nullable=True),
        sa.Column("content_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_by", sa.String(length=100), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_content_id"), ["content_id"], unique=False)
        batch_op.create_index("ix_jobs_status_run_after", ["status", "run_after"], unique=False)

    op.create_table(
        "content_items",
        sa.Column("id", _ID, nullable=False),
        sa.Column("organisation_id", _ID, nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("uploader_id", sa.String(length=200), nullable=True),
        sa.Column("jurisdictions", sa.JSON(), nullable=False),
        sa.Column("surface", sa.String(length=32), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("content_type", sa.String(length=16), nullable=True),
        sa.Column("media_type", sa.String(length=100), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("signals", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_content_items_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_items")),
        sa.UniqueConstraint(
            "organisation_id", "idempotency_key", name="uq_content_items_organisation_id_idempotency_key"
        ),
    )
    with op.batch_alter_table("content_items", schema=None) as batch_op:
        batch_op.create_index("ix_content_items_org_created", ["organisation_id", "created_at"], unique=False)
        batch_op.create_index("ix_content_items_org_external", ["organisation_id", "external_id"], unique=False)
        batch_op.create_index("ix_content_items_org_uploader", ["organisation_id", "uploader_id"], unique=False)

    op.create_table(
        "policy_versions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("organisation_id", _ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_policy_versions_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_versions")),
        sa.UniqueConstraint("organisation_id", "version", name="uq_policy_versions_organisation_id_version"),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", _ID, nullable=False),
        sa.Column("organisation_id", _ID, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_webhooks_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhooks_organisation_id"), ["organisation_id"], unique=False)

    op.create_table(
        "bank_shares",
        sa.Column("bank_id", _ID, nullable=False),
        sa.Column("organisation_id", _ID, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name=op.f("fk_bank_shares_bank_id_banks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_bank_shares_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bank_id", "organisation_id", name="pk_bank_shares"),
    )
    with op.batch_alter_table("bank_shares", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bank_shares_organisation_id"), ["organisation_id"], unique=False)

    op.create_table(
        "content_blobs",
        sa.Column("content_id", _ID, autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["content_id"],
            ["content_items.id"],
            name=op.f("fk_content_blobs_content_id_content_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("content_id", name=op.f("pk_content_blobs")),
    )
    op.create_table(
        "decisions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("content_id", _ID, nullable=False),
        sa.Column("organisation_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("restrict_in", sa.JSON(), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("rule", sa.String(length=100), nullable=True),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("automated", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("shadow", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["content_id"], ["content_items.id"], name=op.f("fk_decisions_content_id_content_items"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
        sa.UniqueConstraint("content_id", "version", name="uq_decisions_content_id_version"),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decisions_organisation_id"), ["organisation_id"], unique=False)

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", _ID, nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("webhook_id", _ID, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_webhook_deliveries_event_id_events"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.id"], name=op.f("fk_webhook_deliveries_webhook_id_webhooks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_event_id"), ["event_id"], unique=False)
        batch_op.create_index("ix_webhook_deliveries_status_next", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_webhook_id"), ["webhook_id"], unique=False)

    # A plain ADD COLUMN (not a batch table copy): on SQLite, copying ``banks`` would drop the old table, and with
    # foreign keys on that cascades into bank_entries.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE banks ADD COLUMN organisation_id INTEGER CONSTRAINT fk_banks_organisation_id_organisations"
            " REFERENCES organisations (id) ON DELETE SET NULL"
        )
    else:
        op.add_column("banks", sa.Column("organisation_id", _ID, nullable=True))
        op.create_foreign_key(
            op.f("fk_banks_organisation_id_organisations"),
            "banks",
            "organisations",
            ["organisation_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_index(op.f("ix_banks_organisation_id"), "banks", ["organisation_id"], unique=False)
    # Plain ADD COLUMNs for the same reason (organisations has cascading children: users, api_keys).
    op.add_column(
        "organisations", sa.Column("url_fetch_enabled", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column("organisations", sa.Column("config", sa.JSON(), server_default="{}", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_column("config")
        batch_op.drop_column("url_fetch_enabled")

    op.drop_index(op.f("ix_banks_organisation_id"), table_name="banks")
    with op.batch_alter_table("banks", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_banks_organisation_id_organisations"), type_="foreignkey")
        batch_op.drop_column("organisation_id")

    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_webhook_id"))
        batch_op.drop_index("ix_webhook_deliveries_status_next")
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_event_id"))

    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_organisation_id"))

    op.drop_table("decisions")
    op.drop_table("content_blobs")
    with op.batch_alter_table("bank_shares", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bank_shares_organisation_id"))

    op.drop_table("bank_shares")
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhooks_organisation_id"))

    op.drop_table("webhooks")
    op.drop_table("policy_versions")
    with op.batch_alter_table("content_items", schema=None) as batch_op:
        batch_op.drop_index("ix_content_items_org_uploader")
        batch_op.drop_index("ix_content_items_org_external")
        batch_op.drop_index("ix_content_items_org_created")

    op.drop_table("content_items")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_run_after")
        batch_op.drop_index(batch_op.f("ix_jobs_content_id"))

    op.drop_table("jobs")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_organisation_id"))

    op.drop_table("events")
