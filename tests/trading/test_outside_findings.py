"""The outside tester's findings of issue #14, case by case (the units part is tests/trading/test_units.py).

- a refusal never tells a participant another's account or balance (block deals, here and in the walk);
- an emission right whose term has ended is not issued, not moved, and expires at the sweep even when
  T+1-locked;
- an import's quantity is its origin serial range, one unit per origin serial;
- public market events and trades name no participant;
- an auction's own rules are checked before anything is funded.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from exchange.core.calendar import SHANGHAI
from tests.helpers import Api, fresh_uscc, project_batch
from tests.pledges.helpers import pledge_body


def _term(start: date, years: int = 1) -> dict[str, str]:
    return {"valid_from": start.isoformat(),
            "valid_until": (start.replace(year=start.year + years) - timedelta(days=1)).isoformat()}


def _fund(api: Api, who: dict[str, Any], amount: str) -> None:
    api.ok(api.post("/v1/cash/deposits", {"participant_id": who["id"], "amount": amount, "bank_reference": "d"}))


def _market(api: Api, instrument: str, mode: str, **settings: Any) -> str:
    api.ok(api.post("/v1/markets", {"instrument": instrument, "mode": mode, "settings": {"sessions": [], **settings}}))
    m = f"{instrument}.{mode}"
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "open"}))
    return m


def _code(r: Any) -> tuple[int, str]:
    return r.status_code, r.json().get("code")


def test_a_right_whose_term_ended_is_not_issued_not_moved_and_expires_even_when_t1_locked(api: Api) -> None:
    api.instrument("PW-SO2-T", kind="emission_right", decimals=3,
                   attributes={"pollutant": "SO2", "region": "测试区", "validity_years": 1})
    issuer = api.participant("测试生态环境局", "issuer")
    api.authorise_issuer("PW-SO2-T", issuer["id"])
    holder = api.participant("排污单位甲", "enterprise", uscc=fresh_uscc())
    buyer = api.participant("排污单位乙", "enterprise")
    bank = api.participant("测试银行", "bank")
    term = _term(date.today() - timedelta(days=200))  # ends in about 164 days
    until = date.fromisoformat(term["valid_until"])
    # Issue 1 (the tester's case): a batch whose term has already ended is refused when requested.
    past = issuer["api"].post("/v1/issuances", {"instrument": "PW-SO2-T", "holder_id": holder["id"],
                                                 "quantity": "1.000", "attributes": _term(date(2023, 1, 1))})
    assert _code(past) == (422, "term_ended") and "2023-12-31" in past.json()["detail"]
    batch = api.issue(issuer["api"], holder["id"], "PW-SO2-T", "10.000", term)
    pending = api.ok(issuer["api"].post("/v1/issuances", {"instrument": "PW-SO2-T", "holder_id": holder["id"],
                                                           "quantity": "1.000", "attributes": term}))
    _fund(api, buyer, "100000.00")
    book = _market(api, "PW-SO2-T", "continuous")  # T+1 on: what the buyer bought stays locked a day
    api.ok(holder["api"].post(f"/v1/markets/{book}/orders", {"side": "sell", "price": "1000.00", "quantity": "2.000"}))
    api.ok(buyer["api"].post(f"/v1/markets/{book}/orders", {"side": "buy", "price": "1000.00", "quantity": "2.000"}))
    states = {b["state"] for b in api.ok(buyer["api"].get("/v1/holdings"))["blocks"]}
    assert states == {"t1_locked"}
    listing = _market(api, "PW-SO2-T", "listing")
    listed = api.ok(holder["api"].post(f"/v1/markets/{listing}/listings", {"side": "sell", "price": "1000.00",
                                                                         "quantity": "1.000"}))["order"]["id"]
    auction = _market(api, "PW-SO2-T", "auction")
    pledge = api.ok(bank["api"].post("/v1/pledges", pledge_body(holder["id"], "1.000", instrument="PW-SO2-T",
                                                                secured_amount="500.00", references=[],
                                                                pledgor_identifier=holder["uscc"])))
    # The term ends; the sweep has not run yet (it runs after midnight; a missed one waits a day).
    rt = api.client.app.state.rt
    later = datetime.combine(until + timedelta(days=2), time(10, 0), SHANGHAI)
    rt.clock = lambda: later
    # Issue 2: approving a request after its term ended issues nothing.
    r = api.post(f"/v1/issuances/{pending['id']}/approve", {})
    assert _code(r) == (409, "term_ended_before_approval"), r.text
    # Issue 3: nothing of the ended term moves: a transfer, a sell order, a listing, a lot, a pledge.
    moves = [
        holder["api"].post("/v1/transfers", {"to_participant": buyer["id"], "instrument": "PW-SO2-T",
                                             "quantity": "1.000"}),
        holder["api"].post("/v1/retirements", {"instrument": "PW-SO2-T", "quantity": "1.000",
                                               "purpose": "compliance", "beneficiary": "甲"}),
        holder["api"].post(f"/v1/markets/{book}/orders", {"side": "sell", "price": "1000.00", "quantity": "1.000"}),
        holder["api"].post(f"/v1/markets/{listing}/listings", {"side": "sell", "price": "1000.00",
                                                               "quantity": "1.000"}),
        holder["api"].post(f"/v1/markets/{auction}/auctions", {"quantity": "1.000", "min_price": "1000",
                                                               "increment": "10"}),
        holder["api"].post(f"/v1/pledges/{pledge['id']}/confirm", {}),
    ]
    # Listed before the end and not withdrawn yet (no close ran): not sold now either.
    take = buyer["api"].post(f"/v1/markets/{listing}/listings/{listed}/take", {"quantity": "1.000"})
    assert _code(take) == (409, "units_expired") and "blocks" not in take.json(), take.text
    api.ok(holder["api"].post(f"/v1/markets/{listing}/orders/{listed}/cancel", {}))
    for r in moves:
        assert _code(r) == (409, "units_expired"), r.text
        blocks = r.json()["blocks"]
        assert blocks and all(b["batch"] == batch["batch_id"] and b["valid_until"] == term["valid_until"]
                              for b in blocks), blocks
    # The sweep expires the holder's free units and the buyer's T+1-locked ones alike.
    sweep = api.ok(api.post("/v1/instruments/expiry-sweeps", {}))
    expired = {(e["account"], e["quantity"]) for e in sweep["expired"]}
    assert expired == {(holder["holding_account"], "8.000"), (buyer["holding_account"], "2.000")}, sweep
    assert sweep["blocked"] == []
    mine = api.ok(buyer["api"].get("/v1/holdings"))
    assert mine["blocks"] == [] and [b["quantity"] for b in mine["expired"]] == ["2.000"]
    assert api.ok(api.post("/v1/instruments/expiry-sweeps", {}))["expired"] == []  # idempotent


def test_a_t1_lock_over_two_terms_expires_the_ended_part_and_keeps_the_rest_locked(api: Api) -> None:
    api.instrument("PW-VOC-T", kind="emission_right", decimals=3,
                   attributes={"pollutant": "VOCs", "region": "测试区", "validity_years": 1})
    issuer = api.participant("测试生态环境局", "issuer")
    holder = api.participant("排污单位甲", "enterprise")
    buyer = api.participant("排污单位乙", "enterprise")
    early, late = _term(date.today() - timedelta(days=300)), _term(date.today() - timedelta(days=10))
    api.issue(issuer["api"], holder["id"], "PW-VOC-T", "1.000", early)
    api.issue(issuer["api"], holder["id"], "PW-VOC-T", "1.000", late)
    _fund(api, buyer, "100000.00")
    book = _market(api, "PW-VOC-T", "continuous")
    api.ok(holder["api"].post(f"/v1/markets/{book}/orders", {"side": "sell", "price": "1000.00", "quantity": "2.000"}))
    api.ok(buyer["api"].post(f"/v1/markets/{book}/orders", {"side": "buy", "price": "1000.00", "quantity": "2.000"}))
    rt = api.client.app.state.rt
    ended = date.fromisoformat(early["valid_until"]) + timedelta(days=1)
    rt.clock = lambda: datetime.combine(ended, time(0, 5), SHANGHAI)
    sweep = api.ok(api.post("/v1/instruments/expiry-sweeps", {}))
    assert [(e["account"], e["quantity"]) for e in sweep["expired"]] == [(buyer["holding_account"], "1.000")]
    blocks = api.ok(buyer["api"].get("/v1/holdings"))["blocks"]
    # The later term's unit is still locked until the next open (T+1 stays the rule for it).
    assert [(b["quantity"], b["state"], b["valid_to"]) for b in blocks] == [("1.000", "t1_locked", late["valid_until"])]


def test_an_import_is_as_many_units_as_its_origin_serials(api: Api) -> None:
    api.instrument("CCER", kind="ccer")
    api.instrument("CDCER", kind="cdcer", decimals=3)
    mee = api.participant("生态环境部", "issuer")
    api.authorise_issuer("CCER", mee["id"])
    api.authorise_issuer("CDCER", mee["id"])
    owner = api.participant("项目业主", "enterprise")

    def imp(instrument: str, quantity: str, start: int, end: int, project: str) -> Any:
        return mee["api"].post("/v1/issuances", {
            "instrument": instrument, "holder_id": owner["id"], "quantity": quantity,
            "attributes": project_batch(project), "origin_registry": "Verra",
            "origin_serials": {"start": start, "end": end}})

    r = imp("CCER", "500", 1, 10, "p1")  # the tester's case: serials 1-10 imported as 500 units
    assert _code(r) == (422, "origin_quantity_mismatch") and "10 units" in r.json()["detail"], r.text
    assert imp("CCER", "10", 1, 10, "p1").status_code == 201
    assert _code(imp("CDCER", "0.010", 11, 20, "p2")) == (422, "origin_quantity_mismatch")  # 10 serials = 10 t
    assert imp("CDCER", "10.000", 11, 20, "p2").status_code == 201


def test_public_market_events_and_trades_name_no_participant(api: Api) -> None:
    api.instrument("FCT-SM")
    seller, buyer = api.participant("卖方", "enterprise"), api.participant("买方", "enterprise")
    api.issue(api.participant("三明市林业局", "issuer")["api"], seller["id"], "FCT-SM", "100",
              {"region": "sanming", "ticket_number": "0000001", "issuing_bureau": "三明市林业局",
               "parcels": ["三明-测试林班-1"], "monitoring_period": {"start": "2016-01-01", "end": "2020-12-31"}})
    _fund(api, buyer, "10000.00")
    m = _market(api, "FCT-SM", "continuous")
    api.ok(seller["api"].post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "15.00", "quantity": "10"}))
    bought = api.ok(buyer["api"].post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "15.00", "quantity": "10"}))
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "close"}))
    # The taker's own answer names its own participant, never the maker's.
    accepted, trade = bought["events"][0], next(e for e in bought["events"] if e["kind"] == "trade")
    assert accepted["participant_id"] == buyer["id"] and "owner" not in accepted
    assert not {"maker_owner", "taker_owner", "maker_account", "taker_account"} & set(trade), trade
    public = api.client.get(f"/v1/markets/{m}/events")  # no key
    assert public.status_code == 200 and "participant:" not in public.text, public.text
    assert {e["actor"] for e in public.json()} <= {"operator", "calendar"}
    trades = api.client.get(f"/v1/markets/{m}/trades")
    assert str(seller["id"]) not in {str(v) for t in trades.json() for k, v in t.items() if k != "trade_id"}
    assert not {"buyer_id", "seller_id", "buy_order", "sell_order"} & set(trades.json()[0])


def test_an_auctions_rules_come_before_its_cash(api: Api) -> None:
    api.instrument("PW-COD-A", kind="emission_right", decimals=3,
                   attributes={"pollutant": "COD", "region": "测试区", "validity_years": 5})
    reserve = api.participant("排污权储备中心", "issuer")
    poor = api.participant("无资金竞买人", "enterprise")
    api.issue(reserve["api"], reserve["id"], "PW-COD-A", "2.000", _term(date.today().replace(day=1), 5))
    m = _market(api, "PW-COD-A", "auction")
    path = f"/v1/markets/{m}/auctions"
    # A lot's minimum price off the tick is off_tick (422), as an off-tick bid is -- not 409 invalid_auction.
    off = reserve["api"].post(path, {"quantity": "1.000", "min_price": "21005", "increment": "500"})
    assert _code(off) == (422, "off_tick"), off.text
    paid = api.ok(reserve["api"].post(path, {"quantity": "1.000", "min_price": "21000", "increment": "500",
                                             "deposit": "1000.00"}))["order"]["id"]
    free = api.ok(reserve["api"].post(path, {"quantity": "1.000", "min_price": "21000", "increment": "500",
                                             "deposit": "0"}))["order"]["id"]
    for aid in (paid, free):
        api.ok(reserve["api"].post(f"{path}/{aid}/step", {"action": "registration"}))
    # The seller, without a fen, registering for its own auction: seller_cannot_bid, not insufficient_available.
    own = reserve["api"].post(f"{path}/{paid}/register", {}, key="own")
    assert _code(own) == (409, "seller_cannot_bid"), own.text
    assert reserve["api"].post(f"{path}/{paid}/register", {}, key="own").content == own.content  # its retry
    api.ok(poor["api"].post(f"{path}/{free}/register", {}))
    api.ok(reserve["api"].post(f"{path}/{free}/step", {"action": "bidding", "duration_seconds": 60}))
    # A bid above the lot from a bidder without cash: the lot's rule, not the cash.
    above = poor["api"].post(f"{path}/{free}/bids", {"price": "21000", "quantity": "2.000"})
    assert _code(above) == (409, "quantity_exceeds_remaining"), above.text
    assert "2.000" in above.json()["detail"] and "1.000" in above.json()["detail"]
    short = poor["api"].post(f"{path}/{free}/bids", {"price": "21000", "quantity": "1.000"})
    assert _code(short) == (409, "insufficient_available") and short.json()["detail"] == \
        "your account has 0.00 CNY available, needs 105000.00 CNY", short.text
    holds = api.ok(poor["api"].get("/v1/holdings"))["balances"]
    assert all(b["pending"] in ("0.00", "0.000") for b in holds)  # nothing was held for the refusals
