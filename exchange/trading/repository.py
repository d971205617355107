"""The SQL of trading outside a market's journal (exchange/trading/journal.py): orders, markets, their
amendments, sessions and events, trades and closes as the API and the calendar read and write them. Every
function takes the caller's connection; rows become models here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.units import iso
from exchange.registry.kinds import term_years
from exchange.trading.models import (
    Amendment,
    Candle,
    ClosePrice,
    DailyStat,
    DeadManSwitch,
    InCloseTrades,
    Market,
    MarketEvent,
    MarketRow,
    Order,
    PublicTrade,
    SessionState,
)


async def order(conn: AsyncConnection, market_id: str, order_id: int) -> Order | None:
    r = (await conn.execute(text("SELECT * FROM orders WHERE market_id = :m AND id = :i"),
                            {"m": market_id, "i": order_id})).first()
    return None if r is None else Order.from_row(r._mapping)


async def order_by_client(conn: AsyncConnection, participant_id: int, client_id: str) -> Order | None:
    """The order journaled under this participant's client id, if any."""
    r = (await conn.execute(text("SELECT * FROM orders WHERE participant_id = :p AND client_id = :c"),
                            {"p": participant_id, "c": client_id})).first()
    return None if r is None else Order.from_row(r._mapping)


async def orders(conn: AsyncConnection, market_id: str, *, after: int, limit: int, participant_id: int | None,
                 status: str | None) -> list[Order]:
    """Orders in id order after the order id `after` (of one participant, in one status, when given)."""
    sql = "SELECT * FROM orders WHERE market_id = :m AND id > :after"
    params: dict[str, Any] = {"m": market_id, "after": after, "limit": limit}
    if participant_id is not None:
        sql += " AND participant_id = :p"
        params["p"] = participant_id
    if status:
        sql += " AND status = :s"
        params["s"] = status
    rows = await conn.execute(text(sql + " ORDER BY id LIMIT :limit"), params)
    return [Order.from_row(r._mapping) for r in rows]


async def refusal(conn: AsyncConnection, market_id: str, seq: int) -> tuple[str, str] | None:
    """How the engine refused the journaled command `seq`: (code, detail), or None."""
    r = (await conn.execute(text("SELECT code, detail FROM market_refusals WHERE market_id = :m AND seq = :s"),
                            {"m": market_id, "s": seq})).first()
    return None if r is None else (r.code, r.detail)


async def block_trade_of_deal(conn: AsyncConnection, market_id: str, deal_id: int,
                              participant_id: int | None) -> int | None:
    """The trade a block negotiation became (its orders are the deal's), if `participant_id` (None: oversight,
    any) was a side of it."""
    tid = (await conn.execute(text(
        """SELECT trade_id FROM trades WHERE market_id = :m AND mode = 'block' AND :d IN (buy_order, sell_order)
             AND (CAST(:p AS bigint) IS NULL OR :p IN (buyer_id, seller_id))"""),
        {"m": market_id, "d": deal_id, "p": participant_id})).scalar()
    return None if tid is None else int(tid)


async def market_ids(conn: AsyncConnection) -> list[str]:
    return [r.id for r in await conn.execute(text("SELECT id FROM markets ORDER BY id"))]


async def trading_day(conn: AsyncConnection, market_id: str) -> date | None:
    """The market's current trading day, or None before its first session."""
    day: date | None = (await conn.execute(text("SELECT trading_day FROM markets WHERE id = :m"),
                                           {"m": market_id})).scalar()
    return day



@dataclass(frozen=True, slots=True)
class RestorationTrade:
    """A settled trade whose buy order was placed for a court restoration order (its purpose names it)."""

    restoration_order: int
    market_id: str
    trade_id: int
    instrument: str
    price: int
    qty: int
    notional: int
    buyer_fee: int
    ts: int
    decimals: int  # of the instrument

    @classmethod
    def from_row(cls, r: Any) -> RestorationTrade:
        return cls(r.restoration_order, r.market_id, r.trade_id, r.instrument, r.price, r.qty, r.notional,
                   r.buyer_fee, r.ts, r.decimals)

    def retirement_request(self) -> tuple[str, str]:
        """(actor, client id) of the ledger request that retired the trade's units: request 1 of the trade's
        settlement group (exchange.trading.sequencer._settle)."""
        return f"exchange:{self.market_id}", f"{self.market_id}:trade:{self.trade_id}:1"


async def restoration_trades(conn: AsyncConnection, restoration_orders: list[int]) -> list[RestorationTrade]:
    """The settled trades bought for these restoration orders, in the order they happened."""
    rows = await conn.execute(text(
        """SELECT (o.purpose->>'restoration_order')::bigint AS restoration_order, t.market_id, t.trade_id,
                  t.instrument, t.price, t.qty, t.notional, t.buyer_fee, t.ts, i.decimals
           FROM trades t JOIN orders o ON o.market_id = t.market_id AND o.id = t.buy_order
           JOIN instruments i ON i.code = t.instrument
           WHERE (o.purpose->>'restoration_order')::bigint = ANY(:ids) ORDER BY t.ts, t.trade_id"""),
        {"ids": restoration_orders})
    return [RestorationTrade.from_row(r) for r in rows]


async def restoration_commitments(conn: AsyncConnection, restoration_order: int) -> list[tuple[int, int]]:
    """What a restoration order has bought or may still buy, as (quantity, the instrument's decimals): each
    settled trade of its buy orders, and the open quantity of each of them still open. One statement, so one
    snapshot: a fill moves quantity from an open order to a trade in one projection transaction
    (exchange/trading/journal.py project), never out of both or into both."""
    rows = await conn.execute(text(
        """SELECT t.qty, i.decimals
           FROM trades t JOIN orders o ON o.market_id = t.market_id AND o.id = t.buy_order
           JOIN instruments i ON i.code = t.instrument
           WHERE (o.purpose->>'restoration_order')::bigint = :r
           UNION ALL
           SELECT o.open_qty, i.decimals
           FROM orders o JOIN markets m ON m.id = o.market_id JOIN instruments i ON i.code = m.instrument
           WHERE (o.purpose->>'restoration_order')::bigint = :r AND o.status = 'open' AND o.open_qty > 0"""),
        {"r": restoration_order})
    return [(int(r.qty), int(r.decimals)) for r in rows]


def _jsonb(value: Any) -> str:
    """A value for a jsonb parameter (times as `iso` writes them; anything else as its text)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True,
                      default=lambda v: iso(v) if isinstance(v, datetime) else str(v))


# --- markets ------------------------------------------------------------------------------------------------

_MARKET = """SELECT m.*, i.decimals, i.kind AS instrument_kind, i.attributes AS instrument_attributes
             FROM markets m JOIN instruments i ON i.code = m.instrument"""


def _market_row(row: Row[Any]) -> MarketRow:
    r = row._mapping
    market = Market.from_row(r, r["decimals"], term_years(r["instrument_kind"], r["instrument_attributes"] or {}),
                             r["instrument_kind"] == "emission_right")
    return MarketRow(market, SessionState.from_row(r), r["reference_price"], r["halted"], r["applied_seq"])


async def market(conn: AsyncConnection, market_id: str) -> MarketRow | None:
    """The market with its instrument's grid and term, and its session state."""
    row = (await conn.execute(text(_MARKET + " WHERE m.id = :i"), {"i": market_id})).first()
    return None if row is None else _market_row(row)


async def markets(conn: AsyncConnection) -> list[MarketRow]:
    return [_market_row(r) for r in (await conn.execute(text(_MARKET + " ORDER BY m.id"))).all()]


async def market_definition(conn: AsyncConnection, market_id: str) -> tuple[str, str, bytes] | None:
    """Who defined the market under which client id, and the fingerprint of the definition."""
    r = (await conn.execute(text("SELECT created_by, client_id, fingerprint FROM markets WHERE id = :i"),
                            {"i": market_id})).first()
    return None if r is None else (r.created_by, r.client_id, bytes(r.fingerprint))


async def insert_market(conn: AsyncConnection, market_id: str, instrument: str, mode: str, rules: dict[str, Any],
                        sessions: list[list[str]], holidays: list[str], fee_bps: int, t_plus_1: bool,
                        in_close: bool, reference_price: int | None, actor: str, client_id: str,
                        fingerprint: bytes) -> None:
    await conn.execute(text(
        """INSERT INTO markets (id, instrument, mode, rules, sessions, holidays, fee_bps, t_plus_1, in_close,
                                reference_price, created_by, client_id, fingerprint)
           VALUES (:id, :inst, :mode, CAST(:rules AS jsonb), CAST(:sessions AS jsonb), CAST(:hol AS jsonb),
                   :fee, :t1, :close, :ref, :a, :cid, :fp)"""),
        {"id": market_id, "inst": instrument, "mode": mode, "rules": json.dumps(rules),
         "sessions": json.dumps(sessions), "hol": json.dumps(holidays), "fee": fee_bps, "t1": t_plus_1,
         "close": in_close, "ref": reference_price, "a": actor, "cid": client_id, "fp": fingerprint})


async def set_rules(conn: AsyncConnection, m: Market) -> None:
    """The market's row gets `m`'s rules, hours, holidays, fee, T+1 and in-close (an amendment took effect)."""
    await conn.execute(text(
        """UPDATE markets SET rules = CAST(:rules AS jsonb), sessions = CAST(:s AS jsonb),
                              holidays = CAST(:h AS jsonb), fee_bps = :f, t_plus_1 = :t1, in_close = :c
           WHERE id = :m"""),
        {"rules": _jsonb(m.rules.to_dict()), "s": _jsonb([list(p) for p in m.sessions]),
         "h": _jsonb([h.isoformat() for h in m.holidays]), "f": m.fee_bps, "t1": m.t_plus_1, "c": m.in_close,
         "m": m.id})


async def set_halted(conn: AsyncConnection, market_id: str, halted: bool) -> None:
    await conn.execute(text("UPDATE markets SET halted = :h WHERE id = :m"), {"h": halted, "m": market_id})


async def set_reference_price(conn: AsyncConnection, instrument: str, price: int) -> None:
    """Every market of the instrument gets `price` as its reference (the close re-centres their bands)."""
    await conn.execute(text("UPDATE markets SET reference_price = :p WHERE instrument = :i"),
                       {"p": price, "i": instrument})


async def finest_tick(conn: AsyncConnection, instrument: str) -> int | None:
    """The smallest tick of the instrument's markets (the grid a VWAP close is rounded to)."""
    tick: int | None = (await conn.execute(text(
        "SELECT min((rules->>'tick')::bigint) FROM markets WHERE instrument = :i"), {"i": instrument})).scalar()
    return tick


# --- amendments ---------------------------------------------------------------------------------------------

_AMENDMENT = "SELECT id, market_id, effective_from, settings, applied_at, operator_action FROM market_amendments"


async def pending_amendments(conn: AsyncConnection, market_id: str | None = None) -> list[Amendment]:
    """Amendments not yet applied (of one market, when given), in the order they take effect."""
    if market_id is None:
        rows = await conn.execute(text(_AMENDMENT + " WHERE applied_at IS NULL ORDER BY effective_from"))
    else:
        rows = await conn.execute(text(_AMENDMENT + " WHERE market_id = :m AND applied_at IS NULL "
                                                    "ORDER BY effective_from"), {"m": market_id})
    return [Amendment.from_row(r._mapping) for r in rows]


async def amendment(conn: AsyncConnection, amendment_id: int) -> Amendment | None:
    r = (await conn.execute(text(_AMENDMENT + " WHERE id = :i"), {"i": amendment_id})).first()
    return None if r is None else Amendment.from_row(r._mapping)


async def amendment_by_client(conn: AsyncConnection, actor: str, client_id: str) -> tuple[int, bytes] | None:
    """(id, fingerprint) of the amendment `actor` scheduled under `client_id`, if any."""
    r = (await conn.execute(text(
        "SELECT id, fingerprint FROM market_amendments WHERE created_by = :a AND client_id = :c"),
        {"a": actor, "c": client_id})).first()
    return None if r is None else (int(r.id), bytes(r.fingerprint))


async def insert_amendment(conn: AsyncConnection, market_id: str, day: date, settings: dict[str, Any], actor: str,
                           client_id: str, fingerprint: bytes, operator_action: dict[str, Any] | None) -> int | None:
    """The new amendment's id; None if one of this client id, or one for that day, exists already."""
    new_id: int | None = (await conn.execute(text(
        """INSERT INTO market_amendments (market_id, effective_from, settings, created_by, client_id, fingerprint,
                                          operator_action)
           VALUES (:m, :d, CAST(:s AS jsonb), :a, :c, :fp, CAST(:oa AS jsonb))
           ON CONFLICT DO NOTHING RETURNING id"""),
        {"m": market_id, "d": day, "s": json.dumps(settings, ensure_ascii=False), "a": actor, "c": client_id,
         "fp": fingerprint,
         "oa": None if operator_action is None else json.dumps(operator_action, ensure_ascii=False)})).scalar()
    return new_id


async def mark_applied(conn: AsyncConnection, amendment_ids: list[int], at: datetime) -> None:
    await conn.execute(text("UPDATE market_amendments SET applied_at = :now WHERE id = ANY(:ids)"),
                       {"now": at, "ids": amendment_ids})


# --- sessions and the market's events -----------------------------------------------------------------------

async def record_event(conn: AsyncConnection, market_id: str, kind: str, at: datetime, day: date | None, actor: str,
                       detail: dict[str, Any]) -> None:
    await conn.execute(text(
        """INSERT INTO market_events (market_id, at, kind, trading_day, actor, detail)
           VALUES (:m, :at, :k, :d, :a, CAST(:detail AS jsonb))"""),
        {"m": market_id, "at": at, "k": kind, "d": day, "a": actor, "detail": _jsonb(detail)})


async def events(conn: AsyncConnection, market_id: str, after: int, limit: int) -> list[MarketEvent]:
    rows = await conn.execute(text(
        """SELECT id, at, kind, trading_day, actor, detail FROM market_events
           WHERE market_id = :m AND id > :a ORDER BY id LIMIT :l"""), {"m": market_id, "a": after, "l": limit})
    return [MarketEvent.from_row(r._mapping) for r in rows]


async def last_session_event(conn: AsyncConnection, market_id: str) -> tuple[str, date] | None:
    """The kind and trading day of the market's last open, pause or close event, if any."""
    row = (await conn.execute(text(
        """SELECT kind, trading_day FROM market_events WHERE market_id = :m AND kind IN ('open', 'pause', 'close')
           ORDER BY id DESC LIMIT 1"""), {"m": market_id})).first()
    return None if row is None else (row.kind, row.trading_day)


async def session(conn: AsyncConnection, market_id: str) -> SessionState:
    """The market's session as its row holds it (the market exists: its sequencer runs)."""
    row = (await conn.execute(text(
        "SELECT session_open, trading_day, override_until, override_reason FROM markets WHERE id = :m"),
        {"m": market_id})).one()
    return SessionState.from_row(row._mapping)


async def set_session(conn: AsyncConnection, market_id: str, is_open: bool, day: date,
                      override: tuple[datetime, str] | None) -> None:
    await conn.execute(text(
        """UPDATE markets SET session_open = :o, trading_day = :d, override_until = :u, override_reason = :r
           WHERE id = :m"""),
        {"o": is_open, "d": day, "u": override[0] if override else None, "r": override[1] if override else None,
         "m": market_id})


async def end_session(conn: AsyncConnection, market_id: str) -> None:
    """The session is closed and any override ends."""
    await conn.execute(text(
        "UPDATE markets SET session_open = false, override_until = NULL, override_reason = NULL WHERE id = :m"),
        {"m": market_id})


async def end_override(conn: AsyncConnection, market_id: str) -> None:
    await conn.execute(text("UPDATE markets SET override_until = NULL, override_reason = NULL WHERE id = :m"),
                       {"m": market_id})


# --- trades and closes --------------------------------------------------------------------------------------

async def public_trades(conn: AsyncConnection, market_id: str, after: int, limit: int) -> list[PublicTrade]:
    """Trades in trade id order after the trade id `after`."""
    rows = await conn.execute(text(
        """SELECT trade_id, seq, ts, mode, price, qty, notional, trading_day FROM trades
           WHERE market_id = :m AND trade_id > :a ORDER BY trade_id LIMIT :l"""),
        {"m": market_id, "a": after, "l": limit})
    return [PublicTrade.from_row(r._mapping) for r in rows]


async def last_trade_id(conn: AsyncConnection, market_id: str, upto_seq: int) -> int:
    """The last trade id of the market's journal up to `upto_seq` (0: none)."""
    return int((await conn.execute(text(
        "SELECT coalesce(max(trade_id), 0) FROM trades WHERE market_id = :m AND seq <= :s"),
        {"m": market_id, "s": upto_seq})).scalar_one())


async def candles(conn: AsyncConnection, market_id: str, width: int, before: int, limit: int) -> list[Candle]:
    """Candles `width` microseconds wide, newest first, each starting before `before`."""
    rows = await conn.execute(text(
        """SELECT ts / :w * :w AS bucket,
                  (array_agg(price ORDER BY trade_id))[1] AS open, max(price) AS high, min(price) AS low,
                  (array_agg(price ORDER BY trade_id DESC))[1] AS close, sum(qty) AS volume,
                  sum(notional) AS turnover
           FROM trades WHERE market_id = :m AND ts < :before GROUP BY 1 ORDER BY 1 DESC LIMIT :l"""),
        {"w": width, "m": market_id, "l": limit, "before": before})
    return [Candle(int(r.bucket), r.open, r.high, r.low, r.close, int(r.volume), int(r.turnover)) for r in rows]


async def daily_stats(conn: AsyncConnection, instrument: str, before: tuple[date, str], limit: int
                      ) -> list[DailyStat]:
    """Per trading day and mode, newest day first and modes in name order, after the (day, mode) `before`."""
    rows = await conn.execute(text(
        """SELECT t.trading_day, t.mode, (array_agg(t.price ORDER BY t.trade_id))[1] AS open, max(t.price) AS high,
                  min(t.price) AS low, (array_agg(t.price ORDER BY t.trade_id DESC))[1] AS last,
                  sum(t.qty) AS volume, sum(t.notional) AS turnover, count(*) AS trades, c.price AS close,
                  c.method AS close_method
           FROM trades t LEFT JOIN close_prices c ON c.instrument = t.instrument AND c.trading_day = t.trading_day
           WHERE t.instrument = :i
             AND (t.trading_day < :d OR (t.trading_day = :d AND t.mode > :mode))
           GROUP BY t.trading_day, t.mode, c.price, c.method
           ORDER BY t.trading_day DESC, t.mode LIMIT :l"""),
        {"i": instrument, "l": limit, "d": before[0], "mode": before[1]})
    return [DailyStat(r.trading_day, r.mode, r.open, r.high, r.low, r.last, int(r.volume), int(r.turnover),
                      r.trades, r.close, r.close_method) for r in rows]


async def close_prices(conn: AsyncConnection, instrument: str, before: date, limit: int) -> list[ClosePrice]:
    """Close prices newest day first, of days before `before`."""
    rows = await conn.execute(text(
        """SELECT instrument, trading_day, price, method, volume, turnover FROM close_prices
           WHERE instrument = :i AND trading_day < :b ORDER BY trading_day DESC LIMIT :l"""),
        {"i": instrument, "l": limit, "b": before})
    return [ClosePrice(r.instrument, r.trading_day, r.price, r.method, r.volume, r.turnover) for r in rows]


async def in_close_trades(conn: AsyncConnection, instrument: str, day: date) -> InCloseTrades:
    r = (await conn.execute(text(
        """SELECT coalesce(sum(notional), 0) AS turnover, coalesce(sum(qty), 0) AS volume,
                  coalesce(sum(price * qty), 0) AS pq
           FROM trades WHERE instrument = :i AND trading_day = :d AND in_close"""),
        {"i": instrument, "d": day})).one()
    return InCloseTrades(int(r.turnover), int(r.volume), int(r.pq))


async def previous_close(conn: AsyncConnection, instrument: str, day: date) -> int | None:
    """The instrument's last close price before `day`."""
    price: int | None = (await conn.execute(text(
        """SELECT price FROM close_prices WHERE instrument = :i AND trading_day < :d
           ORDER BY trading_day DESC LIMIT 1"""), {"i": instrument, "d": day})).scalar()
    return price


async def upsert_close(conn: AsyncConnection, c: ClosePrice) -> None:
    await conn.execute(text(
        """INSERT INTO close_prices (instrument, trading_day, price, method, volume, turnover)
           VALUES (:i, :d, :p, :m, :v, :t)
           ON CONFLICT (instrument, trading_day) DO UPDATE SET price = EXCLUDED.price, method = EXCLUDED.method,
               volume = EXCLUDED.volume, turnover = EXCLUDED.turnover"""),
        {"i": c.instrument, "d": c.trading_day, "p": c.price, "m": c.method, "v": c.volume, "t": c.turnover})


async def orders_by_ids(conn: AsyncConnection, keys: list[tuple[str, int]]) -> list[Order]:
    """The orders with these (market, order id) keys."""
    rows = await conn.execute(text(
        """SELECT o.* FROM orders o JOIN unnest(CAST(:m AS text[]), CAST(:i AS bigint[])) AS k(m, i)
             ON o.market_id = k.m AND o.id = k.i"""), {"m": [k[0] for k in keys], "i": [k[1] for k in keys]})
    return [Order.from_row(r._mapping) for r in rows]


# --- dead-man switches (exchange/trading/deadman.py); times are the database's clock ---------------------------

_SWITCH = "participant_id, scope, timeout_ms, deadline, renewed_at, client_id, firing_since, last_fired_at, " \
          "last_fired_cancelled"


async def switch(conn: AsyncConnection, participant_id: int, scope: str) -> DeadManSwitch | None:
    r = (await conn.execute(text(f"SELECT {_SWITCH} FROM dead_man_switches WHERE participant_id = :p AND scope = :s"),
                            {"p": participant_id, "s": scope})).first()
    return None if r is None else DeadManSwitch.from_row(r._mapping)


async def switches(conn: AsyncConnection, participant_id: int) -> list[DeadManSwitch]:
    rows = await conn.execute(text(f"SELECT {_SWITCH} FROM dead_man_switches WHERE participant_id = :p "
                                   "ORDER BY scope"), {"p": participant_id})
    return [DeadManSwitch.from_row(r._mapping) for r in rows]


async def set_switch(conn: AsyncConnection, participant_id: int, scope: str, timeout_ms: int | None,
                     client_id: str) -> DeadManSwitch:
    """Arm (or renew) the switch to fire `timeout_ms` from now; None disarms it. A firing under way goes on."""
    r = (await conn.execute(text(
        f"""INSERT INTO dead_man_switches AS d (participant_id, scope, timeout_ms, deadline, renewed_at, client_id)
            VALUES (:p, :s, CAST(:t AS bigint),
                    now() + CAST(:t AS bigint) * interval '1 millisecond', now(), :c)
            ON CONFLICT (participant_id, scope) DO UPDATE
              SET timeout_ms = EXCLUDED.timeout_ms, deadline = EXCLUDED.deadline, renewed_at = now(),
                  client_id = EXCLUDED.client_id
            RETURNING {_SWITCH}"""), {"p": participant_id, "s": scope, "t": timeout_ms, "c": client_id})).one()
    return DeadManSwitch.from_row(r._mapping)


async def claim_due_switches(conn: AsyncConnection) -> list[DeadManSwitch]:
    """Claim every armed switch whose deadline has passed: disarmed, marked firing (once: a claimed one is
    not claimed again); with those claimed before and not finished (a stopped process, a market away)."""
    rows = await conn.execute(text(
        f"""UPDATE dead_man_switches SET firing_since = deadline, deadline = NULL, timeout_ms = NULL
            WHERE deadline <= now() AND firing_since IS NULL RETURNING {_SWITCH}"""))
    claimed = [DeadManSwitch.from_row(r._mapping) for r in rows]
    left = await conn.execute(text(f"SELECT {_SWITCH} FROM dead_man_switches WHERE firing_since IS NOT NULL"))
    seen = {(s.participant_id, s.scope) for s in claimed}
    return claimed + [s for s in (DeadManSwitch.from_row(r._mapping) for r in left)
                      if (s.participant_id, s.scope) not in seen]


async def switch_fired(conn: AsyncConnection, participant_id: int, scope: str, cancelled: int) -> None:
    await conn.execute(text(
        """UPDATE dead_man_switches SET firing_since = NULL, last_fired_at = now(), last_fired_cancelled = :n
           WHERE participant_id = :p AND scope = :s"""), {"p": participant_id, "s": scope, "n": cancelled})


async def seconds_to_next_switch(conn: AsyncConnection) -> float | None:
    """Seconds until the next armed switch is due (negative: overdue), or None if none is armed."""
    v = (await conn.execute(text(
        """SELECT extract(epoch FROM min(deadline) - clock_timestamp()) FROM dead_man_switches
           WHERE deadline IS NOT NULL AND firing_since IS NULL"""))).scalar()
    return None if v is None else float(v)
