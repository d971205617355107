"""How envx speaks quantities, money and times to the outside, and how it reads them: the one place.

Inside, quantities are integers in the instrument's base unit (10**decimals per unit), money integer
fen, times UTC microseconds or aware datetimes. Outside -- in every answer, event, webhook and message:

- a quantity is a decimal string in the instrument's unit with exactly the instrument's decimals
  (`quantity`): "83" for a whole-tonne instrument, "12.500" for one kept in kg;
- money (prices, amounts, fees, deposits) is a decimal string in CNY with two decimals (`cny`): "4200.00";
- a time is ISO 8601 / RFC 3339 in UTC with microseconds and `Z` (`iso`): "2026-12-01T03:54:52.322022Z".
  Trading days, terms and deadlines are calendar dates "YYYY-MM-DD" (Asia/Shanghai calendar days);
- carbon units are spelled `tCO2e` (`CARBON_UNIT`).

The pure cores (matching/, pledges/) know no decimals, so their messages mark each number by what it is:
`{price:10001}` (fen per unit), `{qty:500}` (base units), `{cny:6625000}` (fen), `{ts:1796112306965627}`
(UTC microseconds). `speak` renders a message in the market's units; nothing marked leaves untranslated.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from exchange.core.errors import Invalid

_NUMBER = re.compile(r"(0|[1-9][0-9]{0,17})(?:\.([0-9]{1,12}))?", re.ASCII)  # ASCII digits, nothing around them
MAX_BASE = 2**53 - 1
CNY_DECIMALS = 2
CARBON_UNIT = "tCO2e"  # the registries' spelling (Verra, Gold Standard, 全国碳市场: tCO2e)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
    value: int = int(whole) * 10**decimals + int(frac.ljust(decimals, "0") or "0")
    if value > MAX_BASE:
        raise Invalid("number_too_large", f"{field} {text} is too large")
    if value == 0 and not allow_zero:
        raise Invalid("invalid_number", f"{field} must be greater than zero")
    return value


def to_text(value: int, decimals: int) -> str:
    """Base units as a decimal string with exactly `decimals` places: 12500, 3 -> "12.500"."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    if decimals == 0:
        return f"{sign}{value}"
    q, r = divmod(value, 10**decimals)
    return f"{sign}{q}.{r:0{decimals}d}"


def quantity(base: int, decimals: int) -> str:
    """A quantity in the instrument's unit, with the instrument's decimals."""
    return to_text(base, decimals)


def cny(fen: int) -> str:
    """Money -- a price, an amount, a fee, a deposit -- in CNY."""
    return to_text(fen, CNY_DECIMALS)


def micros(at: datetime) -> int:
    """An aware datetime as UTC microseconds (the sequencers' and the ledger's clock)."""
    return (at - _EPOCH) // timedelta(microseconds=1)


def iso(at: datetime | int | str) -> str:
    """A time as envx writes it: UTC, microseconds, `Z`. Takes an aware datetime, UTC microseconds, or an
    ISO 8601 string with an offset (as stored in older JSON)."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    elif isinstance(at, int) and not isinstance(at, bool):
        q, r = divmod(at, 1_000_000)
        at = datetime.fromtimestamp(q, UTC).replace(microsecond=r)
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise TypeError(f"not an aware time: {at!r}")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_or_none(at: datetime | int | str | None) -> str | None:
    return None if at is None else iso(at)


def times_in_iso(value: Any) -> Any:
    """Every datetime in a JSON-able value written by `iso` (strings are left as they are)."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: times_in_iso(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [times_in_iso(v) for v in value]
    return value


_STORED_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")


def stored_times(value: Any) -> Any:
    """Times in JSON the registry stored itself (event data): aware datetimes and ISO strings with an
    offset, written by `iso`. Never for what a user wrote: their text is theirs."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, str) and _STORED_TIME.fullmatch(value):
        return iso(value)
    if isinstance(value, dict):
        return {k: stored_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [stored_times(v) for v in value]
    return value


def day(d: date | datetime | str) -> str:
    """A calendar date (trading day, term, deadline) as YYYY-MM-DD."""
    if isinstance(d, datetime):
        d = d.date()
    return d if isinstance(d, str) else d.isoformat()


# --- the marked messages of the pure cores ---------------------------------------------------------

_MARK = re.compile(r"\{(price|qty|cny|ts):(-?[0-9]+)\}")


def speak(message: str, decimals: int) -> str:
    """A pure core's message with its marked numbers in the user's units (see the module docstring)."""
    def one(m: re.Match[str]) -> str:
        kind, value = m.group(1), int(m.group(2))
        if kind == "qty":
            return quantity(value, decimals)
        if kind == "ts":
            return iso(value)
        return cny(value)  # price or cny: fen

    return _MARK.sub(one, message)


# --- engine events ---------------------------------------------------------------------------------

# Event fields by what they hold (matching/events.py FIELDS): money in CNY, quantities in the
# instrument's unit, times in ISO 8601.
MONEY_FIELDS = frozenset({"price", "min_price", "clearing_price", "deposit", "band_low", "band_high"})
QUANTITY_FIELDS = frozenset({"qty", "old_qty", "new_qty", "sold_qty", "unsold_qty"})
TIME_FIELDS = frozenset({"ts", "end_ts"})
_NO_LIMIT = 1 << 62  # matching.rules.NO_LIMIT: a band without an upper end


def event_fields(fields: dict[str, Any], decimals: int) -> dict[str, Any]:
    """An engine event's named fields (matching.events.as_dict) as the outside reads them."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if isinstance(v, int) and not isinstance(v, bool) and v is not None:
            if k == "price" and fields.get("type") == "market":
                v = None  # a market order has no price (the engine's 0 or no-limit marks are not prices)
            elif k in MONEY_FIELDS:
                v = None if v >= _NO_LIMIT else cny(v)
            elif k in QUANTITY_FIELDS:
                v = quantity(v, decimals)
            elif k in TIME_FIELDS:
                v = iso(v)
        elif k == "message" and isinstance(v, str):
            v = speak(v, decimals)
        out[k] = v
    return out
