"""The registry's SQL, all of it: every function takes the caller's connection and answers typed rows
(exchange/registry/models.py)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.registry.models import (
    ClaimOverlap,
    DueBatch,
    EndedBlock,
    ImportedRange,
    Instrument,
    IssuanceRequest,
    IssuerGrant,
    LeftBlock,
    Participant,
    StatusChange,
)
from exchange.registry.subjects import IdDocument, Subject
from ledger import queries as ledger


async def encumbrances(conn: AsyncConnection, account: int, instrument: str, serials: list[tuple[int, int]]
                       ) -> list[dict[str, Any]]:
    """What stands on each named serial of `account`: a pledge (registration number, pledgee), a freeze
    (court, case), an order hold (market, order), another hold, retirement -- or that the serials are not
    in the account at all. For the account's holder only (exchange.registry.encumbrances decides who asks).
    The blocks are the ledger's (ledger.queries.blocks_across); the names of what holds them are ours."""
    blocks = await ledger.blocks_across(conn, instrument, serials)
    pledged = {int(r.hold_id): r for r in await conn.execute(text("""
        SELECT p.hold_id, p.number AS pledge_number, pe.name AS pledgee_name
        FROM pledges p JOIN participants pe ON pe.id = p.pledgee_id WHERE p.hold_id = ANY(:h)"""),
        {"h": sorted({b.hold for b in blocks if b.hold is not None and b.hold_kind == "pledge"})})}
    frozen = {int(r.hold_id): r for r in await conn.execute(text("""
        SELECT f.hold_id, f.case_number, c.name AS court_name
        FROM freezes f LEFT JOIN participants c ON c.id = f.court_id WHERE f.hold_id = ANY(:h)"""),
        {"h": sorted({b.frozen_by for b in blocks if b.frozen_by is not None})})}
    ordered = {int(r.hold_id): r for r in await conn.execute(text(
        "SELECT hold_id, market_id, id AS order_id FROM orders WHERE hold_id = ANY(:h)"),
        {"h": sorted({b.hold for b in blocks if b.hold is not None and b.hold_kind == "order"})})}
    out = []
    for b in blocks:
        p = pledged.get(b.hold) if b.hold is not None and b.hold_kind == "pledge" else None
        f = frozen.get(b.frozen_by) if b.frozen_by is not None else None
        o = ordered.get(b.hold) if b.hold is not None and b.hold_kind == "order" else None
        out.append({"start_serial": b.start_serial, "end_serial": b.end_serial, "mine": b.account == account,
                    "hold": b.hold, "frozen_by": b.frozen_by, "retired_seq": b.retired_seq, "hold_kind": b.hold_kind,
                    "pledge_number": p and p.pledge_number, "pledgee_name": p and p.pledgee_name,
                    "case_number": f and f.case_number, "court_name": f and f.court_name,
                    "market_id": o and o.market_id, "order_id": o and o.order_id})
    return out


# --- participants -------------------------------------------------------------------------------------------

_PARTICIPANT = ("id, name, kind, subject, uscc, id_document_type, id_document_country, id_document_number, "
                "holding_account, cash_account, status, suspended_at, suspended_by, suspension_reason, created_at")
_CHANGE = "id, participant_id, change, reason, actor, approved_by, operator_action_id, created_at"


async def participant(conn: AsyncConnection, participant_id: int) -> Participant | None:
    row = (await conn.execute(text(f"SELECT {_PARTICIPANT} FROM participants WHERE id = :i"),
                              {"i": participant_id})).mappings().first()
    return None if row is None else Participant.from_row(row)


async def participants_after(conn: AsyncConnection, after: int, limit: int, *, only: int | None,
                             kind: str | None) -> list[Participant]:
    """Participants by id after `after`; `only`: just that one (a caller that sees itself only)."""
    sql = f"SELECT {_PARTICIPANT} FROM participants WHERE id > :after"
    params: dict[str, Any] = {"after": after, "limit": limit}
    if only is not None:
        sql += " AND id = :me"
        params["me"] = only
    if kind:
        sql += " AND kind = :kind"
        params["kind"] = kind
    rows = await conn.execute(text(sql + " ORDER BY id LIMIT :limit"), params)
    return [Participant.from_row(r) for r in rows.mappings()]


async def admission(conn: AsyncConnection, actor: str, client_id: str) -> Participant | None:
    """The participant `actor` admitted under `client_id`, with the admission's fingerprint."""
    row = (await conn.execute(
        text(f"SELECT {_PARTICIPANT}, fingerprint FROM participants WHERE created_by = :a AND client_id = :c"),
        {"a": actor, "c": client_id})).mappings().first()
    return None if row is None else Participant.from_row(row)


async def uscc_taken(conn: AsyncConnection, uscc: str) -> bool:
    return (await conn.execute(text("SELECT 1 FROM participants WHERE uscc = :u"), {"u": uscc})).first() is not None


async def id_document_taken(conn: AsyncConnection, doc: IdDocument) -> bool:
    return (await conn.execute(
        text("""SELECT 1 FROM participants WHERE id_document_type = :t AND id_document_number = :n
                  AND coalesce(id_document_country, '') = coalesce(CAST(:c AS text), '')"""),
        {"t": doc.type, "n": doc.number, "c": doc.country})).first() is not None


async def insert_participant(conn: AsyncConnection, actor: str, client_id: str, name: str, kind: str,
                             subject: Subject, fp: bytes) -> Participant | None:
    """None if a concurrent admission with the same client id inserted first."""
    doc = subject.id_document
    row = (await conn.execute(
        text(f"""INSERT INTO participants (name, kind, subject, uscc, id_document_type, id_document_country,
                                           id_document_number, created_by, client_id, fingerprint)
                 VALUES (:n, :k, :s, :u, :dt, :dc, :dn, :a, :cid, :fp)
                 ON CONFLICT (created_by, client_id) WHERE client_id IS NOT NULL DO NOTHING
                 RETURNING {_PARTICIPANT}, fingerprint"""),
        {"n": name, "k": kind, "s": subject.kind, "u": subject.uscc, "dt": doc.type if doc else None,
         "dc": doc.country if doc else None, "dn": doc.number if doc else None, "a": actor,
         "cid": client_id, "fp": fp})).mappings().first()
    return None if row is None else Participant.from_row(row)


async def set_accounts(conn: AsyncConnection, participant_id: int, holding: int, cash: int) -> Participant:
    row = (await conn.execute(
        text(f"""UPDATE participants SET holding_account = :h, cash_account = :c WHERE id = :i
                 RETURNING {_PARTICIPANT}"""), {"h": holding, "c": cash, "i": participant_id})).mappings().one()
    return Participant.from_row(row)


async def owner_of_account(conn: AsyncConnection, account: int) -> int | None:
    row = (await conn.execute(
        text("SELECT id FROM participants WHERE holding_account = :a OR cash_account = :a"), {"a": account})).first()
    return None if row is None else int(row.id)


async def status_of(conn: AsyncConnection, participant_id: int, *, lock: bool = False) -> str | None:
    """The participant's status (FOR UPDATE with `lock`); None if there is no such participant."""
    sql = "SELECT status FROM participants WHERE id = :i" + (" FOR UPDATE" if lock else "")
    status = (await conn.execute(text(sql), {"i": participant_id})).scalar()
    return None if status is None else str(status)


async def mark_suspended(conn: AsyncConnection, participant_id: int, actor: str, reason: str) -> None:
    """Suspended now, and its open enrollment codes cancelled."""
    await conn.execute(
        text("""UPDATE participants SET status = 'suspended', suspended_at = now(), suspended_by = :a,
                    suspension_reason = :r WHERE id = :i"""), {"a": actor, "r": reason, "i": participant_id})
    await conn.execute(
        text("""UPDATE enrollment_codes SET cancelled_at = now(), cancel_reason = 'participant suspended'
                WHERE participant_id = :i AND used_at IS NULL AND cancelled_at IS NULL"""), {"i": participant_id})


async def mark_active(conn: AsyncConnection, participant_id: int) -> None:
    await conn.execute(
        text("""UPDATE participants SET status = 'active', suspended_at = NULL, suspended_by = NULL,
                    suspension_reason = NULL WHERE id = :i"""), {"i": participant_id})


async def status_change(conn: AsyncConnection, actor: str, client_id: str) -> StatusChange | None:
    row = (await conn.execute(
        text(f"""SELECT {_CHANGE}, fingerprint FROM participant_status_changes
                 WHERE actor = :a AND client_id = :c"""), {"a": actor, "c": client_id})).mappings().first()
    return None if row is None else StatusChange.from_row(row)


async def insert_status_change(conn: AsyncConnection, participant_id: int, change: str, reason: str, actor: str,
                               client_id: str, fp: bytes, *, approved_by: str | None = None,
                               operator_action_id: int | None = None) -> StatusChange:
    row = (await conn.execute(
        text(f"""INSERT INTO participant_status_changes (participant_id, change, reason, actor, approved_by,
                                                         operator_action_id, client_id, fingerprint)
                 VALUES (:i, :ch, :r, :a, :ap, :op, :c, :fp) RETURNING {_CHANGE}"""),
        {"i": participant_id, "ch": change, "r": reason, "a": actor, "ap": approved_by, "op": operator_action_id,
         "c": client_id, "fp": fp})).mappings().one()
    return StatusChange.from_row(row)


# --- instruments --------------------------------------------------------------------------------------------

_INSTRUMENT = "code, name, kind, decimals, unit, attributes, created_at"


async def instrument(conn: AsyncConnection, code: str, *, with_origin: bool = False) -> Instrument | None:
    """`with_origin`: also who defined it under which client id, and the fingerprint (replays)."""
    extra = ", fingerprint, created_by, client_id" if with_origin else ""
    row = (await conn.execute(text(f"SELECT {_INSTRUMENT}{extra} FROM instruments WHERE code = :c"),
                              {"c": code})).mappings().first()
    return None if row is None else Instrument.from_row(row)


_GRANT = """SELECT g.instrument, g.participant_id, p.name AS participant_name, g.granted_by, g.granted_at
             FROM instrument_issuers g JOIN participants p ON p.id = g.participant_id"""


async def grant_issuer(conn: AsyncConnection, instrument: str, participant_id: int, granted_by: str) -> IssuerGrant:
    """The grant, made now or earlier (a second grant of the same authority is the first one)."""
    await conn.execute(text("""INSERT INTO instrument_issuers (instrument, participant_id, granted_by)
                               VALUES (:i, :p, :by) ON CONFLICT (instrument, participant_id) DO NOTHING"""),
                       {"i": instrument, "p": participant_id, "by": granted_by})
    row = (await conn.execute(text(f"{_GRANT} WHERE g.instrument = :i AND g.participant_id = :p"),
                              {"i": instrument, "p": participant_id})).mappings().one()
    return IssuerGrant.from_row(row)


async def issuers_of(conn: AsyncConnection, instrument: str) -> list[IssuerGrant]:
    rows = await conn.execute(text(f"{_GRANT} WHERE g.instrument = :i ORDER BY g.participant_id"), {"i": instrument})
    return [IssuerGrant.from_row(r) for r in rows.mappings()]


async def is_issuer_of(conn: AsyncConnection, instrument: str, participant_id: int) -> bool:
    return (await conn.execute(text("SELECT 1 FROM instrument_issuers WHERE instrument = :i AND participant_id = :p"),
                               {"i": instrument, "p": participant_id})).first() is not None


async def instruments(conn: AsyncConnection, kind: str | None = None) -> list[Instrument]:
    sql = f"SELECT {_INSTRUMENT} FROM instruments"
    params: dict[str, Any] = {}
    if kind:
        sql += " WHERE kind = :k"
        params["k"] = kind
    rows = await conn.execute(text(sql + " ORDER BY code"), params)
    return [Instrument.from_row(r) for r in rows.mappings()]


async def insert_instrument(conn: AsyncConnection, actor: str, client_id: str, *, code: str, name: str, kind: str,
                            decimals: int, unit: str, attributes: dict[str, Any], fp: bytes) -> Instrument | None:
    """None if the code was defined concurrently."""
    row = (await conn.execute(
        text(f"""INSERT INTO instruments (code, name, kind, decimals, unit, attributes, created_by, client_id,
                                          fingerprint)
                 VALUES (:code, :name, :kind, :dec, :unit, CAST(:attrs AS jsonb), :a, :cid, :fp)
                 ON CONFLICT (code) DO NOTHING RETURNING {_INSTRUMENT}"""),
        {"code": code, "name": name, "kind": kind, "dec": decimals, "unit": unit,
         "attrs": json.dumps(attributes, ensure_ascii=False), "a": actor, "cid": client_id, "fp": fp})
    ).mappings().first()
    return None if row is None else Instrument.from_row(row)


async def insert_cash_instrument(conn: AsyncConnection) -> None:
    await conn.execute(text(
        """INSERT INTO instruments (code, name, kind, decimals, unit, created_by)
           VALUES ('CNY', '人民币 (cash, in fen)', 'currency', 2, 'CNY', 'system') ON CONFLICT DO NOTHING"""))


# --- system accounts ----------------------------------------------------------------------------------------

async def system_accounts(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(text("SELECT name, account FROM system_accounts"))
    return {str(r.name): int(r.account) for r in rows}


async def insert_system_account(conn: AsyncConnection, name: str, account: int) -> None:
    await conn.execute(text("INSERT INTO system_accounts (name, account) VALUES (:n, :a) ON CONFLICT DO NOTHING"),
                       {"n": name, "a": account})


# --- issuance requests and their batches --------------------------------------------------------------------

async def batch_terms(conn: AsyncConnection, batches: set[int]) -> dict[int, tuple[str, str]]:
    """Batch -> (valid_from, valid_until) for batches that carry a term (emission rights)."""
    if not batches:
        return {}
    rows = await conn.execute(text(
        """SELECT batch_id, attributes->>'valid_from' AS f, attributes->>'valid_until' AS u FROM issuance_requests
           WHERE batch_id = ANY(:b) AND attributes ? 'valid_until'"""), {"b": sorted(batches)})
    return {int(r.batch_id): (r.f, r.u) for r in rows}


# --- the ends of terms (exchange/registry/expiry.py) --------------------------------------------------------
# The term is the registry's (its issuance requests), the blocks and holds the ledger's (ledger.queries).

async def batches_past_term(conn: AsyncConnection, today: date) -> list[DueBatch]:
    rows = await conn.execute(text("""
        SELECT r.batch_id, r.instrument, r.attributes->>'valid_until' AS valid_until, i.decimals
        FROM issuance_requests r JOIN instruments i ON i.code = r.instrument
        WHERE i.kind = 'emission_right' AND r.batch_id IS NOT NULL
          AND CAST(r.attributes->>'valid_until' AS date) < :today
        ORDER BY r.batch_id"""), {"today": today})
    return [DueBatch.from_row(r) for r in rows.mappings()]


async def left_of_batch(conn: AsyncConnection, batch: int) -> list[LeftBlock]:
    blocks = await ledger.unretired_blocks(conn, batch=batch)
    escrows = {int(r.account) for r in await conn.execute(
        text("SELECT account FROM pledge_escrow_accounts WHERE account = ANY(:a)"),
        {"a": sorted({b.account for b in blocks})})}
    return [LeftBlock(b.account, b.start_serial, b.end_serial, b.hold, b.frozen_by, b.hold_kind, b.account in escrows)
            for b in blocks]


async def _ended_batches(conn: AsyncConnection, batches: list[int] | None, instrument: str | None, today: date, *,
                         emission_rights: bool = True) -> dict[int, tuple[str, int]]:
    """Batch id -> (valid_until, decimals) of the batches (of emission rights; of `instrument`; among `batches`)
    whose term ended before `today`."""
    rows = await conn.execute(text("""
        SELECT r.batch_id, r.attributes->>'valid_until' AS valid_until, i.decimals
        FROM issuance_requests r JOIN instruments i ON i.code = r.instrument
        WHERE r.batch_id IS NOT NULL AND (i.kind = 'emission_right' OR NOT :er) AND r.attributes ? 'valid_until'
          AND CAST(r.attributes->>'valid_until' AS date) < :today
          AND (CAST(:i AS text) IS NULL OR r.instrument = CAST(:i AS text))
          AND (CAST(:b AS bigint[]) IS NULL OR r.batch_id = ANY(CAST(:b AS bigint[])))"""),
        {"today": today, "i": instrument, "b": batches, "er": emission_rights})
    return {int(r.batch_id): (r.valid_until, int(r.decimals)) for r in rows}


async def ended_blocks(conn: AsyncConnection, account: int, instrument: str, today: date, *,
                       held: bool) -> list[EndedBlock]:
    """The account's unretired, unfrozen blocks of `instrument` whose term ended before `today`; with `held`,
    held ones too."""
    ended = await _ended_batches(conn, None, instrument, today)
    if not ended:
        return []
    blocks = await ledger.unretired_blocks(conn, batches=sorted(ended), account=account)
    return [EndedBlock(b.batch, b.start_serial, b.end_serial, *ended[b.batch]) for b in blocks
            if b.frozen_by is None and (b.hold is None or held)]


async def hold_past_term(conn: AsyncConnection, hold: int, today: date) -> bool:
    """Whether a hold holds units whose term ended before `today`."""
    batches = sorted({b.batch for b in await ledger.unretired_blocks(conn, hold=hold)})
    return bool(batches) and bool(await _ended_batches(conn, batches, None, today, emission_rights=False))


# --- issuance requests (exchange/registry/issuance.py) --------------------------------------------------------
# The batch's serial range is the ledger's: the use case reads it through ledger.queries.batch_serials.

_ISSUANCE = """r.id, r.instrument, i.kind, i.decimals, r.issuer_id, r.holder_id, r.quantity, r.attributes,
    lower(r.period) AS period_start, upper(r.period) - 1 AS period_end, r.origin_registry,
    lower(r.origin_serials) AS origin_start, upper(r.origin_serials) - 1 AS origin_end, r.origin_reference,
    r.flags, r.override, r.status, r.requested_by, r.decided_by, r.decision_note, r.batch_id, r.issue_entry_seq,
    r.created_at, r.decided_at"""
_ISSUANCE_FROM = "issuance_requests r JOIN instruments i ON i.code = r.instrument"


async def lock_claims(conn: AsyncConnection, lock_class: int, keys: list[str]) -> None:
    """Advisory locks on every claim, in the order of the lock ids, so two requests never deadlock."""
    if keys:
        await conn.execute(text("""SELECT pg_advisory_xact_lock(:cls, h)
                                   FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest(CAST(:keys AS text[])) AS k
                                         ORDER BY h) AS ordered"""), {"cls": lock_class, "keys": keys})


async def issuance(conn: AsyncConnection, request_id: int, *, lock: bool = False) -> IssuanceRequest | None:
    """The request (FOR UPDATE of its row with `lock`)."""
    sql = f"SELECT {_ISSUANCE} FROM {_ISSUANCE_FROM} WHERE r.id = :i" + (" FOR UPDATE OF r" if lock else "")
    row = (await conn.execute(text(sql), {"i": request_id})).mappings().first()
    return None if row is None else IssuanceRequest.from_row(row)


async def issuance_by_client(conn: AsyncConnection, actor: str, client_id: str) -> IssuanceRequest | None:
    """The request `actor` made under `client_id`, with its fingerprint."""
    row = (await conn.execute(
        text(f"""SELECT {_ISSUANCE}, r.fingerprint FROM {_ISSUANCE_FROM}
                 WHERE r.requested_by = :a AND r.client_id = :c"""), {"a": actor, "c": client_id})).mappings().first()
    return None if row is None else IssuanceRequest.from_row(row)


async def issuances_after(conn: AsyncConnection, after: int, limit: int, *, party: int | None,
                          status: str | None) -> list[IssuanceRequest]:
    """Requests by id after `after`; `party`: only those it requested or holds."""
    sql = f"SELECT {_ISSUANCE} FROM {_ISSUANCE_FROM} WHERE r.id > :after"
    params: dict[str, Any] = {"after": after, "limit": limit}
    if party is not None:
        sql += " AND (r.issuer_id = :me OR r.holder_id = :me)"
        params["me"] = party
    if status:
        sql += " AND r.status = :status"
        params["status"] = status
    rows = await conn.execute(text(sql + " ORDER BY r.id LIMIT :limit"), params)
    return [IssuanceRequest.from_row(r) for r in rows.mappings()]


async def issuance_holder(conn: AsyncConnection, request_id: int) -> int | None:
    holder = (await conn.execute(text("SELECT holder_id FROM issuance_requests WHERE id = :i"),
                                 {"i": request_id})).scalar()
    return None if holder is None else int(holder)


async def ticket_request(conn: AsyncConnection, region: str, number: str) -> int | None:
    """The request, not rejected, that claims forest ticket `number` of `region`."""
    taken = (await conn.execute(
        text("""SELECT id FROM issuance_requests WHERE ticket_region = :r AND ticket_number = :n
                AND status <> 'rejected'"""), {"r": region, "n": number})).scalar()
    return None if taken is None else int(taken)


async def imports_overlapping(conn: AsyncConnection, origin_key: str, start: int, end: int) -> list[ImportedRange]:
    """Import requests, not rejected, of the same origin registry whose serials overlap start..end."""
    rows = await conn.execute(
        text("""SELECT id, lower(origin_serials) AS s, upper(origin_serials) - 1 AS e FROM issuance_requests
                WHERE origin_key = :k AND origin_serials && int8range(:s, :e, '[]') AND status <> 'rejected'
                ORDER BY id"""), {"k": origin_key, "s": start, "e": end})
    return [ImportedRange(int(r.id), int(r.s), int(r.e)) for r in rows]


async def claim_overlaps(conn: AsyncConnection, subjects: list[str], period: tuple[date, date], *,
                         before: int | None = None) -> list[ClaimOverlap]:
    """Requests, not rejected, that claim one of `subjects` over a period overlapping `period`. `before`: for
    the approval of that request, only others approved already or requested before it."""
    sql = """SELECT r.id, r.instrument, i.kind, r.status, lower(r.period) AS start, upper(r.period) - 1 AS end,
                    array_agg(s.subject ORDER BY s.subject) AS subjects
             FROM issuance_subjects s JOIN issuance_requests r ON r.id = s.request_id
             JOIN instruments i ON i.code = r.instrument
             WHERE s.subject = ANY(CAST(:subjects AS text[])) AND r.status <> 'rejected'
               AND r.period && daterange(CAST(:ps AS date), CAST(:pe AS date), '[]')"""
    params: dict[str, Any] = {"subjects": subjects, "ps": period[0], "pe": period[1]}
    if before is not None:
        sql += " AND r.id <> :me AND (r.status = 'approved' OR r.id < :me)"
        params["me"] = before
    rows = await conn.execute(text(sql + " GROUP BY r.id, i.kind ORDER BY r.id"), params)
    return [ClaimOverlap.from_row(r) for r in rows.mappings()]


async def issuance_subjects(conn: AsyncConnection, request_id: int) -> list[str]:
    rows = await conn.execute(text("SELECT subject FROM issuance_subjects WHERE request_id = :i ORDER BY 1"),
                              {"i": request_id})
    return [str(s) for s in rows.scalars()]


async def insert_issuance(conn: AsyncConnection, *, instrument: str, issuer_id: int | None, holder_id: int,
                          quantity: int, attributes: dict[str, Any], period: tuple[date, date] | None,
                          ticket: tuple[str, str] | None, origin: tuple[str, str, int, int, str | None] | None,
                          flags: list[dict[str, Any]], actor: str, client_id: str, fp: bytes,
                          subjects: list[str]) -> int | None:
    """The new request's id, with its claimed subjects; None if a concurrent request with the same client id
    inserted first. `origin`: (registry, its key, first serial, last serial, reference)."""
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
        {"inst": instrument, "issuer": issuer_id, "holder": holder_id, "qty": quantity,
         "attrs": json.dumps(attributes, ensure_ascii=False),
         "ps": period[0] if period else None, "pe": period[1] if period else None,
         "tr": ticket[0] if ticket else None, "tn": ticket[1] if ticket else None,
         "o": origin[0] if origin else None, "ok": origin[1] if origin else None,
         "os": origin[2] if origin else None, "oe": origin[3] if origin else None,
         "oref": origin[4] if origin else None, "flags": json.dumps(flags, ensure_ascii=False),
         "a": actor, "cid": client_id, "fp": fp})).scalar()
    if new_id is not None and subjects:
        await conn.execute(
            text("""INSERT INTO issuance_subjects (subject, request_id)
                    SELECT s, :i FROM unnest(CAST(:subjects AS text[])) AS s"""),
            {"i": new_id, "subjects": subjects})
    return None if new_id is None else int(new_id)


async def mark_approved(conn: AsyncConnection, request_id: int, decided_by: str, note: str | None, batch_id: int,
                        seq: int, override: dict[str, Any] | None) -> None:
    await conn.execute(
        text("""UPDATE issuance_requests SET status = 'approved', decided_by = :d, decision_note = :n,
                    batch_id = :b, issue_entry_seq = :seq, override = CAST(:o AS jsonb), decided_at = now()
                WHERE id = :i"""),
        {"d": decided_by, "n": note, "b": batch_id, "seq": seq, "i": request_id,
         "o": None if override is None else json.dumps(override, ensure_ascii=False)})


async def mark_rejected(conn: AsyncConnection, request_id: int, decided_by: str, note: str | None) -> None:
    await conn.execute(
        text("""UPDATE issuance_requests SET status = 'rejected', decided_by = :d, decision_note = :n,
                    decided_at = now() WHERE id = :i"""), {"d": decided_by, "n": note, "i": request_id})
