"""Blinded account references (ledger entry version 3, ledger/blinding.py).

`ledger_blinding_key` holds the ledger's blinding key (one row, 32 random bytes made by the writer at its
first start): the salts of a blinded entry are derived from it. `ledger_entry_openings` keeps, privately
beside each blinded entry, the salt and value of every committed field (canonical JSON,
`{"legs": [{field: [salt hex, value]}]}`): the audit unblinds with them and checks that every commitment
binds; a party's receipt carries those of its own fields. Both are append-only, as the log is.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""

from alembic import op  # noqa: F401

from migrations.script import run_script

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE ledger_blinding_key (
    id smallint PRIMARY KEY CHECK (id = 1),
    key bytea NOT NULL CHECK (length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE ledger_entry_openings (
    seq bigint PRIMARY KEY REFERENCES ledger_entries (seq),
    openings bytea NOT NULL
);
CREATE TRIGGER ledger_blinding_key_append_only BEFORE UPDATE OR DELETE ON ledger_blinding_key
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();
CREATE TRIGGER ledger_blinding_key_no_truncate BEFORE TRUNCATE ON ledger_blinding_key
    FOR EACH STATEMENT EXECUTE FUNCTION envx_append_only();
CREATE TRIGGER ledger_entry_openings_append_only BEFORE UPDATE OR DELETE ON ledger_entry_openings
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();
CREATE TRIGGER ledger_entry_openings_no_truncate BEFORE TRUNCATE ON ledger_entry_openings
    FOR EACH STATEMENT EXECUTE FUNCTION envx_append_only();
"""

DOWNGRADE = """
DROP TABLE ledger_entry_openings;
DROP TABLE ledger_blinding_key;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
