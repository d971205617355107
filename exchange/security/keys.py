"""API keys: tokens shown once, stored as SHA-256 digests, looked up by a public prefix; their lineage and
the in-process cache of verified keys. The use cases (enroll, mint, revoke) are in exchange/security/credentials.py.

Lineage: every key is a root — made by enrollment (exchange/security/credentials.py), `envx admin create-key`
or the demo loader — or minted by another key of the same participant (`parent_key_id`). A minted key
never outlives its parent (its expiry is capped at the parent's) and revoking a key revokes everything
minted under it, transitively, in one transaction. The database backs both up (trigger
`api_keys_lineage`, migration 0010).

Secrets shown once are *derived*, not stored: the secret of the key with prefix P is
HMAC-SHA256(credential key, "envx-api-key/1\\n" ‖ P), so an idempotent retry shows the same token. The
database holds only SHA-256 of the secret; the credential key lives outside it (settings).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.principal import Principal
from exchange.core.secrets import Credentials, KeyCache

TOKEN_PREFIX = "envx"

_KEY_COLUMNS = "id, participant_id, prefix, label, created_at, expires_at, revoked_at, parent_key_id, created_by"







def digest(secret: str) -> bytes:
    """Secrets are 160-256 bits of keyed hash, so a plain SHA-256 suffices at rest."""
    return hashlib.sha256(secret.encode()).digest()


def token_of(creds: Credentials, prefix: str) -> str:
    return f"{TOKEN_PREFIX}_{prefix}_{creds.api_secret(prefix)}"


def parse_token(token: str) -> tuple[str, str] | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: int
    participant_id: int
    prefix: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    parent_key_id: int | None
    created_by: str

    @classmethod
    def from_row(cls, r: Any) -> KeyRow:
        return cls(r.id, r.participant_id, r.prefix, r.label, r.created_at, r.expires_at, r.revoked_at,
                   r.parent_key_id, r.created_by)

    def live(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "prefix": self.prefix, "label": self.label, "created_at": self.created_at,
                "expires_at": self.expires_at, "revoked_at": self.revoked_at, "parent_key_id": self.parent_key_id,
                "created_by": self.created_by}

    def shown_once(self, creds: Credentials) -> dict[str, Any]:
        """The answer that carries the token: only to whoever made the key, at once or on a retry."""
        return {**self.view(), "token": token_of(creds, self.prefix)}


async def create_key(conn: AsyncConnection, creds: Credentials, participant_id: int, label: str, *,
                     created_by: str, expires_at: datetime | None = None, parent_key_id: int | None = None,
                     client_id: str | None = None, fingerprint: bytes | None = None) -> dict[str, Any]:
    """Insert a key; returns it with its token (shown once). The caller checked the rules (who may mint,
    the parent's state and expiry); the lineage trigger checks them again."""
    prefix = secrets.token_hex(6)
    row = (await conn.execute(
        text(f"""INSERT INTO api_keys (participant_id, prefix, secret_hash, label, expires_at, parent_key_id,
                                       created_by, client_id, fingerprint)
                 VALUES (:p, :prefix, :h, :label, :exp, :parent, :by, :cid, :fp) RETURNING {_KEY_COLUMNS}"""),
        {"p": participant_id, "prefix": prefix, "h": digest(creds.api_secret(prefix)), "label": label,
         "exp": expires_at, "parent": parent_key_id, "by": created_by, "cid": client_id, "fp": fingerprint})).one()
    return KeyRow.from_row(row).shown_once(creds)


async def reproducible(conn: AsyncConnection, creds: Credentials, key: KeyRow) -> bool:
    """Whether this process derives the key's secret (false after the credential key was replaced)."""
    stored = (await conn.execute(text("SELECT secret_hash FROM api_keys WHERE id = :i"), {"i": key.id})).scalar()
    return stored is not None and hmac.compare_digest(bytes(stored), digest(creds.api_secret(key.prefix)))


async def get_key(conn: AsyncConnection, key_id: int, *, lock: bool = False) -> KeyRow | None:
    row = (await conn.execute(text(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = :i"
                                   + (" FOR SHARE" if lock else "")), {"i": key_id})).first()
    return KeyRow.from_row(row) if row else None


async def minted_by(conn: AsyncConnection, parent_key_id: int, client_id: str) -> tuple[KeyRow, bytes] | None:
    row = (await conn.execute(
        text(f"SELECT {_KEY_COLUMNS}, fingerprint FROM api_keys WHERE parent_key_id = :k AND client_id = :c"),
        {"k": parent_key_id, "c": client_id})).first()
    return (KeyRow.from_row(row), bytes(row.fingerprint or b"")) if row else None


async def list_keys(conn: AsyncConnection, participant_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(text(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE participant_id = :p ORDER BY id"),
                              {"p": participant_id})
    return [KeyRow.from_row(r).view() for r in rows]


async def revoke_tree(conn: AsyncConnection, root_id: int) -> list[int]:
    """Revoke a key and everything minted under it, transitively; returns every id in that tree.

    The root is locked first (a mint under it holds FOR SHARE on it and is either committed before, and
    its child is found below, or waits and then sees the root revoked). Each level is a new statement,
    hence a new snapshot under READ COMMITTED: a child committed while we waited for its parent's row
    lock is found by the next level."""
    await conn.execute(text("SELECT id FROM api_keys WHERE id = :i FOR UPDATE"), {"i": root_id})
    await conn.execute(text("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = :i"),
                       {"i": root_id})
    tree, frontier = [root_id], [root_id]
    while frontier:
        rows = await conn.execute(
            text("""UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
                    WHERE parent_key_id = ANY(:f) RETURNING id"""), {"f": frontier})
        frontier = [r.id for r in rows]
        tree += frontier
    return tree


async def authenticate(conn: AsyncConnection, cache: KeyCache, token: str) -> Principal | None:
    epoch = cache.epoch
    principal, expires_at = await _authenticate(conn, token)
    if principal is not None:
        cache.put(token, principal, expires_at, epoch)
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
    if not hmac.compare_digest(bytes(row.secret_hash), digest(secret)):
        return None, None
    now = datetime.now(UTC)
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None, None
    if row.status != "active":
        return None, None
    return Principal(row.pid, row.kind, row.name, row.id, row.holding_account, row.cash_account), row.expires_at
