"""Market data: best-N depth from the engine, trades, OHLC and daily statistics from the trade record."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import text

from exchange.core.runtime import Runtime
from exchange.core.units import cny, iso, quantity, to_text
from exchange.trading.models import Trade

INTERVALS = {"1m": 60_000_000, "5m": 300_000_000, "1h": 3_600_000_000, "1d": 86_400_000_000}


ALL_LEVELS = 1 << 31  # depth "all": every level of the book


def depth(rt: Runtime, market_id: str, levels: int = 5) -> dict[str, Any]:
    return depth_of(rt.exchange.get(market_id), levels)


def depth_of(seq: Any, levels: int) -> dict[str, Any]:
    """A sequencer's book by price level, as REST answers and the stream send it (no one is named)."""
    d = seq.market.decimals
    book = seq.depth(levels)

    def side(levels: list[tuple[int, int, int]]) -> list[dict[str, Any]]:
        return [{"price": cny(p), "quantity": quantity(q, d), "orders": n} for p, q, n in levels]

    return {"market_id": seq.market.id, "seq": seq.applied_seq, "bids": side(book["bids"]),
            "asks": side(book["asks"])}


def trade_view(r: Any, decimals: int) -> dict[str, Any]:
    """A trade as the public sees it (list and stream alike): no participant, no order of anyone's."""
    return {"trade_id": r["trade_id"], "seq": r["seq"], "ts": iso(r["ts"]), "mode": r["mode"], "price": cny(r["price"]),
            "quantity": quantity(r["qty"], decimals), "amount": cny(r["notional"]), "trading_day": r["trading_day"]}


def trade_message(t: Trade, taker_side: str, decimals: int) -> dict[str, Any]:
    """The stream's message for a trade the sequencer is settling (exchange/trading/settlement.py makes it)."""
    view = trade_view({"trade_id": t.trade_id, "seq": t.seq, "ts": t.ts, "mode": t.mode, "price": t.price,
                       "qty": t.qty, "notional": t.notional, "trading_day": t.trading_day}, decimals)
    return {"type": "trade", **view, "trading_day": view["trading_day"].isoformat(), "taker_side": taker_side}


# Lists return one item more than `limit` when more follow (the caller pages: api/paging.py).


async def trades(rt: Runtime, market_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """Trades in trade id order, after the trade id `after`."""
    seq = rt.exchange.get(market_id)
    d = seq.market.decimals
    async with rt.read() as conn:
        rows = await conn.execute(text(
            """SELECT trade_id, seq, ts, mode, price, qty, notional, trading_day FROM trades
               WHERE market_id = :m AND trade_id > :a ORDER BY trade_id LIMIT :l"""),
            {"m": market_id, "a": after, "l": limit + 1})
        return [trade_view(r._mapping, d) for r in rows]


async def ohlc(rt: Runtime, market_id: str, interval: str, limit: int, before: int | None = None,
               ) -> list[dict[str, Any]]:
    """Candles newest first, each starting before `before` (a candle start) when given."""
    seq = rt.exchange.get(market_id)
    d = seq.market.decimals
    width = INTERVALS[interval]
    async with rt.read() as conn:
        rows = await conn.execute(text(
            """SELECT ts / :w * :w AS bucket,
                      (array_agg(price ORDER BY trade_id))[1] AS open, max(price) AS high, min(price) AS low,
                      (array_agg(price ORDER BY trade_id DESC))[1] AS close, sum(qty) AS volume,
                      sum(notional) AS turnover
               FROM trades WHERE market_id = :m AND ts < :before GROUP BY 1 ORDER BY 1 DESC LIMIT :l"""),
            {"w": width, "m": market_id, "l": limit + 1, "before": 2**63 - 1 if before is None else before})
        return [{"start_ts": iso(int(r.bucket)), "open": to_text(r.open, 2), "high": to_text(r.high, 2),
                 "low": to_text(r.low, 2), "close": to_text(r.close, 2), "volume": to_text(int(r.volume), d),
                 "turnover": to_text(int(r.turnover), 2)} for r in rows]


async def daily(rt: Runtime, instrument: str, limit: int, before: tuple[str, str] | None = None,
                ) -> list[dict[str, Any]]:
    """Per trading day and mode: OHLC, volume, turnover; and the official close (VWAP of in-close trades).
    Newest day first, modes in name order; after the (day, mode) `before` when given."""
    day, mode = (date.fromisoformat(before[0]), before[1]) if before is not None else (date.max, "")
    async with rt.read() as conn:
        dec = (await conn.execute(text("SELECT decimals FROM instruments WHERE code = :i"), {"i": instrument})).scalar()
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
            {"i": instrument, "l": limit + 1, "d": day, "mode": mode})
        return [{"trading_day": r.trading_day, "mode": r.mode, "open": to_text(r.open, 2), "high": to_text(r.high, 2),
                 "low": to_text(r.low, 2), "last": to_text(r.last, 2), "volume": to_text(int(r.volume), dec or 0),
                 "turnover": to_text(int(r.turnover), 2), "trades": r.trades,
                 "close": None if r.close is None else to_text(r.close, 2), "close_method": r.close_method}
                for r in rows]


async def closes(rt: Runtime, instrument: str, limit: int, before: str | None = None) -> list[dict[str, Any]]:
    """Close prices newest day first, before the day `before` when given."""
    async with rt.read() as conn:
        dec = (await conn.execute(text("SELECT decimals FROM instruments WHERE code = :i"), {"i": instrument})).scalar()
        rows = await conn.execute(text(
            """SELECT * FROM close_prices WHERE instrument = :i AND trading_day < :b
               ORDER BY trading_day DESC LIMIT :l"""),
            {"i": instrument, "l": limit + 1, "b": date.max if before is None else date.fromisoformat(before)})
        return [{"trading_day": r.trading_day, "price": cny(r.price), "method": r.method,
                 "volume": quantity(r.volume, dec or 0), "turnover": cny(r.turnover)} for r in rows]
