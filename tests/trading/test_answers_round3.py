"""Red team round 3, finding 2: an answer never names the other side of a trade. The seller's `allocate`
named each winning bidder (participant id) and the bidders' orders (taker_id); a taker's answer named the
resting order it traded with (maker_id). Only oversight (operators, auditors) sees every side."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api
from tests.trading.test_auctions import auction_market, emission_right, fund, wait_for_end
from tests.trading.test_continuous import world as continuous_world


def _names(events: list[dict[str, Any]]) -> set[tuple[str, Any]]:
    """Every (field, value) of the events that names a participant or an order."""
    return {(k, v) for e in events for k, v in e.items()
            if k in ("bidder", "owner", "participant_id", "maker_id", "taker_id", "order_id", "maker_owner",
                     "taker_owner", "by")}


def test_the_sellers_allocation_names_no_bidder_and_no_bidders_order(api: Api) -> None:
    emission_right(api, "PW-NOX-R3", 5, "宁夏回族自治区")
    seller = api.participant("宁夏排污权储备中心 (示例)", "issuer")
    api.issue(seller["api"], seller["id"], "PW-NOX-R3", "2.000",
              {"valid_from": "2025-01-01", "valid_until": "2029-12-31", "source": "government reserve"})
    m = auction_market(api, "PW-NOX-R3")
    bidders = [api.participant(f"竞买企业{i}", "enterprise") for i in (1, 2)]
    for b in bidders:
        fund(api, b, "100000.00")
    lot = api.ok(seller["api"].post(f"/v1/markets/{m}/auctions", {
        "quantity": "2.000", "min_price": "1000", "increment": "100", "deposit": "0.00",
        "allocation": "pay_as_bid", "min_bid_quantity": "1.000"}))
    aid = lot["order"]["id"]
    seller["api"].ok(seller["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "registration"}))
    for b in bidders:
        api.ok(b["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}))
    api.ok(seller["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "bidding", "duration_seconds": 2}))
    bids = [api.ok(b["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": p, "quantity": "1.000"}))
            for b, p in zip(bidders, ("1100", "1200"), strict=True)]
    wait_for_end(api, m, aid)
    api.ok(seller["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "close"}))
    r = seller["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "allocate"})
    out = api.ok(r)
    assert out["events"]
    bidder_ids = {b["id"] for b in bidders}
    bid_orders = {b["order"]["id"] for b in bids}
    leaked = {(k, v) for k, v in _names(out["events"]) if v in bidder_ids | bid_orders and k != "bid_id"}
    assert not leaked, leaked
    trades = [e for e in out["events"] if e["kind"] == "trade"]
    assert len(trades) == 2 and all(t["maker_id"] == aid and "taker_id" not in t for t in trades), trades
    # A retry is the same bytes, still naming nobody.
    assert seller["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "allocate"},
                              key=r.request.headers["Idempotency-Key"]).content == r.content


def test_a_takers_answer_names_its_own_order_not_the_makers(api: Api) -> None:
    w = continuous_world(api)
    s, b, m = w["s"]["api"], w["b"]["api"], w["m"]
    ask = api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "290.00", "quantity": "100"}))
    bid = api.ok(b.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "300.00", "quantity": "150"}))
    [trade] = [e for e in bid["events"] if e["kind"] == "trade"]
    assert trade["taker_id"] == bid["order"]["id"] and "maker_id" not in trade, trade
    assert ask["order"]["id"] not in {v for _, v in _names(bid["events"])}
