"""Trading calendars (issue #19): China's 2026 holidays and make-up working days as data, changed by maker-checker,
read publicly; sessions open and close by them, T+1 locks wait for the next trading day.

The 2026 dates are those of the State Council's notice (国办发明电〔2025〕7号). The sessions run under the
controlled clock of tests/trading/clock.py, by the markets' own scheduler jobs."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from exchange.core.calendar import TradingCalendar
from exchange.trading.calendars import cn
from tests.helpers import Api, checker_token, ticket
from tests.trading.clock import Calendar, at, events, market

M = "FCT-SM.continuous"


def _install_cn(api: Api) -> dict[str, Any]:
    proposal = api.propose("/v1/calendars/CN/changes", {"name": cn.NAME, "note": cn.NOTE, "set": cn.days_2026()})
    assert proposal.status_code == 202, proposal.text
    assert proposal.json()["kind"] == "changeCalendar"
    assert api.client.get("/v1/calendars/CN").status_code == 404  # nothing until a second operator approves
    own = api.post(f"/v1/operator-actions/{proposal.json()['id']}/approve", {}, key=None)
    assert own.status_code == 403  # four eyes: never the proposer
    done = api.approve(proposal)
    assert done.status_code == 201, done.text
    return api.ok(api.client.get("/v1/calendars/CN", params={"year": 2026}))


def _market(api: Api) -> tuple[dict, dict]:
    api.instrument("FCT-SM")
    s, b = api.participant("卖方", "enterprise"), api.participant("买方", "enterprise")
    api.issue(api.participant("三明市林业局", "issuer")["api"], s["id"], "FCT-SM", "1000", ticket(1))
    api.ok(api.post("/v1/cash/deposits", {"participant_id": b["id"], "amount": "100000.00", "bank_reference": "d"}))
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "continuous"}))
    return s, b


def _days(api: Api, start: date, end: date) -> dict[str, Any]:
    return api.ok(api.client.get(f"/v1/markets/{M}/calendar", params={"start": str(start), "end": str(end)}))


def test_the_2026_notice_is_data_exactly_as_published() -> None:
    days = {date.fromisoformat(d["day"]): d["kind"] for d in cn.days_2026()}
    off = [d for d, k in days.items() if k == "holiday"]
    work = sorted(d for d, k in days.items() if k == "workday")
    assert len(off) == 3 + 9 + 3 + 5 + 3 + 3 + 7
    assert work == [date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9), date(2026, 9, 20),
                    date(2026, 10, 10)]
    assert all(d.weekday() >= 5 for d in work)  # each a Saturday or Sunday
    assert not any(d.year == 2027 for d in days)  # the 2027 notice is not published: nothing invented


def test_trading_days_counted_from_the_calendar() -> None:
    days = cn.days_2026()
    holidays = frozenset(date.fromisoformat(d["day"]) for d in days if d["kind"] == "holiday")
    workdays = frozenset(date.fromisoformat(d["day"]) for d in days if d["kind"] == "workday")
    exchange = TradingCalendar("CN", holidays, workdays, trades_on_makeup_days=False)
    office = TradingCalendar("CN", holidays, workdays, trades_on_makeup_days=True)
    # Spring Festival: the last trading day before it is Friday 2/13; the first after it Tuesday 2/24.
    assert exchange.next_trading_day(date(2026, 2, 13)) == date(2026, 2, 24)
    assert not exchange.is_trading_day(date(2026, 2, 14)) and office.is_trading_day(date(2026, 2, 14))
    assert exchange.why_not(date(2026, 2, 28)) == "makeup_day" and exchange.why_not(date(2026, 2, 16)) == "holiday"
    assert office.next_trading_day(date(2026, 2, 13)) == date(2026, 2, 14)
    # National Day: 9/30 (Wed) -> 10/8 (Thu); Saturday 10/10 works in offices, not on the exchange.
    assert exchange.next_trading_day(date(2026, 9, 30)) == date(2026, 10, 8)
    assert exchange.next_trading_day(date(2026, 10, 9)) == date(2026, 10, 12)
    assert office.next_trading_day(date(2026, 10, 9)) == date(2026, 10, 10)
    assert exchange.next_trading_day(date(2026, 9, 18)) == date(2026, 9, 21)  # Sunday 9/20 works, does not trade
    assert exchange.add_trading_days(date(2026, 9, 28), 3) == date(2026, 10, 8)
    assert exchange.trading_days_between(date(2026, 9, 30), date(2026, 10, 9)) == 2  # 10/8, 10/9
    assert exchange.on_or_after(date(2026, 10, 3)) == date(2026, 10, 8)
    assert exchange.trading_days_between(date(2026, 10, 9), date(2026, 9, 30)) == -2


def test_sessions_across_the_2026_spring_festival_and_a_makeup_saturday(api: Api, cal: Calendar) -> None:
    cal.now = at(date(2026, 2, 13), "09:00")  # Friday, the last trading day before the Spring Festival
    cn_cal = _install_cn(api)
    assert [d["day"] for d in cn_cal["days"] if d["kind"] == "workday"] == [
        "2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"]
    _market(api)
    assert M in api.ok(api.client.get("/v1/calendars/CN"))["markets"]  # the default calendar (ENVX_DEFAULT_CALENDAR)
    cal.run(M, at(date(2026, 2, 13), "09:30"))
    assert (market(api, M)["session_open"], market(api, M)["trading_day"]) == (True, "2026-02-13")
    cal.run(M, at(date(2026, 2, 13), "15:00"))
    assert market(api, M)["session_open"] is False
    # Saturday 2/14 is a make-up working day: offices work, the exchange does not trade.
    for day in ("2026-02-14", "2026-02-16", "2026-02-18", "2026-02-23"):
        cal.run(M, at(date.fromisoformat(day), "09:30"))
        mk = market(api, M)
        assert (mk["session_open"], mk["trading_day"]) == (False, "2026-02-13"), day
    cal.run(M, at(date(2026, 2, 24), "09:30"))
    assert (market(api, M)["session_open"], market(api, M)["trading_day"]) == (True, "2026-02-24")
    cal.run(M, at(date(2026, 2, 24), "15:00"))
    cal.run(M, at(date(2026, 2, 28), "09:30"))  # the second make-up Saturday
    assert market(api, M)["session_open"] is False and market(api, M)["trading_day"] == "2026-02-24"

    seen = _days(api, date(2026, 2, 13), date(2026, 3, 1))
    trading = [d["day"] for d in seen["days"] if d["trading"]]
    assert trading == ["2026-02-13", "2026-02-24", "2026-02-25", "2026-02-26", "2026-02-27"]
    why = {d["day"]: (d["why_not"], d["name"]) for d in seen["days"]}
    assert why["2026-02-14"] == ("makeup_day", "春节调休上班") and why["2026-02-17"] == ("holiday", "春节")
    assert why["2026-02-28"][0] == "makeup_day" and why["2026-03-01"] == ("weekend", None)
    assert (seen["calendar_id"], seen["trades_on_makeup_days"], seen["assigned"]) == ("CN", False, False)
    assert seen["next_trading_day"] == "2026-03-02"
    assert _days(api, date(2026, 2, 13), date(2026, 2, 13))["next_trading_day"] == "2026-02-24"  # T+1 of 2/13


def test_national_day_and_a_market_that_trades_on_makeup_days(api: Api, cal: Calendar) -> None:
    cal.now = at(date(2026, 9, 30), "09:00")
    _install_cn(api)
    _market(api)
    seen = _days(api, date(2026, 9, 30), date(2026, 10, 11))
    assert [d["day"] for d in seen["days"] if d["trading"]] == ["2026-09-30", "2026-10-08", "2026-10-09"]
    assert _days(api, date(2026, 9, 30), date(2026, 9, 30))["next_trading_day"] == "2026-10-08"
    cal.run(M, at(date(2026, 9, 30), "09:30"))
    for day in ("2026-10-01", "2026-10-05", "2026-10-07"):
        cal.run(M, at(date.fromisoformat(day), "09:30"))
        assert market(api, M)["session_open"] is False, day
    cal.run(M, at(date(2026, 10, 8), "09:30"))
    assert (market(api, M)["session_open"], market(api, M)["trading_day"]) == (True, "2026-10-08")

    # A venue that settles on working days trades on make-up days: maker-checker, in force at once.
    body = {"calendar_id": "CN", "trades_on_makeup_days": True}
    proposal = api.client.put(f"/v1/markets/{M}/calendar", json=body, headers=api._h("assign-1"))
    assert proposal.status_code == 202 and proposal.json()["kind"] == "assignMarketCalendar", proposal.text
    assert _days(api, date(2026, 10, 10), date(2026, 10, 10))["days"][0]["trading"] is False
    done = api.approve(proposal)
    assert done.status_code == 201, done.text
    seen = _days(api, date(2026, 10, 9), date(2026, 10, 11))
    assert [d["trading"] for d in seen["days"]] == [True, True, False] and seen["assigned"] is True
    cal.run(M, at(date(2026, 10, 8), "15:00"))
    cal.run(M, at(date(2026, 10, 10), "09:30"))
    assert (market(api, M)["session_open"], market(api, M)["trading_day"]) == (True, "2026-10-10")


def test_a_holiday_added_by_maker_checker_closes_the_market_and_t1_waits_for_the_next_trading_day(
        api: Api, cal: Calendar) -> None:
    s, b = _market(api)
    fri = cal.now.date() + timedelta(days=4)  # cal.now: a Monday ahead of the ledger's clock
    mon, tue = fri + timedelta(days=3), fri + timedelta(days=4)
    change = {"name": "测试日历", "set": [{"day": str(mon), "kind": "holiday", "name": "临时休市"}]}
    done = api.post("/v1/calendars/TEST/changes", change)
    assert done.status_code == 201, done.text
    body = {"calendar_id": "TEST", "trades_on_makeup_days": False}
    assert api.approve(api.client.put(f"/v1/markets/{M}/calendar", json=body, headers=api._h("a-1"))).ok
    cal.run(M, at(fri, "09:30"))
    api.ok(s["api"].post(f"/v1/markets/{M}/orders", {"side": "sell", "price": "10.00", "quantity": "10"}))
    api.ok(b["api"].post(f"/v1/markets/{M}/orders", {"side": "buy", "price": "10.00", "quantity": "10"}))

    def sellable() -> str:
        bal = {x["instrument"]: x for x in api.ok(b["api"].get("/v1/holdings"))["balances"]}["FCT-SM"]
        return str(bal["available"])

    assert sellable() == "0"  # T+1: bought today, sellable from the next trading day
    cal.run(M, at(fri, "15:00"))
    cal.run(M, at(mon, "09:30"))  # the holiday: no session, the lock stays
    assert market(api, M)["session_open"] is False and sellable() == "0"
    cal.run(M, at(tue, "09:30"))
    assert market(api, M)["session_open"] is True and sellable() == "10"
    assert _days(api, fri, fri)["next_trading_day"] == str(tue)


def test_calendar_changes_are_checked_before_they_are_proposed(api: Api) -> None:
    weekday = {"name": "x", "set": [{"day": "2026-02-16", "kind": "workday", "name": "bad"}]}
    r = api.propose("/v1/calendars/CN/changes", weekday)
    assert r.status_code == 422 and r.json()["code"] == "invalid_calendar", r.text
    twice = {"name": "x", "set": [{"day": "2026-02-16", "kind": "holiday", "name": "a"}], "remove": ["2026-02-16"]}
    assert api.propose("/v1/calendars/CN/changes", twice).json()["code"] == "invalid_calendar"
    assert api.propose("/v1/calendars/NEW/changes", {"set": []}).json()["code"] == "no_changes"
    nameless = {"set": [{"day": "2026-02-16", "kind": "holiday", "name": "a"}]}
    assert api.propose("/v1/calendars/NEW/changes", nameless).json()["code"] == "invalid_calendar"
    bad_kind = api.propose("/v1/calendars/CN/changes", {"set": [{"day": "2026-02-16", "kind": "x", "name": "a"}]})
    assert bad_kind.status_code == 422
    lower = api.propose("/v1/calendars/cn/changes", {"name": "x"})
    assert lower.status_code in (400, 404, 422)
    # Not an operator: refused by role before anything.
    ent = api.participant("企业", "enterprise")["api"]
    assert ent.propose("/v1/calendars/CN/changes", {"name": "x"}).status_code == 403
    assert api.client.get("/v1/markets/NOPE.continuous/calendar").status_code == 404
    assert api.client.get("/v1/calendars/NOPE").status_code == 404
    checker = api.as_(checker_token(api.client))
    assert checker.get("/v1/calendars").status_code == 200


def test_a_holiday_declared_for_today_closes_the_market_once_approved(api: Api, cal: Calendar) -> None:
    _market(api)
    today = cal.now.date()  # a Monday, 10:00: the market opened by its hours when it was defined
    assert market(api, M)["session_open"] is True
    proposal = api.propose("/v1/calendars/CN/changes", {"name": "CN", "set": [
        {"day": str(today), "kind": "holiday", "name": "临时休市", "source": "交易所公告"}]})
    assert proposal.status_code == 202 and market(api, M)["session_open"] is True  # a proposal changes nothing
    assert api.approve(proposal).ok
    assert market(api, M)["session_open"] is False
    assert [e["kind"] for e in events(api, M)][-1] == "close"
    day = _days(api, today, today)["days"][0]
    assert (day["trading"], day["why_not"], day["name"]) == (False, "holiday", "临时休市")


def test_an_always_open_market_trades_every_day_whatever_the_calendar(api: Api) -> None:
    assert api.post("/v1/calendars/CN/changes", {"name": cn.NAME, "set": cn.days_2026()}).status_code == 201
    api.instrument("FCT-SM")
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "continuous", "settings": {"sessions": []}}))
    seen = _days(api, date(2026, 2, 13), date(2026, 2, 15))
    assert [d["trading"] for d in seen["days"]] == [True, True, True] and seen["next_trading_day"] == "2026-02-16"
    assert _days(api, date(2026, 2, 13), date(2026, 2, 13))["next_trading_day"] == "2026-02-14"  # a Saturday
