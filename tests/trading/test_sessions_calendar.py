"""Sessions follow each market's hours and calendar (issue #14), driven by the scheduler's own jobs under a
controlled clock: no sleeps on wall-clock hours.

The app runs without its scheduler (tests); each test attaches a paused APScheduler and sets the runtime's
clock. Jobs are the ones the markets installed; a test runs a job at the moment its cron trigger names."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from exchange.core.database import asyncpg_dsn
from exchange.trading import sessions
from ledger.verify import verify_database
from tests.helpers import Api
from tests.trading.clock import Calendar, at, events, market


def _block_desk(api: Api) -> tuple[dict, dict]:
    api.instrument("CEA25", kind="cea", attributes={"compliance_year": 2025})
    seller, buyer = api.participant("控排企业甲", "enterprise"), api.participant("控排企业乙", "enterprise")
    api.issue(api.participant("生态环境部", "issuer")["api"], seller["id"], "CEA25", "300000", {})
    api.ok(api.post("/v1/cash/deposits", {"participant_id": buyer["id"], "amount": "50000000.00",
                                           "bank_reference": "b"}))
    return seller, buyer


def _deal(api: Api, seller: dict, buyer: dict, m: str) -> Any:
    q = seller["api"].post(f"/v1/markets/{m}/block-quotes", {"side": "sell", "price": "100.00",
                                                             "quantity": "100000"})
    if q.status_code != 201:
        return q
    deal = api.ok(buyer["api"].post(f"/v1/markets/{m}/block-quotes/{q.json()['seq']}/respond",
                                    {"price": "100.00", "quantity": "100000"}))["seq"]
    return seller["api"].post(f"/v1/markets/{m}/deals/{deal}/confirm", {})


def test_block_hours_are_enforced_and_an_override_is_explicit_recorded_and_ends(api: Api, cal: Calendar) -> None:
    seller, buyer = _block_desk(api)
    m = "CEA25.block"
    mon = cal.now.date()
    api.ok(api.post("/v1/markets", {"instrument": "CEA25", "mode": "block"}))  # national hours: 13:00-15:00
    assert cal.jobs(m) == ["00:00", "13:00", "15:00"]  # installed when defined, no restart
    assert market(api, m)["session_open"] is False  # 10:00: before its session
    cal.run(m, at(mon, "13:00"))
    assert market(api, m)["session_open"] is True
    assert _deal(api, seller, buyer, m).status_code == 200
    cal.run(m, at(mon, "15:00"))
    assert market(api, m)["session_open"] is False

    # 17:04 Beijing time: a plain open is refused; an override needs a reason; then it is explicit and recorded.
    cal.now = at(mon, "17:04")
    late = api.post(f"/v1/markets/{m}/session", {"action": "open"})
    assert late.status_code == 409 and late.json()["code"] == "outside_hours", late.text
    assert late.json()["sessions"] == [["13:00", "15:00"]]
    bare = api.post(f"/v1/markets/{m}/session", {"action": "open", "override": True})
    assert bare.status_code == 422 and bare.json()["code"] == "reason_required"
    assert _deal(api, seller, buyer, m).json()["code"] == "outside_session"
    opened = api.ok(api.post(f"/v1/markets/{m}/session",
                             {"action": "open", "override": True, "reason": "交易系统故障补充时段"}))
    until = at(mon + timedelta(days=1), "00:00")  # no transition left that day: until its end
    assert opened["session_open"] is True
    assert datetime.fromisoformat(opened["session_override"]["until"]) == until
    assert market(api, m)["session_override"]["reason"] == "交易系统故障补充时段"
    assert _deal(api, seller, buyer, m).status_code == 200
    last = events(api, m)[-1]
    # The public event says an operator acted, and until when (ISO 8601, as the market says it); which
    # operator is in the audit trail (issue #14: no participant ids in public answers).
    assert (last["kind"], last["actor"], last["detail"]["override"], last["detail"]["reason"]) == (
        "open", "operator", True, "交易系统故障补充时段")
    assert last["detail"]["until"] == opened["session_override"]["until"] == market(api, m)["session_override"]["until"]
    audit = api.ok(api.get("/v1/audit/events", operation="setSession", limit=1000))
    assert audit[-1]["actor"] == f"participant:{api.ok(api.get('/v1/whoami'))['participant_id']}"
    assert audit[-1]["detail"]["request"] == {"action": "open", "override": True, "reason": "交易系统故障补充时段"}
    assert [a["status"] for a in audit[-3:]] == [409, 422, 200]

    # The override ends at midnight: the calendar closes the day (day orders expire), nothing trades.
    cal.run(m, until)
    mk = market(api, m)
    assert mk["session_open"] is False and mk["session_override"] is None
    assert [(e["kind"], e["actor"]) for e in events(api, m)[-1:]] == [("close", "calendar")]
    assert _deal(api, seller, buyer, m).json()["code"] == "outside_session"
    # Tuesday follows the hours again.
    cal.run(m, at(mon + timedelta(days=1), "13:00"))
    assert market(api, m)["trading_day"] == str(mon + timedelta(days=1))
    assert len(api.ok(api.client.get(f"/v1/markets/{m}/trades"))) == 2


def test_an_override_in_the_lunch_break_ends_at_the_afternoon_open(api: Api, cal: Calendar) -> None:
    api.instrument("FCT-SM")
    m = "FCT-SM.listing"
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "listing"}))
    assert cal.jobs(m) == ["00:00", "09:30", "11:30", "13:00", "15:00"]
    assert market(api, m)["session_open"] is True  # defined at 10:00: it opens at once
    cal.run(m, at(cal.now.date(), "11:30"))
    assert market(api, m)["session_open"] is False
    cal.now = at(cal.now.date(), "12:10")
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "open", "override": True, "reason": "补单"}))
    assert datetime.fromisoformat(market(api, m)["session_override"]["until"]) == at(cal.now.date(), "13:00")
    cal.run(m, at(cal.now.date(), "13:00"))
    mk = market(api, m)
    assert mk["session_open"] is True and mk["session_override"] is None  # the calendar's own session now
    # A plain open within hours needs no override; pausing and closing early are always allowed.
    assert api.post(f"/v1/markets/{m}/session", {"action": "pause"}).status_code == 200
    assert api.post(f"/v1/markets/{m}/session", {"action": "open"}).status_code == 200
    assert api.post(f"/v1/markets/{m}/session", {"action": "close"}).status_code == 200
    cal.run(m, at(cal.now.date(), "15:00"))  # closed for the day already: nothing more
    assert [e["kind"] for e in events(api, m)] == ["open", "pause", "open", "pause", "open", "close"]
    # Saturday: not a trading day; an override there lasts until its end.
    sat = cal.now.date() + timedelta(days=5)
    cal.now = at(sat, "10:00")
    r = api.post(f"/v1/markets/{m}/session", {"action": "open"})
    assert r.status_code == 409 and r.json()["code"] == "outside_hours"


def test_always_open_market_trades_at_once_and_rolls_its_trading_day_at_midnight(api: Api, cal: Calendar,
                                                                                db_url: str) -> None:
    from tests.helpers import ticket

    api.instrument("FCT-SM")
    s, b = api.participant("卖方", "enterprise"), api.participant("买方", "enterprise")
    api.issue(api.participant("三明市林业局", "issuer")["api"], s["id"], "FCT-SM", "100", ticket(1))
    api.ok(api.post("/v1/cash/deposits", {"participant_id": b["id"], "amount": "1000.00", "bank_reference": "d"}))
    m = "FCT-SM.continuous"
    cal.now = at(cal.now.date(), "23:00")
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "continuous", "settings": {"sessions": []}}))
    assert cal.jobs(m) == ["00:00"]
    # No operator opened it: it trades.
    api.ok(s["api"].post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "10.00", "quantity": "10"}))
    api.ok(b["api"].post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "10.00", "quantity": "4"}))
    rest = api.ok(b["api"].post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "9.00", "quantity": "5"}))
    units = {x["instrument"]: x for x in api.ok(b["api"].get("/v1/holdings"))["balances"]}["FCT-SM"]
    assert (units["posted"], units["available"]) == ("4", "0")  # T+1
    tue = cal.now.date() + timedelta(days=1)
    cal.run(m, at(tue, "00:00"))
    mk = market(api, m)
    assert mk["session_open"] is True and mk["trading_day"] == str(tue)
    assert api.ok(b["api"].get(f"/v1/markets/{m}/orders/{rest['order']['id']}"))["status"] == "expired"
    units = {x["instrument"]: x for x in api.ok(b["api"].get("/v1/holdings"))["balances"]}["FCT-SM"]
    assert units["available"] == "4"  # bought yesterday: sellable today
    closes = api.ok(api.client.get("/v1/instruments/FCT-SM/closes"))
    assert [(c["trading_day"], c["price"]) for c in closes] == [(str(tue - timedelta(days=1)), "10.00")]
    assert [(e["kind"], e["trading_day"]) for e in events(api, m)] == [
        ("open", str(tue - timedelta(days=1))), ("close", str(tue - timedelta(days=1))), ("open", str(tue))]
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_without_a_scheduler_an_always_open_market_still_comes_up_open(api: Api) -> None:
    api.instrument("FCT-SM")
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "listing", "settings": {"sessions": []}}))
    assert market(api, "FCT-SM.listing")["session_open"] is True
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "continuous"}))  # with hours: by hand
    assert market(api, "FCT-SM.continuous")["session_open"] is False


def test_starting_a_market_catches_up_with_the_calendar(api: Api, cal: Calendar) -> None:
    """What the hub runs for every market when the process starts (sessions.start): a process that was
    down at the scheduled open opens the market when it comes back inside the hours, and closes a day
    whose close it missed."""
    api.instrument("FCT-SM")
    m = "FCT-SM.listing"
    cal.now = at(cal.now.date(), "08:00")
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "listing"}))
    assert market(api, m)["session_open"] is False
    rt = cal.rt
    cal.now = at(cal.now.date(), "10:15")  # the 09:30 job never ran: the process was down
    api.client.blocking_portal.call(sessions.start, rt, m)
    assert market(api, m)["session_open"] is True
    cal.now = at(cal.now.date() + timedelta(days=1), "08:00")  # down again over the 15:00 close
    api.client.blocking_portal.call(sessions.start, rt, m)
    assert [e["kind"] for e in events(api, m)] == ["open", "close"]
    assert market(api, m)["session_open"] is False
