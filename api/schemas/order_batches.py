"""Request bodies and answers of batch order entry, mass cancel and the dead-man switch
(api/controllers/order_batches.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from api.schemas.common import Decimal, Strict
from exchange.trading.batches import MAX_ORDERS
from exchange.trading.deadman import MAX_TIMEOUT_SECONDS, Switch
from exchange.trading.mass_cancel import CancelAll

Side = Literal["buy", "sell"]
# What a caller's idempotency key may be (exchange.core.idempotency.valid_client_key).
OrderClientId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x20-\x7e]{1,128}$",
                                     description="This order's own idempotency key (1-128 printable ASCII)")]
MarketId = Annotated[str, Field(min_length=1, max_length=64)]


class BatchOrderIn(Strict):
    """One order, as `POST /v1/markets/{id}/orders` takes it, with its own client id (required)."""

    side: Side
    type: Literal["limit", "market"] = "limit"
    tif: Literal["day", "ioc", "fok"] = "day"
    price: Decimal | None = Field(default=None, description="CNY per unit, at most 2 decimals")
    quantity: Decimal
    stp: Literal["cancel_taker", "cancel_maker", "cancel_both"] | None = None
    client_id: OrderClientId


class OrderBatchIn(Strict):
    orders: list[BatchOrderIn] = Field(min_length=1, max_length=MAX_ORDERS,
                                       description=f"1 to {MAX_ORDERS} orders, each with its own client_id")

    @model_validator(mode="after")
    def _distinct(self) -> OrderBatchIn:
        ids = [o.client_id for o in self.orders]
        if len(set(ids)) != len(ids):
            raise ValueError("each order of a batch needs its own client_id (one is repeated)")
        return self


class ProblemOut(BaseModel):
    """An RFC 9457 problem document, as the order would have been refused alone."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None


class OrderSlotOut(BaseModel):
    """One order's answer, in the place it was sent: `status` 201 with the single order's answer (`order`,
    `events`, `replayed` on a replay from its row), or the status of the `problem` that refused it."""

    client_id: str
    status: int
    order: dict[str, Any] | None = Field(default=None, description="the order, as placeOrder answers it")
    events: list[dict[str, Any]] | None = None
    replayed: bool | None = None
    problem: ProblemOut | None = None


class OrderBatchOut(BaseModel):
    market_id: str
    results: list[OrderSlotOut] = Field(description="one per order sent, in the order sent")


class CancelAllIn(Strict):
    client_id: OrderClientId | None = None
    market_id: MarketId | None = Field(default=None, description="only this market (default: every market)")


class CancelledOut(BaseModel):
    market_id: str
    order_id: int
    kind: str
    side: str
    quantity: str = Field(description="the open quantity cancelled, in the instrument's unit")
    reason: str


class NotCancelledOut(BaseModel):
    market_id: str
    code: str
    detail: str


class CancelAllOut(BaseModel):
    """What a mass cancel (or a dead-man switch firing) cancelled; their holds are released."""

    client_id: str | None
    market_id: str | None = Field(description="the market, or null: every market")
    reason: str
    cancelled: list[CancelledOut]
    not_cancelled: list[NotCancelledOut] = Field(description="markets that take no writes now (stopped or "
                                                            "recovering): nothing of yours there was cancelled")

    @classmethod
    def of(cls, c: CancelAll) -> CancelAllOut:
        return cls(client_id=c.client_id, market_id=c.market_id, reason=c.reason,
                   cancelled=[CancelledOut(**x.as_dict()) for x in c.cancelled],
                   not_cancelled=[NotCancelledOut(**x.as_dict()) for x in c.not_cancelled])


class DeadManIn(Strict):
    timeout_seconds: int = Field(ge=0, le=MAX_TIMEOUT_SECONDS,
                                 description=f"cancel all after this many seconds unless renewed (1-"
                                             f"{MAX_TIMEOUT_SECONDS}); 0 disarms")
    market_id: MarketId | None = Field(default=None, description="only this market (default: every market)")
    client_id: OrderClientId | None = None


class DeadManOut(BaseModel):
    """A dead-man switch: armed until `deadline` unless renewed; `last_fired` says what it cancelled last."""

    market_id: str | None
    armed: bool
    timeout_seconds: int | None
    deadline: str | None
    renewed_at: str | None
    last_fired_at: str | None
    last_fired_cancelled: int | None
    firing: bool

    @classmethod
    def of(cls, s: Switch) -> DeadManOut:
        return cls(**s.as_dict())
