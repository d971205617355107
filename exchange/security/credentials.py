"""Credentials of participants, the use cases: further API keys minted by a participant's own key, revocation
of a key and everything minted under it, the listing of keys. A participant's first key comes from an
enrollment code (exchange/security/enrollment.py).

Nobody mints a key that acts as someone else: keys are minted by their own participant only, never outlive
the key that minted them, and revoking a key revokes everything minted under it (exchange/security/keys.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Forbidden, NotFound, Refusal
from exchange.core.idempotency import fingerprint
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.security import keys
from exchange.security import repository as repo
from exchange.security.enrollment import creds
from exchange.security.keys import IssuedKey
from exchange.security.models import KeyRow


@dataclass(frozen=True, slots=True)
class Revoked:
    id: int
    revoked_keys: list[int]  # the key and everything minted under it


async def _current(conn: AsyncConnection, who: Principal) -> KeyRow:
    """The caller's key and participant as the database has them now (not as cached): locked FOR SHARE, so a
    concurrent revocation or suspension either comes first (and we refuse) or waits for us."""
    status = await repo.participant_status(conn, who.participant_id)
    key = await repo.get_key(conn, who.key_id, lock=True)
    if status != "active" or key is None or not key.live(datetime.now(UTC)):
        raise DomainError("unauthenticated", "this key was revoked or has expired, or its participant is "
                                             "suspended", 401)
    return key


async def assert_current(conn: AsyncConnection, who: Principal) -> None:
    await _current(conn, who)


async def mint_key(rt: Runtime, who: Principal, participant_id: int, client_id: str, *, label: str,
                   expires_in_days: int | None) -> IssuedKey:
    """A new key for the caller's own participant, minted by (and never outliving) the calling key."""
    if who.participant_id != participant_id:
        raise Forbidden("keys are minted by their own participant only; a participant without a working key gets "
                        "a new enrollment code (POST /v1/participants/{id}/enrollment-codes, two operators)")
    c = creds(rt)
    fp = fingerprint({"label": label, "expires_in_days": expires_in_days})
    try:
        async with rt.tx() as conn:
            parent = await _current(conn, who)
            earlier = await repo.minted_by(conn, parent.id, client_id)
            if earlier is not None:
                key, stored = earlier
                if stored != fp:
                    raise DomainError("idempotency_conflict", "this client id was already used for a different request")
                if not await keys.reproducible(conn, c, key):
                    raise DomainError("secret_not_reproducible", "this key's token was shown once and cannot be "
                                                                 "shown again here; revoke it and mint another")
                return IssuedKey.of(c, key)
            # Each key has its own rate limit: unlimited keys would be an unlimited rate (red team round 4).
            most = rt.settings.max_api_keys_per_participant
            if await repo.live_keys_locked(conn, participant_id) >= most:
                raise DomainError(Refusal.KEY_LIMIT, f"participant {participant_id} has {most} working API keys "
                                  "already; revoke one first")
            now = datetime.now(UTC)
            expires = now + timedelta(days=expires_in_days) if expires_in_days else None
            if parent.expires_at is not None and (expires is None or expires > parent.expires_at):
                expires = parent.expires_at  # never outlives the key that minted it
            return await keys.create_key(conn, c, participant_id, label, created_by=f"key:{parent.id}",
                                         expires_at=expires, parent_key_id=parent.id, client_id=client_id,
                                         fingerprint=fp)
    except IntegrityError:  # a concurrent retry with the same client id inserted first
        async with rt.read() as conn:
            again = await repo.minted_by(conn, who.key_id, client_id)
        if again is None:
            raise
        return await mint_key(rt, who, participant_id, client_id, label=label, expires_in_days=expires_in_days)


async def revoke_key(rt: Runtime, who: Principal, participant_id: int, key_id: int) -> Revoked:
    """Revoke a key and every key minted under it, at once (this process's cache forgets them all)."""
    if who.kind != "operator" and who.participant_id != participant_id:
        raise Forbidden("you may only revoke your own keys")
    async with rt.tx() as conn:
        key = await repo.get_key(conn, key_id)
        if key is None or key.participant_id != participant_id:
            raise NotFound("key", key_id)
        tree = await repo.revoke_tree(conn, key_id)
        rt.key_cache.forget(tree)
    rt.key_cache.forget(tree)  # again after commit: a request in between may have verified one anew
    return Revoked(key_id, sorted(tree))


async def list_keys(rt: Runtime, who: Principal, participant_id: int) -> list[KeyRow]:
    if who.kind not in ("operator", "auditor") and who.participant_id != participant_id:
        raise Forbidden("you may only see your own keys")
    async with rt.read() as conn:
        return await repo.keys_of(conn, participant_id)
