"""The settlement-leg builder: from the engine's events of a batch to the ledger request groups that settle it.

Pure: no I/O, no clock, no randomness. It moves the sequencer's in-memory order states (fills, ends) and
says what the ledger must do, as linked groups (exchange/trading/pipeline.py submits them):

- a trade settles delivery versus payment as one event (one ledger entry, version 2; for a court's
  restoration order the event is followed by the retirement entry, linked): the seller's units from its
  hold (to the buyer, or retired for a court's restoration order), the buyer's cash from its hold (notional
  plus its fee),
  the seller paid its notional less its fee, the fees to the fee account, and on a T+1 market a lock on
  what was bought until the next session's open. Term pricing: notional = price × quantity × years;
- a raised auction bid moves its old hold and the raise's top-up into one hold, as one event;
- a finished order gives back what is left of its hold (always asked, never computed), unless a trade of the
  same batch posted that hold without keeping a remainder: that trade's own entry gave the rest back.
  Releases of orders that did not trade in the batch go to the ledger with its trades; those of orders that
  traded wait for the trades (a refused trade keeps its parties' holds where they are).

Every client id is derived from the market and the trade, bid or hold, so re-settlement after a restart is
a no-op in the ledger.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Any

from exchange.trading import marketdata
from exchange.trading.markets import Market
from exchange.trading.models import EnforcementNote, OrderState, OrderUpdate, Trade
from exchange.trading.pricing import buy_need, fill_fee, notional
from ledger import commands as lc
from matching import commands as mc
from matching import events as ev
from matching.rules import NO_LIMIT


class Effect(Enum):
    """What a linked ledger group of a batch does; its outcome is read by this, never from client ids."""

    TRADE = "trade"  # settles one trade, delivery versus payment; its first entry is the trade's settlement
    RAISE = "raise"  # moves a raised bid's holds into one hold (the group's last entry), or only releases them
    RELEASE = "release"  # gives back what is left of a finished order's hold; "already resolved" is fine


@dataclass(slots=True)
class Group:
    """One linked ledger group a batch queues, with what the sequencer learns from its entries."""

    effect: Effect
    requests: list[lc.Request]
    trade: Trade | None = None  # TRADE: the trade's row, which takes the group's first entry's seq
    # TRADE: the order holds it posts from, and those of them it resolves (posted without keeping a remainder).
    holds: tuple[int, ...] = ()
    resolves: tuple[int, ...] = ()
    bid: OrderState | None = None  # RAISE: the raised bid whose one new hold the group's last entry creates


@dataclass(frozen=True, slots=True)
class Venue:
    """What settlement needs of the market and the ledger: its rules, the system accounts, the actor."""

    market: Market
    clearing: int
    retired: int
    fees: int
    actor: str

    @classmethod
    def of(cls, market: Market, system: Mapping[str, int]) -> Venue:
        return cls(market, system["clearing"], system["retired"], system["fees"], f"exchange:{market.id}")


# The venues whose trades name both parties in their ledger entry: a block deal's parties negotiated it with
# each other. Every other trade is anonymous (continuous, listing, auction, and a restoration purchase's
# linked group): its entries name neither party nor their orders (README "Visibility").
DISCLOSED_MODES = frozenset({ev.BLOCK})

# One journaled command with the engine's events: (seq, ts, command, events, its order context or None).
Result = tuple[int, int, Any, list[ev.Event], dict[str, Any] | None]


@dataclass(slots=True)
class Batch:
    """What a matched batch must settle and project."""

    groups: list[Group]
    # Releases of a batch that traded wait for its trades: if a trade is refused, its parties' holds stay.
    releases: list[Group]
    updates: list[OrderUpdate]
    published: list[dict[str, Any]]
    # Commands the engine refused, as (seq, code, message): kept so a retry is refused the same way.
    refusals: list[tuple[int, str, str]] = field(default_factory=list)
    # Raised auction bids whose one new hold a group of this batch creates (Group.bid).
    raises: list[OrderState] = field(default_factory=list)
    # Enforcement sales this batch settled or ended, for the settlement hooks (exchange.pledging).
    enforcement: list[EnforcementNote] = field(default_factory=list)

    def trades(self) -> list[Trade]:
        return [g.trade for g in self.groups if g.trade is not None]


class Book:
    """The open order states of one market, and the states each journaled command created (its own order,
    or the funding of a block deal): a rejection of that command finishes them, and only them."""

    __slots__ = ("created", "orders", "venue")

    def __init__(self, venue: Venue, orders: dict[int, OrderState] | None = None) -> None:
        self.venue = venue
        self.orders: dict[int, OrderState] = orders or {}
        self.created: dict[int, list[int]] = {}

    def register(self, seq: int, ctx: Mapping[str, Any] | None) -> None:
        """Create the states a command brings: its own order (id = seq) and transient ones (block deals)."""
        if ctx is None:
            return
        ids = []
        if ctx.get("kind"):
            self.orders[seq] = OrderState.new(seq, ctx)
            ids.append(seq)
        for extra in ctx.get("extra", ()):
            self.orders[extra["id"]] = OrderState.new(extra["id"], extra)
            ids.append(extra["id"])
        if ids:
            self.created[seq] = ids

    def stage(self, results: list[Result], day: date) -> Batch:
        """Settle a batch's events on the book: the ledger groups, the projection, the stream's messages."""
        decimals = self.venue.market.decimals
        groups: list[Group] = []
        # Keyed by (id, hold): the two sides of a block deal are states named after the quote and the deal,
        # and each confirmation funds them afresh, so one id can stand for several fundings in one batch.
        changed: dict[tuple[int, int | None], OrderState] = {}
        published: list[dict[str, Any]] = []
        refusals: list[tuple[int, str, str]] = []
        raising: list[Group] = []
        enforcement: list[EnforcementNote] = []
        for seq, _ts, _cmd, events, ctx in results:
            # States are created command by command, right before that command's events are settled:
            # two confirmations on one quote in one batch each settle against their own funding.
            self.register(seq, ctx)
            for e in events:
                kind = e[0]
                if kind == ev.TRADE:
                    group = self.trade(e, seq, day)
                    groups.append(group)
                    assert group.trade is not None
                    t = group.trade
                    pledge = self.orders[t.sell_order].enforcement()
                    if pledge is not None:
                        enforcement.append(EnforcementNote(pledge, t.sell_order, trade_id=t.trade_id))
                    for oid in (e[ev.T_MAKER_ID], e[ev.T_TAKER_ID]):
                        o = self.orders[oid]
                        changed[(oid, o.hold_id)] = o
                    published.append(marketdata.trade_message(t, e[ev.T_TAKER_SIDE], decimals))
                elif kind == ev.REJECTED:
                    # Only what this command brought is refused; a refused cancel or reduce names an
                    # order that stays as it was.
                    for oid in self.created.get(seq, ()):
                        self.finish(oid, "rejected", e[2], changed)
                    if not refusals or refusals[-1][0] != seq:
                        refusals.append((seq, e[2], e[3]))
                elif kind in (ev.CANCELLED, ev.EXPIRED):
                    self.finish(e[1], "cancelled" if kind == ev.CANCELLED else "expired",
                                e[4] if kind == ev.CANCELLED else "end_of_day", changed)
                elif kind == ev.BID_WITHDRAWN:
                    self.finish(e[2], "cancelled", "withdrawn", changed)
                elif kind == ev.BID_REPLACED:
                    bid = self._replace(e[2], e[4], changed)
                    raising.append(Group(Effect.RAISE, self.raise_legs(bid, e[2]), bid=bid))
                    groups.append(raising[-1])
                elif kind == ev.AUCTION_RESULT or (kind == ev.AUCTION_PHASE and e[2] == "cancelled"):
                    # The auction is over: unsold units, losing bids and every deposit go back.
                    aid = e[1]
                    for oid, o in list(self.orders.items()):
                        if oid == aid or o.parent == aid:
                            reason = "auction_cancelled" if kind == ev.AUCTION_PHASE else (
                                "deposit_returned" if o.kind == "deposit" else "auction_allocated")
                            self.finish(oid, "filled" if o.filled_qty else "cancelled", reason, changed)
                elif kind == ev.REDUCED and e[1] in self.orders:
                    o = self.orders[e[1]]
                    o.open_qty = e[4] if len(e) > 4 else o.open_qty
                    changed[(o.id, o.hold_id)] = o
                    trim = self.trim(o)
                    if trim is not None:  # what the reduced quantity no longer needs, given back at once
                        groups.append(Group(Effect.RELEASE, [lc.Request(
                            self.venue.actor, trim, f"{self.venue.market.id}:trim:hold:{trim.hold}:{seq}")]))
                elif kind == ev.CONVERTED and e[1] in self.orders:
                    o = self.orders[e[1]]
                    o.price = e[2]
                    changed[(o.id, o.hold_id)] = o
        # Finished orders give back what is left of their hold. Always asked, never computed: after a
        # restart the ledger may be ahead of the projection, and a fully posted hold just answers
        # "already resolved", which is what we wanted. Not asked for a hold a trade of this batch posted
        # without a remainder: that trade's entry resolved it (and a refused trade stops the market before
        # any release of its parties is sent). The releases of orders that traded here wait for the trades;
        # the others need not.
        traded = {h for g in groups for h in g.holds}
        resolved = {h for g in groups for h in g.resolves}
        now: list[Group] = []
        releases: list[Group] = []
        for o in changed.values():
            if o.status == "open" and o.open_qty == 0 and o.filled_qty > 0:
                o.status = "filled"
            if o.status != "open" and o.hold_id is not None and o.hold_id not in resolved:
                (releases if o.hold_id in traded else now).append(Group(Effect.RELEASE, [self.release(o.hold_id)]))
            pledge = o.enforcement()
            if o.status != "open" and pledge is not None and not any(
                    x.order_id == o.id and x.ended is not None for x in enforcement):
                enforcement.append(EnforcementNote(pledge, o.id, ended=o.status))
        for g in raising:
            if g.bid is not None and g.bid.status != "open":  # raised, then ended in this same batch
                (moved,) = g.requests  # release the old and the top-up holds, create none
                assert isinstance(moved.command, lc.Event)
                g.requests = [dataclasses.replace(moved, command=lc.Event("raise", moved.command.legs[:-1]))]
                g.bid = None
        raises = [g.bid for g in raising if g.bid is not None]
        for r in results:
            self.created.pop(r[0], None)
        groups += now
        updates = [o.update() for o in changed.values()]
        for o in changed.values():
            if o.status != "open" and self.orders.get(o.id) is o:
                del self.orders[o.id]
        return Batch(groups, releases, updates, published, refusals, raises, enforcement)

    def trim(self, o: OrderState) -> lc.TrimHold | None:
        """What a resting order's hold must still hold, asked of the ledger as a trim (it releases the rest):
        a limit buy, its rest at its limit with the fee on its cumulative notional; a sell, its open units.
        None for orders whose hold follows other rules (takes, bids, deposits, quotes, enforcement sales)."""
        m = self.venue.market
        if o.kind != "order" or o.hold_id is None or o.open_qty <= 0 or o.enforcement() is not None:
            return None
        if o.side == mc.SELL:
            return lc.TrimHold(o.hold_id, o.open_qty)
        if o.price is None or not 0 < o.price < NO_LIMIT:
            return None
        return lc.TrimHold(o.hold_id, buy_need(o.price, o.open_qty, o.filled_notional, m.decimals, m.fee_bps,
                                               m.years))

    def release(self, hold_id: int) -> lc.Request:
        """Give back what is left of a hold. Named after the hold it releases: a hold is resolved once, and
        nothing else (another funding of the same quote, a trade) can ever share this client id."""
        v = self.venue
        return lc.Request(v.actor, lc.VoidHold(hold_id), f"{v.market.id}:release:hold:{hold_id}")

    def finish(self, oid: int | None, status: str, reason: str | None,
               changed: dict[tuple[int, int | None], OrderState]) -> None:
        o = self.orders.get(oid) if oid is not None else None
        if o is None or o.status != "open":
            return
        o.status, o.reason, o.open_qty = status, reason, 0
        changed[(o.id, o.hold_id)] = o

    def _replace(self, old_id: int, new_id: int, changed: dict[tuple[int, int | None], OrderState]) -> OrderState:
        """A raise replaced a standing bid: the old bid ends and its hold moves, with the raise's top-up,
        into one new hold for the new bid (built by `raise_legs`; its id is set when it is written)."""
        old, new = self.orders[old_id], self.orders[new_id]
        self.finish(old_id, "cancelled", "replaced", changed)
        new.hold_amount += old.hold_amount
        changed[(new.id, new.hold_id)] = new
        return new

    def raise_legs(self, new: OrderState, old_id: int) -> list[lc.Request]:
        """One event (one entry): void the old bid's hold and the raise's top-up, hold the sum for the new bid
        (its id is the entry's seq). Nothing is ever held twice, and the sum is free by construction, so the
        event cannot fail."""
        v = self.venue
        old = self.orders.get(old_id)
        assert old is not None and old.hold_id is not None, f"raised bid {old_id} has no hold"
        cmds: list[lc.Leg] = [lc.VoidHold(old.hold_id)]
        old.hold_id = None  # released by this group, not by the end-of-order release
        if new.hold_id is not None:
            cmds.append(lc.VoidHold(new.hold_id))
            new.hold_id = None
        cmds.append(lc.CreateHold("order", new.cash_account, v.clearing, "CNY", new.hold_amount))
        # Named as the first request of the linked group that moved raises before (see `trade`).
        return [lc.Request(v.actor, lc.Event("raise", tuple(cmds)), f"{v.market.id}:raise:{new.id}:0",
                           {"market": v.market.id, "bid": new.id, "replaces": old_id})]

    def trade(self, e: ev.Event, seq: int, day: date) -> Group:
        """The fill on both orders, and its settlement: one linked group, delivery versus payment."""
        v = self.venue
        m = v.market
        price, qty = e[ev.T_PRICE], e[ev.T_QTY]
        taker, maker = self.orders[e[ev.T_TAKER_ID]], self.orders[e[ev.T_MAKER_ID]]
        buyer, seller = (taker, maker) if e[ev.T_TAKER_SIDE] == mc.BUY else (maker, taker)
        assert buyer.hold_id is not None and seller.hold_id is not None, "a trade of an unfunded order"
        n = notional(price, qty, m.decimals, m.years)
        fees = {}
        for o in (buyer, seller):
            before = o.filled_notional
            o.filled_qty += qty
            o.filled_notional += n
            o.open_qty -= qty
            fees[o.id] = fill_fee(before, o.filled_notional, m.fee_bps)
            o.fees += fees[o.id]
        fb, fs = fees[buyer.id], fees[seller.id]
        cid = f"{m.id}:trade:{e[ev.T_ID]}"
        retire = buyer.purpose is not None and buyer.purpose.get("retire")
        # An order the trade completes gives back what is left of its hold in this same event; a buy that
        # rests on, filled below its limit, keeps only what its rest can still cost (`trim`).
        # The holds this event resolves: those of the orders it completes.
        resolves = tuple(h for h, o in ((seller.hold_id, seller), (buyer.hold_id, buyer)) if o.open_qty == 0)
        # A restoration purchase's units stay in the clearing account for the retirement right after the event.
        reqs: list[lc.Leg] = [lc.PostHold(seller.hold_id, qty, keep_remainder=seller.hold_id not in resolves)]
        if not retire:
            reqs.append(lc.Transfer(v.clearing, buyer.holding_account, m.instrument, qty))
        reqs.append(lc.PostHold(buyer.hold_id, n + fb, keep_remainder=buyer.hold_id not in resolves))
        if buyer.open_qty > 0 and buyer.price is not None and price < buyer.price:
            trim = self.trim(buyer)
            if trim is not None:
                reqs.append(trim)
        if n - fs > 0:
            reqs.append(lc.Transfer(v.clearing, seller.cash_account, "CNY", n - fs))
        if fb + fs > 0:
            reqs.append(lc.Transfer(v.clearing, v.fees, "CNY", fb + fs))
        if m.t_plus_1 and not retire:
            # Bought today, sellable tomorrow: a lock released at the next session's open.
            reqs.append(lc.CreateHold("t1", buyer.holding_account, v.clearing, m.instrument, qty))
        # Who traded is named in the entry only where the venue discloses it (a block deal's two parties
        # negotiated with each other). On an anonymous book (continuous, listing, auction) both parties get
        # the entry's receipt, so it names neither them nor their orders, and its accounts, holds and amounts
        # are commitments (entry version 4): a buy's hold rest and release (its limit and size) and a sell's
        # rest are the other side's business; the parties stay in the private trades table, for operators
        # and auditors.
        disclosed = e[ev.T_MODE] in DISCLOSED_MODES
        meta: dict[str, Any] = {"market": m.id, "trade_id": e[ev.T_ID], "price": price, "qty": qty}
        if disclosed:
            meta |= {"buyer": buyer.participant_id, "seller": seller.participant_id, "buy_order": buyer.id,
                     "sell_order": seller.id}
        # The trade's terms go on its first entry; a judicial retirement carries them too (with the case),
        # because that entry is what a restoration certificate proves. The certificate is public, so the
        # retirement names the case, not the parties' participant ids (the payer is found from the case).
        retire_meta: dict[str, Any] = {k: x for k, x in meta.items()
                                       if k not in ("buyer", "seller", "buy_order", "sell_order")}
        if retire and buyer.purpose:
            retire_meta["restoration"] = buyer.purpose
        # One event, one entry (version 2). Named as the first entry of the linked group that settled
        # trades before: a trade settled that way and re-settled after an upgrade is found, and refused
        # as a different request, never settled twice.
        group = [lc.Request(v.actor, lc.Event("trade", tuple(reqs), blinded=not disclosed,
                                              blind_amounts=not disclosed), f"{cid}:0", meta)]
        if retire:
            # A judicial retirement stays an entry of its own (type `retire`), linked right after the trade's
            # event (all or none): that entry is what the restoration certificate proves -- a public document,
            # which must not carry the trade's accounts -- and what the retirement listings find. Its client
            # id is the one it had as request 1 of the older linked group (RestorationTrade.retirement_request).
            group.append(lc.Request(v.actor, lc.Retire(
                v.clearing, v.retired, m.instrument, qty, "judicial_restoration",
                str(buyer.purpose.get("beneficiary", "")) if buyer.purpose else ""), f"{cid}:1", retire_meta))
        row = Trade(m.id, e[ev.T_ID], seq, e[ev.T_TS], e[ev.T_MODE], m.instrument, price, qty, n, buyer.id,
                    seller.id, buyer.participant_id, seller.participant_id, fb, fs, m.in_close, day)
        return Group(Effect.TRADE, group, trade=row, holds=(seller.hold_id, buyer.hold_id), resolves=resolves)
