"""One-way auctions (单向竞价) through HTTP, settled in the ledger, to the fen.

Standing bids and raises, per-bidder allocation (top-X % of bidders at their own final price), emission
rights priced and settled by term (price per t·yr × t/yr × years), term validity of blocks and expiry,
lots below one unit, refusals as 409 problems whose retries are the same bytes, and market settings
refused when they are proposed.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text

from exchange.core.calendar import trading_day
from exchange.core.database import asyncpg_dsn
from exchange.core.units import to_text
from exchange.registry import expiry
from exchange.trading import sessions
from ledger import queries
from ledger.verify import verify_database
from tests.helpers import Api, uscc
from tests.pledges.helpers import pledge_body


def bal(api: Api, who: dict[str, Any], inst: str) -> dict[str, str]:
    return {x["instrument"]: x for x in api.ok(who["api"].get("/v1/holdings"))["balances"]}.get(inst, {})


def cny(fen: int) -> str:
    return to_text(fen, 2)


def money(api: Api, who: dict[str, Any]) -> tuple[str, str, str]:
    b = bal(api, who, "CNY")
    return b["posted"], b["pending"], b["available"]


def fund(api: Api, who: dict[str, Any], amount: str) -> None:
    api.ok(api.post("/v1/cash/deposits", {"participant_id": who["id"], "amount": amount,
                                          "bank_reference": f"dep-{who['id']}"}))


def emission_right(api: Api, code: str, years: int, region: str, pollutant: str = "NOx") -> None:
    api.instrument(code, kind="emission_right", decimals=3,
                   attributes={"pollutant": pollutant, "region": region, "validity_years": years})


def auction_market(api: Api, code: str, settings: dict[str, Any] | None = None) -> str:
    api.ok(api.post("/v1/markets", {"instrument": code, "mode": "auction", "settings": settings or {}}))
    m = f"{code}.auction"
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "open"}))
    return m


def wait_for_end(api: Api, m: str, aid: int) -> None:
    ends = datetime.fromisoformat(api.ok(api.get(f"/v1/markets/{m}/auctions/{aid}"))["ends_at"])
    time.sleep(max(0.0, ends.timestamp() - time.time()) + 0.05)


def pending_holds(api: Api, account: int) -> list[int]:
    async def ids() -> list[int]:
        async with api.client.app.state.rt.read() as conn:
            return [r.id for r in await conn.execute(text(
                "SELECT id FROM ledger_holds WHERE debit = :a AND state = 'pending' ORDER BY id"), {"a": account})]

    return api.client.blocking_portal.call(ids)


def system_balance(api: Api, name: str, instrument: str) -> int:
    async def read() -> int:
        rt = api.client.app.state.rt
        async with rt.read() as conn:
            rows = await queries.balances(conn, [rt.system[name]])
        return next((r["posted"] for r in rows if r["instrument"] == instrument), 0)

    return api.client.blocking_portal.call(read)


def verified(api: Api, db_url: str) -> None:
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_top_60_percent_of_8_bidders_with_raises_win_at_their_final_price(api: Api, db_url: str) -> None:
    """Issue #14's case: 8 bidders, up to 5 bids each, the best 60 % of bidders win at their own final
    price (武义 2021's rule: 四舍五入, so 4.8 -> 5 winners); the unsold share stays with the seller."""
    emission_right(api, "PW-COD-WY", 5, "浙江省武义县", "COD")
    reserve = api.participant("武义县排污权储备管理中心 (示例)", "issuer")
    api.issue(reserve["api"], reserve["id"], "PW-COD-WY", "6.000",
              {"valid_from": "2025-01-01", "valid_until": "2029-12-31", "source": "government reserve"})
    m = auction_market(api, "PW-COD-WY", {"fee_bps": 3})
    bidders = [api.participant(f"竞买人{i}", "enterprise") for i in range(1, 9)]
    for b in bidders:
        fund(api, b, "100000.00")
    # B1 has just enough for its last bid plus the deposit: if a raise held its new bid on top of the old
    # one (as it did), its raises would be refused.
    api.ok(api.post("/v1/cash/withdrawals", {"participant_id": bidders[0]["id"], "amount": "73900.00",
                                             "bank_reference": "w1"}))
    lot = api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions", {
        "quantity": "6.000", "min_price": "4000", "increment": "100", "deposit": "2000.00",
        "max_bids_per_bidder": 5, "allocation": "top_percent", "top_percent": 60, "min_bid_quantity": "1.000",
        "cap_per_bidder": "1.000"}))
    aid = lot["order"]["id"]
    assert bal(api, reserve, "PW-COD-WY")["available"] == "0.000"
    api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "registration"}))
    for b in bidders:
        api.ok(b["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}))
    again = bidders[1]["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}, key="again")
    assert (again.status_code, again.json()["code"]) == (409, "already_registered")
    assert bidders[1]["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}, key="again").content == again.content
    assert money(api, bidders[0]) == ("26100.00", "2000.00", "24100.00")
    assert money(api, bidders[1]) == ("100000.00", "2000.00", "98000.00")
    api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step",
                               {"action": "bidding", "duration_seconds": 8}))

    def bid(i: int, price: str, key: str | None = "auto") -> Any:
        return bidders[i - 1]["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids",
                                          {"price": price, "quantity": "1.000"}, key=key)

    # Cash held for a bid of p CNY per t·yr on 1.000 t/yr for 5 years: p x 5, plus 0.03 % fee (fen).
    held = {"4000": 2_000_600, "4100": 2_050_615, "4200": 2_100_630, "4300": 2_150_645, "4400": 2_200_660,
            "4500": 2_250_675, "4600": 2_300_690, "4700": 2_350_705, "4800": 2_400_720}
    plan = [(1, "4000"), (3, "4000"), (7, "4000"), (2, "4100"), (8, "4100"), (3, "4100"), (5, "4200"),
            (1, "4300"), (3, "4200"), (3, "4300"), (6, "4400"), (4, "4500"), (7, "4400"), (5, "4500"),
            (2, "4600"), (3, "4700"), (1, "4800")]
    final: dict[int, int] = {}  # bid id of each bidder's standing bid -> bidder number
    for i, price in plan:
        r = api.ok(bid(i, price))
        assert r["order"]["status"] == "open", r
        final = {k: n for k, n in final.items() if n != i} | {r["order"]["id"]: i}
        # One bid hold per bidder, sized to its newest bid; with the deposit, two pending holds.
        start = 2_610_000 if i == 1 else 10_000_000
        deposit = 200_000
        assert money(api, bidders[i - 1]) == (cny(start), cny(deposit + held[price]),
                                              cny(start - deposit - held[price])), (i, price)
        holds = pending_holds(api, bidders[i - 1]["cash_account"])
        assert len(holds) == 2 and r["order"]["hold_id"] == holds[-1]  # the deposit's and the bid's one hold
    # B3 has placed its 5 bids: a sixth is refused, and so is its retry, byte for byte.
    sixth = bid(3, "4900", key="b3-sixth")
    assert (sixth.status_code, sixth.json()["code"]) == (409, "too_many_bids")
    assert bid(3, "4900", key="b3-sixth").content == sixth.content
    low = bid(2, "4600")
    assert (low.status_code, low.json()["code"]) == (409, "bid_not_above_standing")
    assert money(api, bidders[1])[1] == "25006.90"  # the refused raise left its standing bid's hold alone
    view = api.ok(api.get(f"/v1/markets/{m}/auctions/{aid}"))
    assert (view["bidders"], view["bids_placed"], view["winners"], view["highest_price"]) == (8, 17, 5, "4800.00")
    early = reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "close"}, key="early")
    assert (early.status_code, early.json()["code"]) == (409, "auction_still_open")
    wait_for_end(api, m, aid)
    assert reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "close"},
                               key="early").content == early.content  # the retry is the first answer
    api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "close"}))
    res = api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "allocate"}))["auction"]
    # Ranked by final price, then by the time of that bid: B4 reached 4500 before B5 did. The public view
    # names bids, not bidders (participant ids): each bidder knows its own bid ids.
    assert [(final[a["bid_id"]], a["price"], a["quantity"], a["amount"]) for a in res["allocations"]] == [
        (1, "4800.00", "1.000", "24000.00"), (3, "4700.00", "1.000", "23500.00"),
        (2, "4600.00", "1.000", "23000.00"), (4, "4500.00", "1.000", "22500.00"),
        (5, "4500.00", "1.000", "22500.00")]
    # Winners paid price x 1.000 t/yr x 5 years + 0.03 %, got their deposit back and hold nothing more.
    for i, price in ((1, "4800"), (3, "4700"), (2, "4600"), (4, "4500"), (5, "4500")):
        left = cny((2_610_000 if i == 1 else 10_000_000) - held[price])
        assert money(api, bidders[i - 1]) == (left, "0.00", left), i
        assert bal(api, bidders[i - 1], "PW-COD-WY")["posted"] == "1.000"
    for i in (6, 7, 8):  # outside the top 60 %: everything back
        assert money(api, bidders[i - 1]) == ("100000.00", "0.00", "100000.00")
        assert bal(api, bidders[i - 1], "PW-COD-WY") == {}
    # The seller: 115,500.00 less its 0.03 % fee (34.65); the unsold 1.000 t/yr is its own again.
    assert money(api, reserve) == ("115465.35", "0.00", "115465.35")
    assert bal(api, reserve, "PW-COD-WY") == {"account": reserve["holding_account"], "instrument": "PW-COD-WY",
                                              "posted": "1.000", "pending": "0.000", "available": "1.000"}
    assert system_balance(api, "fees", "CNY") == 3465 + 3465  # both sides' fees, in fen
    verified(api, db_url)


def test_three_year_emission_right_auction_settles_by_term_and_expires_at_its_end(api: Api, db_url: str) -> None:
    """宁夏 2025 (吴排污(竞)[2025]-05号): NOx, 4.048 t/yr, start 21,000 CNY/t·yr, step 500, pay-as-bid by
    price rank. Here the grant runs three years, so a winner pays price x t/yr x 3."""
    emission_right(api, "PW-NOX-WZ", 3, "宁夏回族自治区吴忠市")
    reserve = api.participant("吴忠市生态环境局 (示例)", "issuer")
    api.issue(reserve["api"], reserve["id"], "PW-NOX-WZ", "4.048",
              {"valid_from": "2025-04-10", "valid_until": "2028-04-09", "source": "government reserve"})
    bad = reserve["api"].post("/v1/issuances", {"instrument": "PW-NOX-WZ", "holder_id": reserve["id"],
                                                "quantity": "1.000", "attributes": {
                                                    "valid_from": "2025-04-10", "valid_until": "2030-04-09"}})
    # A 5-year term on a 3-year right: an invalid attribute, named with every other one (issuance's rule).
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_attributes")
    assert [(e["attribute"], e["type"]) for e in bad.json()["errors"]] == [("valid_until", "invalid_term")]
    later = api.issue(reserve["api"], reserve["id"], "PW-NOX-WZ", "1.000",
                      {"valid_from": "2026-01-01", "valid_until": "2028-12-31"})
    m = auction_market(api, "PW-NOX-WZ")
    assert api.ok(api.get(f"/v1/markets/{m}"))["term_years"] == 3
    jia, yi, bing = (api.participant(n, "enterprise", uscc=uscc(f"91640100MA7{k}00001"))
                     for k, n in enumerate("甲乙丙"))
    for b in (jia, yi, bing):
        fund(api, b, "400000.00")
    aid = api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions", {
        "quantity": "4.048", "min_price": "21000", "increment": "500", "deposit": "20000.00",
        "max_bids_per_bidder": 3}))["order"]["id"]
    # The lot took the first batch's 4.048 (lowest serials first); the later batch stays free.
    assert bal(api, reserve, "PW-NOX-WZ")["available"] == "1.000"
    api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "registration"}))
    for b in (jia, yi, bing):
        api.ok(b["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}))
    api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "bidding", "duration_seconds": 3}))

    def bid(who: dict[str, Any], price: str, qty: str) -> dict[str, Any]:
        return api.ok(who["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": price, "quantity": qty}))

    yi_bid = bid(yi, "22000", "2.000")["order"]["id"]
    assert money(api, yi) == ("400000.00", "152000.00", "248000.00")  # 20,000 + 22,000 x 2.000 x 3
    bid(jia, "21500", "3.000")
    assert money(api, jia)[1] == "213500.00"  # 20,000 + 21,500 x 3.000 x 3
    jia_bid = bid(jia, "22500", "3.000")["order"]["id"]
    assert money(api, jia)[1] == "222500.00"  # the raise holds 202,500 for the new bid, nothing for the old
    bid(bing, "21000", "4.048")
    assert money(api, bing)[1] == "275024.00"  # 20,000 + 21,000 x 4.048 x 3
    wait_for_end(api, m, aid)
    api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "close"}))
    res = api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "allocate"}))["auction"]
    assert [(a["bid_id"], a["price"], a["quantity"], a["amount"]) for a in res["allocations"]] == [
        (jia_bid, "22500.00", "3.000", "202500.00"), (yi_bid, "22000.00", "1.048", "69168.00")]
    assert money(api, jia) == ("197500.00", "0.00", "197500.00")
    assert money(api, yi) == ("330832.00", "0.00", "330832.00")
    assert money(api, bing) == ("400000.00", "0.00", "400000.00")
    assert money(api, reserve) == ("271668.00", "0.00", "271668.00")
    trades = api.ok(api.get(f"/v1/markets/{m}/trades"))
    assert sorted(t["quantity"] for t in trades) == ["1.048", "3.000"]
    # Blocks carry the grant's term.
    [block] = api.ok(jia["api"].get("/v1/holdings"))["blocks"]
    assert (block["quantity"], block["valid_from"], block["valid_to"]) == ("3.000", "2025-04-10", "2028-04-09")
    rt = api.client.app.state.rt
    tomorrow = trading_day(datetime.now(UTC)) + timedelta(days=1)  # its open frees what was bought before it
    api.client.blocking_portal.call(sessions.release_t1, rt, "PW-NOX-WZ", tomorrow)
    # 乙 pledges what it bought; at the end of the term the registry does not expire a bank's collateral.
    bank = api.participant("宁夏银行 (示例)", "bank")
    p = api.ok(bank["api"].post("/v1/pledges", pledge_body(yi["id"], "1.048", instrument="PW-NOX-WZ",
                                                           secured_amount="50000.00", references=[],
                                                           pledgor_identifier=yi["uscc"])))
    api.ok(yi["api"].post(f"/v1/pledges/{p['id']}/confirm"))
    sweep = api.client.blocking_portal.call(expiry.expire_due, rt, date(2028, 4, 9))
    assert sweep["expired"] == [] and sweep["blocked"] == []  # 9 April 2028 is the term's last day
    sweep = api.client.blocking_portal.call(expiry.expire_due, rt, date(2028, 4, 10))
    assert [(e["account"], e["quantity"]) for e in sweep["expired"]] == [(jia["holding_account"], "3.000")]
    assert [(b["account"], b["quantity"], b["encumbrance"]) for b in sweep["blocked"]] == [
        (yi["holding_account"], "1.048", "pledged")]
    again = api.client.blocking_portal.call(expiry.expire_due, rt, date(2028, 4, 10))
    assert again["expired"] == []  # idempotent: nothing expires twice
    holdings = api.ok(jia["api"].get("/v1/holdings"))
    assert holdings["blocks"] == [] and bal(api, jia, "PW-NOX-WZ")["posted"] == "0.000"
    assert [(b["state"], b["quantity"], b["valid_to"]) for b in holdings["expired"]] == [
        ("expired", "3.000", "2028-04-09")]
    assert bal(api, yi, "PW-NOX-WZ")["posted"] == "1.048"  # still pledged
    assert bal(api, reserve, "PW-NOX-WZ")["available"] == "1.000"  # the later grant runs to 2028-12-31
    assert later["batch_id"] != block["batch"]
    # The operator's endpoint runs the same sweep as of today (nothing is due yet today).
    assert api.ok(api.post("/v1/instruments/expiry-sweeps", {}))["expired"] == []
    verified(api, db_url)


def test_lots_below_one_unit_with_plain_settings(api: Api, db_url: str) -> None:
    """A 0.300 t/yr and a 1.200 t/yr lot need no market settings: the auction grid is the base unit."""
    emission_right(api, "PW-SO2-FJ", 5, "福建省", "SO2")
    reserve = api.participant("福建省排污权储备 (示例)", "issuer")
    api.issue(reserve["api"], reserve["id"], "PW-SO2-FJ", "1.500",
              {"valid_from": "2025-01-01", "valid_until": "2029-12-31"})
    m = auction_market(api, "PW-SO2-FJ")
    rules = api.ok(api.get(f"/v1/markets/{m}"))
    assert (rules["lot"], rules["min_quantity"], rules["tick"], rules["term_years"]) == ("0.001", "0.001", "10.00", 5)
    a, b = api.participant("甲", "enterprise"), api.participant("乙", "enterprise")
    fund(api, a, "50000.00")
    fund(api, b, "50000.00")
    small = api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions", {
        "quantity": "0.300", "min_price": "4000", "increment": "100"}))["order"]["id"]
    big = api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions", {
        "quantity": "1.200", "min_price": "4000", "increment": "100", "min_bid_quantity": "0.100"}))["order"]["id"]
    for aid in (small, big):
        api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "registration"}))
        for who in (a, b):  # no deposit asked: registration holds nothing
            api.ok(who["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}))
        api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step",
                                   {"action": "bidding", "duration_seconds": 2}))
    assert money(api, a) == ("50000.00", "0.00", "50000.00")
    off = a["api"].post(f"/v1/markets/{m}/auctions/{small}/bids", {"price": "4005", "quantity": "0.300"})
    assert (off.status_code, off.json()["code"]) == (422, "off_tick")
    under = a["api"].post(f"/v1/markets/{m}/auctions/{big}/bids", {"price": "4000", "quantity": "0.050"})
    assert (under.status_code, under.json()["code"]) == (409, "quantity_below_minimum")  # the lot's minimum
    api.ok(a["api"].post(f"/v1/markets/{m}/auctions/{small}/bids", {"price": "4100", "quantity": "0.300"}))
    api.ok(a["api"].post(f"/v1/markets/{m}/auctions/{big}/bids", {"price": "4000", "quantity": "0.700"}))
    api.ok(b["api"].post(f"/v1/markets/{m}/auctions/{big}/bids", {"price": "4200", "quantity": "0.700"}))
    for aid in (small, big):
        wait_for_end(api, m, aid)
        api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "close"}))
        api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "allocate"}))
    # 甲: 0.300 x 4,100 x 5 = 6,150.00 and 0.500 (what 乙 left of 1.200) x 4,000 x 5 = 10,000.00.
    # 乙: 0.700 x 4,200 x 5 = 14,700.00.
    assert money(api, a) == ("33850.00", "0.00", "33850.00")
    assert money(api, b) == ("35300.00", "0.00", "35300.00")
    assert bal(api, a, "PW-SO2-FJ")["posted"] == "0.800" and bal(api, b, "PW-SO2-FJ")["posted"] == "0.700"
    assert money(api, reserve)[0] == "30850.00"
    verified(api, db_url)


def test_market_settings_are_refused_when_proposed(api: Api) -> None:
    emission_right(api, "PW-NOX-NX", 5, "宁夏回族自治区")
    # 0.01 CNY on a 0.001 t lot is not whole fen: refused at once, not when the second operator approves.
    r = api.propose("/v1/markets", {"instrument": "PW-NOX-NX", "mode": "auction",
                                    "settings": {"tick_fen": 1, "lot_base": 1}})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_rules"), r.text
    assert "10.00" in r.json()["detail"]
    r = api.propose("/v1/markets", {"instrument": "PW-NOX-NX", "mode": "listing",
                                    "settings": {"min_units": 5, "max_units": 2}})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_rules")
    assert [a for a in api.ok(api.get("/v1/operator-actions")) if a["kind"] == "defineMarket"] == []
    # A listing market may go below one unit too, in base units.
    ok = api.propose("/v1/markets", {"instrument": "PW-NOX-NX", "mode": "listing",
                                     "settings": {"lot_base": 100, "min_base": 300}})
    assert ok.status_code == 202
    market = api.approve(ok).json()
    assert (market["lot"], market["min_quantity"], market["tick"]) == ("0.100", "0.300", "0.10")


def test_refused_lots_and_registrations_are_409_and_their_retries_the_same(api: Api) -> None:
    emission_right(api, "PW-NOX-NX", 5, "宁夏回族自治区")
    reserve = api.participant("储备中心", "issuer")
    api.issue(reserve["api"], reserve["id"], "PW-NOX-NX", "2.000",
              {"valid_from": "2025-01-01", "valid_until": "2029-12-31"})
    m = auction_market(api, "PW-NOX-NX")
    path = f"/v1/markets/{m}/auctions"
    bad = reserve["api"].post(path, {"quantity": "1.000", "min_price": "21000", "increment": "500",
                                     "min_bid_quantity": "1.500"}, key="lot-1")
    assert (bad.status_code, bad.json()["code"]) == (409, "invalid_auction")
    assert reserve["api"].post(path, {"quantity": "1.000", "min_price": "21000", "increment": "500",
                                      "min_bid_quantity": "1.500"}, key="lot-1").content == bad.content
    assert bal(api, reserve, "PW-NOX-NX")["available"] == "2.000"  # the refused lot's units came back
    aid = api.ok(reserve["api"].post(path, {"quantity": "2.000", "min_price": "21000", "increment": "500",
                                            "deposit": "1000.00"}))["order"]["id"]
    bidder = api.participant("甲", "enterprise")
    fund(api, bidder, "5000.00")
    early = bidder["api"].post(f"{path}/{aid}/register", {}, key="reg-1")
    assert (early.status_code, early.json()["code"]) == (409, "registration_closed")
    assert money(api, bidder) == ("5000.00", "0.00", "5000.00")  # its deposit hold came straight back
    api.ok(reserve["api"].post(f"{path}/{aid}/step", {"action": "registration"}))
    # Registration is open now, but the retry of the refused request is still the first answer.
    assert bidder["api"].post(f"{path}/{aid}/register", {}, key="reg-1").content == early.content
    api.ok(bidder["api"].post(f"{path}/{aid}/register", {}, key="reg-2"))
    assert money(api, bidder) == ("5000.00", "1000.00", "4000.00")
    fund(api, reserve, "1000.00")
    own = reserve["api"].post(f"{path}/{aid}/register", {})
    assert (own.status_code, own.json()["code"]) == (409, "seller_cannot_bid")
    outsider = api.participant("乙", "enterprise")
    fund(api, outsider, "200000.00")
    api.ok(reserve["api"].post(f"{path}/{aid}/step", {"action": "bidding", "duration_seconds": 60}))
    r = outsider["api"].post(f"{path}/{aid}/bids", {"price": "21000", "quantity": "1.000"})
    assert (r.status_code, r.json()["code"]) == (409, "bidder_not_registered")
    poor = bidder["api"].post(f"{path}/{aid}/bids", {"price": "21000", "quantity": "1.000"})
    assert (poor.status_code, poor.json()["code"]) == (409, "insufficient_available")  # 105,000 > 4,000
    # Bidding is open: the terms bind the seller too (red team round 4, F4): only the venue cancels, with a reason.
    seller_cancel = reserve["api"].post(f"{path}/{aid}/step", {"action": "cancel"})
    assert (seller_cancel.status_code, seller_cancel.json()["code"]) == (409, "auction_binding")
    no_reason = api.post(f"{path}/{aid}/step", {"action": "cancel"})
    assert (no_reason.status_code, no_reason.json()["code"]) == (422, "reason_required")
    assert money(api, bidder) == ("5000.00", "1000.00", "4000.00")  # nothing was released by the refusals
    api.ok(api.post(f"{path}/{aid}/step", {"action": "cancel", "reason": "lot withdrawn by the venue"}))
    assert money(api, bidder) == ("5000.00", "0.00", "5000.00")
    assert bal(api, reserve, "PW-NOX-NX")["available"] == "2.000"


def test_a_raise_survives_a_restart_and_everything_is_released(db_url: str, settings: Any) -> None:
    """A restarted sequencer knows which auction a deposit or bid belongs to, and which one hold a raised
    bid has: cancelling after the restart gives every fen back."""
    from litestar.testing import TestClient

    from api.app import create_app
    from tests.helpers import bootstrap_operator

    m = "PW-NOX-NX.auction"
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as first:
        api = Api(first, bootstrap_operator(first))
        emission_right(api, "PW-NOX-NX", 5, "宁夏回族自治区")
        reserve = api.participant("储备中心", "issuer")
        api.issue(reserve["api"], reserve["id"], "PW-NOX-NX", "2.000",
                  {"valid_from": "2025-01-01", "valid_until": "2029-12-31"})
        bidder = api.participant("甲", "enterprise")
        fund(api, bidder, "300000.00")
        auction_market(api, "PW-NOX-NX", {"tick_fen": 1000, "lot_base": 1})
        aid = api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions", {
            "quantity": "2.000", "min_price": "21000", "increment": "500", "deposit": "5000.00",
            "max_bids_per_bidder": 3}))["order"]["id"]
        api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "registration"}))
        api.ok(bidder["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}))
        api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step",
                                   {"action": "bidding", "duration_seconds": 600}))
        api.ok(bidder["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "21000", "quantity": "1.000"}))
        api.ok(bidder["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "21500", "quantity": "2.000"}))
        assert money(api, bidder) == ("300000.00", "220000.00", "80000.00")  # 5,000 + 21,500 x 2 x 5
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as again:
        api2 = Api(again, bootstrap_operator(again))
        bidder2 = {"api": api2.as_(bidder["token"])}
        assert money(api2, bidder2) == ("300000.00", "220000.00", "80000.00")
        # A raise after the restart tops up from the recovered hold: 5,000 + 22,000 x 2 x 5.
        api2.ok(bidder2["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "22000", "quantity": "2.000"}))
        assert money(api2, bidder2) == ("300000.00", "225000.00", "75000.00")
        api2.ok(api2.post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "cancel", "reason": "restart drill"}))
        assert money(api2, bidder2) == ("300000.00", "0.00", "300000.00")
        assert bal(api2, {"api": api2.as_(reserve["token"])}, "PW-NOX-NX")["available"] == "2.000"
        verified(api2, db_url)


def test_listing_and_continuous_markets_price_emission_rights_by_term(api: Api, db_url: str) -> None:
    """Not only auctions: every trade of an emission right settles at price × t/yr × the term's years."""
    emission_right(api, "PW-COD-FJ", 5, "福建省", "COD")
    issuer = api.participant("福建省生态环境厅 (示例)", "issuer")
    seller, buyer = api.participant("甲", "enterprise"), api.participant("乙", "enterprise")
    api.issue(issuer["api"], seller["id"], "PW-COD-FJ", "10.000", {"valid_from": "2025-01-01",
                                                                     "valid_until": "2029-12-31"})
    fund(api, buyer, "300000.00")
    for mode in ("listing", "continuous"):
        api.ok(api.post("/v1/markets", {"instrument": "PW-COD-FJ", "mode": mode, "settings": {"sessions": []}}))
        api.ok(api.post(f"/v1/markets/PW-COD-FJ.{mode}/session", {"action": "open"}))
    listed = api.ok(seller["api"].post("/v1/markets/PW-COD-FJ.listing/listings",
                                       {"side": "sell", "price": "4000.00", "quantity": "2"}))
    took = api.ok(buyer["api"].post(f"/v1/markets/PW-COD-FJ.listing/listings/{listed['order']['id']}/take",
                                    {"quantity": "2"}))
    assert took["order"]["filled_amount"] == "40000.00"  # 4,000.00 x 2 t/yr x 5 years
    api.ok(seller["api"].post("/v1/markets/PW-COD-FJ.continuous/orders",
                              {"side": "sell", "price": "3900.50", "quantity": "3"}))
    bought = api.ok(buyer["api"].post("/v1/markets/PW-COD-FJ.continuous/orders",
                                      {"side": "buy", "price": "4000.00", "quantity": "3"}))
    assert bought["order"]["filled_amount"] == "58507.50"  # 3,900.50 x 3 x 5, at the maker's price
    assert money(api, buyer) == ("201492.50", "0.00", "201492.50")
    assert money(api, seller) == ("98507.50", "0.00", "98507.50")
    verified(api, db_url)
