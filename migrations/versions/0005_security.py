"""Security: signed instructions (participant Ed25519 keys, replay-proof record), maker-checker operator
actions, and the hash-chained audit trail of administrative actions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from migrations.script import run_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SQL = """
-- Operators may require every mutation of a participant to carry a signed instruction.
ALTER TABLE participants ADD COLUMN require_signatures boolean NOT NULL DEFAULT false;

-- Ed25519 public keys a participant signs instructions with (raw 32 bytes).
CREATE TABLE participant_signing_keys (
    id bigserial PRIMARY KEY,
    participant_id bigint NOT NULL REFERENCES participants (id),
    public_key bytea NOT NULL CHECK (length(public_key) = 32),
    label text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    revoked_at timestamptz,
    revoked_by text
);
CREATE INDEX participant_signing_keys_participant ON participant_signing_keys (participant_id);
CREATE UNIQUE INDEX participant_signing_keys_live ON participant_signing_keys (participant_id, public_key)
    WHERE revoked_at IS NULL;

-- Every verified signed instruction, kept whole (body included) so the signature can be checked again
-- later: non-repudiation. The unique nonce per key is what refuses a replay. Insert-only.
CREATE TABLE signed_instructions (
    id bigserial PRIMARY KEY,
    signing_key_id bigint NOT NULL REFERENCES participant_signing_keys (id),
    participant_id bigint NOT NULL REFERENCES participants (id),
    api_key_id bigint NOT NULL,
    nonce text NOT NULL,
    signed_ts bigint NOT NULL,
    method text NOT NULL,
    target text NOT NULL,
    body bytea NOT NULL,
    body_sha256 bytea NOT NULL CHECK (length(body_sha256) = 32),
    signature bytea NOT NULL CHECK (length(signature) = 64),
    operation text,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (signing_key_id, nonce)
);
CREATE TRIGGER signed_instructions_append_only BEFORE UPDATE OR DELETE ON signed_instructions
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();
CREATE TRIGGER signed_instructions_no_truncate BEFORE TRUNCATE ON signed_instructions
    FOR EACH STATEMENT EXECUTE FUNCTION envx_append_only();

-- Maker-checker: an operator proposes (deposit, withdrawal, instrument, market), another approves.
CREATE TABLE operator_actions (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    payload jsonb NOT NULL,
    summary text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'executed', 'rejected', 'failed')),
    proposed_by text NOT NULL,
    client_id text NOT NULL,
    fingerprint bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    decided_by text,
    decided_at timestamptz,
    decision_note text,
    result jsonb,
    error jsonb,
    -- The proposer may withdraw (reject) their own proposal, never execute it.
    CHECK (status IN ('pending', 'rejected') OR decided_by <> proposed_by)
);
CREATE UNIQUE INDEX operator_actions_client_id ON operator_actions (proposed_by, client_id);
CREATE INDEX operator_actions_pending ON operator_actions (id) WHERE status = 'pending';

-- Audit trail of administrative actions: each row's hash covers the previous row's hash, so an edit,
-- deletion or reordering anywhere breaks the chain from there on (exchange/security/audit.py verifies). Insert-only.
CREATE TABLE audit_log (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    ts bigint NOT NULL,
    actor text,
    participant_kind text,
    api_key_id bigint,
    operation text NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    client_ip text,
    forwarded_for text,
    status integer NOT NULL,
    outcome text NOT NULL,
    detail text NOT NULL,
    prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash bytea NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_operation ON audit_log (operation, seq);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION envx_append_only();
"""


def upgrade() -> None:
    run_script(SQL)


def downgrade() -> None:
    run_script(
        "DROP TABLE audit_log, operator_actions, signed_instructions, participant_signing_keys CASCADE;"
        "ALTER TABLE participants DROP COLUMN require_signatures;"
    )
