"""Batch order entry, mass cancel and the dead-man switch (traders)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Controller, Litestar, Request, get, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec

from api.deps import IdempotencyKey, client_id
from api.encoding import Answer
from api.problems import problem
from api.schemas.order_batches import CancelAllIn, CancelAllOut, DeadManIn, DeadManOut, OrderBatchIn, OrderBatchOut
from exchange.core.errors import Invalid
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.trading import batches, deadman, mass_cancel
from exchange.trading.batches import BatchOrder, Slot


@asynccontextmanager
async def dead_man_watch(app: Litestar) -> AsyncIterator[None]:
    """Lifespan: the watcher that fires due dead-man switches, after the runtime is up, stopped before it."""
    watch = app.state.dead_man_watch = deadman.DeadManWatch(app.state.rt)
    await watch.start()
    try:
        yield
    finally:
        await watch.stop()


def _watch(state: State) -> deadman.DeadManWatch:
    return state.dead_man_watch  # type: ignore[no-any-return]


def _slot_bytes(request: Request, slot: Slot) -> bytes:
    if slot.body is not None:
        return slot.body  # the exact bytes of the order's first answer
    assert slot.error is not None
    e = slot.error
    body = problem(e.status, e.code, e.message, request, **e.extra).content
    return batches.encode({"client_id": slot.client_id, "status": e.status, "problem": body})


class OrderBatchController(Controller):
    path = "/v1"
    tags = ["markets"]

    @post("/markets/{market_id:str}/orders/batch", operation_id="placeOrderBatch", status_code=200,
          responses={200: ResponseSpec(data_container=OrderBatchOut, generate_examples=False,
                                       description="One answer per order, in the order sent")},
          summary=f"Place up to {batches.MAX_ORDERS} orders at once, each with its own client id",
          description="Each order is checked, funded, journaled and answered as it would be alone, in the order "
                      "sent; a refused order refuses only itself (its slot holds the problem it would have got "
                      "alone). Idempotent per order: an order sent again (in this batch or another) gets its "
                      "first answer back, byte for byte. A batch of more orders, a repeated client id or a "
                      "malformed order is 422 and nothing of it is done.")
    async def place_batch(self, rt: Runtime, principal: Principal, request: Request, market_id: str,
                          data: OrderBatchIn, idempotency_key: IdempotencyKey = None) -> Answer:
        sent = [BatchOrder(o.client_id, o.side, o.type, o.tif, o.price, o.quantity, o.stp) for o in data.orders]
        if idempotency_key is not None:
            await batches.claim_batch_key(rt, principal, market_id, idempotency_key, sent)
        slots = await batches.place_batch(rt, principal, market_id, sent)
        body = b'{"market_id":' + batches.encode(market_id) + b',"results":[' + \
            b",".join(_slot_bytes(request, s) for s in slots) + b"]}"
        return Answer(body, status_code=200, media_type="application/json")

    @post("/markets/{market_id:str}/orders/cancel-all", operation_id="cancelAllOrdersInMarket", status_code=200,
          summary="Cancel everything you have resting in this market; every hold is released. Idempotent.")
    async def cancel_all_in_market(self, rt: Runtime, principal: Principal, market_id: str, data: CancelAllIn,
                                   idempotency_key: IdempotencyKey = None) -> CancelAllOut:
        if data.market_id is not None and data.market_id != market_id:
            raise Invalid("validation_error", "market_id in the body names another market than the path")
        cid = client_id(idempotency_key, data.client_id)
        return CancelAllOut.of(await mass_cancel.mass_cancel(rt, principal, cid, market_id))

    @post("/orders/cancel-all", operation_id="cancelAllOrders", status_code=200,
          summary="Cancel everything you have resting, in every market (or `market_id`); every hold is "
                  "released. Idempotent.")
    async def cancel_all(self, rt: Runtime, principal: Principal, data: CancelAllIn,
                         idempotency_key: IdempotencyKey = None) -> CancelAllOut:
        cid = client_id(idempotency_key, data.client_id)
        return CancelAllOut.of(await mass_cancel.mass_cancel(rt, principal, cid, data.market_id))

    @post("/orders/dead-man-switch", operation_id="setDeadManSwitch", status_code=200,
          summary="Cancel all your orders (in every market, or `market_id`) after `timeout_seconds` unless "
                  "renewed; the same call renews, 0 disarms",
          description="Fires once when its deadline passes without renewal: a mass cancel with the reason "
                      "`dead_man_switch`, every hold released. The deadline is kept in the database: across a "
                      "restart it stands, and a switch whose deadline passed while the exchange was down fires "
                      "when it is back. Each renewal takes a new client id (a retry of one does not move it).")
    async def set_switch(self, rt: Runtime, principal: Principal, state: State, data: DeadManIn,
                         idempotency_key: IdempotencyKey = None) -> DeadManOut:
        cid = client_id(idempotency_key, data.client_id)
        return DeadManOut.of(await deadman.set_switch(rt, _watch(state), principal, cid, data.timeout_seconds,
                                                      data.market_id))

    @get("/orders/dead-man-switch", operation_id="listDeadManSwitches",
         summary="Your dead-man switches: armed or not, deadlines, what each last firing cancelled")
    async def list_switches(self, rt: Runtime, principal: Principal) -> list[DeadManOut]:
        return [DeadManOut.of(s) for s in await deadman.switches(rt, principal)]
