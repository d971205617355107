"""Foundation: the registry ledger (log, projections, backstops) and participants, keys, instruments.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""


from migrations.script import run_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LEDGER = """
CREATE TABLE ledger_head (
    id smallint PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL CHECK (seq >= 0),
    hash bytea NOT NULL CHECK (length(hash) = 32),
    ts bigint NOT NULL
);
INSERT INTO ledger_head VALUES (1, 0, decode(repeat('00', 32), 'hex'), 0);

-- The log: the source of truth. Insert-only (trigger below).
CREATE TABLE ledger_entries (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    ts bigint NOT NULL,
    type text NOT NULL,
    actor text NOT NULL,
    client_id text,
    fingerprint bytea,
    leaf bytea NOT NULL,
    hash bytea NOT NULL CHECK (length(hash) = 32),
    meta bytea NOT NULL
);
-- Idempotency is enforced here, not only in code.
CREATE UNIQUE INDEX ledger_entries_client_id ON ledger_entries (actor, client_id) WHERE client_id IS NOT NULL;

CREATE TABLE ledger_instruments (
    code text PRIMARY KEY,
    kind text NOT NULL,
    decimals integer NOT NULL CHECK (decimals BETWEEN 0 AND 6),
    next_serial bigint NOT NULL CHECK (next_serial >= 1)
);

CREATE TABLE ledger_accounts (
    id bigint PRIMARY KEY,
    owner text NOT NULL,
    kind text NOT NULL
);
CREATE INDEX ledger_accounts_owner ON ledger_accounts (owner);

CREATE TABLE ledger_balances (
    account bigint NOT NULL REFERENCES ledger_accounts (id),
    instrument text NOT NULL REFERENCES ledger_instruments (code),
    posted bigint NOT NULL,
    pending_out bigint NOT NULL CHECK (pending_out >= 0),
    pending_in bigint NOT NULL CHECK (pending_in >= 0),
    may_go_negative boolean NOT NULL,
    is_sink boolean NOT NULL,
    PRIMARY KEY (account, instrument),
    -- No holder account may ever be overdrawn: available = posted - pending_out >= 0.
    CONSTRAINT no_overdraft CHECK (may_go_negative OR posted - pending_out >= 0)
);

CREATE TABLE ledger_batches (
    id bigint PRIMARY KEY,
    instrument text NOT NULL REFERENCES ledger_instruments (code),
    start_serial bigint NOT NULL,
    end_serial bigint NOT NULL,
    account bigint NOT NULL,
    reference text NOT NULL,
    CHECK (start_serial >= 1 AND start_serial <= end_serial)
);
CREATE UNIQUE INDEX ledger_batches_reference ON ledger_batches (reference);

CREATE TABLE ledger_blocks (
    instrument text NOT NULL,
    start_serial bigint NOT NULL,
    end_serial bigint NOT NULL,
    batch bigint NOT NULL REFERENCES ledger_batches (id),
    account bigint NOT NULL REFERENCES ledger_accounts (id),
    hold bigint,
    retired_seq bigint,
    frozen_by bigint,
    PRIMARY KEY (instrument, start_serial),
    CHECK (start_serial <= end_serial),
    CHECK (retired_seq IS NULL OR (hold IS NULL AND frozen_by IS NULL))
);
CREATE INDEX ledger_blocks_account ON ledger_blocks (account, instrument);
CREATE INDEX ledger_blocks_hold ON ledger_blocks (hold) WHERE hold IS NOT NULL;
CREATE INDEX ledger_blocks_frozen ON ledger_blocks (frozen_by) WHERE frozen_by IS NOT NULL;

CREATE TABLE ledger_holds (
    id bigint PRIMARY KEY,
    kind text NOT NULL,
    debit bigint NOT NULL,
    credit bigint NOT NULL,
    instrument text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    expires_at bigint,
    state text NOT NULL CHECK (state IN ('pending', 'posted', 'voided', 'expired')),
    posted_amount bigint NOT NULL CHECK (posted_amount >= 0 AND posted_amount <= amount),
    resolved_seq bigint
);
CREATE INDEX ledger_holds_pending_expiry ON ledger_holds (expires_at) WHERE state = 'pending';

-- One row per resolution; the primary key makes a second resolution of a hold impossible.
CREATE TABLE ledger_hold_resolutions (
    hold bigint PRIMARY KEY REFERENCES ledger_holds (id),
    seq bigint NOT NULL,
    state text NOT NULL CHECK (state IN ('posted', 'voided', 'expired')),
    amount bigint NOT NULL
);

CREATE FUNCTION envx_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'envx: % is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION envx_append_only();
CREATE TRIGGER ledger_hold_resolutions_append_only BEFORE UPDATE OR DELETE ON ledger_hold_resolutions
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();
CREATE TRIGGER ledger_hold_resolutions_no_truncate BEFORE TRUNCATE ON ledger_hold_resolutions
    FOR EACH STATEMENT EXECUTE FUNCTION envx_append_only();

-- Retired units are final: the sink's balance never decreases and retired blocks never change.
CREATE FUNCTION envx_sink_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.is_sink AND NEW.posted < OLD.posted THEN
        RAISE EXCEPTION 'envx: debit from the retired sink refused' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_balances_sink_final BEFORE UPDATE ON ledger_balances
    FOR EACH ROW EXECUTE FUNCTION envx_sink_final();

CREATE FUNCTION envx_retired_blocks_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.retired_seq IS NOT NULL THEN
        RAISE EXCEPTION 'envx: retired serial block %-% of % is final', OLD.start_serial, OLD.end_serial,
            OLD.instrument USING ERRCODE = 'check_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER ledger_blocks_retired_final BEFORE UPDATE OR DELETE ON ledger_blocks
    FOR EACH ROW EXECUTE FUNCTION envx_retired_blocks_final();
"""

EXCHANGE = """
CREATE TABLE participants (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('operator', 'issuer', 'enterprise', 'bank', 'court', 'auditor')),
    uscc text UNIQUE,
    holding_account bigint REFERENCES ledger_accounts (id),
    cash_account bigint REFERENCES ledger_accounts (id),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    client_id text,
    fingerprint bytea
);
CREATE UNIQUE INDEX participants_client_id ON participants (created_by, client_id) WHERE client_id IS NOT NULL;

CREATE TABLE api_keys (
    id bigserial PRIMARY KEY,
    participant_id bigint NOT NULL REFERENCES participants (id),
    prefix text NOT NULL UNIQUE,
    secret_hash bytea NOT NULL,
    label text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX api_keys_participant ON api_keys (participant_id);

CREATE TABLE system_accounts (
    name text PRIMARY KEY,
    account bigint NOT NULL REFERENCES ledger_accounts (id)
);

CREATE TABLE instruments (
    code text PRIMARY KEY REFERENCES ledger_instruments (code),
    name text NOT NULL,
    kind text NOT NULL,
    decimals integer NOT NULL,
    unit text NOT NULL,
    attributes jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    client_id text,
    fingerprint bytea
);
CREATE UNIQUE INDEX instruments_client_id ON instruments (created_by, client_id) WHERE client_id IS NOT NULL;

CREATE TABLE issuance_requests (
    id bigserial PRIMARY KEY,
    instrument text NOT NULL REFERENCES instruments (code),
    issuer_id bigint NOT NULL REFERENCES participants (id),
    holder_id bigint NOT NULL REFERENCES participants (id),
    quantity bigint NOT NULL CHECK (quantity > 0),
    project text,
    vintage text,
    attributes jsonb NOT NULL DEFAULT '{}'::jsonb,
    origin_registry text,
    origin_serial text,
    flags jsonb NOT NULL DEFAULT '[]'::jsonb,
    status text NOT NULL DEFAULT 'requested' CHECK (status IN ('requested', 'approved', 'rejected')),
    requested_by text NOT NULL,
    decided_by text,
    decision_note text,
    batch_id bigint REFERENCES ledger_batches (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    decided_at timestamptz,
    client_id text,
    fingerprint bytea,
    -- maker-checker: whoever requested may not approve.
    CHECK (decided_by IS NULL OR decided_by <> requested_by)
);
CREATE UNIQUE INDEX issuance_requests_client_id ON issuance_requests (requested_by, client_id)
    WHERE client_id IS NOT NULL;
-- An import from another registry is taken once per (origin registry, origin serial range).
CREATE UNIQUE INDEX issuance_requests_origin ON issuance_requests (origin_registry, origin_serial)
    WHERE origin_registry IS NOT NULL AND status <> 'rejected';
"""


def upgrade() -> None:
    run_script(LEDGER)
    run_script(EXCHANGE)


def downgrade() -> None:
    run_script(
        "DROP TABLE issuance_requests, instruments, system_accounts, api_keys, participants, "
        "ledger_hold_resolutions, ledger_holds, ledger_blocks, ledger_batches, ledger_balances, "
        "ledger_accounts, ledger_instruments, ledger_entries, ledger_head CASCADE;"
        "DROP FUNCTION envx_append_only, envx_sink_final, envx_retired_blocks_final;"
    )
