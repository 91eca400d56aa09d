"""compliance: authorities, removal orders and referrals, threat-to-life escalations

Placeholder reserved so that work on several issues can add migrations side by side; it changes nothing until
its issue fills it in.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 02:00:00
"""

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
