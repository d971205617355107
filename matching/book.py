"""Continuous limit order book: price-time priority.

Data layout, chosen for CPython speed (see bench/matching.py):

* ``_orders`` maps order id -> ``(account, side, price, open_qty)``, the one authoritative record of a
  live order. A tuple, not an instance: a tuple display is ~5x cheaper to build, and a tuple of
  atomic values drops out of the cyclic GC's tracking, so a deep book costs the collector nothing
  (mutable records cost ~25 % of the throughput in GC passes). A fill or reduction replaces it;
* each side maps price -> `Level`: the time queue of order ids itself (a deque), carrying the level's
  open quantity and its price as two slots, so the hot path reaches all three in one step;
* each side keeps its prices sorted in a plain list (bisect; levels are few, so the memmove is cheap),
  bids ascending and asks negated ascending, so the best price of either side is the last element;
* cancels are lazy: the id leaves ``_orders`` and stays in its queue until it reaches the front (ids
  are never reused, so a stale id cannot come back to life), or goes with the whole level once the
  level's open quantity is 0. This makes a cancel O(1) instead of a scan of the queue.

Every id, price and quantity is an int; nothing here iterates an unordered container, reads a clock or
draws a random number, so the same commands always give the same events and the same state hash.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from typing import Any, Final

from . import reasons as R
from .base import Engine, stale
from .commands import (
    BUY,
    CANCEL_MAKER,
    CANCEL_TAKER,
    DAY,
    FOK,
    LIMIT,
    MARKET,
    ORDER_TYPES,
    SELL,
    SIDES,
    STP_MODES,
    TIFS,
    Cancel,
    EndOfDay,
    NewOrder,
    Reduce,
    command_ref,
)
from .events import (
    ACCEPTED,
    BY_REQUEST,
    CANCELLED,
    CONTINUOUS,
    CONVERTED,
    EXPIRED,
    IOC_REMAINDER,
    REDUCED,
    REJECTED,
    RULES_AMENDED,
    SELF_TRADE_PREVENTED,
    TRADE,
    Event,
)
from .rules import MarketRules

# Positions in an order record (account, side, price, open_qty).
O_ACCOUNT: Final = 0
O_SIDE: Final = 1
O_PRICE: Final = 2
O_QTY: Final = 3

Order = tuple[Any, str, int, int]
_OK_CACHE_SIZE: Final = 4096


class Level(deque[int]):
    """One price level: its queue of order ids in time order (cancelled ones are dropped lazily), the
    open quantity of its live orders and its price (one int object per level: what the orders keep).

    Built as ``Level((oid,))`` (deque's own constructor: no Python __init__ on the hot path), then its
    two slots set."""

    __slots__ = ("price", "qty")
    qty: int
    price: int


class ContinuousBook(Engine):
    """`process(seq, ts, command) -> events` over one instrument's continuous book."""

    kind = "continuous"
    __slots__ = ("_ask_levels", "_ask_npx", "_bid_levels", "_bid_px", "_ok_prices", "_ok_qtys", "_orders", "_trade_id")

    def __init__(self, rules: MarketRules | None = None, reference: int | None = None) -> None:
        self._orders: dict[int, Order] = {}
        self._bid_levels: dict[int, Level] = {}
        self._ask_levels: dict[int, Level] = {}
        self._bid_px: list[int] = []  # ascending: best bid is [-1]
        self._ask_npx: list[int] = []  # negated ask prices ascending: best ask is -[-1]
        self._trade_id = 0
        # Limit prices and quantities that `_new_order` found to keep every rule under the current rules,
        # band and trading state: a cache of MarketRules.check, so that the hot path asks two set lookups
        # instead of six comparisons. Emptied whenever the answer could change (rules, reference, halt,
        # resume) and while halted never filled, so a hit means exactly "check would pass".
        self._ok_prices: set[int] = set()
        self._ok_qtys: set[int] = set()
        super().__init__(rules, reference)

    def _admin(self, command: Any) -> list[Event] | None:
        events = super()._admin(command)
        if events is not None:  # halt, resume, reference, rules: what passes may have changed
            self._ok_prices.clear()
            self._ok_qtys.clear()
        return events

    # ------------------------------------------------------------------------------------------
    # the core
    # ------------------------------------------------------------------------------------------

    def process(self, seq: int, ts: int, command: Any) -> list[Event]:
        if seq <= self._seq:
            return [stale(seq, self._seq, command)]
        self._seq = seq
        cls = command.__class__
        if cls is NewOrder:
            # Fast path: a day limit order with the market's STP default, at a price and of a quantity
            # that _new_order already found to keep every rule (the caches are empty while halted).
            # Anything else, including every rejection, goes through _new_order, which states the
            # full rules; the guard below only decides whether that detour is needed.
            price = command.price
            qty = command.qty
            oid = command.order_id
            if (
                command.stp is not None
                or command.tif != DAY
                or command.type != LIMIT
                or oid <= self._last_id
                or price not in self._ok_prices
                or qty not in self._ok_qtys
            ):
                return self._new_order(seq, ts, command)
            side = command.side
            account = command.account
            if side == BUY:
                self._last_id = oid
                events: list[Event] = [(ACCEPTED, oid, account, BUY, LIMIT, DAY, price, qty)]
                asks = self._ask_npx
                if asks and price >= -asks[-1]:
                    qty = self._match_buy(seq, ts, events, oid, account, price, qty, self.rules.stp)
                    if not qty:
                        return events
                level = self._bid_levels.get(price)
                if level is None:
                    self._bid_levels[price] = level = Level((oid,))
                    level.qty = qty
                    level.price = price
                    insort(self._bid_px, price)
                else:
                    level.qty += qty
                    level.append(oid)
                    price = level.price  # one int object per level, not per order: 32 bytes an order
                self._orders[oid] = (account, BUY, price, qty)
                return events
            if side == SELL:
                self._last_id = oid
                events = [(ACCEPTED, oid, account, SELL, LIMIT, DAY, price, qty)]
                bids = self._bid_px
                if bids and price <= bids[-1]:
                    qty = self._match_sell(seq, ts, events, oid, account, price, qty, self.rules.stp)
                    if not qty:
                        return events
                level = self._ask_levels.get(price)
                if level is None:
                    self._ask_levels[price] = level = Level((oid,))
                    level.qty = qty
                    level.price = price
                    insort(self._ask_npx, -price)
                else:
                    level.qty += qty
                    level.append(oid)
                    price = level.price  # one int object per level, not per order: 32 bytes an order
                self._orders[oid] = (account, SELL, price, qty)
                return events
            return self._new_order(seq, ts, command)
        if cls is Cancel:
            oid = command.order_id
            # Inline, not a helper: a quarter of all commands are cancels. The id stays in its queue.
            o = self._orders.pop(oid, None)
            if o is None:
                return [(REJECTED, oid, R.UNKNOWN_ORDER, f"order {oid} is not live")]
            if command.account is not None and command.account != o[0]:
                self._orders[oid] = o  # not the owner's: put back (nothing reads the dict's order)
                return [(REJECTED, oid, R.NOT_ORDER_OWNER, f"order {oid} belongs to another account")]
            account, side, price, qty = o
            if side == BUY:
                level = self._bid_levels[price]
                left = level.qty - qty
                if left:
                    level.qty = left
                else:
                    del self._bid_levels[price]
                    keys = self._bid_px
                    if keys[-1] == price:
                        keys.pop()
                    else:
                        del keys[bisect_left(keys, price)]
            else:
                level = self._ask_levels[price]
                left = level.qty - qty
                if left:
                    level.qty = left
                else:
                    del self._ask_levels[price]
                    keys = self._ask_npx
                    if keys[-1] == -price:
                        keys.pop()
                    else:
                        del keys[bisect_left(keys, -price)]
            return [(CANCELLED, oid, account, qty, BY_REQUEST)]
        return self._apply(seq, ts, command)

    def _apply(self, seq: int, ts: int, command: Any) -> list[Event]:
        """The commands off the hot path."""
        cls = command.__class__
        if cls is Reduce:
            return self._reduce(command)
        if cls is EndOfDay:
            return self._expire_all()
        admin = self._admin(command)
        if admin is not None:
            return admin
        return [(REJECTED, command_ref(command), R.UNKNOWN_COMMAND, f"{cls.__name__} is not a book command")]

    # ------------------------------------------------------------------------------------------
    # new orders: the full rules
    # ------------------------------------------------------------------------------------------

    def _new_order(self, seq: int, ts: int, c: NewOrder) -> list[Event]:
        oid = c.order_id
        side, otype, tif = c.side, c.type, c.tif
        stp = self.rules.stp if c.stp is None else c.stp
        halted = self._halted_reject(oid)
        if halted is not None:
            return [halted]
        if side not in SIDES:
            return [(REJECTED, oid, R.INVALID_SIDE, f"side {side!r} is not 'buy' or 'sell'")]
        if otype not in ORDER_TYPES:
            return [(REJECTED, oid, R.INVALID_ORDER_TYPE, f"order type {otype!r} is unknown")]
        if tif not in TIFS:
            return [(REJECTED, oid, R.INVALID_TIME_IN_FORCE, f"time in force {tif!r} is unknown")]
        if stp not in STP_MODES:
            return [(REJECTED, oid, R.INVALID_STP, f"self-trade prevention {stp!r} is unknown")]
        bad = self.rules.check(c.price if otype == LIMIT else None, c.qty, self._band)
        if bad is not None:
            return [(REJECTED, oid, bad[0], bad[1])]
        if otype == LIMIT:
            self._remember_valid(c.price, c.qty)
        bad_id = self._id_reject(oid, oid in self._orders)
        if bad_id is not None:
            return [bad_id]
        account, qty = c.account, c.qty
        if otype == MARKET:
            limit = self._market_limit(side)
            if limit is None:
                return [(REJECTED, oid, R.NO_LIQUIDITY, "the opposite side is empty")]
            price = 0
        else:
            price = limit = c.price
        if tif == FOK and self._fillable(side, account, limit, qty, stp) < qty:
            return [(REJECTED, oid, R.FOK_UNFILLABLE, f"{R.qty(qty)} cannot be filled at once within {R.price(limit)}")]

        self._last_id = oid
        events: list[Event] = [(ACCEPTED, oid, account, side, otype, tif, price, qty)]
        if side == BUY:
            if self._ask_npx and limit >= -self._ask_npx[-1]:
                qty = self._match_buy(seq, ts, events, oid, account, limit, qty, stp)
        elif self._bid_px and limit <= self._bid_px[-1]:
            qty = self._match_sell(seq, ts, events, oid, account, limit, qty, stp)
        if not qty:
            return events
        if tif != DAY:  # IOC (FOK was filled in full above)
            events.append((CANCELLED, oid, account, qty, IOC_REMAINDER))
            return events
        if otype == MARKET:
            # Market-to-limit: the remainder becomes a limit order at the last traded price.
            last = next((e[5] for e in reversed(events) if e[0] == TRADE), None)
            if last is None:  # every maker in reach was our own and cancelled by STP
                events.append((CANCELLED, oid, account, qty, IOC_REMAINDER))
                return events
            price = last
            events.append((CONVERTED, oid, price, qty))
        self._rest(oid, (account, side, price, qty))
        return events

    def _remember_valid(self, price: int, qty: int) -> None:
        """Notes that a limit order of (price, qty) keeps every rule now (see `_ok_prices`); bounded, so
        a stream of ever new prices costs a clear now and then, not memory."""
        prices, qtys = self._ok_prices, self._ok_qtys
        if len(prices) >= _OK_CACHE_SIZE:
            prices.clear()
        if len(qtys) >= _OK_CACHE_SIZE:
            qtys.clear()
        prices.add(price)
        qtys.add(qty)

    def _market_limit(self, side: str) -> int | None:
        """The worst price a market order may reach: the best_n-th level, capped by the band."""
        n = self.rules.best_n
        if side == BUY:
            if not self._ask_npx:
                return None
            return min(-self._ask_npx[-min(n, len(self._ask_npx))], self._band[1])
        if not self._bid_px:
            return None
        return max(self._bid_px[-min(n, len(self._bid_px))], self._band[0])

    def _fillable(self, side: str, account: Any, limit: int, qty: int, stp: str) -> int:
        """How much an order could fill right now, stopping where STP would stop it."""
        total = 0
        for px, queue in self._side_levels(SELL if side == BUY else BUY):
            if (px > limit) if side == BUY else (px < limit):
                break
            for _, o in queue:
                if o[O_ACCOUNT] == account:
                    if stp == CANCEL_MAKER:
                        continue
                    return total
                total += o[O_QTY]
                if total >= qty:
                    return total
        return total

    def _rest(self, oid: int, o: Order) -> None:
        price, qty = o[O_PRICE], o[O_QTY]
        if o[O_SIDE] == BUY:
            levels, prices, key = self._bid_levels, self._bid_px, price
        else:
            levels, prices, key = self._ask_levels, self._ask_npx, -price
        level = levels.get(price)
        if level is None:
            levels[price] = level = Level((oid,))
            level.qty = qty
            level.price = price
            insort(prices, key)
        else:
            level.qty += qty
            level.append(oid)
            o = (o[0], o[1], level.price, qty)
        self._orders[oid] = o

    # ------------------------------------------------------------------------------------------
    # matching: one loop per side so that the inner loop has no side tests
    # ------------------------------------------------------------------------------------------

    def _match_buy(
        self, seq: int, ts: int, events: list[Event], oid: int, account: Any, limit: int, qty: int, stp: str
    ) -> int:
        """Matches a buy of `qty` up to `limit` against the asks; returns the quantity left to handle
        (0 also when STP cancelled the taker's remainder)."""
        asks = self._ask_npx
        levels = self._ask_levels
        orders = self._orders
        pop = orders.pop
        tid = self._trade_id
        append = events.append
        while asks:
            px = -asks[-1]
            if px > limit:
                break
            level = levels[px]
            while True:
                mid = level[0]
                m = pop(mid, None)
                if m is None:  # cancelled earlier; dropped lazily
                    level.popleft()
                    continue
                macc, _, mpx, mq = m
                if macc == account:
                    orders[mid] = m
                    self._trade_id = tid  # stored now: the STP branch may return at once
                    left, qty = self._self_trade(events, mid, m, level, oid, account, qty, stp)
                    if not left:
                        del levels[px]
                        asks.pop()
                    if not qty:
                        return 0
                    if not left:
                        break
                    continue
                tid += 1
                if mq <= qty:
                    level.popleft()
                    append((TRADE, CONTINUOUS, seq, ts, tid, px, mq, BUY, mid, macc, oid, account))
                    qty -= mq
                    left = level.qty - mq
                    level.qty = left
                    if not left:
                        del levels[px]
                        asks.pop()
                        break
                    if not qty:
                        break
                else:
                    orders[mid] = (macc, SELL, mpx, mq - qty)
                    level.qty -= qty
                    append((TRADE, CONTINUOUS, seq, ts, tid, px, qty, BUY, mid, macc, oid, account))
                    qty = 0
                    break
            if not qty:
                break
        self._trade_id = tid
        return qty

    def _match_sell(
        self, seq: int, ts: int, events: list[Event], oid: int, account: Any, limit: int, qty: int, stp: str
    ) -> int:
        """Mirror of _match_buy against the bids."""
        bids = self._bid_px
        levels = self._bid_levels
        orders = self._orders
        pop = orders.pop
        tid = self._trade_id
        append = events.append
        while bids:
            px = bids[-1]
            if px < limit:
                break
            level = levels[px]
            while True:
                mid = level[0]
                m = pop(mid, None)
                if m is None:
                    level.popleft()
                    continue
                macc, _, mpx, mq = m
                if macc == account:
                    orders[mid] = m
                    self._trade_id = tid
                    left, qty = self._self_trade(events, mid, m, level, oid, account, qty, stp)
                    if not left:
                        del levels[px]
                        bids.pop()
                    if not qty:
                        return 0
                    if not left:
                        break
                    continue
                tid += 1
                if mq <= qty:
                    level.popleft()
                    append((TRADE, CONTINUOUS, seq, ts, tid, px, mq, SELL, mid, macc, oid, account))
                    qty -= mq
                    left = level.qty - mq
                    level.qty = left
                    if not left:
                        del levels[px]
                        bids.pop()
                        break
                    if not qty:
                        break
                else:
                    orders[mid] = (macc, BUY, mpx, mq - qty)
                    level.qty -= qty
                    append((TRADE, CONTINUOUS, seq, ts, tid, px, qty, SELL, mid, macc, oid, account))
                    qty = 0
                    break
            if not qty:
                break
        self._trade_id = tid
        return qty

    def _self_trade(
        self,
        events: list[Event],
        mid: int,
        maker: Order,
        level: Level,
        oid: int,
        account: Any,
        qty: int,
        stp: str,
    ) -> tuple[int, int]:
        """Applies STP when the front maker belongs to the taker's account.

        Returns (level open qty after, taker qty still to match; 0 if the taker was cancelled)."""
        left = level.qty
        if stp != CANCEL_TAKER:  # cancel_maker or cancel_both: the resting order goes
            level.popleft()
            del self._orders[mid]
            left -= maker[3]
            level.qty = left
            events.append((CANCELLED, mid, maker[0], maker[3], SELF_TRADE_PREVENTED))
        if stp != CANCEL_MAKER:  # cancel_taker or cancel_both: the incoming remainder goes
            events.append((CANCELLED, oid, account, qty, SELF_TRADE_PREVENTED))
            qty = 0
        return left, qty

    # ------------------------------------------------------------------------------------------
    # cancel, reduce, expiry
    # ------------------------------------------------------------------------------------------

    def _reduce(self, c: Reduce) -> list[Event]:
        oid, new = c.order_id, c.qty
        o = self._orders.get(oid)
        if o is None:
            return [(REJECTED, oid, R.UNKNOWN_ORDER, f"order {oid} is not live")]
        old = o[3]
        reject = self._owner_reject(oid, o[0], c.account) or self._reduce_reject(oid, old, new)
        if reject is not None:
            return [reject]
        levels = self._bid_levels if o[1] == BUY else self._ask_levels
        levels[o[2]].qty -= old - new
        # Same id, same place in its queue: the order keeps its time priority.
        self._orders[oid] = (o[0], o[1], o[2], new)
        return [(REDUCED, oid, o[0], old, new)]

    def _expire_all(self) -> list[Event]:
        events: list[Event] = [
            (EXPIRED, oid, o[0], o[3])
            for side in SIDES
            for _, queue in self._side_levels(side)
            for oid, o in queue
        ]
        self._clear()
        return events

    def _clear(self) -> None:
        self._orders.clear()
        self._bid_levels.clear()
        self._ask_levels.clear()
        self._bid_px.clear()
        self._ask_npx.clear()

    def _off_grid(self) -> list[Event]:
        """Rebuild the book from the orders on the new grid, in priority order: they keep their places."""
        resting = [(oid, o) for side in SIDES for _, queue in self._side_levels(side) for oid, o in queue]
        if all(self._on_grid(o[2], o[3]) for _, o in resting):
            return []
        self._clear()
        events: list[Event] = []
        for oid, o in resting:
            if self._on_grid(o[2], o[3]):
                self._rest(oid, o)
            else:
                events.append((CANCELLED, oid, o[0], o[3], RULES_AMENDED))
        return events

    # ------------------------------------------------------------------------------------------
    # reading the book
    # ------------------------------------------------------------------------------------------

    def _side_levels(self, side: str) -> list[tuple[int, list[tuple[int, Order]]]]:
        """(price, [(order id, record)] in time order) for one side, best price first."""
        orders = self._orders
        if side == BUY:
            keyed = [(px, self._bid_levels[px]) for px in reversed(self._bid_px)]
        else:
            keyed = [(-npx, self._ask_levels[-npx]) for npx in reversed(self._ask_npx)]
        return [(px, [(oid, orders[oid]) for oid in level if oid in orders]) for px, level in keyed]

    def best_bid(self) -> int | None:
        return self._bid_px[-1] if self._bid_px else None

    def best_ask(self) -> int | None:
        return -self._ask_npx[-1] if self._ask_npx else None

    def depth(self, levels: int = 5) -> dict[str, list[tuple[int, int, int]]]:
        """Best `levels` price levels per side as (price, open qty, order count), best first."""
        orders = self._orders
        out: dict[str, list[tuple[int, int, int]]] = {}
        for side, keys, book, sign in (
            (BUY, self._bid_px, self._bid_levels, 1),
            (SELL, self._ask_npx, self._ask_levels, -1),
        ):
            rows = []
            for key in reversed(keys[-levels:] if levels > 0 else []):
                level = book[key * sign]
                rows.append((key * sign, level.qty, sum(1 for oid in level if oid in orders)))
            out[side] = rows
        return out

    def order(self, order_id: int) -> dict[str, Any] | None:
        o = self._orders.get(order_id)
        if o is None:
            return None
        return {"order_id": order_id, "account": o[0], "side": o[1], "price": o[2], "qty": o[3]}

    def open_orders(self, side: str) -> list[dict[str, Any]]:
        """Live orders of one side in priority order (price, then time)."""
        return [
            {"order_id": oid, "account": o[0], "side": o[1], "price": o[2], "qty": o[3]}
            for _, queue in self._side_levels(side)
            for oid, o in queue
        ]

    def __len__(self) -> int:
        return len(self._orders)

    # ------------------------------------------------------------------------------------------
    # snapshot, restore, hash
    # ------------------------------------------------------------------------------------------

    def _snapshot_body(self) -> dict[str, Any]:
        # Queues in priority order, best price first: the hash covers time priority.
        return {
            "trade_id": self._trade_id,
            "bids": [[px, [[oid, o[0], o[3]] for oid, o in q]] for px, q in self._side_levels(BUY)],
            "asks": [[px, [[oid, o[0], o[3]] for oid, o in q]] for px, q in self._side_levels(SELL)],
        }

    def _restore_body(self, snap: dict[str, Any]) -> None:
        self._trade_id = snap["trade_id"]
        for side, key in ((BUY, "bids"), (SELL, "asks")):
            for px, queue in snap[key]:
                for oid, account, qty in queue:
                    self._rest(oid, (account, side, px, qty))
