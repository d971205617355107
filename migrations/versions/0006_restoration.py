"""Court restoration orders (替代性生态修复): the order, its certificates and deadline reminders.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from alembic import op  # noqa: F401

from migrations.script import run_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SQL = """
CREATE TABLE restoration_orders (
    id bigserial PRIMARY KEY,
    court_id bigint NOT NULL REFERENCES participants (id),
    case_number text NOT NULL,
    case_type text NOT NULL,
    judgment_reference text,
    defendants jsonb NOT NULL,
    payer_id bigint NOT NULL REFERENCES participants (id),
    assessed_loss_kg bigint CHECK (assessed_loss_kg > 0),
    assessment_method text,
    assessing_body text,
    multiplier text,
    required_kg bigint NOT NULL CHECK (required_kg > 0),
    eligible_kinds jsonb NOT NULL,
    designated_seller_id bigint REFERENCES participants (id),
    deadline date NOT NULL,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'fulfilled', 'cancelled')),
    note text,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    client_id text NOT NULL,
    fingerprint bytea NOT NULL,
    UNIQUE (court_id, case_number, payer_id)
);
CREATE UNIQUE INDEX restoration_orders_client_id ON restoration_orders (created_by, client_id);

CREATE TABLE restoration_certificates (
    code text PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES restoration_orders (id),
    retired_kg bigint NOT NULL,
    certificate jsonb NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX restoration_certificates_order ON restoration_certificates (order_id, issued_at);

CREATE TABLE restoration_reminders (
    order_id bigint NOT NULL REFERENCES restoration_orders (id),
    kind text NOT NULL,
    day date NOT NULL,
    message text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, kind, day)
);
"""


def upgrade() -> None:
    run_script(SQL)


def downgrade() -> None:
    run_script("DROP TABLE restoration_reminders, restoration_certificates, restoration_orders CASCADE;")
