"""The venue ends its auctions (red team round 5, F6): when the bidding window is over the auction is closed
and allocated without the seller, whose interest may be to leave a low result unallocated and the bidders'
cash held; before the end nobody closes it, not the seller, not the clock."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from exchange.core.settings import Settings
from tests.helpers import Api
from tests.trading.test_auctions import auction_market, bal, emission_right, fund, money, verified


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=None, scheduler=False, auction_auto_end=True)


def _phase(api: Api, m: str, aid: int) -> str:
    return str(api.ok(api.get(f"/v1/markets/{m}/auctions/{aid}"))["phase"])


def _until(api: Api, m: str, aid: int, phase: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while (now := _phase(api, m, aid)) != phase and time.monotonic() < deadline:
        time.sleep(0.2)
    return now


def test_the_venue_closes_and_allocates_when_the_window_ends(api: Api, db_url: str) -> None:
    emission_right(api, "PW-NOX-CL", 5, "四川省")
    reserve = api.participant("四川省排污权储备 (示例)", "issuer")
    api.issue(reserve["api"], reserve["id"], "PW-NOX-CL", "1.000",
              {"valid_from": "2025-01-01", "valid_until": "2029-12-31"})
    m = auction_market(api, "PW-NOX-CL")
    a, b = api.participant("甲", "enterprise"), api.participant("乙", "enterprise")
    for who in (a, b):
        fund(api, who, "50000.00")
    aid = api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions", {
        "quantity": "1.000", "min_price": "4000", "increment": "100", "cap_per_bidder": "1.000"}))["order"]["id"]
    api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "registration"}))
    for who in (a, b):
        api.ok(who["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}))
    api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "bidding", "duration_seconds": 3}))
    api.ok(a["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "4000", "quantity": "1.000"}))
    api.ok(b["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "4100", "quantity": "1.000"}))
    early: Any = reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "close"})
    assert (early.status_code, early.json()["code"]) == (409, "auction_still_open")
    assert _phase(api, m, aid) == "bidding"  # the clock has not closed it early either
    assert _until(api, m, aid, "allocated", 10) == "allocated"  # the seller did nothing
    # 乙 won 1.000 x 4,100 x 5 = 20,500.00; 甲's bid is released.
    assert money(api, a) == ("50000.00", "0.00", "50000.00")
    assert money(api, b) == ("29500.00", "0.00", "29500.00")
    assert bal(api, b, "PW-NOX-CL")["posted"] == "1.000"
    assert money(api, reserve)[0] == "20500.00"
    late = reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "cancel"})
    assert late.status_code == 409
    verified(api, db_url)


def test_a_halted_auction_market_ends_nothing_until_it_resumes(api: Api) -> None:
    """Red team round 6, F5: the clock closed and allocated an auction while its market was halted."""
    emission_right(api, "PW-SO2-CL", 5, "四川省", "SO2")
    reserve = api.participant("储备中心 (示例)", "issuer")
    api.issue(reserve["api"], reserve["id"], "PW-SO2-CL", "1.000",
              {"valid_from": "2025-01-01", "valid_until": "2029-12-31"})
    m = auction_market(api, "PW-SO2-CL")
    a = api.participant("丙", "enterprise")
    fund(api, a, "50000.00")
    aid = api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions", {
        "quantity": "1.000", "min_price": "4000", "increment": "100"}))["order"]["id"]
    api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "registration"}))
    api.ok(a["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}))
    api.ok(reserve["api"].post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": "bidding", "duration_seconds": 2}))
    api.ok(a["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "4000", "quantity": "1.000"}))
    api.ok(api.post(f"/v1/markets/{m}/halt", {"reason": "venue pause"}))
    time.sleep(4)
    assert _phase(api, m, aid) == "bidding"  # past its end, but the market is halted
    api.ok(api.post(f"/v1/markets/{m}/resume", None))
    assert _until(api, m, aid, "allocated", 10) == "allocated"
