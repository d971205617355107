"""Markets: definitions and sessions (operators), orders and listings (traders), market data (public)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, WebSocket, get, post, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from api import paging
from api.controllers.security import PROPOSED, propose_or_run
from api.deps import Id, IdempotencyKey, client_id
from api.encoding import Answer, render
from api.paging import LINK, Cursor
from api.schemas.markets import (
    AmendedOut,
    AmendmentIn,
    CandleOut,
    ClosePriceOut,
    DailyStatOut,
    DepthOut,
    HaltedOut,
    HaltIn,
    ListingIn,
    MarketEventOut,
    MarketIn,
    MarketOut,
    OrderIn,
    ReduceIn,
    SessionIn,
    SessionOut,
    TakeIn,
    TradeOut,
)
from api.schemas.trading import DepositOut, ListingOut, OrderOut, OrderPlacedOut, shown
from api.security import replays
from api.streams import StreamSlots
from exchange.core.errors import NotFound
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.units import micros
from exchange.trading import amendments, marketdata, markets, orders, running, sessions

Limit = Annotated[int, Parameter(ge=1, le=1000)]
After = Annotated[int, Parameter(ge=0, le=2**53 - 1)]
Levels = Annotated[str, Parameter(pattern=r"^(all|[1-9][0-9]{0,3})$",
                                  description="How many price levels per side: 1-9999, or `all` (the whole book)")]


def _result(schema: type[Any], description: str) -> ResponseSpec:
    """The 201 of a maker-checker operation, when maker-checker is off (its 202 is PROPOSED)."""
    return ResponseSpec(data_container=schema, generate_examples=False,
                        description=f"{description} (maker-checker off)")


class MarketController(Controller):
    path = "/v1/markets"
    tags = ["markets"]

    @post("/", operation_id="defineMarket", responses={**PROPOSED, 201: _result(MarketOut, "The market, defined")},
          summary="Define a market for an instrument and mode (operator; maker-checker)")
    async def define(self, rt: Runtime, principal: Principal, data: MarketIn,
                     idempotency_key: IdempotencyKey = None) -> MarketOut | Answer:
        cid = client_id(idempotency_key, data.client_id)
        settings = data.settings.model_dump(mode="json", exclude_none=True)
        answer = await propose_or_run(  # maker-checker: 202 and a pending action, unless switched off
            rt, principal, cid, "defineMarket", {"instrument": data.instrument, "mode": data.mode,
                                                 "settings": settings},
            lambda: markets.define(rt, principal.actor, cid, instrument=data.instrument, mode=data.mode,
                                   settings=settings))
        return answer if isinstance(answer, Answer) else MarketOut.of(answer)

    @get("/", operation_id="listMarkets", summary="All markets and their rules, in id order (cursor paging)",
         response_headers=LINK)
    async def listing(self, rt: Runtime, request: Request, limit: Limit = 200,
                      cursor: Cursor = None) -> Response[list[MarketOut]]:
        after = paging.decode(cursor, "markets", lambda k: isinstance(k, str))
        rows = [MarketOut.of(m) for m in await markets.listing(rt) if after is None or m.id > after]
        return paging.page(request, "markets", rows, limit, lambda m: m.id)

    @get("/{market_id:str}", operation_id="getMarket",
         summary="One market: the rules in force, each scheduled amendment with the rules it brings from its "
                 "day, the session (and any override), reference price, and whether it stopped taking writes")
    async def get_one(self, rt: Runtime, market_id: str) -> MarketOut:
        return MarketOut.of(await markets.get(rt, market_id))

    @post("/{market_id:str}/amendments", operation_id="amendMarket",
          responses={**PROPOSED, 201: _result(AmendedOut, "The amendment, scheduled, and the market")},
          summary="Amend the market's rules from a stated trading day (operator; maker-checker)",
          description="Band, fees, sizes, hours, holidays, tick, lot, best N, STP, T+1 and in-close may change; "
                      "they apply from the start of `effective_from` (a trading day after today and the market's "
                      "current one). Resting orders off the new tick or lot are cancelled then and their holds "
                      "released; auction lots keep their announced terms.")
    async def amend(self, rt: Runtime, principal: Principal, market_id: str, data: AmendmentIn,
                    idempotency_key: IdempotencyKey = None) -> AmendedOut | Answer:
        cid = client_id(idempotency_key, data.client_id)
        payload = {"market_id": market_id, "effective_from": data.effective_from.isoformat(),
                   "settings": data.settings.model_dump(mode="json", exclude_none=True)}
        answer = await propose_or_run(rt, principal, cid, "amendMarket", payload,
                                      lambda: amendments.amend(rt, principal.actor, cid, payload))
        return answer if isinstance(answer, Answer) else AmendedOut.of(answer)

    @get("/{market_id:str}/events", operation_id="listMarketEvents", response_headers=LINK,
         summary="The market's events, oldest first: opens, pauses, closes (scheduled or by whom, overrides "
                 "with reason and end), amendments scheduled and taking effect (cursor paging)")
    async def events(self, rt: Runtime, request: Request, market_id: str, limit: Limit = 200,
                     cursor: Cursor = None) -> Response[list[MarketEventOut]]:
        running.market(rt, market_id)  # 404 for a market that does not run here
        after = paging.decode(cursor, f"events:{market_id}", paging.is_int) or 0
        rows = [MarketEventOut.of(e) for e in await sessions.events(rt, market_id, after, limit + 1)]
        return paging.page(request, f"events:{market_id}", rows, limit, lambda e: e.id)

    @post("/{market_id:str}/session", operation_id="setSession", status_code=200,
          summary="Open, pause (lunch break) or close the trading session (operator; also scheduled)",
          description="The calendar opens, pauses and closes the market by its hours. An operator may pause or "
                      "close at any time; an open outside the hours is refused with 409 `outside_hours` unless "
                      "it says `override: true` with a `reason`; the override lasts until the next scheduled "
                      "transition of that day or the end of the day. Recorded in the market's events.")
    async def session(self, rt: Runtime, principal: Principal, market_id: str, data: SessionIn) -> SessionOut:
        return SessionOut.of(await sessions.session_action(rt, market_id, data.action, actor=principal.actor,
                                                           override=data.override, reason=data.reason))

    @post("/{market_id:str}/halt", operation_id="haltMarket", status_code=200, summary="Halt trading (operator)")
    async def halt(self, rt: Runtime, market_id: str, data: HaltIn) -> HaltedOut:
        return HaltedOut.of(await sessions.halt(rt, market_id, data.reason or ""))

    @post("/{market_id:str}/resume", operation_id="resumeMarket", status_code=200, summary="Resume (operator)")
    async def resume(self, rt: Runtime, market_id: str) -> HaltedOut:
        return HaltedOut.of(await sessions.halt(rt, market_id, "", resume=True))

    # --- orders (continuous book) ------------------------------------------------------------

    @post("/{market_id:str}/orders", operation_id="placeOrder",
          summary="Place an order (limit, IOC, FOK, market-to-limit); pre-funded by a ledger hold")
    async def place(self, rt: Runtime, principal: Principal, market_id: str, data: OrderIn,
                    request: Request, idempotency_key: IdempotencyKey = None) -> OrderPlacedOut:
        cid = client_id(idempotency_key, data.client_id)
        # A keyed request's answer is kept with the order, in its projection's transaction (api/security/replays.py
        # KEPT_BY_HANDLER): rendered there as it would be here, and answered as those very bytes.
        slot = replays.answer_slot(request.scope)
        keep = None if slot is None else orders.KeptAnswer(
            *slot, render=lambda placed: render(request, OrderPlacedOut.of(placed)))
        placed = await orders.place_order(rt, principal, market_id, cid, side=data.side, type_=data.type,
                                          tif=data.tif, price=data.price, quantity=data.quantity, stp=data.stp,
                                          keep=keep)
        if keep is not None and keep.answer is not None:
            replays.answer_kept(request.scope)
            # Litestar sends a returned Response as it is; the document keeps naming the schema of these bytes.
            return Answer(keep.answer.body, status_code=keep.answer.status,  # type: ignore[return-value]
                          media_type=keep.answer.media_type)
        return OrderPlacedOut.of(placed)

    @get("/{market_id:str}/orders", operation_id="listOrders", response_headers=LINK,
         summary="Your orders (operators and auditors: all), oldest first (cursor paging)")
    async def list_orders(self, rt: Runtime, principal: Principal, request: Request, market_id: str,
                          status: Literal["open", "filled", "cancelled", "expired", "rejected"] | None = None,
                          limit: Limit = 500, cursor: Cursor = None) -> Response[list[OrderOut | DepositOut]]:
        after = paging.decode(cursor, f"orders:{market_id}", paging.is_int)
        rows = [shown(o) for o in await orders.list_orders(rt, principal, market_id, status, after, limit)]
        return paging.page(request, f"orders:{market_id}", rows, limit, lambda o: o.id)

    @get("/{market_id:str}/orders/{order_id:int}", operation_id="getOrder", summary="One order")
    async def get_order(self, rt: Runtime, principal: Principal, market_id: str,
                        order_id: Id) -> OrderOut | DepositOut:
        return shown(await orders.find(rt, principal, market_id, order_id))

    @post("/{market_id:str}/orders/{order_id:int}/cancel", operation_id="cancelOrder", status_code=200,
          summary="Cancel an order or listing; its hold is released. Idempotent.")
    async def cancel(self, rt: Runtime, principal: Principal, market_id: str,
                     order_id: Id) -> OrderOut | DepositOut:
        return shown(await orders.cancel(rt, principal, market_id, order_id))

    @post("/{market_id:str}/orders/{order_id:int}/reduce", operation_id="reduceOrder", status_code=200,
          summary="Lower the open quantity; the order keeps its priority")
    async def reduce(self, rt: Runtime, principal: Principal, market_id: str, order_id: Id,
                     data: ReduceIn) -> OrderOut | DepositOut:
        return shown(await orders.reduce(rt, principal, market_id, order_id, data.quantity))

    # --- listings (挂牌协议) --------------------------------------------------------------------

    @post("/{market_id:str}/listings", operation_id="postListing", summary="List a quantity at a price")
    async def post_listing(self, rt: Runtime, principal: Principal, market_id: str, data: ListingIn,
                           idempotency_key: IdempotencyKey = None) -> OrderPlacedOut:
        cid = client_id(idempotency_key, data.client_id)
        return OrderPlacedOut.of(await orders.new_listing(rt, principal, market_id, cid, side=data.side,
                                                          price=data.price, quantity=data.quantity))

    @get("/{market_id:str}/listings", operation_id="listListings", response_headers=LINK,
         summary="Open listings with their rank: buys then sells, best price first, then oldest (cursor paging)")
    async def listings(self, rt: Runtime, request: Request, market_id: str,
                       side: Literal["buy", "sell"] | None = None, limit: Limit = 200,
                       cursor: Cursor = None) -> Response[list[ListingOut]]:
        found = orders.listings(rt, market_id, side)  # unknown market 404, wrong mode 422: before the cursor
        name = f"listings:{market_id}"
        after = paging.decode(cursor, name, lambda k: isinstance(k, list) and len(k) == 3 and k[0] in ("buy", "sell")
                              and all(type(x) is int for x in k[1:]))
        live = [li for li in found if after is None or li.place > after][:limit + 1]
        places = {li.listing_id: li.place for li in live}
        return paging.page(request, name, [ListingOut.of(li) for li in live], limit,
                           lambda r: places[r.listing_id])

    @post("/{market_id:str}/listings/{listing_id:int}/take", operation_id="takeListing",
          summary="Take a listing within the best N levels, at its price")
    async def take(self, rt: Runtime, principal: Principal, market_id: str, listing_id: Id, data: TakeIn,
                   idempotency_key: IdempotencyKey = None) -> OrderPlacedOut:
        cid = client_id(idempotency_key, data.client_id)
        return OrderPlacedOut.of(await orders.take_listing(rt, principal, market_id, listing_id, cid,
                                                           quantity=data.quantity))

    # --- market data -----------------------------------------------------------------------------

    @get("/{market_id:str}/depth", operation_id="getDepth",
         summary="Depth by price level with the market's sequence number: best 5, any number, or the whole book")
    async def depth(self, rt: Runtime, market_id: str, levels: Levels = "5") -> DepthOut:
        return DepthOut.of(marketdata.depth(rt, market_id, marketdata.ALL_LEVELS if levels == "all" else int(levels)))

    @get("/{market_id:str}/trades", operation_id="listTrades", response_headers=LINK,
         summary="Trades in trade id order, after a trade id (cursor paging)")
    async def trades(self, rt: Runtime, request: Request, market_id: str, after: After = 0, limit: Limit = 200,
                     cursor: Cursor = None) -> Response[list[TradeOut]]:
        name = f"trades:{market_id}"
        after = max(after, paging.decode(cursor, name, paging.is_int) or 0)
        found = await marketdata.trades(rt, market_id, after, limit)
        rows = [TradeOut.of(t, found.decimals) for t in found.items]
        return paging.page(request, name, rows, limit, lambda t: t.trade_id)

    @get("/{market_id:str}/ohlc", operation_id="getOhlc", response_headers=LINK,
         summary="OHLC candles, newest first (cursor paging)")
    async def ohlc(self, rt: Runtime, request: Request, market_id: str,
                   interval: Literal["1m", "5m", "1h", "1d"] = "1m", limit: Limit = 200,
                   cursor: Cursor = None) -> Response[list[CandleOut]]:
        name = f"ohlc:{market_id}:{interval}"
        found = await marketdata.ohlc(rt, market_id, interval, limit, paging.decode(cursor, name, paging.is_int))
        rows = [CandleOut.of(c, found.decimals) for c in found.items]
        return paging.page(request, name, rows, limit, lambda c: micros(datetime.fromisoformat(c.start_ts)))


class InstrumentStatsController(Controller):
    path = "/v1/instruments/{code:str}"
    tags = ["markets"]

    @get("/daily", operation_id="getDailyStats", response_headers=LINK,
         summary="Daily statistics per mode and the official close, newest day first (cursor paging)")
    async def daily(self, rt: Runtime, request: Request, code: str, limit: Limit = 30,
                    cursor: Cursor = None) -> Response[list[DailyStatOut]]:
        name = f"daily:{code}"
        before = paging.decode(cursor, name, lambda k: isinstance(k, list) and len(k) == 2 and paging.is_day(k[0])
                               and isinstance(k[1], str))
        found = await marketdata.daily(rt, code, limit, None if before is None else (before[0], before[1]))
        rows = [DailyStatOut.of(r, found.decimals) for r in found.items]
        return paging.page(request, name, rows, limit, lambda r: [str(r.trading_day), r.mode])

    @get("/closes", operation_id="listClosePrices", response_headers=LINK,
         summary="Close prices (VWAP of in-close trades), newest first (cursor paging)")
    async def closes(self, rt: Runtime, request: Request, code: str, limit: Limit = 30,
                     cursor: Cursor = None) -> Response[list[ClosePriceOut]]:
        name = f"closes:{code}"
        found = await marketdata.closes(rt, code, limit, paging.decode(cursor, name, paging.is_day))
        rows = [ClosePriceOut.of(r, found.decimals) for r in found.items]
        return paging.page(request, name, rows, limit, lambda r: str(r.trading_day))


@websocket("/v1/markets/{market_id:str}/stream", operation_id="streamMarket")
async def stream(socket: WebSocket, market_id: str) -> None:
    """Trades and best-5 depth as they happen, each with the market's sequence number (gaps are visible)."""
    rt: Runtime = socket.app.state.rt
    slots = socket.app.state.get("stream_slots")
    if slots is None:
        slots = socket.app.state["stream_slots"] = StreamSlots(rt.settings.streams_per_address,
                                                               rt.settings.streams_total)
    address = socket.client.host if socket.client else "-"
    await socket.accept()
    if not slots.take(address):  # 1013: try again later (RFC 6455 7.4.1)
        await socket.send_json({"type": "error", "code": "rate_limited", "detail": "too many open streams from "
                                f"this address (at most {slots.per_address}) or in all; close one first"})
        await socket.close(code=1013)
        return
    try:
        await _stream(socket, rt, market_id)
    finally:
        slots.give(address)


async def _stream(socket: WebSocket, rt: Runtime, market_id: str) -> None:
    try:
        seq = running.market(rt, market_id)
    except NotFound:
        seq = None
    if seq is None:
        await socket.send_json({"type": "error", "code": "not_found", "detail": f"market {market_id} not found"})
        await socket.close(code=4404)
        return
    q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    seq.subscribers.add(q)

    async def pump() -> None:
        while True:
            await socket.send_json(await q.get())

    async def watch() -> None:  # ends when the client goes away, so the pump does not wait forever
        while (await socket.receive())["type"] != "websocket.disconnect":
            pass

    try:
        await socket.send_json({"type": "snapshot", "seq": seq.applied_seq, **marketdata.depth(rt, market_id)})
        tasks = {asyncio.create_task(pump()), asyncio.create_task(watch())}
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
    except WebSocketDisconnect:
        pass
    finally:
        seq.subscribers.discard(q)
