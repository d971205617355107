"""Markets: one per instrument and trading mode, with the rule settings of DESIGN.md §6, and their calendar.

Defaults are the national CEA settings (上海环境能源交易所, 2021-06-22): listing orders below 100,000 t,
±10 % band, picks within the best 5 levels, 9:30-11:30 and 13:00-15:00; block trades from 100,000 t,
±30 %, 13:00-15:00; tick 0.01 CNY; lot 1 unit. Every number is a per-market setting.

Auctions announce their lots case by case, so an auction market's grid is the instrument's own base
unit (a 0.300 t/yr or 1.200 t/yr lot needs no settings) and its minimum is one such unit; the lot's
terms (its minimum bid quantity, cap) then govern bids. Where no tick is set, the tick is the finest
one that keeps tick × lot whole fen (10.00 CNY per t on a 0.001 t lot).

The calendar (Asia/Shanghai): a market with sessions trades Monday to Friday except its holidays; each
trading day it opens at the start of its first session, pauses between sessions and closes at the end of
the last. A market with no sessions (`sessions: []`) is always open, every day; its trading day still
ends at midnight. The rules in force on a day are the market's rules with every amendment effective by
then applied in date order (`amended`, `in_force`).

`configure` is the one statement of what settings mean and which are valid. A definition is checked by
it when proposed and again when approved (`check_definition`, `define`); an amendment is the rules in
force with its changes, checked by the same function when proposed, approved and when it takes effect
(`amended`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, time
from typing import Any

from exchange.core.errors import DomainError, Invalid, NotFound
from exchange.core.idempotency import check_replay, fingerprint
from exchange.core.runtime import Runtime
from exchange.core.units import to_text
from exchange.registry import instruments
from exchange.trading import repository
from exchange.trading.calendars import repository as calendar_repo
from exchange.trading.calendars.models import rules_of
from exchange.trading.models import CLOSED, OPEN, PAUSED, Amendment, Market, MarketRow
from matching.rules import MarketRules

__all__ = ["CLOSED", "OPEN", "PAUSED", "Amendment", "Market"]  # the calendar's states and the rows, re-exported

MODES = ("continuous", "listing", "block", "auction")

DEFAULTS: dict[str, dict[str, Any]] = {
    "listing": {"band_bps": 1000, "max_units": 99_999, "min_units": 1, "best_n": 5,
                "sessions": [["09:30", "11:30"], ["13:00", "15:00"]], "in_close": True},
    "block": {"band_bps": 3000, "min_units": 100_000, "max_units": None, "best_n": 5,
              "sessions": [["13:00", "15:00"]], "in_close": False},
    "continuous": {"band_bps": 1000, "min_units": 1, "max_units": None, "best_n": 5,
                   "sessions": [["09:30", "11:30"], ["13:00", "15:00"]], "in_close": True},
    # Lots are announced case by case: the grid and the minimum are one base unit of the instrument.
    "auction": {"band_bps": None, "lot_base": 1, "min_base": 1, "max_units": None, "best_n": 5, "sessions": [],
                "in_close": False},
}


# Settings an amendment may change (the keys of a definition's settings, same units).
AMENDABLE = frozenset({"tick_fen", "lot_units", "lot_base", "band_bps", "min_units", "min_base", "max_units", "best_n",
                       "strict_best", "stp", "sessions", "holidays", "fee_bps", "t_plus_1", "in_close"})


def _check_sessions(sessions: list[list[str]]) -> list[list[str]]:
    out: list[list[str]] = []
    for pair in sessions:
        if len(pair) != 2:
            raise Invalid("invalid_sessions", "sessions are [start, end] pairs of HH:MM")
        try:
            a, b = time.fromisoformat(pair[0]), time.fromisoformat(pair[1])
        except (TypeError, ValueError):
            raise Invalid("invalid_sessions", f"{pair} is not a pair of HH:MM times") from None
        if not a < b:
            raise Invalid("invalid_sessions", f"session {pair} ends before it starts")
        if out and a <= time.fromisoformat(out[-1][1]):
            raise Invalid("invalid_sessions", f"session {pair} does not start after the one before ends")
        out.append([a.strftime("%H:%M"), b.strftime("%H:%M")])
    return out


def _check_holidays(days: list[str]) -> tuple[date, ...]:
    try:
        return tuple(sorted({date.fromisoformat(d) for d in days}))
    except (TypeError, ValueError):
        raise Invalid("invalid_holidays", "holidays are ISO dates (YYYY-MM-DD)") from None


@dataclass(frozen=True, slots=True)
class MarketConfig:
    """What a market's settings come to, once checked."""

    rules: MarketRules
    sessions: tuple[tuple[str, str], ...]
    holidays: tuple[date, ...]
    fee_bps: int
    t_plus_1: bool
    in_close: bool
    reference: int | None


def _size(given: dict[str, Any], base: dict[str, Any], name: str, unit: int) -> int | None:
    """A size in base units: `{name}_base` (base units) or `{name}_units` (whole units) as given, else as
    in `base`, base units first; None if neither says."""
    for source in (given, base):
        if source.get(f"{name}_base") is not None:
            return int(source[f"{name}_base"])
        if source.get(f"{name}_units") is not None:
            return int(source[f"{name}_units"]) * unit
    return None


def configure(mode: str, decimals: int, settings: dict[str, Any],
              base: dict[str, Any] | None = None) -> MarketConfig:
    """Settings -> rules, or a 422 (`invalid_rules`, `invalid_sessions`, `invalid_holidays`) saying what is
    wrong. What `settings` leaves unset comes from `base`: the mode's defaults for a definition, the rules
    in force (`settings_of`) for an amendment."""
    if mode not in MODES:
        raise Invalid("invalid_mode", f"mode must be one of {', '.join(MODES)}")
    unit = 10**decimals
    base = DEFAULTS[mode] if base is None else base
    given = {k: v for k, v in settings.items() if v is not None}
    cfg = {**base, **given}
    lot = _size(given, base, "lot", unit) or unit
    finest = unit // math.gcd(lot, unit)  # the smallest tick (fen) with tick x lot whole fen
    tick = int(cfg.get("tick_fen", finest))
    if (tick * lot) % unit:
        raise Invalid("invalid_rules", f"a tick of {to_text(tick, 2)} CNY on a lot of {to_text(lot, decimals)} units "
                                       f"is not whole fen: the tick must be a multiple of {to_text(finest, 2)} CNY")
    minimum = _size(given, base, "min", unit) or lot
    try:
        rules = MarketRules(tick=tick, lot=lot, band_bps=cfg.get("band_bps"), min_qty=max(lot, minimum),
                            max_qty=_size(given, base, "max", unit), best_n=int(cfg["best_n"]),
                            strict_best=bool(cfg.get("strict_best", False)), stp=cfg.get("stp", "cancel_taker"))
    except (ValueError, TypeError) as exc:
        raise Invalid("invalid_rules", str(exc)) from None
    fee_bps = int(cfg.get("fee_bps", 0))
    if not 0 <= fee_bps <= 1000:
        raise Invalid("invalid_rules", "fee_bps must be between 0 and 1000")
    return MarketConfig(rules, tuple((a, b) for a, b in _check_sessions(cfg["sessions"])),
                        _check_holidays(cfg.get("holidays", [])), fee_bps, bool(cfg.get("t_plus_1", True)),
                        bool(cfg["in_close"]), cfg.get("reference_price_fen"))


def settings_of(m: Market) -> dict[str, Any]:
    """The settings (base units) that give `m`'s rules: what an amendment leaves unchanged."""
    r = m.rules
    return {"tick_fen": r.tick, "lot_base": r.lot, "min_base": r.min_qty, "max_base": r.max_qty,
            "band_bps": r.band_bps, "best_n": r.best_n, "strict_best": r.strict_best, "stp": r.stp,
            "sessions": [list(p) for p in m.sessions], "holidays": [h.isoformat() for h in m.holidays],
            "fee_bps": m.fee_bps, "t_plus_1": m.t_plus_1, "in_close": m.in_close}


def amended(m: Market, settings: dict[str, Any]) -> Market:
    """`m` with `settings` changed (keys and units of a definition's settings); refused if inconsistent."""
    unknown = set(settings) - AMENDABLE
    if unknown:
        raise Invalid("not_amendable", f"{', '.join(sorted(unknown))} cannot be amended")
    c = configure(m.mode, m.decimals, settings, settings_of(m))
    return dataclasses.replace(m, rules=c.rules, sessions=c.sessions, holidays=c.holidays, fee_bps=c.fee_bps,
                               t_plus_1=c.t_plus_1, in_close=c.in_close)


def in_force(m: Market, pending: Sequence[Amendment], day: date) -> Market:
    """The rules in force on `day`: `m` (what is applied now) with the pending amendments due by then."""
    for a in pending:
        if a.effective_from <= day:
            m = amended(m, a.settings)
    return m


async def check_definition(rt: Runtime, instrument: str, mode: str, settings: dict[str, Any]) -> MarketConfig:
    """Everything a market definition needs, short of writing it: proposals are refused here, at once."""
    inst = await instruments.instrument(rt, instrument)
    if inst.kind == "currency":
        raise Invalid("not_tradable", "cash is not traded")
    return configure(mode, inst.decimals, settings)


async def define(rt: Runtime, actor: str, client_id: str, *, instrument: str, mode: str,
                 settings: dict[str, Any]) -> MarketView:
    config = await check_definition(rt, instrument, mode, settings)
    market_id = f"{instrument}.{mode}"
    fp = fingerprint({"instrument": instrument, "mode": mode, "settings": settings})
    async with rt.tx() as conn:
        defined = await repository.market_definition(conn, market_id)
        if defined is not None:
            if defined[:2] == (actor, client_id):
                check_replay(defined[2], fp)
                return await get(rt, market_id)
            raise DomainError("market_exists", f"market {market_id} already exists")
        await repository.insert_market(
            conn, market_id, instrument, mode, config.rules.to_dict(), [list(p) for p in config.sessions],
            [h.isoformat() for h in config.holidays], config.fee_bps, config.t_plus_1, config.in_close,
            config.reference, actor, client_id, fp)
    await rt.exchange.start_market(market_id)
    return await get(rt, market_id)


async def load(rt: Runtime, market_id: str) -> Market:
    """The market with its trading calendar (exchange/trading/calendars/), as its sequencer runs it."""
    async with rt.read() as conn:
        row = await repository.market(conn, market_id)
        if row is None:
            raise NotFound("market", market_id)
        a = await calendar_repo.assignment(conn, market_id, rt.settings.default_calendar)
        cal = None if a.calendar_id is None else await calendar_repo.calendar(conn, a.calendar_id)
    return dataclasses.replace(row.market, calendar=rules_of(cal, a.trades_on_makeup_days))


@dataclass(frozen=True, slots=True)
class MarketView:
    """A market as it trades now (`row`), each scheduled amendment with the market in force from its day on,
    and what only the running sequencer knows: whether it stopped taking writes, and why."""

    row: MarketRow
    scheduled: tuple[tuple[Amendment, Market], ...]
    writes_stopped: str | None

    @property
    def id(self) -> str:
        return self.row.market.id

    def as_dict(self) -> dict[str, Any]:
        """As an approved operator action records it (exchange.security.operator_actions): the answer's shape."""
        m, row, s = self.row.market, self.row, self.row.session
        return {
            "id": m.id, "instrument": m.instrument, "mode": m.mode, **rules_view(m),
            "reference_price": None if row.reference_price is None else to_text(row.reference_price, 2),
            "halted": row.halted, "session_open": s.session_open,
            "session_override": None if s.override_until is None else {"until": s.override_until,
                                                                        "reason": s.override_reason},
            "trading_day": s.trading_day, "last_seq": row.applied_seq, "unit_base": 10**m.decimals,
            # Prices are per unit and year of the term; every amount is price x quantity x term_years.
            "term_years": m.years,
            "writes_stopped": self.writes_stopped,
            "scheduled_amendments": [{"id": a.id, "effective_from": a.effective_from, "changes": a.settings,
                                      "rules": rules_view(then)} for a, then in self.scheduled],
        }


async def get(rt: Runtime, market_id: str) -> MarketView:
    async with rt.read() as conn:
        row = await repository.market(conn, market_id)
        if row is None:
            raise NotFound("market", market_id)
        return view(rt, row, await repository.pending_amendments(conn, market_id))


def rules_view(m: Market) -> dict[str, Any]:
    d, r = m.decimals, m.rules
    return {
        "tick": to_text(r.tick, 2), "lot": to_text(r.lot, d),
        "band_pct": None if r.band_bps is None else to_text(r.band_bps, 2),
        "min_quantity": to_text(r.min_qty, d), "max_quantity": None if r.max_qty is None else to_text(r.max_qty, d),
        "best_n": r.best_n, "strict_best": r.strict_best, "self_trade_prevention": r.stp,
        "sessions": [list(p) for p in m.sessions], "holidays": [h.isoformat() for h in m.holidays],
        "fee_bps": m.fee_bps, "t_plus_1": m.t_plus_1, "in_close": m.in_close,
    }


def view(rt: Runtime, row: MarketRow, pending: Sequence[Amendment]) -> MarketView:
    """The market as it trades now, and the rules each scheduled amendment brings from its day on."""
    m = row.market
    seq = getattr(rt.exchange, "sequencers", {}).get(m.id)
    return MarketView(row, tuple((a, in_force(m, pending, a.effective_from)) for a in pending),
                      getattr(seq, "stopped", None))


async def listing(rt: Runtime) -> list[MarketView]:
    async with rt.read() as conn:
        rows = await repository.markets(conn)
        by_market: dict[str, list[Amendment]] = {}
        for a in await repository.pending_amendments(conn):
            by_market.setdefault(a.market_id, []).append(a)
        return [view(rt, r, by_market.get(r.market.id, [])) for r in rows]
