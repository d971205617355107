"""The request edge: stored answers for exact idempotent replays, counters of anonymous refusals of
administrative operations, and the rendered PDF of each restoration certificate.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25
"""

from migrations.script import run_script

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SQL = """
-- The exact answer (status, media type, bytes) of each successful keyed mutation, by request: a retry
-- of the same request (same actor, idempotency key, method, target and body) gets these bytes back.
CREATE TABLE answers_by_request (
    actor text NOT NULL,
    client_id text NOT NULL,
    request_sha256 bytea NOT NULL CHECK (length(request_sha256) = 32),
    status smallint NOT NULL CHECK (status BETWEEN 200 AND 299),
    media_type text NOT NULL,
    body bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor, client_id, request_sha256)
);

-- Administrative requests without a valid key: counted per client address and minute here; the first
-- of each minute also gets a (hash-chained, body-less) row in audit_log, whose seq is kept.
CREATE TABLE audit_anonymous_refusals (
    client_ip text NOT NULL,
    minute timestamptz NOT NULL,
    refusals bigint NOT NULL CHECK (refusals > 0),
    first_seq bigint,
    last_operation text NOT NULL,
    last_at timestamptz NOT NULL,
    PRIMARY KEY (client_ip, minute)
);

-- A certificate never changes once issued (a further retirement issues a new one with a new code), so
-- its PDF is rendered once and these bytes are served.
CREATE TABLE restoration_certificate_pdfs (
    code text PRIMARY KEY REFERENCES restoration_certificates (code),
    pdf bytea NOT NULL,
    rendered_at timestamptz NOT NULL DEFAULT now()
);
"""


def upgrade() -> None:
    run_script(SQL)


def downgrade() -> None:
    run_script("DROP TABLE restoration_certificate_pdfs, audit_anonymous_refusals, answers_by_request;")
