"""Market-rule amendments (issue #14): one operator proposes, another approves, effective from a stated
trading day; the old rules hold before it, the new ones from it; resting orders off a new tick are
cancelled and released when it takes effect."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from exchange.core.database import asyncpg_dsn
from exchange.core.errors import Invalid
from exchange.trading import markets, sessions
from ledger.verify import verify_database
from tests.helpers import Api, checker_token, ticket
from tests.trading.clock import Calendar, at, events, market

M = "FCT-SM.continuous"


def _book(api: Api, settings: dict[str, Any] | None = None) -> tuple[dict, dict]:
    api.instrument("FCT-SM")
    s, b = api.participant("卖方", "enterprise"), api.participant("买方", "enterprise")
    api.issue(api.participant("三明市林业局", "issuer")["api"], s["id"], "FCT-SM", "1000", ticket(1))
    api.ok(api.post("/v1/cash/deposits", {"participant_id": b["id"], "amount": "100000.00", "bank_reference": "d"}))
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "continuous",
                                     "settings": {"t_plus_1": False, **(settings or {})}}))
    return s, b


def _cash(api: Api, who: dict) -> dict[str, str]:
    return {x["instrument"]: x for x in api.ok(who["api"].get("/v1/holdings"))["balances"]}["CNY"]


def test_amendment_by_maker_checker_takes_effect_on_its_day_with_new_hours_tick_and_fee(
        api: Api, cal: Calendar, db_url: str) -> None:
    s, b = _book(api)
    mon = cal.now.date()
    wed = mon + timedelta(days=2)
    change = {"tick_fen": 5, "fee_bps": 10, "sessions": [["09:00", "11:30"], ["13:00", "15:30"]]}
    body = {"effective_from": str(wed), "settings": change}
    proposal = api.propose(f"/v1/markets/{M}/amendments", body)
    assert proposal.status_code == 202, proposal.text
    action = proposal.json()
    assert action["kind"] == "amendMarket" and "tick_fen=5" in action["summary"]
    assert market(api, M)["scheduled_amendments"] == []  # nothing until a second operator approves
    own = api.post(f"/v1/operator-actions/{action['id']}/approve", {}, key=None)
    assert own.status_code == 403  # four eyes: not the proposer
    checker = api.as_(checker_token(api.client))
    done = checker.ok(checker.post(f"/v1/operator-actions/{action['id']}/approve", {}, key=None))
    assert done["status"] == "executed"
    assert done["result"]["amendment"]["operator_action"]["approved_by"] != done["result"]["amendment"][
        "operator_action"]["proposed_by"]
    mk = market(api, M)
    assert (mk["tick"], mk["fee_bps"], mk["sessions"]) == ("0.01", 0, [["09:30", "11:30"], ["13:00", "15:00"]])
    (scheduled,) = mk["scheduled_amendments"]
    assert scheduled["effective_from"] == str(wed) and scheduled["changes"] == change
    assert (scheduled["rules"]["tick"], scheduled["rules"]["fee_bps"]) == ("0.05", 10)
    # The new hours have their jobs at once.
    assert cal.jobs(M) == ["00:00", "09:00", "09:30", "11:30", "13:00", "15:00", "15:30"]
    assert events(api, M)[-1]["kind"] == "amendment_scheduled"

    # Tuesday: the old rules (tick 0.01, no fee, 09:30 open).
    tue = mon + timedelta(days=1)
    cal.run(M, at(tue, "09:00"))
    assert market(api, M)["trading_day"] == str(mon)  # 09:00 is not Tuesday's open yet
    cal.run(M, at(tue, "09:30"))
    api.ok(s["api"].post(f"/v1/markets/{M}/orders", {"side": "sell", "price": "10.01", "quantity": "10"}))
    bought = api.ok(b["api"].post(f"/v1/markets/{M}/orders", {"side": "buy", "price": "10.01", "quantity": "10"}))
    assert bought["order"]["fees"] == "0.00"
    cal.run(M, at(tue, "15:00"))

    # Wednesday: the new hours open it at 09:00, with the new tick and fee.
    cal.run(M, at(wed, "09:00"))
    mk = market(api, M)
    assert mk["session_open"] is True and (mk["tick"], mk["fee_bps"]) == ("0.05", 10)
    assert mk["scheduled_amendments"] == [] and mk["sessions"] == change["sessions"]
    off = s["api"].post(f"/v1/markets/{M}/orders", {"side": "sell", "price": "10.01", "quantity": "10"})
    assert off.status_code == 422 and off.json()["code"] == "off_tick"
    api.ok(s["api"].post(f"/v1/markets/{M}/orders", {"side": "sell", "price": "10.05", "quantity": "10"}))
    bought = api.ok(b["api"].post(f"/v1/markets/{M}/orders", {"side": "buy", "price": "10.05", "quantity": "10"}))
    assert bought["order"]["fees"] == "0.11"  # 0.1 % of 100.50, rounded up to the fen
    assert cal.jobs(M) == ["00:00", "09:00", "11:30", "13:00", "15:30"]  # the old hours' jobs are gone
    cal.now = at(wed, "15:10")
    api.client.blocking_portal.call(sessions.follow, cal.rt, M, cal.now)
    assert market(api, M)["session_open"] is True  # it closes at 15:30 now
    cal.run(M, at(wed, "15:30"))
    assert market(api, M)["session_open"] is False
    kinds = [e["kind"] for e in events(api, M)]
    assert kinds.count("amendment_effective") == 1 and kinds.index("amendment_effective") < len(kinds) - 2
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_orders_resting_across_a_tick_change_off_the_new_grid_are_cancelled_and_released(
        api: Api, cal: Calendar, db_url: str) -> None:
    """Day orders do not normally rest across a day (the close expires them). Here the day was never
    closed (an always-open market run by hand): at the start of the amendment's day, what is off the new
    tick is cancelled (reason rules_amended) and its hold released; what is on it keeps its place."""
    cal.rt.scheduler = None  # sessions by hand
    _, b = _book(api, {"sessions": []})
    mon = cal.now.date()
    r1 = api.ok(b["api"].post(f"/v1/markets/{M}/orders", {"side": "buy", "price": "10.01", "quantity": "10"}))
    r2 = api.ok(b["api"].post(f"/v1/markets/{M}/orders", {"side": "buy", "price": "10.05", "quantity": "10"}))
    api.ok(api.post(f"/v1/markets/{M}/amendments", {"effective_from": str(mon + timedelta(days=1)),
                                                     "settings": {"tick_fen": 5}}))
    # Still Monday: the old tick.
    api.ok(b["api"].post(f"/v1/markets/{M}/orders", {"side": "buy", "price": "9.99", "quantity": "1"}))
    assert _cash(api, b)["pending"] == "210.59"
    cal.now = at(mon + timedelta(days=1), "09:00")
    api.ok(api.post(f"/v1/markets/{M}/session", {"action": "open"}))  # the operator begins Tuesday
    one = api.ok(b["api"].get(f"/v1/markets/{M}/orders/{r1['order']['id']}"))
    assert (one["status"], one["reason"]) == ("cancelled", "rules_amended")
    assert api.ok(b["api"].get(f"/v1/markets/{M}/orders/{r2['order']['id']}"))["status"] == "open"
    assert _cash(api, b)["pending"] == "100.50"  # only the order on the grid still holds cash
    depth = api.ok(api.client.get(f"/v1/markets/{M}/depth"))
    assert [(x["price"], x["quantity"]) for x in depth["bids"]] == [("10.05", "10")]
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_amendments_that_could_never_apply_are_refused_when_proposed(api: Api, cal: Calendar) -> None:
    _book(api)
    mon = cal.now.date()

    def propose(day: Any, settings: dict[str, Any]) -> Any:
        return api.propose(f"/v1/markets/{M}/amendments", {"effective_from": str(day), "settings": settings})

    cases = [
        (mon, {"fee_bps": 5}, 409, "effective_date_not_future"),  # today has begun
        (mon - timedelta(days=3), {"fee_bps": 5}, 409, "effective_date_not_future"),
        (mon + timedelta(days=5), {"fee_bps": 5}, 422, "not_a_trading_day"),  # a Saturday
        (mon + timedelta(days=900), {"fee_bps": 5}, 422, "effective_date_too_far"),
        (mon + timedelta(days=1), {}, 422, "no_changes"),
        (mon + timedelta(days=1), {"sessions": [["13:00", "15:00"], ["09:30", "11:30"]]}, 422, "invalid_sessions"),
        (mon + timedelta(days=1), {"min_units": 50, "max_units": 10}, 422, "invalid_rules"),
        (mon + timedelta(days=1), {"holidays": [str(mon + timedelta(days=1))]}, 422, "not_a_trading_day"),
    ]
    for day, settings, status, code in cases:
        r = propose(day, settings)
        assert (r.status_code, r.json().get("code")) == (status, code), (day, settings, r.text)
    extra = propose(mon + timedelta(days=1), {"reference_price_fen": 1000})
    assert extra.status_code == 422  # the reference price follows the close; it is not a rule
    unknown = api.propose("/v1/markets/NOPE.listing/amendments", {"effective_from": str(mon + timedelta(days=1)),
                                                                    "settings": {"fee_bps": 1}})
    assert unknown.status_code == 404
    # One amendment per day; a holiday added by an amendment applies to the calendar from then on.
    api.ok(api.post(f"/v1/markets/{M}/amendments", {"effective_from": str(mon + timedelta(days=1)),
                                                     "settings": {"holidays": [str(mon + timedelta(days=3))]}}))
    again = propose(mon + timedelta(days=1), {"fee_bps": 5})
    assert (again.status_code, again.json()["code"]) == (409, "amendment_exists")
    assert propose(mon + timedelta(days=3), {"fee_bps": 5}).json()["code"] == "not_a_trading_day"
    mk = market(api, M)
    assert mk["scheduled_amendments"][0]["rules"]["holidays"] == [str(mon + timedelta(days=3))]
    cal.now = at(mon + timedelta(days=3), "10:00")
    api.client.blocking_portal.call(sessions.follow, cal.rt, M, cal.now)
    assert market(api, M)["session_open"] is False  # Thursday is a holiday from Tuesday's amendment on


def test_definitions_and_amendments_share_one_settings_rule() -> None:
    """markets.configure checks a definition; an amendment is the rules in force with its changes, checked
    by the same function: an auction's base-unit grid, sizes in base units, the whole-fen rule and its
    message, and the market's term all carry over."""
    auction = markets.configure("auction", 3, {})
    assert (auction.rules.lot, auction.rules.min_qty, auction.rules.tick) == (1, 1, 1000)  # 0.001 t/yr, 10.00
    m = markets.Market("PW-COD-WY.auction", "PW-COD-WY", "auction", 3, auction.rules, auction.sessions, 0, True,
                       False, years=5)
    changed = markets.amended(m, {"lot_base": 100, "min_base": 300})
    assert (changed.rules.lot, changed.rules.min_qty, changed.rules.tick, changed.years) == (100, 300, 1000, 5)
    assert markets.amended(m, {"fee_bps": 3}).rules == m.rules  # what is not amended stays as it is
    for settings in ({"tick_fen": 1, "lot_base": 1}, {"tick_fen": 1}, {"min_units": 50, "max_units": 10}):
        with pytest.raises(Invalid) as definition:
            markets.configure("auction", 3, settings)
        with pytest.raises(Invalid) as amendment:
            markets.amended(m, settings)
        assert (definition.value.code, definition.value.message) == (amendment.value.code, amendment.value.message)
        assert definition.value.code == "invalid_rules", settings
