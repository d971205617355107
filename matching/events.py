"""Events the engines emit.

An event is a plain tuple whose first item is its kind; the rest follow the field names in `FIELDS`.
Tuples rather than classes because the continuous book emits one or more per command on its hot path
and a tuple display costs a fifth of an instance construction; they also serialise to JSON as is.
Use `as_dict` (or unpack by position) on the consumer side.

Order of events within one `process` call is meaningful: an order's `accepted` comes before its trades,
trades come in execution order, and a remainder's `cancelled`/`converted` comes last.
"""

from __future__ import annotations

from typing import Any

Event = tuple[Any, ...]

ACCEPTED = "accepted"
REJECTED = "rejected"
TRADE = "trade"
CANCELLED = "cancelled"
REDUCED = "reduced"
EXPIRED = "expired"
CONVERTED = "converted"
HALTED = "halted"
RESUMED = "resumed"
REFERENCE_SET = "reference_set"
RULES_SET = "rules_set"
QUOTED = "quoted"
DEAL_PROPOSED = "deal_proposed"
DEAL_CONFIRMED = "deal_confirmed"
DEAL_CLOSED = "deal_closed"
AUCTION_ANNOUNCED = "auction_announced"
AUCTION_PHASE = "auction_phase"
REGISTERED = "registered"
BID_ACCEPTED = "bid_accepted"
BID_WITHDRAWN = "bid_withdrawn"
BID_REPLACED = "bid_replaced"
AUCTION_EXTENDED = "auction_extended"
ALLOCATED = "allocated"
AUCTION_RESULT = "auction_result"

# Trade modes: which venue produced a trade. Market data uses them to keep block trades out of the
# quote and the close.
CONTINUOUS = "continuous"
LISTING = "listing"
BLOCK = "block"
AUCTION = "auction"

# Reasons carried by `cancelled` and `deal_closed` events (not rejections: see reasons.py for those).
BY_REQUEST = "requested"
IOC_REMAINDER = "ioc_remainder"
SELF_TRADE_PREVENTED = "self_trade"
QUOTE_WITHDRAWN = "quote_withdrawn"
QUOTE_EXHAUSTED = "quote_exhausted"
DECLINED = "declined"
END_OF_DAY = "end_of_day"
TRADED = "traded"
RULES_AMENDED = "rules_amended"  # off the new tick or lot when an amendment took effect
SUSPENDED = "suspended"  # the owner was suspended: the exchange cancelled what it had resting (not the engine's)
MASS_CANCEL = "mass_cancel"  # the owner asked the exchange to cancel everything it had resting (not the engine's)
VENUE = "venue"  # an operator of the exchange cancelled the member's order (its request is in the audit trail)
DEAD_MAN = "dead_man_switch"  # the owner's dead-man switch was not renewed in time: the exchange cancelled all

# `owner`, `maker_owner`, `taker_owner`, `seller`, `bidder`, `proposer`: who the command's sender is, as
# the sequencer names it (envx: a participant id). Messages of `rejected` mark their numbers by kind
# (reasons.price, reasons.qty, reasons.at) for the application to render in the user's units.
FIELDS: dict[str, tuple[str, ...]] = {
    ACCEPTED: ("order_id", "owner", "side", "type", "tif", "price", "qty"),
    REJECTED: ("ref", "code", "message"),
    TRADE: (
        "mode",
        "seq",
        "ts",
        "trade_id",
        "price",
        "qty",
        "taker_side",
        "maker_id",
        "maker_owner",
        "taker_id",
        "taker_owner",
    ),
    CANCELLED: ("order_id", "owner", "qty", "reason"),
    REDUCED: ("order_id", "owner", "old_qty", "new_qty"),
    EXPIRED: ("order_id", "owner", "qty"),
    CONVERTED: ("order_id", "price", "qty"),
    HALTED: ("reason",),
    RESUMED: (),
    REFERENCE_SET: ("price", "band_low", "band_high"),
    RULES_SET: ("rules", "band_low", "band_high"),
    QUOTED: ("quote_id", "owner", "side", "price", "qty", "audience", "counterparties"),
    DEAL_PROPOSED: ("deal_id", "quote_id", "proposer", "price", "qty"),
    DEAL_CONFIRMED: ("deal_id", "owner"),
    DEAL_CLOSED: ("deal_id", "reason"),
    AUCTION_ANNOUNCED: ("auction_id", "seller", "qty", "min_price", "allocation"),
    AUCTION_PHASE: ("auction_id", "phase", "end_ts"),
    REGISTERED: ("auction_id", "bidder", "deposit"),
    BID_ACCEPTED: ("auction_id", "bid_id", "bidder", "price", "qty"),
    BID_WITHDRAWN: ("auction_id", "bid_id", "bidder", "qty"),
    BID_REPLACED: ("auction_id", "bid_id", "bidder", "by"),  # a raise `by` replaced standing bid `bid_id`
    AUCTION_EXTENDED: ("auction_id", "end_ts", "round"),
    ALLOCATED: ("auction_id", "bid_id", "bidder", "price", "qty"),
    AUCTION_RESULT: ("auction_id", "sold_qty", "unsold_qty", "clearing_price"),
}

# Positions of the trade fields most consumers read, to unpack without a dict.
T_MODE, T_SEQ, T_TS, T_ID, T_PRICE, T_QTY = 1, 2, 3, 4, 5, 6
T_TAKER_SIDE, T_MAKER_ID, T_MAKER_OWNER, T_TAKER_ID, T_TAKER_OWNER = 7, 8, 9, 10, 11


def as_dict(event: Event) -> dict[str, Any]:
    """Names an event's fields: {"kind": ..., field: value, ...}."""
    kind = event[0]
    names = FIELDS[kind]
    if len(names) != len(event) - 1:
        raise ValueError(f"{kind} event has {len(event) - 1} fields, expected {len(names)}")
    out: dict[str, Any] = {"kind": kind}
    out.update(zip(names, event[1:], strict=True))
    return out


def rejected(ref: Any, code: str, message: str) -> Event:
    return (REJECTED, ref, code, message)
