"""Block negotiation (大宗协议) and one-way auctions (单向竞价)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from litestar import Controller, Litestar, Request, Response, get, post
from litestar.params import Parameter

from api import paging
from api.deps import Id, IdempotencyKey, client_id
from api.paging import LINK, Cursor
from api.schemas.markets import AuctionIn, AuctionStepIn, BlockQuoteIn, StepIn, TermsIn
from api.schemas.trading import (
    AuctionOut,
    AuctionSteppedOut,
    DealOut,
    JournaledOut,
    OrderPlacedOut,
    QuoteOut,
    RegisteredOut,
)
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.trading import auctions, negotiation
from exchange.trading.auction_clock import AuctionClock

Limit = Annotated[int, Parameter(ge=1, le=1000)]


@asynccontextmanager
async def auction_clock(app: Litestar) -> AsyncIterator[None]:
    """Lifespan: the venue's clock that closes and allocates auctions whose bidding window has ended."""
    clock = app.state.auction_clock = AuctionClock(app.state.rt)
    if app.state.rt.settings.auction_auto_end:
        await clock.start()
    try:
        yield
    finally:
        await clock.stop()


class BlockController(Controller):
    path = "/v1/markets/{market_id:str}"
    tags = ["block trades"]

    @post("/block-quotes", operation_id="createBlockQuote",
          summary="A public, directed or group block quote (not in the real-time quote)")
    async def create(self, rt: Runtime, principal: Principal, market_id: str, data: BlockQuoteIn,
                     idempotency_key: IdempotencyKey = None) -> JournaledOut:
        return JournaledOut.of(await negotiation.quote(
            rt, principal, market_id, client_id(idempotency_key, data.client_id), side=data.side, price=data.price,
            quantity=data.quantity, audience=data.audience, counterparties=data.counterparties))

    @get("/block-quotes", operation_id="listBlockQuotes", response_headers=LINK,
         summary="Live quotes you may see, in quote id order (cursor paging)")
    async def listing(self, rt: Runtime, principal: Principal, request: Request, market_id: str, limit: Limit = 200,
                      cursor: Cursor = None) -> Response[list[QuoteOut]]:
        name = f"block-quotes:{market_id}"
        after = paging.decode(cursor, name, paging.is_int) or 0
        rows = [QuoteOut.of(q) for q in negotiation.quotes_view(rt, principal, market_id)
                if q.quote_id > after][:limit + 1]
        return paging.page(request, name, rows, limit, lambda q: q.quote_id)

    @post("/block-quotes/{quote_id:int}/respond", operation_id="respondBlockQuote", status_code=201,
          summary="Open a negotiation on a quote with your terms (you stand confirmed on them)")
    async def respond(self, rt: Runtime, principal: Principal, market_id: str, quote_id: Id, data: TermsIn,
                      idempotency_key: IdempotencyKey = None) -> JournaledOut:
        return JournaledOut.of(await negotiation.respond(
            rt, principal, market_id, quote_id, client_id(idempotency_key, data.client_id), price=data.price,
            quantity=data.quantity))

    @post("/block-quotes/{quote_id:int}/withdraw", operation_id="withdrawBlockQuote", status_code=200)
    async def withdraw(self, rt: Runtime, principal: Principal, market_id: str, quote_id: Id, data: StepIn,
                       idempotency_key: IdempotencyKey = None) -> JournaledOut:
        return JournaledOut.of(await negotiation.withdraw(rt, principal, market_id, quote_id,
                                                          client_id(idempotency_key, data.client_id)))

    @get("/deals/{deal_id:int}", operation_id="getDeal",
         summary="A negotiation, open or ended, with its status (its parties and oversight only)")
    async def deal(self, rt: Runtime, principal: Principal, market_id: str, deal_id: Id) -> DealOut:
        return DealOut.of(await negotiation.deal_view(rt, principal, market_id, deal_id))

    @post("/deals/{deal_id:int}/counter", operation_id="counterDeal", status_code=200,
          summary="Amend the terms; only you stand confirmed")
    async def counter(self, rt: Runtime, principal: Principal, market_id: str, deal_id: Id, data: TermsIn,
                      idempotency_key: IdempotencyKey = None) -> JournaledOut:
        return JournaledOut.of(await negotiation.counter(
            rt, principal, market_id, deal_id, client_id(idempotency_key, data.client_id), price=data.price,
            quantity=data.quantity))

    @post("/deals/{deal_id:int}/confirm", operation_id="confirmDeal", status_code=200,
          summary="Confirm the current terms: both sides are funded, then it trades and settles")
    async def confirm(self, rt: Runtime, principal: Principal, market_id: str, deal_id: Id, data: StepIn,
                      idempotency_key: IdempotencyKey = None) -> JournaledOut:
        return JournaledOut.of(await negotiation.confirm(rt, principal, market_id, deal_id,
                                                         client_id(idempotency_key, data.client_id)))

    @post("/deals/{deal_id:int}/decline", operation_id="declineDeal", status_code=200)
    async def decline(self, rt: Runtime, principal: Principal, market_id: str, deal_id: Id, data: StepIn,
                      idempotency_key: IdempotencyKey = None) -> JournaledOut:
        return JournaledOut.of(await negotiation.decline(rt, principal, market_id, deal_id,
                                                         client_id(idempotency_key, data.client_id)))


class AuctionController(Controller):
    """One-way auctions (单向竞价). A refused lot, registration or bid is a 409 problem with the engine's
    code (`bid_not_above_standing`, `too_many_bids`, `registration_closed`, ...; malformed ones 422),
    and its retry under the same Idempotency-Key gets the same problem again."""

    path = "/v1/markets/{market_id:str}/auctions"
    tags = ["auctions"]

    @post("/", operation_id="announceAuction", summary="Announce a lot (its units are held at once)",
          description="The lot's quantity must be on the market's lot grid and within its minimum and maximum; "
                      "its own min_bid_quantity and cap_per_bidder then govern bids. Prices are per unit and "
                      "year of the instrument's term (emission rights: CNY per t·yr); every amount is price × "
                      "quantity × term_years.")
    async def announce(self, rt: Runtime, principal: Principal, market_id: str, data: AuctionIn,
                       idempotency_key: IdempotencyKey = None) -> OrderPlacedOut:
        return OrderPlacedOut.of(await auctions.announce_lot(
            rt, principal, market_id, client_id(idempotency_key, data.client_id), quantity=data.quantity,
            min_price=data.min_price, increment=data.increment, deposit=data.deposit,
            min_bid_quantity=data.min_bid_quantity, cap_per_bidder=data.cap_per_bidder,
            max_bids_per_bidder=data.max_bids_per_bidder, allocation=data.allocation, top_percent=data.top_percent,
            extension_window_s=data.extension_window_seconds, extension_length_s=data.extension_length_seconds,
            max_extensions=data.max_extensions, irrevocable=data.irrevocable))

    @get("/{auction_id:int}", operation_id="getAuction",
         summary="Phase, terms, the highest standing price and (once allocated) the results")
    async def get_one(self, rt: Runtime, market_id: str, auction_id: Id) -> AuctionOut:
        return AuctionOut.of(await auctions.view(rt, market_id, auction_id))

    @post("/{auction_id:int}/step", operation_id="stepAuction", status_code=200,
          summary="Seller or operator: open registration, open bidding, close, allocate, cancel",
          description="Allocation ranks bidders by their standing bid's price, then by the time of that bid. "
                      "pay_as_bid: each winner pays its own price; top_percent: the best top_percent % of the "
                      "bidders who bid win (rounded half up, at least one), each at its own final price; "
                      "uniform_price: all pay the lowest winning price. The marginal winner may be filled in "
                      "part; unsold units, losing bids' cash and every deposit are released.")
    async def step(self, rt: Runtime, principal: Principal, market_id: str, auction_id: Id, data: AuctionStepIn,
                   idempotency_key: IdempotencyKey = None) -> AuctionSteppedOut:
        return AuctionSteppedOut.of(await auctions.step(
            rt, principal, market_id, auction_id, client_id(idempotency_key, data.client_id), data.action,
            data.duration_seconds, data.reason))

    @post("/{auction_id:int}/register", operation_id="registerForAuction",
          summary="Register as a bidder; the deposit, if the auction asks one, is held")
    async def register(self, rt: Runtime, principal: Principal, market_id: str, auction_id: Id, data: StepIn,
                       idempotency_key: IdempotencyKey = None) -> RegisteredOut:
        return RegisteredOut.of(await auctions.register(rt, principal, market_id, auction_id,
                                                        client_id(idempotency_key, data.client_id)))

    @post("/{auction_id:int}/bids", operation_id="placeBid",
          summary="Bid or raise: your one standing bid; its price × quantity × term years (+ fee) is held",
          description="Your first bid holds its cash. A later bid is a raise: it replaces your standing bid, "
                      "must be at least one increment above it, may not ask for less quantity, and counts "
                      "towards max_bids_per_bidder (the first bid included). Only the difference to the new "
                      "bid's cash is held, and the two holds become one: you never have more held than your "
                      "newest bid. A raise that crossed another of your bids in flight is refused with "
                      "`standing_bid_changed`; bid again.")
    async def bid(self, rt: Runtime, principal: Principal, market_id: str, auction_id: Id, data: TermsIn,
                  idempotency_key: IdempotencyKey = None) -> OrderPlacedOut:
        return OrderPlacedOut.of(await auctions.bid(rt, principal, market_id, auction_id,
                                                    client_id(idempotency_key, data.client_id), price=data.price,
                                                    quantity=data.quantity))

    @post("/{auction_id:int}/bids/{bid_id:int}/withdraw", operation_id="withdrawBid", status_code=200,
          summary="Withdraw your standing bid (only in auctions whose bids are revocable); it still counts")
    async def withdraw(self, rt: Runtime, principal: Principal, market_id: str, auction_id: Id, bid_id: Id,
                       data: StepIn, idempotency_key: IdempotencyKey = None) -> JournaledOut:
        return JournaledOut.of(await auctions.withdraw_bid(rt, principal, market_id, auction_id, bid_id,
                                                           client_id(idempotency_key, data.client_id)))
