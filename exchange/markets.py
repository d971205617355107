"""Markets: one per instrument and trading mode, with the rule settings of DESIGN.md §6.

Defaults are the national CEA settings (上海环境能源交易所, 2021-06-22): listing orders below 100,000 t,
±10 % band, picks within the best 5 levels, 9:30-11:30 and 13:00-15:00; block trades from 100,000 t,
±30 %, 13:00-15:00; tick 0.01 CNY; lot 1 unit. Every number is a per-market setting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from exchange import instruments
from exchange.errors import DomainError, Invalid, NotFound
from exchange.idempotency import check_replay, fingerprint
from exchange.runtime import Runtime
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
    "auction": {"band_bps": None, "min_units": 1, "max_units": None, "best_n": 5, "sessions": [],
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

    def in_hours(self, now: datetime) -> bool:
        """Whether `now` falls in one of the market's Asia/Shanghai sessions (none listed: always)."""
        if not self.sessions:
            return True
        local = now.astimezone(SHANGHAI).time()
        return any(time.fromisoformat(a) <= local < time.fromisoformat(b) for a, b in self.sessions)


def market_from_row(row: Any, decimals: int) -> Market:
    rules = MarketRules(**row.rules)
    return Market(row.id, row.instrument, row.mode, decimals, rules,
                  tuple((a, b) for a, b in row.sessions), row.fee_bps, row.t_plus_1, row.in_close)


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


async def define(rt: Runtime, actor: str, client_id: str, *, instrument: str, mode: str,
                 settings: dict[str, Any]) -> dict[str, Any]:
    if mode not in MODES:
        raise Invalid("invalid_mode", f"mode must be one of {', '.join(MODES)}")
    inst = await instruments.get(rt, instrument)
    if inst["kind"] == "currency":
        raise Invalid("not_tradable", "cash is not traded")
    d = inst["decimals"]
    unit = 10**d
    cfg = {**DEFAULTS[mode], **{k: v for k, v in settings.items() if v is not None}}
    tick = int(cfg.get("tick_fen", 1))
    # lot_base (base units, e.g. 1 kg of a t/yr emission right) overrides lot_units (whole units).
    lot = int(cfg["lot_base"]) if cfg.get("lot_base") else int(cfg.get("lot_units", 1)) * unit
    if (tick * lot) % unit:
        raise Invalid("invalid_rules", "tick x lot must be whole fen")
    try:
        rules = MarketRules(tick=tick, lot=lot, band_bps=cfg["band_bps"],
                            min_qty=max(lot, int(cfg["min_units"]) * unit),
                            max_qty=None if cfg["max_units"] is None else int(cfg["max_units"]) * unit,
                            best_n=int(cfg["best_n"]), strict_best=bool(cfg.get("strict_best", False)),
                            stp=cfg.get("stp", "cancel_taker"))
    except (ValueError, TypeError) as exc:
        raise Invalid("invalid_rules", str(exc)) from None
    sessions = _check_sessions(cfg["sessions"])
    fee_bps = int(cfg.get("fee_bps", 0))
    if not 0 <= fee_bps <= 1000:
        raise Invalid("invalid_rules", "fee_bps must be between 0 and 1000")
    reference = cfg.get("reference_price_fen")
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
             "sessions": json.dumps(sessions), "fee": fee_bps, "t1": bool(cfg.get("t_plus_1", True)),
             "close": bool(cfg["in_close"]), "ref": reference, "a": actor, "cid": client_id, "fp": fp})
    await rt.exchange.start_market(market_id)  # type: ignore[attr-defined]
    return await get(rt, market_id)


async def load(rt: Runtime, market_id: str) -> Market:
    async with rt.read() as conn:
        row = (await conn.execute(text(
            "SELECT m.*, i.decimals FROM markets m JOIN instruments i ON i.code = m.instrument WHERE m.id = :i"),
            {"i": market_id})).first()
    if row is None:
        raise NotFound("market", market_id)
    return market_from_row(row, row.decimals)


async def get(rt: Runtime, market_id: str) -> dict[str, Any]:
    async with rt.read() as conn:
        row = (await conn.execute(text(
            """SELECT m.id, m.instrument, m.mode, m.rules, m.sessions, m.fee_bps, m.t_plus_1, m.in_close,
                      m.reference_price, m.halted, m.session_open, m.trading_day, m.applied_seq, i.decimals
               FROM markets m JOIN instruments i ON i.code = m.instrument WHERE m.id = :i"""),
            {"i": market_id})).first()
    if row is None:
        raise NotFound("market", market_id)
    return _with_runtime(rt, view(dict(row._mapping)))


def _with_runtime(rt: Runtime, v: dict[str, Any]) -> dict[str, Any]:
    """What only the running sequencer knows: whether the market stopped taking writes, and why."""
    seq = getattr(rt.exchange, "sequencers", {}).get(v["id"])
    v["writes_stopped"] = getattr(seq, "stopped", None)
    return v


def view(m: dict[str, Any]) -> dict[str, Any]:
    from exchange.units import to_text

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
    }


async def listing(rt: Runtime) -> list[dict[str, Any]]:
    async with rt.read() as conn:
        rows = await conn.execute(text(
            """SELECT m.id, m.instrument, m.mode, m.rules, m.sessions, m.fee_bps, m.t_plus_1, m.in_close,
                      m.reference_price, m.halted, m.session_open, m.trading_day, m.applied_seq, i.decimals
               FROM markets m JOIN instruments i ON i.code = m.instrument ORDER BY m.id"""))
        return [_with_runtime(rt, view(dict(r._mapping))) for r in rows]
