"""Markets: per-instrument trading rules, the sequencer journal and snapshots, orders, trades, closes, job claims.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op  # noqa: F401

from migrations.script import run_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SQL = """
CREATE TABLE markets (
    id text PRIMARY KEY,
    instrument text NOT NULL REFERENCES instruments (code),
    mode text NOT NULL CHECK (mode IN ('continuous', 'listing', 'block', 'auction')),
    rules jsonb NOT NULL,
    sessions jsonb NOT NULL,
    fee_bps integer NOT NULL CHECK (fee_bps BETWEEN 0 AND 1000),
    t_plus_1 boolean NOT NULL,
    in_close boolean NOT NULL,
    reference_price bigint CHECK (reference_price > 0),
    halted boolean NOT NULL DEFAULT false,
    session_open boolean NOT NULL DEFAULT false,
    trading_day date,
    applied_seq bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    client_id text,
    fingerprint bytea,
    UNIQUE (instrument, mode)
);

-- The sequencer's journal: every command, stamped, before it reaches the engine. Insert-only.
CREATE TABLE market_journal (
    market_id text NOT NULL REFERENCES markets (id),
    seq bigint NOT NULL CHECK (seq > 0),
    ts bigint NOT NULL,
    command jsonb NOT NULL,
    PRIMARY KEY (market_id, seq)
);
CREATE TRIGGER market_journal_append_only BEFORE UPDATE OR DELETE ON market_journal
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();
-- Commands that create no order row (block quotes, responses, counters, confirmations, auction steps)
-- carry their client id in the journal; this index makes each one happen once.
CREATE UNIQUE INDEX market_journal_client ON market_journal ((command->'client'->>'p'), (command->'client'->>'c'))
    WHERE command ? 'client';

CREATE TABLE market_snapshots (
    market_id text NOT NULL REFERENCES markets (id),
    seq bigint NOT NULL,
    state_hash bytea NOT NULL,
    snapshot jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (market_id, seq)
);

CREATE TABLE orders (
    id bigint NOT NULL,
    market_id text NOT NULL REFERENCES markets (id),
    participant_id bigint NOT NULL REFERENCES participants (id),
    kind text NOT NULL CHECK (kind IN ('order', 'listing', 'take', 'auction', 'bid', 'deposit')),
    side text NOT NULL CHECK (side IN ('buy', 'sell')),
    type text NOT NULL,
    tif text NOT NULL,
    price bigint,
    qty bigint NOT NULL CHECK (qty > 0),
    open_qty bigint NOT NULL CHECK (open_qty >= 0),
    filled_qty bigint NOT NULL DEFAULT 0 CHECK (filled_qty >= 0),
    filled_notional bigint NOT NULL DEFAULT 0,
    fees bigint NOT NULL DEFAULT 0,
    status text NOT NULL CHECK (status IN ('open', 'filled', 'cancelled', 'expired', 'rejected')),
    reason text,
    hold_id bigint REFERENCES ledger_holds (id),
    hold_amount bigint NOT NULL,
    purpose jsonb,
    trading_day date NOT NULL,
    client_id text NOT NULL,
    fingerprint bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (market_id, id),
    CHECK (filled_qty <= qty)
);
CREATE UNIQUE INDEX orders_client_id ON orders (participant_id, client_id);
CREATE INDEX orders_open ON orders (market_id, status) WHERE status = 'open';
CREATE INDEX orders_hold ON orders (hold_id);

CREATE TABLE trades (
    market_id text NOT NULL REFERENCES markets (id),
    trade_id bigint NOT NULL,
    seq bigint NOT NULL,
    ts bigint NOT NULL,
    mode text NOT NULL,
    instrument text NOT NULL,
    price bigint NOT NULL CHECK (price > 0),
    qty bigint NOT NULL CHECK (qty > 0),
    notional bigint NOT NULL,
    buy_order bigint NOT NULL,
    sell_order bigint NOT NULL,
    buyer_id bigint NOT NULL,
    seller_id bigint NOT NULL,
    buyer_fee bigint NOT NULL,
    seller_fee bigint NOT NULL,
    in_close boolean NOT NULL,
    trading_day date NOT NULL,
    settlement_seq bigint NOT NULL,
    PRIMARY KEY (market_id, trade_id)
);
CREATE INDEX trades_day ON trades (instrument, trading_day);

CREATE TABLE close_prices (
    instrument text NOT NULL,
    trading_day date NOT NULL,
    price bigint NOT NULL CHECK (price > 0),
    method text NOT NULL,
    volume bigint NOT NULL,
    turnover bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, trading_day)
);

-- Scheduled jobs claim their run here, so two processes never run the same job twice.
CREATE TABLE job_runs (
    job text NOT NULL,
    run_key text NOT NULL,
    claimed_by text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (job, run_key)
);
"""


def upgrade() -> None:
    run_script(SQL)


def downgrade() -> None:
    run_script("DROP TABLE job_runs, close_prices, trades, orders, market_snapshots, market_journal, markets CASCADE;")
