"""The registry's side of the realisation rules (pledges/realisation.py): the one reference price of a
negotiated realisation, the notice setting, and the pledgor's consent to enforcement."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError
from exchange.core.idempotency import fingerprint
from exchange.core.principal import SYSTEM_ACTOR, Principal
from exchange.core.runtime import Runtime
from exchange.core.units import CNY_DECIMALS, to_base
from exchange.pledging import repository as repo
from exchange.pledging.models import Pledge
from exchange.pledging.recording import mutate, record_event, require_pledgor
from exchange.pledging.refusals import translate_refusals
from exchange.pledging.values import now, today
from exchange.pledging.views import PledgeView
from exchange.trading import repository as trading_repo
from exchange.trading.pricing import notional
from pledges import lifecycle
from pledges import realisation as rl


async def reference_price(conn: AsyncConnection, instrument: str) -> int | None:
    """The reference price of `instrument` (fen per whole unit): its latest mark (the exchange's close or
    an approved manual mark); with none, the last close its markets refer their price band to (the
    highest of them); with none, the last trade price (a market price too: red team round 6, F1, where a
    bank set a 0.01 reserve on units that had traded at 10.00 and 15.00 that day); None when none exists."""
    mark = await repo.latest_mark(conn, instrument)
    if mark is not None:
        return mark.price
    closes = [m.reference_price for m in await trading_repo.markets(conn)
              if m.market.instrument == instrument and m.reference_price is not None]
    if closes:
        return max(closes)
    return await repo.last_trade_price(conn, instrument)


async def last_close(conn: AsyncConnection, instrument: str) -> int | None:
    """The instrument's last close: the exchange's latest close mark, else the close its markets refer their
    price band to (the highest of them); None when there is none."""
    close = await repo.latest_mark(conn, instrument, by=SYSTEM_ACTOR)
    if close is not None:
        return close.price
    closes = [m.reference_price for m in await trading_repo.markets(conn)
              if m.market.instrument == instrument and m.reference_price is not None]
    return max(closes) if closes else None


async def mark_reference(conn: AsyncConnection, instrument: str) -> tuple[str, int] | None:
    """What a manual mark is compared with: the last close, else the last trade price, else the last
    (manual) mark -- as (what it is, fen per whole unit); None when the instrument has none of them."""
    close = await last_close(conn, instrument)
    if close is not None:
        return "the last close", close
    trade = await repo.last_trade_price(conn, instrument)
    if trade is not None:
        return "the last trade price", trade
    mark = await repo.latest_mark(conn, instrument)
    if mark is not None:
        return "the last mark", mark.price
    return None


async def band_of(conn: AsyncConnection, instrument: str) -> int | None:
    """The narrowest price band (bps) of the instrument's markets, None where none sets one."""
    bands = [m.market.rules.band_bps for m in await trading_repo.markets(conn)
             if m.market.instrument == instrument and m.market.rules.band_bps is not None]
    return min(bands) if bands else None


async def check_price(conn: AsyncConnection, p: Pledge, how: str, price_fen: int) -> None:
    rl.check_price(how, price_fen, await reference_price(conn, p.instrument))


async def check_auction(conn: AsyncConnection, p: Pledge, market: Any, qty: int, terms: dict[str, Any]) -> None:
    """The reserve and the deposit of an enforcement auction of `qty` base units (pledges.realisation)."""
    reserve = to_base(terms["min_price"], CNY_DECIMALS, field="min_price")
    deposit = to_base(terms["deposit"], CNY_DECIMALS, field="deposit", allow_zero=True)
    try:
        value = notional(reserve, qty, market.decimals, market.years)
    except ValueError:  # the market refuses such a lot itself (price_not_whole_fen); bound it from below here
        value = reserve * qty * market.years // 10**market.decimals
    rl.check_auction_terms(reserve, deposit, value, await reference_price(conn, p.instrument))


def require_notice_served(rt: Runtime, p: Pledge, ground: dict[str, Any]) -> None:
    rl.require_notice_served(ground, today(), rt.settings.enforcement_notice_days)


@translate_refusals
async def consent(rt: Runtime, who: Principal, client_id: str, pledge_id: int, note: str | None) -> PledgeView:
    """The pledgor consents to enforcement of the declared default before its notice period has run."""
    fp = fingerprint({"op": "enforcement_consent", "pledge": pledge_id, "note": note})

    async def body(conn: AsyncConnection, p: Pledge) -> None:
        require_pledgor(who, p)
        lifecycle.require(p.status, "consent")
        if not p.declared_default:
            raise DomainError("no_default", "no default is declared: there is nothing to consent to")
        given = {**p.declared_default, "consent": {"at": now().isoformat(), "by": who.actor}}
        await record_event(conn, p, "enforcement_consented", {"declared_default": given},
                           info={"note": note, "declared_default": p.declared_default}, actor=who.actor,
                           client_id=client_id, fp=fp, notify=(p.pledgee_id,))

    return await mutate(rt, who, client_id, pledge_id, fp, body)
