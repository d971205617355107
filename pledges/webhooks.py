"""Signed webhooks to banks: the signature (pure), the retry schedule (pure), outbox delivery (DB + HTTP).

Each pledge event a bank should hear about is written to `pledge_outbox` in the same transaction as
the event, so an event is never announced unless committed and never lost once committed. A
delivery task sends due rows after commit and retries failures with exponential backoff.

Request: `POST <url>` with the event as JSON and headers

    X-Envx-Event-Id:  <event id>              (receivers dedupe on it: delivery is at least once)
    X-Envx-Event-Type: <type>
    X-Envx-Timestamp: <unix seconds of this attempt>
    X-Envx-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

The timestamp is inside the MAC so a captured request cannot be replayed later under a new time;
receivers should refuse timestamps older than a few minutes (`verify` does, 300 s by default).

Claiming: due rows are leased (next attempt pushed `LEASE` ahead, attempts counted) under
`FOR UPDATE SKIP LOCKED` and committed before any HTTP call, so two workers never send the same row
at the same time and a worker that dies mid-send only delays the row by the lease.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("envx.pledges.webhooks")

SIGNATURE_HEADER = "X-Envx-Signature"
TIMESTAMP_HEADER = "X-Envx-Timestamp"
EVENT_ID_HEADER = "X-Envx-Event-Id"
EVENT_TYPE_HEADER = "X-Envx-Event-Type"
MAX_ATTEMPTS = 12  # 1 s, 2 s, 4 s ... capped at an hour: about 2.5 hours of trying
BASE_DELAY = 1.0
MAX_DELAY = 3600.0
LEASE = timedelta(seconds=60)
TIMEOUT = 5.0

# (url, body, headers) -> HTTP status; raises OSError-like errors when the receiver is unreachable.
Sender = Callable[[str, bytes, dict[str, str]], Awaitable[int]]


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def headers(secret: bytes, timestamp: int, body: bytes, event_id: int, event_type: str) -> dict[str, str]:
    return {"Content-Type": "application/json", EVENT_ID_HEADER: str(event_id), EVENT_TYPE_HEADER: event_type,
            TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify(secret: bytes, timestamp: str, sig: str, body: bytes, *, now: float | None = None,
           tolerance: int = 300) -> bool:
    """What a receiver does: constant-time compare, and refuse stale or future timestamps."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, ts, body), sig)


def backoff(attempts: int) -> float:
    """Delay before the next try after `attempts` failed ones."""
    return min(BASE_DELAY * 2 ** max(attempts - 1, 0), MAX_DELAY)


def body_of(event: dict[str, object]) -> bytes:
    return json.dumps(event, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str).encode()


async def http_sender(url: str, body: bytes, hdrs: dict[str, str]) -> int:
    import httpx  # a dependency of litestar; imported here so the pure part needs nothing

    async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
        return (await client.post(url, content=body, headers=hdrs)).status_code


async def deliver_due(engine: AsyncEngine, sender: Sender, *, limit: int = 50) -> int:
    """Send every due outbox row once; returns how many were delivered."""
    async with engine.begin() as conn:
        rows = (await conn.execute(text("""
            UPDATE pledge_outbox o SET attempts = o.attempts + 1, next_attempt_at = now() + :lease
            FROM (SELECT id FROM pledge_outbox WHERE status = 'pending' AND next_attempt_at <= now()
                  ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED) due,
                 pledge_webhooks w
            WHERE o.id = due.id AND w.participant_id = o.participant_id
            RETURNING o.id, o.event_id, o.event_type, o.body, o.attempts, w.url, w.secret"""),
            {"lease": LEASE, "limit": limit})).all()
    if not rows:
        return 0

    async def one(row: object) -> tuple[int, int, str | None]:
        body = bytes(row.body)  # type: ignore[attr-defined]
        hdrs = headers(bytes(row.secret), int(time.time()), body, row.event_id, row.event_type)  # type: ignore[attr-defined]
        try:
            status = await sender(row.url, body, hdrs)  # type: ignore[attr-defined]
        except Exception as exc:  # unreachable receiver: retried, never fatal to the worker
            return row.id, row.attempts, f"{type(exc).__name__}: {exc}"[:500]  # type: ignore[attr-defined]
        if 200 <= status < 300:
            return row.id, row.attempts, None  # type: ignore[attr-defined]
        return row.id, row.attempts, f"HTTP {status}"  # type: ignore[attr-defined]

    results = await asyncio.gather(*(one(r) for r in rows))
    delivered = 0
    async with engine.begin() as conn:
        for row_id, attempts, error in results:
            if error is None:
                delivered += 1
                await conn.execute(text("""UPDATE pledge_outbox SET status = 'delivered', delivered_at = now(),
                                           last_error = NULL WHERE id = :i"""), {"i": row_id})
            elif attempts >= MAX_ATTEMPTS:
                log.warning("webhook %s failed for good after %d attempts: %s", row_id, attempts, error)
                await conn.execute(text("UPDATE pledge_outbox SET status = 'failed', last_error = :e WHERE id = :i"),
                                   {"i": row_id, "e": error})
            else:
                await conn.execute(text("""UPDATE pledge_outbox SET last_error = :e,
                                           next_attempt_at = now() + :d WHERE id = :i"""),
                                   {"i": row_id, "e": error, "d": timedelta(seconds=backoff(attempts))})
    return delivered
