"""Issuance with maker-checker: an issuer requests a batch, an operator (never the requester) approves.

Approval appends the batch to the ledger (serial range + credit to the holder) under a client id
derived from the request, so approving twice, or retrying after a crash, issues exactly once.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from exchange import instrument_kinds, instruments, participants
from exchange.errors import DomainError, Forbidden, NotFound
from exchange.idempotency import check_replay, fingerprint
from exchange.keys import Principal
from exchange.runtime import Runtime
from exchange.units import to_base, to_text
from ledger import commands as c

_COLUMNS = """r.id, r.instrument, r.issuer_id, r.holder_id, r.quantity, r.project, r.vintage, r.attributes,
    r.origin_registry, r.origin_serial, r.flags, r.status, r.requested_by, r.decided_by, r.decision_note,
    r.batch_id, r.created_at, r.decided_at, i.decimals, b.start_serial, b.end_serial"""
_FROM = """issuance_requests r JOIN instruments i ON i.code = r.instrument
    LEFT JOIN ledger_batches b ON b.id = r.batch_id"""


def _public(row: Any) -> dict[str, Any]:
    m = dict(row._mapping)
    m.pop("fingerprint", None)
    m["quantity"] = to_text(m["quantity"], m.pop("decimals"))
    return m


async def request(rt: Runtime, who: Principal, client_id: str, *, instrument: str, holder_id: int,
                  quantity: str, attributes: dict[str, Any], origin_registry: str | None,
                  origin_serial: str | None) -> dict[str, Any]:
    inst = await instruments.get(rt, instrument)
    if inst["kind"] == "currency":
        raise DomainError("not_issuable", "cash is deposited, not issued", 422)
    attrs = instrument_kinds.batch_attributes(inst["kind"], attributes, inst["attributes"])
    qty = to_base(quantity, inst["decimals"])
    holder = await participants.lookup(rt, holder_id)
    if holder["kind"] not in ("enterprise", "issuer", "operator"):
        raise DomainError("invalid_holder", "batches are issued to an enterprise, issuer or operator holder", 422)
    if (origin_registry is None) != (origin_serial is None):
        raise DomainError("invalid_origin", "origin_registry and origin_serial go together", 422)
    fp = fingerprint({"instrument": instrument, "holder": holder_id, "quantity": qty, "attributes": attrs,
                      "origin": [origin_registry, origin_serial]})
    actor = who.actor
    async with rt.read() as conn:
        row = (await conn.execute(
            text(f"SELECT {_COLUMNS}, r.fingerprint FROM {_FROM} WHERE r.requested_by = :a AND r.client_id = :c"),
            {"a": actor, "c": client_id})).first()
        if row is not None:
            check_replay(row.fingerprint, fp)
            return _public(row)
        if origin_registry:
            dup = (await conn.execute(
                text("""SELECT id FROM issuance_requests WHERE origin_registry = :o AND origin_serial = :s
                        AND status <> 'rejected'"""), {"o": origin_registry, "s": origin_serial})).first()
            if dup:
                raise DomainError("duplicate_import",
                                  f"{origin_registry} {origin_serial} was already imported (request {dup.id})")
        flags = await _double_issuance_flags(conn, inst["kind"], attrs)
    async with rt.tx() as conn:
        new_id = (await conn.execute(
            text("""INSERT INTO issuance_requests (instrument, issuer_id, holder_id, quantity, project, vintage,
                        attributes, origin_registry, origin_serial, flags, requested_by, client_id, fingerprint)
                    VALUES (:inst, :issuer, :holder, :qty, :project, :vintage, CAST(:attrs AS jsonb), :o, :s,
                            CAST(:flags AS jsonb), :a, :cid, :fp)
                    ON CONFLICT DO NOTHING RETURNING id"""),
            {"inst": instrument, "issuer": who.participant_id, "holder": holder_id, "qty": qty,
             "project": attrs.get("project") or attrs.get("parcel"), "vintage": attrs.get("vintage")
             or attrs.get("monitoring_period"), "attrs": json.dumps(attrs, ensure_ascii=False), "o": origin_registry,
             "s": origin_serial, "flags": json.dumps(flags, ensure_ascii=False), "a": actor, "cid": client_id,
             "fp": fp})).scalar()
    if new_id is None:
        return await request(rt, who, client_id, instrument=instrument, holder_id=holder_id, quantity=quantity,
                             attributes=attributes, origin_registry=origin_registry, origin_serial=origin_serial)
    return await get(rt, who, new_id)


async def _double_issuance_flags(conn: Any, kind: str, attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """One forest parcel or project must not be issued as two kinds for the same period: flag it."""
    key = attrs.get("parcel") or attrs.get("project")
    period = attrs.get("monitoring_period") or attrs.get("vintage")
    if not key:
        return []
    rows = await conn.execute(
        text("""SELECT r.id, i.kind, r.instrument FROM issuance_requests r JOIN instruments i ON i.code = r.instrument
                WHERE r.project = :key AND r.status <> 'rejected' AND i.kind <> :kind
                  AND (CAST(:period AS text) IS NULL OR r.vintage IS NULL OR r.vintage = CAST(:period AS text))"""),
        {"key": key, "kind": kind, "period": period})
    return [{"code": "possible_double_issuance", "request": r.id, "instrument": r.instrument,
             "message": f"{key} is also in request {r.id} as {r.kind}"} for r in rows]


async def get(rt: Runtime, who: Principal, request_id: int) -> dict[str, Any]:
    async with rt.read() as conn:
        row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM {_FROM} WHERE r.id = :i"), {"i": request_id})).first()
    if row is None:
        raise NotFound("issuance request", request_id)
    if who.kind not in ("operator", "auditor") and who.participant_id not in (row.issuer_id, row.holder_id):
        raise Forbidden("you may only see issuance requests you made or receive")
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


async def approve(rt: Runtime, who: Principal, request_id: int, note: str | None) -> dict[str, Any]:
    # The row lock serialises approvals of one request; the batch reference covers a crash between the
    # ledger append and the status update (a second operator then reuses the batch, never issues twice).
    async with rt.tx() as conn:
        row = (await conn.execute(text("SELECT * FROM issuance_requests WHERE id = :i FOR UPDATE"),
                                  {"i": request_id})).first()
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
                holder = await participants.lookup(rt, row.holder_id)
                meta = {"request": request_id, "attributes": row.attributes, "requested_by": row.requested_by,
                        "approved_by": who.actor, "issuer": row.issuer_id}
                if row.origin_registry:
                    meta["origin"] = {"registry": row.origin_registry, "serial": row.origin_serial}
                entry = await rt.submit(c.Request(
                    who.actor,
                    c.IssueBatch(rt.system["issuance"], holder["holding_account"], row.instrument, row.quantity,
                                 reference),
                    f"issuance:{request_id}", meta))
                batch_id = entry.body["batch"]
            await conn.execute(
                text("""UPDATE issuance_requests SET status = 'approved', decided_by = :d, decision_note = :n,
                            batch_id = :b, decided_at = now() WHERE id = :i"""),
                {"d": who.actor, "n": note, "b": batch_id, "i": request_id})
    return await get(rt, who, request_id)


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
