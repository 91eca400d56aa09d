"""compliance: authorities, removal orders and referrals, threat-to-life escalations

- ``authorities``: an organisation that is an authority (TCO competent authority, internet referral unit, or a
  law-enforcement contact for escalations), its member state, contact and Ed25519 file-signing key;
- ``authority_platforms``: which platform organisations accept an authority's orders;
- ``orders`` and ``order_targets``: removal orders and referrals, their clock, "cannot comply", clarification,
  execution and confirmation; one target row per content item named;
- ``escalations`` and ``escalation_deliveries``: threat-to-life reports and their receipts per channel.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _at(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "authorities",
        sa.Column("id", _ID, nullable=False),
        sa.Column("organisation_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("member_state", sa.String(length=2), nullable=False),
        sa.Column("contact_email", sa.String(length=320), nullable=True),
        sa.Column("public_key", sa.String(length=100), nullable=True),
        sa.Column("fallback", sa.Boolean(), server_default=sa.false(), nullable=False),
        _at("created_at"),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"],
                                name=op.f("fk_authorities_organisation_id_organisations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authorities")),
        sa.UniqueConstraint("organisation_id", name=op.f("uq_authorities_organisation_id")),
    )
    op.create_table(
        "authority_platforms",
        sa.Column("authority_id", _ID, nullable=False),
        sa.Column("organisation_id", _ID, nullable=False),
        _at("created_at"),
        sa.ForeignKeyConstraint(["authority_id"], ["authorities.id"],
                                name=op.f("fk_authority_platforms_authority_id_authorities"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"],
                                name=op.f("fk_authority_platforms_organisation_id_organisations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("authority_id", "organisation_id", name="pk_authority_platforms"),
    )
    with op.batch_alter_table("authority_platforms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_authority_platforms_organisation_id"), ["organisation_id"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", _ID, nullable=False),
        sa.Column("authority_id", _ID, nullable=False),
        sa.Column("organisation_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("issuer", sa.String(length=200), nullable=False),
        sa.Column("member_state", sa.String(length=2), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        _at("issued_at"),
        _at("received_at"),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _at("clock_started_at", True),
        _at("deadline_at", True),
        sa.Column("alerts", sa.JSON(), nullable=False),
        sa.Column("cannot_comply_reason", sa.String(length=32), nullable=True),
        sa.Column("cannot_comply_explanation", sa.Text(), nullable=False),
        _at("cannot_comply_at", True),
        sa.Column("clarification", sa.Text(), nullable=False),
        _at("clarified_at", True),
        _at("executed_at", True),
        _at("confirmed_at", True),
        sa.Column("confirmation", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["authority_id"], ["authorities.id"], name=op.f("fk_orders_authority_id_authorities"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"],
                                name=op.f("fk_orders_organisation_id_organisations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("authority_id", "reference", name="uq_orders_authority_id_reference"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_orders_authority_id"), ["authority_id"], unique=False)
        batch_op.create_index("ix_orders_org_status", ["organisation_id", "status"], unique=False)

    op.create_table(
        "order_targets",
        sa.Column("id", _ID, nullable=False),
        sa.Column("order_id", _ID, nullable=False),
        sa.Column("organisation_id", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("content_id", _ID, nullable=False),
        sa.Column("review_item_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decision_id", sa.BigInteger(), nullable=True),
        sa.Column("bank_entry_id", sa.BigInteger(), nullable=True),
        _at("actioned_at", True),
        sa.ForeignKeyConstraint(["content_id"], ["content_items.id"],
                                name=op.f("fk_order_targets_content_id_content_items"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_order_targets_order_id_orders"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_targets")),
    )
    with op.batch_alter_table("order_targets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_order_targets_content_id"), ["content_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_order_targets_order_id"), ["order_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_order_targets_review_item_id"), ["review_item_id"], unique=False)

    op.create_table(
        "escalations",
        sa.Column("id", _ID, nullable=False),
        sa.Column("organisation_id", sa.BigInteger(), nullable=False),
        sa.Column("content_id", _ID, nullable=False),
        sa.Column("decision_id", sa.BigInteger(), nullable=False),
        sa.Column("authority_id", sa.BigInteger(), nullable=True),
        sa.Column("jurisdiction", sa.String(length=2), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        _at("created_at"),
        sa.ForeignKeyConstraint(["content_id"], ["content_items.id"],
                                name=op.f("fk_escalations_content_id_content_items"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalations")),
        sa.UniqueConstraint("decision_id", name=op.f("uq_escalations_decision_id")),
    )
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_escalations_content_id"), ["content_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_escalations_organisation_id"), ["organisation_id"], unique=False)

    op.create_table(
        "escalation_deliveries",
        sa.Column("id", _ID, nullable=False),
        sa.Column("escalation_id", _ID, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _at("next_attempt_at"),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("receipt", sa.Text(), nullable=False),
        _at("delivered_at", True),
        sa.ForeignKeyConstraint(["escalation_id"], ["escalations.id"],
                                name=op.f("fk_escalation_deliveries_escalation_id_escalations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_deliveries")),
    )
    with op.batch_alter_table("escalation_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_escalation_deliveries_escalation_id"), ["escalation_id"], unique=False)
        batch_op.create_index("ix_escalation_deliveries_status_next", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    for table in ("escalation_deliveries", "escalations", "order_targets", "orders", "authority_platforms",
                  "authorities"):
        op.drop_table(table)
