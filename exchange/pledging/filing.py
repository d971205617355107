"""Filing and the life of the lock: file, confirm, decline, withdraw, amend, extend, top up, partial
release, release and the promotion of the first junior claim into the lock.

The bank files; the pledgor confirms; only the confirmation locks units: a ledger hold of kind "pledge"
debiting the pledgor's holding account and crediting the bank's pledge escrow account, expiring at the
end of the term (+ grace). Changes of the lock are `void + new hold` as one ledger event (one entry, whose
legs apply all or none), naming the exact serials, so no other claim can slip in between. Releasing the
senior pledge promotes the first live junior claim into the lock (void + new hold to the junior's escrow,
one event), keeping its number.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Forbidden, Invalid
from exchange.core.idempotency import check_replay, fingerprint
from exchange.core.ledger_events import created_holds, event_requests
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.units import CNY_DECIMALS, iso, to_base
from exchange.pledging import repository as repo
from exchange.pledging import webhooks
from exchange.pledging.accounts import account_of, escrow_account, yours
from exchange.pledging.models import Claim, Pledge, jsonable
from exchange.pledging.recording import (
    cut_pieces,
    ledger_id,
    ledger_meta,
    mutate,
    record_event,
    require_pledgee,
    require_pledgor,
    require_unexpired,
    require_unfrozen,
    serials_of,
)
from exchange.pledging.refusals import take_units, translate_refusals
from exchange.pledging.valuation import reassess
from exchange.pledging.values import (
    micros,
    now,
    ranges_of,
    shown,
    today,
)
from exchange.pledging.views import (
    PledgeView,
    get,
)
from exchange.registry import encumbrances, expiry, instruments, participants
from ledger import commands as c
from ledger import queries as ledger
from ledger.state import Entry
from pledges import lifecycle, terms
from pledges import ranges as rg
from pledges import scope as sc
from pledges import valuation as val

PLEDGOR_KINDS = frozenset({"enterprise", "issuer", "operator"})


async def _relock(conn: AsyncConnection, rt: Runtime, who: Principal, p: Pledge, *,
                  serials: list[tuple[int, int]], quantity: int, expires_at: datetime, op: str) -> list[Entry]:
    """Void the lock and lock `serials` again, atomically: one ledger event (one entry), whose new hold's id
    is the entry's seq."""
    escrow = await escrow_account(conn, rt, p.pledgee_id)
    holding = await account_of(conn, rt, p.pledgor_id, "holding")
    pieces = await cut_pieces(conn, p.instrument, serials, holding)
    return await rt.submit_linked(event_requests(who.actor, "relock", [
        c.VoidHold(p.hold),
        c.CreateHold("pledge", holding, escrow, p.instrument, quantity, pieces, micros(expires_at)),
    ], ledger_id(p, f"{op}-relock"), ledger_meta(p, op)), own=yours(who))


# ----------------------------------------------------------------------------------- filing and consent


@translate_refusals
async def file(rt: Runtime, who: Principal, client_id: str, *, pledgor_id: int, pledgor_identifier: str | None,
               instrument: str, quantity: str,
               serials: list[tuple[int, int]] | None, loan_contract: str, secured_amount: str, term_start: date,
               term_end: date, grace_days: int, references: list[tuple[str, str]], haircut_bps: int | None,
               warning_bps: int | None, margin_call_bps: int | None, liquidation_bps: int | None,
               transfer_on_default: bool, secured_scope: dict[str, Any] | None = None) -> PledgeView:
    """The bank files; nothing is locked until the pledgor confirms. `secured_scope` is the contract's
    担保范围 (pledges.scope; None: everything §389 covers), its caps in CNY decimal strings.

    The bank names its client by id *and* registered identifier (USCC, or a person's identity document
    number), as in the loan contract: an unknown id, a wrong identifier, a participant that cannot pledge
    or is suspended are all the same 404 (participants.party), so filing tells a bank nothing about
    a participant it did not already know. A filing locks nothing, is seen by the bank and the pledgor only,
    and lapses unless the pledgor confirms it within ENVX_PLEDGE_CONFIRM_DAYS (it may decline it at once)."""
    if who.kind != "bank":
        raise Forbidden("only a bank files pledge registrations")
    if pledgor_id == who.participant_id:
        raise Invalid("invalid_pledgor", "a bank does not pledge units to itself")
    async with rt.read() as conn:
        await participants.party(conn, who, pledgor_id, kinds=PLEDGOR_KINDS, identifier=pledgor_identifier,
                                 identified=True)
    inst = await instruments.instrument(rt, instrument)
    if inst.kind == "currency":
        raise Invalid("not_pledgeable", "cash is not pledged in this registry; pledge credits or allowances")
    qty = to_base(quantity, inst.decimals)
    named = rg.normalise(serials) if serials else None
    if named is not None and rg.total(named) != qty:
        raise Invalid("serials_amount_mismatch", "the named serial ranges do not add up to the quantity")
    if named is not None:
        async with rt.read() as conn:
            retired = await ledger.retired_parts(conn, instrument, named)
        if retired:  # retirement is final and public: say so now, not at the pledgor's confirmation
            spans = ", ".join(f"{r.start_serial}-{r.end_serial} (entry {r.retired_seq})" for r in retired)
            raise DomainError("serials_retired", f"serials {spans} of {instrument} are retired; retired units can "
                              "never be pledged", retired=[{"start": r.start_serial, "end": r.end_serial,
                                                            "entry_seq": r.retired_seq} for r in retired])
    scope = _scope_in(secured_scope)
    fen = to_base(secured_amount, CNY_DECIMALS, field="secured_amount")
    if term_end < term_start:
        raise Invalid("invalid_term", "the term must end on or after its start")
    if term_end < today():
        raise Invalid("term_ended", f"the term ended on {term_end}; an expired registration cannot be filed")
    if term_end > terms.latest_end(term_start):
        raise Invalid("term_too_long", f"a registration's term is at most {terms.MAX_PERIOD_YEARS} years: from "
                      f"{term_start} it ends by {terms.latest_end(term_start)}")
    th = val.Thresholds(warning_bps or val.DEFAULT_WARNING_BPS, margin_call_bps or val.DEFAULT_MARGIN_CALL_BPS,
                        liquidation_bps or val.DEFAULT_LIQUIDATION_BPS).check()
    if haircut_bps is not None:
        val.check_haircut(haircut_bps)
    refs = sorted({(s.strip(), r.strip()) for s, r in references})
    if len(refs) != len(references):
        raise Invalid("reference_named_twice", "the same external reference is named twice")
    expires = val.end_of_day(term_end + timedelta(days=grace_days))
    changes = {"pledgee_id": who.participant_id, "pledgor_id": pledgor_id, "instrument": instrument,
               "quantity": qty, "requested_serials": [list(r) for r in named] if named else None, "serials": [],
               "loan_contract": loan_contract, "secured_amount": fen, "term_start": term_start.isoformat(),
               "term_end": term_end.isoformat(), "grace_days": grace_days, "expires_at": expires.isoformat(),
               "haircut_bps": haircut_bps, "warning_bps": th.warning_bps, "margin_call_bps": th.margin_call_bps,
               "liquidation_bps": th.liquidation_bps, "transfer_on_default": transfer_on_default,
               "margin_level": "ok", "secured_scope": scope}
    fp = fingerprint({"op": "file", **{k: v for k, v in changes.items() if k != "expires_at"},
                      "references": [list(r) for r in refs]})
    try:
        async with rt.tx() as conn:
            prior = await repo.event_by_client(conn, who.actor, client_id)
            if prior is not None:
                check_replay(prior.fingerprint, fp)
                pledge_id = int(prior.pledge_id)
            else:
                taken = await repo.reference_taken(conn, refs)
                if taken:
                    raise DomainError("duplicate_reference", f"{taken.source} {taken.reference} is already "
                                      f"registered (pledge {taken.pledge_id})")
                pledge_id = await repo.next_pledge_id(conn)
                number = f"ENVX-ZY-{pledge_id:08d}"
                state = lifecycle.apply({}, "filed", {"set": changes})
                await repo.insert_pledge(conn, pledge_id, number, state)
                await repo.add_references(conn, pledge_id, refs)
                await repo.add_event(conn, pledge_id, "filed",
                                     {"set": changes, "references": [{"source": s, "reference": r} for s, r in refs]},
                                     [], who.actor, client_id, fp)
    except IntegrityError:
        # A concurrent twin took the client id or the reference first: replay it or refuse.
        async with rt.read() as conn:
            prior = await repo.event_by_client(conn, who.actor, client_id)
            if prior is None:
                taken = await repo.reference_taken(conn, refs)
                raise DomainError("duplicate_reference", "an external reference of this filing was registered "
                                  f"concurrently (pledge {taken.pledge_id if taken else '?'})") from None
            check_replay(prior.fingerprint, fp)
            pledge_id = int(prior.pledge_id)
    return await get(rt, who, pledge_id)


@translate_refusals
async def confirm(rt: Runtime, who: Principal, client_id: str, pledge_id: int,
                  version: int | None = None) -> PledgeView:
    """The pledgor's consent: only now are the units locked (the registration takes effect). With `version`,
    consent to the filing as the pledgor read it: an amendment since is refused, not confirmed unseen."""
    fp = fingerprint({"op": "confirm", "pledge": pledge_id, **({} if version is None else {"version": version})})

    async def body(conn: AsyncConnection, p: Pledge) -> None:
        require_pledgor(who, p)
        lifecycle.require(p.status, "confirm")
        if version is not None and p.version != version:
            raise DomainError("terms_changed", f"the filing is at version {p.version}, not the version {version} "
                              "you read: the bank amended it since; read it again and confirm what it says now")
        if now() >= p.expires_at:
            raise DomainError("pledge_expired", "the registration's term ended before the pledgor confirmed it")
        if now() >= confirm_by(rt, p):
            raise DomainError("pledge_expired", f"the filing lapsed at {iso(confirm_by(rt, p))}: the pledgor "
                              f"did not confirm it within {rt.settings.pledge_confirm_days} days; the bank files again")
        escrow = await escrow_account(conn, rt, p.pledgee_id)
        holding = await account_of(conn, rt, p.pledgor_id, "holding")
        serials = await cut_pieces(conn, p.instrument, ranges_of(p.requested_serials), holding)
        await expiry.refuse_ended(rt, holding, p.instrument, serials, conn=conn)  # no collateral: term ended
        try:
            entry = await rt.submit(c.Request(
                who.actor,
                c.CreateHold("pledge", holding, escrow, p.instrument, p.quantity, serials,
                             micros(p.expires_at)),
                ledger_id(p, "lock"), ledger_meta(p, "lock", loan_contract=p.loan_contract,
                                             references=[r["reference"] for r in p.refs])), own=yours(who))
        except DomainError as exc:  # the pledgor holds the units: tell it what stands on them
            raise await encumbrances.naming(conn, exc, account=holding, instrument=p.instrument,
                                            serials=serials) from None
        reg = await repo.next_registration_no(conn)
        await record_event(conn, p, "confirmed", {"hold_id": entry.seq, "serials": serials_of(entry),
                                             "registration_no": reg, "registered_at": now()},
                      actor=who.actor, seqs=[entry.seq], client_id=client_id, fp=fp)

    return await mutate(rt, who, client_id, pledge_id, fp, body)


def confirm_by(rt: Runtime, p: Pledge) -> datetime:
    """When a filing lapses unless confirmed: ENVX_PLEDGE_CONFIRM_DAYS after it was filed."""
    return p.created_at + timedelta(days=rt.settings.pledge_confirm_days)


async def _end_filing(rt: Runtime, who: Principal, client_id: str, pledge_id: int, note: str | None, op: str,
                     event: str, party: Callable[[Principal, Pledge], None]) -> PledgeView:
    """A filing ends before it locked anything: declined by the pledgor, withdrawn by the bank."""
    fp = fingerprint({"op": op, "pledge": pledge_id, "note": note})

    async def body(conn: AsyncConnection, p: Pledge) -> None:
        party(who, p)
        lifecycle.require(p.status, op)
        await record_event(conn, p, event, {}, info={"note": note}, actor=who.actor, client_id=client_id, fp=fp)

    return await mutate(rt, who, client_id, pledge_id, fp, body)


@translate_refusals
async def decline(rt: Runtime, who: Principal, client_id: str, pledge_id: int, note: str | None) -> PledgeView:
    return await _end_filing(rt, who, client_id, pledge_id, note, "decline", "declined", require_pledgor)


@translate_refusals
async def withdraw(rt: Runtime, who: Principal, client_id: str, pledge_id: int, note: str | None) -> PledgeView:
    return await _end_filing(rt, who, client_id, pledge_id, note, "withdraw", "withdrawn", require_pledgee)


# ----------------------------------------------------------------------------------- changes of terms and lock


def terms_in_force(p: Pledge) -> dict[str, Any]:
    """The terms pledges/terms.py weighs a change against: the haircut as it applies now (the registration's
    own, else its instrument's default)."""
    return {"secured_amount": p.secured_amount, "haircut_bps": p.effective_haircut_bps,
            "warning_bps": p.warning_bps, "margin_call_bps": p.margin_call_bps, "liquidation_bps": p.liquidation_bps,
            "loan_contract": p.loan_contract, "transfer_on_default": p.transfer_on_default}


@translate_refusals
async def amend(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, secured_amount: str | None,
                loan_contract: str | None, haircut_bps: int | None, warning_bps: int | None,
                margin_call_bps: int | None, liquidation_bps: int | None, transfer_on_default: bool | None,
                add_references: list[tuple[str, str]], note: str | None) -> PledgeView:
    """Terms the bank may change alone: anything before confirmation; after it, only what favours the
    pledgor (pledges/terms.py: a lower secured amount, haircut or thresholds) and references."""
    fp = fingerprint({"op": "amend", "pledge": pledge_id, "secured": secured_amount, "contract": loan_contract,
                      "haircut": haircut_bps, "th": [warning_bps, margin_call_bps, liquidation_bps],
                      "tod": transfer_on_default, "refs": [list(r) for r in add_references], "note": note})

    async def body(conn: AsyncConnection, p: Pledge) -> None:
        require_pledgee(who, p)
        lifecycle.require(p.status, "amend")
        changes: dict[str, Any] = {}
        if secured_amount is not None:
            changes["secured_amount"] = to_base(secured_amount, CNY_DECIMALS, field="secured_amount")
        for key, value in (("loan_contract", loan_contract), ("transfer_on_default", transfer_on_default)):
            if value is not None:
                changes[key] = value
        if haircut_bps is not None:
            changes["haircut_bps"] = val.check_haircut(haircut_bps)
        if any(x is not None for x in (warning_bps, margin_call_bps, liquidation_bps)):
            th = val.Thresholds(warning_bps or p.warning_bps, margin_call_bps or p.margin_call_bps,
                                liquidation_bps or p.liquidation_bps).check()
            changes.update(warning_bps=th.warning_bps, margin_call_bps=th.margin_call_bps,
                           liquidation_bps=th.liquidation_bps)
        if p.status != lifecycle.FILED:  # confirmed: the bank alone only in the pledgor's favour (pledges/terms.py)
            worse = terms.needing_consent(terms_in_force(p), changes)
            if worse:
                raise DomainError("requires_pledgor_consent", f"{', '.join(worse)}: this change of a confirmed "
                                  "pledge's terms is not in the pledgor's favour; it needs a new registration "
                                  "the pledgor confirms")
        refs = sorted({(s.strip(), r.strip()) for s, r in add_references})
        if refs:
            taken = await repo.reference_taken(conn, refs)
            if taken:
                raise DomainError("duplicate_reference", f"{taken.source} {taken.reference} is already "
                                  f"registered (pledge {taken.pledge_id})")
            await repo.add_references(conn, p.id, refs)
        if not changes and not refs:
            raise Invalid("nothing_to_amend", "the amendment changes nothing")
        p = await record_event(conn, p, "amended", changes,
                      info={"note": note, "references_added": [{"source": s, "reference": r} for s, r in refs]},
                      actor=who.actor, client_id=client_id, fp=fp)
        if "secured_amount" in changes or "haircut_bps" in changes or "warning_bps" in changes:
            await reassess(conn, p, actor=who.actor, calendar=rt.settings.default_calendar)

    return await mutate(rt, who, client_id, pledge_id, fp, body)


@dataclass(frozen=True, slots=True)
class _LockChange:
    """A change of the lock that a use case planned: until `expires_at` the lock keeps `serials` (`quantity`
    units), or with `serials` None the same units (a later expiry: ledger AmendHold, which also works while a
    court freeze sits on them). `event` records it with the `terms` it changes besides and what `info` tells;
    `named`: the serials whose encumbrances a refused relock names (None: the refusal as the ledger gave it)."""

    event: str
    expires_at: datetime
    info: dict[str, Any]
    serials: list[tuple[int, int]] | None = None
    quantity: int = 0
    terms: dict[str, Any] = field(default_factory=dict)
    named: tuple[tuple[int, int], ...] | None = None


async def _change_lock(rt: Runtime, who: Principal, client_id: str, pledge_id: int, fp: bytes, op: str, *,
                       party: Callable[[Principal, Pledge], None],
                       plan: Callable[[AsyncConnection, Pledge], Awaitable[_LockChange]]) -> PledgeView:
    """Extend, top up or partly release: the party and the state first, then the use case's `plan` (which
    checks what it changes, a freeze on the lot included), then the ledger step and the event in the pledge's
    transaction; a new quantity or set of serials is judged against the margin again."""

    async def body(conn: AsyncConnection, p: Pledge) -> None:
        party(who, p)
        lifecycle.require(p.status, op)
        require_unexpired(p)
        change = await plan(conn, p)
        if change.serials is None:
            entry = await rt.submit(c.Request(who.actor, c.AmendHold(p.hold, micros(change.expires_at)),
                                              ledger_id(p, op), ledger_meta(p, op)))
            seqs = [entry.seq]
            changes = {**change.terms, "expires_at": change.expires_at, "hold_id": p.hold_id}
        else:
            ledger_op = op.replace("_", "-")
            try:
                entries = await _relock(conn, rt, who, p, serials=change.serials, quantity=change.quantity,
                                        expires_at=change.expires_at, op=ledger_op)
            except DomainError as exc:
                if change.named is None:
                    raise
                holding = await account_of(conn, rt, p.pledgor_id, "holding")
                raise await encumbrances.naming(conn, exc, account=holding, instrument=p.instrument,
                                                serials=change.named) from None
            seqs = [e.seq for e in entries]
            changes = {"quantity": change.quantity, "serials": [list(r) for r in change.serials],
                       "hold_id": created_holds(entries)[0]}
        p = await record_event(conn, p, change.event, changes, info={**change.info, "previous_hold": p.hold_id},
                               actor=who.actor, seqs=seqs, client_id=client_id, fp=fp)
        if change.serials is not None:
            await reassess(conn, p, actor=who.actor, calendar=rt.settings.default_calendar)

    return await mutate(rt, who, client_id, pledge_id, fp, body)


@translate_refusals
async def extend(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, term_end: date,
                 grace_days: int | None, note: str | None) -> PledgeView:
    """展期: the bank records the extension (as 中登网 lets the registrant do, up to 30 years at a time:
    pledges/terms.py); the lock gets the new expiry."""
    fp = fingerprint({"op": "extend", "pledge": pledge_id, "term_end": term_end.isoformat(), "grace": grace_days,
                      "note": note})

    async def plan(conn: AsyncConnection, p: Pledge) -> _LockChange:
        if term_end <= p.term_end:
            raise Invalid("invalid_term", f"an extension must end after the current term end {p.term_end}")
        if term_end > terms.latest_end(p.term_end):
            raise Invalid("term_too_long", f"an extension is at most {terms.MAX_PERIOD_YEARS} years: from the "
                          f"current term end {p.term_end} it ends by {terms.latest_end(p.term_end)}")
        grace = p.grace_days if grace_days is None else grace_days
        return _LockChange("extended", val.end_of_day(term_end + timedelta(days=grace)), {"note": note},
                           terms={"term_end": term_end, "grace_days": grace})

    return await _change_lock(rt, who, client_id, pledge_id, fp, "extend", party=require_pledgee, plan=plan)


@translate_refusals
async def top_up(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, quantity: str,
                 serials: list[tuple[int, int]] | None) -> PledgeView:
    """The pledgor adds units to the lock (the usual cure of a margin call)."""
    fp = fingerprint({"op": "top_up", "pledge": pledge_id, "quantity": quantity, "serials": serials})

    async def plan(conn: AsyncConnection, p: Pledge) -> _LockChange:
        add = to_base(quantity, p.decimals)
        holding = await account_of(conn, rt, p.pledgor_id, "holding")
        if serials:
            extra = rg.normalise(serials)
            if rg.total(extra) != add:
                raise Invalid("serials_amount_mismatch", "the named serial ranges do not add up to the quantity")
        else:
            free = await ledger.free_ranges(conn, holding, p.instrument)
            extra = take_units(rg.take_lowest, free, add, p.decimals)
        await require_unfrozen(conn, p, "topped up")
        await expiry.refuse_ended(rt, holding, p.instrument, extra, conn=conn)
        return _LockChange("topped_up", p.expires_at, {"added": [list(r) for r in extra]},
                           serials=rg.union(ranges_of(p.serials), extra), quantity=p.quantity + add,
                           named=tuple(extra) if serials else ())

    return await _change_lock(rt, who, client_id, pledge_id, fp, "top_up", party=require_pledgor, plan=plan)


@translate_refusals
async def partial_release(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, quantity: str | None,
                          serials: list[tuple[int, int]] | None, note: str | None) -> PledgeView:
    """Give back part of the lock: named serials, or the highest ones. The rest stays locked, same priority."""
    fp = fingerprint({"op": "partial_release", "pledge": pledge_id, "quantity": quantity, "serials": serials,
                      "note": note})

    async def plan(conn: AsyncConnection, p: Pledge) -> _LockChange:
        current = ranges_of(p.serials)
        if serials:
            released = rg.normalise(serials)
            if quantity is not None and rg.total(released) != to_base(quantity, p.decimals):
                raise Invalid("serials_amount_mismatch", "the named serial ranges do not add up to the quantity")
        elif quantity is not None:
            released = take_units(rg.take_highest, current, to_base(quantity, p.decimals), p.decimals)
        else:
            raise Invalid("quantity_required", "name the quantity or the serial ranges to release")
        remaining = rg.subtract(current, released)
        if not remaining:
            raise Invalid("use_release", "releasing every unit is a full release: POST .../release")
        await require_unfrozen(conn, p, "partially released")
        return _LockChange("partially_released", p.expires_at, {"released": [list(r) for r in released], "note": note},
                           serials=remaining, quantity=rg.total(remaining))

    return await _change_lock(rt, who, client_id, pledge_id, fp, "partial_release", party=require_pledgee,
                              plan=plan)


@translate_refusals
async def release(rt: Runtime, who: Principal, client_id: str, pledge_id: int, note: str | None) -> PledgeView:
    """解押. With registered junior claims on the lot, the first live one is promoted into the lock."""
    fp = fingerprint({"op": "release", "pledge": pledge_id, "note": note})

    async def body(conn: AsyncConnection, p: Pledge) -> None:
        require_pledgee(who, p)
        lifecycle.require(p.status, "release")
        claims = await repo.claims_of(conn, p.id, ("registered", "filed"))
        registered = sorted((cl for cl in claims if cl.status == "registered"), key=lambda x: x.rank_no)
        live = [cl for cl in registered if cl.term_end >= today()]
        lapsed = [cl for cl in claims if cl not in live]
        if not live:
            entry = await rt.submit(c.Request(who.actor, c.VoidHold(p.hold), ledger_id(p, "release"),
                                              ledger_meta(p, "release")))
            for cl in lapsed:
                await repo.update_claim(conn, cl.id, status="lapsed")
            await record_event(conn, p, "released", {},
                               info={"note": note, "claims_lapsed": [cl.id for cl in lapsed]},
                          actor=who.actor, seqs=[entry.seq], client_id=client_id, fp=fp)
            return
        await _promote(conn, rt, who, p, live, lapsed, note, client_id, fp)

    return await mutate(rt, who, client_id, pledge_id, fp, body)


async def _promote(conn: AsyncConnection, rt: Runtime, who: Principal, p: Pledge,
                   live: list[Claim], lapsed: list[Claim], note: str | None, client_id: str,
                   fp: bytes) -> None:
    """Release the senior lock and hand the same units to the first junior: one ledger event (one entry) that
    voids the senior's hold and locks the units for the junior, so they are never free in between."""
    await require_unfrozen(conn, p, "released while junior claims wait to be promoted")
    first, rest = live[0], live[1:]
    escrow = await escrow_account(conn, rt, first.claimant_id)
    holding = await account_of(conn, rt, p.pledgor_id, "holding")
    expires = val.end_of_day(first.term_end)
    entries = await rt.submit_linked(event_requests(who.actor, "promotion", [
        c.VoidHold(p.hold),
        c.CreateHold("pledge", holding, escrow, p.instrument, p.quantity,
                     await cut_pieces(conn, p.instrument, ranges_of(p.serials), holding), micros(expires)),
    ], ledger_id(p, f"release-promote-claim-{first.id}"),
        ledger_meta(p, "release", promote=True, claim=first.id, new_pledgee=first.claimant_id)))
    (lock,) = created_holds(entries)
    seqs = [e.seq for e in entries]
    new_id = await repo.next_pledge_id(conn)
    number = f"ENVX-ZY-{new_id:08d}"
    changes = {"pledgee_id": first.claimant_id, "pledgor_id": p.pledgor_id, "instrument": p.instrument,
               "quantity": p.quantity, "requested_serials": None, "serials": p.serials,
               "loan_contract": first.loan_contract, "secured_amount": first.amount,
               "term_start": today().isoformat(), "term_end": first.term_end.isoformat(), "grace_days": 0,
               "expires_at": expires.isoformat(), "haircut_bps": None, "warning_bps": val.DEFAULT_WARNING_BPS,
               "margin_call_bps": val.DEFAULT_MARGIN_CALL_BPS, "liquidation_bps": val.DEFAULT_LIQUIDATION_BPS,
               "transfer_on_default": False, "margin_level": "ok", "hold_id": lock,
               # Priority is kept: the claim's own registration number and time.
               "registration_no": first.registration_no, "registered_at": jsonable(first.registered_at),
               "promoted_from_claim": first.id}
    state = lifecycle.apply({}, "promoted", {"set": changes})
    await repo.insert_pledge(conn, new_id, number, state)
    if first.reference:
        await repo.add_references(conn, new_id, [("claim", f"{first.reference}#{first.id}")])
    ev = await repo.add_event(conn, new_id, "promoted", {"set": changes, "from_pledge": p.id,
                                                         "claim": first.id}, seqs,
                              who.actor, None, None)
    await repo.enqueue_webhook(conn, ev.id, ev.type, {
        first.claimant_id: webhooks.body_of(shown(repo.event_view(ev, number, p.instrument), p.decimals))})
    await repo.update_claim(conn, first.id, status="promoted")
    await repo.move_claims(conn, [cl.id for cl in rest], new_id)
    for cl in lapsed:
        await repo.update_claim(conn, cl.id, status="lapsed")
    await record_event(conn, p, "released", {}, info={"note": note, "promoted_claim": first.id,
                                                      "promoted_to": new_id,
                                                 "claims_moved": [cl.id for cl in rest],
                                                 "claims_lapsed": [cl.id for cl in lapsed]},
                  actor=who.actor, seqs=seqs, client_id=client_id, fp=fp)


def _scope_in(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The contract's secured scope as stored (caps in fen); None keeps §389's default."""
    if data is None:
        return None
    caps = {k: to_base(v, CNY_DECIMALS, field=f"secured_scope.caps.{k}") for k, v in (data.get("caps") or {}).items()}
    return sc.Scope.of({**data, "caps": caps}).to_json()


