"""Red team round 5, F1: the pledgee cannot design an enforcement auction that is a negotiated sale in
disguise. The red team sold 100 pledged units at 0.01 (traded 15.00 / 10.00 that day) with a reserve of
0.01, a deposit 67x the lot and bidding opened 30 ms after registration, only its own buyer registered.

Now (pledges/realisation.py, exchange/trading/auctions.py): the reserve is at least the floor of a
negotiated realisation (70 % of the reference price, 民法典 §436 / SPC 2023 art. 42) where a reference
exists; the registration deposit is at most 20 % of the lot at the reserve (网络司法拍卖规定 art. 17);
registration stays open ENVX_ENFORCEMENT_REGISTRATION_SECONDS (15 days; art. 12) before bidding opens,
for the seller and an operator alike, with or without a reference price."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from exchange.core.settings import Settings
from pledges import realisation as rl
from pledges.errors import PledgeError
from tests.helpers import Api
from tests.pledges.helpers import days, open_bidding, pledge_body, world
from tests.pledges.test_exchange_sale import cash, deposit, market

HOUR = 3600


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    # The registration period: an hour where a test shows the refusal, else the suite's 1 s (conftest).
    return Settings(data_dir=tmp_path, database_url=None, pledge_webhook_allow_http=True,
                    webhook_allowed_hosts="127.0.0.1", pledge_worker_interval_seconds=0.2, scheduler=False,
                    enforcement_notice_days=0, enforcement_registration_seconds=getattr(request, "param", 1))


def refused(r: Any, code: str, status: int = 409) -> str:
    assert (r.status_code, r.json().get("code")) == (status, code), r.text
    return str(r.json()["detail"])


def in_escrow(api: Api, w: dict, *, mark: str | None) -> int:
    """100 units pledged for 1,000.00, defaulted and in escrow for an exchange sale; marked at `mark`."""
    if mark is not None:
        api.ok(api.post("/v1/pledges/revaluations", {"instrument": "FCT-SM", "price": mark, "as_of": days(0),
                                                     "reason": "appraisal"}))
    p = api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"], "100", secured_amount="1000.00")))
    api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/confirm"))
    api.ok(w["bank"]["api"].post(f"/v1/pledges/{p['id']}/default", {"reference": "DN-1", "notice_date": days(0)}))
    api.ok(w["bank"]["api"].post(f"/v1/pledges/{p['id']}/enforcement", {"method": "exchange", "reason": "default"}))
    return int(p["id"])


def sell(w: dict, pid: int, m: str, **terms: str) -> Any:
    return w["bank"]["api"].post(f"/v1/pledges/{pid}/enforcement/sales", {"market_id": m, "auction": {
        "increment": "0.01", **terms}})


def step(who: Api, m: str, aid: int, action: str, **extra: Any) -> Any:
    return who.post(f"/v1/markets/{m}/auctions/{aid}/step", {"action": action, **extra})


@pytest.mark.parametrize("settings", [HOUR], indirect=True)
def test_the_red_teams_auction_is_refused_term_by_term(api: Api) -> None:
    w = world(api, "1000")
    m = market(api, "auction")
    pid = in_escrow(api, w, mark="15.00")
    # The reserve: floor 10.50 (70 % of 15.00).
    detail = refused(sell(w, pid, m, min_price="0.01"), "reserve_below_floor")
    assert "10.50" in detail and "15.00" in detail
    refused(sell(w, pid, m, min_price="10.49"), "reserve_below_floor")
    # The deposit: at most 20 % of 100 x 10.50 = 210.00.
    refused(sell(w, pid, m, min_price="10.50", deposit="100000.00"), "deposit_above_cap")
    refused(sell(w, pid, m, min_price="10.50", deposit="210.01"), "deposit_above_cap")
    aid = api.ok(sell(w, pid, m, min_price="10.50", deposit="210.00"), 201)["order"]["id"]
    # Registration opens; bidding may not open before the period has run, by the bank or by an operator.
    api.ok(step(w["bank"]["api"], m, aid, "registration"))
    deposit(api, w["buyer"], "5000.00")
    api.ok(w["buyer"]["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}))
    refused(step(w["bank"]["api"], m, aid, "bidding", duration_seconds=600), "registration_period_running")
    refused(step(api, m, aid, "bidding", duration_seconds=600), "registration_period_running")
    shown = api.ok(api.client.get(f"/v1/markets/{m}/auctions/{aid}"))
    assert (shown["phase"], shown["min_price"], shown["deposit"]) == ("registration", "10.50", "210.00")
    # Nothing was sold; the pledge is still being enforced with its lot in escrow.
    assert api.ok(w["bank"]["api"].get(f"/v1/pledges/{pid}"))["status"] == "enforcing"


@pytest.mark.parametrize("settings", [HOUR], indirect=True)
def test_with_no_reference_the_reserve_is_free_but_the_registration_period_holds(api: Api) -> None:
    w = world(api, "1000")
    m = market(api, "auction")
    pid = in_escrow(api, w, mark=None)
    refused(sell(w, pid, m, min_price="0.01", deposit="100000.00"), "deposit_above_cap")
    aid = api.ok(sell(w, pid, m, min_price="0.01"), 201)["order"]["id"]
    api.ok(step(w["bank"]["api"], m, aid, "registration"))
    refused(step(w["bank"]["api"], m, aid, "bidding", duration_seconds=600), "registration_period_running")


@pytest.mark.parametrize("settings", [HOUR], indirect=True)
def test_with_no_close_or_mark_the_last_trade_is_the_reference(api: Api) -> None:
    """Red team round 6, F1: units that traded at 10.00 today, no close, no mark: the reserve was free."""
    w = world(api, "1000")
    book = market(api, "continuous")
    deposit(api, w["buyer"], "5000.00")
    api.ok(w["owner"]["api"].post(f"/v1/markets/{book}/orders", {"side": "sell", "price": "10.00", "quantity": "1"}))
    api.ok(w["buyer"]["api"].post(f"/v1/markets/{book}/orders", {"side": "buy", "price": "10.00", "quantity": "1"}))
    m = market(api, "auction")
    pid = in_escrow(api, w, mark=None)
    detail = refused(sell(w, pid, m, min_price="0.01"), "reserve_below_floor")
    assert "7.00" in detail and "10.00" in detail
    api.ok(sell(w, pid, m, min_price="7.00"), 201)


@pytest.mark.parametrize("settings", [HOUR], indirect=True)
def test_an_ordinary_auction_keeps_its_own_pace(api: Api) -> None:
    w = world(api, "1000")
    m = market(api, "auction")
    owner = w["owner"]["api"]
    aid = api.ok(owner.post(f"/v1/markets/{m}/auctions", {"quantity": "10", "min_price": "0.01",
                                                          "increment": "0.01"}), 201)["order"]["id"]
    api.ok(step(owner, m, aid, "registration"))
    api.ok(step(owner, m, aid, "bidding", duration_seconds=1))  # not a pledged lot: no registration period


def test_after_the_registration_period_the_auction_sells_at_no_less_than_the_floor(api: Api) -> None:
    w = world(api, "1000")
    m = market(api, "auction")
    pid = in_escrow(api, w, mark="15.00")
    aid = api.ok(sell(w, pid, m, min_price="10.50", deposit="100.00"), 201)["order"]["id"]
    api.ok(step(w["bank"]["api"], m, aid, "registration"))
    deposit(api, w["buyer"], "5000.00")
    api.ok(w["buyer"]["api"].post(f"/v1/markets/{m}/auctions/{aid}/register", {}))
    api.ok(open_bidding(w["bank"]["api"], m, aid, 1))
    low = w["buyer"]["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "0.01", "quantity": "100"})
    assert low.status_code == 409, low.text
    api.ok(w["buyer"]["api"].post(f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "10.50", "quantity": "100"}))
    time.sleep(1.1)
    api.ok(step(w["bank"]["api"], m, aid, "close"))
    api.ok(step(w["bank"]["api"], m, aid, "allocate"))
    deadline = time.monotonic() + 20
    while (p := api.ok(w["bank"]["api"].get(f"/v1/pledges/{pid}")))["status"] != "enforced":
        assert time.monotonic() < deadline, p
        time.sleep(0.2)
    assert p["enforcement"]["paid"] == {"pledgee/principal": "1000.00", "owner": "50.00"}
    assert cash(api, w["owner"]) == "50.00"


def test_the_default_registration_period_is_the_fifteen_days_of_a_judicial_auction_of_movables() -> None:
    assert Settings.model_fields["enforcement_registration_seconds"].default == 15 * 86400


def test_the_auction_terms_rule_at_its_edges() -> None:
    # 100 units at a reserve of 10.50: the lot is worth 1,050.00, the deposit at most 210.00.
    rl.check_auction_terms(1050, 21000, 105000, 1500)
    rl.check_auction_terms(1, 0, 100, None)  # no reference: the reserve is free, the deposit still capped
    for reserve, deposit_fen, value, ref, code in ((1049, 0, 104900, 1500, "reserve_below_floor"),
                                                   (1050, 21001, 105000, 1500, "deposit_above_cap"),
                                                   (1, 21, 100, None, "deposit_above_cap")):
        with pytest.raises(PledgeError) as exc:
            rl.check_auction_terms(reserve, deposit_fen, value, ref)
        assert exc.value.code == code
