"""SQL on the pledge and freeze tables, each function taking the caller's AsyncConnection.

Read-only functions are safe on a read replica. Reads of participants, instruments, issuance
attributes and ledger blocks are plain SQL (no import of `exchange`), so the dependency direction
stays `exchange -> pledges -> ledger`.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.pledging.models import (
    JSON,
    PROJECTED,
    BatchTerms,
    Claim,
    Delivery,
    DueDelivery,
    Freeze,
    Mark,
    Pledge,
    PledgeEvent,
    PublicFreeze,
    PublicPledge,
    PublicRetirement,
    SaleTrade,
    TakenReference,
    WebhookEndpoint,
    jsonable,
    typed_value,
)
from exchange.trading.models import Order
from ledger.queries import Retirement
from pledges.visibility import SEEING_CLAIMS

_PLEDGE_SELECT = """SELECT p.*, pe.name AS pledgee_name, pr.name AS pledgor_name, pr.uscc AS pledgor_uscc,
    i.decimals, i.kind AS instrument_kind, i.attributes AS instrument_attributes,
    COALESCE(p.haircut_bps, h.haircut_bps, 0) AS effective_haircut_bps,
    COALESCE((SELECT jsonb_agg(jsonb_build_object('source', r.source, 'reference', r.reference)
                               ORDER BY r.source, r.reference)
              FROM pledge_references r WHERE r.pledge_id = p.id), '[]'::jsonb) AS refs
    FROM pledges p JOIN participants pe ON pe.id = p.pledgee_id JOIN participants pr ON pr.id = p.pledgor_id
    JOIN instruments i ON i.code = p.instrument LEFT JOIN pledge_haircuts h ON h.instrument = p.instrument"""


# Who may see a pledge besides oversight (the rule is pledges.visibility.role; this is its SQL): its
# pledgee, its pledgor, a claimant whose claim on the lot the pledgor confirmed, the buyer a sale of it
# is offered to. A claim only filed grants nothing.
_SEES = f"""(p.pledgee_id = :me OR p.pledgor_id = :me
    OR EXISTS (SELECT 1 FROM pledge_claims c WHERE c.pledge_id = p.id AND c.claimant_id = :me
               AND c.status IN ({", ".join(f"'{s}'" for s in sorted(SEEING_CLAIMS))}))
    OR (p.enforcement ->> 'buyer_id')::bigint = :me)"""


def _to_db(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in JSON:
        return json.dumps(value, ensure_ascii=False)
    return typed_value(key, value)


def _assignments(keys: list[str]) -> str:
    return ", ".join(f"{k} = CAST(:{k} AS jsonb)" if k in JSON else f"{k} = :{k}" for k in keys)


# ----------------------------------------------------------------------------------- pledges


async def next_pledge_id(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT nextval(pg_get_serial_sequence('pledges', 'id'))"))).scalar_one())


async def next_registration_no(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT nextval('registration_no_seq')"))).scalar_one())


async def insert_pledge(conn: AsyncConnection, pledge_id: int, number: str, state: dict[str, Any]) -> None:
    keys = list(PROJECTED)
    cols = ", ".join(keys)
    vals = ", ".join(f"CAST(:{k} AS jsonb)" if k in JSON else f":{k}" for k in keys)
    params = {k: _to_db(k, state.get(k)) for k in keys}
    params.update({"id": pledge_id, "number": number, "version": 1})
    params["margin_level"] = params["margin_level"] or "ok"
    params["transfer_on_default"] = bool(params["transfer_on_default"])
    params["grace_days"] = params["grace_days"] or 0
    await conn.execute(
        text(f"INSERT INTO pledges (id, number, version, {cols}) VALUES (:id, :number, :version, {vals})"), params)


async def write_state(conn: AsyncConnection, pledge_id: int, state: dict[str, Any]) -> None:
    keys = list(PROJECTED)
    params = {k: _to_db(k, state.get(k)) for k in keys}
    params["id"] = pledge_id
    await conn.execute(text(f"UPDATE pledges SET {_assignments(keys)}, version = version + 1, updated_at = now() "
                            "WHERE id = :id"), params)


async def lock_pledge(conn: AsyncConnection, pledge_id: int) -> Pledge | None:
    # Lock the pledge row alone (FOR UPDATE OF p): participants and instruments stay unlocked.
    row = (await conn.execute(text(_PLEDGE_SELECT + " WHERE p.id = :i FOR UPDATE OF p"), {"i": pledge_id})).first()
    return None if row is None else Pledge.from_row(row)


async def get_pledge(conn: AsyncConnection, pledge_id: int) -> Pledge | None:
    row = (await conn.execute(text(_PLEDGE_SELECT + " WHERE p.id = :i"), {"i": pledge_id})).first()
    return None if row is None else Pledge.from_row(row)


async def list_pledges(conn: AsyncConnection, *, viewer: int | None, status: str | None, role: str | None,
                       after: int, limit: int) -> list[Pledge]:
    sql = _PLEDGE_SELECT + " WHERE p.id > :after"
    params: dict[str, Any] = {"after": after, "limit": limit}
    if viewer is not None:
        sql += " AND " + _SEES
        params["me"] = viewer
    if role == "pledgee" and viewer is not None:
        sql += " AND p.pledgee_id = :me"
    if role == "pledgor" and viewer is not None:
        sql += " AND p.pledgor_id = :me"
    if status:
        sql += " AND p.status = :status"
        params["status"] = status
    rows = await conn.execute(text(sql + " ORDER BY p.id LIMIT :limit"), params)
    return [Pledge.from_row(r) for r in rows]


async def add_references(conn: AsyncConnection, pledge_id: int, refs: list[tuple[str, str]]) -> None:
    for source, reference in refs:
        await conn.execute(text("INSERT INTO pledge_references (source, reference, pledge_id) VALUES (:s, :r, :p)"),
                           {"s": source, "r": reference, "p": pledge_id})


async def reference_taken(conn: AsyncConnection, refs: list[tuple[str, str]]) -> TakenReference | None:
    for source, reference in refs:
        row = (await conn.execute(text("SELECT pledge_id FROM pledge_references WHERE source = :s AND reference = :r"),
                                  {"s": source, "r": reference})).first()
        if row:
            return TakenReference(source, reference, int(row.pledge_id))
    return None


async def live_pledges_of_instrument(conn: AsyncConnection, instrument: str) -> list[int]:
    rows = await conn.execute(text("""SELECT id FROM pledges WHERE instrument = :i AND status IN ('active', 'enforcing')
                                      ORDER BY id"""), {"i": instrument})
    return [r.id for r in rows]


async def due_pledges(conn: AsyncConnection, now: datetime) -> list[int]:
    """Registrations past their term: active ones, offered sales not accepted, exchange sales (whose
    unsold units go back once no listing or auction of them runs)."""
    rows = await conn.execute(text("""SELECT id FROM pledges WHERE expires_at <= :n
                                      AND status IN ('active', 'enforcing') ORDER BY id"""), {"n": now})
    return [r.id for r in rows]


async def lapsed_filings(conn: AsyncConnection, now: datetime, confirm_days: int) -> list[int]:
    """Filings their pledgor neither confirmed nor declined in time (or whose term is over)."""
    rows = await conn.execute(text("""SELECT id FROM pledges WHERE status = 'filed'
                                      AND (created_at <= :lapse OR expires_at <= :n) ORDER BY id"""),
                              {"n": now, "lapse": now - timedelta(days=confirm_days)})
    return [r.id for r in rows]


async def exchange_sales(conn: AsyncConnection) -> list[int]:
    """Registrations whose lot is being sold on the exchange (the worker reconciles their trades)."""
    rows = await conn.execute(text("""SELECT id FROM pledges WHERE status = 'enforcing'
                                      AND enforcement ->> 'method' = 'exchange' ORDER BY id"""))
    return [r.id for r in rows]


async def pledges_of_holds(conn: AsyncConnection, holds: list[int]) -> list[int]:
    rows = await conn.execute(text("""SELECT id FROM pledges WHERE hold_id = ANY(:h)
                                      AND status IN ('active', 'enforcing') ORDER BY id"""), {"h": holds})
    return [r.id for r in rows]


async def priority_rank(conn: AsyncConnection, pledgor_id: int, instrument: str, registration_no: int) -> int:
    """1 + the live registrations of the same pledgor and instrument registered before this one."""
    n = (await conn.execute(text("""SELECT count(*) FROM pledges WHERE pledgor_id = :p AND instrument = :i
                                    AND status IN ('active', 'enforcing') AND registration_no < :r"""),
                            {"p": pledgor_id, "i": instrument, "r": registration_no})).scalar_one()
    return int(n) + 1


# ----------------------------------------------------------------------------------- events


async def add_event(conn: AsyncConnection, pledge_id: int, event_type: str, data: dict[str, Any],
                    seqs: list[int], actor: str, client_id: str | None, fp: bytes | None) -> PledgeEvent:
    row = (await conn.execute(text("""
        INSERT INTO pledge_events (pledge_id, type, data, ledger_seqs, actor, client_id, fingerprint)
        VALUES (:p, :t, CAST(:d AS jsonb), :s, :a, :c, :f) RETURNING id, created_at"""),
        {"p": pledge_id, "t": event_type, "d": json.dumps(data, ensure_ascii=False), "s": seqs, "a": actor,
         "c": client_id, "f": fp})).one()
    return PledgeEvent(int(row.id), pledge_id, event_type, data, seqs, actor, row.created_at, fp)


async def event_by_client(conn: AsyncConnection, actor: str, client_id: str) -> PledgeEvent | None:
    row = (await conn.execute(text("SELECT * FROM pledge_events WHERE actor = :a AND client_id = :c"),
                              {"a": actor, "c": client_id})).first()
    return None if row is None else PledgeEvent.from_row(row)


async def events_of(conn: AsyncConnection, pledge_id: int) -> list[PledgeEvent]:
    rows = await conn.execute(text("""SELECT e.id, e.pledge_id, p.number, p.instrument, i.decimals, e.type, e.data,
                                             e.ledger_seqs, e.actor, e.created_at
                                      FROM pledge_events e JOIN pledges p ON p.id = e.pledge_id
                                      JOIN instruments i ON i.code = p.instrument
                                      WHERE e.pledge_id = :p ORDER BY e.id"""), {"p": pledge_id})
    return [PledgeEvent.from_row(r) for r in rows]


async def event_stream(conn: AsyncConnection, viewer: int | None, after: int, limit: int,
                       types: list[str] | None) -> list[PledgeEvent]:
    sql = """SELECT e.id, e.pledge_id, p.number, p.instrument, i.decimals, e.type, e.data, e.ledger_seqs, e.actor,
                    e.created_at
             FROM pledge_events e JOIN pledges p ON p.id = e.pledge_id JOIN instruments i ON i.code = p.instrument
             WHERE e.id > :after"""
    params: dict[str, Any] = {"after": after, "limit": limit}
    if viewer is not None:
        sql += " AND " + _SEES
        params["me"] = viewer
    if types:
        sql += " AND e.type = ANY(:types)"
        params["types"] = types
    rows = await conn.execute(text(sql + " ORDER BY e.id LIMIT :limit"), params)
    return [PledgeEvent.from_row(r) for r in rows]


def event_view(ev: PledgeEvent, number: str | None = None, instrument: str | None = None) -> dict[str, Any]:
    """One event as stored (base units); exchange.pledging renders amounts and quantities for callers."""
    data = dict(ev.data)
    changes = data.pop("set", {})
    return {"id": ev.id, "pledge_id": ev.pledge_id, "pledge_number": ev.number or number,
            "instrument": ev.instrument or instrument, "type": ev.type, "changes": changes,
            "details": data, "ledger_seqs": list(ev.ledger_seqs), "actor": ev.actor, "at": jsonable(ev.created_at)}


async def enqueue_webhook(conn: AsyncConnection, event_id: int, event_type: str,
                          bodies: dict[int, bytes]) -> int:
    """One outbox row per recipient that has a webhook endpoint, with the event as that recipient may
    see it (pledges.visibility.event_view, encoded by webhooks.body_of); same transaction as the event."""
    queued = 0
    for participant_id, body in bodies.items():
        res = await conn.execute(text("""
            INSERT INTO pledge_outbox (event_id, event_type, participant_id, body)
            SELECT :e, :t, w.participant_id, :b FROM pledge_webhooks w WHERE w.participant_id = :p
            ON CONFLICT DO NOTHING"""), {"e": event_id, "t": event_type, "b": body, "p": participant_id})
        queued += res.rowcount or 0
    return queued


# ----------------------------------------------------------------------------------- claims


async def insert_claim(conn: AsyncConnection, pledge_id: int, claimant_id: int, loan_contract: str, amount: int,
                       term_end: date, reference: str | None) -> int:
    return int((await conn.execute(text("""
        INSERT INTO pledge_claims (pledge_id, claimant_id, loan_contract, amount, term_end, reference, status)
        VALUES (:p, :c, :l, :a, :t, :r, 'filed') RETURNING id"""),
        {"p": pledge_id, "c": claimant_id, "l": loan_contract, "a": amount, "t": term_end, "r": reference}
    )).scalar_one())


_CLAIM_SELECT = """SELECT c.*, pa.name AS claimant_name FROM pledge_claims c
                   JOIN participants pa ON pa.id = c.claimant_id"""


async def lock_claim(conn: AsyncConnection, claim_id: int) -> Claim | None:
    row = (await conn.execute(text(_CLAIM_SELECT + " WHERE c.id = :i FOR UPDATE OF c"), {"i": claim_id})).first()
    return None if row is None else Claim.from_row(row)


async def claims_of(conn: AsyncConnection, pledge_id: int, statuses: tuple[str, ...] | None = None
                    ) -> list[Claim]:
    sql = _CLAIM_SELECT + " WHERE c.pledge_id = :p"
    params: dict[str, Any] = {"p": pledge_id}
    if statuses:
        sql += " AND c.status = ANY(:s)"
        params["s"] = list(statuses)
    rows = await conn.execute(text(sql + " ORDER BY c.registration_no NULLS LAST, c.id"), params)
    return [Claim.from_row(r) for r in rows]


async def update_claim(conn: AsyncConnection, claim_id: int, **fields: Any) -> None:
    keys = list(fields)
    await conn.execute(text(f"UPDATE pledge_claims SET {_assignments(keys)} WHERE id = :id"),
                       {**fields, "id": claim_id})


async def move_claims(conn: AsyncConnection, claim_ids: list[int], pledge_id: int) -> None:
    await conn.execute(text("UPDATE pledge_claims SET pledge_id = :p WHERE id = ANY(:c)"),
                       {"p": pledge_id, "c": claim_ids})


# ----------------------------------------------------------------------------------- accounts, prices


async def escrow_of(conn: AsyncConnection, bank_id: int) -> int | None:
    return (await conn.execute(text("SELECT account FROM pledge_escrow_accounts WHERE bank_id = :b"),
                               {"b": bank_id})).scalar()


async def save_escrow(conn: AsyncConnection, bank_id: int, account: int) -> None:
    await conn.execute(text("""INSERT INTO pledge_escrow_accounts (bank_id, account) VALUES (:b, :a)
                               ON CONFLICT DO NOTHING"""), {"b": bank_id, "a": account})


async def set_haircut(conn: AsyncConnection, instrument: str, haircut_bps: int, actor: str) -> None:
    await conn.execute(text("""INSERT INTO pledge_haircuts (instrument, haircut_bps, updated_by) VALUES (:i, :h, :a)
                               ON CONFLICT (instrument) DO UPDATE SET haircut_bps = :h, updated_by = :a,
                               updated_at = now()"""), {"i": instrument, "h": haircut_bps, "a": actor})


async def mark(conn: AsyncConnection, instrument: str, as_of: date) -> Mark | None:
    row = (await conn.execute(text("SELECT * FROM pledge_marks WHERE instrument = :i AND as_of = :d"),
                              {"i": instrument, "d": as_of})).first()
    return None if row is None else Mark.from_row(row)


async def last_mark_day(conn: AsyncConnection, instrument: str) -> date | None:
    """The latest day `instrument` is marked for, if any."""
    day: date | None = (await conn.execute(text("SELECT max(as_of) FROM pledge_marks WHERE instrument = :i"),
                                           {"i": instrument})).scalar()
    return day


async def mark_by_client(conn: AsyncConnection, actor: str, client_id: str) -> Mark | None:
    row = (await conn.execute(text("SELECT * FROM pledge_marks WHERE recorded_by = :a AND client_id = :c"),
                              {"a": actor, "c": client_id})).first()
    return None if row is None else Mark.from_row(row)


async def insert_mark(conn: AsyncConnection, instrument: str, as_of: date, price: int, actor: str,
                      client_id: str | None, fp: bytes | None) -> bool:
    res = await conn.execute(text("""INSERT INTO pledge_marks (instrument, as_of, price, recorded_by, client_id,
                                                              fingerprint)
                                     VALUES (:i, :d, :p, :a, :c, :f) ON CONFLICT DO NOTHING"""),
                             {"i": instrument, "d": as_of, "p": price, "a": actor, "c": client_id, "f": fp})
    return bool(res.rowcount)


async def replace_mark(conn: AsyncConnection, instrument: str, as_of: date, price: int, actor: str) -> None:
    """The exchange's close of a day over an operator's manual mark of it (valuation.revalue)."""
    await conn.execute(text("""UPDATE pledge_marks SET price = :p, recorded_by = :a, recorded_at = now()
                               WHERE instrument = :i AND as_of = :d"""),
                       {"i": instrument, "d": as_of, "p": price, "a": actor})


async def insert_valuation(conn: AsyncConnection, pledge_id: int, as_of: date, price: int, quantity: int,
                           haircut_bps: int, value: int, ratio_bps: int, level: str, *, replace: bool = False) -> bool:
    """The pledge's valuation of the day; a second one of the day is a no-op, unless it `replace`s it."""
    conflict = ("ON CONFLICT (pledge_id, as_of) DO UPDATE SET price = EXCLUDED.price, quantity = EXCLUDED.quantity, "
                "haircut_bps = EXCLUDED.haircut_bps, value = EXCLUDED.value, ratio_bps = EXCLUDED.ratio_bps, "
                "level = EXCLUDED.level" if replace else "ON CONFLICT DO NOTHING")
    res = await conn.execute(text(f"""
        INSERT INTO pledge_valuations (pledge_id, as_of, price, quantity, haircut_bps, value, ratio_bps, level)
        VALUES (:p, :d, :pr, :q, :h, :v, :r, :l) {conflict}"""),
        {"p": pledge_id, "d": as_of, "pr": price, "q": quantity, "h": haircut_bps, "v": value, "r": ratio_bps,
         "l": level})
    return bool(res.rowcount)


async def usable_attributes(conn: AsyncConnection, instrument: str, batches: list[int]) -> list[BatchTerms]:
    """Instrument and batch attributes of the given batches of the instrument (for usable deadlines)."""
    rows = await conn.execute(text("""
        SELECT b.id AS batch, i.kind, i.attributes AS instrument_attributes,
               COALESCE(r.attributes, '{}'::jsonb) AS batch_attributes
        FROM unnest(CAST(:b AS bigint[])) AS b(id) JOIN instruments i ON i.code = :i
        LEFT JOIN issuance_requests r ON r.batch_id = b.id"""), {"i": instrument, "b": batches})
    return [BatchTerms(int(r.batch), r.kind, r.instrument_attributes or {}, r.batch_attributes or {}) for r in rows]


# ----------------------------------------------------------------------------------- ledger reads








# ----------------------------------------------------------------------------------- webhooks


async def webhook_of(conn: AsyncConnection, participant_id: int) -> WebhookEndpoint | None:
    row = (await conn.execute(text("SELECT * FROM pledge_webhooks WHERE participant_id = :p"),
                              {"p": participant_id})).first()
    return None if row is None else WebhookEndpoint.from_row(row)


async def set_webhook(conn: AsyncConnection, participant_id: int, url: str, secret: bytes, actor: str,
                      client_id: str, fp: bytes) -> None:
    await conn.execute(text("""
        INSERT INTO pledge_webhooks (participant_id, url, secret, updated_by, client_id, fingerprint)
        VALUES (:p, :u, :s, :a, :c, :f)
        ON CONFLICT (participant_id) DO UPDATE SET url = :u, secret = :s, updated_by = :a, client_id = :c,
            fingerprint = :f, updated_at = now()"""),
        {"p": participant_id, "u": url, "s": secret, "a": actor, "c": client_id, "f": fp})


async def outbox_of(conn: AsyncConnection, participant_id: int, limit: int = 100) -> list[Delivery]:
    rows = await conn.execute(text("""SELECT id, event_id, event_type, status, attempts, next_attempt_at,
                                             delivered_at, last_error FROM pledge_outbox
                                      WHERE participant_id = :p ORDER BY id DESC LIMIT :l"""),
                              {"p": participant_id, "l": limit})
    return [Delivery.from_row(r) for r in rows]


async def lease_due_deliveries(conn: AsyncConnection, lease: timedelta, limit: int) -> list[DueDelivery]:
    """Claim due outbox rows for one attempt: next attempt pushed `lease` ahead, attempts counted, under
    FOR UPDATE SKIP LOCKED (two workers never lease the same row)."""
    rows = await conn.execute(text("""
        UPDATE pledge_outbox o SET attempts = o.attempts + 1, next_attempt_at = now() + :lease
        FROM (SELECT id FROM pledge_outbox WHERE status = 'pending' AND next_attempt_at <= now()
              ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED) due,
             pledge_webhooks w
        WHERE o.id = due.id AND w.participant_id = o.participant_id
        RETURNING o.id, o.event_id, o.event_type, o.body, o.attempts, w.url, w.secret"""),
        {"lease": lease, "limit": limit})
    return [DueDelivery.from_row(r) for r in rows]


async def delivery_done(conn: AsyncConnection, outbox_id: int) -> None:
    await conn.execute(text("""UPDATE pledge_outbox SET status = 'delivered', delivered_at = now(),
                               last_error = NULL WHERE id = :i"""), {"i": outbox_id})


async def delivery_failed(conn: AsyncConnection, outbox_id: int, reason: str) -> None:
    await conn.execute(text("UPDATE pledge_outbox SET status = 'failed', last_error = :e WHERE id = :i"),
                       {"i": outbox_id, "e": reason})


async def delivery_retry(conn: AsyncConnection, outbox_id: int, reason: str, delay: timedelta) -> None:
    await conn.execute(text("""UPDATE pledge_outbox SET last_error = :e, next_attempt_at = now() + :d
                               WHERE id = :i"""), {"i": outbox_id, "e": reason, "d": delay})


# ----------------------------------------------------------------------------------- freezes

_FREEZE_SELECT = """SELECT f.*, c.name AS court_name, h.name AS holder_name, h.uscc AS holder_uscc, i.decimals
    FROM freezes f JOIN participants c ON c.id = f.court_id JOIN participants h ON h.id = f.holder_id
    JOIN instruments i ON i.code = f.instrument"""




async def lock_freeze(conn: AsyncConnection, freeze_id: int) -> Freeze | None:
    row = (await conn.execute(text(_FREEZE_SELECT + " WHERE f.id = :i FOR UPDATE OF f"), {"i": freeze_id})).first()
    return None if row is None else Freeze.from_row(row)






async def update_freeze(conn: AsyncConnection, freeze_id: int, **fields: Any) -> None:
    await conn.execute(text(f"UPDATE freezes SET {_assignments(list(fields))} WHERE id = :id"),
                       {**{k: json.dumps(v) if k in JSON and v is not None else v for k, v in fields.items()},
                        "id": freeze_id})




async def add_freeze_event(conn: AsyncConnection, freeze_id: int, event_type: str, data: dict[str, Any],
                           seqs: list[int], actor: str, client_id: str | None, fp: bytes | None) -> int:
    return int((await conn.execute(text("""
        INSERT INTO freeze_events (freeze_id, type, data, ledger_seqs, actor, client_id, fingerprint)
        VALUES (:f, :t, CAST(:d AS jsonb), :s, :a, :c, :fp) RETURNING id"""),
        {"f": freeze_id, "t": event_type, "d": json.dumps(data, ensure_ascii=False), "s": seqs, "a": actor,
         "c": client_id, "fp": fp})).scalar_one())








# ----------------------------------------------------------------------------------- public inquiry

# Whole names, as 中登网's inquiry: the registered name exactly, after Unicode NFKC normalisation,
# trimming, collapsing inner white space and lower-casing ASCII letters (both sides the same way;
# `public_name` is the Python half). No substring matching: "成都" finds a participant named 成都 only.
_NAME = "lower(regexp_replace(btrim(normalize({alias}.name, NFKC)), '\\s+', ' ', 'g') COLLATE \"C\")"
_WHO = """(CAST(:name AS text) IS NULL OR {name} = CAST(:name AS text))
          AND (CAST(:uscc AS text) IS NULL OR upper({alias}.uscc) = CAST(:uscc AS text))"""
_IN_SERIALS = """(CAST(:serial AS bigint) IS NULL OR EXISTS (SELECT 1 FROM jsonb_array_elements({col}) x
                  WHERE (x->>0)::bigint <= CAST(:serial AS bigint) AND (x->>1)::bigint >= CAST(:serial AS bigint)))"""
_INST = "(CAST(:instrument AS text) IS NULL OR {col} = CAST(:instrument AS text))"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def public_name(name: str | None) -> str | None:
    """A name as the public search compares it (see _NAME for the SQL half)."""
    if name is None:
        return None
    return " ".join(unicodedata.normalize("NFKC", name).split()).translate(_ASCII_LOWER)


def _who(alias: str) -> str:
    return _WHO.format(alias=alias, name=_NAME.format(alias=alias))


async def public_pledges(conn: AsyncConnection, *, name: str | None, uscc: str | None, serial: int | None,
                         instrument: str | None, limit: int, today: date) -> list[PublicPledge]:
    """Active registrations on matching lots, each followed by the registered junior claims ranking on
    the same lot (rank 1 is the lock holder, juniors by registration number). No amounts."""
    rows = await conn.execute(text(f"""
        WITH lots AS (
            SELECT p.id, p.number, p.registration_no, p.registered_at, p.status, p.instrument, i.decimals,
                   p.quantity, p.serials, p.term_start, p.term_end, pr.name AS pledgor_name,
                   pr.uscc AS pledgor_uscc, pe.name AS pledgee_name,
                   COALESCE((SELECT jsonb_agg(jsonb_build_object('source', r.source, 'reference', r.reference)
                                              ORDER BY r.source, r.reference)
                             FROM pledge_references r WHERE r.pledge_id = p.id), '[]'::jsonb) AS refs
            FROM pledges p JOIN participants pr ON pr.id = p.pledgor_id JOIN participants pe ON pe.id = p.pledgee_id
            JOIN instruments i ON i.code = p.instrument
            WHERE p.status IN ('active', 'enforcing') AND {_who('pr')}
              AND {_IN_SERIALS.format(col='p.serials')} AND {_INST.format(col='p.instrument')}),
        ranked AS (
            SELECT 'pledge' AS kind, l.registration_no AS lot_no, 1 AS rank_on_lot, l.number AS lot_number,
                   NULL::bigint AS claim_id, l.registration_no, l.registered_at, l.status, l.pledgee_name,
                   l.term_start, l.term_end, l.refs, l.instrument, l.decimals, l.quantity, l.serials,
                   l.pledgor_name, l.pledgor_uscc
            FROM lots l
            UNION ALL
            SELECT 'junior_claim', l.registration_no,
                   1 + row_number() OVER (PARTITION BY l.id ORDER BY c.registration_no), l.number,
                   c.id, c.registration_no, c.registered_at, c.status, cl.name,
                   NULL::date, c.term_end,
                   CASE WHEN c.reference IS NULL THEN '[]'::jsonb
                        ELSE jsonb_build_array(jsonb_build_object('source', 'claim', 'reference', c.reference)) END,
                   l.instrument, l.decimals, l.quantity, l.serials, l.pledgor_name, l.pledgor_uscc
            FROM lots l JOIN pledge_claims c ON c.pledge_id = l.id AND c.status = 'registered'
                                              AND c.term_end >= :today
            JOIN participants cl ON cl.id = c.claimant_id)
        SELECT * FROM ranked ORDER BY lot_no, rank_on_lot LIMIT :limit"""),
        {"name": public_name(name), "uscc": uscc, "serial": serial, "instrument": instrument, "limit": limit,
         "today": today})
    return [PublicPledge.from_row(r) for r in rows]


async def public_freezes(conn: AsyncConnection, *, name: str | None, uscc: str | None, serial: int | None,
                         instrument: str | None, limit: int) -> list[PublicFreeze]:
    rows = await conn.execute(text(f"""
        SELECT f.id, f.freeze_no, f.case_number, f.instrument, i.decimals, f.quantity, f.serials, f.term_start,
               f.term_end, f.created_at, c.name AS court_name, h.name AS holder_name, h.uscc AS holder_uscc
        FROM freezes f JOIN participants c ON c.id = f.court_id JOIN participants h ON h.id = f.holder_id
        JOIN instruments i ON i.code = f.instrument
        WHERE f.status = 'active' AND f.quantity > 0 AND {_who('h')}
          AND {_IN_SERIALS.format(col='f.serials')} AND {_INST.format(col='f.instrument')}
        ORDER BY f.freeze_no LIMIT :limit"""),
        {"name": public_name(name), "uscc": uscc, "serial": serial, "instrument": instrument, "limit": limit})
    return [PublicFreeze.from_row(r) for r in rows]


async def named_holders(conn: AsyncConnection, *, name: str | None, uscc: str | None) -> tuple[list[int], list[int]]:
    """The public search's holder filter for retirements: the holding accounts of the participants it names,
    and the restoration orders whose payer it names (a judicial retirement is the payer's)."""
    params = {"name": public_name(name), "uscc": uscc}
    accounts = await conn.execute(text(f"""SELECT p.holding_account FROM participants p
                                           WHERE p.holding_account IS NOT NULL AND {_who('p')}
                                           ORDER BY p.holding_account"""), params)
    orders = await conn.execute(text(f"""SELECT o.id FROM restoration_orders o
                                         JOIN participants pay ON pay.id = o.payer_id
                                         WHERE {_who('pay')} ORDER BY o.id"""), params)
    return [int(r.holding_account) for r in accounts], [int(r.id) for r in orders]


async def retirement_names(conn: AsyncConnection, blocks: list[Retirement]) -> list[PublicRetirement]:
    """Retired blocks with the names the public register shows: the retiring holder -- or, for a judicial
    retirement (its units pass through the clearing account, never the payer's), the payer, court and case."""
    decimals = {r.code: int(r.decimals) for r in await conn.execute(
        text("SELECT code, decimals FROM instruments WHERE code = ANY(:i)"),
        {"i": sorted({b.instrument for b in blocks})})}
    holders = {int(r.holding_account): (r.name, r.uscc) for r in await conn.execute(
        text("SELECT holding_account, name, uscc FROM participants WHERE holding_account = ANY(:a)"),
        {"a": sorted({b.account for b in blocks if b.account is not None})})}
    orders = {int(r.id): r for r in await conn.execute(text("""
        SELECT o.id, o.case_number, pay.name AS payer_name, pay.uscc AS payer_uscc, ct.name AS court_name
        FROM restoration_orders o LEFT JOIN participants pay ON pay.id = o.payer_id
        LEFT JOIN participants ct ON ct.id = o.court_id WHERE o.id = ANY(:o)"""),
        {"o": sorted({b.restoration_order for b in blocks if b.restoration_order is not None})})}
    out = []
    for b in blocks:
        o = orders.get(b.restoration_order) if b.restoration_order is not None else None
        held_by = holders.get(b.account, (None, None)) if b.account is not None else (None, None)
        paid_by = (o.payer_name, o.payer_uscc) if o is not None else (None, None)
        name, uscc = (p if p is not None else h for p, h in zip(paid_by, held_by, strict=True))
        out.append(PublicRetirement(b, decimals[b.instrument], name, uscc, None if o is None else o.court_name,
                                    None if o is None else o.case_number))
    return out


async def get_claim(conn: AsyncConnection, claim_id: int) -> Claim | None:
    row = (await conn.execute(text(_CLAIM_SELECT + " WHERE c.id = :i"), {"i": claim_id})).first()
    return None if row is None else Claim.from_row(row)






# ----------------------------------------------------------------------------------- enforcement sales






async def sale_orders(conn: AsyncConnection, pledge_id: int) -> list[Order]:
    """The listings and auctions that sell (part of) a registration's lot, oldest first."""
    rows = await conn.execute(text("""
        SELECT * FROM orders WHERE purpose ? 'enforcement' AND (purpose -> 'enforcement' ->> 'pledge_id')::bigint = :p
        ORDER BY created_at, id"""), {"p": pledge_id})
    return [Order.from_row(r._mapping) for r in rows]


async def order_by_client(conn: AsyncConnection, participant_id: int, client_id: str) -> Order | None:
    row = (await conn.execute(text("SELECT * FROM orders WHERE participant_id = :p AND client_id = :c"),
                              {"p": participant_id, "c": client_id})).first()
    return None if row is None else Order.from_row(row._mapping)


async def sale_trades(conn: AsyncConnection, pledge_id: int) -> list[SaleTrade]:
    """Settled trades of a registration's sale orders (the seller's side), in trade order."""
    rows = await conn.execute(text("""
        SELECT t.market_id, t.trade_id, t.price, t.qty, t.notional, t.seller_fee, t.sell_order
        FROM trades t JOIN orders o ON o.market_id = t.market_id AND o.id = t.sell_order
        WHERE o.purpose ? 'enforcement' AND (o.purpose -> 'enforcement' ->> 'pledge_id')::bigint = :p
        ORDER BY t.market_id, t.trade_id"""), {"p": pledge_id})
    return [SaleTrade.from_row(r) for r in rows]


async def trade(conn: AsyncConnection, market_id: str, trade_id: int) -> SaleTrade | None:
    row = (await conn.execute(text("""SELECT market_id, trade_id, price, qty, notional, seller_fee, sell_order
                                      FROM trades WHERE market_id = :m AND trade_id = :t"""),
                              {"m": market_id, "t": trade_id})).first()
    return None if row is None else SaleTrade.from_row(row)




async def event_client_ids(conn: AsyncConnection, pledge_id: int, prefix: str) -> set[str]:
    rows = await conn.execute(text("""SELECT client_id FROM pledge_events WHERE pledge_id = :p
                                      AND client_id LIKE :c"""), {"p": pledge_id, "c": prefix + "%"})
    return {r.client_id for r in rows}


# ----------------------------------------------------------------------------------- freezes behind a pledge


async def freeze_of_hold(conn: AsyncConnection, hold: int, *, lock: bool = False) -> Freeze | None:
    """The active freeze whose ledger hold this is. Lock order: pledge rows first, then freeze rows."""
    row = (await conn.execute(text(_FREEZE_SELECT + " WHERE f.hold_id = :h AND f.status = 'active'"
                                   + (" FOR UPDATE OF f" if lock else "")), {"h": hold})).first()
    return None if row is None else Freeze.from_row(row)


async def freeze_chain_head(conn: AsyncConnection, root_id: int) -> Freeze | None:
    """The latest row of a freeze's chain (renewals continue it)."""
    row = (await conn.execute(text(_FREEZE_SELECT + " WHERE COALESCE(f.root_id, f.id) = :r ORDER BY f.id DESC "
                                   "LIMIT 1"), {"r": root_id})).first()
    return None if row is None else Freeze.from_row(row)


async def add_freeze_proceeds(conn: AsyncConnection, freeze_id: int, amount: int) -> None:
    await conn.execute(text("UPDATE freezes SET proceeds_received = proceeds_received + :a WHERE id = :i"),
                       {"a": amount, "i": freeze_id})


async def last_trade_price(conn: AsyncConnection, instrument: str) -> int | None:
    """The price (fen per whole unit) of the instrument's latest trade on any of its markets, or None."""
    row = (await conn.execute(text("SELECT price FROM trades WHERE instrument = :i ORDER BY ts DESC, trade_id DESC "
                                   "LIMIT 1"), {"i": instrument})).first()
    return None if row is None else int(row[0])


async def latest_mark(conn: AsyncConnection, instrument: str, *, by: str | None = None) -> Mark | None:
    """The instrument's latest mark (the exchange's close or an approved manual mark): the reference price;
    `by`: the latest one that actor recorded (the exchange's own close)."""
    row = (await conn.execute(text("SELECT * FROM pledge_marks WHERE instrument = :i "
                                   "AND (CAST(:by AS text) IS NULL OR recorded_by = :by) ORDER BY as_of DESC LIMIT 1"),
                              {"i": instrument, "by": by})).first()
    return None if row is None else Mark.from_row(row)
