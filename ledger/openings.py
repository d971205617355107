"""SQL of blinded entries (ledger/blinding.py): the ledger's blinding key and each blinded entry's openings,
kept privately beside the log (`ledger_blinding_key`, `ledger_entry_openings`)."""

from __future__ import annotations

import os
from collections.abc import Iterable

import asyncpg
import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger import blinding
from ledger.encoding import BLINDED_VERSIONS, canonical_json
from ledger.state import Entry


async def blinding_key(conn: asyncpg.Connection) -> bytes:
    """The ledger's blinding key, made (32 random bytes) by the first writer that asks."""
    await conn.execute("INSERT INTO ledger_blinding_key (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                       os.urandom(blinding.KEY_BYTES))
    return bytes(await conn.fetchval("SELECT key FROM ledger_blinding_key WHERE id = 1"))


async def write(conn: asyncpg.Connection, entries: Iterable[Entry]) -> None:
    """Keep the openings of the blinded entries among `entries` (in the writer's batch transaction)."""
    rows = [(e.seq, canonical_json(blinding.encode_openings(e.openings))) for e in entries if e.openings is not None]
    if rows:
        await conn.executemany("INSERT INTO ledger_entry_openings (seq, openings) VALUES ($1, $2)", rows)


def decode(raw: bytes) -> blinding.Openings:
    return blinding.decode_openings(msgspec.json.decode(raw))


async def between(conn: asyncpg.Connection, lo: int, hi: int) -> dict[int, blinding.Openings]:
    """The openings of the blinded entries lo..hi (the audit), by seq. Unreadable ones are left out: the
    audit then reports their entries as not opened."""
    out: dict[int, blinding.Openings] = {}
    for r in await conn.fetch("SELECT seq, openings FROM ledger_entry_openings WHERE seq BETWEEN $1 AND $2",
                              lo, hi):
        try:
            out[r["seq"]] = decode(bytes(r["openings"]))
        except (blinding.BlindingError, msgspec.DecodeError):
            continue
    return out


async def orphans(conn: asyncpg.Connection) -> list[int]:
    """Openings stored for no entry, or for an entry that is not a blinded one (version 3 or 4)."""
    rows = await conn.fetch("SELECT o.seq FROM ledger_entry_openings o LEFT JOIN ledger_entries e USING (seq) "
                            "WHERE e.seq IS NULL OR substring(e.leaf FROM 1 FOR 13) <> ALL($1::bytea[]) "
                            "ORDER BY o.seq", list(BLINDED_VERSIONS))
    return [int(r["seq"]) for r in rows]


async def of_entry(conn: AsyncConnection, seq: int) -> blinding.Openings | None:
    """One blinded entry's openings (receipts), None if it has none."""
    raw = (await conn.execute(text("SELECT openings FROM ledger_entry_openings WHERE seq = :s"), {"s": seq})).scalar()
    return None if raw is None else decode(bytes(raw))
