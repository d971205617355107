"""Markets follow their calendar: holidays, explicit session overrides, the market's event log, and
amendments of market rules effective from a stated trading day.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from alembic import op  # noqa: F401

from migrations.script import run_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SQL = """
-- Days the market does not trade although they are weekdays (Asia/Shanghai), ISO dates.
ALTER TABLE markets ADD COLUMN holidays jsonb NOT NULL DEFAULT '[]';
-- An operator's open outside the market's hours lasts until this moment (the next scheduled
-- transition of that day, or its end); NULL: no override in force.
ALTER TABLE markets ADD COLUMN override_until timestamptz;
ALTER TABLE markets ADD COLUMN override_reason text;

-- What happened to a market's session and rules, in order: opens, pauses, closes (scheduled or by an
-- operator, overrides with their reason and end), amendments scheduled and taking effect. Insert-only.
CREATE TABLE market_events (
    id bigserial PRIMARY KEY,
    market_id text NOT NULL REFERENCES markets (id),
    at timestamptz NOT NULL,
    kind text NOT NULL CHECK (kind IN ('open', 'pause', 'close', 'amendment_scheduled', 'amendment_effective')),
    trading_day date,
    actor text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX market_events_market ON market_events (market_id, id);
CREATE TRIGGER market_events_append_only BEFORE UPDATE OR DELETE ON market_events
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();

-- A change of a market's rules from a trading day on (maker-checker: operator action amendMarket).
-- `settings` holds the changed settings only, in the units of a market definition; the rules in
-- force on a day are the market's rules with every amendment effective by then applied in date order.
CREATE TABLE market_amendments (
    id bigserial PRIMARY KEY,
    market_id text NOT NULL REFERENCES markets (id),
    effective_from date NOT NULL,
    settings jsonb NOT NULL,
    created_by text NOT NULL,
    client_id text NOT NULL,
    fingerprint bytea NOT NULL,
    operator_action jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    applied_at timestamptz,
    UNIQUE (market_id, effective_from),
    UNIQUE (created_by, client_id)
);
"""


def upgrade() -> None:
    run_script(SQL)


def downgrade() -> None:
    run_script("""DROP TABLE market_amendments, market_events;
                  ALTER TABLE markets DROP COLUMN override_reason, DROP COLUMN override_until, DROP COLUMN holidays;""")
