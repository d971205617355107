"""Request bodies for markets, orders and listings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from api.schemas.common import ClientId, Decimal, Id, Note, Strict

Side = Literal["buy", "sell"]


class MarketSettings(Strict):
    """Every number of DESIGN.md §6 is a setting; unset ones take the national CEA defaults for the mode."""

    tick_fen: int | None = Field(default=None, ge=1, le=1_000_000)
    lot_units: int | None = Field(default=None, ge=1, le=1_000_000)
    lot_base: int | None = Field(default=None, ge=1, le=10**12, description="lot in base units (overrides lot_units)")
    band_bps: int | None = Field(default=None, ge=0, le=9_999)
    min_units: int | None = Field(default=None, ge=1, le=10**12)
    max_units: int | None = Field(default=None, ge=1, le=10**12)
    best_n: int | None = Field(default=None, ge=1, le=50)
    strict_best: bool | None = None
    stp: Literal["cancel_taker", "cancel_maker", "cancel_both"] | None = None
    sessions: list[Annotated[list[str], Field(max_length=2)]] | None = Field(default=None, max_length=6,
                                             description="[[\"09:30\",\"11:30\"],...] Asia/Shanghai; [] = always")
    fee_bps: int | None = Field(default=None, ge=0, le=1000)
    t_plus_1: bool | None = None
    in_close: bool | None = None
    reference_price_fen: int | None = Field(default=None, ge=1, le=10**12)


class MarketIn(Strict):
    instrument: str = Field(min_length=1, max_length=32)
    mode: Literal["continuous", "listing", "block", "auction"]
    settings: MarketSettings = Field(default_factory=MarketSettings)
    client_id: ClientId = None


class SessionIn(Strict):
    action: Literal["open", "pause", "close"]


class HaltIn(Strict):
    reason: Note = None


class OrderIn(Strict):
    side: Side
    type: Literal["limit", "market"] = "limit"
    tif: Literal["day", "ioc", "fok"] = "day"
    price: Decimal | None = Field(default=None, description="CNY per unit, at most 2 decimals")
    quantity: Decimal
    stp: Literal["cancel_taker", "cancel_maker", "cancel_both"] | None = None
    client_id: ClientId = None


class ReduceIn(Strict):
    quantity: Decimal = Field(description="the new open quantity; the order keeps its place")


class ListingIn(Strict):
    side: Side
    price: Decimal
    quantity: Decimal
    client_id: ClientId = None


class TakeIn(Strict):
    quantity: Decimal
    client_id: ClientId = None


class BlockQuoteIn(Strict):
    side: Side
    price: Decimal
    quantity: Decimal
    audience: Literal["public", "directed", "group"] = "public"
    counterparties: list[Id] = Field(default_factory=list, max_length=50,
                                      description="participant ids a directed or group quote is addressed to")
    client_id: ClientId = None


class TermsIn(Strict):
    price: Decimal
    quantity: Decimal
    client_id: ClientId = None


class StepIn(Strict):
    client_id: ClientId = None


class AuctionIn(Strict):
    quantity: Decimal
    min_price: Decimal = Field(description="start price, CNY per unit (宁夏 2025: 21000)")
    increment: Decimal = Field(description="bid step, CNY (宁夏 2025: 500)")
    deposit: Decimal = "0"
    min_bid_quantity: Decimal | None = None
    cap_per_bidder: Decimal | None = None
    max_bids_per_bidder: int = Field(default=1, ge=1, le=100)
    allocation: Literal["pay_as_bid", "top_percent", "uniform_price"] = "pay_as_bid"
    top_percent: int = Field(default=100, ge=1, le=100)
    extension_window_seconds: int = Field(default=0, ge=0, le=3600)
    extension_length_seconds: int = Field(default=0, ge=0, le=3600)
    max_extensions: int = Field(default=0, ge=0, le=100)
    irrevocable: bool = True
    client_id: ClientId = None


class AuctionStepIn(Strict):
    action: Literal["registration", "bidding", "close", "allocate", "cancel"]
    duration_seconds: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    client_id: ClientId = None
