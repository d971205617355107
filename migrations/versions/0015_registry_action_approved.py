"""Operator actions: an `approved` state between the decision and the execution.

An approval decides under the action's row lock and commits (`approved`, with who decided), then runs the
service function with no lock held, under the action's derived client id, and records the outcome
(`executed` or `failed`) in a second transaction. An action left `approved` (a crash, an outage between the
two) is completed by approving it again: the execution replays under the same client id.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from alembic import op  # noqa: F401

from migrations.script import run_script

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE operator_actions DROP CONSTRAINT operator_actions_status_check;
ALTER TABLE operator_actions ADD CONSTRAINT operator_actions_status_check
    CHECK (status IN ('pending', 'approved', 'executed', 'rejected', 'failed'));
-- Every state after `pending` names who decided it.
ALTER TABLE operator_actions ADD CONSTRAINT operator_actions_decided
    CHECK (status = 'pending' OR decided_by IS NOT NULL);
"""

DOWNGRADE = """
ALTER TABLE operator_actions DROP CONSTRAINT operator_actions_decided;
ALTER TABLE operator_actions DROP CONSTRAINT operator_actions_status_check;
ALTER TABLE operator_actions ADD CONSTRAINT operator_actions_status_check
    CHECK (status IN ('pending', 'executed', 'rejected', 'failed'));
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
