"""One-way auctions (单向竞价), e.g. a government emission-right reserve selling a lot.

Each auction is a state machine driven by commands, with time taken only from the `ts` the sequencer
stamps on them:

    announced --OpenRegistration--> registration --OpenBidding(end_ts)--> bidding
    bidding --CloseAuction (ts >= end)--> closed --Allocate--> allocated
    any phase before allocated --CancelAuction--> cancelled

Registration requires the announced deposit. In the bidding window each bid must be at least the
minimum price and on its increment grid; a bidder may place up to `max_bids_per_bidder` bids whose
quantities add up to at most `cap_per_bidder`. A bid in the last `extension_window` ticks before the
end moves the end to bid time + `extension_length`, up to `max_extensions` rounds (限时竞价 rounds).
Bids are irrevocable unless the auction says otherwise.

Allocation ranks bids by price, best first, then by time (bid ids increase with arrival):
  * pay_as_bid: fill bids down the ranking, each at its own price;
  * top_percent: only the best `top_percent` % of bidders (ranked by their best bid; rounded up) win,
    each at its own price, down the ranking until the lot is sold;
  * uniform_price: the pay-as-bid winners all pay the lowest winning price (one clearing price).
The marginal bid may be filled in part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from . import reasons as R
from .base import Engine
from .commands import (
    ALLOCATIONS,
    BUY,
    TOP_PERCENT,
    UNIFORM_PRICE,
    Allocate,
    Announce,
    Bid,
    CancelAuction,
    CloseAuction,
    OpenBidding,
    OpenRegistration,
    Register,
    WithdrawBid,
    command_ref,
)
from .events import (
    ALLOCATED,
    AUCTION,
    AUCTION_ANNOUNCED,
    AUCTION_EXTENDED,
    AUCTION_PHASE,
    AUCTION_RESULT,
    BID_ACCEPTED,
    BID_WITHDRAWN,
    REGISTERED,
    REJECTED,
    TRADE,
    Event,
)
from .rules import MarketRules

ANNOUNCED = "announced"
REGISTRATION = "registration"
BIDDING = "bidding"
CLOSED = "closed"
ALLOCATED_PHASE = "allocated"
CANCELLED_PHASE = "cancelled"

BidRecord = tuple[Any, int, int]  # (bidder, price, qty)


class _Auction:
    __slots__ = ("allocations", "bids", "end_ts", "extensions", "phase", "registered", "terms")

    def __init__(self, terms: Announce) -> None:
        self.terms = terms
        self.phase = ANNOUNCED
        self.end_ts: int | None = None
        self.extensions = 0
        self.registered: dict[Any, int] = {}  # bidder -> deposit, in registration order
        self.bids: dict[int, BidRecord] = {}  # live bids in arrival (= id) order
        self.allocations: list[tuple[int, Any, int, int]] = []  # (bid id, bidder, price, qty)

    def bidder_totals(self, bidder: Any) -> tuple[int, int]:
        """(live bid count, live bid quantity) of one bidder."""
        mine = [b[2] for b in self.bids.values() if b[0] == bidder]
        return len(mine), sum(mine)

    def ranked(self) -> list[tuple[int, BidRecord]]:
        """Bids best price first, then earliest first."""
        return sorted(self.bids.items(), key=lambda kv: (-kv[1][1], kv[0]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "terms": asdict(self.terms),
            "phase": self.phase,
            "end_ts": self.end_ts,
            "extensions": self.extensions,
            "registered": [[bidder, deposit] for bidder, deposit in self.registered.items()],
            "bids": [[bid_id, *b] for bid_id, b in self.bids.items()],
            "allocations": [list(a) for a in self.allocations],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _Auction:
        auction = cls(Announce(**data["terms"]))
        auction.phase = data["phase"]
        auction.end_ts = data["end_ts"]
        auction.extensions = data["extensions"]
        auction.registered = {bidder: deposit for bidder, deposit in data["registered"]}
        auction.bids = {bid_id: (bidder, price, qty) for bid_id, bidder, price, qty in data["bids"]}
        auction.allocations = [(a[0], a[1], a[2], a[3]) for a in data["allocations"]]
        return auction


def allocate(
    terms: Announce, ranked: list[tuple[int, BidRecord]]
) -> tuple[list[tuple[int, Any, int, int]], int]:
    """Pure allocation: ([(bid id, bidder, price paid, qty)], unsold qty) for bids ranked best first."""
    if terms.allocation == TOP_PERCENT:
        best_of: dict[Any, None] = {}  # bidders in rank order of their best bid
        for _, (bidder, _, _) in ranked:
            best_of.setdefault(bidder, None)
        winners_n = -(-len(best_of) * terms.top_percent // 100)
        winners = set(list(best_of)[:winners_n])
        ranked = [(bid_id, b) for bid_id, b in ranked if b[0] in winners]
    left = terms.qty
    fills: list[tuple[int, Any, int, int]] = []
    for bid_id, (bidder, price, qty) in ranked:
        if not left:
            break
        take = min(qty, left)
        fills.append((bid_id, bidder, price, take))
        left -= take
    if terms.allocation == UNIFORM_PRICE and fills:
        clearing = fills[-1][2]
        fills = [(bid_id, bidder, clearing, qty) for bid_id, bidder, _, qty in fills]
    return fills, left


class AuctionHouse(Engine):
    """Runs any number of auctions, each keyed by its id."""

    kind = "auction"
    __slots__ = ("_auctions", "_trade_id")

    def __init__(self, rules: MarketRules | None = None, reference: int | None = None) -> None:
        self._auctions: dict[int, _Auction] = {}  # in id order
        self._trade_id = 0
        super().__init__(rules, reference)

    def _apply(self, seq: int, ts: int, c: Any) -> list[Event]:
        cls = c.__class__
        if cls is Announce:
            return self._announce(c)
        handler = _HANDLERS.get(cls)
        if handler is None:
            return [
                (REJECTED, command_ref(c), R.UNKNOWN_COMMAND, f"{cls.__name__} is not an auction command")
            ]
        auction = self._auctions.get(c.auction_id)
        if auction is None:
            return [(REJECTED, c.auction_id, R.UNKNOWN_AUCTION, f"auction {c.auction_id} does not exist")]
        return handler(self, seq, ts, c, auction)

    def _announce(self, c: Announce) -> list[Event]:
        aid = c.auction_id
        if aid in self._auctions:
            return [(REJECTED, aid, R.DUPLICATE_AUCTION_ID, f"auction {aid} exists")]
        reject = self._id_reject(aid, False)
        if reject is not None:
            return [reject]
        problem = _terms_problem(c, self.rules)
        if problem:
            return [(REJECTED, aid, R.INVALID_AUCTION, problem)]
        self._last_id = aid
        self._auctions[aid] = _Auction(c)
        return [(AUCTION_ANNOUNCED, aid, c.seller, c.qty, c.min_price, c.allocation)]

    def _phase_reject(self, aid: int, auction: _Auction, *phases: str) -> Event | None:
        if auction.phase in phases:
            return None
        return (
            REJECTED,
            aid,
            R.AUCTION_WRONG_PHASE,
            f"auction {aid} is {auction.phase}; this needs {' or '.join(phases)}",
        )

    def _open_registration(self, seq: int, ts: int, c: OpenRegistration, a: _Auction) -> list[Event]:
        reject = self._phase_reject(c.auction_id, a, ANNOUNCED)
        if reject is not None:
            return [reject]
        a.phase = REGISTRATION
        return [(AUCTION_PHASE, c.auction_id, REGISTRATION, None)]

    def _register(self, seq: int, ts: int, c: Register, a: _Auction) -> list[Event]:
        aid = c.auction_id
        reject = self._halted_reject(aid)
        if reject is not None:
            return [reject]
        if a.phase != REGISTRATION:
            return [(REJECTED, aid, R.REGISTRATION_CLOSED, f"auction {aid} is {a.phase}")]
        if c.bidder == a.terms.seller:
            return [(REJECTED, aid, R.SELLER_CANNOT_BID, "the seller cannot register as a bidder")]
        if c.bidder in a.registered:
            return [(REJECTED, aid, R.ALREADY_REGISTERED, "the bidder is already registered")]
        if c.deposit < a.terms.deposit:
            return [
                (REJECTED, aid, R.DEPOSIT_INSUFFICIENT, f"deposit {c.deposit} is below {a.terms.deposit}")
            ]
        a.registered[c.bidder] = c.deposit
        return [(REGISTERED, aid, c.bidder, c.deposit)]

    def _open_bidding(self, seq: int, ts: int, c: OpenBidding, a: _Auction) -> list[Event]:
        reject = self._phase_reject(c.auction_id, a, REGISTRATION)
        if reject is not None:
            return [reject]
        if c.end_ts <= ts:
            return [
                (REJECTED, c.auction_id, R.INVALID_AUCTION, f"the window end {c.end_ts} is not after {ts}")
            ]
        a.phase = BIDDING
        a.end_ts = c.end_ts
        return [(AUCTION_PHASE, c.auction_id, BIDDING, c.end_ts)]

    def _bid(self, seq: int, ts: int, c: Bid, a: _Auction) -> list[Event]:
        aid, bid_id, t = c.auction_id, c.bid_id, a.terms
        reject = self._halted_reject(bid_id)
        if reject is not None:
            return [reject]
        if a.phase != BIDDING or a.end_ts is None or ts >= a.end_ts:
            return [(REJECTED, bid_id, R.AUCTION_NOT_OPEN, f"auction {aid} is not taking bids at {ts}")]
        if c.bidder not in a.registered:
            return [
                (REJECTED, bid_id, R.BIDDER_NOT_REGISTERED, "the bidder did not register for this auction")
            ]
        reject = self._id_reject(bid_id, bid_id in a.bids)
        if reject is not None:
            return [reject]
        if c.price < t.min_price:
            return [
                (REJECTED, bid_id, R.BID_BELOW_MINIMUM, f"bid {c.price} is below the minimum {t.min_price}")
            ]
        if (c.price - t.min_price) % t.increment:
            return [
                (
                    REJECTED,
                    bid_id,
                    R.BID_INCREMENT,
                    f"bid {c.price} is not {t.min_price} plus a multiple of {t.increment}",
                )
            ]
        bad = self.rules.check(None, c.qty, self._band)
        if bad is not None:
            return [(REJECTED, bid_id, bad[0], bad[1])]
        if c.qty < t.min_bid_qty:
            return [
                (REJECTED, bid_id, R.QUANTITY_BELOW_MINIMUM, f"bid quantity {c.qty} is below {t.min_bid_qty}")
            ]
        if c.qty > t.qty:
            return [
                (
                    REJECTED,
                    bid_id,
                    R.QUANTITY_EXCEEDS_REMAINING,
                    f"bid quantity {c.qty} exceeds the lot {t.qty}",
                )
            ]
        count, total = a.bidder_totals(c.bidder)
        if count >= t.max_bids_per_bidder:
            return [(REJECTED, bid_id, R.TOO_MANY_BIDS, f"the bidder has {count} bids, the most allowed")]
        if t.cap_per_bidder is not None and total + c.qty > t.cap_per_bidder:
            return [
                (
                    REJECTED,
                    bid_id,
                    R.BID_CAP_EXCEEDED,
                    f"{total} + {c.qty} exceeds the cap {t.cap_per_bidder}",
                )
            ]
        self._last_id = bid_id
        a.bids[bid_id] = (c.bidder, c.price, c.qty)
        events: list[Event] = [(BID_ACCEPTED, aid, bid_id, c.bidder, c.price, c.qty)]
        if t.extension_window and ts >= a.end_ts - t.extension_window and a.extensions < t.max_extensions:
            a.extensions += 1
            a.end_ts = max(a.end_ts, ts + t.extension_length)
            events.append((AUCTION_EXTENDED, aid, a.end_ts, a.extensions))
        return events

    def _withdraw(self, seq: int, ts: int, c: WithdrawBid, a: _Auction) -> list[Event]:
        aid, bid_id = c.auction_id, c.bid_id
        bid = a.bids.get(bid_id)
        if bid is None or bid[0] != c.bidder:
            return [(REJECTED, bid_id, R.UNKNOWN_BID, f"the bidder has no live bid {bid_id}")]
        if a.terms.irrevocable:
            return [(REJECTED, bid_id, R.BID_IRREVOCABLE, f"bids in auction {aid} cannot be withdrawn")]
        if a.phase != BIDDING or a.end_ts is None or ts >= a.end_ts:
            return [(REJECTED, bid_id, R.AUCTION_NOT_OPEN, f"auction {aid} is not taking bids at {ts}")]
        del a.bids[bid_id]
        return [(BID_WITHDRAWN, aid, bid_id, c.bidder, bid[2])]

    def _close(self, seq: int, ts: int, c: CloseAuction, a: _Auction) -> list[Event]:
        reject = self._phase_reject(c.auction_id, a, BIDDING)
        if reject is not None:
            return [reject]
        assert a.end_ts is not None  # set when bidding opened
        if ts < a.end_ts:
            return [(REJECTED, c.auction_id, R.AUCTION_STILL_OPEN, f"bidding runs until {a.end_ts}")]
        a.phase = CLOSED
        return [(AUCTION_PHASE, c.auction_id, CLOSED, a.end_ts)]

    def _allocate(self, seq: int, ts: int, c: Allocate, a: _Auction) -> list[Event]:
        aid = c.auction_id
        reject = self._phase_reject(aid, a, CLOSED)
        if reject is not None:
            return [reject]
        fills, unsold = allocate(a.terms, a.ranked())
        a.allocations = fills
        a.phase = ALLOCATED_PHASE
        events: list[Event] = []
        for bid_id, bidder, price, qty in fills:
            self._trade_id += 1
            events.append((ALLOCATED, aid, bid_id, bidder, price, qty))
            events.append(
                (
                    TRADE,
                    AUCTION,
                    seq,
                    ts,
                    self._trade_id,
                    price,
                    qty,
                    BUY,
                    aid,
                    a.terms.seller,
                    bid_id,
                    bidder,
                )
            )
        clearing = fills[-1][2] if fills else None
        events.append((AUCTION_RESULT, aid, a.terms.qty - unsold, unsold, clearing))
        events.append((AUCTION_PHASE, aid, ALLOCATED_PHASE, a.end_ts))
        return events

    def _cancel(self, seq: int, ts: int, c: CancelAuction, a: _Auction) -> list[Event]:
        reject = self._phase_reject(c.auction_id, a, ANNOUNCED, REGISTRATION, BIDDING, CLOSED)
        if reject is not None:
            return [reject]
        a.phase = CANCELLED_PHASE
        return [(AUCTION_PHASE, c.auction_id, CANCELLED_PHASE, a.end_ts)]

    # --- reading -------------------------------------------------------------------------------

    def auction(self, auction_id: int) -> dict[str, Any] | None:
        a = self._auctions.get(auction_id)
        return None if a is None else a.to_dict()

    # --- snapshot ------------------------------------------------------------------------------

    def _snapshot_body(self) -> dict[str, Any]:
        return {
            "trade_id": self._trade_id,
            "auctions": [[aid, a.to_dict()] for aid, a in self._auctions.items()],
        }

    def _restore_body(self, snap: dict[str, Any]) -> None:
        self._trade_id = snap["trade_id"]
        for aid, data in snap["auctions"]:
            self._auctions[aid] = _Auction.from_dict(data)


_HANDLERS: dict[type, Callable[..., list[Event]]] = {
    OpenRegistration: AuctionHouse._open_registration,
    Register: AuctionHouse._register,
    OpenBidding: AuctionHouse._open_bidding,
    Bid: AuctionHouse._bid,
    WithdrawBid: AuctionHouse._withdraw,
    CloseAuction: AuctionHouse._close,
    Allocate: AuctionHouse._allocate,
    CancelAuction: AuctionHouse._cancel,
}


def _terms_problem(c: Announce, rules: MarketRules) -> str:
    """What is wrong with an auction's terms, or '' if nothing."""
    if c.qty <= 0 or c.qty % rules.lot:
        return f"quantity {c.qty} must be a positive multiple of the lot {rules.lot}"
    if c.min_price <= 0 or c.min_price % rules.tick:
        return f"minimum price {c.min_price} must be a positive multiple of the tick {rules.tick}"
    if c.increment <= 0 or c.increment % rules.tick:
        return f"increment {c.increment} must be a positive multiple of the tick {rules.tick}"
    if c.allocation not in ALLOCATIONS:
        return f"allocation {c.allocation!r} is not one of {ALLOCATIONS}"
    if not 1 <= c.top_percent <= 100:
        return f"top_percent {c.top_percent} is not in 1..100"
    if c.deposit < 0 or c.min_bid_qty <= 0 or c.max_bids_per_bidder <= 0:
        return "deposit must be >= 0, min_bid_qty and max_bids_per_bidder > 0"
    if c.cap_per_bidder is not None and (type(c.cap_per_bidder) is not int or c.cap_per_bidder <= 0):
        return f"cap_per_bidder {c.cap_per_bidder!r} must be a positive int or None"
    if min(c.extension_window, c.extension_length, c.max_extensions) < 0:
        return "extension settings must be >= 0"
    return ""
