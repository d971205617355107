"""The audit trail of administrative actions: append-only, each row hash-chained to the one before.

    hash(n) = SHA-256("envx-audit/1\\n" || hash(n-1) || JSON[seq, ts, actor, kind, key, operation, method,
                                                          path, ip, forwarded_for, status, outcome, detail])

with hash(0) = 32 zero bytes and JSON the compact, key-sorted UTF-8 encoding. `detail` is stored as the
exact text that was hashed (not jsonb, whose normalisation would change the bytes). The table refuses
UPDATE, DELETE and TRUNCATE (trigger); `verify` recomputes the chain, so a change made around the
trigger (superuser, restored dump) is found at the first row it touches. Dropping rows at the very
end is not visible from inside the chain: compare with a head you recorded earlier (`expect`).

Any text is stored: what UTF-8 or PostgreSQL text cannot hold (a lone surrogate, NUL) is written as a
backslash escape first, so no request, however odd, makes the append fail.

Requests without a valid key are counted in `audit_anonymous_refusals`, one row per client address and
minute (`record_anonymous`); only the first of each minute is appended to the chain.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.security.models import AnonymousRefusals, AuditRecord, ChainCheck

GENESIS = bytes(32)
DOMAIN = b"envx-audit/1\n"
# pg_advisory_xact_lock key ("envxaudt"): appends are serialised so each row sees the true previous hash.
LOCK_KEY = 0x656E7678_61756474
PAGE = 1000

_COLUMNS = ("seq, ts, actor, participant_kind, api_key_id, operation, method, path, client_ip, forwarded_for, "
            "status, outcome, detail, prev_hash, hash")


@dataclass(slots=True)
class AuditEvent:
    operation: str
    method: str
    path: str
    status: int
    outcome: str  # ok | refused | failed
    actor: str | None = None
    participant_kind: str | None = None
    api_key_id: int | None = None
    client_ip: str | None = None
    forwarded_for: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def storable(value: str) -> str:
    """`value` with lone surrogates and NUL as backslash escapes (UTF-8 and PostgreSQL text hold neither)."""
    if value.isascii() and "\x00" not in value:
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _storable(value: str | None) -> str | None:
    return None if value is None else storable(value)


def encode_detail(detail: dict[str, Any]) -> str:
    return storable(json.dumps(detail, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str))


def row_hash(prev: bytes, fields: list[Any]) -> bytes:
    body = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(DOMAIN + prev + body).digest()


async def append(conn: AsyncConnection, ev: AuditEvent) -> int:
    """Append one row in the caller's transaction; returns its sequence number."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    last = (await conn.execute(text("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"))).first()
    seq, prev = (last.seq + 1, bytes(last.hash)) if last else (1, GENESIS)
    row = {"seq": seq, "ts": time.time_ns() // 1000, "actor": _storable(ev.actor),
           "participant_kind": _storable(ev.participant_kind), "api_key_id": ev.api_key_id,
           "operation": storable(ev.operation), "method": storable(ev.method), "path": storable(ev.path),
           "client_ip": _storable(ev.client_ip), "forwarded_for": _storable(ev.forwarded_for), "status": ev.status,
           "outcome": ev.outcome, "detail": encode_detail(ev.detail)}
    fields = [row[k] for k in ("seq", "ts", "actor", "participant_kind", "api_key_id", "operation", "method",
                               "path", "client_ip", "forwarded_for", "status", "outcome", "detail")]
    await conn.execute(text(f"INSERT INTO audit_log ({_COLUMNS}) VALUES (:seq, :ts, :actor, :participant_kind, "
                            ":api_key_id, :operation, :method, :path, :client_ip, :forwarded_for, :status, "
                            ":outcome, :detail, :prev, :hash)"),
                       {**row, "prev": prev, "hash": row_hash(prev, fields)})
    return seq


async def record_anonymous(conn: AsyncConnection, ev: AuditEvent) -> int | None:
    """Count a request without a valid key in its address's minute; the first of the minute is also
    appended to the chain (its seq is returned and kept with the count), the others only counted."""
    minute = time.time_ns() // 60_000_000_000 * 60
    count = (await conn.execute(text(
        """INSERT INTO audit_anonymous_refusals (client_ip, minute, refusals, last_operation, last_at)
           VALUES (:ip, to_timestamp(:m), 1, :op, now())
           ON CONFLICT (client_ip, minute) DO UPDATE SET refusals = audit_anonymous_refusals.refusals + 1,
               last_operation = EXCLUDED.last_operation, last_at = EXCLUDED.last_at
           RETURNING refusals"""),
        {"ip": storable(ev.client_ip or ""), "m": minute, "op": storable(ev.operation)})).scalar_one()
    if count > 1:
        return None
    seq = await append(conn, ev)
    await conn.execute(text("UPDATE audit_anonymous_refusals SET first_seq = :s WHERE client_ip = :ip "
                            "AND minute = to_timestamp(:m)"), {"s": seq, "ip": storable(ev.client_ip or ""),
                                                               "m": minute})
    return seq


async def anonymous_refusals(conn: AsyncConnection, *, after_minute: int, limit: int) -> list[AnonymousRefusals]:
    rows = await conn.execute(text(
        """SELECT client_ip, extract(epoch FROM minute)::bigint AS minute, refusals, first_seq, last_operation,
                  last_at FROM audit_anonymous_refusals WHERE minute > to_timestamp(:a)
           ORDER BY minute, client_ip LIMIT :n"""), {"a": after_minute, "n": limit})
    return [AnonymousRefusals.from_row(r) for r in rows]


async def listing(conn: AsyncConnection, *, after: int, limit: int, operation: str | None = None,
                  actor: str | None = None) -> list[AuditRecord]:
    sql = f"SELECT {_COLUMNS} FROM audit_log WHERE seq > :after"
    params: dict[str, Any] = {"after": after, "limit": limit}
    if operation:
        sql += " AND operation = :op"
        params["op"] = operation
    if actor:
        sql += " AND actor = :actor"
        params["actor"] = actor
    rows = await conn.execute(text(sql + " ORDER BY seq LIMIT :limit"), params)
    return [AuditRecord.from_row(r) for r in rows]


async def verify(conn: AsyncConnection, expect: tuple[int, bytes] | None = None) -> ChainCheck:
    """Recompute the whole chain. `expect` = (seq, hash) of a head seen earlier: it must still be there."""
    prev, expected_seq, after = GENESIS, 1, 0
    head: tuple[int, bytes] | None = None
    while True:
        rows = [AuditRecord.from_row(r) for r in await conn.execute(
            text(f"SELECT {_COLUMNS} FROM audit_log WHERE seq > :a ORDER BY seq LIMIT :n"), {"a": after, "n": PAGE})]
        for r in rows:
            problem = None
            if r.seq != expected_seq:
                problem = f"row {expected_seq} is missing (next row is {r.seq})"
            elif r.prev_hash != prev:
                problem = f"row {r.seq} does not link to the hash of row {r.seq - 1}"
            elif r.hash != row_hash(prev, r.fields()):
                problem = f"row {r.seq} does not match its hash (changed after it was written)"
            if problem:
                return ChainCheck(False, r.seq - 1, first_bad_seq=min(r.seq, expected_seq), problem=problem)
            prev, expected_seq = r.hash, r.seq + 1
            head = (r.seq, prev)
        if len(rows) < PAGE:
            break
        after = rows[-1].seq
    n = head[0] if head else 0
    head_hash = (head[1] if head else GENESIS).hex()
    if expect is not None:
        seq, want = expect
        got = (await conn.execute(text("SELECT hash FROM audit_log WHERE seq = :s"), {"s": seq})).scalar()
        if got is None or bytes(got) != want:
            return ChainCheck(False, n, n, head_hash, first_bad_seq=seq,
                              problem=f"the head you recorded (row {seq}) is no longer in the chain")
    return ChainCheck(True, n, n, head_hash)
