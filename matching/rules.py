"""Per-market trading rules: the numbers §6 calls per-instrument settings, and the checks they imply.

`MarketRules.check` is the one statement of the order-shape rules (tick, lot, band, size). The
continuous book's hot path evaluates the same conditions inline as a single guard and asks `check`
for the reason only when the guard fails, so the rule and its reason code still live here alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from . import reasons as R
from .commands import CANCEL_TAKER, STP_MODES

NO_LIMIT = 1 << 62  # stands for "no upper bound" so that guards stay plain integer comparisons


@dataclass(frozen=True, slots=True)
class MarketRules:
    tick: int = 1
    lot: int = 1
    band_bps: int | None = None  # ± band around the reference price, basis points; None: no band
    min_qty: int = 1
    max_qty: int | None = None
    best_n: int = 5  # book: levels a market order may reach; listing: levels a take may reach
    strict_best: bool = False  # listing: only the best price level may be taken (挂牌点选)
    stp: str = CANCEL_TAKER  # default self-trade prevention

    def __post_init__(self) -> None:
        for name in ("tick", "lot", "min_qty", "best_n"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.max_qty is not None and (type(self.max_qty) is not int or self.max_qty < self.min_qty):
            raise ValueError(f"max_qty must be an int >= min_qty, got {self.max_qty!r}")
        if self.band_bps is not None and (type(self.band_bps) is not int or not 0 <= self.band_bps < 10_000):
            raise ValueError(f"band_bps must be an int in [0, 10000), got {self.band_bps!r}")
        if self.stp not in STP_MODES:
            raise ValueError(f"stp must be one of {STP_MODES}, got {self.stp!r}")

    @property
    def max_qty_bound(self) -> int:
        return NO_LIMIT if self.max_qty is None else self.max_qty

    def band(self, reference: int | None) -> tuple[int, int]:
        """The inclusive [low, high] prices allowed, on the tick grid; (tick, NO_LIMIT) without a band."""
        tick = self.tick
        if reference is None or self.band_bps is None:
            return tick, NO_LIMIT
        # Integer maths only: low rounds up and high rounds down, so the band never widens.
        low = -((-reference * (10_000 - self.band_bps)) // 10_000)
        low = max(tick, -((-low) // tick) * tick)
        high = (reference * (10_000 + self.band_bps)) // 10_000 // tick * tick
        return low, high

    def check(self, price: int | None, qty: int, band: tuple[int, int]) -> tuple[str, str] | None:
        """The first rule an order of (price, qty) breaks as (code, message); None if it keeps them all.

        `price=None` checks the quantity only (market orders, takes).
        """
        if type(qty) is not int or qty <= 0:
            return R.INVALID_QUANTITY, f"quantity {qty!r} is not a positive integer"
        if price is not None:
            if type(price) is not int or price <= 0:
                return R.INVALID_PRICE, f"price {price!r} is not a positive integer"
            if price % self.tick:
                return R.OFF_TICK, f"price {R.price(price)} is not a multiple of the tick {R.price(self.tick)}"
        if qty % self.lot:
            return R.OFF_LOT, f"quantity {R.qty(qty)} is not a multiple of the lot {R.qty(self.lot)}"
        if price is not None and not band[0] <= price <= band[1]:
            return R.PRICE_OUT_OF_BAND, (f"price {R.price(price)} is outside the band "
                                         f"[{R.price(band[0])}, {R.price(band[1])}]")
        if qty < self.min_qty:
            return R.QUANTITY_BELOW_MINIMUM, f"quantity {R.qty(qty)} is below the minimum {R.qty(self.min_qty)}"
        if qty > self.max_qty_bound:
            return R.QUANTITY_ABOVE_MAXIMUM, f"quantity {R.qty(qty)} is above the maximum {R.qty(self.max_qty_bound)}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MarketRules:
        return cls(**data)

    def with_(self, **changes: Any) -> MarketRules:
        return replace(self, **changes)


# National CEA settings (上海环境能源交易所, 2021-06-22). Quantities are in whole tonnes (lot 1).
CEA_LISTING = MarketRules(band_bps=1_000, max_qty=99_999)
CEA_BLOCK = MarketRules(band_bps=3_000, min_qty=100_000)
