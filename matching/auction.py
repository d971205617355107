"""One-way auctions (单向竞价), e.g. a government emission-right reserve selling a lot.

Each auction is a state machine driven by commands, with time taken only from the `ts` the sequencer
stamps on them:

    announced --OpenRegistration--> registration --OpenBidding(end_ts)--> bidding
    bidding --CloseAuction (ts >= end)--> closed --Allocate--> allocated
    any phase before allocated --CancelAuction--> cancelled

Registration requires the announced deposit (none if it is 0). In the bidding window each bidder has
one **standing bid**: its first bid, then each raise replaces it (宁夏 2025 takes "每个受让方的最高报价和
购买数量"; 武义 2021 ranks "最终出价"). A bid must be at least the minimum price and on its increment
grid; its quantity on the market's lot grid, at least the lot's own minimum, at most the lot and the
per-bidder cap. A raise must be at least one increment above the bidder's standing price and may not
ask for less quantity (bids are commitments: a raise is not a partial withdrawal). A bidder may place
up to `max_bids_per_bidder` bids in all, its first bid included (武义: 10 次报价机会). A bid in the last
`extension_window` ticks before the end moves the end to bid time + `extension_length`, up to
`max_extensions` rounds (限时竞价 rounds). Bids are irrevocable unless the auction says otherwise.

Allocation ranks bidders by the price of their standing bid, best first, then by the time of that
bid (bid ids increase with arrival), and allocates per bidder:
  * pay_as_bid: fill the ranking down, each winner at its own final price;
  * top_percent: only the best `top_percent` % of the bidders who bid win, the number rounded half
    up and at least one (武义 2021: "取出价人的前70%(四舍五入)为竞得人 ... 按竞得人最终报价为成交价"),
    each at its own final price, down the ranking until the lot is sold;
  * uniform_price: the pay-as-bid winners all pay the lowest winning price (one clearing price).
The marginal winner may be filled in part; whatever is not allocated stays with the seller.
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
    BID_REPLACED,
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
    __slots__ = ("allocations", "bids", "end_ts", "extensions", "phase", "placed", "registered", "terms")

    def __init__(self, terms: Announce) -> None:
        self.terms = terms
        self.phase = ANNOUNCED
        self.end_ts: int | None = None
        self.extensions = 0
        self.registered: dict[Any, int] = {}  # bidder -> deposit, in registration order
        # Standing bids, one per bidder, in the order of their arrival (= id order): a raise removes the
        # bid it replaces and is appended as the newest.
        self.bids: dict[int, BidRecord] = {}
        self.placed: dict[Any, int] = {}  # bidder -> bids placed (first bid and raises)
        self.allocations: list[tuple[int, Any, int, int]] = []  # (bid id, bidder, price, qty)

    def standing(self, bidder: Any) -> tuple[int, BidRecord] | None:
        """The bidder's standing bid as (bid id, (bidder, price, qty)), or None."""
        return next(((bid_id, b) for bid_id, b in self.bids.items() if b[0] == bidder), None)

    def ranked(self) -> list[tuple[int, BidRecord]]:
        """Standing bids, best price first, then earliest first."""
        return sorted(self.bids.items(), key=lambda kv: (-kv[1][1], kv[0]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "terms": asdict(self.terms),
            "phase": self.phase,
            "end_ts": self.end_ts,
            "extensions": self.extensions,
            "registered": [[bidder, deposit] for bidder, deposit in self.registered.items()],
            "bids": [[bid_id, *b] for bid_id, b in self.bids.items()],
            "placed": [[bidder, n] for bidder, n in self.placed.items()],
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
        auction.placed = {bidder: n for bidder, n in data["placed"]}
        auction.allocations = [(a[0], a[1], a[2], a[3]) for a in data["allocations"]]
        return auction


def winners(bidders: int, top_percent: int) -> int:
    """How many bidders a top-X % auction lets win: X % of those who bid, rounded half up, at least one
    if anyone bid (武义 2021: 前70%(四舍五入); 8 bidders at 60 % -> 4.8 -> 5)."""
    if bidders <= 0:
        return 0
    return max(1, (2 * bidders * top_percent + 100) // 200)


def allocate(
    terms: Announce, ranked: list[tuple[int, BidRecord]]
) -> tuple[list[tuple[int, Any, int, int]], int]:
    """Pure allocation of standing bids (one per bidder) ranked best first:
    ([(bid id, bidder, price paid, qty)], unsold qty)."""
    assert len({b[0] for _, b in ranked}) == len(ranked), "one standing bid per bidder"
    if terms.allocation == TOP_PERCENT:
        ranked = ranked[: winners(len(ranked), terms.top_percent)]
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
        problem = _terms_problem(c, self.rules, self._band)
        if problem is not None:
            return [(REJECTED, aid, *problem)]
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

    def refusal(self, ts: int, c: Announce | Register | Bid) -> Event | None:
        """How the auction's own rules would refuse `c` at `ts` now, or None; changes nothing.

        The application asks before it funds a registration or a bid, so that a refusal names the
        auction's rule that was broken (the seller registering, a bid above the lot) rather than the
        cash the bidder lacks; the command is checked again, the same way, when it is applied."""
        if isinstance(c, Announce):
            problem = _terms_problem(c, self.rules, self._band)
            return None if problem is None else (REJECTED, c.auction_id, *problem)
        a = self._auctions.get(c.auction_id)
        if a is None:
            return (REJECTED, c.auction_id, R.UNKNOWN_AUCTION, f"auction {c.auction_id} does not exist")
        if isinstance(c, Register):
            return self._register_reject(c, a)
        return self._bid_reject(ts, c, a)

    def _register_reject(self, c: Register, a: _Auction) -> Event | None:
        aid = c.auction_id
        reject = self._halted_reject(aid)
        if reject is not None:
            return reject
        if a.phase != REGISTRATION:
            return (REJECTED, aid, R.REGISTRATION_CLOSED, f"auction {aid} is {a.phase}")
        if c.bidder == a.terms.seller:
            return (REJECTED, aid, R.SELLER_CANNOT_BID, "the seller cannot register as a bidder")
        if c.bidder in a.registered:
            return (REJECTED, aid, R.ALREADY_REGISTERED, "the bidder is already registered")
        if c.deposit < a.terms.deposit:
            return (REJECTED, aid, R.DEPOSIT_INSUFFICIENT,
                    f"deposit {R.price(c.deposit)} is below {R.price(a.terms.deposit)}")
        return None

    def _register(self, seq: int, ts: int, c: Register, a: _Auction) -> list[Event]:
        reject = self._register_reject(c, a)
        if reject is not None:
            return [reject]
        a.registered[c.bidder] = c.deposit
        return [(REGISTERED, c.auction_id, c.bidder, c.deposit)]

    def _open_bidding(self, seq: int, ts: int, c: OpenBidding, a: _Auction) -> list[Event]:
        reject = self._phase_reject(c.auction_id, a, REGISTRATION)
        if reject is not None:
            return [reject]
        if c.end_ts <= ts:
            return [
                (REJECTED, c.auction_id, R.INVALID_AUCTION, f"the window end {R.at(c.end_ts)} is not after {R.at(ts)}")
            ]
        a.phase = BIDDING
        a.end_ts = c.end_ts
        return [(AUCTION_PHASE, c.auction_id, BIDDING, c.end_ts)]

    def _bid_reject(self, ts: int, c: Bid, a: _Auction, *, applying: bool = False) -> Event | None:
        aid, bid_id, t = c.auction_id, c.bid_id, a.terms
        reject = self._halted_reject(bid_id)
        if reject is not None:
            return reject
        if a.phase != BIDDING or a.end_ts is None or ts >= a.end_ts:
            return (REJECTED, bid_id, R.AUCTION_NOT_OPEN, f"auction {aid} is not taking bids at {R.at(ts)}")
        if c.bidder not in a.registered:
            return (REJECTED, bid_id, R.BIDDER_NOT_REGISTERED, "the bidder did not register for this auction")
        if applying:  # the id is the sequencer's, given when the command is journaled
            reject = self._id_reject(bid_id, bid_id in a.bids)
            if reject is not None:
                return reject
        problem = _bid_problem(c, t, self.rules.lot)
        if problem is not None:
            return (REJECTED, bid_id, *problem)
        standing = a.standing(c.bidder)
        if (standing[0] if standing else None) != c.replaces:
            seen = "none" if c.replaces is None else f"bid {c.replaces}"
            now = "none" if standing is None else f"bid {standing[0]}"
            return (REJECTED, bid_id, R.STANDING_BID_CHANGED, f"the standing bid is {now}, not {seen}")
        if standing is not None:
            _, (_, old_price, old_qty) = standing
            if c.price < old_price + t.increment:
                return (REJECTED, bid_id, R.BID_NOT_ABOVE_STANDING,
                        f"bid {R.price(c.price)} is not at least {R.price(old_price + t.increment)}: the standing bid "
                        f"{R.price(old_price)} plus the increment {R.price(t.increment)}")
            if c.qty < old_qty:
                return (REJECTED, bid_id, R.RAISE_LOWERS_QUANTITY,
                        f"quantity {R.qty(c.qty)} is below the standing bid's {R.qty(old_qty)}")
        placed = a.placed.get(c.bidder, 0)
        if placed >= t.max_bids_per_bidder:
            return (REJECTED, bid_id, R.TOO_MANY_BIDS, f"the bidder has placed {placed} bids, the most allowed")
        return None

    def _bid(self, seq: int, ts: int, c: Bid, a: _Auction) -> list[Event]:
        aid, bid_id, t = c.auction_id, c.bid_id, a.terms
        reject = self._bid_reject(ts, c, a, applying=True)
        if reject is not None:
            return [reject]
        standing = a.standing(c.bidder)
        placed = a.placed.get(c.bidder, 0)
        self._last_id = bid_id
        a.placed[c.bidder] = placed + 1
        events: list[Event] = [(BID_ACCEPTED, aid, bid_id, c.bidder, c.price, c.qty)]
        if standing is not None:
            del a.bids[standing[0]]
            events.append((BID_REPLACED, aid, standing[0], c.bidder, bid_id))
        a.bids[bid_id] = (c.bidder, c.price, c.qty)
        assert a.end_ts is not None  # set when bidding opened, and bids are taken while bidding only
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
            return [(REJECTED, bid_id, R.AUCTION_NOT_OPEN, f"auction {aid} is not taking bids at {R.at(ts)}")]
        del a.bids[bid_id]
        return [(BID_WITHDRAWN, aid, bid_id, c.bidder, bid[2])]

    def _close(self, seq: int, ts: int, c: CloseAuction, a: _Auction) -> list[Event]:
        reject = self._phase_reject(c.auction_id, a, BIDDING)
        if reject is not None:
            return [reject]
        assert a.end_ts is not None  # set when bidding opened
        if ts < a.end_ts:
            return [(REJECTED, c.auction_id, R.AUCTION_STILL_OPEN, f"bidding runs until {R.at(a.end_ts)}")]
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

    def due(self, ts: int) -> list[tuple[int, str]]:
        """What the venue must do at `ts` without anyone asking: (auction id, phase) of each auction whose
        bidding window has ended (to close) or that is closed (to allocate), in id order."""
        return [(aid, a.phase) for aid, a in self._auctions.items()
                if a.phase == CLOSED or (a.phase == BIDDING and a.end_ts is not None and ts >= a.end_ts)]

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


def _bid_problem(c: Bid, t: Announce, lot: int) -> tuple[str, str] | None:
    """What is wrong with a bid's price and quantity against the lot's terms, as (code, message)."""
    if c.price < t.min_price:
        return R.BID_BELOW_MINIMUM, f"bid {R.price(c.price)} is below the minimum {R.price(t.min_price)}"
    if (c.price - t.min_price) % t.increment:
        return R.BID_INCREMENT, (f"bid {R.price(c.price)} is not {R.price(t.min_price)} plus a multiple of "
                                 f"{R.price(t.increment)}")
    # The lot's own terms govern bids; the market's minimum and maximum bound the lot (see Announce).
    if c.qty <= 0:
        return R.INVALID_QUANTITY, f"quantity {R.qty(c.qty)} is not positive"
    if c.qty % lot:
        return R.OFF_LOT, f"quantity {R.qty(c.qty)} is not a multiple of the lot {R.qty(lot)}"
    if c.qty < t.min_bid_qty:
        return R.QUANTITY_BELOW_MINIMUM, (f"bid quantity {R.qty(c.qty)} is below the lot's minimum bid quantity "
                                          f"{R.qty(t.min_bid_qty)}")
    if c.qty > t.qty:
        return R.QUANTITY_EXCEEDS_REMAINING, f"bid quantity {R.qty(c.qty)} exceeds the lot of {R.qty(t.qty)}"
    if t.cap_per_bidder is not None and c.qty > t.cap_per_bidder:
        return R.BID_CAP_EXCEEDED, (f"bid quantity {R.qty(c.qty)} exceeds the cap per bidder "
                                    f"{R.qty(t.cap_per_bidder)}")
    return None


def _terms_problem(c: Announce, rules: MarketRules, band: tuple[int, int]) -> tuple[str, str] | None:
    """What is wrong with an auction's terms, as (code, message), or None."""
    bad = rules.check(None, c.qty, band)  # the lot is what the market's size rules bound
    if bad is not None:
        return bad
    # Off the tick is the same refusal for a lot's prices as for a bid's (off_tick), whoever sends it.
    for name, value in (("minimum price", c.min_price), ("increment", c.increment)):
        if value <= 0:
            return R.INVALID_PRICE, f"the {name} must be positive"
        if value % rules.tick:
            return R.OFF_TICK, f"the {name} {R.price(value)} is not a multiple of the tick {R.price(rules.tick)}"
    if c.allocation not in ALLOCATIONS:
        return R.INVALID_AUCTION, f"allocation {c.allocation!r} is not one of {ALLOCATIONS}"
    if not 1 <= c.top_percent <= 100:
        return R.INVALID_AUCTION, f"top_percent {c.top_percent} is not in 1..100"
    if c.deposit < 0 or c.max_bids_per_bidder <= 0:
        return R.INVALID_AUCTION, "deposit must be >= 0 and max_bids_per_bidder > 0"
    if not 0 < c.min_bid_qty <= c.qty or c.min_bid_qty % rules.lot:
        return R.INVALID_AUCTION, (f"the minimum bid quantity {R.qty(c.min_bid_qty)} must be a multiple of the lot "
                                   f"{R.qty(rules.lot)} between 1 lot and the quantity {R.qty(c.qty)}")
    if c.cap_per_bidder is not None and (type(c.cap_per_bidder) is not int or c.cap_per_bidder < c.min_bid_qty):
        cap = R.qty(c.cap_per_bidder) if type(c.cap_per_bidder) is int else repr(c.cap_per_bidder)
        return R.INVALID_AUCTION, f"cap_per_bidder {cap} is below the minimum bid quantity {R.qty(c.min_bid_qty)}"
    if min(c.extension_window, c.extension_length, c.max_extensions) < 0:
        return R.INVALID_AUCTION, "extension settings must be >= 0"
    return None
