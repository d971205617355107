"""Red team round 5, F3: a manual mark is always compared with something, or it needs a reason. With no
close the ±10 % band was skipped, so a mark of 0.01 (no reason) was proposed, approved and then set the
floor of a negotiated realisation. Now a manual mark is compared with the last close, else the last trade
price, else the last mark; with none of them it needs a reason; and the approver's summary shows the
reference and the deviation."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api
from tests.pledges.helpers import days, world
from tests.pledges.test_exchange_sale import deposit, market


def propose(api: Api, price: str, as_of: str, **extra: Any) -> Any:
    return api.propose("/v1/pledges/revaluations", {"instrument": "FCT-SM", "price": price, "as_of": as_of, **extra})


def refused(r: Any) -> str:
    assert (r.status_code, r.json().get("code")) == (422, "mark_reason_required"), r.text
    return str(r.json()["detail"])


def trade(api: Api, w: dict, m: str, price: str, quantity: str) -> None:
    lid = api.ok(w["owner"]["api"].post(f"/v1/markets/{m}/listings", {
        "side": "sell", "price": price, "quantity": quantity}), 201)["order"]["id"]
    api.ok(w["buyer"]["api"].post(f"/v1/markets/{m}/listings/{lid}/take", {"quantity": quantity}))


def test_with_no_close_a_mark_is_compared_with_the_last_trade(api: Api) -> None:
    w = world(api, "1000")
    m = market(api, "listing", t_plus_1=False)
    deposit(api, w["buyer"], "10000.00")
    trade(api, w, m, "15.00", "10")
    trade(api, w, m, "10.00", "10")  # the red team's day: 15.00 and 10.00, no close yet
    detail = refused(propose(api, "0.01", days(0)))
    assert "the last trade price 10.00" in detail and "10 %" in detail
    # Within the band around the last trade no reason is asked; the approver sees what it was compared with.
    shown = api.ok(propose(api, "9.50", days(0)), 202)
    assert "reference the last trade price 10.00 CNY, deviation -5.00 %" in shown["summary"], shown["summary"]
    # Outside it, a reason makes the proposal, and the summary puts the deviation before the approver.
    far = api.ok(propose(api, "0.01", days(0), reason="评估报告 (2026)第7号"), 202)
    assert "reference the last trade price 10.00 CNY, deviation -99.90 %" in far["summary"], far["summary"]


def test_with_no_reference_at_all_a_mark_needs_a_reason(api: Api) -> None:
    w = world(api, "1000")
    assert w["owner"]["id"]
    detail = refused(propose(api, "0.01", days(0)))
    assert "no close, no trade and no earlier mark" in detail
    refused(propose(api, "15.00", days(0), reason="   "))  # blank is no reason
    shown = api.ok(propose(api, "15.00", days(0), reason="first valuation: appraisal report 2026-7"), 202)
    assert "no reference price" in shown["summary"], shown["summary"]


def test_with_no_close_and_no_trade_a_mark_is_compared_with_the_last_mark(api: Api) -> None:
    world(api, "1000")
    api.ok(api.post("/v1/pledges/revaluations", {"instrument": "FCT-SM", "price": "15.00", "as_of": days(-1),
                                                 "reason": "appraisal report 2026-7"}))
    detail = refused(propose(api, "0.01", days(0)))
    assert "the last mark 15.00" in detail
    shown = api.ok(propose(api, "15.90", days(0)), 202)
    assert "reference the last mark 15.00 CNY, deviation +6.00 %" in shown["summary"], shown["summary"]


def test_a_reason_must_say_something(api: Api) -> None:
    """Red team round 6 (nit): a reason of one character ("x") made a mark of 0.01 nothing compared with."""
    world(api, "1000")
    for junk in ("x", "ab", "...", "—— ！", "x.", "估"):
        r = propose(api, "0.01", days(0), reason=junk)
        assert (r.status_code, r.json().get("code")) == (422, "mark_reason_meaningless"), (junk, r.text)
    # Needed or not: a junk reason is refused inside the band too (here: a reference exists after the first).
    api.ok(api.post("/v1/pledges/revaluations", {"instrument": "FCT-SM", "price": "15.00", "as_of": days(-1),
                                                 "reason": "评估报告"}))
    r = propose(api, "15.10", days(0), reason="x")
    assert (r.status_code, r.json().get("code")) == (422, "mark_reason_meaningless"), r.text
    api.ok(propose(api, "15.10", days(0)), 202)  # inside the band no reason is needed
    api.ok(propose(api, "0.01", days(0), reason="估值"), 202)  # a word of two characters says something
    api.ok(propose(api, "0.01", days(0), reason="fire"), 202)
