"""Trading calendars: public holidays and make-up working days (调休) as data, per market.

`calendars` names a calendar (e.g. CN, the State Council's 全国年节及纪念日放假 notices); `calendar_days`
holds its declared days -- `holiday` (a weekday or weekend day off) or `workday` (a weekend day declared a
working day) -- each with its name and source; `calendar_changes` records every change (who proposed and
approved it, under which client id: a retry replays). `market_calendars` says which calendar a market
follows and whether it trades on make-up working days (exchange markets do not: SSE/SZSE practice).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from alembic import op  # noqa: F401

from migrations.script import run_script

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE calendars (
    id text PRIMARY KEY CHECK (id ~ '^[A-Z][A-Z0-9-]{0,31}$'),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    note text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE calendar_days (
    calendar_id text NOT NULL REFERENCES calendars (id),
    day date NOT NULL,
    kind text NOT NULL CHECK (kind IN ('holiday', 'workday')),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    source text NOT NULL CHECK (length(source) BETWEEN 1 AND 500),
    PRIMARY KEY (calendar_id, day),
    -- A make-up working day is a weekend day (ISO 6 = Saturday, 7 = Sunday): a weekday works anyway.
    CHECK (kind = 'holiday' OR extract(isodow FROM day) IN (6, 7))
);
CREATE TABLE calendar_changes (
    id bigserial PRIMARY KEY,
    calendar_id text REFERENCES calendars (id),  -- NULL: a market assigned to no calendar
    market_id text REFERENCES markets (id),
    change jsonb NOT NULL,
    actor text NOT NULL,
    client_id text NOT NULL,
    fingerprint bytea NOT NULL,
    operator_action jsonb,
    at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (actor, client_id)
);
CREATE TABLE market_calendars (
    market_id text PRIMARY KEY REFERENCES markets (id),
    calendar_id text REFERENCES calendars (id),  -- NULL: weekdays only (with the market's own holidays)
    trades_on_makeup_days boolean NOT NULL DEFAULT false
);
"""

DOWNGRADE = """
DROP TABLE market_calendars;
DROP TABLE calendar_changes;
DROP TABLE calendar_days;
DROP TABLE calendars;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
