"""Answers of orders, listings, block negotiation (大宗协议) and auctions (单向竞价): prices and amounts in CNY,
quantities in the instrument's unit, as decimal strings; times in ISO 8601. Built from the typed results of
exchange/trading (models.py); the fields in the order the answers always had them (a replay's bytes)."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar, Literal

from litestar.openapi.spec import OpenAPIType, Schema
from pydantic import BaseModel, Field

from api.schemas.common import Sparse
from api.schemas.markets import Money, Quantity, Time
from exchange.core.units import cny, iso, quantity
from exchange.trading.models import (
    AuctionStepped,
    AuctionView,
    Deal,
    EventView,
    Journaled,
    Listing,
    Quote,
    ShownOrder,
    Submitted,
)
from exchange.trading.orders import EVENT_FIELDS, SOMETIMES_HIDDEN


def _event(kind: str, fields: tuple[str, ...]) -> Schema:
    return Schema(type=OpenAPIType.OBJECT, title=f"{kind} event",
                  properties={"kind": Schema(const=kind), **{f: Schema() for f in fields}},
                  required=["kind", *(f for f in fields if f not in SOMETIMES_HIDDEN)])


# Passed through as the engine's events are named (exchange.trading.orders._events_view), so that an answer's
# bytes are the stream's; the document lists each kind's fields (matching.events.FIELDS).
Events = list[EventView]
EVENTS = Field(description="What the engine did with the caller's command, in order, each with its `kind`: "
                           "quantities, prices and amounts as decimal strings, times ISO 8601. The other side of a "
                           "trade is not named: `maker_id`/`taker_id` and a bidder appear only when they are the "
                           "caller's (oversight sees them). Empty in a replay.",
               # Litestar sets these keys as attributes of the field's OpenAPI Schema, so the value is one (pydantic
               # types json_schema_extra as plain JSON; its own JSON Schema of answers is not used).
               json_schema_extra={"items": Schema(  # type: ignore[dict-item]
                   one_of=[_event(k, f) for k, f in EVENT_FIELDS.items()])})
REPLAYED = Field(default=None, description="true when the client id was used before: the first command's state "
                                           "now, no events (left out otherwise)")


class OrderOut(BaseModel):
    """An order, listing, take, auction lot or bid, in the caller's units."""

    id: int
    market_id: str
    participant_id: int
    kind: str = Field(description="order, listing, take, auction (a lot) or bid")
    side: Literal["buy", "sell"]
    type: str = Field(description="limit or market (orders); listing, take, auction, bid")
    tif: str = Field(description="day, ioc or fok (orders); auction")
    price: Money | None = Field(description="CNY per unit; null: a market order")
    quantity: Quantity
    open_quantity: Quantity
    filled_quantity: Quantity
    filled_amount: Money
    fees: Money
    status: Literal["open", "filled", "cancelled", "expired", "rejected"]
    reason: str | None = Field(description="why it ended or was refused (a refusal or cancellation code)")
    hold_id: int | None = Field(description="the ledger hold that pre-funds it")
    trading_day: dt.date | None
    client_id: str

    @classmethod
    def of(cls, s: ShownOrder) -> OrderOut:
        assert not s.is_deposit, s.row.id
        o, d = s.row, s.decimals
        return cls(id=o.id, market_id=o.market_id, participant_id=o.participant_id, kind=o.kind, side=o.side,
                   type=o.type, tif=o.tif, price=None if o.price is None else cny(o.price), quantity=quantity(o.qty, d),
                   open_quantity=quantity(o.open_qty, d), filled_quantity=quantity(o.filled_qty, d),
                   filled_amount=cny(o.filled_notional), fees=cny(o.fees), status=o.status,
                   reason=o.reason, hold_id=o.hold_id, trading_day=o.trading_day, client_id=o.client_id)


class DepositOut(BaseModel):
    """An auction registration's deposit: CNY held while the auction runs (0.00: none asked), then returned."""

    id: int
    market_id: str
    participant_id: int
    kind: Literal["deposit"]
    auction_id: int | None
    amount: Money
    status: str = Field(description="held while the auction runs, then returned; rejected: the registration was "
                                    "refused")
    reason: str | None
    hold_id: int | None
    trading_day: dt.date | None
    client_id: str

    @classmethod
    def of(cls, s: ShownOrder) -> DepositOut:
        assert s.is_deposit, s.row.id
        o = s.row
        return cls(id=o.id, market_id=o.market_id, participant_id=o.participant_id, kind="deposit",
                   auction_id=o.parent, amount=cny(o.price or 0), status=s.deposit_status,
                   reason=o.reason, hold_id=o.hold_id, trading_day=o.trading_day, client_id=o.client_id)


def shown(s: ShownOrder) -> OrderOut | DepositOut:
    """A row of `orders` as GET of an order shows it: a deposit as a deposit."""
    return DepositOut.of(s) if s.is_deposit else OrderOut.of(s)


class OrderPlacedOut(Sparse):
    """A new order, listing, take, lot or bid, and the caller's events."""

    _sparse: ClassVar[frozenset[str]] = frozenset({"replayed"})
    order: OrderOut
    events: Events = EVENTS
    replayed: Literal[True] | None = REPLAYED

    @classmethod
    def of(cls, s: Submitted) -> OrderPlacedOut:
        return cls(order=OrderOut.of(s.order), events=s.events, replayed=True if s.replayed else None)


class RegisteredOut(Sparse):
    """A registration for an auction: its deposit, and the caller's events."""

    _sparse: ClassVar[frozenset[str]] = frozenset({"replayed"})
    deposit: DepositOut
    events: Events = EVENTS
    replayed: Literal[True] | None = REPLAYED

    @classmethod
    def of(cls, s: Submitted) -> RegisteredOut:
        return cls(deposit=DepositOut.of(s.order), events=s.events, replayed=True if s.replayed else None)


class JournaledOut(Sparse):
    """A command without an order of its own (a block quote, a response, a counter, a decline, a confirmation, a
    withdrawal): its sequence number in the market's journal -- a new quote's or deal's id -- and the events."""

    _sparse: ClassVar[frozenset[str]] = frozenset({"replayed"})
    seq: int = Field(description="the command's sequence number in the market; a quote's or a deal's id")
    replayed: Literal[True] | None = REPLAYED
    events: Events = EVENTS

    @classmethod
    def of(cls, j: Journaled) -> JournaledOut:
        return cls(seq=j.seq, replayed=True if j.replayed else None, events=j.events)


class ListingOut(BaseModel):
    """An open listing; who listed is not shown (a lister finds its own listings among its orders)."""

    listing_id: int
    side: Literal["buy", "sell"]
    price: Money
    quantity: Quantity
    rank: int = Field(description="1: the best price level of its side; takes may reach ranks 1..best_n")
    enforcement_of: str | None = Field(description="the pledge registration this listing is the enforcement sale "
                                                   "of (public, as the register is)")

    @classmethod
    def of(cls, li: Listing) -> ListingOut:
        return cls(listing_id=li.listing_id, side=li.side, price=cny(li.price),
                   quantity=quantity(li.qty, li.decimals), rank=li.rank, enforcement_of=li.enforcement_of)


class QuoteOut(BaseModel):
    """A live block quote: public, directed or addressed to a group."""

    quote_id: int
    participant_id: int = Field(description="the quoter")
    side: Literal["buy", "sell"]
    price: Money
    quantity: Quantity
    audience: Literal["public", "directed", "group"]
    counterparties: list[int] = Field(description="the participants a directed or group quote is addressed to")

    @classmethod
    def of(cls, q: Quote) -> QuoteOut:
        return cls(quote_id=q.quote_id, participant_id=q.participant_id, side=q.side,
                   price=cny(q.price), quantity=quantity(q.qty, q.decimals), audience=q.audience,
                   counterparties=list(q.counterparties))


class DealOut(BaseModel):
    """A negotiation on a quote (its parties only), open or ended."""

    deal_id: int
    quote_id: int
    responder: int = Field(description="the participant who responded to the quote")
    confirmed: list[int] = Field(description="the parties that stand confirmed on the current terms")
    price: Money
    quantity: Quantity
    status: str = Field(description="`open`, or how it ended: `declined`, `traded`, `end_of_day`, "
                                    "`quote_withdrawn`, `quote_exhausted`, `rules_amended`")

    @classmethod
    def of(cls, d: Deal) -> DealOut:
        return cls(deal_id=d.deal_id, quote_id=d.quote_id, responder=d.responder, confirmed=list(d.confirmed),
                   price=cny(d.price), quantity=quantity(d.qty, d.decimals), status=d.status)


class AllocationOut(BaseModel):
    bid_id: int
    price: Money
    quantity: Quantity
    amount: Money = Field(description="price × quantity × term_years")


class AuctionOut(Sparse):
    """An auction lot, public: terms, phase, counts and, once allocated, the results (bids, not bidders)."""

    _sparse: ClassVar[frozenset[str]] = frozenset({"winners", "allocations"})
    auction_id: int
    phase: str = Field(description="announced, registration, bidding, closed, allocated or cancelled")
    ends_at: Time | None = Field(description="the end of the bidding window, with any extensions")
    extensions: int
    quantity: Quantity
    term_years: int
    min_price: Money
    increment: Money
    deposit: Money
    min_bid_quantity: Quantity
    cap_per_bidder: Quantity | None
    max_bids_per_bidder: int
    allocation: Literal["pay_as_bid", "top_percent", "uniform_price"]
    top_percent: int
    irrevocable: bool
    registered: int
    bidders: int
    bids_placed: int
    highest_price: Money | None
    enforcement_of: str | None = Field(description="the pledge registration this lot is the enforcement sale of")
    winners: int | None = Field(default=None, description="top_percent allocation only: how many bidders win")
    allocations: list[AllocationOut] | None = Field(default=None, description="once allocated: each winning bid")

    @classmethod
    def of(cls, a: AuctionView) -> AuctionOut:
        d = a.decimals
        return cls(
            auction_id=a.auction_id, phase=a.phase, ends_at=None if a.end_ts is None else iso(a.end_ts),
            extensions=a.extensions, quantity=quantity(a.qty, d), term_years=a.term_years, min_price=cny(a.min_price),
            increment=cny(a.increment), deposit=cny(a.deposit), min_bid_quantity=quantity(a.min_bid_qty, d),
            cap_per_bidder=None if a.cap_per_bidder is None else quantity(a.cap_per_bidder, d),
            max_bids_per_bidder=a.max_bids_per_bidder, allocation=a.allocation,
            top_percent=a.top_percent, irrevocable=a.irrevocable, registered=a.registered, bidders=a.bidders,
            bids_placed=a.bids_placed, highest_price=None if a.highest_price is None else cny(a.highest_price),
            enforcement_of=a.enforcement_of, winners=a.winners,
            allocations=None if a.allocations is None else [
                AllocationOut(bid_id=x.bid_id, price=cny(x.price), quantity=quantity(x.qty, d), amount=cny(x.amount))
                for x in a.allocations])


class AuctionSteppedOut(Sparse):
    """An auction's phase change: its sequence number, the events, and the auction after it."""

    _sparse: ClassVar[frozenset[str]] = frozenset({"replayed"})
    seq: int
    replayed: Literal[True] | None = REPLAYED
    events: Events = EVENTS
    auction: AuctionOut

    @classmethod
    def of(cls, s: AuctionStepped) -> AuctionSteppedOut:
        j = s.step
        return cls(seq=j.seq, replayed=True if j.replayed else None, events=j.events, auction=AuctionOut.of(s.auction))

