"""Judicial freezes (司法冻结), renewals (续冻), deductions (扣划) and unfreezing (解冻).

A freeze is a ledger hold of kind "freeze" from the holder's holding account to the court's: on
serial units it locks the blocks in place and may sit on top of a pledge (free units are frozen
first, then pledged ones). The ledger then refuses every movement of frozen units — transfer, sale,
retirement, a new pledge, posting a pledge — so no path around it exists here. The one exception is
explicit and linked: a senior pledge's enforcement takes its lot out of the freeze in the same ledger
group that sells it, and the freeze follows the surplus (exchange.pledging, "courts behind the pledge").

- renewal: void + re-freeze of the same serials in one linked group, before expiry; the renewal is a
  new row naming its predecessor and keeping the chain's `root_id` and `freeze_no` (its place in time);
- deduction: post the free part of the freeze (fully or partly) into the court's account and, if
  the court names another account, on to it in the same linked group. What is not deducted stays
  frozen (the freeze goes on, with fewer units, until the court lifts it or its term ends). Pledged
  frozen units cannot be deducted (`pledged`, naming the registration): the pledge was there first
  and its priority survives the freeze (民诉法解释 §157); the pledgee may enforce under the freeze, and
  its enforcement pays the court the frozen share of the surplus (exchange.pledging);
- unfreeze: void; expiry: the sweep expires freezes past their term. A freeze whose units all went to
  a pledgee's sale holds no units (no ledger hold) but stays in force over that surplus until then.
Banks whose locked units a freeze covers get `freeze_noticed` / `freeze_lifted` pledge events.
Lock order, everywhere: pledge rows before freeze rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Forbidden, Invalid, NotFound
from exchange.core.idempotency import INTERNAL, check_replay, fingerprint, replay_on_refusal
from exchange.core.ledger_events import created_holds, event_requests
from exchange.core.principal import SYSTEM_ACTOR, Principal
from exchange.core.runtime import Runtime
from exchange.core.units import CNY_DECIMALS, iso, to_base, to_text
from exchange.courts import repository as repo
from exchange.courts.models import Freeze, FreezeEvent
from exchange.pledging import frozen_lots, recording, values
from exchange.pledging import repository as pledges
from exchange.pledging.refusals import translate_refusals
from exchange.registry import instruments, participants
from exchange.registry.models import Participant
from ledger import commands as c
from ledger import queries as ledger
from ledger.queries import FrozenBlock
from pledges import ranges as rg
from pledges import valuation as val

SEES_ALL = frozenset({"operator", "auditor"})
HOLDER_KINDS = frozenset({"enterprise", "issuer", "operator", "bank"})


async def _pick(rt: Runtime, account: int, instrument: str, qty: int) -> list[tuple[int, int]]:
    """The serials the ledger would freeze (free first, then pledged; lowest first), named explicitly.

    Works around a ledger replay defect: an unnamed freeze over free *and* pledged units records its
    serials unsorted, which `ledger.replay` cannot reproduce (see the report). Naming them sorted keeps
    the entry replayable. If the holdings change meanwhile the ledger refuses (serials_not_available).
    """
    async with rt.read() as conn:
        blocks = await ledger.freezable_blocks(conn, account, instrument)
    free = [(start, end) for start, end, is_pledged in blocks if not is_pledged]
    pledged = [(start, end) for start, end, is_pledged in blocks if is_pledged]
    have_free = rg.total(free)
    if have_free + rg.total(pledged) < qty:
        return []  # let the ledger refuse with its own code and numbers
    picked = rg.take_lowest(free, min(qty, have_free)) if have_free else []
    if qty > have_free:
        picked += rg.take_lowest(pledged, qty - have_free)
    return rg.normalise(picked)


@dataclass(frozen=True, slots=True)
class FreezeView:
    """A freeze as a party sees it: with the blocks it locks now and its history (`get`), or alone (listings)."""

    freeze: Freeze
    blocks: list[FrozenBlock] | None = None
    events: list[FreezeEvent] | None = None

    def event_data(self, e: FreezeEvent) -> dict[str, Any]:
        """An event's data with its quantities in the instrument's unit."""
        data: dict[str, Any] = values.present(e.data, self.freeze.decimals)
        return data


def _can_see(who: Principal, f: Freeze) -> bool:
    return who.kind in SEES_ALL or who.participant_id in (f.court_id, f.holder_id)


async def _view(conn: AsyncConnection, who: Principal, freeze_id: int) -> FreezeView:
    f = await repo.get_freeze(conn, freeze_id)
    if f is None or not _can_see(who, f):  # another court's freeze: as if there were none
        raise NotFound("freeze", freeze_id)
    blocks = await ledger.frozen_blocks(conn, f.hold_id) if f.status == "active" and f.hold_id else []
    return FreezeView(f, blocks, await repo.freeze_events_of(conn, freeze_id))


async def get(rt: Runtime, who: Principal, freeze_id: int) -> FreezeView:
    async with rt.read() as conn:
        return await _view(conn, who, freeze_id)


async def listing(rt: Runtime, who: Principal, *, status: str | None, after: int, limit: int) -> list[FreezeView]:
    court = who.participant_id if who.kind == "court" else None
    holder = None if who.kind in SEES_ALL or who.kind == "court" else who.participant_id
    async with rt.read() as conn:
        return [FreezeView(f) for f in await repo.freezes(conn, court=court, holder=holder, status=status,
                                                           after=after, limit=limit)]


async def _replay(conn: AsyncConnection, who: Principal, client_id: str, fp: bytes) -> int | None:
    prior = await repo.freeze_by_client(conn, who.actor, client_id)
    if prior is None:
        return None
    check_replay(prior[1], fp)
    return prior[0]


@translate_refusals
async def create(rt: Runtime, who: Principal, client_id: str, *, holder_id: int, holder_identifier: str | None,
                 instrument: str, quantity: str,
                 serials: list[tuple[int, int]] | None, case_number: str, notice_number: str, term_start: date,
                 term_end: date, deduct_to_id: int | None) -> FreezeView:
    if who.kind != "court":
        raise Forbidden("only a court freezes holdings")
    inst = await instruments.instrument(rt, instrument)
    if inst.kind == "currency":
        raise Invalid("not_freezable", "cash is frozen at the settlement bank, not in this registry")
    qty = to_base(quantity, inst.decimals)
    named = rg.normalise(serials) if serials else []
    if named and rg.total(named) != qty:
        raise Invalid("serials_amount_mismatch", "the named serial ranges do not add up to the quantity")
    # The court names the holder by id and registered identifier, as its notice does (the freeze shows the
    # holder's name); anything else about it is the same 404 (participants.party).
    async with rt.read() as conn:
        holder = await participants.party(conn, who, holder_id, kinds=HOLDER_KINDS, identifier=holder_identifier,
                                          identified=True)
        if holder.holding_account is None:
            raise NotFound("participant", holder_id)
        if deduct_to_id is not None:
            await participants.party(conn, who, deduct_to_id, kinds=HOLDER_KINDS)
    if term_end < term_start:
        raise Invalid("invalid_term", "the term must end on or after its start")
    if term_end < values.today():
        raise Invalid("term_ended", f"the term ended on {term_end}")
    expires = val.end_of_day(term_end)
    fp = fingerprint({"op": "freeze", "holder": holder_id, "instrument": instrument, "qty": qty,
                      "serials": [list(r) for r in named], "case": case_number, "notice": notice_number,
                      "term": [term_start.isoformat(), term_end.isoformat()], "deduct_to": deduct_to_id})

    async def replay() -> FreezeView | None:
        async with rt.read() as conn:
            done = await _replay(conn, who, client_id, fp)
            return None if done is None else await _view(conn, who, done)

    async def freeze() -> FreezeView:
        return await _freeze(rt, who, client_id, fp, holder, instrument, qty, named, case_number, notice_number,
                             term_start, term_end, expires, deduct_to_id)

    # A concurrent twin (same court key and client id) that commits first: its freeze, not duplicate_notice.
    prior = await replay()
    return prior if prior is not None else await replay_on_refusal(freeze, replay)


async def _freeze(rt: Runtime, who: Principal, client_id: str, fp: bytes, holder: Participant, instrument: str,
                  qty: int, named: list[tuple[int, int]], case_number: str, notice_number: str, term_start: date,
                  term_end: date, expires: datetime, deduct_to_id: int | None) -> FreezeView:
    async with rt.read() as conn:
        if await repo.freeze_notice_taken(conn, who.participant_id, notice_number):
            raise DomainError("duplicate_notice", f"notice {notice_number} already froze holdings")
    court_holding = who.holding_account
    if court_holding is None:
        raise DomainError("no_account", "the court has no account to receive deductions")
    holding = holder.holding_account
    if holding is None:  # create() refused it already; accounts are never closed
        raise NotFound("participant", holder.id)
    if not named:
        named = await _pick(rt, holding, instrument, qty)
    async with rt.read() as conn:
        # Pledged and free units sit in separate blocks: name them piece by piece.
        pieces = tuple(rg.split_at(named, await ledger.block_bounds(conn, instrument, holding)))
    # The API key's client id names the ledger request: a retry after a crash re-finds the same hold.
    entry = await rt.submit(c.Request(
        who.actor, c.CreateHold("freeze", holding, court_holding, instrument, qty, pieces,
                                values.micros(expires)),
        f"{INTERNAL}freeze:{client_id}",
        {"case_number": case_number, "notice_number": notice_number, "holder": holder.id}))
    frozen = [list(r) for r in rg.normalise(json.loads(entry.meta).get("serials", []))]
    try:
        async with rt.tx() as conn:
            no = await pledges.next_registration_no(conn)
            freeze_id = await repo.insert_freeze(
                conn, court_id=who.participant_id, holder_id=holder.id, instrument=instrument, quantity=qty,
                requested_serials=[list(r) for r in named] or None, serials=frozen, case_number=case_number,
                notice_number=notice_number, term_start=term_start, term_end=term_end, expires_at=expires,
                deduct_to_id=deduct_to_id, status="active", hold_id=entry.seq, freeze_no=no)
            await repo.update_freeze(conn, freeze_id, root_id=freeze_id)
            await repo.add_freeze_event(conn, freeze_id, "frozen", {"serials": frozen, "quantity": qty},
                                        [entry.seq], who.actor, client_id, fp)
            units = await frozen_lots.frozen_pledge_units(conn, entry.seq)
            await frozen_lots.note_freeze(conn, units, entry.seq, "freeze_noticed",
                                       {"freeze_id": freeze_id, "court": who.name, "case_number": case_number},
                                       who.actor)
    except IntegrityError:
        async with rt.read() as conn:
            done = await _replay(conn, who, client_id, fp)
        if done is None:
            # A concurrent freeze took the notice number first: lift the hold this request made.
            await rt.submit(c.Request(who.actor, c.VoidHold(entry.seq), f"{INTERNAL}freeze:{client_id}:orphan",
                                      {"reason": "duplicate notice number"}))
            raise DomainError("duplicate_notice", f"notice {notice_number} already froze holdings") from None
        return await get(rt, who, done)
    recording.kick(rt)
    return await get(rt, who, freeze_id)


async def _locked(conn: AsyncConnection, who: Principal, freeze_id: int) -> Freeze:
    f = await repo.get_freeze(conn, freeze_id, lock=True)
    if f is None or not _can_see(who, f):  # visibility first, then the party, then the state
        raise NotFound("freeze", freeze_id)
    if who.participant_id != f.court_id:
        raise Forbidden("only the court that froze the holdings may change the freeze")
    if f.status != "active":
        code = "freeze_expired" if f.status == "expired" else "freeze_closed"
        raise DomainError(code, f"freeze {freeze_id} is {f.status}")
    if values.now() >= f.expires_at:
        raise DomainError("freeze_expired", f"freeze {freeze_id} expired at {iso(f.expires_at)}")
    return f


@translate_refusals
async def renew(rt: Runtime, who: Principal, client_id: str, freeze_id: int, *, term_end: date,
                notice_number: str) -> FreezeView:
    """续冻 before expiry: the same serials stay frozen without a gap; a new row continues the chain."""
    fp = fingerprint({"op": "renew", "freeze": freeze_id, "term_end": term_end.isoformat(), "notice": notice_number})
    async with rt.tx() as conn:
        done = await _replay(conn, who, client_id, fp)
        if done is None:
            f = await _locked(conn, who, freeze_id)
            if term_end <= f.term_end:
                raise Invalid("invalid_term", f"a renewal must end after the current term end {f.term_end}")
            if await repo.freeze_notice_taken(conn, who.participant_id, notice_number):
                raise DomainError("duplicate_notice", f"notice {notice_number} is already on record")
            blocks = await ledger.frozen_blocks(conn, f.hold_id) if f.hold_id else []
            serials = tuple((b.start_serial, b.end_serial) for b in blocks)
            expires = val.end_of_day(term_end)
            seqs: list[int] = []
            hold_id = None
            if blocks:  # a freeze left only with a claim on a pledge sale's surplus renews without units
                assert f.hold_id is not None  # its blocks are those its hold locks
                # One ledger event: the old hold voided and the same serials frozen again, never free between.
                entries = await rt.submit_linked(event_requests(who.actor, "relock", [
                    c.VoidHold(f.hold_id),
                    c.CreateHold("freeze", hold_debit(blocks, f), court_account(who), f.instrument, f.quantity,
                                 serials, values.micros(expires)),
                ], f"{INTERNAL}freeze:{freeze_id}:renew-relock",
                    {"freeze": freeze_id, "op": "renew", "notice_number": notice_number}))
                seqs, (hold_id,) = [e.seq for e in entries], created_holds(entries)
            done = await repo.insert_freeze(
                conn, court_id=f.court_id, holder_id=f.holder_id, instrument=f.instrument,
                quantity=f.quantity, requested_serials=None, serials=[list(r) for r in serials],
                case_number=f.case_number, notice_number=notice_number, term_start=values.today(),
                term_end=term_end, expires_at=expires, deduct_to_id=f.deduct_to_id, status="active",
                hold_id=hold_id, predecessor_id=f.id, root_id=f.root_id or f.id, freeze_no=f.freeze_no,
                proceeds_received=f.proceeds_received, deducted_quantity=f.deducted_quantity)
            await repo.update_freeze(conn, f.id, status="renewed", resolved_at=values.now())
            await repo.add_freeze_event(conn, f.id, "renewed", {"renewal": done}, seqs, who.actor, None, None)
            await repo.add_freeze_event(conn, done, "frozen",
                                        {"renewal_of": f.id, "serials": [list(r) for r in serials]},
                                        seqs, who.actor, client_id, fp)
    return await get(rt, who, done)


def hold_debit(blocks: list[FrozenBlock], f: Freeze) -> int:
    if not blocks:
        raise DomainError("freeze_closed", f"freeze {f.id} covers no units any more")
    return blocks[0].account


def court_account(who: Principal) -> int:
    if who.holding_account is None:
        raise DomainError("no_account", "the court has no account to receive deductions")
    return who.holding_account


@translate_refusals
async def deduct(rt: Runtime, who: Principal, client_id: str, freeze_id: int, *, quantity: str | None,
                 to_participant: int | None) -> FreezeView:
    """扣划: frozen units that no pledge holds go to the court's account (and on to the account it names);
    by default all of them. What is not deducted stays frozen. Pledged frozen units wait behind the
    pledge (`pledged` if more is asked than is free)."""
    fp = fingerprint({"op": "deduct", "freeze": freeze_id, "quantity": quantity, "to": to_participant})
    onward = await _destination(rt, who, freeze_id, to_participant)
    async with rt.tx() as conn:
        done = await _replay(conn, who, client_id, fp)
        if done is None:
            f = await _locked(conn, who, freeze_id)
            if f.hold_id is None:
                raise DomainError("nothing_frozen", f"freeze {freeze_id} holds no units any more: the senior "
                                  "pledgee's sale took them and pays this court its share of the surplus "
                                  f"({to_text(f.proceeds_received, CNY_DECIMALS)} so far)")
            blocks = await ledger.frozen_blocks(conn, f.hold_id)
            free = rg.normalise((b.start_serial, b.end_serial) for b in blocks if b.hold is None)
            deductible = rg.total(free)
            amount = deductible if quantity is None else to_base(quantity, f.decimals)
            if amount > f.quantity:
                raise Invalid("quantity_exceeds_freeze", "the deduction exceeds the frozen quantity")
            if amount == 0 or amount > deductible:
                raise await _pledged(conn, f, blocks, deductible)
            dest_id = to_participant or f.deduct_to_id
            # The ledger deducts the lowest frozen serials no pledge holds; name the same ones onward.
            moved = rg.take_lowest(free, amount)
            before = f.deducted_quantity or 0
            legs: list[c.Leg] = [c.PostHold(f.hold_id, amount, keep_remainder=True)]
            meta: dict[str, Any] = {"freeze": freeze_id, "op": "deduct", "case_number": f.case_number}
            if dest_id is not None and dest_id != who.participant_id:
                assert dest_id == onward[0]  # a freeze's deduct_to_id never changes
                if isinstance(onward[1], DomainError):
                    raise onward[1]
                assert onward[1] is not None
                dest = onward[1].holding_account
                if dest is None:
                    raise DomainError("no_account", f"participant {dest_id} has no holding account")
                pieces = tuple(rg.split_at(moved, await ledger.block_bounds(conn, f.instrument)))
                legs.append(c.Transfer(court_account(who), dest, f.instrument, amount, pieces))
                meta["to_participant"] = dest_id
            # One ledger event: the deduction, and the units on to the account the court names.
            entries = await rt.submit_linked(event_requests(
                who.actor, "deduction", legs, f"{INTERNAL}freeze:{freeze_id}:deduct:{before}", meta))
            left = f.quantity - amount
            remaining = rg.minus(f.serials, moved)
            # The rest stays frozen: a partial deduction does not end the freeze.
            await repo.update_freeze(conn, f.id, status="deducted" if left == 0 else "active",
                                     deducted_quantity=before + amount, quantity=left,
                                     serials=[list(r) for r in remaining],
                                     resolved_at=values.now() if left == 0 else None)
            await repo.add_freeze_event(conn, f.id, "deducted",
                                        {"quantity": amount, "serials": [list(r) for r in moved],
                                         "to_participant": dest_id or who.participant_id, "still_frozen": left},
                                        [e.seq for e in entries], who.actor, client_id, fp)
            done = f.id
    return await get(rt, who, done)


async def _destination(rt: Runtime, who: Principal, freeze_id: int, to_participant: int | None
                       ) -> tuple[int | None, Participant | DomainError | None]:
    """Where a deduction goes on to, resolved before the deduction's transaction (no pooled connection is
    taken inside it): (participant id, the participant or the refusal to answer when the deduction gets
    there). Nothing is resolved for a freeze the caller may not see (the transaction answers 404 first)."""
    dest_id = to_participant
    if dest_id is None:
        async with rt.read() as conn:
            f = await repo.get_freeze(conn, freeze_id)
        if f is None or not _can_see(who, f):
            return None, None
        dest_id = f.deduct_to_id
    if dest_id is None or dest_id == who.participant_id:
        return dest_id, None
    try:
        async with rt.read() as conn:
            return dest_id, await participants.party(conn, who, dest_id, kinds=HOLDER_KINDS)
    except DomainError as exc:
        return dest_id, exc


async def _pledged(conn: AsyncConnection, f: Freeze, blocks: list[FrozenBlock],
                   deductible: int) -> DomainError:
    """The refusal to deduct pledged units, naming the registrations (public) that rank first."""
    held = {b.hold: 0 for b in blocks if b.hold is not None}
    for b in blocks:
        if b.hold is not None:
            held[b.hold] += b.size
    names = []
    for pledge_id in await pledges.pledges_of_holds(conn, sorted(held)):
        p = await pledges.get_pledge(conn, pledge_id)
        if p is not None:
            names.append((p.number, p.pledgee_name, held.get(p.hold, 0)))
    dec = f.decimals
    listed = "; ".join(f"{to_text(n, dec)} pledged under registration {num} to {bank}" for num, bank, n in names)
    return DomainError("pledged", f"of the {to_text(f.quantity, dec)} frozen units, {listed}: the pledge was "
                       "registered first and its priority survives the freeze (民诉法解释 §157), so they cannot be "
                       f"deducted; at most {to_text(deductible, dec)} can be deducted now and the rest stays frozen. "
                       "If the pledgee enforces, its sale pays this court the frozen share of the surplus.",
                       pledges=[{"registration_number": num, "pledgee": bank, "quantity": to_text(n, dec)}
                                for num, bank, n in names], deductible=to_text(deductible, dec))


@translate_refusals
async def unfreeze(rt: Runtime, who: Principal, client_id: str, freeze_id: int, note: str | None) -> FreezeView:
    fp = fingerprint({"op": "unfreeze", "freeze": freeze_id, "note": note})
    async with rt.tx() as conn:
        done = await _replay(conn, who, client_id, fp)
        if done is None:
            await _lock_pledges_first(conn, freeze_id)
            f = await _locked(conn, who, freeze_id)
            units = await frozen_lots.frozen_pledge_units(conn, f.hold_id) if f.hold_id else {}
            seqs = []
            if f.hold_id is not None:
                entry = await rt.submit(c.Request(who.actor, c.VoidHold(f.hold_id),
                                                  f"{INTERNAL}freeze:{freeze_id}:unfreeze",
                                                  {"freeze": freeze_id, "op": "unfreeze"}))
                seqs = [entry.seq]
            await repo.update_freeze(conn, f.id, status="unfrozen", resolved_at=values.now())
            await repo.add_freeze_event(conn, f.id, "unfrozen", {"note": note}, seqs, who.actor, client_id, fp)
            if f.hold_id is not None:  # a freeze without units covers no pledged units to tell a bank of
                await frozen_lots.note_freeze(conn, units, f.hold_id, "freeze_lifted",
                                           {"freeze_id": f.id, "how": "unfrozen"}, who.actor)
            done = f.id
    recording.kick(rt)
    return await get(rt, who, done)


async def _lock_pledges_first(conn: AsyncConnection, freeze_id: int) -> None:
    """Lock the pledge rows a freeze's units belong to before the freeze row (one lock order with
    pledge enforcement, which locks its pledge and then the freezes on its lot)."""
    f = await repo.get_freeze(conn, freeze_id)
    if f is None or f.hold_id is None:
        return
    units = await frozen_lots.frozen_pledge_units(conn, f.hold_id)
    for pledge_id in await pledges.pledges_of_holds(conn, sorted(units)):
        await pledges.lock_pledge(conn, pledge_id)


async def expire_due(rt: Runtime) -> list[int]:
    now = values.now()
    async with rt.read() as conn:
        ids = await repo.due_freezes(conn, now)
    done = []
    for freeze_id in ids:
        try:
            async with rt.tx() as conn:
                await _lock_pledges_first(conn, freeze_id)
                f = await repo.get_freeze(conn, freeze_id, lock=True)
                if f is None or f.status != "active" or f.expires_at > now:
                    continue
                units = await frozen_lots.frozen_pledge_units(conn, f.hold_id) if f.hold_id else {}
                seqs = []
                if f.hold_id is not None:
                    entry = await rt.submit(c.Request(SYSTEM_ACTOR, c.ExpireHold(f.hold_id),
                                                      f"{INTERNAL}freeze:{freeze_id}:expire",
                                                      {"freeze": freeze_id, "op": "expire"}))
                    seqs = [entry.seq]
                await repo.update_freeze(conn, f.id, status="expired", resolved_at=now)
                await repo.add_freeze_event(conn, f.id, "expired", {}, seqs, SYSTEM_ACTOR, None, None)
                if f.hold_id is not None:
                    await frozen_lots.note_freeze(conn, units, f.hold_id, "freeze_lifted",
                                               {"freeze_id": f.id, "how": "expired"}, SYSTEM_ACTOR)
                done.append(freeze_id)
        except DomainError:
            continue  # the ledger clock is a hair behind: the next sweep takes it
    return done
