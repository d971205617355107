"""Block negotiations (大宗协议 deals) as their events left them, so that a deal's two parties can still read
it -- its last terms, who confirmed them, how it ended -- once it is no longer open (declined, its quote
withdrawn or used up, the day's end, traded, off a new tick or lot).

One row per deal, moved in the projection transaction of the batch whose events change it
(exchange/trading/journal.py `project_deals`): `status` is `open` or the engine's reason the deal closed
(matching.events); `quoter_id` is the quote's owner, `responder_id` who opened the negotiation. Deals that
ended before this revision have no row.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02
"""

from alembic import op  # noqa: F401

from migrations.script import run_script

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE block_deals (
    market_id text NOT NULL REFERENCES markets (id),
    deal_id bigint NOT NULL,
    quote_id bigint NOT NULL,
    quoter_id bigint NOT NULL,
    responder_id bigint NOT NULL,
    price bigint NOT NULL CHECK (price > 0),
    qty bigint NOT NULL CHECK (qty > 0),
    confirmed bigint[] NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'declined', 'traded', 'end_of_day', 'quote_withdrawn',
                                           'quote_exhausted', 'rules_amended')),
    ended_seq bigint,
    PRIMARY KEY (market_id, deal_id)
);
CREATE INDEX block_deals_quoter ON block_deals (quoter_id);
CREATE INDEX block_deals_responder ON block_deals (responder_id);
"""

DOWNGRADE = "DROP TABLE block_deals;"


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
