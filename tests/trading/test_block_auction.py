"""Block negotiation (大宗协议) through HTTP, settled in the ledger (auctions: test_auctions.py)."""

from __future__ import annotations

from exchange.core.database import asyncpg_dsn
from ledger.verify import verify_database
from tests.helpers import Api


def bal(api: Api, who: dict, inst: str) -> dict:
    return {x["instrument"]: x for x in api.ok(who["api"].get("/v1/holdings"))["balances"]}.get(inst, {})


def test_block_quote_counter_confirm(api: Api, db_url: str) -> None:
    api.instrument("CEA25", kind="cea", attributes={"compliance_year": 2025})
    seller = api.participant("控排企业甲", "enterprise")
    buyer = api.participant("控排企业乙", "enterprise")
    other = api.participant("控排企业丙", "enterprise")
    api.issue(api.participant("生态环境部", "issuer")["api"], seller["id"], "CEA25", "200000", {"allocation": "free"})
    api.ok(api.post("/v1/cash/deposits", {"participant_id": buyer["id"], "amount": "20000000.00",
                                           "bank_reference": "b"}))
    api.ok(api.post("/v1/markets", {"instrument": "CEA25", "mode": "block",
                                     "settings": {"sessions": [], "reference_price_fen": 10000}}))
    m = "CEA25.block"
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "open"}))
    small = seller["api"].post(f"/v1/markets/{m}/block-quotes", {"side": "sell", "price": "100.00",
                                                                  "quantity": "50000"})
    assert small.status_code == 409 and small.json()["code"] == "quantity_below_minimum"  # blocks start at 100,000 t
    q = api.ok(seller["api"].post(f"/v1/markets/{m}/block-quotes", {
        "side": "sell", "price": "100.00", "quantity": "150000", "audience": "directed",
        "counterparties": [buyer["id"]]}))["seq"]
    assert [x["quote_id"] for x in api.ok(buyer["api"].get(f"/v1/markets/{m}/block-quotes"))] == [q]
    assert api.ok(other["api"].get(f"/v1/markets/{m}/block-quotes")) == []  # directed: invisible to others
    r = other["api"].post(f"/v1/markets/{m}/block-quotes/{q}/respond", {"price": "95.00", "quantity": "120000"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"  # as if there were no such quote
    far = buyer["api"].post(f"/v1/markets/{m}/block-quotes/{q}/respond", {"price": "60.00", "quantity": "120000"})
    assert far.status_code == 409 and far.json()["code"] == "price_out_of_band"  # ±30 % of 100.00
    deal = api.ok(buyer["api"].post(f"/v1/markets/{m}/block-quotes/{q}/respond",
                                    {"price": "95.00", "quantity": "120000"}))["seq"]
    api.ok(seller["api"].post(f"/v1/markets/{m}/deals/{deal}/counter", {"price": "98.00", "quantity": "120000"}))
    # Negotiation moves nothing yet.
    assert bal(api, seller, "CEA25")["available"] == "200000" and bal(api, buyer, "CNY")["available"] == "20000000.00"
    done = api.ok(buyer["api"].post(f"/v1/markets/{m}/deals/{deal}/confirm", {}, key="confirm-1"))
    assert [e["kind"] for e in done["events"]][:2] == ["deal_confirmed", "trade"]
    again = api.ok(buyer["api"].post(f"/v1/markets/{m}/deals/{deal}/confirm", {}, key="confirm-1"))
    assert again == done  # a retry gets the original answer (api/security/replays.py)
    assert bal(api, buyer, "CEA25")["posted"] == "120000"
    assert bal(api, buyer, "CNY")["posted"] == "8240000.00"  # 20,000,000 - 120,000 x 98.00
    assert bal(api, seller, "CNY")["posted"] == "11760000.00"
    assert api.ok(buyer["api"].get(f"/v1/markets/{m}/block-quotes")) == []  # 30,000 left < minimum: exhausted
    close = api.ok(api.post(f"/v1/markets/{m}/session", {"action": "close"}))
    assert close["close"] is None  # block trades stay out of the close
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_unfunded_confirmation_is_refused_and_the_deal_stays_open(api: Api) -> None:
    api.instrument("CEA25", kind="cea", attributes={"compliance_year": 2025})
    seller = api.participant("甲", "enterprise")
    buyer = api.participant("乙", "enterprise")
    api.issue(api.participant("生态环境部", "issuer")["api"], seller["id"], "CEA25", "200000", {})
    api.ok(api.post("/v1/cash/deposits", {"participant_id": buyer["id"], "amount": "1000.00", "bank_reference": "b"}))
    api.ok(api.post("/v1/markets", {"instrument": "CEA25", "mode": "block", "settings": {"sessions": []}}))
    m = "CEA25.block"
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "open"}))
    q = api.ok(seller["api"].post(f"/v1/markets/{m}/block-quotes", {"side": "sell", "price": "100.00",
                                                                      "quantity": "100000"}))["seq"]
    deal = api.ok(buyer["api"].post(f"/v1/markets/{m}/block-quotes/{q}/respond",
                                    {"price": "100.00", "quantity": "100000"}))["seq"]
    r = seller["api"].post(f"/v1/markets/{m}/deals/{deal}/confirm", {})
    # The buyer's cash is short: the seller learns that, not the buyer's account or balance (issue #14).
    assert r.status_code == 409 and r.json()["code"] == "counterparty_unfunded"
    assert r.json()["detail"] == "the counterparty cannot fund this deal now"
    assert api.ok(buyer["api"].get(f"/v1/markets/{m}/deals/{deal}"))["deal_id"] == deal
    assert bal(api, seller, "CEA25")["available"] == "200000" and bal(api, buyer, "CNY")["available"] == "1000.00"
