"""Enforcement by sale on the exchange (issue #14): the lot goes to the bank's pledge escrow and is sold
by an auction or a listing on the bank's behalf; every settlement pays the waterfall at once -- the
pledgee's costs, interest and principal, then the junior claimant, then the owner -- and the registration
ends `enforced` and leaves the public register. Real market, real ledger, every fen checked."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from exchange.core.database import asyncpg_dsn
from exchange.core.idempotency import internal
from ledger.verify import verify_database
from tests.helpers import Api
from tests.pledges.helpers import Receiver, days, open_bidding, pledge_body, world
from tests.security.helpers import sql

NOTICE = {"reference": "兴银三明违通字(2025)第0007号", "notice_date": days(0)}


def cash(api: Api, who: dict) -> str:
    bal = [b for b in api.ok(who["api"].get("/v1/holdings"))["balances"] if b["instrument"] == "CNY"]
    return bal[0]["posted"] if bal else "0.00"


def units(api: Api, who: dict) -> list[tuple[int, int, str]]:
    return [(b["serial_start"], b["serial_end"], b["state"]) for b in api.ok(who["api"].get("/v1/holdings"))["blocks"]
            if b["instrument"] == "FCT-SM"]


def deposit(api: Api, who: dict, amount: str) -> None:
    api.ok(api.post("/v1/cash/deposits", {"participant_id": who["id"], "amount": amount,
                                           "bank_reference": f"dep-{who['id']}-{amount}"}))


def market(api: Api, mode: str, **settings: Any) -> str:
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": mode, "settings": {"sessions": [], **settings}}))
    m = f"FCT-SM.{mode}"
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "open"}))
    return m


def pledged(api: Api, w: dict, quantity: str, **extra: Any) -> dict:
    p = api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"], quantity, **extra)))
    return api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/confirm"))


def junior_claim(api: Api, w: dict, pid: int, amount: str) -> int:
    cid = api.ok(w["junior"]["api"].post(f"/v1/pledges/{pid}/claims", {
        "loan_contract": "三明农商借字2024-31", "amount": amount, "term_end": days(200)}))["id"]
    api.ok(w["owner"]["api"].post(f"/v1/pledges/claims/{cid}/confirm"))
    return cid


def verify(api: Api, db_url: str) -> None:
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_auction_pays_costs_interest_principal_junior_and_owner_to_the_fen(api: Api, db_url: str) -> None:
    w = world(api, "1500")
    bank, owner, junior = w["bank"], w["owner"], w["junior"]
    m = market(api, "auction", tick_fen=100, lot_base=1, fee_bps=5)
    a, b = api.participant("福建某碳资产公司", "enterprise"), api.participant("厦门某环保企业", "enterprise")
    deposit(api, a, "3100000.00")
    deposit(api, b, "2000000.00")
    with Receiver() as rx:
        for who in (bank, junior):  # banks take webhooks; the pledgor reads its event stream
            api.ok(who["api"].client.put("/v1/pledges/webhook", json={"url": rx.url}, headers={
                "Authorization": f"Bearer {who['token']}", "Idempotency-Key": f"hook-{who['id']}"}))
        p = pledged(api, w, "1000", secured_amount="4500000.00")
        pid = p["id"]
        claim = junior_claim(api, w, pid, "200000.00")
        # Default declared with its notice; the bank claims principal, interest and its costs of realisation.
        p = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {
            "method": "exchange", "reason": "到期未还本付息", "default_notice": NOTICE,
            "claim": {"principal": "4500000.00", "interest": "180000.00", "realisation_costs": "20000.00"}}))
        assert p["status"] == "enforcing" and p["blocks"] == [] and p["enforcement"]["unsold"] == "1000"
        assert [(x["component"], x["secured"], x["unsecured"]) for x in p["enforcement"]["claim"]] == [
            ("realisation_costs", "20000.00", "0.00"), ("interest", "180000.00", "0.00"),
            ("principal", "4500000.00", "0.00")]
        # The pledgor sees the declaration and the start of the sale.
        seen = [e["type"] for e in api.ok(owner["api"].get(f"/v1/pledges/{pid}/events"))]
        assert seen[-2:] == ["default_declared", "exchange_sale_started"]
        assert "default_declared" in [e["type"] for e in api.ok(owner["api"].get("/v1/pledges/events"))]
        rx.wait_for("default_declared")

        # The bank cannot sell the escrowed units as its own; it auctions them through the pledge.
        own = bank["api"].post(f"/v1/markets/{m}/auctions", {"quantity": "1000", "min_price": "4500",
                                                             "increment": "100"})
        assert own.status_code == 409 and own.json()["code"] == "insufficient_available"
        sale = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement/sales", {
            "market_id": m, "auction": {"min_price": "4500", "increment": "100", "deposit": "10000.00"}}), 201)
        aid = sale["order"]["id"]
        assert sale["order"]["kind"] == "auction" and sale["pledge"]["enforcement"]["sales"][0]["order_id"] == aid
        assert api.ok(api.client.get(f"/v1/markets/{m}/auctions/{aid}"))["enforcement_of"] == p["number"]
        again = bank["api"].post(f"/v1/pledges/{pid}/enforcement/sales", {
            "market_id": m, "auction": {"min_price": "4500", "increment": "100"}})
        assert (again.status_code, again.json()["code"]) == (409, "lot_on_sale")
        api.ok(bank["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "registration"}))
        for who in (a, b):
            api.ok(who["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}))
        api.ok(open_bidding(bank["api"], m, aid, 1))  # after the registration period (tests: 1 s)
        api.ok(a["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "5000", "quantity": "600"}))
        api.ok(b["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "4800", "quantity": "400"}))
        time.sleep(1.1)
        api.ok(bank["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "close"}))
        api.ok(bank["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "allocate"}))

        # 600 t x 5,000.00 = 3,000,000.00 (seller fee 0.05 % = 1,500.00) and 400 t x 4,800.00 =
        # 1,920,000.00 (fee 960.00): 4,917,540.00 net, paid as each allocation settled.
        p = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
        assert p["status"] == "enforced", p["enforcement"]
        e = p["enforcement"]
        assert (e["received"], e["sold"], e["unsold"]) == ("4917540.00", "1000", "0")
        assert e["paid"] == {"pledgee/realisation_costs": "20000.00", "pledgee/interest": "180000.00",
                             "pledgee/principal": "4500000.00", f"claim:{claim}": "200000.00",
                             "owner": "17540.00"}
        parts = [x for x in api.ok(bank["api"].get(f"/v1/pledges/{pid}/events")) if x["type"] == "proceeds_distributed"]
        assert [(x["details"]["price"], x["details"]["quantity"], x["details"]["amount"]) for x in parts] == [
            ("5000.00", "600", "2998500.00"), ("4800.00", "400", "1919040.00")]
        first = {(d["party"], d["component"]): d["paid"] for d in parts[0]["details"]["distribution"]}
        assert first[("pledgee", "principal")] == "2798500.00" and first[("owner", None)] == "0.00"
        second = {(d["party"], d["component"]): d["paid"] for d in parts[1]["details"]["distribution"]}
        assert (second[("pledgee", "principal")], second[(f"claim:{claim}", None)], second[("owner", None)]) == (
            "1701500.00", "200000.00", "17540.00")

        # Webhooks: decimal strings in CNY and tonnes, with price and quantity; the junior sees its line only.
        hooks = [(h, json.loads(body)) for h, body in rx.received if h["X-Envx-Event-Type"] == "proceeds_distributed"]
        deadline = time.monotonic() + 10
        while len(hooks) < 4 and time.monotonic() < deadline:  # two parts, two banks
            time.sleep(0.05)
            hooks = [(h, json.loads(bd)) for h, bd in rx.received if h["X-Envx-Event-Type"] == "proceeds_distributed"]
        assert len(hooks) == 4
        for _, ev in hooks:
            assert ev["details"]["price"] in ("5000.00", "4800.00") and ev["details"]["quantity"] in ("600", "400")
            assert ev["instrument"] == "FCT-SM"
            assert all(isinstance(d["paid"], str) for d in ev["details"]["distribution"])
        to_junior = [ev for h, ev in hooks if "三明农商" in json.dumps(ev, ensure_ascii=False)
                     or {d["party"] for d in ev["details"]["distribution"]} == {f"claim:{claim}"}]
        assert len(to_junior) == 2 and all("4500000" not in json.dumps(ev) for ev in to_junior)

    # No webhook body of any kind carries a base-unit integer where an amount or a quantity goes.
    money = ("amount", "price", "value", "paid", "claimed", "secured", "unsecured", "received", "fee",
             "secured_amount", "quantity", "sold", "unsold", "lot_quantity", "units", "outstanding")

    def walk(v: Any, key: str = "") -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, k)
        elif isinstance(v, list):
            for x in v:
                walk(x, key)
        else:
            assert not (key in money and isinstance(v, int) and not isinstance(v, bool)), (key, v)

    bodies = sql(api.client, "SELECT event_type, body FROM pledge_outbox")
    assert {r.event_type for r in bodies} >= {"default_declared", "exchange_sale_started", "sale_listed",
                                              "proceeds_distributed", "enforced", "claim_registered"}
    for r in bodies:
        walk(json.loads(bytes(r.body)))
    assert cash(api, bank) == "4700000.00" and cash(api, junior) == "200000.00" and cash(api, owner) == "17540.00"
    assert units(api, a) == [(1, 600, "t1_locked")] and units(api, b) == [(601, 1000, "t1_locked")]
    assert units(api, owner) == [(1001, 1500, "held")]
    # Enforced: no longer the owner's encumbrance in the public register.
    pub = api.client.get("/v1/public/pledges", params={"name": "三明市沙县林业合作社"}).json()
    assert pub["certificate"]["results"] == []
    verify(api, db_url)


def test_an_auction_on_the_banks_behalf_takes_raises_and_allocates_per_bidder(api: Api, db_url: str) -> None:
    """The bank's lot is an auction like any other: a refused lot is a 409 whose retry is the same problem
    (and leaves the lot free for another), a raise replaces the bidder's standing bid and its one hold, and
    allocation is per bidder by final price; each allocation settled pays the waterfall."""
    w = world(api, "200")
    bank, owner = w["bank"], w["owner"]
    m = market(api, "auction", tick_fen=100, lot_base=1)
    a, b = api.participant("竞买人甲", "enterprise"), api.participant("竞买人乙", "enterprise")
    deposit(api, a, "250000.00")
    deposit(api, b, "250000.00")
    p = pledged(api, w, "100", secured_amount="300000.00")
    pid = p["id"]
    api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {"method": "exchange", "reason": "违约",
                                                              "default_notice": NOTICE}))
    path = f"/v1/pledges/{pid}/enforcement/sales"
    bad_terms = {"market_id": m, "auction": {"min_price": "3000", "increment": "100", "min_bid_quantity": "150"}}
    bad = bank["api"].post(path, bad_terms, key="lot-1")
    assert (bad.status_code, bad.json()["code"]) == (409, "invalid_auction")
    assert bank["api"].post(path, bad_terms, key="lot-1").content == bad.content
    assert "sale_listed" not in [e["type"] for e in api.ok(bank["api"].get(f"/v1/pledges/{pid}/events"))]
    sale = api.ok(bank["api"].post(path, {"market_id": m, "auction": {
        "min_price": "3000", "increment": "100", "max_bids_per_bidder": 3}}, key="lot-2"), 201)
    aid = sale["order"]["id"]
    assert sale["order"]["quantity"] == "100"  # the refused lot's units came back to the escrow, free
    api.ok(bank["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "registration"}))
    for who in (a, b):
        api.ok(who["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}))
    api.ok(open_bidding(bank["api"], m, aid, 2))

    def bid(who: dict, price: str, qty: str) -> int:
        return int(api.ok(who["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids",
                                          {"price": price, "quantity": qty}))["order"]["id"])

    bid(a, "3000", "60")
    b_bid = bid(b, "3100", "60")
    a_bid = bid(a, "3200", "60")  # a raise: one hold of 192,000.00 for the new bid, none for the old
    held = [x for x in api.ok(a["api"].get("/v1/holdings"))["balances"] if x["instrument"] == "CNY"]
    assert held[0]["pending"] == "192000.00"
    view = api.ok(api.client.get(f"/v1/markets/{m}/auctions/{aid}"))
    assert (view["bidders"], view["bids_placed"], view["enforcement_of"]) == (2, 3, p["number"])
    time.sleep(max(0.0, datetime.fromisoformat(view["ends_at"]).timestamp() - time.time()) + 0.05)
    api.ok(bank["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "close"}))
    res = api.ok(bank["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "allocate"}))["auction"]
    assert "participant_id" not in json.dumps(res)
    assert [(x["bid_id"], x["price"], x["quantity"], x["amount"]) for x in res["allocations"]] == [
        (a_bid, "3200.00", "60", "192000.00"), (b_bid, "3100.00", "40", "124000.00")]
    # 316,000.00 in two settlements: the bank's 300,000.00, then the owner's 16,000.00.
    p = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
    assert p["status"] == "enforced", p["enforcement"]
    assert (p["enforcement"]["received"], p["enforcement"]["paid"]) == (
        "316000.00", {"pledgee/principal": "300000.00", "owner": "16000.00"})
    assert cash(api, bank) == "300000.00" and cash(api, owner) == "16000.00"
    assert cash(api, a) == "58000.00" and cash(api, b) == "126000.00"
    verify(api, db_url)


def test_listing_sold_in_two_fills_after_a_liquidation_level(api: Api, db_url: str) -> None:
    w = world(api, "800")
    bank, owner = w["bank"], w["owner"]
    m = market(api, "listing", reference_price_fen=400_000)
    t1, t2 = api.participant("买方甲", "enterprise"), api.participant("买方乙", "enterprise")
    deposit(api, t1, "900000.00")
    deposit(api, t2, "1300000.00")
    p = pledged(api, w, "500", secured_amount="1500000.00")
    pid = p["id"]
    # The close at 2,000.00: 500 t x 2,000.00 = 1,000,000.00 < 100 % of 1,500,000.00: liquidation, once the
    # cure (here: until now, instead of the next open) has passed.
    api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                 "instrument": "FCT-SM", "price": "2000.00", "as_of": days(0),
                                                 "cure_deadline": datetime.now(UTC).isoformat()}))
    p = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {"method": "exchange", "reason": "平仓线"}))
    assert p["enforcement"]["ground"]["type"] == "liquidation"
    lst = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement/sales", {"market_id": m, "price": "4000.00"}), 201)
    lid = lst["order"]["id"]
    [shown] = api.ok(api.client.get(f"/v1/markets/{m}/listings"))
    assert (shown["listing_id"], shown["quantity"], shown["enforcement_of"]) == (lid, "500", p["number"])
    # While the listing runs, the enforcement cannot be withdrawn.
    r = bank["api"].post(f"/v1/pledges/{pid}/enforcement/cancel", {})
    assert (r.status_code, r.json()["code"]) == (409, "sale_live")

    api.ok(t1["api"].post(f"/v1/markets/{m}/listings/{lid}/take", {"quantity": "200"}))
    mid = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
    assert mid["status"] == "enforcing" and mid["enforcement"]["paid"] == {"pledgee/principal": "800000.00"}
    # The public register still shows the lot encumbered while it is being sold.
    assert len(api.client.get("/v1/public/pledges", params={"uscc": "91350427MA2XY8123J"}).json()[
        "certificate"]["results"]) == 1
    api.ok(t2["api"].post(f"/v1/markets/{m}/listings/{lid}/take", {"quantity": "300"}))
    done = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
    assert done["status"] == "enforced"
    assert done["enforcement"]["paid"] == {"pledgee/principal": "1500000.00", "owner": "500000.00"}
    types = [e["type"] for e in api.ok(owner["api"].get(f"/v1/pledges/{pid}/events"))]
    assert types[-5:] == ["sale_listed", "proceeds_distributed", "proceeds_distributed", "enforced", "sale_ended"]
    assert cash(api, bank) == "1500000.00" and cash(api, owner) == "500000.00"
    assert api.client.get("/v1/public/pledges", params={"uscc": "91350427MA2XY8123J"}).json()[
        "certificate"]["results"] == []
    verify(api, db_url)


def test_unsold_units_wait_for_another_sale_and_go_back_once_the_claims_are_paid(api: Api, db_url: str) -> None:
    w = world(api, "300")
    bank, owner = w["bank"], w["owner"]
    m = market(api, "listing", reference_price_fen=100_000)
    buyer = w["buyer"]
    deposit(api, buyer, "200000.00")
    p = pledged(api, w, "200", secured_amount="150000.00")
    pid = p["id"]
    p = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {"method": "exchange", "reason": "违约",
                                                                   "default_notice": NOTICE}))
    # Half the lot on sale; 50 t sell, the listing is withdrawn: the rest waits in escrow, unsold.
    lid = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement/sales", {
        "market_id": m, "price": "1000.00", "quantity": "100"}), 201)["order"]["id"]
    api.ok(buyer["api"].post(f"/v1/markets/{m}/listings/{lid}/take", {"quantity": "50"}))
    api.ok(bank["api"].post(f"/v1/markets/{m}/orders/{lid}/cancel", {}))
    p = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
    assert (p["status"], p["enforcement"]["unsold"], p["enforcement"]["received"]) == ("enforcing", "150", "50000.00")
    r = bank["api"].post(f"/v1/pledges/{pid}/enforcement/cancel", {})
    assert (r.status_code, r.json()["code"]) == (409, "sale_partly_done")
    # Another listing of the rest; 100 t more pay the claim in full (150,000.00), the listing ends, and
    # the 50 t left belong to the pledgor again: back in its account, free.
    lid2 = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement/sales", {
        "market_id": m, "price": "1000.00"}), 201)["order"]["id"]
    api.ok(buyer["api"].post(f"/v1/markets/{m}/listings/{lid2}/take", {"quantity": "100"}))
    p = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
    assert p["status"] == "enforcing" and p["enforcement"]["paid"] == {"pledgee/principal": "150000.00"}
    r = bank["api"].post(f"/v1/pledges/{pid}/enforcement/sales", {"market_id": m, "price": "1000.00"})
    assert (r.status_code, r.json()["code"]) == (409, "claims_paid")
    api.ok(bank["api"].post(f"/v1/markets/{m}/orders/{lid2}/cancel", {}))
    p = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
    assert p["status"] == "enforced" and p["enforcement"]["returned"] == [[151, 200]]
    assert units(api, owner) == [(151, 300, "held")]
    assert cash(api, bank) == "150000.00" and cash(api, owner) == "0.00"
    verify(api, db_url)


def test_cancel_before_any_sale_locks_the_lot_again_and_expiry_returns_the_unsold_rest(api: Api,
                                                                                       db_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    w = world(api, "300")
    bank, owner = w["bank"], w["owner"]
    m = market(api, "listing", reference_price_fen=100_000)
    p = pledged(api, w, "100", secured_amount="50000.00")
    pid, number = p["id"], p["number"]
    api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {"method": "exchange", "reason": "违约",
                                                              "default_notice": NOTICE}))
    # Withdrawn before anything sold: the same serials locked again, the registration active again.
    p = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement/cancel", {}))
    assert (p["status"], p["number"], p["enforcement"]) == ("active", number, None)
    assert [(b["start"], b["end"]) for b in p["blocks"]] == [(1, 100)] and p["hold_id"] is not None
    assert units(api, owner)[0] == (1, 100, "pledged")

    # Enforced again; 30 t sell; then the registration reaches its expiry with nothing on sale.
    api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {"method": "exchange", "reason": "违约"}))
    deposit(api, w["buyer"], "50000.00")
    lid = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement/sales", {"market_id": m, "price": "1000.00"}),
                 201)["order"]["id"]
    api.ok(w["buyer"]["api"].post(f"/v1/markets/{m}/listings/{lid}/take", {"quantity": "30"}))
    rt = api.client.app.state.rt

    async def expire_now() -> None:
        async with rt.tx() as conn:
            await conn.execute(text("UPDATE pledges SET expires_at = :t WHERE id = :i"),
                               {"t": datetime.now(UTC) - timedelta(seconds=1), "i": pid})

    api.client.blocking_portal.call(expire_now)
    assert api.ok(api.post("/v1/pledges/expiry-sweeps", {}))["pledges_expired"] == []  # the listing runs
    api.ok(bank["api"].post(f"/v1/markets/{m}/orders/{lid}/cancel", {}))
    assert api.ok(api.post("/v1/pledges/expiry-sweeps", {}))["pledges_expired"] == [pid]
    p = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
    # The 70 t unsold go back to the pledgor; the bank's unpaid 20,000.00 is an unsecured claim now.
    assert p["status"] == "expired" and p["enforcement"]["returned"] == [[31, 100]]
    assert p["enforcement"]["paid"] == {"pledgee/principal": "30000.00"}
    assert units(api, owner) == [(31, 300, "held")]
    verify(api, db_url)


def test_settlements_the_hook_missed_are_booked_by_the_reconciliation(api: Api, db_url: str) -> None:
    """A crash between a trade's settlement and its payout (here: no settlement hook at all) loses
    nothing: the worker books every settled trade and ended listing from the market's own tables."""
    from exchange.pledging import exchange_sale as pledging

    w = world(api, "100")
    bank, owner = w["bank"], w["owner"]
    m = market(api, "listing", reference_price_fen=100_000)
    deposit(api, w["buyer"], "100000.00")
    pid = pledged(api, w, "100", secured_amount="60000.00")["id"]
    api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {"method": "exchange", "reason": "违约",
                                                              "default_notice": NOTICE}))
    lid = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement/sales", {"market_id": m, "price": "1000.00"}),
                 201)["order"]["id"]
    rt = api.client.app.state.rt
    hooks = list(rt.settlement_hooks)
    rt.settlement_hooks.clear()
    try:
        api.ok(w["buyer"]["api"].post(f"/v1/markets/{m}/listings/{lid}/take", {"quantity": "40"}))
        api.ok(w["buyer"]["api"].post(f"/v1/markets/{m}/listings/{lid}/take", {"quantity": "60"}))
    finally:
        rt.settlement_hooks.extend(hooks)
    p = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
    if p["status"] == "enforcing":  # the worker's own sweep may already have caught up
        assert api.client.blocking_portal.call(pledging.reconcile_sales, rt) >= 1
    assert api.client.blocking_portal.call(pledging.reconcile_sales, rt) == 0  # nothing left: idempotent
    p = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
    assert p["status"] == "enforced"
    assert p["enforcement"]["paid"] == {"pledgee/principal": "60000.00", "owner": "40000.00"}
    assert cash(api, bank) == "60000.00" and cash(api, owner) == "40000.00"
    verify(api, db_url)


def test_listing_on_the_banks_behalf_is_idempotent_even_after_a_crash_between_market_and_record(api: Api) -> None:
    from exchange.security.keys import authenticate
    from exchange.trading import orders

    w = world(api, "100")
    bank = w["bank"]
    m = market(api, "listing", reference_price_fen=100_000)
    first = pledged(api, w, "40", secured_amount="100.00")
    second = pledged(api, w, "40", secured_amount="100.00", references=[{"source": "中登网", "reference": "I-2"}])
    for p in (first, second):
        api.ok(bank["api"].post(f"/v1/pledges/{p['id']}/enforcement", {"method": "exchange", "reason": "违约",
                                                                      "default_notice": NOTICE}))
    body = {"market_id": m, "price": "1000.00"}
    a = api.ok(bank["api"].post(f"/v1/pledges/{first['id']}/enforcement/sales", body, key="sale-1"), 201)
    b = api.ok(bank["api"].post(f"/v1/pledges/{first['id']}/enforcement/sales", body, key="sale-1"), 201)
    assert a["order"]["id"] == b["order"]["id"]
    r = bank["api"].post(f"/v1/pledges/{first['id']}/enforcement/sales", {**body, "price": "999.00"}, key="sale-1")
    assert (r.status_code, r.json()["code"]) == (409, "idempotency_conflict")
    # The market took the listing but the process died before the registration recorded it: the retry
    # finds the order by its derived client id and records it once.
    rt = api.client.app.state.rt

    p = api.ok(bank["api"].get(f"/v1/pledges/{second['id']}"))

    async def place_only() -> int:
        async with rt.read() as conn:
            who = await authenticate(conn, rt.key_cache, bank["token"])
        assert who is not None
        escrow = orders.EscrowSale(int(p["enforcement"]["escrow_account"]), ((41, 80),), second["id"],
                                   second["number"])
        out = await orders.post_listing(rt, who, m, internal("enforcement", second["id"], "sale-2"), side="sell",
                                        price="1000.00", quantity="40", escrow=escrow)
        return int(out["order"]["id"])

    placed = api.client.blocking_portal.call(place_only)
    c = api.ok(bank["api"].post(f"/v1/pledges/{second['id']}/enforcement/sales", body, key="sale-2"), 201)
    assert c["order"]["id"] == placed
    events = [e["type"] for e in api.ok(bank["api"].get(f"/v1/pledges/{second['id']}/events"))]
    assert events.count("sale_listed") == 1
    assert api.ok(bank["api"].get(f"/v1/pledges/{second['id']}"))["status"] == "enforcing"


def test_a_restarted_market_still_sells_from_the_escrow_and_pays_out(db_url: str, settings: Any) -> None:
    """After a restart the sequencer rebuilds its open orders from the database: an enforcement listing
    must still deliver from the escrow and be paid into it (not the bank's own accounts)."""
    from litestar.testing import TestClient

    from api.app import create_app
    from tests.helpers import bootstrap_operator

    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as first:
        api = Api(first, bootstrap_operator(first))
        w = world(api, "100")
        m = market(api, "listing", reference_price_fen=100_000)
        pid = pledged(api, w, "100", secured_amount="30000.00")["id"]
        api.ok(w["bank"]["api"].post(f"/v1/pledges/{pid}/enforcement", {"method": "exchange", "reason": "违约",
                                                                         "default_notice": NOTICE}))
        lid = api.ok(w["bank"]["api"].post(f"/v1/pledges/{pid}/enforcement/sales", {
            "market_id": m, "price": "1000.00"}), 201)["order"]["id"]
        deposit(api, w["buyer"], "100000.00")
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as again:
        api = Api(again, bootstrap_operator(again, "重启后的 operator"))
        buyer = {**w["buyer"], "api": api.as_(w["buyer"]["token"])}
        bank = {**w["bank"], "api": api.as_(w["bank"]["token"])}
        owner = {**w["owner"], "api": api.as_(w["owner"]["token"])}
        api.ok(buyer["api"].post(f"/v1/markets/{m}/listings/{lid}/take", {"quantity": "100"}))
        p = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
        assert p["status"] == "enforced" and p["enforcement"]["paid"] == {"pledgee/principal": "30000.00",
                                                                         "owner": "70000.00"}
        assert cash(api, bank) == "30000.00" and cash(api, owner) == "70000.00"
        verify(api, db_url)
