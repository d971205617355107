"""The SQL of the verifiable-ledger wiring outside the ledger's own store: the keys the log registers."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.encoding import decode_entry


async def registered_keys(conn: AsyncConnection) -> list[tuple[int, str, str | None]]:
    """(seq, verifier key, client id) of every key registration in the log, oldest first."""
    rows = await conn.execute(text("SELECT seq, leaf, client_id FROM ledger_entries WHERE type = 'key.register' "
                                   "ORDER BY seq"))
    return [(int(r.seq), str(decode_entry(bytes(r.leaf))["body"]["key"]), r.client_id) for r in rows]
