"""Commands the engines accept. Each is a value the sequencer journals, then applies; never mutate one.

Prices are integer ticks, quantities integer lots (base units), times integer ticks of whatever clock
the sequencer stamps with. Ids are integers assigned by the sequencer and strictly increasing per engine
(order ids, listing ids, quote ids, deal ids, bid ids each share the engine's one id counter), which
lets an engine detect reuse with one comparison instead of remembering every id it ever saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import reasons

Account = int | str

# Sides, order types, times in force and STP modes are plain strings so that commands and events
# serialise to JSON unchanged.
BUY = "buy"
SELL = "sell"
LIMIT = "limit"
MARKET = "market"  # market-to-limit within the best N levels (最优五档)
DAY = "day"
IOC = "ioc"
FOK = "fok"
CANCEL_TAKER = "cancel_taker"
CANCEL_MAKER = "cancel_maker"
CANCEL_BOTH = "cancel_both"

SIDES = (BUY, SELL)
ORDER_TYPES = (LIMIT, MARKET)
TIFS = (DAY, IOC, FOK)
STP_MODES = (CANCEL_TAKER, CANCEL_MAKER, CANCEL_BOTH)

PUBLIC = "public"
DIRECTED = "directed"
GROUP = "group"
AUDIENCES = (PUBLIC, DIRECTED, GROUP)

PAY_AS_BID = "pay_as_bid"
TOP_PERCENT = "top_percent"
UNIFORM_PRICE = "uniform_price"
ALLOCATIONS = (PAY_AS_BID, TOP_PERCENT, UNIFORM_PRICE)


_type = type  # the exact type, as _require_ints asks; NewOrder's `type` field shadows the builtin


def opposite(side: str) -> str:
    return SELL if side == BUY else BUY


def _require_ints(command: Any, *names: str) -> None:
    """Ids, prices and quantities must be exact ints (not bool, not float): the engines compare and
    do arithmetic on them without further checks."""
    for name in names:
        value = getattr(command, name)
        if type(value) is not int:
            raise TypeError(f"{type(command).__name__}.{name} must be an int, got {value!r}")


# --- market-wide commands (every engine) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Halt:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Resume:
    pass


@dataclass(frozen=True, slots=True)
class SetReference:
    """Sets the reference price (normally the previous close) that the price band is computed from."""

    price: int | None


@dataclass(frozen=True, slots=True)
class EndOfDay:
    """Expires every resting day order, listing or quote."""


@dataclass(frozen=True, slots=True)
class SetRules:
    """New trading rules (`MarketRules.to_dict()`), from an amendment taking effect. What rests off the
    new tick or lot is cancelled (reason `rules_amended`); the band is recomputed around the reference."""

    rules: dict[str, Any]


# --- continuous book ---------------------------------------------------------------------------


# NewOrder and Cancel are the hot commands: a frozen dataclass costs ~1.3 µs to build (every field
# goes through object.__setattr__), more than the book spends on the order, so these two are plain
# slotted dataclasses with a hand-written __init__ (one Python frame, the int check inline, instead of
# the generated __init__ calling __post_init__). They are dataclasses all the same (fields(), replace(),
# ==, repr), and to be treated as immutable: the journal keeps them.
@dataclass(slots=True, init=False)
class NewOrder:
    order_id: int
    account: Account
    side: str
    price: int  # ignored (pass 0) for type=MARKET
    qty: int
    type: str = LIMIT
    tif: str = DAY
    stp: str | None = None  # None: the market's default

    def __init__(
        self,
        order_id: int,
        account: Account,
        side: str,
        price: int,
        qty: int,
        type: str = LIMIT,  # shadows the builtin: the field's name in the journal
        tif: str = DAY,
        stp: str | None = None,
    ) -> None:
        # _require_ints spelled out: this runs once per order on the hot path.
        if _type(order_id) is not int or _type(price) is not int or _type(qty) is not int:
            raise TypeError(_not_ints("NewOrder", order_id=order_id, price=price, qty=qty))
        self.order_id = order_id
        self.account = account
        self.side = side
        self.price = price
        self.qty = qty
        self.type = type
        self.tif = tif
        self.stp = stp


@dataclass(slots=True, init=False)
class Cancel:
    """Cancels an order (book), a listing (listing) or a quote (block)."""

    order_id: int
    account: Account | None = None  # when given, must own the order

    def __init__(self, order_id: int, account: Account | None = None) -> None:
        if type(order_id) is not int:
            raise TypeError(_not_ints("Cancel", order_id=order_id))
        self.order_id = order_id
        self.account = account


def _not_ints(command: str, **values: Any) -> str:
    name, value = next((n, v) for n, v in values.items() if type(v) is not int)
    return f"{command}.{name} must be an int, got {value!r}"


@dataclass(frozen=True, slots=True)
class Reduce:
    """Lowers the open quantity to `qty`; the order keeps its place in the queue."""

    order_id: int
    qty: int
    account: Account | None = None

    def __post_init__(self) -> None:
        _require_ints(self, "order_id", "qty")


# --- listing (挂牌协议) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostListing:
    listing_id: int
    account: Account
    side: str
    price: int
    qty: int

    def __post_init__(self) -> None:
        _require_ints(self, "listing_id", "price", "qty")


@dataclass(frozen=True, slots=True)
class Take:
    take_id: int
    account: Account
    listing_id: int
    qty: int

    def __post_init__(self) -> None:
        _require_ints(self, "take_id", "listing_id", "qty")


# --- block negotiation (大宗协议) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quote:
    quote_id: int
    account: Account
    side: str
    price: int
    qty: int
    audience: str = PUBLIC
    counterparties: tuple[Account, ...] = ()

    def __post_init__(self) -> None:
        _require_ints(self, "quote_id", "price", "qty")


@dataclass(frozen=True, slots=True)
class Respond:
    """A counterparty opens a negotiation on a quote, proposing (and so confirming) its terms."""

    deal_id: int
    quote_id: int
    account: Account
    price: int
    qty: int

    def __post_init__(self) -> None:
        _require_ints(self, "deal_id", "quote_id", "price", "qty")


@dataclass(frozen=True, slots=True)
class Counter:
    """Either party amends the terms of a negotiation; only the amending party stands confirmed."""

    deal_id: int
    account: Account
    price: int
    qty: int

    def __post_init__(self) -> None:
        _require_ints(self, "deal_id", "price", "qty")


@dataclass(frozen=True, slots=True)
class Confirm:
    deal_id: int
    account: Account

    def __post_init__(self) -> None:
        _require_ints(self, "deal_id")


@dataclass(frozen=True, slots=True)
class Decline:
    deal_id: int
    account: Account

    def __post_init__(self) -> None:
        _require_ints(self, "deal_id")


# --- one-way auction (单向竞价) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Announce:
    auction_id: int
    seller: Account
    qty: int
    min_price: int
    increment: int = 1
    deposit: int = 0  # required deposit per bidder, fen
    min_bid_qty: int = 1
    cap_per_bidder: int | None = None  # the most a bidder's standing bid may ask for
    max_bids_per_bidder: int = 1  # bids a bidder may place: its first bid and its raises
    allocation: str = PAY_AS_BID
    top_percent: int = 100  # for TOP_PERCENT: share of bidders (by rank, rounded half up) who win, 1..100
    extension_window: int = 0  # a bid this close to the end extends the window ...
    extension_length: int = 0  # ... to bid time + this
    max_extensions: int = 0
    irrevocable: bool = True

    def __post_init__(self) -> None:
        _require_ints(
            self,
            "auction_id",
            "qty",
            "min_price",
            "increment",
            "deposit",
            "min_bid_qty",
            "max_bids_per_bidder",
            "top_percent",
            "extension_window",
            "extension_length",
            "max_extensions",
        )


@dataclass(frozen=True, slots=True)
class OpenRegistration:
    auction_id: int

    def __post_init__(self) -> None:
        _require_ints(self, "auction_id")


@dataclass(frozen=True, slots=True)
class Register:
    auction_id: int
    bidder: Account
    deposit: int

    def __post_init__(self) -> None:
        _require_ints(self, "auction_id", "deposit")


@dataclass(frozen=True, slots=True)
class OpenBidding:
    auction_id: int
    end_ts: int

    def __post_init__(self) -> None:
        _require_ints(self, "auction_id", "end_ts")


@dataclass(frozen=True, slots=True)
class Bid:
    """A bidder's bid; a bidder has one standing bid, and a later bid is a raise that replaces it.

    `replaces` is the id of the standing bid the sender saw (None: it saw none). The engine refuses the
    bid when that is no longer the bidder's standing bid, so whoever funds a raise funds it against
    exactly the bid it replaces.
    """

    auction_id: int
    bid_id: int
    bidder: Account
    price: int
    qty: int
    replaces: int | None = None

    def __post_init__(self) -> None:
        _require_ints(self, "auction_id", "bid_id", "price", "qty")
        if self.replaces is not None:
            _require_ints(self, "replaces")


@dataclass(frozen=True, slots=True)
class WithdrawBid:
    auction_id: int
    bid_id: int
    bidder: Account

    def __post_init__(self) -> None:
        _require_ints(self, "auction_id", "bid_id")


@dataclass(frozen=True, slots=True)
class CloseAuction:
    auction_id: int

    def __post_init__(self) -> None:
        _require_ints(self, "auction_id")


@dataclass(frozen=True, slots=True)
class Allocate:
    auction_id: int

    def __post_init__(self) -> None:
        _require_ints(self, "auction_id")


@dataclass(frozen=True, slots=True)
class CancelAuction:
    auction_id: int
    reason: str = ""

    def __post_init__(self) -> None:
        _require_ints(self, "auction_id")


@dataclass(frozen=True, slots=True)
class Refused:
    """A command the application refused by the engine's own rule before funding it (an auction's
    `refusal`), journaled in its place so that a retry gets the same refusal. Every engine answers it
    `rejected` with this code and message, referring to `ref`, and changes nothing else."""

    ref: int
    code: str
    message: str

    def __post_init__(self) -> None:
        _require_ints(self, "ref")
        if self.code not in reasons.CODES:  # an engine's own refusal: one of the engines' reason codes
            raise ValueError(f"Refused.code must be a matching.reasons code, got {self.code!r}")


def command_ref(command: Any) -> int | None:
    """The id a rejection refers to: the first integer id field of the command, if any."""
    for name in ("order_id", "listing_id", "take_id", "quote_id", "deal_id", "bid_id", "auction_id"):
        value = getattr(command, name, None)
        if value is not None:
            return value  # type: ignore[no-any-return]
    return None
