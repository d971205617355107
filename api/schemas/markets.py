"""Request bodies for markets, orders and listings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from api.schemas.common import ClientId, Date, Decimal, Id, Note, Strict

Side = Literal["buy", "sell"]
# A session boundary, Asia/Shanghai: HH:MM in ASCII digits (no seconds, offset or "T": "09:30Z" would be an
# aware time that cannot be compared with the others).
SessionTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class RuleSettings(Strict):
    """The rules of a market that a definition sets and an amendment may change (same keys and units)."""

    tick_fen: int | None = Field(default=None, ge=1, le=1_000_000)
    lot_units: int | None = Field(default=None, ge=1, le=1_000_000)
    lot_base: int | None = Field(default=None, ge=1, le=10**12, description="lot in base units (overrides lot_units)")
    band_bps: int | None = Field(default=None, ge=0, le=9_999)
    min_units: int | None = Field(default=None, ge=1, le=10**12)
    min_base: int | None = Field(default=None, ge=1, le=10**12,
                                 description="minimum order or lot in base units (overrides min_units)")
    max_units: int | None = Field(default=None, ge=1, le=10**12)
    best_n: int | None = Field(default=None, ge=1, le=50)
    strict_best: bool | None = None
    stp: Literal["cancel_taker", "cancel_maker", "cancel_both"] | None = None
    sessions: list[Annotated[list[SessionTime], Field(max_length=2)]] | None = Field(
        default=None, max_length=6,
        description="Trading hours, Asia/Shanghai, in order: [[\"09:30\",\"11:30\"],[\"13:00\",\"15:00\"]]. The "
                    "market opens at the first start, pauses between sessions and closes at the last end, Monday to "
                    "Friday except `holidays`. [] = always open, every day (the trading day ends at midnight).")
    holidays: list[Date] | None = Field(default=None, max_length=400,
                                        description="Weekdays on which the market does not trade (ISO dates)")
    fee_bps: int | None = Field(default=None, ge=0, le=1000)
    t_plus_1: bool | None = None
    in_close: bool | None = None


class MarketSettings(RuleSettings):
    """Every number of DESIGN.md §6 is a setting; unset ones take the national CEA defaults for the mode.

    Auction markets default to the instrument's base unit as lot and minimum (lots are announced case by
    case). An unset tick is the finest that keeps tick × lot whole fen (0.01 CNY on a lot of whole
    units, 10.00 CNY per t on a 0.001 t lot). Settings are checked when the definition is proposed."""

    reference_price_fen: int | None = Field(default=None, ge=1, le=10**12)


class MarketIn(Strict):
    instrument: str = Field(min_length=1, max_length=32)
    mode: Literal["continuous", "listing", "block", "auction"]
    settings: MarketSettings = Field(default_factory=MarketSettings)
    client_id: ClientId = None


class SessionIn(Strict):
    action: Literal["open", "pause", "close"]
    override: bool = Field(default=False, description="Open outside the market's hours (needs `reason`); lasts until "
                                                      "the next scheduled transition of that day or its end")
    reason: Note = Field(default=None, description="Why the hours are overridden (recorded in the market's events "
                                                   "and the audit trail)")


class AmendmentIn(Strict):
    effective_from: Date = Field(description="The trading day from which the new rules apply (after today and the "
                                             "market's current trading day, at most 730 days ahead)")
    settings: RuleSettings = Field(description="Only the settings that change")
    client_id: ClientId = None


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
    quantity: Decimal = Field(description="the lot, in the instrument's unit (emission rights: t/yr)")
    min_price: Decimal = Field(description="start price, CNY per unit and year of the term (宁夏 2025: 21000)")
    increment: Decimal = Field(description="bid step, CNY; bids are min_price + k × increment (宁夏 2025: 500)")
    deposit: Decimal = Field(default="0", description="held from each bidder at registration; 0: none")
    min_bid_quantity: Decimal | None = Field(default=None, description="smallest bid quantity; default one lot")
    cap_per_bidder: Decimal | None = Field(default=None, description="the most a bidder's standing bid may ask for")
    max_bids_per_bidder: int = Field(default=1, ge=1, le=100,
                                     description="bids a bidder may place, its first bid and its raises")
    allocation: Literal["pay_as_bid", "top_percent", "uniform_price"] = "pay_as_bid"
    top_percent: int = Field(default=100, ge=1, le=100,
                             description="top_percent: share of bidders who win, rounded half up, at least one")
    extension_window_seconds: int = Field(default=0, ge=0, le=3600)
    extension_length_seconds: int = Field(default=0, ge=0, le=3600)
    max_extensions: int = Field(default=0, ge=0, le=100)
    irrevocable: bool = True
    client_id: ClientId = None


class AuctionStepIn(Strict):
    action: Literal["registration", "bidding", "close", "allocate", "cancel"]
    duration_seconds: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    client_id: ClientId = None
