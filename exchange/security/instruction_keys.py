"""Participants' Ed25519 keys for signed instructions (not the log's checkpoint key: exchange/verifiable/signing.py)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from exchange.core.errors import DomainError, NotFound
from exchange.core.runtime import Runtime
from exchange.security import repository as repo
from exchange.security.models import SignaturePolicy, SigningKey


async def register(rt: Runtime, actor: str, participant_id: int, public_key: bytes, label: str) -> SigningKey:
    try:
        async with rt.tx() as conn:
            return await repo.insert_signing_key(conn, participant_id, public_key, label, actor)
    except IntegrityError:
        raise DomainError("signing_key_exists", "this public key is already registered (and not revoked)") from None


async def listing(rt: Runtime, participant_id: int) -> list[SigningKey]:
    async with rt.read() as conn:
        return await repo.signing_keys_of(conn, participant_id)


async def revoke(rt: Runtime, actor: str, participant_id: int, key_id: int) -> SigningKey:
    # Verification reads the key from the database on every signed request: revocation works at once.
    async with rt.tx() as conn:
        key = await repo.revoke_signing_key(conn, participant_id, key_id, actor)
    if key is None:
        raise NotFound("signing key", key_id)
    return key


async def set_policy(rt: Runtime, participant_id: int, require: bool) -> SignaturePolicy:
    async with rt.tx() as conn:
        if require and not await repo.has_live_signing_key(conn, participant_id):
            # it would lock the participant out of every mutation
            raise DomainError("no_signing_key", f"participant {participant_id} has no signing key to sign with")
        policy = await repo.set_signature_policy(conn, participant_id, require)
    if policy is None:
        raise NotFound("participant", participant_id)
    return policy


async def get_policy(rt: Runtime, participant_id: int) -> SignaturePolicy:
    async with rt.read() as conn:
        policy = await repo.signature_policy(conn, participant_id)
    if policy is None:
        raise NotFound("participant", participant_id)
    return policy
