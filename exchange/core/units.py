"""Decimal strings <-> integer base units. The only place quantities and money are parsed."""

from __future__ import annotations

import re

from exchange.core.errors import Invalid

_NUMBER = re.compile(r"(0|[1-9][0-9]{0,17})(?:\.([0-9]{1,12}))?", re.ASCII)  # ASCII digits, nothing around them
MAX_BASE = 2**53 - 1
CNY_DECIMALS = 2


def to_base(text: str, decimals: int, *, field: str = "quantity", allow_zero: bool = False) -> int:
    """'12.5' with 3 decimals -> 12500. Off-grid, negative, exponent, padded (" 12", "12\\n"), full-width or
    other non-ASCII digits ("１２", "١٢") and float-ish input is refused."""
    if not isinstance(text, str):
        raise Invalid("invalid_number", f"{field} must be a decimal string such as \"12.50\"")
    m = _NUMBER.fullmatch(text)
    if not m:
        raise Invalid("invalid_number", f"{field} {text!r} is not a plain non-negative decimal number")
    whole, frac = m.group(1), m.group(2) or ""
    if len(frac) > decimals:
        if frac[decimals:].strip("0"):
            raise Invalid("off_grid", f"{field} {text} has more than {decimals} decimal places")
        frac = frac[:decimals]
    value = int(whole) * 10**decimals + int(frac.ljust(decimals, "0") or "0")
    if value > MAX_BASE:
        raise Invalid("number_too_large", f"{field} {text} is too large")
    if value == 0 and not allow_zero:
        raise Invalid("invalid_number", f"{field} must be greater than zero")
    return value


def to_text(value: int, decimals: int) -> str:
    sign = "-" if value < 0 else ""
    value = abs(value)
    if decimals == 0:
        return f"{sign}{value}"
    q, r = divmod(value, 10**decimals)
    return f"{sign}{q}.{r:0{decimals}d}"
