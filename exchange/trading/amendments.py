"""Amendments of a market's rules (band, fees, sizes, hours, holidays, tick, lot, best N, STP, T+1,
in-close), effective from a stated trading day, by maker-checker (operator action `amendMarket`).

- Proposal and approval check the same things (`validate`): the market exists; the changes are
  amendable settings (the keys and units of a market definition) consistent with the rules in force on
  that day, and every amendment scheduled after it stays consistent; the day is a trading day of the
  amended calendar, later than today and than the market's current trading day (notice is given before
  the day starts), at most two years ahead; no other amendment is scheduled for that day.
- Approval records it (`market_amendments`, an `amendment_scheduled` market event) and reinstalls the
  market's calendar jobs at once (new hours). `GET /v1/markets/{id}` shows the current rules and each
  scheduled amendment with the complete rules it brings.
- It takes effect when the market begins that trading day (its first open or pause, exchange.trading.sessions):
  the market's row and its engine (a journaled SetRules) get the new rules, `amendment_effective` is
  recorded. Before that day every order is checked against the old rules, from it against the new.
- Orders resting across the change: each day's close expires day orders, listings and block quotes, so
  normally nothing rests. Whatever still does when the new rules take effect and is off the new tick or
  lot is cancelled (reason `rules_amended`) and its hold released; the rest keeps its place and price.
  The band is recomputed around the reference price; size limits apply to new orders. Auction lots keep
  the terms they were announced with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from exchange.core.calendar import trading_day
from exchange.core.errors import DomainError, Invalid
from exchange.core.idempotency import check_replay, fingerprint
from exchange.core.provenance import LEDGER_META
from exchange.core.runtime import Runtime
from exchange.trading import markets, repository, running, sessions
from exchange.trading.markets import Market, MarketView
from exchange.trading.models import Amendment

MAX_NOTICE_DAYS = 730
Payload = dict[str, Any]


def _day(p: Payload) -> date:
    try:
        return date.fromisoformat(str(p["effective_from"]))
    except ValueError:
        raise Invalid("invalid_date", "effective_from is an ISO date (YYYY-MM-DD)") from None


async def validate(rt: Runtime, p: Payload) -> tuple[Market, date]:
    """The market as it will trade from the amendment's day, or the refusal."""
    market_id, settings, day = p["market_id"], p.get("settings") or {}, _day(p)
    seq = running.sequencer(rt, market_id)  # 404 for an unknown market
    if not settings:
        raise Invalid("no_changes", "an amendment changes at least one setting")
    today = trading_day(rt.clock())
    async with rt.read() as conn:
        current = await repository.trading_day(conn, market_id)
        pending = await repository.pending_amendments(conn, market_id)
    begun = max(today, current) if current else today
    if day <= begun:
        raise DomainError("effective_date_not_future", f"an amendment takes effect from a trading day after "
                          f"{begun.isoformat()} (today, or the market's current trading day)")
    if day > today + timedelta(days=MAX_NOTICE_DAYS):
        raise Invalid("effective_date_too_far", f"an amendment takes effect within {MAX_NOTICE_DAYS} days")
    if any(a.effective_from == day for a in pending):
        raise DomainError("amendment_exists", f"an amendment of {market_id} is already scheduled for {day}")
    new = markets.amended(markets.in_force(seq.market, pending, day), settings)
    if not new.is_trading_day(day):
        raise Invalid("not_a_trading_day", f"{day} is not a trading day of {market_id} (weekends and its holidays)")
    later = new
    for a in pending:
        if a.effective_from > day:
            later = markets.amended(later, a.settings)  # what is scheduled after it must still hold
    return new, day


def summary(p: Payload) -> str:
    changes = ", ".join(f"{k}={v}" for k, v in sorted((p.get("settings") or {}).items()))
    return f"amend market {p['market_id']} from trading day {p['effective_from']}: {changes}"


async def check(rt: Runtime, p: Payload) -> None:
    await validate(rt, p)


@dataclass(frozen=True, slots=True)
class Amended:
    """A scheduled amendment and the market it amends, as it is now."""

    amendment: Amendment
    market: MarketView

    def as_dict(self) -> dict[str, Any]:
        """As an approved operator action records it (exchange.security.operator_actions): the answer's shape."""
        a = self.amendment
        return {"amendment": {"id": a.id, "market_id": a.market_id, "effective_from": a.effective_from,
                              "changes": a.settings, "applied": a.applied, "operator_action": a.operator_action},
                "market": self.market.as_dict()}


async def amend(rt: Runtime, actor: str, client_id: str, p: Payload) -> Amended:
    """Schedule the amendment (once per client id: a retry returns it)."""
    market_id = p["market_id"]
    settings = p.get("settings") or {}
    fp = fingerprint({"market_id": market_id, "effective_from": str(p["effective_from"]), "settings": settings})
    async with rt.read() as conn:
        found = await repository.amendment_by_client(conn, actor, client_id)
    if found is not None:
        check_replay(found[1], fp)
        return await _answer(rt, found[0], market_id)
    _, day = await validate(rt, p)
    approval = (LEDGER_META.get() or {}).get("operator_action")
    async with rt.tx() as conn:
        new_id = await repository.insert_amendment(conn, market_id, day, settings, actor, client_id, fp, approval)
        if new_id is not None:
            await sessions.record(conn, market_id, "amendment_scheduled", rt.clock(), day, actor,
                                  {"amendment": new_id, "changes": settings, "operator_action": approval})
    if new_id is None:  # a concurrent retry, or another amendment for that day, got there first
        async with rt.read() as conn:
            found = await repository.amendment_by_client(conn, actor, client_id)
        if found is None:
            raise DomainError("amendment_exists", f"an amendment of {market_id} is already scheduled for {day}")
        check_replay(found[1], fp)
        new_id = found[0]
    await sessions.schedule(rt, market_id)  # new hours get their jobs now
    return await _answer(rt, new_id, market_id)


async def _answer(rt: Runtime, amendment_id: int, market_id: str) -> Amended:
    async with rt.read() as conn:
        found = await repository.amendment(conn, amendment_id)
    assert found is not None, "an amendment is never deleted"
    return Amended(found, await markets.get(rt, market_id))
