"""API keys: random secrets shown once, stored as SHA-256 digests, looked up by a public prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

TOKEN_PREFIX = "envx"
# Verified keys, so a hot client costs no database round trip per request. Revocation through this
# process clears the entry at once; other processes (read replicas) see it within CACHE_SECONDS.
CACHE_SECONDS = 5.0
_cache: dict[str, tuple[Principal, float]] = {}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: one participant, acting through one key."""

    participant_id: int
    kind: str
    name: str
    key_id: int
    holding_account: int | None
    cash_account: int | None

    @property
    def actor(self) -> str:
        return f"participant:{self.participant_id}"


def new_token() -> tuple[str, str, bytes]:
    """(token, prefix, secret digest). Secrets are 256-bit random, so a plain SHA-256 suffices."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{TOKEN_PREFIX}_{prefix}_{secret}", prefix, hashlib.sha256(secret.encode()).digest()


def parse_token(token: str) -> tuple[str, str] | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


async def create_key(conn: AsyncConnection, participant_id: int, label: str,
                     expires_at: datetime | None = None) -> dict[str, Any]:
    token, prefix, digest = new_token()
    row = (await conn.execute(
        text("""INSERT INTO api_keys (participant_id, prefix, secret_hash, label, expires_at)
                VALUES (:p, :prefix, :h, :label, :exp) RETURNING id, created_at"""),
        {"p": participant_id, "prefix": prefix, "h": digest, "label": label, "exp": expires_at},
    )).one()
    return {"id": row.id, "token": token, "prefix": prefix, "label": label, "created_at": row.created_at,
            "expires_at": expires_at}


def cached(token: str) -> Principal | None:
    hit = _cache.get(token)
    if hit is None:
        return None
    principal, until = hit
    if time.monotonic() > until:
        _cache.pop(token, None)
        return None
    return principal


def forget_key(key_id: int) -> None:
    for token, (p, _) in list(_cache.items()):
        if p.key_id == key_id:
            _cache.pop(token, None)


async def authenticate(conn: AsyncConnection, token: str) -> Principal | None:
    principal, expires_at = await _authenticate(conn, token)
    if principal is not None:
        if len(_cache) > 100_000:
            _cache.clear()
        ttl = CACHE_SECONDS
        if expires_at is not None:  # never trust the cache past the key's own expiry
            ttl = min(ttl, (expires_at - datetime.now(UTC)).total_seconds())
        _cache[token] = (principal, time.monotonic() + ttl)
    return principal


async def _authenticate(conn: AsyncConnection, token: str) -> tuple[Principal | None, datetime | None]:
    parsed = parse_token(token)
    if parsed is None:
        return None, None
    prefix, secret = parsed
    row = (await conn.execute(
        text("""SELECT k.id, k.secret_hash, k.expires_at, k.revoked_at, p.id AS pid, p.kind, p.name,
                       p.status, p.holding_account, p.cash_account
                FROM api_keys k JOIN participants p ON p.id = k.participant_id WHERE k.prefix = :prefix"""),
        {"prefix": prefix},
    )).first()
    if row is None:
        return None, None
    if not hmac.compare_digest(bytes(row.secret_hash), hashlib.sha256(secret.encode()).digest()):
        return None, None
    now = datetime.now(UTC)
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None, None
    if row.status != "active":
        return None, None
    return Principal(row.pid, row.kind, row.name, row.id, row.holding_account, row.cash_account), row.expires_at


async def list_keys(conn: AsyncConnection, participant_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text("""SELECT id, prefix, label, created_at, expires_at, revoked_at FROM api_keys
                WHERE participant_id = :p ORDER BY id"""), {"p": participant_id})
    return [dict(r._mapping) for r in rows]


async def revoke_key(conn: AsyncConnection, participant_id: int, key_id: int) -> bool:
    res = await conn.execute(
        text("""UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
                WHERE id = :k AND participant_id = :p"""), {"k": key_id, "p": participant_id})
    forget_key(key_id)
    return res.rowcount == 1
