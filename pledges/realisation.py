"""Rules of realising a pledged lot that one party alone could otherwise bend: the price floor of a
negotiated realisation and the notice a declared default gives the pledgor before enforcement.

**Price floor.** 民法典 §436: 质押财产折价或者变卖的，应当参照市场价格; the Supreme People's Court's 2023
interpretation of the Contract Book (art. 42) treats a price below 70 % of the market price as 明显不合理的
低价. So a negotiated realisation -- a sale to a named buyer, a transfer to the pledgee (折价), a listing of
the escrowed lot on the exchange -- is at no less than FLOOR_PCT % of the reference price (the latest mark
of the instrument: the exchange's close or an approved manual mark; else a close or the last trade price;
passed in by the caller, exchange/pledging/realisation.py). With no
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

import unicodedata
from datetime import date, datetime, timedelta
from typing import Any

from pledges.errors import PledgeError
from pledges.valuation import SHANGHAI

FLOOR_PCT = 70
NEGOTIATED = ("sale", "transfer", "listing")
# 《最高人民法院关于人民法院网络司法拍卖若干问题的规定》 art. 17: the deposit is 5 %-20 % of the starting
# price. A bidder's cash is held in full here, so no lower bound is needed; the upper one keeps the pledgee
# from pricing bidders out of its own auction (red team round 5, F1: a deposit 67x the lot).
DEPOSIT_MAX_PCT = 20


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


def check_auction_terms(reserve_fen: int, deposit_fen: int, lot_value_fen: int, reference_fen: int | None) -> None:
    """An enforcement auction of a pledged lot (单向竞价 on the pledgee's behalf) is a public sale, but its
    seller is the pledgee alone, so it may not set terms that make it a negotiated sale in disguise:

    - its reserve (the lowest bid) is at least the floor of a negotiated realisation (FLOOR_PCT % of the
      reference price), as a court's auction starts from the appraised value (网络司法拍卖规定 art. 10);
      with no reference price the reserve is the pledgee's, and the public registration period
      (exchange.trading.auctions, ENVX_ENFORCEMENT_REGISTRATION_SECONDS) is what makes the price a market's;
    - its registration deposit is at most DEPOSIT_MAX_PCT % of the lot's value at the reserve.

    A lower reserve needs no override here: where the market has fallen, two operators mark the instrument
    lower (maker-checker; outside the band or with no reference, with a reason) and the floor follows."""
    if reference_fen is not None:
        floor = floor_price(reference_fen)
        if reserve_fen < floor:
            raise PledgeError("reserve_below_floor", f"the reserve {_cny(reserve_fen)} CNY per unit is below the "
                              f"floor {_cny(floor)} CNY ({FLOOR_PCT} % of the reference price {_cny(reference_fen)} "
                              "CNY, the latest mark): an enforcement auction starts at no less than the floor")
    cap = lot_value_fen * DEPOSIT_MAX_PCT // 100
    if deposit_fen > cap:
        raise PledgeError("deposit_above_cap", f"the registration deposit {_cny(deposit_fen)} CNY is above "
                          f"{DEPOSIT_MAX_PCT} % of the lot's value at the reserve ({_cny(cap)} CNY)")


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


def outside_band(price_fen: int, reference_fen: int | None, band_bps: int | None) -> bool:
    """Whether a manual mark at `price_fen` lies outside the market's price band around the reference
    (`band_bps` None: DEFAULT_BAND_BPS). With no reference there is no band to be outside of."""
    if reference_fen is None:
        return False
    band = DEFAULT_BAND_BPS if band_bps is None else band_bps
    return abs(price_fen - reference_fen) * 10_000 > band * reference_fen


def deviation_text(price_fen: int, reference_fen: int) -> str:
    """The deviation of `price_fen` from `reference_fen` as a signed percentage to two places."""
    bps = abs(price_fen - reference_fen) * 10_000 // reference_fen  # toward zero
    return f"{'-' if price_fen < reference_fen else '+'}{bps // 100}.{bps % 100:02d} %"


# A reason says something: at least this much of letters and digits, a CJK ideograph counting twice (估值 is
# a word, "x" or "..." is not).
REASON_MIN_WEIGHT = 4


def says_something(reason: str) -> bool:
    """Whether a reason has REASON_MIN_WEIGHT of letters and digits (a CJK ideograph or kana weighs 2):
    white space, punctuation and symbols alone, or one letter, say nothing."""
    weight = 0
    for ch in reason:
        if ch.isalnum():
            weight += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return weight >= REASON_MIN_WEIGHT


def require_reason(price_fen: int, reference_fen: int | None, band_bps: int | None, reason: str | None,
                   reference: str = "the last close") -> None:
    """A manual mark needs the operator's reason (kept with the valuation's events) outside the band around
    its reference (`reference` names it: the last close, else the last trade, else the last mark), and
    always where there is no reference at all: a price nothing can be compared with is a judgement, and it
    sets margin calls and the floor of a negotiated realisation (red team round 5, F3). A reason given, needed
    or not, must say something (`says_something`); a blank one is no reason."""
    if (reason or "").strip():
        if not says_something(reason or ""):
            raise PledgeError("mark_reason_meaningless", "a manual mark's reason must say why: at least "
                              f"{REASON_MIN_WEIGHT} letters or digits (a Chinese character counts as 2), not "
                              "only spaces or punctuation", 422)
        return
    if reference_fen is None:
        raise PledgeError("mark_reason_required", f"{_cny(price_fen)} CNY cannot be compared with any price: the "
                          "instrument has no close, no trade and no earlier mark, so a manual mark needs a reason",
                          422)
    if outside_band(price_fen, reference_fen, band_bps):
        band = DEFAULT_BAND_BPS if band_bps is None else band_bps
        raise PledgeError("mark_reason_required", f"{_cny(price_fen)} CNY is outside the ±{band / 100:g} % band "
                          f"around {reference} {_cny(reference_fen)} CNY: a manual mark there needs a reason", 422)
