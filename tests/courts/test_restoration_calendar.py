"""Restoration deadlines count trading days by the calendar (issue #19): a deadline on a holiday runs to the first
trading day after it; days left and reminders count the days the payer can buy on the exchange."""

from __future__ import annotations

from datetime import date, timedelta

from exchange.courts import restoration
from tests.courts.test_restoration import PAYER_ID, _setup
from tests.helpers import Api


def test_a_deadline_on_a_holiday_runs_to_the_next_trading_day_and_reminders_count_trading_days(api: Api) -> None:
    today = date.today()
    monday = today + timedelta(days=21 - today.weekday())  # three weeks ahead at most
    off = [monday + timedelta(days=i) for i in range(3)]  # Monday to Wednesday: a holiday
    change = {"name": "测试", "set": [{"day": str(d), "kind": "holiday", "name": "假日"} for d in off]}
    assert api.post("/v1/calendars/CN/changes", change).status_code == 201
    w = _setup(api)
    order = api.ok(w["court"]["api"].post("/v1/restoration-orders", {
        "case_number": "(2026)闽0627刑初1号", "case_type": "刑事附带民事公益诉讼", "defendants": [{"name": "被告人甲"}],
        "payer_id": w["payer"]["id"], "payer_identifier": PAYER_ID, "required_quantity": "10",
        "eligible_kinds": ["ccer"], "deadline": str(off[0])}))
    thursday = monday + timedelta(days=3)
    assert order["deadline"] == str(off[0]) and order["effective_deadline"] == str(thursday)
    assert order["days_left"] == (thursday - today).days
    rt = api.client.app.state.rt
    # The Friday before: Monday-Wednesday do not trade, so Thursday is the one trading day left.
    friday = monday - timedelta(days=3)
    assert api.client.blocking_portal.call(restoration.reminders, rt, friday) == 1
    (note,) = api.ok(w["court"]["api"].get(f"/v1/restoration-orders/{order['id']}/reminders"))
    assert note["kind"] == "due_soon" and f"deadline {thursday}, 1 trading days left" in note["message"]
    # On the holiday itself (after the stated deadline) the order is not overdue yet; on Friday it is.
    assert api.client.blocking_portal.call(restoration.reminders, rt, off[1]) == 1
    notes = api.ok(w["court"]["api"].get(f"/v1/restoration-orders/{order['id']}/reminders"))
    assert notes[-1]["kind"] == "due_soon"
    assert api.client.blocking_portal.call(restoration.reminders, rt, thursday + timedelta(days=1)) == 1
    notes = api.ok(w["court"]["api"].get(f"/v1/restoration-orders/{order['id']}/reminders"))
    assert notes[-1]["kind"] == "overdue"
