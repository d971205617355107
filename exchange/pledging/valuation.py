"""Valuation: haircuts, revaluation at a close, margin levels and calls, usability deadlines."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Invalid
from exchange.core.idempotency import check_replay, fingerprint
from exchange.core.principal import SYSTEM_ACTOR, Principal
from exchange.core.runtime import Runtime
from exchange.pledging import realisation
from exchange.pledging import repository as repo
from exchange.pledging.models import Mark, Pledge, jsonable
from exchange.pledging.recording import (
    kick,
    record_event,
)
from exchange.pledging.refusals import translate_refusals
from exchange.pledging.values import (
    cny,
    today,
)
from exchange.registry import expiry, instruments
from exchange.registry.kinds import term_years
from exchange.trading.calendars import editing as calendars
from ledger import queries as ledger
from pledges import lifecycle
from pledges import realisation as rl
from pledges import valuation as val


@translate_refusals
async def check_haircut(rt: Runtime, instrument: str, haircut_bps: int) -> None:
    await instruments.instrument(rt, instrument)
    val.check_haircut(haircut_bps)


@translate_refusals
async def set_haircut(rt: Runtime, who: Principal, instrument: str, haircut_bps: int) -> None:
    """An instrument's default haircut (operator action `setPledgeHaircut`: maker-checker)."""
    await check_haircut(rt, instrument, haircut_bps)
    async with rt.tx() as conn:
        await repo.set_haircut(conn, instrument, haircut_bps, who.actor)


# ----------------------------------------------------------------------------------- valuation and margin

_CALL_EVENT = {"warning": "warning", "margin_call": "margin_call", "liquidation": "liquidation_call"}


async def _margin_event(conn: AsyncConnection, p: Pledge, new: str, value: int, ratio: int,
                        deadline: datetime | None, actor: str) -> Pledge:
    """An event when the margin level changes: worse -> warning / call; better -> cured (or a milder call)."""
    old = p.margin_level
    if new == old:
        return p
    if new in ("margin_call", "liquidation"):
        # Keep the first deadline while the level stays below the margin-call line (a call that worsened to
        # liquidation, or moved back): the pledgor may cure until the next open after the first call.
        cure = p.cure_deadline if old in ("margin_call", "liquidation") and p.cure_deadline else deadline
    else:
        cure = None
    kind = _CALL_EVENT[new] if val.worse(new, old) or new == "margin_call" else "cured"
    return await record_event(conn, p, kind, {"margin_level": new, "cure_deadline": cure},
                  info={"level": new, "previous_level": old, "value": value, "ratio_bps": ratio,
                        "secured_amount": p.secured_amount, "cure_deadline": jsonable(cure),
                        "price": p.last_price, "quantity": p.quantity},
                  actor=actor, notify=(p.pledgor_id,))  # the pledgor is the one who must cure


async def reassess(conn: AsyncConnection, p: Pledge, *, actor: str, calendar: str | None) -> Pledge:
    """After a change of quantity or terms, judge the margin again at the last mark (if there is one)."""
    if p.last_price is None or p.status not in lifecycle.LOCKED:
        return p
    haircut = p.haircut_bps if p.haircut_bps is not None else p.effective_haircut_bps
    value = val.collateral_value(p.quantity, p.decimals, p.last_price, haircut, years_of(p))
    th = val.Thresholds(p.warning_bps, p.margin_call_bps, p.liquidation_bps)
    level = val.level(value, p.secured_amount, th)
    as_of = p.last_valued_on if p.last_valued_on else today()
    deadline = await calendars.next_open(conn, p.instrument, as_of, calendar)
    return await _margin_event(conn, p, level, value, val.ratio_bps(value, p.secured_amount), deadline, actor)


async def _deadline_check(conn: AsyncConnection, p: Pledge, as_of: date, horizon_days: int,
                          actor: str) -> None:
    """Warn once per deadline when pledged units near the end of their usability (validity, compliance year)."""
    deadlines = []
    batches = await ledger.batches_covering(conn, p.instrument, p.serials)
    for a in await repo.usable_attributes(conn, p.instrument, batches):
        d = val.usable_deadline(a.kind, a.instrument_attributes or {}, a.batch_attributes or {})
        if d is not None:
            deadlines.append(d)
    if not deadlines:
        return
    first = min(deadlines)
    if not val.deadline_near(first, as_of, horizon_days) or p.deadline_warned == first:
        return
    await record_event(conn, p, "deadline_warning", {"deadline_warned": first},
                  info={"deadline": first, "days_left": (first - as_of).days, "term_end": p.term_end,
                        "before_term_end": first <= p.term_end}, actor=actor)


async def _check_mark(conn: AsyncConnection, rt: Runtime, instrument: str, price_fen: int, as_of: date, actor: str,
                      reason: str | None) -> tuple[Mark | None, bool, str]:
    """The refusals of a mark (see `revalue`), on `conn`: the day's existing mark, whether the mark
    replaces it (the exchange's close over an operator's manual mark of that day), and for a new manual
    mark what it was compared with and how far it deviates (the approver's summary shows it)."""
    if as_of > expiry.today_of(rt):
        raise DomainError("valuation_date_in_future", f"{as_of} is after the registry's today "
                          f"({expiry.today_of(rt)}): no close exists for it yet")
    last = await repo.last_mark_day(conn, instrument)
    if last is not None and as_of < last:
        raise DomainError("valuation_date_stale", f"{instrument} is already marked for {last}: "
                          f"a close of {as_of} is older and may not replace it")
    existing = await repo.mark(conn, instrument, as_of)
    replace = existing is not None and existing.price != price_fen
    if replace and not (actor == SYSTEM_ACTOR and existing is not None and existing.recorded_by != SYSTEM_ACTOR):
        assert existing is not None
        raise DomainError("mark_conflict", f"{instrument} is already marked at {cny(existing.price)} for {as_of}")
    compared = ""
    if actor != SYSTEM_ACTOR and existing is None:
        ref = await realisation.mark_reference(conn, instrument)
        rl.require_reason(price_fen, ref[1] if ref else None, await realisation.band_of(conn, instrument), reason,
                          ref[0] if ref else "")
        compared = (f"reference {ref[0]} {cny(ref[1])} CNY, deviation {rl.deviation_text(price_fen, ref[1])}"
                    if ref else "no reference price: the instrument has no close, trade or earlier mark")
    return existing, replace, compared


@translate_refusals
async def check_manual_mark(rt: Runtime, instrument: str, price_fen: int, as_of: date, actor: str,
                            reason: str | None) -> str:
    """What a proposed manual mark would be refused for, at the proposal (maker-checker) already; else
    what it is compared with and its deviation, for the approver."""
    if price_fen <= 0:
        raise Invalid("invalid_price", "the price must be positive")
    await instruments.instrument(rt, instrument)
    async with rt.read() as conn:
        return (await _check_mark(conn, rt, instrument, price_fen, as_of, actor, reason))[2]


@translate_refusals
async def revalue(rt: Runtime, instrument: str, price_fen: int, as_of: date, *, actor: str = SYSTEM_ACTOR,
                  client_id: str | None = None, cure_deadline: datetime | None = None,
                  reason: str | None = None) -> dict[str, Any]:
    """Value every live pledge of `instrument` at `price_fen` (fen per whole unit) as of the close of `as_of`.

    The exchange's end-of-day close calls this (actor SYSTEM_ACTOR); an operator's manual mark comes here
    only through maker-checker (operator action `revaluePledges`, or at once with ENVX_MAKER_CHECKER=false),
    and a manual mark outside the market's price band around the last close needs a `reason`
    (pledges.realisation.require_reason). Repeating it for the same day is a no-op (the mark and each
    valuation are keyed by day); a different price for a day already marked is refused (`mark_conflict`:
    a mark is never corrected in place) -- except that the exchange's own close of a day replaces an
    operator's manual mark of that day (mark and valuations), so a manual mark never locks a day in.
    `as_of` may be neither after the registry's today (Asia/Shanghai, the runtime's clock:
    `valuation_date_in_future`) nor before the instrument's latest mark (`valuation_date_stale`): an old or
    a future price never replaces the current valuation. The cure deadline of a margin call or a
    liquidation is the next open of the instrument's markets by their trading calendars (a close before the
    Spring Festival is cured before the first open after it), unless the caller says.

    One transaction: the mark and every pledge's valuation and events commit together or not at all. The
    pledges are locked in id order (as every other path locks one of them); each is valued before anything
    is written, and a price that would value one beyond pledges.valuation.MAX_VALUE is refused whole.
    """
    if price_fen <= 0:
        raise Invalid("invalid_price", "the price must be positive")
    await instruments.instrument(rt, instrument)
    fp = fingerprint({"op": "revalue", "instrument": instrument, "price": price_fen, "as_of": as_of.isoformat()})
    if cure_deadline is None:
        async with rt.read() as conn:
            cure_deadline = await calendars.next_open(conn, instrument, as_of, rt.settings.default_calendar)
    deadline = cure_deadline
    horizon = rt.settings.pledge_deadline_warning_days
    results = []
    async with rt.tx() as conn:
        if client_id is not None:
            prior = await repo.mark_by_client(conn, actor, client_id)
            if prior is not None:
                check_replay(prior.fingerprint, fp)
        existing, replace, _ = await _check_mark(conn, rt, instrument, price_fen, as_of, actor, reason)
        marked = []
        for pledge_id in await repo.live_pledges_of_instrument(conn, instrument):
            p = await repo.lock_pledge(conn, pledge_id)
            if p is None or p.status not in lifecycle.LOCKED:
                continue
            if (p.enforcement or {}).get("method") == "exchange":
                continue  # the units already left the pledgor: nothing to mark any more
            haircut = p.effective_haircut_bps
            value = val.check_value(val.collateral_value(p.quantity, p.decimals, price_fen, haircut, years_of(p)),
                                    f"the collateral of pledge {p.number}")
            marked.append((p, haircut, value))
        if existing is None:
            await repo.insert_mark(conn, instrument, as_of, price_fen, actor, client_id, fp)
        elif replace:
            await repo.replace_mark(conn, instrument, as_of, price_fen, actor)
        for p, haircut, value in marked:
            ratio = val.ratio_bps(value, p.secured_amount)
            th = val.Thresholds(p.warning_bps, p.margin_call_bps, p.liquidation_bps)
            level = val.level(value, p.secured_amount, th)
            if not await repo.insert_valuation(conn, p.id, as_of, price_fen, p.quantity, haircut, value, ratio,
                                               level, replace=replace):
                results.append({"pledge_id": p.id, "level": p.margin_level, "already_valued": True})
                continue
            p = await record_event(conn, p, "revalued", {"last_price": price_fen, "last_value": value,
                                                     "last_ratio_bps": ratio,
                                                "last_valued_on": as_of},
                          info={"price": price_fen, "quantity": p.quantity, "value": value, "ratio_bps": ratio,
                                "haircut_bps": haircut, "level": level, "secured_amount": p.secured_amount,
                                "marked_by": actor, "reason": reason,
                                **({"replaced_price": existing.price} if replace and existing else {})},
                          actor=actor)
            p = await _margin_event(conn, p, level, value, ratio, deadline, actor)
            await _deadline_check(conn, p, as_of, horizon, actor)
            results.append({"pledge_id": p.id, "number": p.number, "value": cny(value), "ratio_bps": ratio,
                            "level": level, "cure_deadline": jsonable(p.cure_deadline)})
    kick(rt)
    return {"instrument": instrument, "as_of": as_of, "price": cny(price_fen), "pledges": results}


def years_of(p: Pledge) -> int:
    """The term of the pledged instrument in years: an emission right's price is per unit and year, so its
    money is price × quantity × validity_years, as on the market (exchange/trading/pricing.py); 1 for the rest."""
    return term_years(p.instrument_kind, p.instrument_attributes or {})


