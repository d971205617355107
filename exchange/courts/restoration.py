"""Court restoration orders (替代性生态修复, 认购碳汇): a court orders a defendant to buy and retire credits.

A court registers the order (case, defendants, the assessed loss, method and multiplier, the required
quantity, eligible instrument kinds, deadline). The payer fulfils it by buying on the exchange — a buy
order or a take flagged for the order — whose fills are retired at once with purpose
`judicial_restoration` and the case data, so the units never become tradable. Fulfilment is read from
the settled trades; quantities are kept in kg of CO2e so instruments of any precision add up.

An order is spoken in tCO2e at one precision for all its quantities (required, retired, remaining): the
finest of the instruments that can fulfil it (those of its eligible kinds, at most kg: 3 decimals), or of
its required quantity if the court wrote that finer. An order that only whole-tonne credits can fill
reads "96", one that CDCER kept in kg can fill reads "96.000". The assessed loss is shown with as many
decimals as it has, at least the order's ("47.07").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.calendar import WEEKDAYS, TradingCalendar
from exchange.core.errors import DomainError, Forbidden, Invalid, NotFound, Refusal
from exchange.core.idempotency import check_replay, fingerprint, replay_on_refusal
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.units import CARBON_UNIT, to_base, to_text
from exchange.courts import repository as repo
from exchange.courts.models import Fill, Reminder, RestorationOrder
from exchange.registry import instruments, participants
from exchange.trading import inflight, orders, running
from exchange.trading import repository as trading
from exchange.trading.calendars import editing as calendars
from exchange.trading.models import Submitted
from ledger import queries as ledger

KG_DECIMALS = 3  # quantities of an order are kept in kg of CO2e; shown in t at the order's precision
ELIGIBLE = frozenset({"ccer", "cdcer", "forest_ticket", "cea"})
OVERSIGHT = frozenset({"operator", "auditor"})


@dataclass(frozen=True, slots=True)
class Catalogue:
    """What an order needs of the instruments: each one's kind and decimals (resolved before a transaction)."""

    kinds: dict[str, str]
    decimals: dict[str, int]
    # The calendar deadlines count by (ENVX_DEFAULT_CALENDAR, as the exchange keeps it): see OrderState.
    calendar: TradingCalendar = WEEKDAYS

    def finest(self, kinds: Sequence[str]) -> int:
        return max((d for code, d in self.decimals.items() if self.kinds[code] in kinds), default=0)

    def grid(self, kinds: Sequence[str]) -> int | None:
        """The finest quantity (kg of CO2e) instruments of these kinds are kept in: what an order's requirement
        must be a multiple of to be fulfilled; None while no instrument of these kinds exists."""
        if not any(kind in kinds for kind in self.kinds.values()):
            return None
        return int(10 ** (KG_DECIMALS - min(KG_DECIMALS, self.finest(kinds))))


async def catalogue(rt: Runtime) -> Catalogue:
    listed = await instruments.catalogue(rt)
    async with rt.read() as conn:
        cal = await calendars.legal_calendar(conn, rt.settings.default_calendar)
    return Catalogue({i.code: i.kind for i in listed}, {i.code: i.decimals for i in listed}, cal)


DUE_SOON = 5  # trading days left: a week of the exchange's


@dataclass(frozen=True, slots=True)
class OrderState:
    """An order with its fulfilment as read from its settled trades, spoken at the order's precision."""

    order: RestorationOrder
    defendants: list[dict[str, Any]]  # as the reader may see them
    places: int
    retired_kg: int
    value: int
    fees: int
    fills: int
    status: str
    today: date
    calendar: TradingCalendar = WEEKDAYS

    @property
    def assessed_loss(self) -> str | None:
        loss = self.order.assessed_loss_kg
        return None if loss is None else in_t(loss, max(self.places, _needed(loss)))

    @property
    def required_quantity(self) -> str:
        return in_t(self.order.required_kg, self.places)

    @property
    def retired_quantity(self) -> str:
        return in_t(self.retired_kg, self.places)

    @property
    def remaining_quantity(self) -> str:
        return in_t(max(0, self.order.required_kg - self.retired_kg), self.places)

    @property
    def effective_deadline(self) -> date:
        """The deadline, or the first trading day after it if it falls on a day the exchange does not trade: the
        payer fulfils by buying there (as 民事诉讼法 §85: a period whose last day is a holiday ends on the day
        after the holiday)."""
        return self.calendar.on_or_after(self.order.deadline)

    @property
    def days_left(self) -> int:
        return (self.effective_deadline - self.today).days

    @property
    def trading_days_left(self) -> int:
        """Trading days after today up to the effective deadline: the days the payer can still buy."""
        return self.calendar.trading_days_between(self.today, self.effective_deadline)

    @property
    def overdue(self) -> bool:
        return self.status == "open" and self.today > self.effective_deadline


async def create(rt: Runtime, who: Principal, client_id: str, data: dict[str, Any]) -> OrderState:
    if who.kind != "court":
        raise Forbidden("only a court registers restoration orders")
    kinds = list(data["eligible_kinds"])
    if not kinds or set(kinds) - ELIGIBLE:
        raise Invalid("invalid_eligible_kinds", f"eligible kinds are among {', '.join(sorted(ELIGIBLE))}")
    required = to_base(data["required_quantity"], KG_DECIMALS, field="required_quantity")
    loss = (to_base(data["assessed_loss"], KG_DECIMALS, field="assessed_loss")
            if data.get("assessed_loss") else None)
    # The payer buys on the exchange; the court names it by id and registered identifier (the order's
    # answer shows its name). Anything else about it is the same 404 (participants.party).
    async with rt.read() as conn:
        payer = await participants.party(conn, who, data["payer_id"], kinds=participants.HOLDER_KINDS,
                                         identifier=data.get("payer_identifier"), identified=True)
        if data.get("designated_seller_id"):
            await participants.party(conn, who, data["designated_seller_id"], kinds=participants.HOLDER_KINDS)
    if data["deadline"] < datetime.now(UTC).date():
        raise Invalid("invalid_deadline", "the deadline has passed")
    fp = fingerprint({k: (v.isoformat() if isinstance(v, date) else v) for k, v in data.items()
                      if k != "payer_identifier"})  # how the payer was named is not what was ordered
    known = await catalogue(rt)
    grid = known.grid(kinds)
    if grid is not None and required % grid:
        raise Invalid("requirement_off_grid", f"{data['required_quantity']} {CARBON_UNIT} cannot be bought in "
                      f"units of {in_t(grid, _needed(grid))} {CARBON_UNIT}, the finest any eligible instrument "
                      "trades: it could never be fulfilled")

    async def replay() -> OrderState | None:
        async with rt.read() as conn:
            prior = await repo.order_by_client(conn, who.actor, client_id)
            if prior is None:
                return None
            check_replay(prior[1], fp)
            return await _state(conn, known, who, prior[0])

    async def register() -> OrderState:
        async with rt.tx() as conn:
            dup = await repo.order_for_case(conn, who.participant_id, data["case_number"], payer.id)
            if dup is not None:
                raise DomainError("duplicate_order",
                                  f"case {data['case_number']} already has order {dup} for this payer")
            new_id = await repo.insert_order(
                conn, court_id=who.participant_id, case_number=data["case_number"], case_type=data["case_type"],
                judgment_reference=data.get("judgment_reference"), defendants=data["defendants"],
                payer_id=payer.id, assessed_loss_kg=loss, assessment_method=data.get("assessment_method"),
                assessing_body=data.get("assessing_body"), multiplier=data.get("multiplier"),
                required_kg=required, eligible_kinds=kinds, designated_seller_id=data.get("designated_seller_id"),
                deadline=data["deadline"], note=data.get("note"), created_by=who.actor, client_id=client_id,
                fingerprint=fp)
        async with rt.read() as conn:
            return await _state(conn, known, who, new_id)

    # A concurrent twin (same court key and client id) that commits first: its order, not duplicate_order
    # or a unique-index error (the insert waits for the twin's commit, then fails on the client id).
    prior = await replay()
    return prior if prior is not None else await replay_on_refusal(register, replay)


def _may_see(who: Principal | None, r: RestorationOrder) -> None:
    """The ordering court, the payer and the designated seller see an order (and oversight); anyone
    else is told what an unknown id is told: 404."""
    if who is None or who.kind in OVERSIGHT:
        return
    if who.participant_id not in r.parties():
        raise NotFound("restoration order", r.id)


async def _visible(conn: AsyncConnection, who: Principal | None, order_id: int) -> RestorationOrder:
    r = await repo.get_order(conn, order_id)
    if r is None:
        raise NotFound("restoration order", order_id)
    _may_see(who, r)
    return r


def defendants_for(who: Principal | None, defendants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A defendant's name is in the judgment; an ID number is personal data: only the court that
    entered it and oversight see it (never the payer's counterparties, never the public)."""
    if who is not None and (who.kind in OVERSIGHT or who.kind == "court"):
        return defendants
    return public_defendants(defendants)


def public_defendants(defendants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a public document (the certificate) names of the defendants: their names only."""
    return [{"name": d["name"]} for d in defendants]


async def _fills_of(conn: AsyncConnection, order_ids: list[int]) -> dict[int, list[Fill]]:
    """Every settled trade of buy orders flagged for these restoration orders, with its retirement entry."""
    trades = await trading.restoration_trades(conn, order_ids)
    entries = {(e.actor, e.client_id): e
               for e in await ledger.entries_of_requests(conn, [t.retirement_request() for t in trades])}
    out: dict[int, list[Fill]] = {i: [] for i in order_ids}
    for t in trades:
        e = entries.get(t.retirement_request())
        out[t.restoration_order].append(Fill(
            t.market_id, t.trade_id, t.instrument, t.price, t.qty, t.notional, t.buyer_fee, t.ts,
            t.decimals, None if e is None else e.seq, None if e is None else e.meta))
    return out


async def fills(conn: AsyncConnection, order_id: int) -> list[Fill]:
    return (await _fills_of(conn, [order_id]))[order_id]


async def retirements_paid_by(rt: Runtime, participant_id: int) -> list[int]:
    """The judicial retirement entries a participant paid for (as payer of restoration orders): their
    units pass through the clearing account straight to retirement, so no account of the payer's shows
    them; the payer's holdings list them all the same."""
    async with rt.read() as conn:
        trades = await trading.restoration_trades(conn, await repo.orders_paid_by(conn, participant_id))
        return [e.seq for e in await ledger.entries_of_requests(conn, [t.retirement_request() for t in trades])]


def to_kg(qty: int, decimals: int) -> int:
    scale: int = 10 ** abs(KG_DECIMALS - decimals)
    return qty * scale if decimals <= KG_DECIMALS else qty // scale


def retired_kg(done: list[Fill]) -> int:
    return sum(to_kg(f.qty, f.decimals) for f in done)


def _needed(kg: int | None) -> int:
    """How many decimals (of t) a quantity in kg needs: 96000 -> 0, 47070 -> 2."""
    if not kg:
        return 0
    places = KG_DECIMALS
    while places and kg % 10 ** (KG_DECIMALS - places + 1) == 0:
        places -= 1
    return places


def precision(known: Catalogue, r: RestorationOrder) -> int:
    """The order's decimals (see the module docstring)."""
    return min(KG_DECIMALS, max(known.finest(r.eligible_kinds), _needed(r.required_kg)))


def in_t(kg: int, places: int) -> str:
    """kg of CO2e as t with `places` decimals (exact: the order's precision covers what fills it)."""
    return to_text(kg // 10 ** (KG_DECIMALS - places), places)


def _state_of(known: Catalogue, who: Principal | None, r: RestorationOrder, done: list[Fill]) -> OrderState:
    retired = retired_kg(done)
    status = r.status
    if status == "open" and retired >= r.required_kg:
        status = "fulfilled"
    return OrderState(r, r.defendants if who is None else defendants_for(who, r.defendants), precision(known, r),
                      retired, sum(f.notional for f in done), sum(f.buyer_fee for f in done), len(done), status,
                      datetime.now(UTC).date(), known.calendar)


async def _state(conn: AsyncConnection, known: Catalogue, who: Principal | None, order_id: int) -> OrderState:
    r = await _visible(conn, who, order_id)
    return _state_of(known, who, r, await fills(conn, order_id))


async def get(rt: Runtime, who: Principal | None, order_id: int) -> OrderState:
    """The order as `who` may see it; `who=None` is the registry itself (reminders, certificates)."""
    known = await catalogue(rt)
    async with rt.read() as conn:
        return await _state(conn, known, who, order_id)


async def get_with_fills(rt: Runtime, order_id: int) -> tuple[OrderState, list[Fill]] | None:
    """The order as the registry sees it and its fills, read together (certificates); None if unknown."""
    known = await catalogue(rt)
    async with rt.read() as conn:
        r = await repo.get_order(conn, order_id)
        if r is None:
            return None
        done = await fills(conn, order_id)
    return _state_of(known, None, r, done), done


async def listing(rt: Runtime, who: Principal) -> list[OrderState]:
    known = await catalogue(rt)
    party = None if who.kind in OVERSIGHT else who.participant_id
    async with rt.read() as conn:
        found = await repo.orders_of(conn, party)
        done = await _fills_of(conn, [r.id for r in found])
    return [_state_of(known, who, r, done[r.id]) for r in found]


async def _purpose(rt: Runtime, who: Principal, order_id: int, client_id: str, market_id: str, quantity: str, *,
                   listed_by: int | None) -> dict[str, Any]:
    """The purchase's purpose, once the order may take it: `listed_by` is the seller of the listing taken (None:
    a bid on the book, whose seller nobody chooses). Called under the order's lock (_buying)."""
    known = await catalogue(rt)
    async with rt.read() as conn:
        r = await _visible(conn, who, order_id)  # visibility, then the party, then the state
        if who.participant_id != r.payer_id:
            raise Forbidden("only the payer named in the order buys for it")
        purpose = {"retire": True, "restoration_order": order_id, "case_number": r.case_number,
                   "court": r.court, "beneficiary": f"{r.court} {r.case_number} 替代性生态修复"}
        if await trading.order_by_client(conn, who.participant_id, client_id) is not None:
            return purpose  # a retry of a purchase already journaled: its first answer (or idempotency_conflict)
        state = _state_of(known, who, r, await fills(conn, order_id))
        committed = sum(to_kg(q, d) for q, d in await trading.restoration_commitments(conn, order_id))
    if state.status != "open":
        raise DomainError("order_fulfilled", f"restoration order {order_id} is {state.status}")
    if r.designated_seller_id is not None and listed_by != r.designated_seller_id:
        raise DomainError(Refusal.NOT_DESIGNATED_SELLER, f"restoration order {order_id} is fulfilled from its "
                          f"designated seller (participant {r.designated_seller_id}) only: take one of its listings")
    seq = running.sequencer(rt, market_id)
    kind = known.kinds.get(seq.market.instrument)
    if kind not in r.eligible_kinds:
        raise DomainError("instrument_not_eligible", f"{seq.market.instrument} ({kind}) is not eligible for this order")
    wanted = to_kg(to_base(quantity, seq.market.decimals), seq.market.decimals)
    free = max(0, r.required_kg - committed)
    if wanted > free:
        in_flight = committed - state.retired_kg
        raise DomainError("exceeds_requirement", f"{quantity} {CARBON_UNIT} is more than the "
                          f"{in_t(free, state.places)} {CARBON_UNIT} still required"
                          + (f" beside the {in_t(in_flight, state.places)} {CARBON_UNIT} of its open purchases"
                             if in_flight else ""))
    return purpose


async def _buying(rt: Runtime, who: Principal, order_id: int, client_id: str, market_id: str, quantity: str,
                  listed_by: int | None, send: Callable[[dict[str, Any]], Awaitable[Submitted]]) -> Submitted:
    """The one place that keeps an order's retirements within its requirement: what the payer may still buy
    is the requirement less what is retired and what its open purchases may still fill (a resting buy, a
    take being settled), and a purchase is counted from the moment it is checked. So the check and the
    purchase's journaling happen under the order's lock (one process runs the markets, Runtime.serial_locks),
    and each purchase's quantity, its most, is within what was free: no fill can go beyond the requirement."""
    async with inflight.serially(rt, ("restoration", order_id)):
        purpose = await _purpose(rt, who, order_id, client_id, market_id, quantity, listed_by=listed_by)
        return await send(purpose)


async def purchase(rt: Runtime, who: Principal, order_id: int, client_id: str, *, market_id: str, type_: str,
                   tif: str, price: str | None, quantity: str) -> Submitted:
    return await _buying(rt, who, order_id, client_id, market_id, quantity, None, lambda purpose: orders.place_order(
        rt, who, market_id, client_id, side="buy", type_=type_, tif=tif, price=price, quantity=quantity, stp=None,
        purpose=purpose))


async def take(rt: Runtime, who: Principal, order_id: int, client_id: str, *, market_id: str, listing_id: int,
               quantity: str) -> Submitted:
    listing = orders.open_listing(rt, market_id, listing_id)
    return await _buying(rt, who, order_id, client_id, market_id, quantity,
                         None if listing is None else int(listing["account"]),
                         lambda purpose: orders.take_listing(rt, who, market_id, listing_id, client_id,
                                                             quantity=quantity, purpose=purpose))


async def reminders(rt: Runtime, today: date | None = None) -> int:
    """Daily: one reminder per open order with at most DUE_SOON trading days left, and one once overdue
    (idempotent per day); both count by the calendar (OrderState.effective_deadline)."""
    today = today or datetime.now(UTC).date()
    known = await catalogue(rt)
    async with rt.read() as conn:
        found = await repo.open_orders(conn)
        done = await _fills_of(conn, [r.id for r in found])
    made = 0
    for r in found:
        state = dataclasses.replace(_state_of(known, None, r, done[r.id]), today=today)
        if state.status != "open":
            continue
        left = state.trading_days_left
        kind = "overdue" if state.overdue else ("due_soon" if left <= DUE_SOON else None)
        if kind is None:
            continue
        msg = (f"case {r.case_number}: {state.remaining_quantity} {CARBON_UNIT} still to retire, "
               + (f"{-state.days_left} days overdue" if state.overdue
                  else f"deadline {state.effective_deadline}, {left} trading days left"))
        async with rt.tx() as conn:
            made += await repo.add_reminder(conn, r.id, kind, today, msg)
    return made


async def reminders_of(rt: Runtime, who: Principal, order_id: int) -> list[Reminder]:
    async with rt.read() as conn:
        await _visible(conn, who, order_id)
        return await repo.reminders_of(conn, order_id)


async def is_party(rt: Runtime, who: Principal, order_id: int) -> bool:
    """Whether `who` is the court or the payer of the order (its judicial retirements' receipts are theirs)."""
    async with rt.read() as conn:
        r = await repo.get_order(conn, order_id)
    return r is not None and who.participant_id in (r.court_id, r.payer_id)
