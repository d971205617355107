"""Pledge enforcement: the secured scope as the contract states it, the declared default, and freezes
that rank behind a pledge (their units may leave for the pledgee's sale, their share of the surplus
is paid to the court; a partial deduction keeps the rest frozen).

- pledges.secured_scope: {type: ordinary|maximum, covers: [...], caps: {...}} (NULL: 民法典 §389's
  default, everything covered);
- pledges.declared_default: the bank's declaration of the loan's default (reference, notice date);
- freezes.hold_id may be NULL and quantity 0: a freeze whose units all went to a pledgee's sale stays
  in force over the surplus until the court lifts it or its term ends;
- freezes.proceeds_received: what pledge enforcements paid the court for the frozen units' surplus.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25
"""

from alembic import op  # noqa: F401

from migrations.script import run_script

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE pledges ADD COLUMN secured_scope jsonb, ADD COLUMN declared_default jsonb;
ALTER TABLE freezes ALTER COLUMN hold_id DROP NOT NULL;
ALTER TABLE freezes DROP CONSTRAINT freezes_quantity_check;
ALTER TABLE freezes ADD CONSTRAINT freezes_quantity_check CHECK (quantity >= 0);
ALTER TABLE freezes ADD CONSTRAINT freezes_units_hold CHECK (status <> 'active' OR (hold_id IS NULL) = (quantity = 0));
ALTER TABLE freezes ADD COLUMN proceeds_received bigint NOT NULL DEFAULT 0 CHECK (proceeds_received >= 0);
-- Enforcement sales are orders with purpose {"enforcement": {"pledge_id": ...}}: found by pledge.
CREATE INDEX orders_enforcement ON orders (((purpose -> 'enforcement' ->> 'pledge_id')::bigint))
    WHERE purpose ? 'enforcement';
"""

DOWNGRADE = """
DROP INDEX IF EXISTS orders_enforcement;
ALTER TABLE freezes DROP COLUMN proceeds_received;
ALTER TABLE freezes DROP CONSTRAINT freezes_units_hold;
ALTER TABLE freezes DROP CONSTRAINT freezes_quantity_check;
ALTER TABLE freezes ADD CONSTRAINT freezes_quantity_check CHECK (quantity > 0) NOT VALID;
ALTER TABLE freezes ALTER COLUMN hold_id SET NOT NULL;
ALTER TABLE pledges DROP COLUMN declared_default, DROP COLUMN secured_scope;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
