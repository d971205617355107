"""Dead-man switches: cancel all of a participant's orders (in one market or every market) unless renewed.

One row per (participant, scope): `deadline` is when the switch fires unless renewed (NULL: disarmed);
`firing_since` marks a firing claimed and not yet finished (finished at the next start if the process
stopped in between); `last_fired_at` and `last_fired_cancelled` say what the last firing did.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01
"""

from alembic import op  # noqa: F401

from migrations.script import run_script

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE dead_man_switches (
    participant_id bigint NOT NULL REFERENCES participants (id),
    scope text NOT NULL CHECK (scope = '*' OR length(scope) BETWEEN 1 AND 64),  -- a market id, or '*': every market
    timeout_ms bigint CHECK (timeout_ms > 0),
    deadline timestamptz,
    renewed_at timestamptz,
    client_id text,
    firing_since timestamptz,
    last_fired_at timestamptz,
    last_fired_cancelled integer CHECK (last_fired_cancelled >= 0),
    PRIMARY KEY (participant_id, scope),
    CHECK ((deadline IS NULL) = (timeout_ms IS NULL))
);
CREATE INDEX dead_man_switches_due ON dead_man_switches (deadline) WHERE deadline IS NOT NULL;
"""

DOWNGRADE = """
DROP TABLE dead_man_switches;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
