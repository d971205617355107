"""A deliberately simple reference model of the continuous book, for property tests.

Resting orders live in one list in arrival order; every match sorts the crossing opposite orders
afresh. O(n log n) per command and written without any of the engine's data structures, so that a
disagreement points at a bug in one of the two rather than at a shared assumption. It emits events
in the engine's tuple format so that whole event streams can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from matching import reasons as R
from matching.commands import Cancel, Halt, NewOrder, Reduce, Resume

BIG = 1 << 62


@dataclass
class RefOrder:
    oid: int
    account: Any
    side: str
    price: int
    qty: int


class ReferenceBook:
    def __init__(
        self,
        tick: int = 1,
        lot: int = 1,
        band: tuple[int, int] = (1, BIG),
        min_qty: int = 1,
        max_qty: int = BIG,
        best_n: int = 5,
        stp: str = "cancel_taker",
    ) -> None:
        self.tick, self.lot, self.band = tick, lot, band
        self.min_qty, self.max_qty, self.best_n, self.stp = min_qty, max_qty, best_n, stp
        self.resting: list[RefOrder] = []
        self.last_id = 0
        self.trade_id = 0
        self.halted = False
        self.seq = 0

    def _find(self, oid: int) -> RefOrder | None:
        for o in self.resting:
            if o.oid == oid:
                return o
        return None

    def process(self, seq: int, ts: int, c: Any) -> list[tuple[Any, ...]]:
        if seq <= self.seq:
            return [("rejected", None, R.STALE_SEQUENCE)]
        self.seq = seq
        if isinstance(c, NewOrder):
            return self._new(seq, ts, c)
        if isinstance(c, Cancel):
            o = self._find(c.order_id)
            if o is None:
                return [("rejected", c.order_id, R.UNKNOWN_ORDER)]
            if c.account is not None and c.account != o.account:
                return [("rejected", c.order_id, R.NOT_ORDER_OWNER)]
            self.resting.remove(o)
            return [("cancelled", o.oid, o.account, o.qty, "requested")]
        if isinstance(c, Reduce):
            o = self._find(c.order_id)
            if o is None:
                return [("rejected", c.order_id, R.UNKNOWN_ORDER)]
            if c.account is not None and c.account != o.account:
                return [("rejected", c.order_id, R.NOT_ORDER_OWNER)]
            if not 0 < c.qty < o.qty:
                return [("rejected", c.order_id, R.REDUCE_NOT_LOWER)]
            if c.qty % self.lot:
                return [("rejected", c.order_id, R.OFF_LOT)]
            old, o.qty = o.qty, c.qty
            return [("reduced", o.oid, o.account, old, c.qty)]
        if isinstance(c, Halt):
            if self.halted:
                return [("rejected", None, R.MARKET_HALTED)]
            self.halted = True
            return [("halted", c.reason)]
        if isinstance(c, Resume):
            if not self.halted:
                return [("rejected", None, R.NOT_HALTED)]
            self.halted = False
            return [("resumed",)]
        raise AssertionError(f"reference does not model {c!r}")

    def _crossing(self, side: str, limit: int) -> list[RefOrder]:
        if side == "buy":
            opp = [o for o in self.resting if o.side == "sell" and o.price <= limit]
            return sorted(opp, key=lambda o: o.price)  # stable sort keeps arrival order in a level
        opp = [o for o in self.resting if o.side == "buy" and o.price >= limit]
        return sorted(opp, key=lambda o: -o.price)

    def _new(self, seq: int, ts: int, c: NewOrder) -> list[tuple[Any, ...]]:
        stp = c.stp or self.stp
        rej = self._validate(c, stp)
        if rej:
            return [("rejected", c.order_id, rej)]
        if c.type == "market":
            opp_prices = sorted(
                {o.price for o in self.resting if o.side != c.side}, reverse=(c.side == "sell")
            )
            if not opp_prices:
                return [("rejected", c.order_id, R.NO_LIQUIDITY)]
            nth = opp_prices[min(self.best_n, len(opp_prices)) - 1]
            limit = min(nth, self.band[1]) if c.side == "buy" else max(nth, self.band[0])
            price = 0
        else:
            limit = price = c.price
        if c.tif == "fok":
            saved = ([RefOrder(**vars(o)) for o in self.resting], self.trade_id)
            left, _, stopped = self._match(seq, ts, c, limit, stp)
            self.resting, self.trade_id = saved
            if left or stopped:
                return [("rejected", c.order_id, R.FOK_UNFILLABLE)]
        self.last_id = c.order_id
        events: list[tuple[Any, ...]] = [
            ("accepted", c.order_id, c.account, c.side, c.type, c.tif, price, c.qty)
        ]
        left, more, stopped = self._match(seq, ts, c, limit, stp)
        events += more
        if stopped or not left:
            return events
        if c.tif != "day":
            events.append(("cancelled", c.order_id, c.account, left, "ioc_remainder"))
            return events
        if c.type == "market":
            trades = [e for e in more if e[0] == "trade"]
            if not trades:
                events.append(("cancelled", c.order_id, c.account, left, "ioc_remainder"))
                return events
            price = trades[-1][5]
            events.append(("converted", c.order_id, price, left))
        self.resting.append(RefOrder(c.order_id, c.account, c.side, price, left))
        return events

    def _validate(self, c: NewOrder, stp: str) -> str | None:
        if self.halted:
            return R.MARKET_HALTED
        if c.side not in ("buy", "sell"):
            return R.INVALID_SIDE
        if c.type not in ("limit", "market"):
            return R.INVALID_ORDER_TYPE
        if c.tif not in ("day", "ioc", "fok"):
            return R.INVALID_TIME_IN_FORCE
        if stp not in ("cancel_taker", "cancel_maker", "cancel_both"):
            return R.INVALID_STP
        if c.qty <= 0:
            return R.INVALID_QUANTITY
        if c.type == "limit":
            if c.price <= 0:
                return R.INVALID_PRICE
            if c.price % self.tick:
                return R.OFF_TICK
        if c.qty % self.lot:
            return R.OFF_LOT
        if c.type == "limit" and not self.band[0] <= c.price <= self.band[1]:
            return R.PRICE_OUT_OF_BAND
        if c.qty < self.min_qty:
            return R.QUANTITY_BELOW_MINIMUM
        if c.qty > self.max_qty:
            return R.QUANTITY_ABOVE_MAXIMUM
        if c.order_id <= self.last_id:
            return R.DUPLICATE_ORDER_ID if self._find(c.order_id) else R.ORDER_ID_NOT_INCREASING
        return None

    def _match(
        self, seq: int, ts: int, c: NewOrder, limit: int, stp: str
    ) -> tuple[int, list[tuple[Any, ...]], bool]:
        """Returns (quantity left, events, whether STP cancelled the taker)."""
        qty = c.qty
        events: list[tuple[Any, ...]] = []
        for m in self._crossing(c.side, limit):
            if not qty:
                break
            if m.account == c.account:
                if stp in ("cancel_maker", "cancel_both"):
                    self.resting.remove(m)
                    events.append(("cancelled", m.oid, m.account, m.qty, "self_trade"))
                if stp in ("cancel_taker", "cancel_both"):
                    events.append(("cancelled", c.order_id, c.account, qty, "self_trade"))
                    return 0, events, True
                continue
            fill = min(qty, m.qty)
            self.trade_id += 1
            events.append(
                (
                    "trade",
                    "continuous",
                    seq,
                    ts,
                    self.trade_id,
                    m.price,
                    fill,
                    c.side,
                    m.oid,
                    m.account,
                    c.order_id,
                    c.account,
                )
            )
            m.qty -= fill
            qty -= fill
            if not m.qty:
                self.resting.remove(m)
        return qty, events, False

    def book_levels(self, side: str) -> list[tuple[int, int]]:
        """(price, total qty) best first."""
        totals: dict[int, int] = {}
        for o in self.resting:
            if o.side == side:
                totals[o.price] = totals.get(o.price, 0) + o.qty
        return sorted(totals.items(), key=lambda kv: -kv[0] if side == "buy" else kv[0])
