"""bank_signals without foreign keys (bulk imports)

On PostgreSQL the per-row referential checks of bank_signals.entry_id and bank_signals.bank_id doubled the cost of
bulk imports. BankService is the only writer: it allocates the ids it inserts under a lock and deletes signals
explicitly with their entry or bank.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 18:00:00
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_KW = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("bank_signals", schema=None, table_kwargs=_KW) as batch_op:
        batch_op.drop_constraint("fk_bank_signals_entry_id_bank_entries", type_="foreignkey")
        batch_op.drop_constraint("fk_bank_signals_bank_id_banks", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("bank_signals", schema=None, table_kwargs=_KW) as batch_op:
        batch_op.create_foreign_key(
            "fk_bank_signals_entry_id_bank_entries", "bank_entries", ["entry_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_foreign_key("fk_bank_signals_bank_id_banks", "banks", ["bank_id"], ["id"], ondelete="CASCADE")
