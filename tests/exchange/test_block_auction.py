"""Block negotiation (大宗协议) and one-way auctions (单向竞价) through HTTP, settled in the ledger."""

from __future__ import annotations

import time

from exchange.database import asyncpg_dsn
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
    assert r.status_code == 409 and r.json()["code"] == "insufficient_available"
    assert api.ok(buyer["api"].get(f"/v1/markets/{m}/deals/{deal}"))["deal_id"] == deal
    assert bal(api, seller, "CEA25")["available"] == "200000" and bal(api, buyer, "CNY")["available"] == "1000.00"


def test_ningxia_nox_reserve_auction_pay_as_bid(api: Api, db_url: str) -> None:
    api.instrument("PW-NOX-NX", kind="emission_right", decimals=3,
                   attributes={"pollutant": "NOx", "region": "宁夏回族自治区", "validity_years": 5})
    reserve = api.participant("宁夏排污权储备中心 (示例)", "issuer")
    api.issue(reserve["api"], reserve["id"], "PW-NOX-NX", "4.048",
              {"valid_from": "2025-01-01", "valid_until": "2029-12-31", "source": "government reserve"})
    bidders = {n: api.participant(n, "enterprise") for n in ("甲", "乙", "丙")}
    for b in bidders.values():
        api.ok(api.post("/v1/cash/deposits", {"participant_id": b["id"], "amount": "200000.00",
                                               "bank_reference": f"d{b['id']}"}))
    api.ok(api.post("/v1/markets", {"instrument": "PW-NOX-NX", "mode": "auction",
                                     "settings": {"tick_fen": 1000, "lot_base": 1}}))
    m = "PW-NOX-NX.auction"
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "open"}))
    lot = api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions", {
        "quantity": "4.048", "min_price": "21000", "increment": "500", "deposit": "10000.00",
        "max_bids_per_bidder": 2}))
    aid = lot["order"]["id"]
    assert bal(api, reserve, "PW-NOX-NX")["available"] == "0.000"  # the lot is held from announcement
    api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "registration"}))
    for b in bidders.values():
        api.ok(b["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}))
        assert bal(api, b, "CNY")["available"] == "190000.00"
    api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "bidding", "duration_seconds": 1}))
    off = api.ok(bidders["甲"]["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "21200", "quantity": "1"}))
    assert (off["order"]["status"], off["order"]["reason"]) == ("rejected", "bid_increment")  # off the 500 grid
    assert bal(api, bidders["甲"], "CNY")["available"] == "190000.00"  # its hold came straight back
    api.ok(bidders["甲"]["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "21500", "quantity": "4.048"}))
    api.ok(bidders["乙"]["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "22000", "quantity": "2"}))
    api.ok(bidders["丙"]["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "21000", "quantity": "4.048"}))
    time.sleep(1.1)
    api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "close"}))
    res = api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "allocate"}))["auction"]
    assert [(a["price"], a["quantity"]) for a in res["allocations"]] == [("22000.00", "2.000"), ("21500.00", "2.048")]
    # Pay-as-bid, to the fen: 2.000 t x 22,000 = 44,000.00; 2.048 t x 21,500 = 44,032.00; deposits come back.
    assert bal(api, bidders["乙"], "CNY")["available"] == "156000.00"
    assert bal(api, bidders["甲"], "CNY")["available"] == "155968.00"
    assert bal(api, bidders["丙"], "CNY")["available"] == "200000.00"
    assert bal(api, bidders["甲"], "PW-NOX-NX")["posted"] == "2.048"
    assert bal(api, reserve, "CNY")["posted"] == "88032.00" and bal(api, reserve, "PW-NOX-NX")["posted"] == "0.000"
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_deposits_and_bids_are_released_after_a_restart_mid_auction(db_url: str, settings) -> None:
    """A restarted sequencer must still know which auction a deposit or bid belongs to."""
    from litestar.testing import TestClient

    from api.app import create_app
    from tests.helpers import bootstrap_operator

    m = "PW-NOX-NX.auction"
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as first:
        api = Api(first, bootstrap_operator(first))
        api.instrument("PW-NOX-NX", kind="emission_right", decimals=3,
                       attributes={"pollutant": "NOx", "region": "宁夏回族自治区", "validity_years": 5})
        reserve = api.participant("储备中心", "issuer")
        api.issue(reserve["api"], reserve["id"], "PW-NOX-NX", "2", {"valid_from": "2025-01-01",
                                                                    "valid_until": "2029-12-31"})
        bidder = api.participant("甲", "enterprise")
        api.ok(api.post("/v1/cash/deposits", {"participant_id": bidder["id"], "amount": "100000.00",
                                               "bank_reference": "d"}))
        api.ok(api.post("/v1/markets", {"instrument": "PW-NOX-NX", "mode": "auction",
                                         "settings": {"tick_fen": 1000, "lot_base": 1}}))
        api.ok(api.post(f"/v1/markets/{m}/session", {"action": "open"}))
        aid = api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions", {
            "quantity": "2", "min_price": "21000", "increment": "500", "deposit": "5000.00"}))["order"]["id"]
        api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "registration"}))
        api.ok(bidder["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}))
        assert bal(api, bidder, "CNY")["available"] == "95000.00"
    # A new process on the same database: the sequencer recovers from snapshot + journal.
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as again:
        api2 = Api(again, bootstrap_operator(again))
        api2.ok(api2.as_(reserve["token"]).post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "cancel"}))
        assert bal(api2, {"api": api2.as_(bidder["token"])}, "CNY")["available"] == "100000.00"
