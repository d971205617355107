"""The invariant policy through HTTP (exchange/core/refusals.py): a broken invariant stops the ledger writer
(503 `ledger_stopped`, never a 409), `/health` says why, and a market whose settlement meets it stops too.

The bug is a real corrupted projection row (written behind the writer's back, as a faulty migration or
a hand edit would), which the state machine meets as an `InvariantViolation` on the next request."""

from __future__ import annotations

import logging

import asyncpg

from exchange.core.database import asyncpg_dsn
from tests.helpers import Api, ticket


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _sql(api: Api, db_url: str, sql: str, *args: object) -> object:
    async def run() -> object:
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    return api.client.blocking_portal.call(run)


def _world(api: Api) -> tuple[dict, dict]:
    api.instrument("FCT-SM")
    seller, buyer = api.participant("卖方", "enterprise"), api.participant("买方", "enterprise")
    api.issue(api.participant("三明市林业局", "issuer")["api"], seller["id"], "FCT-SM", "100", ticket(1))
    api.ok(api.post("/v1/cash/deposits", {"participant_id": buyer["id"], "amount": "1000.00", "bank_reference": "d"}))
    for who in (seller, buyer):
        who.update(api.ok(who["api"].get("/v1/whoami")))
    return seller, buyer


def test_a_request_that_meets_a_broken_invariant_is_answered_503_and_the_ledger_stops(api: Api, db_url: str) -> None:
    seller, buyer = _world(api)
    # The seller's balance says 110 units, its serial blocks 100: a transfer of 105 passes the balance check
    # and then finds the blocks short -- the state machine's own invariant, not the seller's fault.
    _sql(api, db_url, "UPDATE ledger_balances SET posted = posted + 10 WHERE account = $1 AND instrument = 'FCT-SM' "
                      "RETURNING posted", seller["holding_account"])
    head = api.ok(api.client.get("/v1/ledger/head"))
    logs = _Records()
    logging.getLogger("envx.ledger.writer").addHandler(logs)
    r = seller["api"].post("/v1/transfers", {"to_participant": buyer["id"], "instrument": "FCT-SM", "quantity": "105"})
    logging.getLogger("envx.ledger.writer").removeHandler(logs)
    assert (r.status_code, r.json()["code"]) == (503, "ledger_stopped"), r.text  # not 409 invariant_violation
    assert "disagree with its balance" in r.json()["reason"]
    health = api.ok(api.client.get("/health"))
    assert health["status"] == "degraded" and health["ledger_writer"] is False, health
    assert "InvariantViolation" in health["ledger_stopped"] and "disagree with its balance" in health["ledger_stopped"]
    # Every later write is refused the same way, whoever sends it and whatever it touches; reads go on.
    other = seller["api"].post("/v1/transfers", {"to_participant": buyer["id"], "instrument": "FCT-SM",
                                                 "quantity": "1"})
    assert (other.status_code, other.json()["code"]) == (503, "ledger_stopped"), other.text
    deposit = api.post("/v1/cash/deposits", {"participant_id": buyer["id"], "amount": "1.00", "bank_reference": "e"})
    assert (deposit.status_code, deposit.json()["code"]) == (503, "ledger_stopped"), deposit.text
    assert api.ok(api.client.get("/v1/ledger/head")) == head  # nothing applied
    said = [(rec.levelname, rec.getMessage()) for rec in logs.records]
    assert len([m for lv, m in said if lv == "CRITICAL" and "stops taking writes" in m]) == 1, said


def test_a_settlement_that_meets_a_broken_invariant_stops_the_ledger_and_that_market(api: Api, db_url: str) -> None:
    seller, buyer = _world(api)
    book = "FCT-SM.continuous"
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "continuous",
                                     "settings": {"sessions": [], "t_plus_1": False}}))
    api.ok(api.post(f"/v1/markets/{book}/session", {"action": "open"}))
    api.ok(buyer["api"].post(f"/v1/markets/{book}/orders", {"side": "buy", "price": "10.00", "quantity": "10"}))
    # The buyer's cash balance forgets its order's hold: posting the hold would take pending below zero.
    _sql(api, db_url, "UPDATE ledger_balances SET pending_out = 0 WHERE account = $1 AND instrument = 'CNY' "
                      "RETURNING pending_out", buyer["cash_account"])
    cross = seller["api"].post(f"/v1/markets/{book}/orders", {"side": "sell", "price": "10.00", "quantity": "10"})
    assert (cross.status_code, cross.json()["code"]) == (503, "market_stopped"), cross.text
    health = api.ok(api.client.get("/health"))
    assert health["status"] == "degraded" and "negative pending" in health["ledger_stopped"], health
    assert list(health["markets_stopped"]) == [book] and "WriterStopped" in health["markets_stopped"][book]
    assert api.ok(api.client.get(f"/v1/markets/{book}/trades")) == []  # nothing settled halfway
    later = seller["api"].post("/v1/transfers", {"to_participant": buyer["id"], "instrument": "FCT-SM",
                                                 "quantity": "1"})
    assert (later.status_code, later.json()["code"]) == (503, "ledger_stopped"), later.text
