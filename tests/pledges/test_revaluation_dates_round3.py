"""Red team round 3, finding 1: a revaluation may not be dated after the registry's today, nor before the
instrument's latest mark. A stale price would cure a pledge due for enforcement; a far-future one would force
its liquidation. Refused whole (409), nothing changed; a repeat of the latest day's mark is a no-op, another
price for it `mark_conflict`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from litestar.testing import TestClient

from exchange.core.calendar import SHANGHAI
from tests.helpers import Api
from tests.pledges.helpers import pledge_body, world
from tests.security.helpers import sql


def _day(n: int) -> str:
    """The registry's today (Asia/Shanghai) plus n days."""
    return (datetime.now(SHANGHAI).date() + timedelta(days=n)).isoformat()


def _reval(api: Api, price: str, as_of: str) -> Any:
    # A reason with every mark: these tests move the price far beyond the band around the last close.
    return api.post("/v1/pledges/revaluations", {"instrument": "FCT-SM", "price": price, "as_of": as_of,
                                                 "reason": "test of the valuation dates"})


def test_an_older_or_future_close_never_replaces_the_current_valuation(api: Api, client: TestClient) -> None:
    w = world(api, "1000")
    p = api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"], "100",
                                                                   secured_amount="5000000.00")))
    api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/confirm"))
    api.ok(_reval(api, "10.00", _day(-1)))  # the latest close: the pledge is due for liquidation
    before = api.ok(w["bank"]["api"].get(f"/v1/pledges/{p['id']}"))["margin"]
    assert before["level"] == "liquidation" and before["as_of"] == _day(-1), before
    events = sql(client, "SELECT count(*) FROM pledge_events")[0][0]

    stale = _reval(api, "500000.00", _day(-2))  # a back-dated high price would cure it
    assert (stale.status_code, stale.json()["code"]) == (409, "valuation_date_stale"), stale.text
    future = _reval(api, "0.01", _day(400))  # a far-future low price would force it
    assert (future.status_code, future.json()["code"]) == (409, "valuation_date_in_future"), future.text
    assert (_reval(api, "0.01", _day(1)).json()["code"]) == "valuation_date_in_future"
    conflict = _reval(api, "500000.00", _day(-1))  # the latest day's mark is not corrected in place
    assert (conflict.status_code, conflict.json()["code"]) == (409, "mark_conflict"), conflict.text

    # Nothing of the refused ones was kept.
    assert api.ok(w["bank"]["api"].get(f"/v1/pledges/{p['id']}"))["margin"] == before
    assert sql(client, "SELECT count(*) FROM pledge_events")[0][0] == events
    assert [str(r[0]) for r in sql(client, "SELECT as_of FROM pledge_marks ORDER BY as_of")] == [_day(-1)]

    # The same day again is a no-op; today's close is taken.
    assert api.ok(_reval(api, "10.00", _day(-1)))["pledges"][0]["already_valued"] is True
    r = api.ok(_reval(api, "500000.00", _day(0)))
    assert r["pledges"][0]["level"] == "ok", r
    assert api.ok(w["bank"]["api"].get(f"/v1/pledges/{p['id']}"))["margin"]["as_of"] == _day(0)


def test_the_registry_today_is_the_runtime_clock(api: Api) -> None:
    rt = api.client.app.state.rt
    w = world(api, "1000")
    p = api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"], "100")))
    api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/confirm"))
    assert _reval(api, "10.00", _day(3)).json()["code"] == "valuation_date_in_future"
    moved = datetime.now(SHANGHAI) + timedelta(days=3)
    rt.clock = lambda: moved
    api.ok(_reval(api, "10.00", _day(3)))


def test_the_out_of_range_refusal_writes_its_bound_in_cny(api: Api) -> None:
    w = world(api, "1000")
    p = api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"], "100")))
    api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/confirm"))
    r = _reval(api, "90071992547409.91", _day(0))
    assert (r.status_code, r.json()["code"]) == (422, "valuation_out_of_range"), r.text
    assert "worth more than 90071992547409.91 CNY" in r.json()["detail"], r.text
