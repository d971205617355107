"""Rules of realising a pledged lot that one party alone could otherwise bend: the price floor of a
negotiated realisation and the notice a declared default gives the pledgor before enforcement.

**Price floor.** 民法典 §436: 质押财产折价或者变卖的，应当参照市场价格; the Supreme People's Court's 2023
interpretation of the Contract Book (art. 42) treats a price below 70 % of the market price as 明显不合理的
低价. So a negotiated realisation -- a sale to a named buyer, a transfer to the pledgee (折价), a listing of
the escrowed lot on the exchange -- is at no less than FLOOR_PCT % of the reference price (the latest mark
of the instrument: the exchange's close or an approved manual mark, passed in by the caller). With no
reference price there is no market to refer to: only a public auction (whose reserve and duration follow
the auction rules) may realise the lot.

**Notice.** A default the pledgee declares opens enforcement only `notice_days` after its notice date --
or after the day the registry recorded the declaration, if that is later (a backdated notice gives the
pledgor no less time: it hears of the default from the registry) -- unless the pledgor consented to
enforcement (an explicit act of the pledgor, kept in the declaration as `consent`). A liquidation level
keeps its cure before the next open (pledges.lifecycle.default_ground).

No I/O, no clock: the caller passes today's date, the reference price and the setting.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from pledges.errors import PledgeError
from pledges.valuation import SHANGHAI

FLOOR_PCT = 70
NEGOTIATED = ("sale", "transfer", "listing")


def _cny(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def floor_price(reference_fen: int) -> int:
    """The lowest price per whole unit (fen) a negotiated realisation may fetch: FLOOR_PCT % of the
    reference, rounded up to the fen (the floor is never below 70 %)."""
    return -(-reference_fen * FLOOR_PCT // 100)


def check_price(how: str, price_fen: int, reference_fen: int | None) -> None:
    """Refuse a negotiated realisation (`how` in NEGOTIATED) below the floor, or with no reference price."""
    assert how in NEGOTIATED, how
    if reference_fen is None:
        raise PledgeError("auction_required", "the instrument has no close or approved mark to refer to: a "
                          "negotiated price cannot be judged against the market, so only a public auction may "
                          "realise the lot")
    floor = floor_price(reference_fen)
    if price_fen < floor:
        raise PledgeError("price_below_floor", f"the price is below the floor {_cny(floor)} CNY per unit "
                          f"({FLOOR_PCT} % of the reference price {_cny(reference_fen)} CNY, the latest mark)")


def notice_ends(declared: dict[str, Any], notice_days: int) -> date:
    """The first day enforcement on the declared default `declared` may start (Shanghai dates)."""
    start = date.fromisoformat(str(declared["notice_date"]))
    if declared.get("declared_at"):
        start = max(start, datetime.fromisoformat(str(declared["declared_at"])).astimezone(SHANGHAI).date())
    return start + timedelta(days=notice_days)


def require_notice_served(ground: dict[str, Any], today: date, notice_days: int) -> None:
    """A declared default opens enforcement once its notice period has run, or at once with the pledgor's
    consent; other grounds (liquidation after its cure, a missed cure deadline) carry their own cure
    (pledges.lifecycle.default_ground)."""
    if ground.get("type") != "declared_default" or ground.get("consent"):
        return
    ends = notice_ends(ground, notice_days)
    if today < ends:
        raise PledgeError("notice_period_running", f"the default notice of {ground['notice_date']} gives the "
                          f"pledgor {notice_days} days: enforcement may start on {ends.isoformat()}, or earlier "
                          "only with the pledgor's consent (POST .../enforcement-consent by the pledgor)")


DEFAULT_BAND_BPS = 1_000  # ±10 %, the listing and continuous markets' default band, where no market sets one


def outside_band(price_fen: int, last_close_fen: int | None, band_bps: int | None) -> bool:
    """Whether a manual mark at `price_fen` lies outside the market's price band around the last close
    (`band_bps` None: DEFAULT_BAND_BPS). With no close yet there is no band to be outside of."""
    if last_close_fen is None:
        return False
    band = DEFAULT_BAND_BPS if band_bps is None else band_bps
    return abs(price_fen - last_close_fen) * 10_000 > band * last_close_fen


def require_reason(price_fen: int, last_close_fen: int | None, band_bps: int | None, reason: str | None) -> None:
    """A manual mark outside the band needs the operator's reason (kept with the valuation's events)."""
    if outside_band(price_fen, last_close_fen, band_bps) and not (reason or "").strip():
        assert last_close_fen is not None
        band = DEFAULT_BAND_BPS if band_bps is None else band_bps
        raise PledgeError("mark_reason_required", f"{_cny(price_fen)} CNY is outside the ±{band / 100:g} % band "
                          f"around the last close {_cny(last_close_fen)} CNY: a manual mark there needs a reason", 422)
