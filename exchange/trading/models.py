"""Typed rows of trading: orders, trades and what a batch changes of them, built right where they are read.

`Market` is a market's rules and calendar (exchange/trading/markets.py checks settings into it);
`MarketRow` a market with its session state as `markets` holds it; `Amendment` a scheduled change of its
rules. `Order` is a row of `orders` as stored (answers and replays are built from it); `OrderState` is an open
order as the sequencer keeps it in memory while it trades (mutable: fills move it); `Trade` is a row of
`trades`, made by the settlement-leg builder (exchange/trading/settlement.py); `OrderUpdate` is what a
batch changes of an order's row (the projection), and what a caller's answer is built from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from exchange.core.calendar import SHANGHAI, WEEKDAYS, TradingCalendar
from exchange.core.units import to_text
from matching.rules import MarketRules


@dataclass(frozen=True, slots=True)
class Order:
    """A row of `orders`: an order, listing, take, quote side, auction lot, bid or deposit."""

    id: int
    market_id: str
    participant_id: int
    kind: str
    side: str
    type: str
    tif: str
    price: int | None
    qty: int
    open_qty: int
    filled_qty: int
    filled_notional: int
    fees: int
    status: str
    reason: str | None
    hold_id: int | None
    hold_amount: int
    trading_day: date | None
    client_id: str
    parent: int | None
    purpose: dict[str, Any] | None = None
    fingerprint: bytes = b""

    @classmethod
    def from_row(cls, r: Mapping[Any, Any]) -> Order:
        return cls(r["id"], r["market_id"], r["participant_id"], r["kind"], r["side"], r["type"], r["tif"],
                   r["price"], r["qty"], r["open_qty"], r["filled_qty"], r["filled_notional"], r["fees"],
                   r["status"], r["reason"], r["hold_id"], r["hold_amount"], r["trading_day"], r["client_id"],
                   r["parent"], _json(r["purpose"]), bytes(r["fingerprint"]))

    def updated(self, u: OrderUpdate | None) -> Order:
        """This order as a batch's projection left it (`u`: what the batch changed, or None)."""
        if u is None:
            return self
        return Order(self.id, self.market_id, self.participant_id, self.kind, self.side, self.type, self.tif,
                     u.price, self.qty, u.open_qty, u.filled_qty, u.filled_notional, u.fees, u.status, u.reason,
                     self.hold_id if u.hold_id is None else u.hold_id, self.hold_amount, self.trading_day,
                     self.client_id, self.parent, self.purpose, self.fingerprint)


def _json(v: Any) -> dict[str, Any] | None:
    """A jsonb column: asyncpg gives its text, SQLAlchemy its value."""
    if isinstance(v, str):
        v = json.loads(v)
    assert v is None or isinstance(v, dict), "purpose is a jsonb object"
    return v


@dataclass(slots=True)
class OrderState:
    """An open order (or listing, take, quote, bid) as settlement needs it, while it trades."""

    id: int
    participant_id: int
    kind: str
    side: str
    price: int | None
    qty: int
    open_qty: int
    hold_id: int | None
    hold_amount: int
    holding_account: int
    cash_account: int
    filled_qty: int = 0
    filled_notional: int = 0
    fees: int = 0
    status: str = "open"
    reason: str | None = None
    purpose: dict[str, Any] | None = None
    parent: int | None = None  # the auction a bid or deposit belongs to

    @classmethod
    def from_row(cls, r: Mapping[Any, Any]) -> OrderState:
        """An open order of `orders` joined with its participant's accounts (an enforcement sale's escrow)."""
        purpose = _json(r["purpose"])
        holding, cash = accounts_of(purpose, r["holding_account"], r["cash_account"])
        return cls(r["id"], r["participant_id"], r["kind"], r["side"], r["price"], r["qty"], r["open_qty"],
                   r["hold_id"], r["hold_amount"], holding, cash, r["filled_qty"], r["filled_notional"], r["fees"],
                   r["status"], r["reason"], purpose, r["parent"])

    @classmethod
    def new(cls, order_id: int, ctx: Mapping[str, Any]) -> OrderState:
        """A state a journaled command brings (its order context, as journaled)."""
        return cls(order_id, ctx["participant_id"], ctx["kind"], ctx["side"], ctx.get("price"), ctx["qty"],
                   ctx["qty"], ctx.get("hold_id"), ctx.get("hold_amount", 0), ctx["holding_account"],
                   ctx["cash_account"], purpose=ctx.get("purpose"), parent=ctx.get("parent"))

    def enforcement(self) -> int | None:
        """The pledge registration whose lot this order sells, if it is an enforcement sale."""
        pledge = ((self.purpose or {}).get("enforcement") or {}).get("pledge_id")
        return int(pledge) if pledge is not None else None

    def update(self) -> OrderUpdate:
        return OrderUpdate(self.id, self.open_qty, self.filled_qty, self.filled_notional, self.fees, self.status,
                           self.reason, self.price)


def sale_of(purpose: Mapping[str, Any] | None) -> str | None:
    """The pledge registration an order is the enforcement sale of (its number, public as the register is),
    or None (exchange.pledging marks the order's purpose so: `purpose.enforcement`)."""
    return ((purpose or {}).get("enforcement") or {}).get("pledge_number")


def accounts_of(purpose: Mapping[str, Any] | None, holding: int, cash: int) -> tuple[int, int]:
    """Where an order delivers from and is paid to: an enforcement sale (exchange.pledging) sells from
    the pledgee's escrow account and is paid there; every other order uses its participant's accounts."""
    escrow = ((purpose or {}).get("enforcement") or {}).get("escrow")
    return (int(escrow), int(escrow)) if escrow else (holding, cash)


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """What a batch changed of an order's row; `hold_id` is set for a raised bid's one new hold."""

    id: int
    open_qty: int
    filled_qty: int
    filled_notional: int
    fees: int
    status: str
    reason: str | None
    price: int | None
    hold_id: int | None = None


@dataclass(frozen=True, slots=True)
class Trade:
    """A row of `trades`: one fill, delivery versus payment; `settlement_seq` is its settlement's first entry."""

    market_id: str
    trade_id: int
    seq: int
    ts: int
    mode: str
    instrument: str
    price: int
    qty: int
    notional: int
    buy_order: int
    sell_order: int
    buyer_id: int
    seller_id: int
    buyer_fee: int
    seller_fee: int
    in_close: bool
    trading_day: date
    settlement_seq: int = 0


@dataclass(frozen=True, slots=True)
class PublicTrade:
    """A trade as the public sees it (a row of the trades list): no participant, no order of anyone's."""

    trade_id: int
    seq: int
    ts: int
    mode: str
    price: int
    qty: int
    notional: int
    trading_day: date

    @classmethod
    def from_row(cls, r: Mapping[Any, Any]) -> PublicTrade:
        return cls(r["trade_id"], r["seq"], r["ts"], r["mode"], r["price"], r["qty"], r["notional"],
                   r["trading_day"])

    @classmethod
    def of(cls, t: Trade) -> PublicTrade:
        return cls(t.trade_id, t.seq, t.ts, t.mode, t.price, t.qty, t.notional, t.trading_day)


@dataclass(frozen=True, slots=True)
class EnforcementNote:
    """An enforcement sale (exchange.pledging) a batch settled a trade of (`trade_id`) or ended (`ended`)."""

    pledge_id: int
    order_id: int
    trade_id: int | None = None
    ended: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """As the settlement hooks receive it: {"pledge_id", "order_id", "trade_id"?, "ended"?}."""
        d: dict[str, Any] = {"pledge_id": self.pledge_id, "order_id": self.order_id}
        if self.trade_id is not None:
            d["trade_id"] = self.trade_id
        if self.ended is not None:
            d["ended"] = self.ended
        return d


OPEN, PAUSED, CLOSED = "open", "paused", "closed"


@dataclass(frozen=True, slots=True)
class Market:
    id: str
    instrument: str
    mode: str
    decimals: int
    rules: MarketRules
    sessions: tuple[tuple[str, str], ...]
    fee_bps: int
    t_plus_1: bool
    in_close: bool
    holidays: tuple[date, ...] = ()
    years: int = 1  # the instrument's term: prices are per unit-year, money is price x quantity x years
    # Its units' terms end (emission rights): what ended may not be sold (exchange/registry/expiry.py).
    expires: bool = False
    # Its trading calendar (exchange/trading/calendars/): public holidays, make-up days and whether it trades
    # on them; `holidays` above are the market's own closures on top of it.
    calendar: TradingCalendar = WEEKDAYS

    # --- the calendar (pure) ---------------------------------------------------------------------

    def is_trading_day(self, day: date) -> bool:
        if not self.sessions:
            return True  # always open: every day
        return day not in self.holidays and self.calendar.is_trading_day(day)

    def days(self) -> TradingCalendar:
        """Its calendar with its own closures: what counts its trading days (T+1, deadlines)."""
        if not self.sessions:
            return TradingCalendar(self.calendar.id, every_day=True)  # always open: see is_trading_day
        return TradingCalendar(self.calendar.id, self.calendar.holidays | frozenset(self.holidays),
                               self.calendar.workdays, self.calendar.trades_on_makeup_days)

    def in_hours(self, now: datetime) -> bool:
        """Whether `now` falls in one of the market's sessions on a trading day (none listed: always)."""
        return self.scheduled(now)[0] == OPEN

    def scheduled(self, now: datetime) -> tuple[str, date]:
        """(open | paused | closed, trading day) as the calendar has it at `now`. Paused: between two
        sessions of a trading day. Closed: before the first session, after the last, or no trading day."""
        local = now.astimezone(SHANGHAI)
        day, at = local.date(), local.time()
        if not self.sessions:
            return OPEN, day
        if not self.is_trading_day(day):
            return CLOSED, day
        spans = [(time.fromisoformat(a), time.fromisoformat(b)) for a, b in self.sessions]
        if any(a <= at < b for a, b in spans):
            return OPEN, day
        if at < spans[0][0] or at >= spans[-1][1]:
            return CLOSED, day
        return PAUSED, day

    def transitions(self, day: date) -> list[datetime]:
        """The moments of `day` (Asia/Shanghai) at which the calendar changes the session."""
        if not self.sessions or not self.is_trading_day(day):
            return []
        times = sorted({time.fromisoformat(t) for pair in self.sessions for t in pair})
        return [datetime.combine(day, t, SHANGHAI) for t in times]

    def next_transition(self, now: datetime) -> datetime:
        """The next scheduled transition on the day of `now`, else that day's end (the next midnight)."""
        local = now.astimezone(SHANGHAI)
        later = [t for t in self.transitions(local.date()) if t > local]
        return later[0] if later else datetime.combine(local.date() + timedelta(days=1), time(0), SHANGHAI)

    @classmethod
    def from_row(cls, r: Mapping[Any, Any], decimals: int, years: int = 1, expires: bool = False) -> Market:
        """A row of `markets` with its instrument's grid (`decimals`), term and whether its units expire."""
        holidays = tuple(date.fromisoformat(d) for d in (r.get("holidays") or ()))
        return cls(r["id"], r["instrument"], r["mode"], decimals, MarketRules(**r["rules"]),
                   tuple((a, b) for a, b in r["sessions"]), r["fee_bps"], r["t_plus_1"], r["in_close"], holidays,
                   years, expires)


@dataclass(frozen=True, slots=True)
class SessionState:
    """A market's session as its row holds it: open or not, its trading day, an operator's override."""

    session_open: bool
    trading_day: date | None
    override_until: datetime | None
    override_reason: str | None

    @classmethod
    def from_row(cls, r: Mapping[Any, Any]) -> SessionState:
        return cls(bool(r["session_open"]), r["trading_day"], r["override_until"], r["override_reason"])


@dataclass(frozen=True, slots=True)
class MarketRow:
    """A market as `markets` holds it: its rules (with the instrument's grid and term) and its state."""

    market: Market
    session: SessionState
    reference_price: int | None
    halted: bool
    applied_seq: int


@dataclass(frozen=True, slots=True)
class Amendment:
    """A change of a market's rules from a trading day on (a row of `market_amendments`)."""

    id: int
    market_id: str
    effective_from: date
    settings: dict[str, Any]
    applied: bool
    operator_action: dict[str, Any] | None

    @classmethod
    def from_row(cls, r: Mapping[Any, Any]) -> Amendment:
        return cls(r["id"], r["market_id"], r["effective_from"], dict(_json(r["settings"]) or {}),
                   r["applied_at"] is not None, _json(r["operator_action"]))


@dataclass(frozen=True, slots=True)
class MarketEvent:
    """A row of `market_events`: an open, pause, close, an amendment scheduled or taking effect."""

    id: int
    at: datetime
    kind: str
    trading_day: date | None
    actor: str
    detail: dict[str, Any]

    @classmethod
    def from_row(cls, r: Mapping[Any, Any]) -> MarketEvent:
        return cls(r["id"], r["at"], r["kind"], r["trading_day"], r["actor"], dict(_json(r["detail"]) or {}))


@dataclass(frozen=True, slots=True)
class Candle:
    """OHLC of the trades in one interval starting at `start` (UTC microseconds)."""

    start: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    turnover: int


@dataclass(frozen=True, slots=True)
class DailyStat:
    """One trading day of one mode of an instrument, and the day's official close (None before it)."""

    trading_day: date
    mode: str
    open: int
    high: int
    low: int
    last: int
    volume: int
    turnover: int
    trades: int
    close: int | None
    close_method: str | None


@dataclass(frozen=True, slots=True)
class ClosePrice:
    """A row of `close_prices`: an instrument's close of a trading day and how it was found."""

    instrument: str
    trading_day: date
    price: int
    method: str
    volume: int
    turnover: int


@dataclass(frozen=True, slots=True)
class InCloseTrades:
    """What a day's in-close trades of an instrument come to (the close's VWAP inputs)."""

    turnover: int
    volume: int
    price_times_qty: int


# --- what trading answers: typed results of orders, listings, negotiation and auctions --------------------
# The api renders each as its schema (api/schemas/trading.py); `as_dict` is the same answer as a dict, for the
# callers inside exchange that read one (exchange.pledging's enforcement sale records and answers the order).

# One event of the caller's own command, in its units (exchange.trading.orders._events_view): its fields by
# kind, as the WebSocket and the journal's readers have them; events keep their shapes.
EventView = dict[str, Any]

# A deposit is held while its auction runs, then returned (the row's `cancelled`/`filled` end it).
_DEPOSIT_STATUS = {"open": "held", "cancelled": "returned", "filled": "returned"}


@dataclass(frozen=True, slots=True)
class ShownOrder:
    """An order, listing, take, auction lot, bid -- or an auction registration's deposit (a row of `orders`
    that is not an order) -- with its market's decimals, as answered."""

    row: Order
    decimals: int

    @property
    def is_deposit(self) -> bool:
        return self.row.kind == "deposit"

    @property
    def deposit_status(self) -> str:
        return _DEPOSIT_STATUS.get(self.row.status, self.row.status)

    def as_dict(self) -> dict[str, Any]:
        o, d = self.row, self.decimals
        if self.is_deposit:
            return {"id": o.id, "market_id": o.market_id, "participant_id": o.participant_id, "kind": "deposit",
                    "auction_id": o.parent, "amount": to_text(o.price or 0, 2), "status": self.deposit_status,
                    "reason": o.reason, "hold_id": o.hold_id, "trading_day": o.trading_day, "client_id": o.client_id}
        return {"id": o.id, "market_id": o.market_id, "participant_id": o.participant_id, "kind": o.kind,
                "side": o.side, "type": o.type, "tif": o.tif, "price": None if o.price is None else to_text(o.price, 2),
                "quantity": to_text(o.qty, d), "open_quantity": to_text(o.open_qty, d),
                "filled_quantity": to_text(o.filled_qty, d), "filled_amount": to_text(o.filled_notional, 2),
                "fees": to_text(o.fees, 2), "status": o.status, "reason": o.reason, "hold_id": o.hold_id,
                "trading_day": o.trading_day, "client_id": o.client_id}


@dataclass(frozen=True, slots=True)
class Submitted:
    """A new order, listing, take, lot, registration or bid: its row as the sequencer wrote it and the
    caller's events; a replay (the client id was journaled before) has no events."""

    order: ShownOrder
    events: list[EventView]
    replayed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"deposit" if self.order.is_deposit else "order": self.order.as_dict(), "events": self.events,
                **({"replayed": True} if self.replayed else {})}


@dataclass(frozen=True, slots=True)
class Journaled:
    """A command without an order row of its own (a quote, a response, a counter, a confirmation, an auction
    step): its journal sequence number and the caller's events; a replay has none."""

    seq: int
    events: list[EventView]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Listing:
    """An open listing (挂牌) as the public sees it: no one named. `rank` 1 is its side's best price level."""

    listing_id: int
    side: str
    price: int
    qty: int
    rank: int
    enforcement_of: str | None
    decimals: int

    @property
    def place(self) -> list[Any]:
        """Its place among the listings (buys, then sells; best price first; then oldest): never changes."""
        return [self.side, -self.price if self.side == "buy" else self.price, self.listing_id]


@dataclass(frozen=True, slots=True)
class Quote:
    """A live block quote (大宗协议) the caller may see."""

    quote_id: int
    participant_id: int
    side: str
    price: int
    qty: int
    audience: str
    counterparties: tuple[int, ...]
    decimals: int


@dataclass(frozen=True, slots=True)
class Deal:
    """A negotiation on a quote: the responder, who stands confirmed on the current terms, the terms; `status`
    `open`, or how it ended (matching.events: declined, traded, end_of_day, quote_withdrawn, ...)."""

    deal_id: int
    quote_id: int
    responder: int
    confirmed: tuple[int, ...]
    price: int
    qty: int
    decimals: int
    status: str = "open"


@dataclass(frozen=True, slots=True)
class BlockDeal:
    """A row of `block_deals`: a negotiation as its events left it (exchange/trading/journal.py)."""

    market_id: str
    deal_id: int
    quote_id: int
    quoter_id: int
    responder_id: int
    price: int
    qty: int
    confirmed: tuple[int, ...]
    status: str
    ended_seq: int | None

    @classmethod
    def from_row(cls, r: Mapping[Any, Any]) -> BlockDeal:
        return cls(r["market_id"], r["deal_id"], r["quote_id"], r["quoter_id"], r["responder_id"], r["price"],
                   r["qty"], tuple(r["confirmed"]), r["status"], r["ended_seq"])

    def party(self, participant_id: int) -> bool:
        return participant_id in (self.quoter_id, self.responder_id)


@dataclass(frozen=True, slots=True)
class Allocation:
    bid_id: int
    price: int
    qty: int
    amount: int


@dataclass(frozen=True, slots=True)
class AuctionView:
    """An auction lot as the public sees it: terms, phase, counts, and once allocated the results (bids,
    not bidders). `winners` only for top_percent allocation; `allocations` only once allocated."""

    auction_id: int
    phase: str
    end_ts: int | None
    extensions: int
    qty: int
    term_years: int
    min_price: int
    increment: int
    deposit: int
    min_bid_qty: int
    cap_per_bidder: int | None
    max_bids_per_bidder: int
    allocation: str
    top_percent: int
    irrevocable: bool
    registered: int
    bidders: int
    bids_placed: int
    highest_price: int | None
    enforcement_of: str | None
    winners: int | None
    allocations: tuple[Allocation, ...] | None
    decimals: int


@dataclass(frozen=True, slots=True)
class AuctionStepped:
    """An auction's phase change and the auction after it."""

    step: Journaled
    auction: AuctionView


@dataclass(frozen=True, slots=True)
class DeadManSwitch:
    """A row of `dead_man_switches`: one participant's switch over one market (scope `*`: every market)."""

    participant_id: int
    scope: str
    timeout_ms: int | None
    deadline: datetime | None  # None: disarmed
    renewed_at: datetime | None
    client_id: str | None
    firing_since: datetime | None  # a firing claimed and not finished yet
    last_fired_at: datetime | None
    last_fired_cancelled: int | None

    @classmethod
    def from_row(cls, r: Mapping[Any, Any]) -> DeadManSwitch:
        return cls(r["participant_id"], r["scope"], r["timeout_ms"], r["deadline"], r["renewed_at"], r["client_id"],
                   r["firing_since"], r["last_fired_at"], r["last_fired_cancelled"])

    @property
    def market_id(self) -> str | None:
        return None if self.scope == "*" else self.scope
