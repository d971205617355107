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

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Forbidden, Invalid, NotFound
from exchange.core.idempotency import check_replay, fingerprint
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.units import to_base, to_text
from exchange.registry import expiry, instruments, participants
from exchange.registry import kinds as instrument_kinds
from exchange.registry.kinds import Claims, describe_subject, identifier_key
from ledger import commands as c

# pg_advisory_xact_lock(LOCK_CLASS, hashtext(key)); "issu". The origin trigger of migration 0008 takes
# the same lock for `origin:<key>`.
LOCK_CLASS = 0x69737375
FLAG = "possible_double_issuance"
MAX_REASON = 2000

_COLUMNS = """r.id, r.instrument, i.kind, r.issuer_id, r.holder_id, r.quantity, r.attributes, r.origin_registry,
    lower(r.origin_serials) AS origin_start, upper(r.origin_serials) - 1 AS origin_end, r.origin_reference,
    r.flags, r.override, r.status, r.requested_by, r.decided_by, r.decision_note, r.batch_id, r.issue_entry_seq,
    r.created_at, r.decided_at, i.decimals, b.start_serial, b.end_serial"""
_FROM = """issuance_requests r JOIN instruments i ON i.code = r.instrument
    LEFT JOIN ledger_batches b ON b.id = r.batch_id"""


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


def _public(row: Any) -> dict[str, Any]:
    m = dict(row._mapping)
    m.pop("fingerprint", None)
    m["quantity"] = to_text(m["quantity"], m.pop("decimals"))
    start, end, reference = m.pop("origin_start"), m.pop("origin_end"), m.pop("origin_reference")
    registry = m.pop("origin_registry")
    m["origin"] = None if registry is None else {
        "registry": registry, "serials": None if start is None else {"start": start, "end": end},
        "reference": reference}
    return m


async def _lock(conn: AsyncConnection, keys: list[str]) -> None:
    """Advisory locks on every claim, in the order of the lock ids, so two requests never deadlock."""
    if keys:
        await conn.execute(text("""SELECT pg_advisory_xact_lock(:cls, h)
                                   FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest(CAST(:keys AS text[])) AS k
                                         ORDER BY h) AS ordered"""), {"cls": LOCK_CLASS, "keys": keys})


async def request(rt: Runtime, who: Principal, client_id: str, *, instrument: str, holder_id: int,
                  quantity: str, attributes: dict[str, Any], origin_registry: str | None = None,
                  origin_serials: tuple[int, int] | None = None,
                  origin_reference: str | None = None) -> dict[str, Any]:
    inst = await instruments.get(rt, instrument)
    if inst["kind"] == "currency":
        raise DomainError("not_issuable", "cash is deposited, not issued", 422)
    attrs = instrument_kinds.batch_attributes(inst["kind"], attributes, inst["attributes"])
    claims = instrument_kinds.claims(inst["kind"], attrs)
    qty = to_base(quantity, inst["decimals"])
    # An enterprise, issuer or operator holder, active: any other id is the same 404 (participants.counterparty).
    await participants.counterparty(rt, who, holder_id, kinds=participants.ISSUANCE_HOLDER_KINDS)
    origin = origin_of(origin_registry, origin_serials, origin_reference)
    if origin is not None and qty != (origin.end - origin.start + 1) * 10 ** inst["decimals"]:
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
        await _lock(conn, keys)
        row = (await conn.execute(
            text(f"SELECT {_COLUMNS}, r.fingerprint FROM {_FROM} WHERE r.requested_by = :a AND r.client_id = :c"),
            {"a": actor, "c": client_id})).first()
        if row is not None:
            check_replay(row.fingerprint, fp)
            return _public(row)
        if claims.ticket:
            await _refuse_taken_ticket(conn, *claims.ticket)
        if origin:
            await _refuse_overlapping_import(conn, origin)
        flags = await _flags(conn, claims)
        new_id = (await conn.execute(
            text("""INSERT INTO issuance_requests (instrument, issuer_id, holder_id, quantity, attributes, period,
                        ticket_region, ticket_number, origin_registry, origin_key, origin_serials, origin_reference,
                        flags, requested_by, client_id, fingerprint)
                    VALUES (:inst, :issuer, :holder, :qty, CAST(:attrs AS jsonb),
                            CASE WHEN CAST(:ps AS date) IS NULL THEN NULL
                                 ELSE daterange(CAST(:ps AS date), CAST(:pe AS date), '[]') END,
                            :tr, :tn, :o, :ok,
                            CASE WHEN CAST(:os AS bigint) IS NULL THEN NULL
                                 ELSE int8range(CAST(:os AS bigint), CAST(:oe AS bigint), '[]') END,
                            :oref, CAST(:flags AS jsonb), :a, :cid, :fp)
                    ON CONFLICT (requested_by, client_id) WHERE client_id IS NOT NULL DO NOTHING
                    RETURNING id"""),
            {"inst": instrument, "issuer": who.participant_id, "holder": holder_id, "qty": qty,
             "attrs": json.dumps(attrs, ensure_ascii=False),
             "ps": claims.period[0] if claims.period else None, "pe": claims.period[1] if claims.period else None,
             "tr": claims.ticket[0] if claims.ticket else None, "tn": claims.ticket[1] if claims.ticket else None,
             "o": origin.registry if origin else None, "ok": origin.key if origin else None,
             "os": origin.start if origin else None, "oe": origin.end if origin else None,
             "oref": origin.reference if origin else None, "flags": json.dumps(flags, ensure_ascii=False),
             "a": actor, "cid": client_id, "fp": fp})).scalar()
        if new_id is not None and claims.subjects:
            await conn.execute(
                text("""INSERT INTO issuance_subjects (subject, request_id)
                        SELECT s, :i FROM unnest(CAST(:subjects AS text[])) AS s"""),
                {"i": new_id, "subjects": list(claims.subjects)})
    if new_id is None:  # the same client id, concurrently: answer as a retry would be answered
        return await request(rt, who, client_id, instrument=instrument, holder_id=holder_id, quantity=quantity,
                             attributes=attributes, origin_registry=origin_registry, origin_serials=origin_serials,
                             origin_reference=origin_reference)
    return await get(rt, who, new_id)


async def _refuse_taken_ticket(conn: AsyncConnection, region: str, number: str) -> None:
    taken = (await conn.execute(
        text("""SELECT id FROM issuance_requests WHERE ticket_region = :r AND ticket_number = :n
                AND status <> 'rejected'"""), {"r": region, "n": number})).scalar()
    if taken is not None:
        raise DomainError("ticket_number_taken", f"forest ticket {number} of region {region} is already "
                                                 f"issued or requested (request {taken})", existing_request=taken)


async def _refuse_overlapping_import(conn: AsyncConnection, origin: Origin) -> None:
    rows = (await conn.execute(
        text("""SELECT id, lower(origin_serials) AS s, upper(origin_serials) - 1 AS e FROM issuance_requests
                WHERE origin_key = :k AND origin_serials && int8range(:s, :e, '[]') AND status <> 'rejected'
                ORDER BY id"""), {"k": origin.key, "s": origin.start, "e": origin.end})).all()
    for r in rows:
        if (r.s, r.e) == (origin.start, origin.end):
            raise DomainError("duplicate_import", f"{origin.registry} serials {origin.start}-{origin.end} were "
                                                  f"already imported (request {r.id})", existing_request=r.id)
    if rows:
        listed = ", ".join(f"{r.s}-{r.e} (request {r.id})" for r in rows)
        raise DomainError("overlapping_import", f"{origin.registry} serials {origin.start}-{origin.end} overlap "
                                                f"imports already made: {listed}; a unit of another registry is "
                                                "imported once", existing_requests=[r.id for r in rows])


async def _flags(conn: AsyncConnection, claims: Claims, *, request_id: int | None = None) -> list[dict[str, Any]]:
    """Other requests, not rejected, that claim a subject of `claims` over an overlapping period. For an
    approval (`request_id`): only those approved already or requested before it, so the first of two
    requests for one parcel is approved without an override and the second needs one."""
    if not claims.subjects or claims.period is None:
        return []
    sql = """SELECT r.id, r.instrument, i.kind, r.status, lower(r.period) AS start, upper(r.period) - 1 AS end,
                    array_agg(s.subject ORDER BY s.subject) AS subjects
             FROM issuance_subjects s JOIN issuance_requests r ON r.id = s.request_id
             JOIN instruments i ON i.code = r.instrument
             WHERE s.subject = ANY(CAST(:subjects AS text[])) AND r.status <> 'rejected'
               AND r.period && daterange(CAST(:ps AS date), CAST(:pe AS date), '[]')"""
    params: dict[str, Any] = {"subjects": list(claims.subjects), "ps": claims.period[0], "pe": claims.period[1]}
    if request_id is not None:
        sql += " AND r.id <> :me AND (r.status = 'approved' OR r.id < :me)"
        params["me"] = request_id
    rows = await conn.execute(text(sql + " GROUP BY r.id, i.kind ORDER BY r.id"), params)
    return [_flag(r) for r in rows]


def _flag(r: Any) -> dict[str, Any]:
    subjects = [describe_subject(s) for s in r.subjects]
    period = {"start": r.start.isoformat(), "end": r.end.isoformat()}
    return {"code": FLAG, "request": r.id, "instrument": r.instrument, "kind": r.kind, "status": r.status,
            "subjects": subjects, "period": period,
            "message": f"{', '.join(subjects)} over {period['start']}..{period['end']} is also in request {r.id} "
                       f"({r.kind} {r.instrument}, {r.status})"}


async def _claims_of(conn: AsyncConnection, row: Any) -> Claims:
    subjects = (await conn.execute(text("SELECT subject FROM issuance_subjects WHERE request_id = :i ORDER BY 1"),
                                   {"i": row.id})).scalars().all()
    period = None
    if row.period_start is not None:
        period = (row.period_start, row.period_end)
    return Claims(tuple(subjects), period)


async def get(rt: Runtime, who: Principal, request_id: int) -> dict[str, Any]:
    async with rt.read() as conn:
        row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM {_FROM} WHERE r.id = :i"), {"i": request_id})).first()
    if row is None or (who.kind not in ("operator", "auditor")
                       and who.participant_id not in (row.issuer_id, row.holder_id)):
        raise NotFound("issuance request", request_id)  # another's request: as if there were none
    return _public(row)


async def listing(rt: Runtime, who: Principal, status: str | None, limit: int, after: int) -> list[dict[str, Any]]:
    sql = f"SELECT {_COLUMNS} FROM {_FROM} WHERE r.id > :after"
    params: dict[str, Any] = {"after": after, "limit": limit}
    if who.kind not in ("operator", "auditor"):
        sql += " AND (r.issuer_id = :me OR r.holder_id = :me)"
        params["me"] = who.participant_id
    if status:
        sql += " AND r.status = :status"
        params["status"] = status
    async with rt.read() as conn:
        return [_public(r) for r in await conn.execute(text(sql + " ORDER BY r.id LIMIT :limit"), params)]


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
                  override: str | None = None) -> dict[str, Any]:
    """`override`: the reason for approving although the request is flagged; without it a flagged
    request is refused 409 `flagged_double_issuance`, listing the flags."""
    async with rt.read() as conn:  # the holder never changes; look up its account before the row lock
        holder_id = (await conn.execute(text("SELECT holder_id FROM issuance_requests WHERE id = :i"),
                                        {"i": request_id})).scalar()
    if holder_id is None:
        raise NotFound("issuance request", request_id)
    holding_account = (await participants.lookup(rt, holder_id))["holding_account"]
    # The row lock serialises approvals of one request; the batch reference covers a crash between the
    # ledger append and the status update (a second operator then reuses the batch, never issues twice).
    async with rt.tx() as conn:
        row = (await conn.execute(
            text("""SELECT *, lower(period) AS period_start, upper(period) - 1 AS period_end,
                           lower(origin_serials) AS origin_start, upper(origin_serials) - 1 AS origin_end
                    FROM issuance_requests WHERE id = :i FOR UPDATE"""), {"i": request_id})).first()
        if row is None:
            raise NotFound("issuance request", request_id)
        if row.requested_by == who.actor:
            raise Forbidden("maker-checker: the requester may not approve their own request")
        if row.status == "rejected":
            raise DomainError("request_rejected", f"issuance request {request_id} was rejected")
        if row.status == "requested":
            reference = f"issuance-request:{request_id}"
            batch_id = (await conn.execute(text("SELECT id FROM ledger_batches WHERE reference = :r"),
                                           {"r": reference})).scalar()
            if batch_id is None:
                ended = _term_ended(row.attributes or {}, expiry.today_of(rt))
                if ended is not None:
                    raise DomainError("term_ended_before_approval", f"the batch's term ended on {ended}, after it "
                                      "was requested: reject the request", valid_until=ended)
                overridden = await _check_flags(conn, row, who, override)
                entry = await rt.submit(c.Request(
                    who.actor,
                    c.IssueBatch(rt.system["issuance"], holding_account, row.instrument, row.quantity, reference),
                    f"issuance:{request_id}", _entry_meta(row, who, overridden)))
                batch_id, seq = entry.body["batch"], entry.seq
            else:  # issued before a crash: the ledger entry says what was decided, override included
                seq, overridden = await _issued_entry(conn, request_id)
            await conn.execute(
                text("""UPDATE issuance_requests SET status = 'approved', decided_by = :d, decision_note = :n,
                            batch_id = :b, issue_entry_seq = :seq, override = CAST(:o AS jsonb), decided_at = now()
                        WHERE id = :i"""),
                {"d": who.actor, "n": note, "b": batch_id, "seq": seq, "i": request_id,
                 "o": None if overridden is None else json.dumps(overridden, ensure_ascii=False)})
    return await get(rt, who, request_id)


async def _check_flags(conn: AsyncConnection, row: Any, who: Principal,
                       override: str | None) -> dict[str, Any] | None:
    flags = await _flags(conn, await _claims_of(conn, row), request_id=row.id)
    if not flags:
        return None
    if override is None:
        listed = "; ".join(f["message"] for f in flags)
        raise DomainError("flagged_double_issuance",
                          f"issuance request {row.id} is flagged: {listed}. Approve with override_flags: true "
                          "and a reason, or reject it", flags=flags)
    return {"flags": flags, "reason": override, "by": who.actor}


def _entry_meta(row: Any, who: Principal, overridden: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"request": row.id, "attributes": row.attributes, "requested_by": row.requested_by,
                            "approved_by": who.actor, "issuer": row.issuer_id}
    if row.origin_registry:
        origin: dict[str, Any] = {"registry": row.origin_registry, "reference": row.origin_reference}
        if row.origin_start is not None:
            origin["serials"] = {"start": row.origin_start, "end": row.origin_end}
        meta["origin"] = origin
    if overridden is not None:
        meta["override"] = overridden
    return meta


async def _issued_entry(conn: AsyncConnection, request_id: int) -> tuple[int, dict[str, Any] | None]:
    entry = (await conn.execute(
        text("SELECT seq, meta FROM ledger_entries WHERE type = 'batch.issue' AND client_id = :c ORDER BY seq LIMIT 1"),
        {"c": f"issuance:{request_id}"})).first()
    assert entry is not None, f"batch of issuance request {request_id} without its ledger entry"
    return entry.seq, json.loads(bytes(entry.meta)).get("override")


async def reject(rt: Runtime, who: Principal, request_id: int, note: str | None) -> dict[str, Any]:
    async with rt.tx() as conn:
        row = (await conn.execute(text("SELECT * FROM issuance_requests WHERE id = :i FOR UPDATE"),
                                  {"i": request_id})).first()
        if row is None:
            raise NotFound("issuance request", request_id)
        if row.requested_by == who.actor:
            raise Forbidden("maker-checker: the requester may not decide their own request")
        if row.status == "approved":
            raise DomainError("request_approved", f"issuance request {request_id} is already approved")
        if row.status == "requested":
            await conn.execute(
                text("""UPDATE issuance_requests SET status = 'rejected', decided_by = :d, decision_note = :n,
                            decided_at = now() WHERE id = :i"""), {"d": who.actor, "n": note, "i": request_id})
    return await get(rt, who, request_id)

