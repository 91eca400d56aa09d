"""forum: hub members, contributions, feedback, incidents, member-side exchanges and sync cursors

The hub's tables (forum_members, forum_incidents, forum_contributions, forum_feedback, forum_changes) are used by
``bastion forum serve`` against its own database; a member platform's tables (exchanges, exchange_items,
exchange_shared_banks) by its sync loop. Both live in one schema so one set of migrations serves both.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "forum_members",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=True),
        sa.Column("last_batch", sa.BigInteger(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forum_members")),
        sa.UniqueConstraint("key_prefix", name=op.f("uq_forum_members_key_prefix")),
        sa.UniqueConstraint("name", name=op.f("uq_forum_members_name")),
    )
    op.create_table(
        "forum_incidents",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("window_hours", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("activated_by", sa.String(length=100), nullable=False),
        sa.Column("activated_at", _AT, nullable=False),
        sa.Column("deactivated_at", _AT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forum_incidents")),
        sa.UniqueConstraint("name", name=op.f("uq_forum_incidents_name")),
    )
    op.create_table(
        "forum_contributions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("signal_type", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("lookup_key", sa.String(length=160), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("incident", sa.String(length=100), nullable=True),
        sa.Column("batch", sa.BigInteger(), nullable=False),
        sa.Column("batch_index", sa.Integer(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("proof", sa.Text(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("consensus", sa.String(length=32), nullable=False),
        sa.Column("feedback_counts", sa.JSON(), nullable=False),
        sa.Column("retracted_at", _AT, nullable=True),
        sa.Column("retraction", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["forum_members.id"],
            name=op.f("fk_forum_contributions_member_id_forum_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forum_contributions")),
        sa.UniqueConstraint("member_id", "signal_type", "lookup_key", name="uq_forum_contributions_member_id"),
    )
    op.create_index("ix_forum_contributions_type_key", "forum_contributions", ["signal_type", "lookup_key"])
    op.create_table(
        "forum_feedback",
        sa.Column("id", _ID, nullable=False),
        sa.Column("contribution_id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("batch", sa.BigInteger(), nullable=False),
        sa.Column("batch_index", sa.Integer(), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["contribution_id"],
            ["forum_contributions.id"],
            name=op.f("fk_forum_feedback_contribution_id_forum_contributions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["forum_members.id"],
            name=op.f("fk_forum_feedback_member_id_forum_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forum_feedback")),
        sa.UniqueConstraint("contribution_id", "member_id", name="uq_forum_feedback_contribution_id_member_id"),
    )
    op.create_index(op.f("ix_forum_feedback_member_id"), "forum_feedback", ["member_id"])
    op.create_table(
        "forum_changes",
        sa.Column("seq", _ID, nullable=False),
        sa.Column("contribution_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Boolean(), nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_forum_changes")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_forum_changes_priority_seq", "forum_changes", ["priority", "seq"])

    op.create_table(
        "exchanges",
        sa.Column("id", _ID, nullable=False),
        sa.Column("organisation_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secrets_encrypted", sa.Text(), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=True),
        sa.Column("bank_id", sa.BigInteger(), nullable=True),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_sync_at", _AT, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_exchanges_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchanges")),
        sa.UniqueConstraint("organisation_id", "name", name="uq_exchanges_organisation_id_name"),
    )
    op.create_index(op.f("ix_exchanges_organisation_id"), "exchanges", ["organisation_id"])
    op.create_table(
        "exchange_items",
        sa.Column("id", _ID, nullable=False),
        sa.Column("exchange_id", _ID, nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("source_id", sa.String(length=200), nullable=False),
        sa.Column("bank_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("signal_type", sa.String(length=32), nullable=False),
        sa.Column("lookup_key", sa.String(length=160), nullable=False),
        sa.Column("consensus", sa.String(length=32), nullable=True),
        sa.Column("retracted", sa.Boolean(), nullable=False),
        sa.Column("incident", sa.String(length=100), nullable=True),
        sa.Column("updated_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["exchange_id"], ["exchanges.id"], name=op.f("fk_exchange_items_exchange_id_exchanges"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_items")),
        sa.UniqueConstraint("exchange_id", "direction", "source_id", name="uq_exchange_items_exchange_id"),
    )
    op.create_index("ix_exchange_items_entry", "exchange_items", ["exchange_id", "direction", "bank_entry_id"])
    op.create_table(
        "exchange_shared_banks",
        sa.Column("exchange_id", _ID, nullable=False),
        sa.Column("bank_id", _ID, nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name=op.f("fk_exchange_shared_banks_bank_id_banks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["exchange_id"],
            ["exchanges.id"],
            name=op.f("fk_exchange_shared_banks_exchange_id_exchanges"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("exchange_id", "bank_id", name="pk_exchange_shared_banks"),
    )


def downgrade() -> None:
    op.drop_table("exchange_shared_banks")
    op.drop_index("ix_exchange_items_entry", table_name="exchange_items")
    op.drop_table("exchange_items")
    op.drop_index(op.f("ix_exchanges_organisation_id"), table_name="exchanges")
    op.drop_table("exchanges")
    op.drop_index("ix_forum_changes_priority_seq", table_name="forum_changes")
    op.drop_table("forum_changes")
    op.drop_index(op.f("ix_forum_feedback_member_id"), table_name="forum_feedback")
    op.drop_table("forum_feedback")
    op.drop_index("ix_forum_contributions_type_key", table_name="forum_contributions")
    op.drop_table("forum_contributions")
    op.drop_table("forum_incidents")
    op.drop_table("forum_members")
