"""Every rejection reason code the engines emit, in one place.

Codes are stable snake_case strings: the API layer maps them to problem-detail codes and clients
branch on them, so never rename one; add a new code instead.
"""

from __future__ import annotations

# --- sequencing and identity -------------------------------------------------------------------
STALE_SEQUENCE = "stale_sequence"
DUPLICATE_ORDER_ID = "duplicate_order_id"
ORDER_ID_NOT_INCREASING = "order_id_not_increasing"
UNKNOWN_ORDER = "unknown_order"
NOT_ORDER_OWNER = "not_order_owner"
UNKNOWN_COMMAND = "unknown_command"

# --- order shape -------------------------------------------------------------------------------
INVALID_SIDE = "invalid_side"
INVALID_ORDER_TYPE = "invalid_order_type"
INVALID_TIME_IN_FORCE = "invalid_time_in_force"
INVALID_STP = "invalid_stp"
INVALID_PRICE = "invalid_price"
INVALID_QUANTITY = "invalid_quantity"
OFF_TICK = "off_tick"
OFF_LOT = "off_lot"
PRICE_OUT_OF_BAND = "price_out_of_band"
QUANTITY_BELOW_MINIMUM = "quantity_below_minimum"
QUANTITY_ABOVE_MAXIMUM = "quantity_above_maximum"

# --- market state ------------------------------------------------------------------------------
MARKET_HALTED = "market_halted"
NOT_HALTED = "not_halted"
INVALID_RULES = "invalid_rules"

# --- continuous book ---------------------------------------------------------------------------
FOK_UNFILLABLE = "fok_unfillable"
NO_LIQUIDITY = "no_liquidity"
REDUCE_NOT_LOWER = "reduce_not_lower"

# --- listing -----------------------------------------------------------------------------------
NOT_WITHIN_BEST_LEVELS = "not_within_best_levels"
SELF_TRADE = "self_trade"
QUANTITY_EXCEEDS_REMAINING = "quantity_exceeds_remaining"

# --- block negotiation -------------------------------------------------------------------------
UNKNOWN_QUOTE = "unknown_quote"
UNKNOWN_DEAL = "unknown_deal"
NOT_IN_AUDIENCE = "not_in_audience"
NOT_A_PARTY = "not_a_party"
INVALID_AUDIENCE = "invalid_audience"
ALREADY_CONFIRMED = "already_confirmed"

# --- auctions ----------------------------------------------------------------------------------
UNKNOWN_AUCTION = "unknown_auction"
DUPLICATE_AUCTION_ID = "duplicate_auction_id"
INVALID_AUCTION = "invalid_auction"
AUCTION_WRONG_PHASE = "auction_wrong_phase"
AUCTION_NOT_OPEN = "auction_not_open"
AUCTION_STILL_OPEN = "auction_still_open"
REGISTRATION_CLOSED = "registration_closed"
ALREADY_REGISTERED = "already_registered"
DEPOSIT_INSUFFICIENT = "deposit_insufficient"
BIDDER_NOT_REGISTERED = "bidder_not_registered"
BID_BELOW_MINIMUM = "bid_below_minimum"
BID_INCREMENT = "bid_increment"
BID_CAP_EXCEEDED = "bid_cap_exceeded"
TOO_MANY_BIDS = "too_many_bids"
BID_IRREVOCABLE = "bid_irrevocable"
UNKNOWN_BID = "unknown_bid"
SELLER_CANNOT_BID = "seller_cannot_bid"
BID_NOT_ABOVE_STANDING = "bid_not_above_standing"
RAISE_LOWERS_QUANTITY = "raise_lowers_quantity"
STANDING_BID_CHANGED = "standing_bid_changed"

DESCRIPTIONS: dict[str, str] = {
    STALE_SEQUENCE: "the sequence number is not above the last one applied (replayed or out of order)",
    DUPLICATE_ORDER_ID: "an order, listing, quote or bid with this id is already live",
    ORDER_ID_NOT_INCREASING: "ids are assigned by the sequencer and increase; this one is not above the last",
    UNKNOWN_ORDER: "no live order or listing has this id",
    NOT_ORDER_OWNER: "the order belongs to another account",
    UNKNOWN_COMMAND: "this engine does not handle that command",
    INVALID_SIDE: "side must be 'buy' or 'sell'",
    INVALID_ORDER_TYPE: "order type must be 'limit' or 'market'",
    INVALID_TIME_IN_FORCE: "time in force must be 'day', 'ioc' or 'fok'",
    INVALID_STP: "self-trade prevention must be 'cancel_taker', 'cancel_maker' or 'cancel_both'",
    INVALID_PRICE: "the price must be a positive integer number of ticks",
    INVALID_QUANTITY: "the quantity must be a positive integer",
    OFF_TICK: "the price is not a multiple of the tick",
    OFF_LOT: "the quantity is not a multiple of the lot",
    PRICE_OUT_OF_BAND: "the price is outside the band around the reference price",
    QUANTITY_BELOW_MINIMUM: "the quantity is below the market's minimum",
    QUANTITY_ABOVE_MAXIMUM: "the quantity is above the market's maximum",
    MARKET_HALTED: "the market is halted; only cancels and reductions are accepted",
    NOT_HALTED: "the market is not halted",
    INVALID_RULES: "the trading rules are not consistent",
    FOK_UNFILLABLE: "a fill-or-kill order cannot be filled in full at once",
    NO_LIQUIDITY: "a market order found nothing on the opposite side",
    REDUCE_NOT_LOWER: "the new quantity must be positive and below the open quantity",
    NOT_WITHIN_BEST_LEVELS: "the listing is not within the allowed best price levels of its side",
    SELF_TRADE: "the taker and the maker are the same account",
    QUANTITY_EXCEEDS_REMAINING: "the quantity exceeds what remains on the listing, quote or auction",
    UNKNOWN_QUOTE: "no live block quote has this id",
    UNKNOWN_DEAL: "no open negotiation has this id",
    NOT_IN_AUDIENCE: "the quote is not addressed to this account",
    NOT_A_PARTY: "the account is not a party to this negotiation",
    INVALID_AUDIENCE: "a directed quote names one counterparty, a group quote at least one",
    ALREADY_CONFIRMED: "this party has already confirmed the current terms",
    UNKNOWN_AUCTION: "no auction has this id",
    DUPLICATE_AUCTION_ID: "an auction with this id exists",
    INVALID_AUCTION: "the auction's terms are inconsistent",
    AUCTION_WRONG_PHASE: "the auction is not in the phase this command needs",
    AUCTION_NOT_OPEN: "the bidding window is not open",
    AUCTION_STILL_OPEN: "the bidding window has not ended yet",
    REGISTRATION_CLOSED: "registration is not open",
    ALREADY_REGISTERED: "the bidder is already registered",
    DEPOSIT_INSUFFICIENT: "the deposit is below the required amount",
    BIDDER_NOT_REGISTERED: "the bidder did not register (with deposit) for this auction",
    BID_BELOW_MINIMUM: "the bid is below the auction's minimum price",
    BID_INCREMENT: "the bid is not the minimum price plus a whole number of increments",
    BID_CAP_EXCEEDED: "the bid's quantity exceeds the per-bidder cap",
    TOO_MANY_BIDS: "the bidder has placed the maximum number of bids (its first bid and its raises)",
    BID_IRREVOCABLE: "bids in this auction cannot be withdrawn",
    UNKNOWN_BID: "no live bid of this bidder has this id",
    SELLER_CANNOT_BID: "the seller cannot bid in its own auction",
    BID_NOT_ABOVE_STANDING: "a raise must be at least one increment above the bidder's standing bid",
    RAISE_LOWERS_QUANTITY: "a raise may not ask for less than the bidder's standing bid (bids are commitments)",
    STANDING_BID_CHANGED: "the bidder's standing bid changed while this bid was on its way; bid again",
}

# The engines' closed set of reason codes (the exchange's enum, exchange/core/refusals.py, has each with
# its HTTP status).
CODES: frozenset[str] = frozenset(DESCRIPTIONS)


# --- numbers in messages -------------------------------------------------------------------------
# The engines know ticks and base units, not decimals: a message marks each number by what it is, and
# the application renders it in the user's units (envx: exchange.core.units.speak). Unmarked numbers in a
# message are counts and ids.


def price(fen: int) -> str:
    """A price (or any money) in the engine's integer unit (fen)."""
    return f"{{price:{fen}}}"


def qty(base: int) -> str:
    """A quantity in base units."""
    return f"{{qty:{base}}}"


def at(ts: int) -> str:
    """A time stamped by the sequencer (UTC microseconds)."""
    return f"{{ts:{ts}}}"
