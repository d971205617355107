"""Markets: definitions and sessions (operators), orders and listings (traders), market data (public)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from litestar import Controller, WebSocket, get, post, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import Parameter

from api.controllers.security import PROPOSED, propose_or_run
from api.deps import Id, IdempotencyKey, client_id
from api.schemas.markets import HaltIn, ListingIn, MarketIn, OrderIn, ReduceIn, SessionIn, TakeIn
from exchange import marketdata, markets, orders, sessions
from exchange.errors import DomainError
from exchange.keys import Principal
from exchange.runtime import Runtime
from exchange.units import to_text

Limit = Annotated[int, Parameter(ge=1, le=1000)]
After = Annotated[int, Parameter(ge=0, le=2**53 - 1)]


class MarketController(Controller):
    path = "/v1/markets"
    tags = ["markets"]

    @post("/", operation_id="defineMarket", responses=PROPOSED,
          summary="Define a market for an instrument and mode (operator; maker-checker)")
    async def define(self, rt: Runtime, principal: Principal, data: MarketIn,
                     idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
        cid = client_id(idempotency_key, data.client_id)
        settings = data.settings.model_dump(exclude_none=True)
        return await propose_or_run(  # maker-checker: 202 and a pending action, unless switched off
            rt, principal, cid, "defineMarket", {"instrument": data.instrument, "mode": data.mode,
                                                 "settings": settings},
            lambda: markets.define(rt, principal.actor, cid, instrument=data.instrument, mode=data.mode,
                                   settings=settings))

    @get("/", operation_id="listMarkets", summary="All markets and their rules")
    async def listing(self, rt: Runtime) -> list[dict[str, Any]]:
        return await markets.listing(rt)

    @get("/{market_id:str}", operation_id="getMarket", summary="One market: rules, session, reference price")
    async def get_one(self, rt: Runtime, market_id: str) -> dict[str, Any]:
        return await markets.get(rt, market_id)

    @post("/{market_id:str}/session", operation_id="setSession", status_code=200,
          summary="Open, pause (lunch break) or close the trading session (operator; also scheduled)")
    async def session(self, rt: Runtime, market_id: str, data: SessionIn) -> dict[str, Any]:
        return await sessions.session_action(rt, market_id, data.action)

    @post("/{market_id:str}/halt", operation_id="haltMarket", status_code=200, summary="Halt trading (operator)")
    async def halt(self, rt: Runtime, market_id: str, data: HaltIn) -> dict[str, Any]:
        return await sessions.halt(rt, market_id, data.reason or "")

    @post("/{market_id:str}/resume", operation_id="resumeMarket", status_code=200, summary="Resume (operator)")
    async def resume(self, rt: Runtime, market_id: str) -> dict[str, Any]:
        return await sessions.halt(rt, market_id, "", resume=True)

    # --- orders (continuous book) ------------------------------------------------------------

    @post("/{market_id:str}/orders", operation_id="placeOrder",
          summary="Place an order (limit, IOC, FOK, market-to-limit); pre-funded by a ledger hold")
    async def place(self, rt: Runtime, principal: Principal, market_id: str, data: OrderIn,
                    idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
        cid = client_id(idempotency_key, data.client_id)
        return await orders.place_order(rt, principal, market_id, cid, side=data.side, type_=data.type,
                                        tif=data.tif, price=data.price, quantity=data.quantity, stp=data.stp)

    @get("/{market_id:str}/orders", operation_id="listOrders", summary="Your orders (operators: all)")
    async def list_orders(self, rt: Runtime, principal: Principal, market_id: str,
                          status: Literal["open", "filled", "cancelled", "expired", "rejected"] | None = None,
                          ) -> list[dict[str, Any]]:
        return await orders.list_orders(rt, principal, market_id, status)

    @get("/{market_id:str}/orders/{order_id:int}", operation_id="getOrder", summary="One order")
    async def get_order(self, rt: Runtime, principal: Principal, market_id: str, order_id: Id) -> dict[str, Any]:
        return await orders.get_order(rt, principal, market_id, order_id)

    @post("/{market_id:str}/orders/{order_id:int}/cancel", operation_id="cancelOrder", status_code=200,
          summary="Cancel an order or listing; its hold is released. Idempotent.")
    async def cancel(self, rt: Runtime, principal: Principal, market_id: str, order_id: Id) -> dict[str, Any]:
        return await orders.cancel(rt, principal, market_id, order_id)

    @post("/{market_id:str}/orders/{order_id:int}/reduce", operation_id="reduceOrder", status_code=200,
          summary="Lower the open quantity; the order keeps its priority")
    async def reduce(self, rt: Runtime, principal: Principal, market_id: str, order_id: Id,
                     data: ReduceIn) -> dict[str, Any]:
        return await orders.reduce(rt, principal, market_id, order_id, data.quantity)

    # --- listings (挂牌协议) --------------------------------------------------------------------

    @post("/{market_id:str}/listings", operation_id="postListing", summary="List a quantity at a price")
    async def post_listing(self, rt: Runtime, principal: Principal, market_id: str, data: ListingIn,
                           idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
        cid = client_id(idempotency_key, data.client_id)
        return await orders.post_listing(rt, principal, market_id, cid, side=data.side, price=data.price,
                                         quantity=data.quantity)

    @get("/{market_id:str}/listings", operation_id="listListings", summary="Open listings with their rank")
    async def listings(self, rt: Runtime, market_id: str, side: Literal["buy", "sell"] | None = None,
                       ) -> list[dict[str, Any]]:
        seq = rt.exchange.get(market_id)
        if seq.market.mode != "listing":
            raise DomainError("wrong_mode", f"market {market_id} has no listings", 422)
        d = seq.market.decimals
        out = []
        for li in seq.engine.listings(side):  # type: ignore[attr-defined]
            # rank: 1 = the best price level of its side; takes may reach ranks 1..best_n
            out.append({"listing_id": li["listing_id"], "side": li["side"], "price": to_text(li["price"], 2),
                        "quantity": to_text(li["qty"], d), "rank": seq.engine.rank(li["listing_id"]) + 1,  # type: ignore[attr-defined]
                        "participant_id": li["account"]})
        return sorted(out, key=lambda x: (x["side"], x["rank"], x["listing_id"]))

    @post("/{market_id:str}/listings/{listing_id:int}/take", operation_id="takeListing",
          summary="Take a listing within the best N levels, at its price")
    async def take(self, rt: Runtime, principal: Principal, market_id: str, listing_id: Id, data: TakeIn,
                   idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
        cid = client_id(idempotency_key, data.client_id)
        return await orders.take_listing(rt, principal, market_id, listing_id, cid, quantity=data.quantity)

    # --- market data -----------------------------------------------------------------------------

    @get("/{market_id:str}/depth", operation_id="getDepth", summary="Best-N depth with the market's sequence number")
    async def depth(self, rt: Runtime, market_id: str, levels: Annotated[int, Parameter(ge=1, le=20)] = 5,
                    ) -> dict[str, Any]:
        return marketdata.depth(rt, market_id, levels)

    @get("/{market_id:str}/trades", operation_id="listTrades", summary="Trades after a trade id")
    async def trades(self, rt: Runtime, market_id: str, after: After = 0, limit: Limit = 200) -> list[dict[str, Any]]:
        return await marketdata.trades(rt, market_id, after, limit)

    @get("/{market_id:str}/ohlc", operation_id="getOhlc", summary="OHLC candles")
    async def ohlc(self, rt: Runtime, market_id: str, interval: Literal["1m", "5m", "1h", "1d"] = "1m",
                   limit: Limit = 200) -> list[dict[str, Any]]:
        return await marketdata.ohlc(rt, market_id, interval, limit)


class InstrumentStatsController(Controller):
    path = "/v1/instruments/{code:str}"
    tags = ["markets"]

    @get("/daily", operation_id="getDailyStats", summary="Daily statistics per mode and the official close")
    async def daily(self, rt: Runtime, code: str, limit: Limit = 30) -> list[dict[str, Any]]:
        return await marketdata.daily(rt, code, limit)

    @get("/closes", operation_id="listClosePrices", summary="Close prices (VWAP of in-close trades)")
    async def closes(self, rt: Runtime, code: str, limit: Limit = 30) -> list[dict[str, Any]]:
        return await marketdata.closes(rt, code, limit)


@websocket("/v1/markets/{market_id:str}/stream", operation_id="streamMarket")
async def stream(socket: WebSocket, market_id: str) -> None:
    """Trades and best-5 depth as they happen, each with the market's sequence number (gaps are visible)."""
    rt: Runtime = socket.app.state.rt
    seq = rt.exchange.sequencers.get(market_id)
    await socket.accept()
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
