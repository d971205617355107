"""Money arithmetic of trading, in integers: notional, fees, and the cash a buy order must hold.

Prices are fen per whole unit of the instrument; quantities are base units (10**decimals per unit).
Markets are set up so that tick × lot is a multiple of 10**decimals, so every notional is whole fen.
Fees are charged per order on its cumulative notional (rounded up to the fen), fill by fill as the
difference, so the fees of many small fills never exceed the fee of one fill of the same total and a
buy order's cash hold (limit notional + its fee) always covers every fill.
"""

from __future__ import annotations

BPS = 10_000


def notional(price: int, qty: int, decimals: int) -> int:
    value, rest = divmod(price * qty, 10**decimals)
    if rest:
        raise ValueError(f"{price} fen x {qty} base units is not a whole number of fen")
    return value


def fee(amount: int, fee_bps: int) -> int:
    return -(-amount * fee_bps // BPS)


def buy_hold(limit_price: int, qty: int, decimals: int, fee_bps: int) -> int:
    n = notional(limit_price, qty, decimals)
    return n + fee(n, fee_bps)


def fill_fee(notional_before: int, notional_after: int, fee_bps: int) -> int:
    """The fee of one fill: the order's fee on its new cumulative notional minus the fee so far."""
    return fee(notional_after, fee_bps) - fee(notional_before, fee_bps)
