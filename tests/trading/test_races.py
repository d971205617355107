"""Races through HTTP: many takers on one listing, many orders on one cash balance."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from exchange.core.database import asyncpg_dsn
from ledger.verify import verify_database
from tests.helpers import Api, ticket


def test_many_takers_one_listing_and_many_orders_one_balance(api: Api, db_url: str) -> None:
    api.instrument("FCT-SM")
    issuer = api.participant("issuer", "issuer")
    seller = api.participant("seller", "enterprise")
    takers = [api.participant(f"taker{i}", "enterprise") for i in range(8)]
    api.issue(issuer["api"], seller["id"], "FCT-SM", "1000", ticket(1))
    for t in takers:
        api.ok(api.post("/v1/cash/deposits", {"participant_id": t["id"], "amount": "10000.00",
                                               "bank_reference": f"d{t['id']}"}))
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "listing", "settings": {"sessions": []}}))
    mk = "FCT-SM.listing"
    api.ok(api.post(f"/v1/markets/{mk}/session", {"action": "open"}))
    listing = api.ok(seller["api"].post(f"/v1/markets/{mk}/listings", {"side": "sell", "price": "10.00",
                                                                        "quantity": "100"}))["order"]["id"]

    def take(i: int) -> tuple[int, dict]:
        t = takers[i % len(takers)]
        r = t["api"].post(f"/v1/markets/{mk}/listings/{listing}/take", {"quantity": "7"}, key=f"take-{i}")
        return r.status_code, r.json()

    with ThreadPoolExecutor(24) as pool:
        out = list(pool.map(take, range(40)))
    filled = sum(int(r["order"]["filled_quantity"]) for code, r in out if code == 201)
    # 14 takes of 7 fill; the rest find the listing gone or with only 2 left: never more than listed.
    assert filled == 98, out
    left = [x for x in api.ok(api.client.get(f"/v1/markets/{mk}/listings")) if x["listing_id"] == listing]
    assert left[0]["quantity"] == "2"
    statuses = [r["order"]["status"] if code == 201 else r["code"] for code, r in out]
    assert statuses.count("filled") == 14
    assert set(statuses) - {"filled"} <= {"rejected", "unknown_listing"}, statuses
    # Every refused take gave its cash back; the takers together paid exactly 98 x 10.00.
    paid = sum(10000_00 - int(x["available"].replace(".", "")) for t in takers
               for x in api.ok(t["api"].get("/v1/holdings"))["balances"] if x["instrument"] == "CNY")
    assert paid == 98 * 10_00

    # One balance, many orders: 10,000.00 funds exactly five buy listings of 100 t at 20.00.
    rich = takers[0]
    cash_left = next(x for x in api.ok(rich["api"].get("/v1/holdings"))["balances"] if x["instrument"] == "CNY")
    budget = int(cash_left["available"].split(".")[0])
    can = budget // 2000

    def bid(i: int) -> tuple[int, str]:
        r = rich["api"].post(f"/v1/markets/{mk}/listings", {"side": "buy", "price": "20.00", "quantity": "100"},
                             key=f"bid-{i}")
        return r.status_code, r.json().get("code", "")

    with ThreadPoolExecutor(24) as pool:
        bids = list(pool.map(bid, range(30)))
    assert sum(1 for c, _ in bids if c == 201) == can
    assert {code for c, code in bids if c != 201} == {"insufficient_available"}
    after = next(x for x in api.ok(rich["api"].get("/v1/holdings"))["balances"] if x["instrument"] == "CNY")
    assert int(after["available"].split(".")[0]) == budget - can * 2000
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_concurrent_cancels_of_one_order_all_answer_its_final_state(api: Api) -> None:
    """Sixteen cancels of one resting order at once: every one answers 200 `cancelled` (as a cancel
    repeated later does), and the hold is released exactly once."""
    from tests.trading.test_continuous import bal, world

    w = world(api)
    b, m = w["b"]["api"], w["m"]
    before = bal(api, w["b"], "CNY")
    bid = api.ok(b.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "300.00", "quantity": "10"}))["order"]
    assert bal(api, w["b"], "CNY")["pending"] == "3000.00"

    def cancel(_: int) -> tuple[int, str]:
        r = b.post(f"/v1/markets/{m}/orders/{bid['id']}/cancel", {})
        return r.status_code, r.json().get("status", r.json().get("code", ""))

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(cancel, range(16)))
    assert outcomes == [(200, "cancelled")] * 16, outcomes
    assert bal(api, w["b"], "CNY") == before
