"""Witness cosignatures of published checkpoints (C2SP tlog-cosignature), as the witnesses returned them.

- ledger_cosignatures: one row per (checkpoint size, witness key): the witness's signature line and its
  timestamp. Append-only, like the checkpoints they cosign.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from alembic import op  # noqa: F401

from migrations.script import run_script

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE ledger_cosignatures (
    size bigint NOT NULL REFERENCES ledger_checkpoints (size),
    witness text NOT NULL,  -- the witness's C2SP verifier key (name+keyid+base64(0x04 || public key))
    ts bigint NOT NULL CHECK (ts >= 0),  -- the cosignature's POSIX timestamp
    line text NOT NULL,  -- the signature line, as served after the checkpoint's own signatures
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (size, witness)
);
CREATE INDEX ledger_cosignatures_witness ON ledger_cosignatures (witness, size DESC);
CREATE TRIGGER ledger_cosignatures_append_only BEFORE UPDATE OR DELETE ON ledger_cosignatures
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();
CREATE TRIGGER ledger_cosignatures_no_truncate BEFORE TRUNCATE ON ledger_cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION envx_append_only();
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script("DROP TABLE ledger_cosignatures;")
