"""Read queries over the ledger's projections and log. Safe to run on a read replica."""

from __future__ import annotations

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


# --- for exchange/registry (wp/b-registry) ------------------------------------------------------------------


async def instrument_defined(conn: AsyncConnection, code: str) -> bool:
    found = (await conn.execute(text("SELECT 1 FROM ledger_instruments WHERE code = :c"), {"c": code})).first()
    return found is not None


async def batch_id_by_reference(conn: AsyncConnection, reference: str) -> int | None:
    found = (await conn.execute(text("SELECT id FROM ledger_batches WHERE reference = :r"), {"r": reference})).scalar()
    return None if found is None else int(found)


async def first_entry_by_client_id(conn: AsyncConnection, type_: str, client_id: str) -> tuple[int, bytes] | None:
    """(seq, meta bytes) of the first entry of `type_` under `client_id` (any actor)."""
    row = (await conn.execute(
        text("SELECT seq, meta FROM ledger_entries WHERE type = :t AND client_id = :c ORDER BY seq LIMIT 1"),
        {"t": type_, "c": client_id})).first()
    return None if row is None else (int(row.seq), bytes(row.meta))


async def retired_by_prefix(conn: AsyncConnection, actor: str, client_id_prefix: str, instrument: str | None,
                            limit: int = 1000) -> list[dict[str, Any]]:
    """Blocks retired by `actor`'s entries whose client id starts with the prefix (an account's expiries)."""
    rows = await conn.execute(text(
        """SELECT b.instrument, b.start_serial, b.end_serial, b.batch, b.hold, b.frozen_by
           FROM ledger_entries e JOIN ledger_blocks b ON b.retired_seq = e.seq
           WHERE e.actor = :actor AND e.client_id LIKE :prefix AND e.type = 'retire'
             AND (CAST(:i AS text) IS NULL OR b.instrument = CAST(:i AS text))
           ORDER BY b.instrument, b.start_serial LIMIT :limit"""),
        {"actor": actor, "prefix": client_id_prefix + "%", "i": instrument, "limit": limit})
    return [dict(r._mapping) for r in rows]


async def hold_state(conn: AsyncConnection, hold_id: int) -> tuple[str, str] | None:
    """(instrument, state) of a hold."""
    row = (await conn.execute(text("SELECT instrument, state FROM ledger_holds WHERE id = :h"), {"h": hold_id})).first()
    return None if row is None else (str(row.instrument), str(row.state))


async def held_ranges(conn: AsyncConnection, hold_id: int, *, batch: int, in_batch: bool) -> list[tuple[int, int]]:
    """The unretired serial ranges under a hold, of `batch` (`in_batch`) or of every other batch."""
    rows = await conn.execute(text(
        """SELECT start_serial, end_serial FROM ledger_blocks
           WHERE hold = :h AND retired_seq IS NULL AND (batch = :b) = :mine ORDER BY start_serial"""),
        {"h": hold_id, "b": batch, "mine": in_batch})
    return [(int(r.start_serial), int(r.end_serial)) for r in rows]


async def orphan_order_holds(conn: AsyncConnection, keep_actors: list[str]) -> list[int]:
    """Pending order holds that no row of `orders` names (their order never reached a market's journal),
    except those created by the actors `keep_actors` (a stopped market's own fundings)."""
    rows = await conn.execute(text(
        """SELECT h.id FROM ledger_holds h JOIN ledger_entries e ON e.seq = h.id
           WHERE h.kind = 'order' AND h.state = 'pending' AND e.actor <> ALL(:keep)
             AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.hold_id = h.id)
           ORDER BY h.id"""), {"keep": keep_actors})
    return [int(r.id) for r in rows]
