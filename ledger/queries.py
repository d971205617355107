"""Read queries over the ledger's projections and log. Safe to run on a read replica."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.encoding import decode_entry


async def balances(conn: AsyncConnection, accounts: list[int]) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text("""SELECT account, instrument, posted, pending_out, pending_in
                FROM ledger_balances WHERE account = ANY(:a) ORDER BY account, instrument"""),
        {"a": accounts},
    )
    return [dict(r._mapping) for r in rows]


async def blocks(conn: AsyncConnection, accounts: list[int], instrument: str | None = None,
                 limit: int = 1000, after: tuple[str, int] | None = None) -> list[dict[str, Any]]:
    sql = """SELECT b.instrument, b.start_serial, b.end_serial, b.batch, b.account, b.hold, b.retired_seq,
                    b.frozen_by, h.kind AS hold_kind
             FROM ledger_blocks b LEFT JOIN ledger_holds h ON h.id = b.hold
             WHERE b.account = ANY(:a)"""
    params: dict[str, Any] = {"a": accounts, "limit": limit}
    if instrument:
        sql += " AND b.instrument = :i"
        params["i"] = instrument
    if after:
        sql += " AND (b.instrument, b.start_serial) > (:ai, :as)"
        params["ai"], params["as"] = after
    sql += " ORDER BY b.instrument, b.start_serial LIMIT :limit"
    rows = await conn.execute(text(sql), params)
    return [dict(r._mapping) for r in rows]


async def retired_blocks(conn: AsyncConnection, accounts: list[int], entries: list[int], instrument: str | None = None,
                         limit: int = 1000, after: tuple[str, int] | None = None,
                         except_purpose: str | None = None) -> list[dict[str, Any]]:
    """Retired blocks (they rest in the retired sink) that `accounts` retired -- the account named in the
    retire entry's body -- or that the retire entries `entries` retired, with the entry's purpose and
    beneficiary; none retired with `except_purpose`. Same order and paging as `blocks`."""
    sql = """SELECT b.instrument, b.start_serial, b.end_serial, b.batch, b.account, b.hold, b.retired_seq,
                    b.frozen_by, NULL AS hold_kind, x.body ->> 'purpose' AS purpose,
                    x.body ->> 'beneficiary' AS beneficiary
             FROM ledger_blocks b JOIN ledger_entries e ON e.seq = b.retired_seq AND e.type = 'retire'
             CROSS JOIN LATERAL (SELECT convert_from(substring(e.leaf from 14), 'UTF8')::jsonb -> 'body' AS body) x
             WHERE b.retired_seq IS NOT NULL
               AND ((x.body ->> 'account')::bigint = ANY(:a) OR b.retired_seq = ANY(:s))"""
    params: dict[str, Any] = {"a": accounts, "s": entries, "limit": limit}
    if instrument:
        sql += " AND b.instrument = :i"
        params["i"] = instrument
    if except_purpose:
        sql += " AND (x.body ->> 'purpose') IS DISTINCT FROM :xp"
        params["xp"] = except_purpose
    if after:
        sql += " AND (b.instrument, b.start_serial) > (:ai, :as)"
        params["ai"], params["as"] = after
    sql += " ORDER BY b.instrument, b.start_serial LIMIT :limit"
    rows = await conn.execute(text(sql), params)
    return [dict(r._mapping) for r in rows]


async def blocks_of_hold(conn: AsyncConnection, hold: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text("""SELECT instrument, start_serial, end_serial, batch, account FROM ledger_blocks
                WHERE hold = :h ORDER BY start_serial"""), {"h": hold})
    return [dict(r._mapping) for r in rows]


async def batch(conn: AsyncConnection, batch_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM ledger_batches WHERE id = :b"), {"b": batch_id})).first()
    return dict(row._mapping) if row else None


async def hold(conn: AsyncConnection, hold_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM ledger_holds WHERE id = :h"), {"h": hold_id})).first()
    return dict(row._mapping) if row else None


def _entry(row: Any) -> dict[str, Any]:
    leaf = bytes(row.leaf)
    return {
        "seq": row.seq,
        "ts": row.ts,
        "type": row.type,
        "actor": row.actor,
        "client_id": row.client_id,
        "hash": bytes(row.hash).hex(),
        "entry": decode_entry(leaf),
        "leaf": leaf,
        "meta": bytes(row.meta),
    }


async def entries(conn: AsyncConnection, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text("SELECT * FROM ledger_entries WHERE seq > :after ORDER BY seq LIMIT :limit"),
        {"after": after, "limit": limit},
    )
    return [_entry(r) for r in rows]


async def entry(conn: AsyncConnection, seq: int) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM ledger_entries WHERE seq = :s"), {"s": seq})).first()
    return _entry(row) if row else None


async def head(conn: AsyncConnection) -> dict[str, Any]:
    row = (await conn.execute(text("SELECT seq, hash, ts FROM ledger_head WHERE id = 1"))).one()
    return {"seq": row.seq, "hash": bytes(row.hash).hex(), "ts": row.ts}


@dataclass(frozen=True, slots=True)
class RequestEntry:
    """The entry a ledger request (named by its actor and client id) became."""

    seq: int
    actor: str
    client_id: str
    meta: bytes

    @classmethod
    def from_row(cls, r: Any) -> RequestEntry:
        return cls(r.seq, r.actor, r.client_id, bytes(r.meta))


async def entries_of_requests(conn: AsyncConnection, requests: list[tuple[str, str]]) -> list[RequestEntry]:
    """The entries of these (actor, client id) requests that are in the ledger, by seq."""
    if not requests:
        return []
    rows = await conn.execute(
        text("""SELECT e.seq, e.actor, e.client_id, e.meta
                FROM unnest(CAST(:a AS text[]), CAST(:c AS text[])) AS k(actor, client_id)
                JOIN ledger_entries e ON e.actor = k.actor AND e.client_id = k.client_id ORDER BY e.seq"""),
        {"a": [a for a, _ in requests], "c": [c for _, c in requests]})
    return [RequestEntry.from_row(r) for r in rows]


@dataclass(frozen=True, slots=True)
class LeafEntry:
    """An entry's canonical bytes (the Merkle leaf) and committed metadata."""

    seq: int
    actor: str
    leaf: bytes
    meta: bytes


async def leaf_entry(conn: AsyncConnection, seq: int) -> LeafEntry | None:
    row = (await conn.execute(text("SELECT seq, actor, leaf, meta FROM ledger_entries WHERE seq = :s"),
                              {"s": seq})).first()
    return None if row is None else LeafEntry(row.seq, row.actor, bytes(row.leaf), bytes(row.meta))


async def hold_accounts(conn: AsyncConnection, hold_id: int) -> tuple[int, int] | None:
    """(debit, credit) of a hold."""
    row = (await conn.execute(text("SELECT debit, credit FROM ledger_holds WHERE id = :h"), {"h": hold_id})).first()
    return None if row is None else (int(row.debit), int(row.credit))
