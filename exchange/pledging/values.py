"""How the registry's stored values read: the clock, times, serial ranges, and amounts and quantities
as decimal strings (money in CNY, quantities in the instrument's unit) in every answer, event and webhook."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from exchange.core.units import CNY_DECIMALS, stored_times, to_text
from pledges import valuation as val

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# ----------------------------------------------------------------------------------- small helpers


def now() -> datetime:
    return datetime.now(UTC)


def today() -> date:
    return now().astimezone(val.SHANGHAI).date()


def micros(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def cny(fen: int | None) -> str | None:
    return None if fen is None else to_text(fen, CNY_DECIMALS)


def ranges_of(v: Any) -> list[tuple[int, int]]:
    return [(int(s), int(e)) for s, e in (v or [])]


# Keys whose integers are money (fen) or quantities (base units) in stored events and enforcement
# states; every answer, event and webhook shows them as decimal strings in CNY or the instrument's unit.
MONEY_KEYS = frozenset({
    "secured_amount", "last_price", "last_value", "price", "value", "amount", "outstanding", "fee", "proceeds",
    "received", "claimed", "paid", "secured", "unsecured", "overdue_amount", "net", "seller_fee", "caps", "total",
})
QUANTITY_KEYS = frozenset({"quantity", "units", "lot_quantity", "sold", "unsold", "filled", "still_frozen",
                           "unfrozen"})


def present(value: Any, decimals: int, unit: str | None = None) -> Any:
    """Stored integers in decimal strings, by key: money in CNY, quantities in the instrument's unit."""
    if isinstance(value, dict):
        return {k: present(v, decimals, "money" if k in MONEY_KEYS else "quantity" if k in QUANTITY_KEYS else unit)
                for k, v in value.items()}
    if isinstance(value, list):
        return [present(v, decimals, unit) for v in value]
    if unit is not None and isinstance(value, int) and not isinstance(value, bool):
        return to_text(value, CNY_DECIMALS if unit == "money" else decimals)
    return value


def shown(view: dict[str, Any], decimals: int) -> dict[str, Any]:
    """An event view (repo.event_view) as callers and webhooks receive it: amounts and quantities in
    decimal strings, the times the registry stored in ISO 8601 (exchange/core/units.py)."""
    out: dict[str, Any] = stored_times({**view, "changes": present(view["changes"], decimals),
                                        "details": present(view["details"], decimals)})
    return out

