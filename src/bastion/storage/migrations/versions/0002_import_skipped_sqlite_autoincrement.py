"""import_runs.skipped; SQLite AUTOINCREMENT on bank_entries, bank_signals, bank_changes

Without AUTOINCREMENT SQLite reuses the id of a deleted last row, and matchers load "signals with id > last seen".
PostgreSQL sequences never reuse ids, so only SQLite tables are rebuilt.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TABLES = ("bank_entries", "bank_signals", "bank_changes")


def upgrade() -> None:
    with op.batch_alter_table("import_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("skipped", sa.Integer(), server_default="0", nullable=False))
    if op.get_bind().dialect.name == "sqlite":
        for table in _TABLES:
            with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
                pass


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in _TABLES:
            with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": False}):
                pass
    with op.batch_alter_table("import_runs", schema=None) as batch_op:
        batch_op.drop_column("skipped")
