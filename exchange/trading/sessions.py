"""Trading sessions on each market's calendar (exchange/trading/markets.py), run by APScheduler or by an operator.

- open: the market accepts orders. The first open (or pause) of a new trading day first applies the
  amendments of the market's rules effective by that day, then releases the T+1 locks of earlier days;
- pause: between two sessions (the lunch break): orders are refused, the book keeps resting orders;
- close: day orders expire (their holds are released), the close price is the VWAP of the day's
  in-close trades of the instrument (fallback: the previous close), and it becomes every market's
  reference price for the next day's bands. Pledge valuations follow the close. A close ends the
  trading day: the calendar does not reopen that day, the next one opens as scheduled.

`follow(rt, market, now)` is the one rule that brings a session to what the calendar says at `now`;
scheduled jobs, a process start (catching up what it missed) and a market defined or amended at run
time all go through it. Jobs wake a market at every transition time of its hours (those in force and
those of its scheduled amendments) and at midnight (the end of an always-open market's trading day,
and of overrides); each run is claimed in `job_runs` first, so two processes never fire the same one.

Operators: an open outside the market's hours is refused (409 `outside_hours`) unless it says
`override: true` with a reason. An override lasts until the next scheduled transition of that day or
the end of the day, whichever comes first; then the calendar takes over again (after hours: the day is
closed, day orders expire). Pause and close are allowed at any time. Every open, pause and close is a
market event (who, when, why, until when); operators' calls are also in the audit trail.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.calendar import SHANGHAI, trading_day
from exchange.core.errors import DomainError, Invalid
from exchange.core.jobs import claim
from exchange.core.runtime import Runtime
from exchange.core.units import cny, iso, quantity
from exchange.trading import markets
from exchange.trading.markets import CLOSED, OPEN, PAUSED
from ledger import commands as lc
from matching import commands as mc
from matching.marketdata import vwap

log = logging.getLogger("envx.sessions")
CALENDAR = "calendar"  # the actor of scheduled transitions


# --- the market's events ------------------------------------------------------------------------

async def record(conn: AsyncConnection, market_id: str, kind: str, at: datetime, day: date | None, actor: str,
                 detail: dict[str, Any] | None = None) -> None:
    await conn.execute(text(
        """INSERT INTO market_events (market_id, at, kind, trading_day, actor, detail)
           VALUES (:m, :at, :k, :d, :a, CAST(:detail AS jsonb))"""),
        {"m": market_id, "at": at, "k": kind, "d": day, "a": actor, "detail": _json(detail or {})})


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True,
                      default=lambda v: iso(v) if isinstance(v, datetime) else str(v))


async def _last_session(conn: AsyncConnection, market_id: str) -> tuple[str, date] | None:
    """The market's last open, pause or close and its trading day (None: it never had a session)."""
    row = (await conn.execute(text(
        """SELECT kind, trading_day FROM market_events WHERE market_id = :m AND kind IN ('open', 'pause', 'close')
           ORDER BY id DESC LIMIT 1"""), {"m": market_id})).first()
    if row is not None:
        return row.kind, row.trading_day
    legacy = (await conn.execute(text("SELECT session_open, trading_day FROM markets WHERE id = :m"),
                                 {"m": market_id})).one()  # a market from before market events
    return ("open", legacy.trading_day) if legacy.session_open else None


async def events(rt: Runtime, market_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """The market's events as the public reads them (listMarketEvents needs no key)."""
    async with rt.read() as conn:
        rows = await conn.execute(text(
            """SELECT id, at, kind, trading_day, actor, detail FROM market_events
               WHERE market_id = :m AND id > :a ORDER BY id LIMIT :l"""), {"m": market_id, "a": after, "l": limit})
        return [event_view(dict(r._mapping)) for r in rows]


def event_view(e: dict[str, Any]) -> dict[str, Any]:
    """A market event without participant ids -- who acted is a role: the calendar or an operator (the
    audit trail names the operator) -- with its times in ISO 8601 and its close price in CNY."""
    detail = dict(e["detail"] or {})
    if detail.get("until") is not None:
        detail["until"] = iso(detail["until"])
    if isinstance(detail.get("close_price"), int):
        detail["close_price"] = cny(detail["close_price"])
    if isinstance(detail.get("operator_action"), dict):  # the approval: which action, not which operators
        detail["operator_action"] = {"id": detail["operator_action"].get("id")}
    return {**e, "actor": CALENDAR if e["actor"] == CALENDAR else "operator", "detail": detail}


# --- transitions ----------------------------------------------------------------------------------

def _state(seq: Any, row: Any, close: dict[str, Any] | None = None, *, closed: bool = False) -> dict[str, Any]:
    out = {"market_id": seq.market.id, "session_open": bool(row.session_open), "trading_day": row.trading_day,
           "session_override": None if row.override_until is None else {"until": row.override_until,
                                                                         "reason": row.override_reason}}
    if closed:
        out["close"] = None if close is None else close_view(close, seq.market.decimals)
    return out


def close_view(close: dict[str, Any], decimals: int) -> dict[str, Any]:
    """A day's close (compute_close) in the user's units."""
    return {**close, "price": cny(close["price"]), "volume": quantity(close["volume"], decimals),
            "turnover": cny(close["turnover"])}


async def _row(conn: AsyncConnection, market_id: str) -> Any:
    return (await conn.execute(text(
        "SELECT session_open, trading_day, override_until, override_reason FROM markets WHERE id = :m"),
        {"m": market_id})).one()


async def _begin_day(rt: Runtime, seq: Any, day: date, actor: str) -> None:
    """A new trading day: the amendments due by then take effect, then yesterday's purchases are freed."""
    await apply_amendments(rt, seq, day, actor)
    await release_t1(rt, seq.market.instrument, day)


async def _set(rt: Runtime, seq: Any, kind: str, day: date, actor: str,
               override: tuple[datetime, str] | None = None) -> dict[str, Any]:
    """Open or pause the session for `day` (no lock: callers hold the market's session lock)."""
    mid = seq.market.id
    async with rt.read() as conn:
        last = await _last_session(conn, mid)
        prev = (await _row(conn, mid)).trading_day
    if last == (kind, day):  # already so: nothing to record
        async with rt.read() as conn:
            return _state(seq, await _row(conn, mid))
    if prev is None or day > prev:
        await _begin_day(rt, seq, day, actor)
    detail: dict[str, Any] = {}
    if override is not None:
        detail = {"override": True, "until": override[0], "reason": override[1]}
    async with rt.tx() as conn:
        await conn.execute(text(
            """UPDATE markets SET session_open = :o, trading_day = :d, override_until = :u, override_reason = :r
               WHERE id = :m"""),
            {"o": kind == "open", "d": day, "u": override[0] if override else None,
             "r": override[1] if override else None, "m": mid})
        await record(conn, mid, kind, rt.clock(), day, actor, detail)
        row = await _row(conn, mid)
    seq.trading_day = day
    seq.session_open = kind == "open"
    return _state(seq, row)


async def _close(rt: Runtime, seq: Any, actor: str) -> dict[str, Any]:
    m = seq.market
    day = seq.trading_day or trading_day(rt.clock())
    async with rt.read() as conn:
        if await _last_session(conn, m.id) == ("close", day):
            return _state(seq, await _row(conn, m.id), None, closed=True)
    async with rt.tx() as conn:
        await conn.execute(text(
            "UPDATE markets SET session_open = false, override_until = NULL, override_reason = NULL WHERE id = :m"),
            {"m": m.id})
    seq.session_open = False
    await seq.submit(lambda _s: mc.EndOfDay())
    close = await compute_close(rt, m.instrument, day)
    async with rt.tx() as conn:
        await record(conn, m.id, "close", rt.clock(), day, actor,
                     {"close_price": None if close is None else close["price"]})
        row = await _row(conn, m.id)
    return _state(seq, row, close, closed=True)


async def open_session(rt: Runtime, market_id: str, day: date | None = None, *, actor: str = CALENDAR,
                       override: tuple[datetime, str] | None = None) -> dict[str, Any]:
    seq = rt.exchange.get(market_id)
    async with seq.session_lock:
        return await _set(rt, seq, "open", day or trading_day(rt.clock()), actor, override)


async def pause_session(rt: Runtime, market_id: str, *, actor: str = CALENDAR) -> dict[str, Any]:
    seq = rt.exchange.get(market_id)
    async with seq.session_lock:
        return await _set(rt, seq, "pause", seq.trading_day or trading_day(rt.clock()), actor)


async def close_session(rt: Runtime, market_id: str, *, actor: str = CALENDAR) -> dict[str, Any]:
    seq = rt.exchange.get(market_id)
    async with seq.session_lock:
        return await _close(rt, seq, actor)


async def release_t1(rt: Runtime, instrument: str, day: date) -> int:
    """Units bought before `day` (Asia/Shanghai) become sellable: void their T+1 locks. Locks made on `day`
    itself stay, so a market of the instrument that begins its day late frees nothing bought that day."""
    start_us = int(datetime.combine(day, time(0), SHANGHAI).timestamp()) * 1_000_000
    async with rt.read() as conn:
        holds = [r.id for r in await conn.execute(text(
            """SELECT h.id FROM ledger_holds h JOIN ledger_entries e ON e.seq = h.id
               WHERE h.kind = 't1' AND h.state = 'pending' AND h.instrument = :i AND e.ts < :t ORDER BY h.id"""),
            {"i": instrument, "t": start_us})]
    for h in holds:
        await rt.submit(lc.Request("exchange", lc.VoidHold(h), f"t1-release:{h}"))
    return len(holds)


async def compute_close(rt: Runtime, instrument: str, day: date) -> dict[str, Any] | None:
    """VWAP of the day's in-close trades of the instrument; else the previous close. Idempotent."""
    async with rt.read() as conn:
        agg = (await conn.execute(text(
            """SELECT coalesce(sum(notional), 0) AS turnover, coalesce(sum(qty), 0) AS volume,
                      coalesce(sum(price * qty), 0) AS pq
               FROM trades WHERE instrument = :i AND trading_day = :d AND in_close"""),
            {"i": instrument, "d": day})).one()
        prev = (await conn.execute(text(
            """SELECT price FROM close_prices WHERE instrument = :i AND trading_day < :d
               ORDER BY trading_day DESC LIMIT 1"""),
            {"i": instrument, "d": day})).scalar()
        tick = (await conn.execute(text(
            "SELECT min((rules->>'tick')::bigint) FROM markets WHERE instrument = :i"),
            {"i": instrument})).scalar() or 1
    if agg.volume:
        price, method = vwap(int(agg.pq), int(agg.volume), int(tick)), "vwap"
    elif prev is not None:
        price, method = int(prev), "previous_close"
    else:
        return None
    async with rt.tx() as conn:
        await conn.execute(text(
            """INSERT INTO close_prices (instrument, trading_day, price, method, volume, turnover)
               VALUES (:i, :d, :p, :m, :v, :t)
               ON CONFLICT (instrument, trading_day) DO UPDATE SET price = EXCLUDED.price, method = EXCLUDED.method,
                   volume = EXCLUDED.volume, turnover = EXCLUDED.turnover"""),
            {"i": instrument, "d": day, "p": price, "m": method, "v": int(agg.volume), "t": int(agg.turnover)})
        await conn.execute(text("UPDATE markets SET reference_price = :p WHERE instrument = :i"),
                           {"p": price, "i": instrument})
    # The close is the next day's reference: every market of the instrument re-centres its band.
    for s in rt.exchange.sequencers.values():
        if s.market.instrument == instrument and getattr(s, "stopped", None) is None:
            await s.submit(lambda _s, p=price: mc.SetReference(p))
    await _after_close(rt, instrument, price, day)
    return {"instrument": instrument, "trading_day": day, "price": price, "method": method,
            "volume": int(agg.volume), "turnover": int(agg.turnover)}


async def _after_close(rt: Runtime, instrument: str, price: int, day: date) -> None:
    """What follows a close elsewhere (pledge valuations) is registered on the runtime by its owner."""
    for hook in list(rt.close_hooks):
        try:
            await hook(instrument, price, day)
        except Exception:
            log.exception("a close hook after the close of %s failed", instrument)


async def halt(rt: Runtime, market_id: str, reason: str, resume: bool = False) -> dict[str, Any]:
    seq = rt.exchange.get(market_id)
    await seq.submit(lambda _s: mc.Resume() if resume else mc.Halt(reason))
    async with rt.tx() as conn:
        await conn.execute(text("UPDATE markets SET halted = :h WHERE id = :m"), {"h": not resume, "m": market_id})
    seq.halted = not resume
    return {"market_id": market_id, "halted": not resume}


# --- amendments taking effect ---------------------------------------------------------------------

async def apply_amendments(rt: Runtime, seq: Any, day: date, actor: str) -> None:
    """The amendments effective by `day` become the market's rules: its row, its engine (journaled, so a
    replay reproduces it; what rests off the new grid is cancelled and released), its jobs."""
    mid = seq.market.id
    async with rt.read() as conn:
        due = [a for a in await markets.pending_amendments(conn, mid) if a.effective_from <= day]
    if not due:
        return
    new = seq.market
    for a in due:
        new = markets.amended(new, a.settings)
    async with rt.tx() as conn:
        await conn.execute(text(
            """UPDATE markets SET rules = CAST(:rules AS jsonb), sessions = CAST(:s AS jsonb),
                                  holidays = CAST(:h AS jsonb), fee_bps = :f, t_plus_1 = :t1, in_close = :c
               WHERE id = :m"""),
            {"rules": _json(new.rules.to_dict()), "s": _json([list(p) for p in new.sessions]),
             "h": _json([h.isoformat() for h in new.holidays]), "f": new.fee_bps, "t1": new.t_plus_1,
             "c": new.in_close, "m": mid})
        await conn.execute(text("UPDATE market_amendments SET applied_at = :now WHERE id = ANY(:ids)"),
                           {"now": rt.clock(), "ids": [a.id for a in due]})
        await record(conn, mid, "amendment_effective", rt.clock(), day, actor,
                     {"amendments": [a.id for a in due], "rules": markets.rules_view(new)})
    seq.market = new
    await sync_engine_rules(seq)
    await schedule(rt, mid)


async def sync_engine_rules(seq: Any) -> None:
    """The engine runs the market's rules (after an amendment, or a restart between the two writes)."""
    if seq.engine.rules != seq.market.rules:
        rules = seq.market.rules.to_dict()
        await seq.submit(lambda _s: mc.SetRules(rules))


# --- following the calendar -------------------------------------------------------------------------

async def follow(rt: Runtime, market_id: str, now: datetime, actor: str = CALENDAR) -> dict[str, Any] | None:
    """Bring the session to what the calendar (or an override in force) says at `now`. Idempotent."""
    seq = rt.exchange.get(market_id)
    if getattr(seq, "stopped", None) is not None:
        return None  # takes no writes
    async with seq.session_lock:
        async with rt.read() as conn:
            row = await _row(conn, market_id)
            last = await _last_session(conn, market_id)
            pending = await markets.pending_amendments(conn, market_id)
        if row.override_until is not None:
            if now < row.override_until:
                return None  # an operator's override is in force until then
            async with rt.tx() as conn:
                await conn.execute(text(
                    "UPDATE markets SET override_until = NULL, override_reason = NULL WHERE id = :m"), {"m": market_id})
        state, day = markets.in_force(seq.market, pending, trading_day(now)).scheduled(now)
        kind, was = last if last is not None else ("close", None)
        running = kind in ("open", "pause")
        if state == CLOSED:
            return await _close(rt, seq, actor) if running else None
        if was == day and (kind == "close" or (kind, state) in (("open", OPEN), ("pause", PAUSED))):
            return None  # already so, or closed for the day
        if running and was is not None and was < day:
            await _close(rt, seq, actor)  # yesterday was never closed (always-open market, missed close)
        return await _set(rt, seq, "open" if state == OPEN else "pause", day, actor)


async def session_action(rt: Runtime, market_id: str, action: str, *, actor: str = CALENDAR,
                         override: bool = False, reason: str | None = None) -> dict[str, Any]:
    """An operator's open, pause or close. An open outside the market's hours needs an explicit override."""
    seq = rt.exchange.get(market_id)
    if getattr(seq, "stopped", None) is not None:
        raise seq.stopped_error()
    if action == "pause":
        return await pause_session(rt, market_id, actor=actor)
    if action == "close":
        return await close_session(rt, market_id, actor=actor)
    if action != "open":
        raise DomainError("invalid_action", "action is open, pause or close", 422)
    now = rt.clock()
    async with rt.read() as conn:
        m = markets.in_force(seq.market, await markets.pending_amendments(conn, market_id), trading_day(now))
    state, day = m.scheduled(now)
    if state == OPEN:
        return await open_session(rt, market_id, day, actor=actor)
    if not override:
        hours = ", ".join(f"{a}-{b}" for a, b in m.sessions)
        raise DomainError("outside_hours", f"market {market_id} trades {hours} Asia/Shanghai on its trading days; "
                          f"it is {state} now. An operator may open it with \"override\": true and a reason",
                          409, sessions=[list(p) for p in m.sessions], now=iso(now))
    if not reason or not reason.strip():
        raise Invalid("reason_required", "an override of the market's hours needs a reason")
    if seq.session_open:
        async with rt.read() as conn:
            return _state(seq, await _row(conn, market_id))  # open already (by an earlier override)
    return await open_session(rt, market_id, day, actor=actor, override=(m.next_transition(now), reason.strip()))


# --- jobs ----------------------------------------------------------------------------------------

def job_id(market_id: str, at: str) -> str:
    return f"session:{market_id}:{at}"


async def schedule(rt: Runtime, market_id: str) -> list[str]:
    """(Re)install the market's calendar jobs: one a day at each transition time of its hours, those in
    force and those of its scheduled amendments, and at midnight. The calendar decides what each does."""
    scheduler = rt.scheduler
    if scheduler is None:
        return []
    seq = rt.exchange.get(market_id)
    async with rt.read() as conn:
        pending = await markets.pending_amendments(conn, market_id)
    versions, m = [seq.market], seq.market
    for a in pending:
        m = markets.amended(m, a.settings)
        versions.append(m)
    times = sorted({"00:00"} | {t for v in versions for pair in v.sessions for t in pair})
    prefix = job_id(market_id, "")
    for job in scheduler.get_jobs():
        if job.id.startswith(prefix) and job.id[len(prefix):] not in times:
            job.remove()
    for at in times:
        hh, mm = (int(x) for x in at.split(":"))
        scheduler.add_job(run_job, "cron", hour=hh, minute=mm, timezone=SHANGHAI, args=[rt, market_id],
                          id=job_id(market_id, at), replace_existing=True, misfire_grace_time=300, coalesce=True)
    return [job_id(market_id, at) for at in times]


async def run_job(rt: Runtime, market_id: str) -> None:
    now = rt.clock()
    if not await claim(rt, "session", f"{market_id}:{now.astimezone(SHANGHAI):%Y-%m-%dT%H:%M}"):
        return
    await follow(rt, market_id, now)


async def start(rt: Runtime, market_id: str) -> None:
    """A market's sequencer is running (process start, or just defined): give it its calendar. Without a
    scheduler, sessions are opened by hand, except that an always-open market comes up open."""
    seq = rt.exchange.get(market_id)
    if getattr(seq, "stopped", None) is not None:
        return
    await sync_engine_rules(seq)
    if rt.scheduler is not None:
        await schedule(rt, market_id)
        await follow(rt, market_id, rt.clock())
        return
    if not seq.market.sessions:
        async with rt.read() as conn:
            never = await _last_session(conn, market_id) is None
        if never:
            await open_session(rt, market_id)

