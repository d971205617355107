"""Pledges and freezes: registrations, their event logs, ranked claims, valuations, webhooks, freezes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from migrations.script import run_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SQL = """
-- One sequence orders every registration in time (pledge locks and ranked claims): priority is
-- computed from it, never stored as a rank (pledges/priority.py).
CREATE SEQUENCE registration_no_seq;

-- Pledged units wait in an escrow account of the pledgee (one per bank), as the credit side of the
-- pledge hold: enforcement posts the hold into it and passes the units on in the same linked group.
CREATE TABLE pledge_escrow_accounts (
    bank_id bigint PRIMARY KEY REFERENCES participants (id),
    account bigint NOT NULL UNIQUE REFERENCES ledger_accounts (id)
);

-- Default haircut per instrument (a pledge may set its own).
CREATE TABLE pledge_haircuts (
    instrument text PRIMARY KEY REFERENCES instruments (code),
    haircut_bps integer NOT NULL CHECK (haircut_bps BETWEEN 0 AND 9999),
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The current state of each registration: a projection of pledge_events kept in the same transaction.
CREATE TABLE pledges (
    id bigserial PRIMARY KEY,
    number text NOT NULL UNIQUE,
    pledgee_id bigint NOT NULL REFERENCES participants (id),
    pledgor_id bigint NOT NULL REFERENCES participants (id),
    instrument text NOT NULL REFERENCES instruments (code),
    quantity bigint NOT NULL CHECK (quantity > 0),
    requested_serials jsonb,
    serials jsonb NOT NULL DEFAULT '[]'::jsonb,
    loan_contract text NOT NULL,
    secured_amount bigint NOT NULL CHECK (secured_amount > 0),
    term_start date NOT NULL,
    term_end date NOT NULL,
    grace_days integer NOT NULL DEFAULT 0 CHECK (grace_days BETWEEN 0 AND 366),
    expires_at timestamptz NOT NULL,
    haircut_bps integer CHECK (haircut_bps BETWEEN 0 AND 9999),
    warning_bps integer NOT NULL,
    margin_call_bps integer NOT NULL,
    liquidation_bps integer NOT NULL,
    transfer_on_default boolean NOT NULL DEFAULT false,
    status text NOT NULL CHECK (status IN ('filed', 'active', 'enforcing', 'enforced', 'released', 'expired',
                                           'declined', 'withdrawn')),
    registration_no bigint UNIQUE,
    registered_at timestamptz,
    hold_id bigint,
    version integer NOT NULL DEFAULT 0,
    margin_level text NOT NULL DEFAULT 'ok' CHECK (margin_level IN ('ok', 'warning', 'margin_call', 'liquidation')),
    cure_deadline timestamptz,
    last_price bigint,
    last_value bigint,
    last_ratio_bps bigint,
    last_valued_on date,
    deadline_warned date,
    enforcement jsonb,
    promoted_from_claim bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (term_end >= term_start),
    CHECK (warning_bps >= margin_call_bps AND margin_call_bps >= liquidation_bps AND liquidation_bps > 0),
    CHECK (status NOT IN ('active', 'enforcing') OR (hold_id IS NOT NULL AND registration_no IS NOT NULL))
);
CREATE INDEX pledges_pledgee ON pledges (pledgee_id, id);
CREATE INDEX pledges_pledgor ON pledges (pledgor_id, id);
CREATE INDEX pledges_live_instrument ON pledges (instrument) WHERE status IN ('active', 'enforcing');
CREATE INDEX pledges_expiry ON pledges (expires_at) WHERE status IN ('active', 'enforcing');
CREATE UNIQUE INDEX pledges_hold ON pledges (hold_id) WHERE hold_id IS NOT NULL;

-- External references (中登网 登记证明编号, a bank's own number): unique per source registry.
CREATE TABLE pledge_references (
    source text NOT NULL,
    reference text NOT NULL,
    pledge_id bigint NOT NULL REFERENCES pledges (id),
    PRIMARY KEY (source, reference)
);
CREATE INDEX pledge_references_pledge ON pledge_references (pledge_id);

-- Ranked claims on a pledged lot (second-ranking registrations): paid after the pledgee in the
-- waterfall, promoted to the lock when the senior pledge is released.
CREATE TABLE pledge_claims (
    id bigserial PRIMARY KEY,
    pledge_id bigint NOT NULL REFERENCES pledges (id),
    claimant_id bigint NOT NULL REFERENCES participants (id),
    loan_contract text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    term_end date NOT NULL,
    reference text,
    status text NOT NULL CHECK (status IN ('filed', 'registered', 'released', 'paid', 'promoted', 'lapsed')),
    registration_no bigint UNIQUE,
    registered_at timestamptz,
    paid bigint NOT NULL DEFAULT 0 CHECK (paid >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pledge_claims_pledge ON pledge_claims (pledge_id);
CREATE INDEX pledge_claims_claimant ON pledge_claims (claimant_id);

-- Every event of every registration, in order; the source of its state and history. Insert-only.
CREATE TABLE pledge_events (
    id bigserial PRIMARY KEY,
    pledge_id bigint NOT NULL REFERENCES pledges (id),
    type text NOT NULL,
    data jsonb NOT NULL,
    ledger_seqs bigint[] NOT NULL DEFAULT '{}',
    actor text NOT NULL,
    client_id text,
    fingerprint bytea,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pledge_events_pledge ON pledge_events (pledge_id, id);
-- Idempotency of every pledge mutation, enforced here and not only in code.
CREATE UNIQUE INDEX pledge_events_client_id ON pledge_events (actor, client_id) WHERE client_id IS NOT NULL;
CREATE TRIGGER pledge_events_append_only BEFORE UPDATE OR DELETE ON pledge_events
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();

-- Daily marks used for valuation (the close the exchange publishes, or the operator's) and each
-- pledge's valuation on that day: the primary keys make a repeated revaluation a no-op.
CREATE TABLE pledge_marks (
    instrument text NOT NULL REFERENCES instruments (code),
    as_of date NOT NULL,
    price bigint NOT NULL CHECK (price > 0),
    recorded_by text NOT NULL,
    client_id text,
    fingerprint bytea,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, as_of)
);
CREATE UNIQUE INDEX pledge_marks_client_id ON pledge_marks (recorded_by, client_id) WHERE client_id IS NOT NULL;

CREATE TABLE pledge_valuations (
    pledge_id bigint NOT NULL REFERENCES pledges (id),
    as_of date NOT NULL,
    price bigint NOT NULL,
    quantity bigint NOT NULL,
    haircut_bps integer NOT NULL,
    value bigint NOT NULL,
    ratio_bps bigint NOT NULL,
    level text NOT NULL,
    PRIMARY KEY (pledge_id, as_of)
);

-- Webhook endpoints of banks and the outbox of deliveries (written with the event, sent after commit).
CREATE TABLE pledge_webhooks (
    participant_id bigint PRIMARY KEY REFERENCES participants (id),
    url text NOT NULL,
    secret bytea NOT NULL,
    updated_by text NOT NULL,
    client_id text,
    fingerprint bytea,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pledge_outbox (
    id bigserial PRIMARY KEY,
    event_id bigint NOT NULL REFERENCES pledge_events (id),
    event_type text NOT NULL,
    participant_id bigint NOT NULL REFERENCES participants (id),
    body bytea NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    last_error text,
    UNIQUE (event_id, participant_id)
);
CREATE INDEX pledge_outbox_due ON pledge_outbox (next_attempt_at) WHERE status = 'pending';

-- Judicial freezes (司法冻结). A renewal (续冻) is a new row naming its predecessor; `root_id` and
-- `freeze_no` carry the original's identity and place in time through the chain.
CREATE TABLE freezes (
    id bigserial PRIMARY KEY,
    court_id bigint NOT NULL REFERENCES participants (id),
    holder_id bigint NOT NULL REFERENCES participants (id),
    instrument text NOT NULL REFERENCES instruments (code),
    quantity bigint NOT NULL CHECK (quantity > 0),
    requested_serials jsonb,
    serials jsonb NOT NULL DEFAULT '[]'::jsonb,
    case_number text NOT NULL,
    notice_number text NOT NULL,
    term_start date NOT NULL,
    term_end date NOT NULL,
    expires_at timestamptz NOT NULL,
    deduct_to_id bigint REFERENCES participants (id),
    status text NOT NULL CHECK (status IN ('active', 'renewed', 'deducted', 'unfrozen', 'expired')),
    hold_id bigint NOT NULL UNIQUE,
    predecessor_id bigint UNIQUE REFERENCES freezes (id),
    root_id bigint REFERENCES freezes (id),
    freeze_no bigint NOT NULL,
    deducted_quantity bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    CHECK (term_end >= term_start)
);
CREATE UNIQUE INDEX freezes_notice ON freezes (court_id, notice_number);
CREATE INDEX freezes_holder ON freezes (holder_id, id);
CREATE INDEX freezes_court ON freezes (court_id, id);
CREATE INDEX freezes_expiry ON freezes (expires_at) WHERE status = 'active';

CREATE TABLE freeze_events (
    id bigserial PRIMARY KEY,
    freeze_id bigint NOT NULL REFERENCES freezes (id),
    type text NOT NULL,
    data jsonb NOT NULL,
    ledger_seqs bigint[] NOT NULL DEFAULT '{}',
    actor text NOT NULL,
    client_id text,
    fingerprint bytea,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX freeze_events_freeze ON freeze_events (freeze_id, id);
CREATE UNIQUE INDEX freeze_events_client_id ON freeze_events (actor, client_id) WHERE client_id IS NOT NULL;
CREATE TRIGGER freeze_events_append_only BEFORE UPDATE OR DELETE ON freeze_events
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();

-- Public inquiry by name or credit code (prefix/contains search on names).
CREATE INDEX participants_name ON participants (name);
"""


def upgrade() -> None:
    run_script(SQL)


def downgrade() -> None:
    run_script(
        "DROP INDEX IF EXISTS participants_name;"
        "DROP TABLE freeze_events, freezes, pledge_outbox, pledge_webhooks, pledge_valuations, pledge_marks, "
        "pledge_events, pledge_claims, pledge_references, pledges, pledge_haircuts, pledge_escrow_accounts CASCADE;"
        "DROP SEQUENCE registration_no_seq;"
    )
