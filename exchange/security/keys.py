"""API keys: tokens shown once, stored as SHA-256 digests, looked up by a public prefix; their lineage and
the in-process cache of verified keys. The use cases: enrollment in exchange/security/enrollment.py, minting
and revocation in exchange/security/credentials.py.

Lineage: every key is a root — made by enrollment (exchange/security/enrollment.py), `envx admin create-key`
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

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.principal import Principal
from exchange.core.secrets import Credentials, KeyCache
from exchange.security import repository as repo
from exchange.security.models import KeyRow

TOKEN_PREFIX = "envx"


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
class IssuedKey:
    """A key with its token: shown only to whoever made the key, at once or on a retry."""

    key: KeyRow
    token: str

    @classmethod
    def of(cls, creds: Credentials, key: KeyRow) -> IssuedKey:
        return cls(key, token_of(creds, key.prefix))

    @property
    def id(self) -> int:
        return self.key.id


async def create_key(conn: AsyncConnection, creds: Credentials, participant_id: int, label: str, *,
                     created_by: str, expires_at: datetime | None = None, parent_key_id: int | None = None,
                     client_id: str | None = None, fingerprint: bytes | None = None) -> IssuedKey:
    """Insert a key; returns it with its token (shown once). The caller checked the rules (who may mint,
    the parent's state and expiry); the lineage trigger checks them again."""
    prefix = secrets.token_hex(6)
    key = await repo.insert_key(conn, participant_id=participant_id, prefix=prefix,
                                secret_hash=digest(creds.api_secret(prefix)), label=label, expires_at=expires_at,
                                parent_key_id=parent_key_id, created_by=created_by, client_id=client_id,
                                fingerprint=fingerprint)
    return IssuedKey.of(creds, key)


async def reproducible(conn: AsyncConnection, creds: Credentials, key: KeyRow) -> bool:
    """Whether this process derives the key's secret (false after the credential key was replaced)."""
    stored = await repo.secret_hash(conn, key.id)
    return stored is not None and hmac.compare_digest(stored, digest(creds.api_secret(key.prefix)))


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
    holder = await repo.key_holder(conn, prefix)
    if holder is None:
        return None, None
    if not hmac.compare_digest(holder.secret_hash, digest(secret)):
        return None, None
    now = datetime.now(UTC)
    if holder.revoked_at is not None or (holder.expires_at is not None and holder.expires_at <= now):
        return None, None
    if holder.participant_status != "active":
        return None, None
    return holder.principal, holder.expires_at
