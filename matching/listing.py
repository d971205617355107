"""Listing trading (挂牌协议): makers list, takers pick.

A maker lists a quantity at a price. A taker names one listing and a quantity, and trades at the
listing's price, provided the listing sits within the best `rules.best_n` distinct price levels of
its side (the national CEA rule: 5), or at the best level only when `rules.strict_best` is set
(Guangdong's 挂牌点选). There is no time priority inside a level: the taker chooses. Takes may be
partial; a listing leaves the book when fully taken, cancelled or expired.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import Any

from . import reasons as R
from .base import Engine
from .commands import BUY, SELL, SIDES, Cancel, EndOfDay, PostListing, Reduce, Take, command_ref, opposite
from .events import ACCEPTED, BY_REQUEST, CANCELLED, EXPIRED, LISTING, REDUCED, REJECTED, RULES_AMENDED, TRADE, Event
from .rules import MarketRules

Listing = tuple[Any, str, int, int]  # (account, side, price, open qty)


class ListingBook(Engine):
    kind = "listing"
    __slots__ = ("_levels", "_listings", "_prices", "_trade_id")

    def __init__(self, rules: MarketRules | None = None, reference: int | None = None) -> None:
        # Listings in acceptance order (ids increase), so iteration order is deterministic.
        self._listings: dict[int, Listing] = {}
        # Per side: price -> [open qty, listing count], and the prices sorted ascending.
        self._levels: dict[str, dict[int, list[int]]] = {BUY: {}, SELL: {}}
        self._prices: dict[str, list[int]] = {BUY: [], SELL: []}
        self._trade_id = 0
        super().__init__(rules, reference)

    def _apply(self, seq: int, ts: int, c: Any) -> list[Event]:
        cls = c.__class__
        if cls is Take:
            return self._take(seq, ts, c)
        if cls is PostListing:
            return self._post(c)
        if cls is Cancel:
            return self._cancel(c)
        if cls is Reduce:
            return self._reduce(c)
        if cls is EndOfDay:
            events: list[Event] = [(EXPIRED, lid, o[0], o[3]) for lid, o in self._listings.items()]
            for lid in list(self._listings):
                self._drop(lid)
            return events
        return [(REJECTED, command_ref(c), R.UNKNOWN_COMMAND, f"{cls.__name__} is not a listing command")]

    # --- commands ------------------------------------------------------------------------------

    def _post(self, c: PostListing) -> list[Event]:
        lid = c.listing_id
        reject = self._halted_reject(lid)
        if reject is None and c.side not in SIDES:
            reject = (REJECTED, lid, R.INVALID_SIDE, f"side {c.side!r} is not 'buy' or 'sell'")
        if reject is None:
            bad = self.rules.check(c.price, c.qty, self._band)
            if bad is not None:
                reject = (REJECTED, lid, bad[0], bad[1])
        if reject is None:
            reject = self._id_reject(lid, lid in self._listings)
        if reject is not None:
            return [reject]
        self._last_id = lid
        self._add(lid, (c.account, c.side, c.price, c.qty))
        return [(ACCEPTED, lid, c.account, c.side, "listing", "day", c.price, c.qty)]

    def _take(self, seq: int, ts: int, c: Take) -> list[Event]:
        tid, lid, qty = c.take_id, c.listing_id, c.qty
        reject = self._halted_reject(tid)
        if reject is not None:
            return [reject]
        listing = self._listings.get(lid)
        if listing is None:
            return [(REJECTED, tid, R.UNKNOWN_ORDER, f"listing {lid} is not live")]
        reject = self._id_reject(tid, tid in self._listings)
        if reject is not None:
            return [reject]
        account, side, price, open_qty = listing
        if c.account == account:
            return [(REJECTED, tid, R.SELF_TRADE, f"listing {lid} is the taker's own")]
        reject = self._take_size_reject(tid, qty, open_qty)
        if reject is not None:
            return [reject]
        low, high = self._band
        if not low <= price <= high:
            return [(REJECTED, tid, R.PRICE_OUT_OF_BAND,
                     f"listing price {R.price(price)} is outside the band [{R.price(low)}, {R.price(high)}]")]
        rank = self.rank(lid)
        allowed = 1 if self.rules.strict_best else self.rules.best_n
        if rank >= allowed:
            return [
                (
                    REJECTED,
                    tid,
                    R.NOT_WITHIN_BEST_LEVELS,
                    f"listing {lid} is at level {rank + 1} of its side; only the best {allowed} may be taken",
                )
            ]
        self._last_id = tid
        self._trade_id += 1
        self._fill(lid, qty)
        return [
            (
                TRADE,
                LISTING,
                seq,
                ts,
                self._trade_id,
                price,
                qty,
                opposite(side),
                lid,
                account,
                tid,
                c.account,
            )
        ]

    def _take_size_reject(self, tid: int, qty: int, open_qty: int) -> Event | None:
        """Size rules for a take: the market's lot and bounds, except that the last remainder of a
        listing may always be taken, however small."""
        bad = self.rules.check(None, qty, self._band)
        if bad is not None and not (bad[0] == R.QUANTITY_BELOW_MINIMUM and qty == open_qty):
            return (REJECTED, tid, bad[0], bad[1])
        if qty > open_qty:
            return (REJECTED, tid, R.QUANTITY_EXCEEDS_REMAINING, f"{R.qty(qty)} exceeds the {R.qty(open_qty)} listed")
        return None

    def _off_grid(self) -> list[Event]:
        off = [(lid, o) for lid, o in self._listings.items() if not self._on_grid(o[2], o[3])]
        for lid, _ in off:
            self._drop(lid)
        return [(CANCELLED, lid, o[0], o[3], RULES_AMENDED) for lid, o in off]

    def _cancel(self, c: Cancel) -> list[Event]:
        lid = c.order_id
        listing = self._listings.get(lid)
        if listing is None:
            return [(REJECTED, lid, R.UNKNOWN_ORDER, f"listing {lid} is not live")]
        reject = self._owner_reject(lid, listing[0], c.account)
        if reject is not None:
            return [reject]
        self._drop(lid)
        return [(CANCELLED, lid, listing[0], listing[3], BY_REQUEST)]

    def _reduce(self, c: Reduce) -> list[Event]:
        lid, new = c.order_id, c.qty
        listing = self._listings.get(lid)
        if listing is None:
            return [(REJECTED, lid, R.UNKNOWN_ORDER, f"listing {lid} is not live")]
        old = listing[3]
        reject = self._owner_reject(lid, listing[0], c.account) or self._reduce_reject(lid, old, new)
        if reject is not None:
            return [reject]
        self._fill(lid, old - new)
        return [(REDUCED, lid, listing[0], old, new)]

    # --- the level index -----------------------------------------------------------------------

    def _add(self, lid: int, listing: Listing) -> None:
        _, side, price, qty = listing
        levels = self._levels[side]
        level = levels.get(price)
        if level is None:
            levels[price] = [qty, 1]
            insort(self._prices[side], price)
        else:
            level[0] += qty
            level[1] += 1
        self._listings[lid] = listing

    def _fill(self, lid: int, qty: int) -> None:
        """Takes `qty` off a listing (a take or a reduction), dropping it when nothing is left."""
        account, side, price, open_qty = self._listings[lid]
        if qty == open_qty:
            self._drop(lid)
            return
        self._levels[side][price][0] -= qty
        self._listings[lid] = (account, side, price, open_qty - qty)

    def _drop(self, lid: int) -> None:
        _, side, price, qty = self._listings.pop(lid)
        levels = self._levels[side]
        level = levels[price]
        level[0] -= qty
        level[1] -= 1
        if not level[1]:
            del levels[price]
            prices = self._prices[side]
            del prices[bisect_left(prices, price)]

    # --- reading -------------------------------------------------------------------------------

    def rank(self, listing_id: int) -> int:
        """0-based rank of the listing's price among its side's distinct prices, best first."""
        _, side, price, _ = self._listings[listing_id]
        prices = self._prices[side]
        if side == SELL:
            return bisect_left(prices, price)
        return len(prices) - bisect_right(prices, price)

    def depth(self, levels: int = 5) -> dict[str, list[tuple[int, int, int]]]:
        """Best `levels` price levels per side as (price, open qty, listing count), best first."""
        out: dict[str, list[tuple[int, int, int]]] = {}
        for side in SIDES:
            prices = self._prices[side]
            best_first = reversed(prices) if side == BUY else iter(prices)
            rows: list[tuple[int, int, int]] = []
            for price in best_first:
                if len(rows) >= levels:
                    break
                level = self._levels[side][price]
                rows.append((price, level[0], level[1]))
            out[side] = rows
        return out

    def listings(self, side: str | None = None) -> list[dict[str, Any]]:
        """Live listings in acceptance order."""
        return [
            {"listing_id": lid, "account": o[0], "side": o[1], "price": o[2], "qty": o[3]}
            for lid, o in self._listings.items()
            if side is None or o[1] == side
        ]

    def listing(self, listing_id: int) -> dict[str, Any] | None:
        o = self._listings.get(listing_id)
        if o is None:
            return None
        return {"listing_id": listing_id, "account": o[0], "side": o[1], "price": o[2], "qty": o[3]}

    def __len__(self) -> int:
        return len(self._listings)

    # --- snapshot ------------------------------------------------------------------------------

    def _snapshot_body(self) -> dict[str, Any]:
        return {
            "trade_id": self._trade_id,
            "listings": [[lid, o[0], o[1], o[2], o[3]] for lid, o in self._listings.items()],
        }

    def _restore_body(self, snap: dict[str, Any]) -> None:
        self._trade_id = snap["trade_id"]
        for lid, account, side, price, qty in snap["listings"]:
            self._add(lid, (account, side, price, qty))
