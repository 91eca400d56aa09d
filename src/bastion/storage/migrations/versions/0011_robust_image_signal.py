"""signals: Bastion's robust image signal (edited copies PDQ misses)

Placeholder reserved so that work on several issues can add migrations side by side; it changes nothing until
its issue fills it in.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 02:00:00
"""

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
