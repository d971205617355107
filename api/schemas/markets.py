"""Request bodies for markets, orders and listings; answers of markets, sessions and market data."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, SerializerFunctionWrapHandler, model_serializer

from api.schemas.common import ClientId, Date, Decimal, Id, Note, Strict
from exchange.core.units import cny, iso, quantity, times_in_iso
from exchange.trading import markets
from exchange.trading.amendments import Amended
from exchange.trading.markets import MarketView
from exchange.trading.models import Candle, ClosePrice, DailyStat, Market, PublicTrade, SessionState
from exchange.trading.sessions import Halted, PublicEvent, SessionAnswer

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
    reason: str | None = Field(default=None, min_length=1, max_length=500,
                               description="an operator's reason for cancelling after bidding opened")
    client_id: ClientId = None


# --- answers ------------------------------------------------------------------------------------------------

Time = Annotated[str, Field(description="ISO 8601, UTC, microseconds, Z")]
Money = Annotated[str, Field(description="CNY, a decimal string with 2 places")]
Quantity = Annotated[str, Field(description="a decimal string in the instrument's unit, with its decimals")]


class OverrideOut(BaseModel):
    until: Time
    reason: str | None

    @classmethod
    def of(cls, s: SessionState) -> OverrideOut | None:
        return None if s.override_until is None else cls(until=iso(s.override_until), reason=s.override_reason)


class RulesOut(BaseModel):
    """The rules of a market in the user's units."""

    tick: Money
    lot: Quantity
    band_pct: str | None = Field(description="the price band around the reference price, percent; null: none")
    min_quantity: Quantity
    max_quantity: Quantity | None
    best_n: int
    strict_best: bool
    self_trade_prevention: str
    sessions: list[list[str]]
    holidays: list[str]
    fee_bps: int
    t_plus_1: bool
    in_close: bool

    @classmethod
    def of(cls, m: Market) -> RulesOut:
        return cls(**markets.rules_view(m))


class ScheduledAmendmentOut(BaseModel):
    id: int
    effective_from: dt.date
    changes: dict[str, Any] = Field(description="the settings that change (keys and units of a definition)")
    rules: RulesOut = Field(description="the complete rules in force from effective_from")


class MarketOut(BaseModel):
    """A market: the rules in force, its session, and each scheduled amendment with the rules it brings."""

    id: str
    instrument: str
    mode: str
    tick: Money
    lot: Quantity
    band_pct: str | None
    min_quantity: Quantity
    max_quantity: Quantity | None
    best_n: int
    strict_best: bool
    self_trade_prevention: str
    sessions: list[list[str]]
    holidays: list[str]
    fee_bps: int
    t_plus_1: bool
    in_close: bool
    reference_price: Money | None
    halted: bool
    session_open: bool
    session_override: OverrideOut | None
    trading_day: dt.date | None
    last_seq: int
    unit_base: int = Field(description="base units per unit of the instrument")
    term_years: int = Field(description="prices are per unit and year of the term: amount = price × quantity × "
                                        "term_years")
    writes_stopped: str | None = Field(description="why the market stopped taking writes, if it did")
    scheduled_amendments: list[ScheduledAmendmentOut]

    @classmethod
    def of(cls, v: MarketView) -> MarketOut:
        m, row, s = v.row.market, v.row, v.row.session
        return cls(id=m.id, instrument=m.instrument, mode=m.mode, **markets.rules_view(m),
                   reference_price=None if row.reference_price is None else cny(row.reference_price),
                   halted=row.halted, session_open=s.session_open, session_override=OverrideOut.of(s),
                   trading_day=s.trading_day, last_seq=row.applied_seq, unit_base=10**m.decimals,
                   term_years=m.years, writes_stopped=v.writes_stopped,
                   scheduled_amendments=[ScheduledAmendmentOut(id=a.id, effective_from=a.effective_from,
                                                               changes=times_in_iso(a.settings),
                                                               rules=RulesOut.of(then)) for a, then in v.scheduled])


class AmendmentOut(BaseModel):
    id: int
    market_id: str
    effective_from: dt.date
    changes: dict[str, Any]
    applied: bool
    operator_action: dict[str, Any] | None = Field(description="the approval it was made under, if any")


class AmendedOut(BaseModel):
    amendment: AmendmentOut
    market: MarketOut

    @classmethod
    def of(cls, a: Amended) -> AmendedOut:
        x = a.amendment
        return cls(amendment=AmendmentOut(id=x.id, market_id=x.market_id, effective_from=x.effective_from,
                                          changes=times_in_iso(x.settings), applied=x.applied,
                                          operator_action=times_in_iso(x.operator_action)),
                   market=MarketOut.of(a.market))


class MarketEventOut(BaseModel):
    id: int
    at: Time
    kind: str = Field(description="open, pause, close, amendment_scheduled, amendment_effective")
    trading_day: dt.date | None
    actor: Literal["calendar", "operator"]
    detail: dict[str, Any] = Field(description="times ISO 8601, the close price in CNY")

    @classmethod
    def of(cls, e: PublicEvent) -> MarketEventOut:
        return cls(id=e.id, at=iso(e.at), kind=e.kind, trading_day=e.trading_day,
                   actor="calendar" if e.actor == "calendar" else "operator", detail=times_in_iso(e.detail))


class CloseOut(BaseModel):
    instrument: str
    trading_day: dt.date
    price: Money
    method: str = Field(description="vwap (of the day's in-close trades) or previous_close")
    volume: Quantity
    turnover: Money


class SessionOut(BaseModel):
    """The session after an open, pause or close; `close` only in the answer of a close (null: no close price)."""

    market_id: str
    session_open: bool
    trading_day: dt.date | None
    session_override: OverrideOut | None
    close: CloseOut | None = None
    _closed: bool = PrivateAttr(default=False)

    @model_serializer(mode="wrap")
    def _close_only_when_closed(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if not self._closed:
            out.pop("close", None)
        return out

    @classmethod
    def of(cls, a: SessionAnswer) -> SessionOut:
        c = a.close
        out = cls(market_id=a.market_id, session_open=a.session.session_open, trading_day=a.session.trading_day,
                  session_override=OverrideOut.of(a.session),
                  close=None if c is None else CloseOut(instrument=c.instrument, trading_day=c.trading_day,
                                                        price=cny(c.price), method=c.method,
                                                        volume=quantity(c.volume, a.decimals),
                                                        turnover=cny(c.turnover)))
        out._closed = a.closed
        return out


class HaltedOut(BaseModel):
    market_id: str
    halted: bool

    @classmethod
    def of(cls, h: Halted) -> HaltedOut:
        return cls(market_id=h.market_id, halted=h.halted)


class LevelOut(BaseModel):
    price: Money
    quantity: Quantity
    orders: int


class DepthOut(BaseModel):
    """The book by price level (no one named), with the market's sequence number."""

    market_id: str
    seq: int
    bids: list[LevelOut]
    asks: list[LevelOut]

    @classmethod
    def of(cls, d: dict[str, Any]) -> DepthOut:  # marketdata.depth_of: the stream sends the same
        return cls.model_validate(d, strict=False)


class TradeOut(BaseModel):
    """A trade as the public sees it: no participant, no order of anyone's."""

    trade_id: int
    seq: int
    ts: Time
    mode: str
    price: Money
    quantity: Quantity
    amount: Money
    trading_day: dt.date

    @classmethod
    def of(cls, t: PublicTrade, decimals: int) -> TradeOut:
        return cls(trade_id=t.trade_id, seq=t.seq, ts=iso(t.ts), mode=t.mode, price=cny(t.price),
                   quantity=quantity(t.qty, decimals), amount=cny(t.notional), trading_day=t.trading_day)


class CandleOut(BaseModel):
    start_ts: Time
    open: Money
    high: Money
    low: Money
    close: Money
    volume: Quantity
    turnover: Money

    @classmethod
    def of(cls, c: Candle, decimals: int) -> CandleOut:
        return cls(start_ts=iso(c.start), open=cny(c.open), high=cny(c.high), low=cny(c.low), close=cny(c.close),
                   volume=quantity(c.volume, decimals), turnover=cny(c.turnover))


class DailyStatOut(BaseModel):
    trading_day: dt.date
    mode: str
    open: Money
    high: Money
    low: Money
    last: Money
    volume: Quantity
    turnover: Money
    trades: int
    close: Money | None = Field(description="the official close of the day (VWAP of in-close trades)")
    close_method: str | None

    @classmethod
    def of(cls, s: DailyStat, decimals: int) -> DailyStatOut:
        return cls(trading_day=s.trading_day, mode=s.mode, open=cny(s.open), high=cny(s.high), low=cny(s.low),
                   last=cny(s.last), volume=quantity(s.volume, decimals), turnover=cny(s.turnover), trades=s.trades,
                   close=None if s.close is None else cny(s.close), close_method=s.close_method)


class ClosePriceOut(BaseModel):
    trading_day: dt.date
    price: Money
    method: str
    volume: Quantity
    turnover: Money

    @classmethod
    def of(cls, c: ClosePrice, decimals: int) -> ClosePriceOut:
        return cls(trading_day=c.trading_day, price=cny(c.price), method=c.method,
                   volume=quantity(c.volume, decimals), turnover=cny(c.turnover))
