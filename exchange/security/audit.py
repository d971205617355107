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

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.security import repository as repo
from exchange.security.models import AnonymousRefusals, AuditRecord, ChainCheck

GENESIS = bytes(32)
DOMAIN = b"envx-audit/1\n"
# pg_advisory_xact_lock key ("envxaudt"): appends are serialised so each row sees the true previous hash.
LOCK_KEY = 0x656E7678_61756474
PAGE = 1000

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
    await repo.lock_audit(conn, LOCK_KEY)
    last = await repo.audit_head(conn)
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    row = {"seq": seq, "ts": time.time_ns() // 1000, "actor": _storable(ev.actor),
           "participant_kind": _storable(ev.participant_kind), "api_key_id": ev.api_key_id,
           "operation": storable(ev.operation), "method": storable(ev.method), "path": storable(ev.path),
           "client_ip": _storable(ev.client_ip), "forwarded_for": _storable(ev.forwarded_for), "status": ev.status,
           "outcome": ev.outcome, "detail": encode_detail(ev.detail)}
    fields = [row[k] for k in ("seq", "ts", "actor", "participant_kind", "api_key_id", "operation", "method",
                               "path", "client_ip", "forwarded_for", "status", "outcome", "detail")]
    await repo.insert_audit_row(conn, row, prev, row_hash(prev, fields))
    return seq


async def record_anonymous(conn: AsyncConnection, ev: AuditEvent) -> int | None:
    """Count a request without a valid key in its address's minute; the first of the minute is also
    appended to the chain (its seq is returned and kept with the count), the others only counted."""
    minute = time.time_ns() // 60_000_000_000 * 60
    ip = storable(ev.client_ip or "")
    if await repo.count_anonymous_refusal(conn, ip, minute, storable(ev.operation)) > 1:
        return None
    seq = await append(conn, ev)
    await repo.first_anonymous_refusal(conn, ip, minute, seq)
    return seq


async def anonymous_refusals(conn: AsyncConnection, *, after_minute: int, limit: int) -> list[AnonymousRefusals]:
    return await repo.anonymous_refusals(conn, after_minute=after_minute, limit=limit)


async def listing(conn: AsyncConnection, *, after: int, limit: int, operation: str | None = None,
                  actor: str | None = None) -> list[AuditRecord]:
    return await repo.audit_rows(conn, after=after, limit=limit, operation=operation, actor=actor)


async def verify(conn: AsyncConnection, expect: tuple[int, bytes] | None = None) -> ChainCheck:
    """Recompute the whole chain. `expect` = (seq, hash) of a head seen earlier: it must still be there."""
    prev, expected_seq, after = GENESIS, 1, 0
    head: tuple[int, bytes] | None = None
    while True:
        rows = await repo.audit_rows(conn, after=after, limit=PAGE)
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
        got = await repo.audit_hash(conn, seq)
        if got is None or got != want:
            return ChainCheck(False, n, n, head_hash, first_bad_seq=seq,
                              problem=f"the head you recorded (row {seq}) is no longer in the chain")
    return ChainCheck(True, n, n, head_hash)
