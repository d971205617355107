"""Issuance with maker-checker: an issuer requests a batch, an operator (never the requester) approves.

Approval appends the batch to the ledger (serial range + credit to the holder) under a client id
derived from the request, so approving twice, or retrying after a crash, issues exactly once.

What a request claims (exchange/instrument_kinds.claims) is checked when it is made, under advisory
locks on each claim so two requests for the same thing are checked one after the other:
- a forest ticket number already taken in its region (by a request not rejected) is refused, 409
  `ticket_number_taken`; the same number in another region is another ticket;
- an import names its origin registry and origin serial range (numbers): the same range again is refused
  409 `duplicate_import`, an overlapping one 409 `overlapping_import` — the overlapping units would be
  claimed by two batches here, and no reading of another registry's serials makes that right; the
  first import has to be rejected first;
- an import's quantity is exactly its origin serials: one origin serial is one unit of the instrument
  (10**decimals base units), so origin serials 1-10 import 10 units, nothing else (422
  `origin_quantity_mismatch`);
- an emission right whose term has already ended (`valid_until` before today, Asia/Shanghai) is not
  issued: 422 `term_ended` at the request, 409 `term_ended_before_approval` at an approval after its end;
- a parcel (any kind) or a project (within its kind) over a monitoring period overlapping another
  request's is flagged `possible_double_issuance`: real cases need a person to look (a correction, a
  different carbon pool), so it is not refused, but approving it needs an explicit override with a
  reason, which is recorded on the request and in the batch's ledger entry meta.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Forbidden, Invalid, NotFound
from exchange.core.idempotency import check_replay, fingerprint
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.units import to_base
from exchange.registry import expiry, instruments, issuers, participants
from exchange.registry import kinds as instrument_kinds
from exchange.registry import repository as repo
from exchange.registry.kinds import Claims, describe_subject, identifier_key
from exchange.registry.models import ClaimOverlap, Flag, IssuanceRequest, Override
from ledger import commands as c
from ledger import queries

# pg_advisory_xact_lock(LOCK_CLASS, hashtext(key)); "issu". The origin trigger of migration 0008 takes
# the same lock for `origin:<key>`.
LOCK_CLASS = 0x69737375
FLAG = "possible_double_issuance"
MAX_REASON = 2000


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an import comes from: a registry (compared normalised) and a serial range, both ends included."""

    registry: str
    start: int
    end: int
    reference: str | None

    @property
    def key(self) -> str:
        return identifier_key(self.registry)

    def view(self) -> dict[str, Any]:
        return {"registry": self.registry, "serials": {"start": self.start, "end": self.end},
                "reference": self.reference}


def origin_of(registry: str | None, serials: tuple[int, int] | None, reference: str | None) -> Origin | None:
    if registry is None and serials is None and reference is None:
        return None
    if registry is None or serials is None:
        raise Invalid("invalid_origin", "an import names origin_registry and origin_serials together "
                                        "(origin_reference is optional)")
    if not identifier_key(registry):
        raise Invalid("invalid_origin", "origin_registry has no letters or digits")
    start, end = serials
    if start > end:
        raise Invalid("invalid_origin", f"origin_serials end {end} is before start {start}")
    return Origin(registry, start, end, reference)


def _term_ended(attributes: dict[str, Any], today: date) -> str | None:
    """The end of a batch's term if it lies before `today` (emission rights carry one), else None."""
    until = attributes.get("valid_until")
    if until is None:
        return None
    day = until if isinstance(until, date) else date.fromisoformat(str(until))
    return day.isoformat() if day < today else None


async def _with_serials(conn: AsyncConnection, requests: list[IssuanceRequest]) -> list[IssuanceRequest]:
    """The requests with their issued batches' serial ranges (the ledger's)."""
    serials = await queries.batch_serials(conn, [r.batch_id for r in requests if r.batch_id is not None])
    return [r if r.batch_id is None else dataclasses.replace(r, serials=serials.get(r.batch_id)) for r in requests]


async def request(rt: Runtime, who: Principal, client_id: str, *, instrument: str, holder_id: int,
                  quantity: str, attributes: dict[str, Any], origin_registry: str | None = None,
                  origin_serials: tuple[int, int] | None = None,
                  origin_reference: str | None = None) -> IssuanceRequest:
    inst = await instruments.instrument(rt, instrument)
    if inst.kind == "currency":
        raise DomainError("not_issuable", "cash is deposited, not issued", 422)
    attrs = instrument_kinds.batch_attributes(inst.kind, attributes, inst.attributes)
    claims = instrument_kinds.claims(inst.kind, attrs)
    qty = to_base(quantity, inst.decimals)
    # An enterprise, issuer or operator holder, active: any other id is the same 404 (participants.party).
    async with rt.read() as conn:
        await issuers.refuse_unauthorised(conn, who, instrument)  # its own instruments only
        await participants.party(conn, who, holder_id, kinds=participants.ISSUANCE_HOLDER_KINDS)
    origin = origin_of(origin_registry, origin_serials, origin_reference)
    if origin is not None and qty != (origin.end - origin.start + 1) * 10 ** inst.decimals:
        raise Invalid("origin_quantity_mismatch", f"origin serials {origin.start}-{origin.end} are "
                      f"{origin.end - origin.start + 1} units of {instrument} (one origin serial is one unit), "
                      f"not {quantity}")
    ended = _term_ended(attrs, expiry.today_of(rt))
    if ended is not None:
        raise Invalid("term_ended", f"the term ended on {ended}: an emission right past its term is not issued")
    fp = fingerprint({"instrument": instrument, "holder": holder_id, "quantity": qty, "attributes": attrs,
                      "origin": origin.view() if origin else None})
    actor = who.actor
    keys = [f"subject:{s}" for s in claims.subjects]
    if claims.ticket:
        keys.append(f"ticket:{claims.ticket[0]}:{claims.ticket[1]}")
    if origin:
        keys.append(f"origin:{origin.key}")
    async with rt.tx() as conn:
        await repo.lock_claims(conn, LOCK_CLASS, keys)
        prior = await repo.issuance_by_client(conn, actor, client_id)
        if prior is not None:
            check_replay(prior.fingerprint, fp)
            return (await _with_serials(conn, [prior]))[0]
        if claims.ticket:
            await _refuse_taken_ticket(conn, *claims.ticket)
        if origin:
            await _refuse_overlapping_import(conn, origin)
        flags = await _flags(conn, claims)
        new_id = await repo.insert_issuance(
            conn, instrument=instrument, issuer_id=who.participant_id, holder_id=holder_id, quantity=qty,
            attributes=attrs, period=claims.period, ticket=claims.ticket,
            origin=(origin.registry, origin.key, origin.start, origin.end, origin.reference) if origin else None,
            flags=[f.json() for f in flags], actor=actor, client_id=client_id, fp=fp, subjects=list(claims.subjects))
    if new_id is None:  # the same client id, concurrently: answer as a retry would be answered
        return await request(rt, who, client_id, instrument=instrument, holder_id=holder_id, quantity=quantity,
                             attributes=attributes, origin_registry=origin_registry, origin_serials=origin_serials,
                             origin_reference=origin_reference)
    return await get(rt, who, new_id)


async def _refuse_taken_ticket(conn: AsyncConnection, region: str, number: str) -> None:
    taken = await repo.ticket_request(conn, region, number)
    if taken is not None:
        raise DomainError("ticket_number_taken", f"forest ticket {number} of region {region} is already "
                                                 f"issued or requested (request {taken})", existing_request=taken)


async def _refuse_overlapping_import(conn: AsyncConnection, origin: Origin) -> None:
    found = await repo.imports_overlapping(conn, origin.key, origin.start, origin.end)
    for r in found:
        if (r.start, r.end) == (origin.start, origin.end):
            raise DomainError("duplicate_import", f"{origin.registry} serials {origin.start}-{origin.end} were "
                                                  f"already imported (request {r.request})",
                              existing_request=r.request)
    if found:
        listed = ", ".join(f"{r.start}-{r.end} (request {r.request})" for r in found)
        raise DomainError("overlapping_import", f"{origin.registry} serials {origin.start}-{origin.end} overlap "
                                                f"imports already made: {listed}; a unit of another registry is "
                                                "imported once", existing_requests=[r.request for r in found])


async def _flags(conn: AsyncConnection, claims: Claims, *, request_id: int | None = None) -> list[Flag]:
    """Other requests, not rejected, that claim a subject of `claims` over an overlapping period. For an
    approval (`request_id`): only those approved already or requested before it, so the first of two
    requests for one parcel is approved without an override and the second needs one."""
    if not claims.subjects or claims.period is None:
        return []
    found = await repo.claim_overlaps(conn, list(claims.subjects), claims.period, before=request_id)
    return [_flag(r) for r in found]


def _flag(r: ClaimOverlap) -> Flag:
    subjects = tuple(describe_subject(s) for s in r.subjects)
    start, end = r.start.isoformat(), r.end.isoformat()
    return Flag(r.id, r.instrument, r.kind, r.status, subjects, (start, end),
                f"{', '.join(subjects)} over {start}..{end} is also in request {r.id} "
                f"({r.kind} {r.instrument}, {r.status})", FLAG)


async def _claims_of(conn: AsyncConnection, req: IssuanceRequest) -> Claims:
    subjects = await repo.issuance_subjects(conn, req.id)
    return Claims(tuple(subjects), req.period)


async def get(rt: Runtime, who: Principal, request_id: int) -> IssuanceRequest:
    async with rt.read() as conn:
        req = await repo.issuance(conn, request_id)
        if req is None or not req.visible_to(who.participant_id, sees_all=who.kind in participants.SEES_ALL):
            raise NotFound("issuance request", request_id)  # another's request: as if there were none
        return (await _with_serials(conn, [req]))[0]


async def listing(rt: Runtime, who: Principal, status: str | None, limit: int, after: int) -> list[IssuanceRequest]:
    party = None if who.kind in participants.SEES_ALL else who.participant_id
    async with rt.read() as conn:
        return await _with_serials(conn, await repo.issuances_after(conn, after, limit, party=party, status=status))


def override_reason(override_flags: bool, reason: str | None) -> str | None:
    """The reason of an explicit override, or None without one."""
    if override_flags and (reason is None or not reason.strip()):
        raise Invalid("override_reason_required", "overriding flags needs a reason")
    if not override_flags and reason is not None:
        raise Invalid("reason_without_override", "a reason is given with override_flags: true only")
    if reason is not None and len(reason) > MAX_REASON:
        raise Invalid("invalid_reason", f"a reason is at most {MAX_REASON} characters")
    return reason


async def approve(rt: Runtime, who: Principal, request_id: int, note: str | None,
                  override: str | None = None) -> IssuanceRequest:
    """`override`: the reason for approving although the request is flagged; without it a flagged
    request is refused 409 `flagged_double_issuance`, listing the flags."""
    async with rt.read() as conn:  # the holder never changes; look up its account before the row lock
        holder_id = await repo.issuance_holder(conn, request_id)
        if holder_id is None:
            raise NotFound("issuance request", request_id)
        holding_account = (await participants.find(conn, holder_id)).holding_account
    if holding_account is None:
        raise DomainError("no_account", f"participant {holder_id} has no holding account")
    # The row lock serialises approvals of one request; the batch reference covers a crash between the
    # ledger append and the status update (a second operator then reuses the batch, never issues twice).
    async with rt.tx() as conn:
        req = await repo.issuance(conn, request_id, lock=True)
        if req is None:
            raise NotFound("issuance request", request_id)
        if req.requested_by == who.actor:
            raise Forbidden("maker-checker: the requester may not approve their own request")
        if who.participant_id == req.holder_id:  # four eyes means no one approves units for itself
            raise Forbidden("the operator who approves an issuance may not be its holder")
        if req.status == "rejected":
            raise DomainError("request_rejected", f"issuance request {request_id} was rejected")
        if req.status == "requested":
            reference = f"issuance-request:{request_id}"
            batch_id = await queries.batch_id_by_reference(conn, reference)
            overridden: dict[str, Any] | None
            if batch_id is None:
                ended = _term_ended(req.attributes, expiry.today_of(rt))
                if ended is not None:
                    raise DomainError("term_ended_before_approval", f"the batch's term ended on {ended}, after it "
                                      "was requested: reject the request", valid_until=ended)
                decided = await _check_flags(conn, req, who, override)
                overridden = None if decided is None else decided.json()
                entry = await rt.submit(c.Request(
                    who.actor,
                    c.IssueBatch(rt.system["issuance"], holding_account, req.instrument, req.quantity, reference),
                    f"issuance:{request_id}", _entry_meta(req, who, overridden)))
                batch_id, seq = int(entry.body["batch"]), entry.seq
            else:  # issued before a crash: the ledger entry says what was decided, override included
                seq, overridden = await _issued_entry(conn, request_id)
            await repo.mark_approved(conn, request_id, who.actor, note, batch_id, seq, overridden)
    return await get(rt, who, request_id)


async def _check_flags(conn: AsyncConnection, req: IssuanceRequest, who: Principal,
                       override: str | None) -> Override | None:
    flags = await _flags(conn, await _claims_of(conn, req), request_id=req.id)
    if not flags:
        return None
    if override is None:
        listed = "; ".join(f.message for f in flags)
        raise DomainError("flagged_double_issuance",
                          f"issuance request {req.id} is flagged: {listed}. Approve with override_flags: true "
                          "and a reason, or reject it", flags=[f.json() for f in flags])
    return Override(tuple(flags), override, who.actor)


def _entry_meta(req: IssuanceRequest, who: Principal, overridden: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"request": req.id, "attributes": req.attributes, "requested_by": req.requested_by,
                            "approved_by": who.actor, "issuer": req.issuer_id}
    if req.origin_registry:
        origin: dict[str, Any] = {"registry": req.origin_registry, "reference": req.origin_reference}
        if req.origin_serials is not None:
            origin["serials"] = {"start": req.origin_serials[0], "end": req.origin_serials[1]}
        meta["origin"] = origin
    if overridden is not None:
        meta["override"] = overridden
    return meta


async def _issued_entry(conn: AsyncConnection, request_id: int) -> tuple[int, dict[str, Any] | None]:
    entry = await queries.first_entry_by_client_id(conn, "batch.issue", f"issuance:{request_id}")
    assert entry is not None, f"batch of issuance request {request_id} without its ledger entry"
    seq, meta = entry
    override: dict[str, Any] | None = json.loads(meta).get("override")
    return seq, override


async def reject(rt: Runtime, who: Principal, request_id: int, note: str | None) -> IssuanceRequest:
    async with rt.tx() as conn:
        req = await repo.issuance(conn, request_id, lock=True)
        if req is None:
            raise NotFound("issuance request", request_id)
        if req.requested_by == who.actor:
            raise Forbidden("maker-checker: the requester may not decide their own request")
        if req.status == "approved":
            raise DomainError("request_approved", f"issuance request {request_id} is already approved")
        if req.status == "requested":
            await repo.mark_rejected(conn, request_id, who.actor, note)
    return await get(rt, who, request_id)
