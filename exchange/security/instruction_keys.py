"""Participants' Ed25519 keys for signed instructions (not the log's checkpoint key: exchange/verifiable/signing.py)."""

from __future__ import annotations

import hashlib

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core import store
from exchange.core.errors import DomainError, NotFound
from exchange.core.idempotency import fingerprint
from exchange.core.runtime import Runtime
from exchange.security import repository as repo
from exchange.security.models import SignaturePolicy, SigningKey

# A registration's own record under its caller's idempotency key, in answers_by_request under a digest no HTTP
# request can have: the request's fingerprint and the key it registered.
_REGISTRATION = hashlib.sha256(b"envx signing key registration under one key\n").digest()
_MEDIA = "application/vnd.envx.signing-key-registration"


class _Lost(Exception):
    """Another registration under the same idempotency key committed first: this one is rolled back."""


async def register(rt: Runtime, actor: str, participant_id: int, public_key: bytes, label: str,
                   client_id: str) -> SigningKey:
    """Register a public key, idempotent by the caller's key: a retry -- its answer lost after the commit, or
    its bytes not the first request's, so the HTTP edge's exact replay does not answer it -- gets the key it
    registered (as it stands now); the same idempotency key for another registration is 409
    `idempotency_conflict`; the same public key under a new idempotency key, while live, 409
    `signing_key_exists`."""
    fp = fingerprint({"op": "register_signing_key", "participant": participant_id, "public_key": public_key.hex(),
                      "label": label})
    async with rt.read() as conn:
        done = await store.stored_answer(conn, actor, client_id, _REGISTRATION)
        if done is not None:
            return await _replay(conn, done.body, fp)
    try:
        async with rt.tx() as conn:
            key = await repo.insert_signing_key(conn, participant_id, public_key, label, actor)
            mine = fp + key.id.to_bytes(8, "big")
            await store.insert_answer(conn, actor, client_id, _REGISTRATION, store.Answer(201, _MEDIA, mine))
            kept = await store.stored_answer(conn, actor, client_id, _REGISTRATION)
            if kept is None or kept.body != mine:  # a twin under the same key committed first
                raise _Lost
            return key
    except (IntegrityError, _Lost):
        async with rt.read() as conn:
            done = await store.stored_answer(conn, actor, client_id, _REGISTRATION)
            if done is not None:
                return await _replay(conn, done.body, fp)
        raise DomainError("signing_key_exists", "this public key is already registered (and not revoked)") from None


async def _replay(conn: AsyncConnection, record: bytes, fp: bytes) -> SigningKey:
    if record[:32] != fp:
        raise DomainError("idempotency_conflict", "this Idempotency-Key was already used for a different request")
    key = await repo.signing_key(conn, int.from_bytes(record[32:], "big"))
    assert key is not None, "a registered signing key is never deleted"
    return key


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
