"""A trading day through HTTP with the Sanming forest-ticket sales: 2,723 t at 15.00 and 10,000 t at 10.00."""

from __future__ import annotations

import datetime as dt

from exchange.core.database import asyncpg_dsn
from ledger.verify import verify_database
from tests.helpers import Api, ticket

FEE_BPS = 5  # 0.05 % a side, to exercise the fee arithmetic


def setup_market(api: Api) -> dict:
    api.instrument("FCT-SM")
    issuer = api.participant("三明市林业局", "issuer")
    seller = api.participant("三明林票持有人", "enterprise")
    a = api.participant("成都市绿色低碳发展协会", "enterprise")
    b = api.participant("兴业银行三明分行", "bank")
    api.issue(issuer["api"], seller["id"], "FCT-SM", "29715", ticket(1))
    for who, amount in ((a, "50000.00"), (b, "110000.00")):
        api.ok(api.post("/v1/cash/deposits", {"participant_id": who["id"], "amount": amount,
                                               "bank_reference": f"dep-{who['id']}"}))
    m = api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "listing",
                                         "settings": {"sessions": [], "fee_bps": FEE_BPS}}))
    assert m["id"] == "FCT-SM.listing" and m["best_n"] == 5 and m["band_pct"] == "10.00"
    return {"seller": seller, "a": a, "b": b, "market": m["id"]}


def cash(api: Api, who: dict) -> str:
    bal = [x for x in api.ok(who["api"].get("/v1/holdings"))["balances"] if x["instrument"] == "CNY"]
    return bal[0]["posted"] if bal else "0.00"


def units(api: Api, who: dict) -> tuple[str, str]:
    bal = [x for x in api.ok(who["api"].get("/v1/holdings"))["balances"] if x["instrument"] == "FCT-SM"]
    return (bal[0]["posted"], bal[0]["available"]) if bal else ("0", "0")


def test_sanming_listing_day_end_to_end(api: Api, db_url: str) -> None:
    w = setup_market(api)
    mk, seller = w["market"], w["seller"]["api"]
    # `sessions: []` is always open: the market trades from its definition on, no operator open needed.
    assert api.ok(api.client.get(f"/v1/markets/{mk}"))["session_open"] is True

    l1 = api.ok(seller.post(f"/v1/markets/{mk}/listings", {"side": "sell", "price": "15.00", "quantity": "2723"}))
    l2 = api.ok(seller.post(f"/v1/markets/{mk}/listings", {"side": "sell", "price": "10.00", "quantity": "10000"}))
    assert l1["order"]["status"] == "open" and units(api, w["seller"]) == ("29715", "16992")  # held for sale
    listings = api.ok(api.client.get(f"/v1/markets/{mk}/listings"))
    assert [(x["price"], x["quantity"], x["rank"]) for x in listings] == [("10.00", "10000", 1), ("15.00", "2723", 2)]

    t1 = api.ok(w["a"]["api"].post(f"/v1/markets/{mk}/listings/{l1['order']['id']}/take", {"quantity": "2723"}))
    trades = [e for e in t1["events"] if e["kind"] == "trade"]
    assert [(t["price"], t["qty"]) for t in trades] == [("15.00", "2723")]
    t2 = api.ok(w["b"]["api"].post(f"/v1/markets/{mk}/listings/{l2['order']['id']}/take", {"quantity": "10000"}))
    assert t2["order"]["status"] == "filled" and t2["order"]["filled_amount"] == "100000.00"

    # Settlement, to the fen: notional 40,845.00 and 100,000.00; fees 0.05 % a side, rounded up.
    fee_a, fee_b = 2043, 5000  # ceil(4,084,500 x 5 / 10,000), 10,000,000 x 5 / 10,000
    assert cash(api, w["a"]) == f"{(5_000_000 - 4_084_500 - fee_a) / 100:.2f}"
    assert cash(api, w["b"]) == f"{(11_000_000 - 10_000_000 - fee_b) / 100:.2f}"
    assert cash(api, w["seller"]) == f"{(4_084_500 - fee_a + 10_000_000 - fee_b) / 100:.2f}"
    assert units(api, w["seller"]) == ("16992", "16992")
    assert units(api, w["a"]) == ("2723", "0")  # T+1: bought today, not sellable today
    blocks = api.ok(w["a"]["api"].get("/v1/holdings"))["blocks"]
    assert [(b["serial_start"], b["serial_end"], b["state"]) for b in blocks] == [(1, 2723, "t1_locked")]
    resale = w["a"]["api"].post(f"/v1/markets/{mk}/listings", {"side": "sell", "price": "16.00", "quantity": "1"})
    assert resale.status_code == 409 and resale.json()["code"] == "insufficient_available"

    depth = api.ok(api.client.get(f"/v1/markets/{mk}/depth"))
    assert depth["asks"] == [] and depth["bids"] == [] and depth["seq"] > 0
    tr = api.ok(api.client.get(f"/v1/markets/{mk}/trades"))
    assert [(t["price"], t["quantity"], t["amount"]) for t in tr] == [("15.00", "2723", "40845.00"),
                                                                       ("10.00", "10000", "100000.00")]

    close = api.ok(api.post(f"/v1/markets/{mk}/session", {"action": "close"}))
    # VWAP of the day's listing trades: 14,084,500 fen / 12,723 t = 1,107.0... fen per t.
    assert close["close"]["price"] == "11.07" and close["close"]["method"] == "vwap"  # CNY, not fen
    daily = api.ok(api.client.get("/v1/instruments/FCT-SM/daily"))
    assert daily[0]["close"] == "11.07" and daily[0]["volume"] == "12723" and daily[0]["turnover"] == "140845.00"
    market = api.ok(api.client.get(f"/v1/markets/{mk}"))
    assert market["reference_price"] == "11.07"  # tomorrow's band is centred on today's close

    # The next trading day: the T+1 lock is gone and the band (±10 % of 11.07) applies.
    client = api.client
    tomorrow = (dt.date.fromisoformat(str(market["trading_day"])) + dt.timedelta(days=1)).isoformat()
    rt = client.app.state.rt
    from exchange.trading import sessions

    client.blocking_portal.call(sessions.open_session, rt, mk, dt.date.fromisoformat(tomorrow))
    assert units(api, w["a"]) == ("2723", "2723")
    far = w["a"]["api"].post(f"/v1/markets/{mk}/listings", {"side": "sell", "price": "13.00", "quantity": "100"})
    assert far.status_code == 409 and far.json()["code"] == "price_out_of_band"
    api.ok(w["a"]["api"].post(f"/v1/markets/{mk}/listings", {"side": "sell", "price": "12.00", "quantity": "100"}))

    report = client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()
