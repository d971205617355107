"""Trading sessions on the Asia/Shanghai calendar, run by APScheduler or by an operator.

- open: the market accepts orders; on a new trading day the T+1 locks of earlier days are released;
- pause: the lunch break (11:30-13:00): orders are refused, the book keeps resting orders;
- close: day orders expire (their holds are released), the close price is the VWAP of the day's
  in-close trades of the instrument (fallback: the previous close), and it becomes every market's
  reference price for the next day's bands. Pledge valuations follow the close.

Every scheduled job first claims its run in `job_runs`, so two processes never fire the same one.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import date, datetime
from typing import Any

from sqlalchemy import text

from exchange.errors import DomainError
from exchange.markets import SHANGHAI, trading_day
from exchange.runtime import Runtime
from ledger import commands as lc
from matching import commands as mc
from matching.marketdata import vwap

log = logging.getLogger("envx.sessions")
WORKER = f"{socket.gethostname()}:{os.getpid()}"


async def claim(rt: Runtime, job: str, run_key: str) -> bool:
    async with rt.tx() as conn:
        row = (await conn.execute(text(
            """INSERT INTO job_runs (job, run_key, claimed_by) VALUES (:j, :k, :w)
               ON CONFLICT DO NOTHING RETURNING job"""), {"j": job, "k": run_key, "w": WORKER})).first()
    return row is not None


async def open_session(rt: Runtime, market_id: str, day: date | None = None) -> dict[str, Any]:
    day = day or trading_day(datetime.now(SHANGHAI))
    seq = rt.exchange.get(market_id)
    async with rt.tx() as conn:
        prev = (await conn.execute(text("SELECT trading_day FROM markets WHERE id = :m FOR UPDATE"),
                                   {"m": market_id})).scalar()
        await conn.execute(text("UPDATE markets SET session_open = true, trading_day = :d WHERE id = :m"),
                           {"d": day, "m": market_id})
    seq.trading_day = day
    seq.session_open = True
    if prev is None or day > prev:
        await release_t1(rt, seq.market.instrument, day)
    return {"market_id": market_id, "session_open": True, "trading_day": day}


async def release_t1(rt: Runtime, instrument: str, day: date) -> int:
    """Units bought on earlier days become sellable: void their T+1 locks."""
    async with rt.read() as conn:
        holds = [r.id for r in await conn.execute(text(
            "SELECT id FROM ledger_holds WHERE kind = 't1' AND state = 'pending' AND instrument = :i ORDER BY id"),
            {"i": instrument})]
    for h in holds:
        await rt.submit(lc.Request("exchange", lc.VoidHold(h), f"t1-release:{h}"))
    return len(holds)


async def pause_session(rt: Runtime, market_id: str) -> dict[str, Any]:
    seq = rt.exchange.get(market_id)
    async with rt.tx() as conn:
        await conn.execute(text("UPDATE markets SET session_open = false WHERE id = :m"), {"m": market_id})
    seq.session_open = False
    return {"market_id": market_id, "session_open": False}


async def close_session(rt: Runtime, market_id: str) -> dict[str, Any]:
    seq = rt.exchange.get(market_id)
    m = seq.market
    await pause_session(rt, market_id)
    await seq.submit(lambda _s: mc.EndOfDay())
    day = seq.trading_day or trading_day(datetime.now(SHANGHAI))
    close = await compute_close(rt, m.instrument, day)
    return {"market_id": market_id, "session_open": False, "trading_day": day, "close": close}


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
    """Pledge valuations follow the close (when the pledge service is installed)."""
    try:
        from exchange import pledging
    except ImportError:
        return
    revalue = getattr(pledging, "revalue", None)
    if revalue is not None:
        try:
            await revalue(rt, instrument, price, day)
        except Exception:
            log.exception("pledge revaluation after the close of %s failed", instrument)


async def halt(rt: Runtime, market_id: str, reason: str, resume: bool = False) -> dict[str, Any]:
    seq = rt.exchange.get(market_id)
    await seq.submit(lambda _s: mc.Resume() if resume else mc.Halt(reason))
    async with rt.tx() as conn:
        await conn.execute(text("UPDATE markets SET halted = :h WHERE id = :m"), {"h": not resume, "m": market_id})
    seq.halted = not resume
    return {"market_id": market_id, "halted": not resume}


async def session_action(rt: Runtime, market_id: str, action: str) -> dict[str, Any]:
    if action == "open":
        return await open_session(rt, market_id)
    if action == "pause":
        return await pause_session(rt, market_id)
    if action == "close":
        return await close_session(rt, market_id)
    raise DomainError("invalid_action", "action is open, pause or close", 422)


def install_jobs(rt: Runtime, scheduler: Any) -> None:
    """Cron jobs at every session boundary of every market (Mon-Fri, Asia/Shanghai)."""
    for seq in rt.exchange.sequencers.values():
        sessions = seq.market.sessions
        for i, (start, end) in enumerate(sessions):
            for at, action in ((start, "open"), (end, "close" if i == len(sessions) - 1 else "pause")):
                hh, mm = (int(x) for x in at.split(":"))
                scheduler.add_job(_job, "cron", day_of_week="mon-fri", hour=hh, minute=mm, timezone=SHANGHAI,
                                  args=[rt, seq.market.id, action, at], id=f"{seq.market.id}:{action}:{at}",
                                  replace_existing=True, misfire_grace_time=300, coalesce=True)


async def _job(rt: Runtime, market_id: str, action: str, at: str) -> None:
    day = trading_day(datetime.now(SHANGHAI))
    if not await claim(rt, f"session:{action}", f"{market_id}:{day}:{at}"):
        return
    log.info("session %s of %s at %s", action, market_id, at)
    await session_action(rt, market_id, action)
