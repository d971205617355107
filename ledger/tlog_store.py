"""SQL for the transparency interfaces: entry bytes for bundles, witness cosignatures of checkpoints.

Functions take the caller's asyncpg connection and only read, except :func:`add_cosignature`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from ledger.checkpoints import Published, _published


@dataclass(frozen=True, slots=True)
class Cosignature:
    size: int
    witness: str  # verifier key of the witness
    ts: int
    line: str


async def leaves(conn: asyncpg.Connection, first_seq: int, count: int) -> list[bytes]:
    """The canonical bytes (Merkle leaf data) of entries ``first_seq .. first_seq + count - 1``."""
    rows = await conn.fetch("SELECT seq, leaf FROM ledger_entries WHERE seq >= $1 AND seq < $2 ORDER BY seq",
                            first_seq, first_seq + count)
    if len(rows) != count or (rows and rows[0]["seq"] != first_seq):
        raise LookupError(f"entries {first_seq}..{first_seq + count - 1} are not all in the log")
    return [bytes(r["leaf"]) for r in rows]


async def add_cosignature(conn: asyncpg.Connection, c: Cosignature) -> None:
    """Record a verified cosignature (a retry of the same one is a no-op)."""
    await conn.execute("""INSERT INTO ledger_cosignatures (size, witness, ts, line) VALUES ($1, $2, $3, $4)
                          ON CONFLICT (size, witness) DO NOTHING""", c.size, c.witness, c.ts, c.line)


async def cosignatures(conn: asyncpg.Connection, size: int) -> list[Cosignature]:
    rows = await conn.fetch("SELECT size, witness, ts, line FROM ledger_cosignatures WHERE size = $1 "
                            "ORDER BY witness", size)
    return [Cosignature(int(r["size"]), r["witness"], int(r["ts"]), r["line"]) for r in rows]


async def last_cosigned(conn: asyncpg.Connection, witnesses: Sequence[str]) -> dict[str, int]:
    """Per witness key: the largest checkpoint size it cosigned for this log (absent: never)."""
    rows = await conn.fetch("SELECT witness, max(size) AS size FROM ledger_cosignatures "
                            "WHERE witness = ANY($1::text[]) GROUP BY witness", list(witnesses))
    return {r["witness"]: int(r["size"]) for r in rows}


async def latest_witnessed(conn: asyncpg.Connection, witnesses: Sequence[str], quorum: int,
                           at_least: int = 0) -> Published | None:
    """The newest checkpoint of at least ``at_least`` leaves cosigned by ``quorum`` of ``witnesses``."""
    row = await conn.fetchrow(
        """SELECT c.* FROM ledger_checkpoints c
           WHERE c.size >= $3 AND (SELECT count(*) FROM ledger_cosignatures s
                                   WHERE s.size = c.size AND s.witness = ANY($1::text[])) >= $2
           ORDER BY c.size DESC LIMIT 1""", list(witnesses), quorum, at_least)
    return _published(row)
