"""Issuing authorities: which issuer may request issuance of which instrument.

An issuer is the authority for its own instruments only (三明市林业局 for Sanming forest tickets, not
Chengdu's environment bureau; the national allowance by its national authority). An operator grants it
through four eyes (operator action `authoriseIssuer`); the grant names who made it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from alembic import op  # noqa: F401

from migrations.script import run_script

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE instrument_issuers (
    instrument text NOT NULL REFERENCES instruments (code),
    participant_id bigint NOT NULL REFERENCES participants (id),
    granted_by text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, participant_id)
);
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script("DROP TABLE instrument_issuers;")
