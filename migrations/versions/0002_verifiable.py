"""Verifiable ledger: Merkle tree tiles, signed checkpoints and the log's signing keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from migrations.script import run_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

VERIFIABLE = """
-- RFC 9162 Merkle tree over ledger_entries.leaf (leaf index = seq - 1), stored as C2SP tlog tiles:
-- tile (level, idx) holds `width` consecutive hashes of tree level 8*level. Written by the ledger
-- writer in the same transaction as the entries it covers (ledger/tree_store.py).
CREATE TABLE ledger_tiles (
    level integer NOT NULL CHECK (level BETWEEN 0 AND 63),
    idx bigint NOT NULL CHECK (idx >= 0),
    width integer NOT NULL CHECK (width BETWEEN 1 AND 256),
    hashes bytea NOT NULL,
    PRIMARY KEY (level, idx),
    CHECK (length(hashes) = width * 32)
);

-- Tiles only grow by appending hashes; a full tile (256 hashes) never changes again.
CREATE FUNCTION envx_tiles_grow_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.width = 256 OR NEW.level <> OLD.level OR NEW.idx <> OLD.idx
       OR NEW.width < OLD.width OR substring(NEW.hashes FROM 1 FOR length(OLD.hashes)) <> OLD.hashes THEN
        RAISE EXCEPTION 'envx: Merkle tile (%, %) may only grow by appending', OLD.level, OLD.idx
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_tiles_grow_only BEFORE UPDATE OR DELETE ON ledger_tiles
    FOR EACH ROW EXECUTE FUNCTION envx_tiles_grow_only();
CREATE TRIGGER ledger_tiles_no_truncate BEFORE TRUNCATE ON ledger_tiles
    FOR EACH STATEMENT EXECUTE FUNCTION envx_append_only();

-- Signed tree heads (C2SP tlog-checkpoint notes), published only after the entries are durable.
CREATE TABLE ledger_checkpoints (
    size bigint PRIMARY KEY CHECK (size > 0),
    root bytea NOT NULL CHECK (length(root) = 32),
    note text NOT NULL,
    key_id text NOT NULL,  -- hex key id of the signature, as in the note
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER ledger_checkpoints_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();
CREATE TRIGGER ledger_checkpoints_no_truncate BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION envx_append_only();

-- Projection of the log's key.register entries: every checkpoint key ever used stays published.
CREATE TABLE ledger_signing_keys (
    seq bigint PRIMARY KEY REFERENCES ledger_entries (seq),
    name text NOT NULL,
    key_id text NOT NULL,
    verifier_key text NOT NULL UNIQUE,
    UNIQUE (name, key_id)
);
CREATE TRIGGER ledger_signing_keys_append_only BEFORE UPDATE OR DELETE ON ledger_signing_keys
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();
"""


def upgrade() -> None:
    run_script(VERIFIABLE)


def downgrade() -> None:
    run_script(
        "DROP TABLE ledger_signing_keys, ledger_checkpoints, ledger_tiles CASCADE;"
        "DROP FUNCTION envx_tiles_grow_only;"
    )
