"""Queries over the trading package's tables that other packages read through trading (trades, orders)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


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
