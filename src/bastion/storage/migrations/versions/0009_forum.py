"""forum: hub members, contributions, feedback, incidents, member-side exchanges and sync cursors

Placeholder reserved so that work on several issues can add migrations side by side; it changes nothing until
its issue fills it in.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 02:00:00
"""

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
