"""Money arithmetic of trading, in integers: notional, fees, and the cash a buy order must hold.

Prices are fen per whole unit of the instrument and per year of its term; quantities are base units
(10**decimals per unit). A term of `years` multiplies the money: an emission right of q t/yr for a
5-year term at p per t·yr costs p × q × 5 (`years` is 1 for everything that has no term). Markets
are set up so that tick × lot is a multiple of 10**decimals, so every notional is whole fen.
Fees are charged per order on its cumulative notional (rounded up to the fen), fill by fill as the
difference, so the fees of many small fills never exceed the fee of one fill of the same total and a
buy order's cash hold (limit notional + its fee) always covers every fill.
"""

from __future__ import annotations

BPS = 10_000


def notional(price: int, qty: int, decimals: int, years: int = 1) -> int:
    value, rest = divmod(price * qty * years, int(10**decimals))  # int: mypy types int ** int as Any
    if rest:
        raise ValueError(f"{price} fen x {qty} base units x {years} years is not a whole number of fen")
    return value


def fee(amount: int, fee_bps: int) -> int:
    return -(-amount * fee_bps // BPS)


def buy_hold(limit_price: int, qty: int, decimals: int, fee_bps: int, years: int = 1) -> int:
    n = notional(limit_price, qty, decimals, years)
    return n + fee(n, fee_bps)


def fill_fee(notional_before: int, notional_after: int, fee_bps: int) -> int:
    """The fee of one fill: the order's fee on its new cumulative notional minus the fee so far."""
    return fee(notional_after, fee_bps) - fee(notional_before, fee_bps)


def buy_need(limit_price: int, open_qty: int, filled_notional: int, decimals: int, fee_bps: int,
             years: int = 1) -> int:
    """What a resting buy's rest can still cost: its open quantity at its limit (rounded up to the fen) plus
    the fee that adds to its cumulative notional. A hold sized by `buy_hold` and posted fill by fill never
    holds less, whatever prices it filled at; what it holds above this is free to release."""
    rest = -(-limit_price * open_qty * years // int(10**decimals))
    return rest + fee(filled_notional + rest, fee_bps) - fee(filled_notional, fee_bps)
