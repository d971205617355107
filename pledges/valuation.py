"""Collateral valuation, margin levels and usable deadlines, in integers (fen, base units, basis points).

value (fen) = floor(quantity × close price × years × (1 − haircut)), where quantity is in base units
(10**decimals per unit), the close price is fen per whole unit (and, for an emission right, per year of
its term), `years` is the instrument's term (an emission right's `validity_years`; 1 for everything
else: exchange/trading/pricing.py) and the haircut is a discount in basis points (2000 = value at 80 % of the
close). Rounding is down: the bank never sees more cover than there is.

collateral ratio = value / secured amount. Levels, per pledge (defaults after the 上海环交所
carbon-lending rules as the issue states them): at or above `warning` (130 %) all is well; below it a
warning; below `margin_call` (110 %) a margin call with a cure deadline before the next open; below
`liquidation` (100 % by default: the collateral no longer covers the debt) the bank may enforce at once.
Comparisons cross-multiply, so no ratio is rounded before it is judged.

Bounds: a valuation is at most MAX_VALUE fen (2^53 - 1, about 90 万亿 CNY: every integer an answer carries
stays exact for JavaScript clients); a revaluation that would value any pledge above it is refused whole
(`valuation_out_of_range`, 422: such a price is no close). The ratio shown is capped at MAX_RATIO_BPS
(1,000,000 %, a hundred times the highest threshold one may set); the level is judged on the exact value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pledges.errors import PledgeError

BPS = 10_000
SHANGHAI = ZoneInfo("Asia/Shanghai")
LEVELS = ("ok", "warning", "margin_call", "liquidation")
DEFAULT_WARNING_BPS = 13_000
DEFAULT_MARGIN_CALL_BPS = 11_000
DEFAULT_LIQUIDATION_BPS = 10_000
MAX_VALUE = 2**53 - 1  # fen
MAX_THRESHOLD_BPS = 100 * BPS
MAX_RATIO_BPS = 100 * MAX_THRESHOLD_BPS


@dataclass(frozen=True, slots=True)
class Thresholds:
    warning_bps: int = DEFAULT_WARNING_BPS
    margin_call_bps: int = DEFAULT_MARGIN_CALL_BPS
    liquidation_bps: int = DEFAULT_LIQUIDATION_BPS

    def check(self) -> Thresholds:
        if not (self.warning_bps >= self.margin_call_bps >= self.liquidation_bps > 0):
            raise PledgeError("invalid_thresholds",
                              "thresholds must satisfy warning >= margin call >= liquidation > 0", 422)
        if self.warning_bps > MAX_THRESHOLD_BPS:
            raise PledgeError("invalid_thresholds", "a collateral ratio above 10000 % is not a threshold", 422)
        return self


def check_haircut(haircut_bps: int) -> int:
    if not 0 <= haircut_bps < BPS:
        raise PledgeError("invalid_haircut", "haircut is a discount in basis points, 0 to 9999", 422)
    return haircut_bps


def collateral_value(quantity: int, decimals: int, price_fen: int, haircut_bps: int, years: int = 1) -> int:
    unit: int = 10**decimals  # int ** int is typed Any (a negative exponent gives a float)
    return quantity * price_fen * years * (BPS - haircut_bps) // (unit * BPS)


def check_value(value: int, what: str) -> int:
    """Refuse a valuation beyond MAX_VALUE fen (see the module docstring)."""
    if value > MAX_VALUE:
        raise PledgeError("valuation_out_of_range", f"at this price {what} would be worth more than "
                          f"{MAX_VALUE // 100}.{MAX_VALUE % 100:02d} CNY: refused, and nothing was marked", 422)
    return value


def ratio_bps(value: int, secured: int) -> int:
    """value / secured in basis points, rounded down, capped at MAX_RATIO_BPS."""
    return min(value * BPS // secured, MAX_RATIO_BPS)


def level(value: int, secured: int, th: Thresholds) -> str:
    """The margin level of `value` against `secured` (cross-multiplied: exact at the boundary)."""
    scaled = value * BPS
    if scaled < th.liquidation_bps * secured:
        return "liquidation"
    if scaled < th.margin_call_bps * secured:
        return "margin_call"
    if scaled < th.warning_bps * secured:
        return "warning"
    return "ok"


def worse(a: str, b: str) -> bool:
    return LEVELS.index(a) > LEVELS.index(b)


def end_of_day(d: date) -> datetime:
    """Midnight after `d` in Shanghai, as UTC: a term ending on `d` covers all of that day."""
    return datetime.combine(d + timedelta(days=1), time(0), SHANGHAI).astimezone(UTC)


def usable_deadline(kind: str, instrument_attrs: dict[str, Any], batch_attrs: dict[str, Any]) -> date | None:
    """The last day the units are usable, where the kind has one.

    Emission rights: the batch's `valid_until`. CEA: allowances of compliance year Y are surrendered
    by the end of Y + 1 (national ETS practice), after which they stop counting for compliance.
    Credits (CCER, CDCER, forest tickets) carry a vintage but no hard deadline.
    """
    if kind == "emission_right" and batch_attrs.get("valid_until"):
        return date.fromisoformat(str(batch_attrs["valid_until"]))
    if kind == "cea" and instrument_attrs.get("compliance_year"):
        return date(int(instrument_attrs["compliance_year"]) + 1, 12, 31)
    return None


def deadline_near(deadline: date, as_of: date, horizon_days: int) -> bool:
    return deadline - as_of <= timedelta(days=horizon_days)
