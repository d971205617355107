"""The SQL of trading outside a market's journal (exchange/trading/journal.py): orders, markets and their
refusals as the API reads them. Every function takes the caller's connection; rows become models here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.trading.models import Order


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
