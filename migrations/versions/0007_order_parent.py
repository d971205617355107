"""Orders remember the auction a bid or deposit belongs to, so a recovered sequencer can release them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from alembic import op  # noqa: F401

from migrations.script import run_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script("ALTER TABLE orders ADD COLUMN parent bigint;")


def downgrade() -> None:
    run_script("ALTER TABLE orders DROP COLUMN parent;")
