"""The courts' SQL: judicial freezes and their events, restoration orders, their reminders and certificates.
Every function takes the caller's connection; rows become models (exchange/courts/models.py) right here.
Ledger rows are read through ledger.queries, trades through exchange.trading.repository; a pledge
enforcement reads and locks the freezes on its lot through exchange.pledging.repository (pledging is below
courts)."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.courts.models import Freeze, FreezeEvent, Reminder, RestorationOrder, StoredCertificate

_ORDER = """SELECT r.id, r.court_id, c.name AS court, r.case_number, r.case_type, r.judgment_reference,
    r.defendants, r.payer_id, p.name AS payer, r.assessed_loss_kg, r.assessment_method, r.assessing_body,
    r.multiplier, r.required_kg, r.eligible_kinds, r.designated_seller_id, r.deadline, r.status, r.note,
    r.created_at
    FROM restoration_orders r JOIN participants c ON c.id = r.court_id JOIN participants p ON p.id = r.payer_id"""


# --- freezes ---------------------------------------------------------------------------------------------------

_FREEZE = """SELECT f.*, c.name AS court_name, h.name AS holder_name, h.uscc AS holder_uscc, i.decimals
    FROM freezes f JOIN participants c ON c.id = f.court_id JOIN participants h ON h.id = f.holder_id
    JOIN instruments i ON i.code = f.instrument"""
_JSON = frozenset({"requested_serials", "serials"})
_FREEZE_FIELDS = frozenset({"court_id", "holder_id", "instrument", "quantity", "requested_serials", "serials",
                            "case_number", "notice_number", "term_start", "term_end", "expires_at", "deduct_to_id",
                            "status", "hold_id", "predecessor_id", "root_id", "freeze_no", "deducted_quantity",
                            "proceeds_received", "resolved_at"})


def _freeze_params(fields: dict[str, Any]) -> dict[str, Any]:
    assert set(fields) <= _FREEZE_FIELDS, set(fields) - _FREEZE_FIELDS
    return {k: json.dumps(v) if k in _JSON and v is not None else v for k, v in fields.items()}


async def insert_freeze(conn: AsyncConnection, **fields: Any) -> int:
    cols = ", ".join(fields)
    vals = ", ".join(f"CAST(:{k} AS jsonb)" if k in _JSON else f":{k}" for k in fields)
    new = (await conn.execute(text(f"INSERT INTO freezes ({cols}) VALUES ({vals}) RETURNING id"),
                              _freeze_params(fields))).scalar_one()
    return int(new)


async def update_freeze(conn: AsyncConnection, freeze_id: int, **fields: Any) -> None:
    sets = ", ".join(f"{k} = CAST(:{k} AS jsonb)" if k in _JSON else f"{k} = :{k}" for k in fields)
    await conn.execute(text(f"UPDATE freezes SET {sets} WHERE id = :id"), {**_freeze_params(fields), "id": freeze_id})


async def get_freeze(conn: AsyncConnection, freeze_id: int, *, lock: bool = False) -> Freeze | None:
    row = (await conn.execute(text(_FREEZE + " WHERE f.id = :i" + (" FOR UPDATE OF f" if lock else "")),
                              {"i": freeze_id})).first()
    return None if row is None else Freeze.from_row(row)


async def freezes(conn: AsyncConnection, *, court: int | None, holder: int | None, status: str | None,
                  after: int, limit: int) -> list[Freeze]:
    sql = _FREEZE + " WHERE f.id > :after"
    params: dict[str, Any] = {"after": after, "limit": limit}
    if court is not None:
        sql += " AND f.court_id = :court"
        params["court"] = court
    if holder is not None:
        sql += " AND f.holder_id = :holder"
        params["holder"] = holder
    if status:
        sql += " AND f.status = :status"
        params["status"] = status
    return [Freeze.from_row(r) for r in await conn.execute(text(sql + " ORDER BY f.id LIMIT :limit"), params)]


async def freeze_notice_taken(conn: AsyncConnection, court_id: int, notice_number: str) -> bool:
    found = (await conn.execute(text("SELECT id FROM freezes WHERE court_id = :c AND notice_number = :n"),
                                {"c": court_id, "n": notice_number})).scalar()
    return found is not None


async def due_freezes(conn: AsyncConnection, now: datetime) -> list[int]:
    rows = await conn.execute(text("SELECT id FROM freezes WHERE status = 'active' AND expires_at <= :n ORDER BY id"),
                              {"n": now})
    return [int(r.id) for r in rows]


async def add_freeze_event(conn: AsyncConnection, freeze_id: int, event_type: str, data: dict[str, Any],
                           seqs: list[int], actor: str, client_id: str | None, fp: bytes | None) -> int:
    new = (await conn.execute(text("""
        INSERT INTO freeze_events (freeze_id, type, data, ledger_seqs, actor, client_id, fingerprint)
        VALUES (:f, :t, CAST(:d AS jsonb), :s, :a, :c, :fp) RETURNING id"""),
        {"f": freeze_id, "t": event_type, "d": json.dumps(data, ensure_ascii=False), "s": seqs, "a": actor,
         "c": client_id, "fp": fp})).scalar_one()
    return int(new)


async def freeze_by_client(conn: AsyncConnection, actor: str, client_id: str) -> tuple[int, bytes | None] | None:
    """(freeze id, request fingerprint) of the event this actor recorded under this client id."""
    row = (await conn.execute(text(
        "SELECT freeze_id, fingerprint FROM freeze_events WHERE actor = :a AND client_id = :c"),
        {"a": actor, "c": client_id})).first()
    if row is None:
        return None
    return int(row.freeze_id), None if row.fingerprint is None else bytes(row.fingerprint)


async def freeze_events_of(conn: AsyncConnection, freeze_id: int) -> list[FreezeEvent]:
    rows = await conn.execute(text("""SELECT id, freeze_id, type, data, ledger_seqs, actor, created_at
                                      FROM freeze_events WHERE freeze_id = :f ORDER BY id"""), {"f": freeze_id})
    return [FreezeEvent.from_row(r) for r in rows]


# --- restoration orders -------------------------------------------------------------------------------------


async def order_by_client(conn: AsyncConnection, actor: str, client_id: str) -> tuple[int, bytes] | None:
    """(id, fingerprint) of the order this actor registered under this client id."""
    row = (await conn.execute(text(
        "SELECT id, fingerprint FROM restoration_orders WHERE created_by = :a AND client_id = :c"),
        {"a": actor, "c": client_id})).first()
    return None if row is None else (int(row.id), bytes(row.fingerprint))


# One judgment's case number however it is typed: full-width or ASCII brackets and digits (NFKC), any spaces.
_CASE_KEY = "regexp_replace(normalize({}, NFKC), '\\s', '', 'g')"


async def order_for_case(conn: AsyncConnection, court_id: int, case_number: str, payer_id: int) -> int | None:
    row = (await conn.execute(text(
        "SELECT id FROM restoration_orders WHERE court_id = :c AND payer_id = :p AND "
        f"{_CASE_KEY.format('case_number')} = {_CASE_KEY.format('CAST(:n AS text)')}"),
        {"c": court_id, "n": case_number, "p": payer_id})).first()
    return None if row is None else int(row.id)


async def insert_order(conn: AsyncConnection, *, court_id: int, case_number: str, case_type: str,
                       judgment_reference: str | None, defendants: list[dict[str, Any]], payer_id: int,
                       assessed_loss_kg: int | None, assessment_method: str | None, assessing_body: str | None,
                       multiplier: str | None, required_kg: int, eligible_kinds: list[str],
                       designated_seller_id: int | None, deadline: date, note: str | None, created_by: str,
                       client_id: str, fingerprint: bytes) -> int:
    new_id = (await conn.execute(text(
        """INSERT INTO restoration_orders (court_id, case_number, case_type, judgment_reference,
               defendants, payer_id, assessed_loss_kg, assessment_method, assessing_body, multiplier,
               required_kg, eligible_kinds, designated_seller_id, deadline, note, created_by, client_id,
               fingerprint)
           VALUES (:court, :case, :type, :judgment, CAST(:defendants AS jsonb), :payer, :loss, :method,
                   :body, :mult, :required, CAST(:kinds AS jsonb), :seller, :deadline, :note, :a, :cid, :fp)
           RETURNING id"""),
        {"court": court_id, "case": case_number, "type": case_type, "judgment": judgment_reference,
         "defendants": json.dumps(defendants, ensure_ascii=False), "payer": payer_id, "loss": assessed_loss_kg,
         "method": assessment_method, "body": assessing_body, "mult": multiplier, "required": required_kg,
         "kinds": json.dumps(eligible_kinds), "seller": designated_seller_id, "deadline": deadline, "note": note,
         "a": created_by, "cid": client_id, "fp": fingerprint})).scalar_one()
    return int(new_id)


async def get_order(conn: AsyncConnection, order_id: int) -> RestorationOrder | None:
    row = (await conn.execute(text(f"{_ORDER} WHERE r.id = :i"), {"i": order_id})).first()
    return None if row is None else RestorationOrder.from_row(row)


async def orders_of(conn: AsyncConnection, party: int | None) -> list[RestorationOrder]:
    """Every order (party None), or those naming this participant as court, payer or designated seller."""
    if party is None:
        rows = await conn.execute(text(f"{_ORDER} ORDER BY r.id"))
    else:
        rows = await conn.execute(text(
            f"""{_ORDER} WHERE r.court_id = :me OR r.payer_id = :me OR r.designated_seller_id = :me
                ORDER BY r.id"""), {"me": party})
    return [RestorationOrder.from_row(r) for r in rows]


async def open_orders(conn: AsyncConnection) -> list[RestorationOrder]:
    rows = await conn.execute(text(f"{_ORDER} WHERE r.status = 'open' ORDER BY r.id"))
    return [RestorationOrder.from_row(r) for r in rows]


async def orders_paid_by(conn: AsyncConnection, payer_id: int) -> list[int]:
    rows = await conn.execute(text("SELECT id FROM restoration_orders WHERE payer_id = :p ORDER BY id"),
                              {"p": payer_id})
    return [int(r.id) for r in rows]


async def add_reminder(conn: AsyncConnection, order_id: int, kind: str, day: date, message: str) -> bool:
    """Whether the reminder is new (one per order, kind and day)."""
    res = await conn.execute(text(
        """INSERT INTO restoration_reminders (order_id, kind, day, message) VALUES (:o, :k, :d, :m)
           ON CONFLICT DO NOTHING"""), {"o": order_id, "k": kind, "d": day, "m": message})
    return bool(res.rowcount)


async def reminders_of(conn: AsyncConnection, order_id: int) -> list[Reminder]:
    rows = await conn.execute(text(
        "SELECT kind, day, message, created_at FROM restoration_reminders WHERE order_id = :o ORDER BY day"),
        {"o": order_id})
    return [Reminder.from_row(r) for r in rows]


# --- certificates -------------------------------------------------------------------------------------------


async def certificate_for(conn: AsyncConnection, order_id: int, retired_kg: int) -> dict[str, Any] | None:
    """The latest certificate issued for this order at this retired quantity."""
    row = (await conn.execute(text(
        """SELECT certificate FROM restoration_certificates WHERE order_id = :o AND retired_kg = :k
           ORDER BY issued_at DESC LIMIT 1"""), {"o": order_id, "k": retired_kg})).first()
    return None if row is None else dict(row.certificate)


async def insert_certificate(conn: AsyncConnection, code: str, order_id: int, retired_kg: int,
                             doc: dict[str, Any]) -> None:
    await conn.execute(text(
        """INSERT INTO restoration_certificates (code, order_id, retired_kg, certificate)
           VALUES (:c, :o, :k, CAST(:doc AS jsonb)) ON CONFLICT DO NOTHING"""),
        {"c": code, "o": order_id, "k": retired_kg, "doc": json.dumps(doc, ensure_ascii=False)})


async def certificate_by_code(conn: AsyncConnection, code: str) -> StoredCertificate | None:
    row = (await conn.execute(text("SELECT certificate, order_id FROM restoration_certificates WHERE code = :c"),
                              {"c": code})).first()
    return None if row is None else StoredCertificate.from_row(row)


async def stored_pdf(conn: AsyncConnection, code: str) -> bytes | None:
    stored = (await conn.execute(text("SELECT pdf FROM restoration_certificate_pdfs WHERE code = :c"),
                                 {"c": code})).scalar()
    return None if stored is None else bytes(stored)


async def keep_pdf(conn: AsyncConnection, code: str, pdf: bytes) -> bytes:
    """Store a rendered PDF unless one is stored already; returns the stored one (the first kept wins)."""
    await conn.execute(text("INSERT INTO restoration_certificate_pdfs (code, pdf) VALUES (:c, :p) "
                            "ON CONFLICT DO NOTHING"), {"c": code, "p": pdf})
    kept = await stored_pdf(conn, code)
    assert kept is not None
    return kept
