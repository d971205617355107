"""Leftovers of red team round 6 on enforcement sales: bidders are told an auction is an enforcement sale
for as long as the auction can be read (F6), and a junior claimant sees its own lines of an exchange sale's
distribution in the pledge answer, as it does in the events (F8)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from api.app import create_app
from exchange.core.settings import Settings
from tests.helpers import Api
from tests.pledges.helpers import days, open_bidding, pledge_body, world
from tests.pledges.test_exchange_sale import deposit, market
from tests.pledges.test_round5_auction import step


def sold_with_a_junior(api: Api) -> dict[str, Any]:
    """100 units pledged for 1,000.00 with a junior claim of 500.00; sold by an enforcement auction at
    20.00 (2,000.00, less the fee): the pledgee 1,000.00, the junior 500.00, the owner the rest."""
    w = world(api, "1000")
    m = market(api, "auction")
    bank, owner, junior, buyer = w["bank"]["api"], w["owner"]["api"], w["junior"]["api"], w["buyer"]["api"]
    p = api.ok(bank.post("/v1/pledges", pledge_body(w["owner"]["id"], "100", secured_amount="1000.00")))
    pid = p["id"]
    api.ok(owner.post(f"/v1/pledges/{pid}/confirm"))
    cid = api.ok(junior.post(f"/v1/pledges/{pid}/claims", {"loan_contract": "三明农商借字2024-31",
                                                            "amount": "500.00", "term_end": days(200)}))["id"]
    api.ok(owner.post(f"/v1/pledges/claims/{cid}/confirm"))
    api.ok(bank.post(f"/v1/pledges/{pid}/default", {"reference": "DN-1", "notice_date": days(0)}))
    api.ok(owner.post(f"/v1/pledges/{pid}/enforcement-consent"))
    api.ok(bank.post(f"/v1/pledges/{pid}/enforcement", {"method": "exchange", "reason": "default"}))
    sale = api.ok(bank.post(f"/v1/pledges/{pid}/enforcement/sales", {"market_id": m, "auction": {
        "min_price": "0.01", "increment": "0.01", "deposit": "0.00"}}), 201)
    aid = sale["order"]["id"]
    api.ok(step(bank, m, aid, "registration"))
    deposit(api, w["buyer"], "5000.00")
    api.ok(buyer.post(f"/v1/markets/{m}/auctions/{aid}/register", {}))
    api.ok(open_bidding(bank, m, aid, 1))
    api.ok(buyer.post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "20.00", "quantity": "100"}))
    time.sleep(1.1)
    api.ok(step(bank, m, aid, "close"))
    api.ok(step(bank, m, aid, "allocate"))
    deadline = time.monotonic() + 30
    while (shown := api.ok(bank.get(f"/v1/pledges/{pid}")))["status"] != "enforced":
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    return {**w, "market": m, "auction": aid, "pledge": pid, "number": p["number"], "claim": cid}


def test_an_enforcement_auction_says_so_to_everyone_before_and_after_its_allocation(api: Api) -> None:
    s = sold_with_a_junior(api)
    path = f"/v1/markets/{s['market']}/auctions/{s['auction']}"
    readers = {"public": api.client.get(path), "operator": api.get(path), "bank": s["bank"]["api"].get(path),
               "buyer": s["buyer"]["api"].get(path)}
    for who, r in readers.items():
        a = api.ok(r)
        assert (a["phase"], a["enforcement_of"]) == ("allocated", s["number"]), (who, a)


def test_a_junior_sees_its_own_line_of_an_exchange_sales_distribution(api: Api) -> None:
    s = sold_with_a_junior(api)
    claim = f"claim:{s['claim']}"
    seen = api.ok(s["junior"]["api"].get(f"/v1/pledges/{s['pledge']}"))
    assert seen["claims"][0]["paid"] == "500.00"
    lines = seen["enforcement"]["distribution"]
    assert [(x["party"], x["role"], x["participant_id"], x["paid"]) for x in lines] == [
        (claim, "junior", s["junior"]["id"], "500.00")], seen["enforcement"]
    assert "loan_contract" not in seen and "paid" not in seen["enforcement"]  # not the senior's business
    # Its events show the same line; the bank, a party, sees the whole enforcement as before.
    events = [e for e in api.ok(s["junior"]["api"].get(f"/v1/pledges/{s['pledge']}/events"))
              if e["type"] == "proceeds_distributed"]
    assert [[(d["party"], d["paid"]) for d in e["details"]["distribution"]] for e in events] == [[(claim, "500.00")]]
    full = api.ok(s["bank"]["api"].get(f"/v1/pledges/{s['pledge']}"))["enforcement"]
    assert full["paid"][claim] == "500.00" and full["paid"]["pledgee/principal"] == "1000.00"
    # The buyer of an auction is no party to the pledge: 404, as before.
    assert s["buyer"]["api"].get(f"/v1/pledges/{s['pledge']}").status_code == 404


def test_a_negotiated_sale_is_held_to_the_floor_when_the_buyer_accepts(api: Api) -> None:
    """The floor (70 % of the reference) was checked when the bank offered the sale only: a new mark in
    between left the buyer accepting below the floor of the day."""
    w = world(api, "1000")
    bank, owner, buyer = w["bank"]["api"], w["owner"]["api"], w["buyer"]["api"]
    api.ok(api.post("/v1/pledges/revaluations", {"instrument": "FCT-SM", "price": "15.00", "as_of": days(-1),
                                                 "reason": "valuation report"}))
    p = api.ok(bank.post("/v1/pledges", pledge_body(w["owner"]["id"], "100", secured_amount="1000.00")))
    pid = p["id"]
    api.ok(owner.post(f"/v1/pledges/{pid}/confirm"))
    api.ok(bank.post(f"/v1/pledges/{pid}/default", {"reference": "DN-1", "notice_date": days(0)}))
    offer = {"method": "sale", "reason": "loan default", "price": "10.50", "buyer_id": w["buyer"]["id"]}
    api.ok(bank.post(f"/v1/pledges/{pid}/enforcement", offer))  # the floor of 15.00: 10.50
    deposit(api, w["buyer"], "2000.00")
    api.ok(api.post("/v1/pledges/revaluations", {"instrument": "FCT-SM", "price": "16.00", "as_of": days(0),
                                                 "reason": "valuation report"}))
    late = buyer.post(f"/v1/pledges/{pid}/enforcement/accept", {"price": "10.50"})
    assert (late.status_code, late.json()["code"]) == (409, "price_below_floor"), late.text
    assert "11.20" in late.json()["detail"] and "16.00" in late.json()["detail"]  # the floor of today's mark
    shown = api.ok(bank.get(f"/v1/pledges/{pid}"))
    assert (shown["status"], shown["enforcement"]["price"]) == ("enforcing", "10.50")  # nothing moved
    cash = [b for b in api.ok(buyer.get("/v1/holdings"))["balances"] if b["instrument"] == "CNY"]
    assert cash[0]["posted"] == "2000.00" and cash[0]["pending"] == "0.00"


def test_a_read_replica_tells_an_enforcement_sale_too(api: Api, db_url: str, tmp_path: Path) -> None:
    """A read replica (ENVX_READ_ONLY) answers listings and auctions from its follower of the journal: a
    listing's `enforcement_of` read the primary's order states, which a follower has not (500 there)."""
    w = world(api, "800")
    bank, owner = w["bank"]["api"], w["owner"]["api"]
    listing = market(api, "listing", reference_price_fen=400_000)
    api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report", "instrument": "FCT-SM",
                                                 "price": "2000.00", "as_of": days(0)}))
    p = api.ok(bank.post("/v1/pledges", pledge_body(w["owner"]["id"], "500", secured_amount="1500000.00")))
    api.ok(owner.post(f"/v1/pledges/{p['id']}/confirm"))
    api.ok(bank.post(f"/v1/pledges/{p['id']}/default", {"reference": "DN-1", "notice_date": days(0)}))
    api.ok(bank.post(f"/v1/pledges/{p['id']}/enforcement", {"method": "exchange", "reason": "default"}))
    lid = api.ok(bank.post(f"/v1/pledges/{p['id']}/enforcement/sales", {"market_id": listing, "price": "4000.00"}),
                 201)["order"]["id"]
    primary = api.ok(api.client.get(f"/v1/markets/{listing}/listings"))
    settings = Settings(data_dir=tmp_path / "ro", scheduler=False, read_only=True)
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False) as replica:
        shown = replica.get(f"/v1/markets/{listing}/listings")
        assert shown.status_code == 200, shown.text
        assert shown.json() == primary and primary[0]["listing_id"] == lid
        assert primary[0]["enforcement_of"] == p["number"]
