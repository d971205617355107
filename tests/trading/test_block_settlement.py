"""Block deals that a client's double click cannot break (issue #14): a repeated confirmation, several
deals on one quote, and what a market does when a settlement is refused all the same."""

from __future__ import annotations

import logging

from exchange.core.database import asyncpg_dsn
from ledger.verify import verify_database
from tests.helpers import Api

M = "CEA25.block"


def bal(api: Api, who: dict, inst: str) -> dict:
    return {x["instrument"]: x for x in api.ok(who["api"].get("/v1/holdings"))["balances"]}.get(inst, {})


def _desk(api: Api, units: str = "400000", cash: str = "50000000.00") -> tuple[dict, dict]:
    api.instrument("CEA25", kind="cea", attributes={"compliance_year": 2025})
    seller = api.participant("控排企业甲", "enterprise")
    buyer = api.participant("控排企业乙", "enterprise")
    api.issue(api.participant("生态环境部", "issuer")["api"], seller["id"], "CEA25", units, {"allocation": "free"})
    api.ok(api.post("/v1/cash/deposits", {"participant_id": buyer["id"], "amount": cash, "bank_reference": "b"}))
    api.ok(api.post("/v1/markets", {"instrument": "CEA25", "mode": "block",
                                     "settings": {"sessions": [], "reference_price_fen": 10000}}))
    return seller, buyer


def test_a_repeated_confirmation_then_the_other_side_trades_once(api: Api, db_url: str) -> None:
    seller, buyer = _desk(api)
    q = api.ok(seller["api"].post(f"/v1/markets/{M}/block-quotes",
                                  {"side": "sell", "price": "100.00", "quantity": "150000"}))["seq"]
    deal = api.ok(buyer["api"].post(f"/v1/markets/{M}/block-quotes/{q}/respond",
                                    {"price": "100.00", "quantity": "120000"}))["seq"]
    # The responder stands confirmed on its terms; its second click is refused, and moves nothing: no
    # funding is created and released again, no ledger entry is written.
    head = api.ok(api.client.get("/v1/ledger/head"))
    twice = buyer["api"].post(f"/v1/markets/{M}/deals/{deal}/confirm", {})
    assert twice.status_code == 409 and twice.json()["code"] == "already_confirmed", twice.text
    assert api.ok(api.client.get("/v1/ledger/head")) == head
    assert bal(api, buyer, "CNY")["available"] == "50000000.00" and bal(api, seller, "CEA25")["available"] == "400000"
    done = seller["api"].post(f"/v1/markets/{M}/deals/{deal}/confirm", {})
    assert done.status_code == 200, done.text
    assert [e["kind"] for e in done.json()["events"]][:2] == ["deal_confirmed", "trade"]
    trades = api.ok(api.client.get(f"/v1/markets/{M}/trades"))
    assert [(t["price"], t["quantity"]) for t in trades] == [("100.00", "120000")]
    assert bal(api, buyer, "CEA25")["posted"] == "120000"
    assert bal(api, buyer, "CNY") == {**bal(api, buyer, "CNY"), "posted": "38000000.00", "pending": "0.00"}
    assert bal(api, seller, "CNY")["posted"] == "12000000.00"
    assert bal(api, seller, "CEA25")["pending"] == "0"
    # The market still works: a new quote is taken, and health has nothing to report.
    again = seller["api"].post(f"/v1/markets/{M}/block-quotes", {"side": "sell", "price": "100.00",
                                                                  "quantity": "100000"})
    assert again.status_code == 201, again.text
    health = api.ok(api.client.get("/health"))
    assert health["status"] == "ok" and health.get("markets_stopped", {}) == {}, health
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_two_deals_on_one_quote_each_settle_and_release_their_own_holds(api: Api, db_url: str) -> None:
    seller, buyer = _desk(api)
    q = api.ok(seller["api"].post(f"/v1/markets/{M}/block-quotes",
                                  {"side": "sell", "price": "100.00", "quantity": "300000"}))["seq"]
    for n in range(2):
        deal = api.ok(buyer["api"].post(f"/v1/markets/{M}/block-quotes/{q}/respond",
                                        {"price": "100.00", "quantity": "100000"}))["seq"]
        api.ok(seller["api"].post(f"/v1/markets/{M}/deals/{deal}/confirm", {}, key=f"c{n}"))
    trades = api.ok(api.client.get(f"/v1/markets/{M}/trades"))
    assert [t["quantity"] for t in trades] == ["100000", "100000"]
    assert bal(api, seller, "CEA25") == {**bal(api, seller, "CEA25"), "posted": "200000", "pending": "0"}
    assert bal(api, buyer, "CNY")["pending"] == "0.00"
    assert seller["api"].post(f"/v1/markets/{M}/block-quotes", {"side": "sell", "price": "100.00",
                                                                 "quantity": "100000"}).status_code == 201
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_a_confirmation_refused_after_funding_then_traded_releases_each_funding_once(api: Api, db_url: str) -> None:
    """The engine refuses a funded confirmation (the quote has less left than the deal asks); its funding
    goes back. The same two parties then agree and trade: that trade's own funding is settled and released
    under its own client ids, not the refused one's."""
    seller, buyer = _desk(api)
    q = api.ok(seller["api"].post(f"/v1/markets/{M}/block-quotes",
                                  {"side": "sell", "price": "100.00", "quantity": "250000"}))["seq"]
    a = api.ok(buyer["api"].post(f"/v1/markets/{M}/block-quotes/{q}/respond",
                                 {"price": "100.00", "quantity": "120000"}))["seq"]
    b = api.ok(buyer["api"].post(f"/v1/markets/{M}/block-quotes/{q}/respond",
                                 {"price": "100.00", "quantity": "140000"}))["seq"]
    api.ok(seller["api"].post(f"/v1/markets/{M}/deals/{a}/confirm", {}))
    short = seller["api"].post(f"/v1/markets/{M}/deals/{b}/confirm", {})  # 130,000 left of the quote
    assert short.status_code == 409 and short.json()["code"] == "quantity_exceeds_remaining", short.text
    assert bal(api, buyer, "CNY")["pending"] == "0.00" and bal(api, seller, "CEA25")["pending"] == "0"
    api.ok(buyer["api"].post(f"/v1/markets/{M}/deals/{b}/counter", {"price": "100.00", "quantity": "130000"}))
    done = seller["api"].post(f"/v1/markets/{M}/deals/{b}/confirm", {})
    assert done.status_code == 200, done.text
    trades = api.ok(api.client.get(f"/v1/markets/{M}/trades"))
    assert [t["quantity"] for t in trades] == ["120000", "130000"]
    assert bal(api, seller, "CEA25") == {**bal(api, seller, "CEA25"), "posted": "150000", "pending": "0"}
    assert bal(api, buyer, "CNY") == {**bal(api, buyer, "CNY"), "posted": "25000000.00", "pending": "0.00"}
    assert seller["api"].post(f"/v1/markets/{M}/block-quotes", {"side": "sell", "price": "100.00",
                                                                 "quantity": "100000"}).status_code == 201
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_settlement_the_ledger_refuses_stops_that_market_and_says_why(db_url: str, settings) -> None:
    """Holds are sized so that a journaled trade always settles; if the ledger refuses one all the same
    (here: a bug elsewhere voided a resting order's hold), that market stops taking writes, once, with
    the reason in /health; no retry loop, nothing half-settled, the other markets trade on, and a restart
    comes back to the same verdict."""
    from litestar.testing import TestClient

    from api.app import create_app
    from ledger import commands as lc
    from tests.helpers import bootstrap_operator, ticket

    book, desk = "FCT-SM.continuous", "FCT-SM.listing"
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as first:
        api = Api(first, bootstrap_operator(first))
        api.instrument("FCT-SM")
        s, b = api.participant("卖方", "enterprise"), api.participant("买方", "enterprise")
        api.issue(api.participant("三明市林业局", "issuer")["api"], s["id"], "FCT-SM", "100", ticket(1))
        api.ok(api.post("/v1/cash/deposits", {"participant_id": b["id"], "amount": "1000.00", "bank_reference": "d"}))
        for mode in ("continuous", "listing"):
            api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": mode,
                                             "settings": {"sessions": [], "t_plus_1": False}}))
            api.ok(api.post(f"/v1/markets/FCT-SM.{mode}/session", {"action": "open"}))
        ask = api.ok(s["api"].post(f"/v1/markets/{book}/orders", {"side": "sell", "price": "10.00", "quantity": "10"}))
        rt = first.app.state.rt
        first.blocking_portal.call(rt.submit, lc.Request("test:a-bug", lc.VoidHold(ask["order"]["hold_id"]), "bug:1"))

        logs = _Records()  # on the logger itself: the app's logging set-up replaces the root's handlers
        logging.getLogger("envx.sequencer").addHandler(logs)
        cross = b["api"].post(f"/v1/markets/{book}/orders", {"side": "buy", "price": "10.00", "quantity": "10"})
        assert cross.status_code == 503 and cross.json()["code"] == "market_stopped", cross.text
        health = api.ok(first.get("/health"))
        assert health["status"] == "degraded" and list(health["markets_stopped"]) == [book]
        assert "hold_already_resolved" in health["markets_stopped"][book]
        later = b["api"].post(f"/v1/markets/{book}/orders", {"side": "buy", "price": "9.00", "quantity": "1"})
        assert later.status_code == 503 and later.json()["code"] == "market_stopped"
        assert bal(api, b, "CNY")["pending"] == "100.00"  # the journaled order's hold, nothing more
        assert api.ok(first.get(f"/v1/markets/{book}"))["writes_stopped"] == health["markets_stopped"][book]
        # The other market of the instrument trades on; reads of the stopped one keep working.
        assert s["api"].post(f"/v1/markets/{desk}/listings", {"side": "sell", "price": "10.00",
                                                             "quantity": "5"}).status_code == 201
        assert first.get(f"/v1/markets/{book}/depth").status_code == 200
        seq = rt.exchange.get(book)
        assert seq.task.done() and seq.finisher.done()  # nothing left running: no retry loop
        logging.getLogger("envx.sequencer").removeHandler(logs)
        said = [(r.levelname, r.getMessage()) for r in logs.records]
        assert len([m for lv, m in said if lv == "CRITICAL" and "stops taking writes" in m]) == 1, said
        assert not [m for _, m in said if "recovery failed" in m or "recovered at" in m or "retrying" in m], said
        report = first.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
        assert report.ok, report.render()

    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as again:
        api2 = Api(again, bootstrap_operator(again, "another operator"))
        health = api2.ok(again.get("/health"))
        assert list(health["markets_stopped"]) == [book]  # the journal replays to the same refusal
        assert api2.as_(s["token"]).post(f"/v1/markets/{desk}/listings", {
            "side": "sell", "price": "10.00", "quantity": "5"}).status_code == 201
        assert bal(api2, {"api": api2.as_(b["token"])}, "CNY")["pending"] == "100.00"  # not swept as an orphan
