"""Reading and changing trading calendars.

A change of a calendar (days set as `holiday` or `workday`, days removed, its name or note) and a market's
assignment to a calendar are operator actions with maker-checker: the proposal is checked here
(`check_change`, `check_assignment`), and the approval runs `change` / `assign` under the action's client
id, so approving twice changes once. Every change is recorded in `calendar_changes` with who proposed and
approved it. An executed change is in force at once: each running market that follows the calendar gets it
and its session is brought to what the calendar says now (a day declared a holiday closes it).

The days are the data a notice publishes; a weekend day declared a working day (调休上班) trades only in
markets that say `trades_on_makeup_days` (exchange.core.calendar). Nothing here invents a date.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.calendar import HOLIDAY, SHANGHAI, WORKDAY, TradingCalendar, trading_day
from exchange.core.errors import Invalid, NotFound
from exchange.core.idempotency import check_replay, fingerprint
from exchange.core.provenance import LEDGER_META
from exchange.core.runtime import Runtime
from exchange.trading import markets, sessions
from exchange.trading import repository as trading_repo
from exchange.trading.calendars import repository as repo
from exchange.trading.calendars.models import Assignment, Calendar, CalendarDay, rules_of

MAX_DAYS = 800  # per change: two years of a busy calendar
MAX_PERIOD = 400  # days per read of a market's calendar
Payload = dict[str, Any]


# --- reads (public) ---------------------------------------------------------------------------------------

async def get(rt: Runtime, calendar_id: str) -> tuple[Calendar, list[str]]:
    """The calendar and the markets that follow it."""
    async with rt.read() as conn:
        found = await repo.calendar(conn, calendar_id)
        if found is None:
            raise NotFound("calendar", calendar_id)
        return found, await repo.markets_of(conn, calendar_id, rt.settings.default_calendar)


async def listing(rt: Runtime) -> list[Calendar]:
    async with rt.read() as conn:
        return await repo.calendars(conn)


@dataclass(frozen=True, slots=True)
class MarketDay:
    day: date
    trading: bool
    why_not: str | None  # holiday | makeup_day | weekend | market_holiday; None on a trading day
    name: str | None  # the calendar's name of the day (春节, 国庆节调休上班), or None


@dataclass(frozen=True, slots=True)
class MarketCalendar:
    market_id: str
    assignment: Assignment
    days: tuple[MarketDay, ...]
    next_trading_day: date  # after the period's last day


async def market_days(rt: Runtime, market_id: str, start: date, end: date) -> MarketCalendar:
    """Each day of [start, end] of the market: trading or not, and why."""
    if end < start or (end - start).days >= MAX_PERIOD:
        raise Invalid("invalid_period", f"from {start} to {end}: the start is on or before the end, "
                                        f"at most {MAX_PERIOD} days")
    m = await markets.load(rt, market_id)
    async with rt.read() as conn:
        a = await repo.assignment(conn, market_id, rt.settings.default_calendar)
        cal = None if a.calendar_id is None else await repo.calendar(conn, a.calendar_id)
    names = {} if cal is None else {d.day: d.name for d in cal.days}
    out = []
    for i in range((end - start).days + 1):
        d = start + timedelta(days=i)
        why = m.calendar.why_not(d) if m.sessions else None
        if why is None and m.sessions and d in m.holidays:
            why = "market_holiday"
        out.append(MarketDay(d, why is None, why, names.get(d)))
    return MarketCalendar(market_id, a, tuple(out), m.days().next_trading_day(end))


async def of_market(rt: Runtime, market_id: str) -> TradingCalendar:
    """The calendar a market trades by (its assignment, else the registry's default, else weekdays only)."""
    async with rt.read() as conn:
        a = await repo.assignment(conn, market_id, rt.settings.default_calendar)
        cal = None if a.calendar_id is None else await repo.calendar(conn, a.calendar_id)
    return rules_of(cal, a.trades_on_makeup_days)


async def next_open(conn: AsyncConnection, instrument: str, after: date, default_calendar: str | None,
                    open_at: time = time(9, 30)) -> datetime:
    """The first open of a session of the instrument's markets on a trading day after `after` (in UTC): the
    cure deadline of a margin call made at the close of `after` ("before the next open"). An instrument with
    no market that keeps hours counts by the default calendar, opening at `open_at`."""
    opens = []
    for row in await trading_repo.markets(conn):
        m = row.market
        if m.instrument != instrument or not m.sessions:
            continue
        a = await repo.assignment(conn, m.id, default_calendar)
        cal = None if a.calendar_id is None else await repo.calendar(conn, a.calendar_id)
        m = dataclasses.replace(m, calendar=rules_of(cal, a.trades_on_makeup_days))
        opens.append(datetime.combine(m.days().next_trading_day(after), time.fromisoformat(m.sessions[0][0]),
                                      SHANGHAI))
    if not opens:
        cal = None if default_calendar is None else await repo.calendar(conn, default_calendar)
        opens.append(datetime.combine(rules_of(cal, False).next_trading_day(after), open_at, SHANGHAI))
    return min(opens).astimezone(UTC)


async def legal_calendar(conn: AsyncConnection, calendar_id: str | None) -> TradingCalendar:
    """The calendar of legal periods (restoration deadlines): the named one as exchanges keep it, else weekdays."""
    cal = None if calendar_id is None else await repo.calendar(conn, calendar_id)
    return rules_of(cal, False)


# --- changes (operator actions) -----------------------------------------------------------------------------

def _days(p: Payload) -> tuple[list[CalendarDay], list[date]]:
    """The change's days to set and to remove, checked: each day named once, a workday on a weekend."""
    try:
        put = [CalendarDay(date.fromisoformat(d["day"]), d["kind"], d["name"], d.get("source") or "operator")
               for d in p.get("set") or []]
        drop = [date.fromisoformat(d) for d in p.get("remove") or []]
    except (KeyError, TypeError, ValueError):
        raise Invalid("invalid_calendar", "each day set is {day: YYYY-MM-DD, kind, name, source?}; "
                                          "each day removed is YYYY-MM-DD") from None
    named = [d.day for d in put] + drop
    if len(set(named)) != len(named):
        raise Invalid("invalid_calendar", "a change names each day once (set or remove)")
    if len(named) > MAX_DAYS:
        raise Invalid("invalid_calendar", f"at most {MAX_DAYS} days per change")
    for d in put:
        if d.kind not in (HOLIDAY, WORKDAY):
            raise Invalid("invalid_calendar", f"{d.day}: a day is a holiday or a workday (调休上班)")
        if d.kind == WORKDAY and d.day.weekday() < 5:
            raise Invalid("invalid_calendar", f"{d.day} is a weekday: a make-up working day is a Saturday or Sunday")
        if not d.name.strip():
            raise Invalid("invalid_calendar", f"{d.day}: the day needs its name")
    return put, drop


async def check_change(rt: Runtime, p: Payload) -> None:
    _days(p)
    if not (p.get("set") or p.get("remove") or p.get("name") or p.get("note") is not None):
        raise Invalid("no_changes", "a calendar change sets or removes days, or its name or note")
    async with rt.read() as conn:
        exists = await repo.calendar(conn, p["calendar_id"]) is not None
    if not exists and not p.get("name"):
        raise Invalid("invalid_calendar", f"calendar {p['calendar_id']} is new: give it a name")


def summary_change(p: Payload) -> str:
    put = p.get("set") or []
    holidays = sum(1 for d in put if d["kind"] == HOLIDAY)
    parts = [f"calendar {p['calendar_id']}: set {holidays} holidays and {len(put) - holidays} make-up working days"]
    if put:
        parts.append(f"from {min(d['day'] for d in put)} to {max(d['day'] for d in put)}")
    if p.get("remove"):
        parts.append(f"remove {', '.join(sorted(p['remove']))}")
    if p.get("name"):
        parts.append(f"named {p['name']}")
    return "; ".join(parts)


def _operator_action() -> dict[str, Any] | None:
    meta = LEDGER_META.get() or {}
    action = meta.get("operator_action")
    return None if action is None else json.loads(json.dumps(action, default=str))


async def change(rt: Runtime, actor: str, client_id: str, p: Payload) -> tuple[Calendar, list[str]]:
    """Apply a calendar change (once per client id) and bring the markets that follow it in line."""
    await check_change(rt, p)
    put, drop = _days(p)
    fp = fingerprint({"op": "changeCalendar", **p})
    cid = p["calendar_id"]
    async with rt.tx() as conn:
        prior = await repo.change_by_client(conn, actor, client_id)
        if prior is not None:
            check_replay(prior.fingerprint, fp)
        else:
            if await repo.calendar(conn, cid, lock=True) is None:
                if not p.get("name"):
                    raise Invalid("invalid_calendar", f"calendar {cid} is new: give it a name")
                await repo.create_calendar(conn, cid, p["name"], p.get("note") or "")
            else:
                await repo.describe(conn, cid, p.get("name"), p.get("note"))
            await repo.set_days(conn, cid, put)
            await repo.remove_days(conn, cid, drop)
            await repo.record_change(conn, calendar_id=cid, market_id=None, change=p, actor=actor,
                                     client_id=client_id, fingerprint=fp, operator_action=_operator_action())
    found, followers = await get(rt, cid)
    await refresh(rt, followers)
    return found, followers


async def check_assignment(rt: Runtime, p: Payload) -> None:
    await markets.load(rt, p["market_id"])  # 404 for none
    if p.get("calendar_id") is not None:
        async with rt.read() as conn:
            if await repo.calendar(conn, p["calendar_id"]) is None:
                raise NotFound("calendar", p["calendar_id"])


def summary_assignment(p: Payload) -> str:
    which = f"calendar {p['calendar_id']}" if p.get("calendar_id") else "no calendar (weekdays only)"
    makeup = "trades" if p["trades_on_makeup_days"] else "does not trade"
    return f"market {p['market_id']} follows {which} and {makeup} on make-up working days (调休)"


async def assign(rt: Runtime, actor: str, client_id: str, p: Payload) -> MarketCalendar:
    """A market follows another calendar (or none), or changes its make-up day rule: at once."""
    await check_assignment(rt, p)
    fp = fingerprint({"op": "assignMarketCalendar", **p})
    async with rt.tx() as conn:
        prior = await repo.change_by_client(conn, actor, client_id)
        if prior is not None:
            check_replay(prior.fingerprint, fp)
        else:
            await repo.assign(conn, p["market_id"], p.get("calendar_id"), bool(p["trades_on_makeup_days"]))
            await repo.record_change(conn, calendar_id=p.get("calendar_id"), market_id=p["market_id"], change=p,
                                     actor=actor, client_id=client_id, fingerprint=fp,
                                     operator_action=_operator_action())
    await refresh(rt, [p["market_id"]])
    today = trading_day(rt.clock())
    return await market_days(rt, p["market_id"], today, today)


async def refresh(rt: Runtime, market_ids: list[str]) -> None:
    """Running markets get their calendar as it is now, and (with the scheduler) follow it from this moment."""
    for mid in market_ids:
        seq = getattr(rt.exchange, "sequencers", {}).get(mid)
        if seq is None:
            continue
        seq.market = dataclasses.replace(seq.market, calendar=await of_market(rt, mid))
        if rt.scheduler is not None and getattr(seq, "stopped", None) is None:  # as sessions.start: no scheduler,
            await sessions.follow(rt, mid, rt.clock())  # sessions are opened and closed by hand


async def install(rt: Runtime, calendar_id: str, name: str, note: str, days: list[dict[str, str]],
                  actor: str, client_id: str) -> None:
    """The trusted bootstrap (the demo loader, with database access): a calendar's published days."""
    await change(rt, actor, client_id, {"calendar_id": calendar_id, "name": name, "note": note, "set": days})

