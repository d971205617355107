"""A margin call's cure deadline is the next open by the trading calendar (issue #19): a close on the last
trading day before the 2026 Spring Festival is cured before the first open after it, not on the Monday."""

from __future__ import annotations

from exchange.trading.calendars import cn
from tests.helpers import Api
from tests.pledges.helpers import pledge_body, world


def _margin_call(api: Api, as_of: str) -> dict:
    w = world(api)
    bank, owner = w["bank"], w["owner"]
    p = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], haircut_bps=2000)))
    api.ok(owner["api"].post(f"/v1/pledges/{p['id']}/confirm"))
    r = api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                     "instrument": "FCT-SM", "price": "360.00", "as_of": as_of}))
    assert r["pledges"][0]["level"] == "margin_call"
    return api.ok(bank["api"].get(f"/v1/pledges/{p['id']}"))


def test_a_close_before_the_spring_festival_is_cured_before_the_first_open_after_it(api: Api) -> None:
    assert api.post("/v1/calendars/CN/changes", {"name": cn.NAME, "set": cn.days_2026()}).status_code == 201
    p = _margin_call(api, "2026-02-13")  # Friday; 2/14 a make-up Saturday, 2/15-2/23 the Spring Festival
    assert p["margin"]["cure_deadline"] == "2026-02-24T01:30:00.000000Z"  # Tuesday 09:30 Asia/Shanghai


def test_a_market_with_afternoon_hours_and_a_make_up_day_sets_the_deadline(api: Api) -> None:
    assert api.post("/v1/calendars/CN/changes", {"name": cn.NAME, "set": cn.days_2026()}).status_code == 201
    w = world(api)
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "continuous",
                                    "settings": {"sessions": [["13:00", "15:00"]]}}))
    body = {"calendar_id": "CN", "trades_on_makeup_days": True}
    assign = api.client.put("/v1/markets/FCT-SM.continuous/calendar", json=body, headers=api._h("cal-1"))
    assert api.approve(assign).ok
    bank, owner = w["bank"], w["owner"]
    p = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], haircut_bps=2000)))
    api.ok(owner["api"].post(f"/v1/pledges/{p['id']}/confirm"))
    r = api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                     "instrument": "FCT-SM", "price": "360.00",
                                                     "as_of": "2026-10-09"}))
    assert r["pledges"][0]["level"] == "margin_call"
    # Friday 10/9; Saturday 10/10 is a make-up working day this market trades on, opening at 13:00.
    assert api.ok(bank["api"].get(f"/v1/pledges/{p['id']}"))["margin"]["cure_deadline"] == "2026-10-10T05:00:00.000000Z"
