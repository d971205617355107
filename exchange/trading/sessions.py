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

import logging
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.calendar import SHANGHAI, trading_day
from exchange.core.errors import DomainError, Invalid
from exchange.core.jobs import claim
from exchange.core.runtime import Runtime
from exchange.core.units import cny, iso, quantity
from exchange.trading import markets, repository, running
from exchange.trading.models import CLOSED, OPEN, PAUSED, ClosePrice, MarketEvent, SessionState
from ledger import commands as lc
from ledger import queries as ledger_queries
from matching import commands as mc
from matching.marketdata import vwap

log = logging.getLogger("envx.sessions")
CALENDAR = "calendar"  # the actor of scheduled transitions


# --- the market's events ------------------------------------------------------------------------

async def record(conn: AsyncConnection, market_id: str, kind: str, at: datetime, day: date | None, actor: str,
                 detail: dict[str, Any] | None = None) -> None:
    await repository.record_event(conn, market_id, kind, at, day, actor, detail or {})


async def _last_session(conn: AsyncConnection, market_id: str) -> tuple[str, date | None] | None:
    """The market's last open, pause or close and its trading day (None: it never had a session)."""
    last = await repository.last_session_event(conn, market_id)
    if last is not None:
        return last
    legacy = await repository.session(conn, market_id)  # a market from before market events
    return ("open", legacy.trading_day) if legacy.session_open else None


@dataclass(frozen=True, slots=True)
class PublicEvent:
    """A market event without participant ids -- who acted is a role: the calendar or an operator (the
    audit trail names the operator) -- with the times of its detail in ISO 8601 and its close price in CNY."""

    id: int
    at: datetime
    kind: str
    trading_day: date | None
    actor: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, e: MarketEvent) -> PublicEvent:
        detail = dict(e.detail)
        if detail.get("until") is not None:
            detail["until"] = iso(detail["until"])
        if isinstance(detail.get("close_price"), int):
            detail["close_price"] = cny(detail["close_price"])
        if isinstance(detail.get("operator_action"), dict):  # the approval: which action, not which operators
            detail["operator_action"] = {"id": detail["operator_action"].get("id")}
        return cls(e.id, e.at, e.kind, e.trading_day, CALENDAR if e.actor == CALENDAR else "operator", detail)


async def events(rt: Runtime, market_id: str, after: int, limit: int) -> list[PublicEvent]:
    """The market's events as the public reads them (listMarketEvents needs no key)."""
    async with rt.read() as conn:
        return [PublicEvent.of(e) for e in await repository.events(conn, market_id, after, limit)]


# --- transitions ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SessionAnswer:
    """The market's session after an open, pause or close; a close also says the day's close price (None if
    there is none: no in-close trade and no previous close)."""

    market_id: str
    session: SessionState
    closed: bool = False
    close: ClosePrice | None = None
    decimals: int = 0  # of the instrument, for the close's volume

    def as_dict(self) -> dict[str, Any]:
        s = self.session
        out: dict[str, Any] = {
            "market_id": self.market_id, "session_open": s.session_open, "trading_day": s.trading_day,
            "session_override": None if s.override_until is None else {"until": s.override_until,
                                                                        "reason": s.override_reason}}
        if self.closed:
            out["close"] = None if self.close is None else close_view(self.close, self.decimals)
        return out


def _state(seq: Any, row: SessionState, close: ClosePrice | None = None, *, closed: bool = False) -> SessionAnswer:
    return SessionAnswer(seq.market.id, row, closed, close, seq.market.decimals)


def close_view(close: ClosePrice, decimals: int) -> dict[str, Any]:
    """A day's close (compute_close) in the user's units."""
    return {"instrument": close.instrument, "trading_day": close.trading_day, "price": cny(close.price),
            "method": close.method, "volume": quantity(close.volume, decimals), "turnover": cny(close.turnover)}


async def _row(conn: AsyncConnection, market_id: str) -> SessionState:
    return await repository.session(conn, market_id)


async def _begin_day(rt: Runtime, seq: Any, day: date, actor: str) -> None:
    """A new trading day: the amendments due by then take effect, then yesterday's purchases are freed."""
    await apply_amendments(rt, seq, day, actor)
    await release_t1(rt, seq.market.instrument, day)


async def _set(rt: Runtime, seq: Any, kind: str, day: date, actor: str,
               override: tuple[datetime, str] | None = None) -> SessionAnswer:
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
        await repository.set_session(conn, mid, kind == "open", day, override)
        await record(conn, mid, kind, rt.clock(), day, actor, detail)
        row = await _row(conn, mid)
    seq.trading_day = day
    seq.session_open = kind == "open"
    return _state(seq, row)


async def _close(rt: Runtime, seq: Any, actor: str) -> SessionAnswer:
    m = seq.market
    day = seq.trading_day or trading_day(rt.clock())
    async with rt.read() as conn:
        if await _last_session(conn, m.id) == ("close", day):
            return _state(seq, await _row(conn, m.id), None, closed=True)
    async with rt.tx() as conn:
        await repository.end_session(conn, m.id)
    seq.session_open = False
    await seq.submit(lambda _s: mc.EndOfDay())
    close = await compute_close(rt, m.instrument, day)
    async with rt.tx() as conn:
        await record(conn, m.id, "close", rt.clock(), day, actor,
                     {"close_price": None if close is None else close.price})
        row = await _row(conn, m.id)
    return _state(seq, row, close, closed=True)


async def open_session(rt: Runtime, market_id: str, day: date | None = None, *, actor: str = CALENDAR,
                       override: tuple[datetime, str] | None = None) -> SessionAnswer:
    seq = running.sequencer(rt, market_id)
    async with seq.session_lock:
        return await _set(rt, seq, "open", day or trading_day(rt.clock()), actor, override)


async def pause_session(rt: Runtime, market_id: str, *, actor: str = CALENDAR) -> SessionAnswer:
    seq = running.sequencer(rt, market_id)
    async with seq.session_lock:
        return await _set(rt, seq, "pause", seq.trading_day or trading_day(rt.clock()), actor)


async def close_session(rt: Runtime, market_id: str, *, actor: str = CALENDAR) -> SessionAnswer:
    seq = running.sequencer(rt, market_id)
    async with seq.session_lock:
        return await _close(rt, seq, actor)


async def release_t1(rt: Runtime, instrument: str, day: date) -> int:
    """Units bought before `day` (Asia/Shanghai) become sellable: void their T+1 locks. Locks made on `day`
    itself stay, so a market of the instrument that begins its day late frees nothing bought that day."""
    start_us = int(datetime.combine(day, time(0), SHANGHAI).timestamp()) * 1_000_000
    async with rt.read() as conn:
        holds = await ledger_queries.pending_t1_holds(conn, instrument, start_us)
    for h in holds:
        await rt.submit(lc.Request("exchange", lc.VoidHold(h), f"t1-release:{h}"))
    return len(holds)


async def compute_close(rt: Runtime, instrument: str, day: date) -> ClosePrice | None:
    """VWAP of the day's in-close trades of the instrument; else the previous close. Idempotent."""
    async with rt.read() as conn:
        agg = await repository.in_close_trades(conn, instrument, day)
        prev = await repository.previous_close(conn, instrument, day)
        tick = await repository.finest_tick(conn, instrument) or 1
    if agg.volume:
        price, method = vwap(agg.price_times_qty, agg.volume, int(tick)), "vwap"
    elif prev is not None:
        price, method = int(prev), "previous_close"
    else:
        return None
    close = ClosePrice(instrument, day, price, method, agg.volume, agg.turnover)
    async with rt.tx() as conn:
        await repository.upsert_close(conn, close)
        await repository.set_reference_price(conn, instrument, price)
    # The close is the next day's reference: every market of the instrument re-centres its band.
    reference = mc.SetReference(price)
    for s in running.sequencers(rt):
        if s.market.instrument == instrument and getattr(s, "stopped", None) is None:
            await s.submit(lambda _s: reference)
    await _after_close(rt, instrument, price, day)
    return close


async def _after_close(rt: Runtime, instrument: str, price: int, day: date) -> None:
    """What follows a close elsewhere (pledge valuations) is registered on the runtime by its owner."""
    for hook in list(rt.close_hooks):
        try:
            await hook(instrument, price, day)
        except Exception:
            log.exception("a close hook after the close of %s failed", instrument)


@dataclass(frozen=True, slots=True)
class Halted:
    market_id: str
    halted: bool


async def halt(rt: Runtime, market_id: str, reason: str, resume: bool = False) -> Halted:
    seq = running.sequencer(rt, market_id)
    await seq.submit(lambda _s: mc.Resume() if resume else mc.Halt(reason))
    async with rt.tx() as conn:
        await repository.set_halted(conn, market_id, not resume)
    seq.halted = not resume
    return Halted(market_id, not resume)


# --- amendments taking effect ---------------------------------------------------------------------

async def apply_amendments(rt: Runtime, seq: Any, day: date, actor: str) -> None:
    """The amendments effective by `day` become the market's rules: its row, its engine (journaled, so a
    replay reproduces it; what rests off the new grid is cancelled and released), its jobs."""
    mid = seq.market.id
    async with rt.read() as conn:
        due = [a for a in await repository.pending_amendments(conn, mid) if a.effective_from <= day]
    if not due:
        return
    new = seq.market
    for a in due:
        new = markets.amended(new, a.settings)
    async with rt.tx() as conn:
        await repository.set_rules(conn, new)
        await repository.mark_applied(conn, [a.id for a in due], rt.clock())
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

async def follow(rt: Runtime, market_id: str, now: datetime, actor: str = CALENDAR) -> SessionAnswer | None:
    """Bring the session to what the calendar (or an override in force) says at `now`. Idempotent."""
    seq = running.sequencer(rt, market_id)
    if getattr(seq, "stopped", None) is not None:
        return None  # takes no writes
    async with seq.session_lock:
        async with rt.read() as conn:
            row = await _row(conn, market_id)
            last = await _last_session(conn, market_id)
            pending = await repository.pending_amendments(conn, market_id)
        if row.override_until is not None:
            if now < row.override_until:
                return None  # an operator's override is in force until then
            async with rt.tx() as conn:
                await repository.end_override(conn, market_id)
        state, day = markets.in_force(seq.market, pending, trading_day(now)).scheduled(now)
        kind, was = last if last is not None else ("close", None)
        in_session = kind in ("open", "pause")
        if state == CLOSED:
            return await _close(rt, seq, actor) if in_session else None
        if was == day and (kind == "close" or (kind, state) in (("open", OPEN), ("pause", PAUSED))):
            return None  # already so, or closed for the day
        if in_session and was is not None and was < day:
            await _close(rt, seq, actor)  # yesterday was never closed (always-open market, missed close)
        return await _set(rt, seq, "open" if state == OPEN else "pause", day, actor)


async def session_action(rt: Runtime, market_id: str, action: str, *, actor: str = CALENDAR,
                         override: bool = False, reason: str | None = None) -> SessionAnswer:
    """An operator's open, pause or close. An open outside the market's hours needs an explicit override."""
    seq = running.sequencer(rt, market_id)
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
        m = markets.in_force(seq.market, await repository.pending_amendments(conn, market_id), trading_day(now))
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
    seq = running.sequencer(rt, market_id)
    async with rt.read() as conn:
        pending = await repository.pending_amendments(conn, market_id)
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
    seq = running.sequencer(rt, market_id)
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

