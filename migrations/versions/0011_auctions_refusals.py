"""Engine refusals of journaled commands, so that a retry under the same client id is refused the same way.

A bid, registration or lot the auction engine refuses is journaled before the engine sees it; its retry
must get the same 409 problem, detail included, so the code and message are kept with the command's seq.
Written in the sequencer's projection transaction; insert-only.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24
"""

from alembic import op  # noqa: F401

from migrations.script import run_script

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script("""
CREATE TABLE market_refusals (
    market_id text NOT NULL REFERENCES markets (id),
    seq bigint NOT NULL,
    code text NOT NULL,
    detail text NOT NULL,
    PRIMARY KEY (market_id, seq)
);
CREATE TRIGGER market_refusals_append_only BEFORE UPDATE OR DELETE ON market_refusals
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();
""")


def downgrade() -> None:
    run_script("DROP TABLE market_refusals;")
