"""review items: indexes in the next-item order (priority descending, oldest first), per queue and across queues

The next-item query asks for an organisation's open items, best priority first, then oldest, then by id
(``ORDER BY priority DESC, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED``). 0007's ``ix_review_items_next``
(ascending priority) gave PostgreSQL no index in that order, so every call sorted every open item of the
organisation (a sequential scan and a full sort under ``LockRows``: ~100 ms with 100,000 items queued). Two indexes
in exactly that order replace it: one with the queue (a reviewer working one queue; also the per-queue counts of
the queue summary and the dashboard) and one without (the next item of every queue the reviewer may work), so the
plan is an index scan that stops at the first row it can lock.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 21:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.drop_index("ix_review_items_next")
        batch_op.create_index(
            "ix_review_items_queue_next",
            ["organisation_id", "status", "queue", sa.text("priority DESC"), "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_review_items_org_next",
            ["organisation_id", "status", sa.text("priority DESC"), "created_at", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.drop_index("ix_review_items_org_next")
        batch_op.drop_index("ix_review_items_queue_next")
        batch_op.create_index(
            "ix_review_items_next", ["organisation_id", "status", "queue", "priority", "created_at"], unique=False
        )
