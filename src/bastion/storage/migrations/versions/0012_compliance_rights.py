"""compliance: preservation, statements of reasons, notices, complaints, transparency reports

Placeholder reserved so that work on several issues can add migrations side by side; it changes nothing until
its issue fills it in.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 02:00:00
"""

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
