"""Markets: one per instrument and trading mode, with the rule settings of DESIGN.md §6.

Defaults are the national CEA settings (上海环境能源交易所, 2021-06-22): listing orders below 100,000 t,
±10 % band, picks within the best 5 levels, 9:30-11:30 and 13:00-15:00; block trades from 100,000 t,
±30 %, 13:00-15:00; tick 0.01 CNY; lot 1 unit. Every number is a per-market setting.

Auctions announce their lots case by case, so an auction market's grid is the instrument's own base
unit (a 0.300 t/yr or 1.200 t/yr lot needs no settings) and its minimum is one such unit; the lot's
terms (its minimum bid quantity, cap) then govern bids. Where no tick is set, the tick is the finest
one that keeps tick × lot whole fen (10.00 CNY per t on a 0.001 t lot). `configure` is the one
statement of what settings mean and which are valid: maker-checker runs it when a definition is
proposed and again when it is approved.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from exchange import instruments
from exchange.errors import DomainError, Invalid, NotFound
from exchange.idempotency import check_replay, fingerprint
from exchange.instrument_kinds import term_years
from exchange.runtime import Runtime
from exchange.units import to_text
from matching.rules import MarketRules

SHANGHAI = ZoneInfo("Asia/Shanghai")
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


@dataclass(frozen=True, slots=True)
class Market:
    id: str
    instrument: str
    mode: str
    decimals: int
    rules: MarketRules
    sessions: tuple[tuple[str, str], ...]
    fee_bps: int
    t_plus_1: bool
    in_close: bool
    years: int = 1  # the instrument's term: prices are per unit-year, money is price x quantity x years

    def in_hours(self, now: datetime) -> bool:
        """Whether `now` falls in one of the market's Asia/Shanghai sessions (none listed: always)."""
        if not self.sessions:
            return True
        local = now.astimezone(SHANGHAI).time()
        return any(time.fromisoformat(a) <= local < time.fromisoformat(b) for a, b in self.sessions)


def market_from_row(row: Any, decimals: int, years: int = 1) -> Market:
    rules = MarketRules(**row.rules)
    return Market(row.id, row.instrument, row.mode, decimals, rules,
                  tuple((a, b) for a, b in row.sessions), row.fee_bps, row.t_plus_1, row.in_close, years)


def trading_day(now: datetime) -> date:
    return now.astimezone(SHANGHAI).date()


def _check_sessions(sessions: list[list[str]]) -> list[list[str]]:
    out = []
    for pair in sessions:
        if len(pair) != 2:
            raise Invalid("invalid_sessions", "sessions are [start, end] pairs of HH:MM")
        try:
            a, b = time.fromisoformat(pair[0]), time.fromisoformat(pair[1])
        except ValueError:
            raise Invalid("invalid_sessions", f"{pair} is not a pair of HH:MM times") from None
        if not a < b:
            raise Invalid("invalid_sessions", f"session {pair} ends before it starts")
        out.append([a.strftime("%H:%M"), b.strftime("%H:%M")])
    return out


@dataclass(frozen=True, slots=True)
class MarketConfig:
    """What a market definition's settings come to, once checked."""

    rules: MarketRules
    sessions: list[list[str]]
    fee_bps: int
    t_plus_1: bool
    in_close: bool
    reference: int | None


def _setting(settings: dict[str, Any], mode: str, base: str, units: str, unit: int) -> int | None:
    """A size given in base units (`base`) or whole units (`units`): what the definition says, else the
    mode's default, base units first."""
    for source in (settings, DEFAULTS[mode]):
        if source.get(base) is not None:
            return int(source[base])
        if source.get(units) is not None:
            return int(source[units]) * unit
    return None


def configure(mode: str, decimals: int, settings: dict[str, Any]) -> MarketConfig:
    """Settings -> rules, or a 422 `invalid_rules` / `invalid_sessions` saying what is wrong."""
    if mode not in MODES:
        raise Invalid("invalid_mode", f"mode must be one of {', '.join(MODES)}")
    unit = 10**decimals
    given = {k: v for k, v in settings.items() if v is not None}
    cfg = {**DEFAULTS[mode], **given}
    lot = _setting(given, mode, "lot_base", "lot_units", unit) or unit
    finest = unit // math.gcd(lot, unit)  # the smallest tick (fen) with tick x lot whole fen
    tick = int(given.get("tick_fen", finest))
    if (tick * lot) % unit:
        raise Invalid("invalid_rules", f"a tick of {to_text(tick, 2)} CNY on a lot of {to_text(lot, decimals)} units "
                                       f"is not whole fen: the tick must be a multiple of {to_text(finest, 2)} CNY")
    minimum = _setting(given, mode, "min_base", "min_units", unit) or lot
    try:
        rules = MarketRules(tick=tick, lot=lot, band_bps=cfg["band_bps"], min_qty=max(lot, minimum),
                            max_qty=None if cfg["max_units"] is None else int(cfg["max_units"]) * unit,
                            best_n=int(cfg["best_n"]), strict_best=bool(cfg.get("strict_best", False)),
                            stp=cfg.get("stp", "cancel_taker"))
    except (ValueError, TypeError) as exc:
        raise Invalid("invalid_rules", str(exc)) from None
    fee_bps = int(cfg.get("fee_bps", 0))
    if not 0 <= fee_bps <= 1000:
        raise Invalid("invalid_rules", "fee_bps must be between 0 and 1000")
    return MarketConfig(rules, _check_sessions(cfg["sessions"]), fee_bps, bool(cfg.get("t_plus_1", True)),
                        bool(cfg["in_close"]), cfg.get("reference_price_fen"))


async def check_definition(rt: Runtime, instrument: str, mode: str, settings: dict[str, Any]) -> MarketConfig:
    """Everything a market definition needs, short of writing it: proposals are refused here, at once."""
    inst = await instruments.get(rt, instrument)
    if inst["kind"] == "currency":
        raise Invalid("not_tradable", "cash is not traded")
    return configure(mode, inst["decimals"], settings)


async def define(rt: Runtime, actor: str, client_id: str, *, instrument: str, mode: str,
                 settings: dict[str, Any]) -> dict[str, Any]:
    config = await check_definition(rt, instrument, mode, settings)
    rules = config.rules
    market_id = f"{instrument}.{mode}"
    fp = fingerprint({"instrument": instrument, "mode": mode, "settings": settings})
    async with rt.tx() as conn:
        row = (await conn.execute(text("SELECT * FROM markets WHERE id = :i"), {"i": market_id})).first()
        if row is not None:
            if row.created_by == actor and row.client_id == client_id:
                check_replay(row.fingerprint, fp)
                return await get(rt, market_id)
            raise DomainError("market_exists", f"market {market_id} already exists")
        await conn.execute(text(
            """INSERT INTO markets (id, instrument, mode, rules, sessions, fee_bps, t_plus_1, in_close,
                                    reference_price, created_by, client_id, fingerprint)
               VALUES (:id, :inst, :mode, CAST(:rules AS jsonb), CAST(:sessions AS jsonb), :fee, :t1, :close,
                       :ref, :a, :cid, :fp)"""),
            {"id": market_id, "inst": instrument, "mode": mode, "rules": json.dumps(rules.to_dict()),
             "sessions": json.dumps(config.sessions), "fee": config.fee_bps, "t1": config.t_plus_1,
             "close": config.in_close, "ref": config.reference, "a": actor, "cid": client_id, "fp": fp})
    await rt.exchange.start_market(market_id)  # type: ignore[attr-defined]
    return await get(rt, market_id)


async def load(rt: Runtime, market_id: str) -> Market:
    async with rt.read() as conn:
        row = (await conn.execute(text(
            """SELECT m.*, i.decimals, i.kind AS instrument_kind, i.attributes AS instrument_attributes
               FROM markets m JOIN instruments i ON i.code = m.instrument WHERE m.id = :i"""),
            {"i": market_id})).first()
    if row is None:
        raise NotFound("market", market_id)
    return market_from_row(row, row.decimals, term_years(row.instrument_kind, row.instrument_attributes or {}))


async def get(rt: Runtime, market_id: str) -> dict[str, Any]:
    async with rt.read() as conn:
        row = (await conn.execute(text(
            """SELECT m.id, m.instrument, m.mode, m.rules, m.sessions, m.fee_bps, m.t_plus_1, m.in_close,
                      m.reference_price, m.halted, m.session_open, m.trading_day, m.applied_seq, i.decimals,
                      i.kind AS instrument_kind, i.attributes AS instrument_attributes
               FROM markets m JOIN instruments i ON i.code = m.instrument WHERE m.id = :i"""),
            {"i": market_id})).first()
    if row is None:
        raise NotFound("market", market_id)
    return view(dict(row._mapping))


def view(m: dict[str, Any]) -> dict[str, Any]:
    unit = 10 ** m["decimals"]
    r = m["rules"]
    return {
        "id": m["id"], "instrument": m["instrument"], "mode": m["mode"],
        "tick": to_text(r["tick"], 2), "lot": to_text(r["lot"], m["decimals"]),
        "band_pct": None if r["band_bps"] is None else to_text(r["band_bps"], 2),
        "min_quantity": to_text(r["min_qty"], m["decimals"]),
        "max_quantity": None if r["max_qty"] is None else to_text(r["max_qty"], m["decimals"]),
        "best_n": r["best_n"], "strict_best": r["strict_best"], "self_trade_prevention": r["stp"],
        "sessions": m["sessions"], "fee_bps": m["fee_bps"], "t_plus_1": m["t_plus_1"], "in_close": m["in_close"],
        "reference_price": None if m["reference_price"] is None else to_text(m["reference_price"], 2),
        "halted": m["halted"], "session_open": m["session_open"],
        "trading_day": m["trading_day"], "last_seq": m["applied_seq"], "unit_base": unit,
        # Prices are per unit and year of the term; every amount is price x quantity x term_years.
        "term_years": term_years(m["instrument_kind"], m["instrument_attributes"] or {}),
    }


async def listing(rt: Runtime) -> list[dict[str, Any]]:
    async with rt.read() as conn:
        rows = await conn.execute(text(
            """SELECT m.id, m.instrument, m.mode, m.rules, m.sessions, m.fee_bps, m.t_plus_1, m.in_close,
                      m.reference_price, m.halted, m.session_open, m.trading_day, m.applied_seq, i.decimals,
                      i.kind AS instrument_kind, i.attributes AS instrument_attributes
               FROM markets m JOIN instruments i ON i.code = m.instrument ORDER BY m.id"""))
        return [view(dict(r._mapping)) for r in rows]
