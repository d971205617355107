"""The continuous book through HTTP: pre-funding holds, partial fills, refunds, cancels, halts."""

from __future__ import annotations

from tests.helpers import Api, project_batch


def world(api: Api, fee_bps: int = 0) -> dict:
    api.instrument("CDCER", kind="cdcer", decimals=3)
    issuer = api.participant("成都市生态环境局", "issuer")
    s = api.participant("成都天投蔚蓝生物科技有限公司", "enterprise")
    b = api.participant("成都市绿色低碳发展协会", "enterprise")
    api.issue(issuer["api"], s["id"], "CDCER", "4034", project_batch("天府新区厨余垃圾资源化利用"))
    api.ok(api.post("/v1/cash/deposits", {"participant_id": b["id"], "amount": "100000.00", "bank_reference": "d"}))
    api.ok(api.post("/v1/cash/deposits", {"participant_id": s["id"], "amount": "1000.00", "bank_reference": "d2"}))
    api.ok(api.post("/v1/markets", {"instrument": "CDCER", "mode": "continuous",
                                     "settings": {"sessions": [], "fee_bps": fee_bps, "band_bps": 2000,
                                                  "reference_price_fen": 29200}}))
    api.ok(api.post("/v1/markets/CDCER.continuous/session", {"action": "open"}))
    return {"s": s, "b": b, "m": "CDCER.continuous"}


def bal(api: Api, who: dict, inst: str) -> dict:
    return {x["instrument"]: x for x in api.ok(who["api"].get("/v1/holdings"))["balances"]}.get(inst, {})


def test_partial_fills_price_improvement_and_cancel(api: Api) -> None:
    w = world(api)
    s, b, m = w["s"]["api"], w["b"]["api"], w["m"]
    # CDCER is recorded in kg (3 decimals); prices are CNY per t (碳惠天府 ~292 CNY/t).
    ask = api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "290.00", "quantity": "100"}))
    assert ask["order"]["status"] == "open" and bal(api, w["s"], "CDCER")["available"] == "3934.000"
    bid = api.ok(b.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "300.00", "quantity": "150"}))
    trades = [e for e in bid["events"] if e["kind"] == "trade"]
    assert [(t["price"], t["qty"]) for t in trades] == [("290.00", "100.000")]
    assert bid["order"]["status"] == "open" and bid["order"]["open_quantity"] == "50.000"
    # Paid 29,000.00 at the maker's price; of the 45,000.00 hold, 15,000.00 (50 t at 300.00) stays held and
    # the 1,000.00 the better price saved comes back in the trade's own entry.
    cash = bal(api, w["b"], "CNY")
    assert (cash["posted"], cash["pending"], cash["available"]) == ("71000.00", "15000.00", "56000.00")
    cancelled = api.ok(b.post(f"/v1/markets/{m}/orders/{bid['order']['id']}/cancel", {}))
    assert cancelled["status"] == "cancelled"
    assert bal(api, w["b"], "CNY")["available"] == "71000.00"  # the hold's remainder came back
    assert bal(api, w["s"], "CNY")["posted"] == "30000.00"
    again = api.ok(b.post(f"/v1/markets/{m}/orders/{bid['order']['id']}/cancel", {}))
    assert again["status"] == "cancelled"  # cancelling twice is harmless


def test_ioc_fok_market_stp_reduce_and_halt(api: Api) -> None:
    w = world(api, fee_bps=10)
    s, b, m = w["s"]["api"], w["b"]["api"], w["m"]
    api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "295.00", "quantity": "10"}))
    api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "296.00", "quantity": "10"}))
    fok = api.ok(b.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "296.00", "quantity": "25",
                                                     "tif": "fok"}))
    assert fok["order"]["status"] == "rejected" and fok["order"]["reason"] == "fok_unfillable"
    assert bal(api, w["b"], "CNY")["available"] == "100000.00"  # the FOK's hold is released
    ioc = api.ok(b.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "295.00", "quantity": "15",
                                                     "tif": "ioc"}))
    assert ioc["order"]["status"] == "cancelled" and ioc["order"]["filled_quantity"] == "10.000"
    mkt = api.ok(b.post(f"/v1/markets/{m}/orders", {"side": "buy", "type": "market", "quantity": "5"}))
    assert mkt["order"]["filled_quantity"] == "5.000" and mkt["order"]["filled_amount"] == "1480.00"
    accepted = next(e for e in mkt["events"] if e["kind"] == "accepted")  # a market order has no price (round 5 F11)
    assert mkt["order"]["price"] is None and accepted["price"] is None and accepted["type"] == "market"
    # Self-trade prevention: the seller's own buy is cancelled rather than trade with its own ask.
    own = api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "296.00", "quantity": "1"}))
    assert own["order"]["status"] == "cancelled" and own["order"]["reason"] == "self_trade"
    rest = api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "299.00", "quantity": "20"}))
    red = api.ok(s.post(f"/v1/markets/{m}/orders/{rest['order']['id']}/reduce", {"quantity": "5"}))
    assert red["open_quantity"] == "5.000"
    bad = s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "400.00", "quantity": "1"})
    assert bad.status_code == 409 and bad.json()["code"] == "price_out_of_band"
    off = s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "299.001", "quantity": "1"})
    assert off.status_code == 422 and off.json()["code"] == "off_grid"
    api.ok(api.post(f"/v1/markets/{m}/halt", {"reason": "test"}))
    halted = b.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "299.00", "quantity": "1"})
    assert halted.status_code == 409 and halted.json()["code"] == "market_halted"
    api.ok(api.post(f"/v1/markets/{m}/resume", {}))
    # Fees: 0.1 % a side on each order's cumulative notional, rounded up to the fen:
    # 10 t @ 295.00 = 2,950.00 (fee 2.95) and 5 t @ 296.00 = 1,480.00 (fee 1.48).
    assert bal(api, w["b"], "CNY")["available"] == "95565.57"  # 100,000 - 2,952.95 - 1,481.48
    assert bal(api, w["s"], "CNY")["available"] == "5425.57"  # 1,000 + 2,947.05 + 1,478.52
    stats = api.ok(api.client.get(f"/v1/markets/{m}/depth"))
    assert stats["asks"][0]["price"] == "296.00" and stats["asks"][0]["quantity"] == "5.000"


def test_a_refused_reduce_leaves_the_order_and_its_hold_alone(api: Api) -> None:
    w = world(api)
    s, b, m = w["s"]["api"], w["b"]["api"], w["m"]
    ask = api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "290.00", "quantity": "100"}))
    oid = ask["order"]["id"]
    bad = s.post(f"/v1/markets/{m}/orders/{oid}/reduce", {"quantity": "200"})  # a reduce may not grow
    assert bad.status_code in (409, 422)
    assert api.ok(s.get(f"/v1/markets/{m}/orders/{oid}"))["status"] == "open"
    assert bal(api, w["s"], "CDCER")["pending"] == "100.000"  # still funded
    fill = api.ok(b.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "290.00", "quantity": "100"}))
    assert fill["order"]["status"] == "filled"  # and it still trades and settles
    assert bal(api, w["b"], "CDCER")["posted"] == "100.000"


def test_a_reduce_racing_a_fill_is_409_order_not_open_never_404(api: Api) -> None:
    """Red team round 5, F10: a reduce of one's own order that a fill ended meanwhile was 404 unknown_order
    (the engine no longer knows the order); it is the order's own state, 409 order_not_open."""
    from concurrent.futures import ThreadPoolExecutor

    w = world(api)
    s, b, m = w["s"]["api"], w["b"]["api"], w["m"]
    seen: set[tuple[int, str | None]] = set()
    for _ in range(6):
        oid = api.ok(b.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "290.00", "quantity": "2"}))[
            "order"]["id"]

        def go(i: int, oid: int = oid) -> tuple[int, str | None]:
            if i == 0:
                s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "290.00", "quantity": "2", "tif": "ioc"})
                return 0, None
            r = b.post(f"/v1/markets/{m}/orders/{oid}/reduce", {"quantity": "1"})
            return r.status_code, r.json().get("code")

        with ThreadPoolExecutor(6) as ex:
            seen |= {x for x in ex.map(go, range(6)) if x[0]}
    assert all(st in (200, 409) for st, _ in seen), seen
    # 409: ended by the fill, or already reduced to 1 by a twin
    assert all(code in ("order_not_open", "reduce_not_lower") for st, code in seen if st == 409), seen


def test_the_venue_cancelling_a_members_order_says_so(api: Api) -> None:
    """Red team round 5, F7: an operator's cancel of a member's order read `requested`, as if the member asked."""
    w = world(api)
    s, m = w["s"]["api"], w["m"]
    mine = api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "299.00", "quantity": "1"}))
    theirs = api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "298.00", "quantity": "1"}))
    by_venue = api.ok(api.post(f"/v1/markets/{m}/orders/{theirs['order']['id']}/cancel", {}))
    by_owner = api.ok(s.post(f"/v1/markets/{m}/orders/{mine['order']['id']}/cancel", {}))
    assert (by_venue["status"], by_venue["reason"]) == ("cancelled", "venue")
    assert (by_owner["status"], by_owner["reason"]) == ("cancelled", "requested")
    assert bal(api, w["s"], "CDCER")["pending"] == "0.000"
