"""Participants' Ed25519 keys for signed instructions (not the log's checkpoint key: exchange/verifiable/signing.py)."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from exchange.core.errors import DomainError, NotFound
from exchange.core.runtime import Runtime

_COLUMNS = "id, participant_id, public_key, label, created_at, created_by, revoked_at, revoked_by"


def _view(row: Any) -> dict[str, Any]:
    m = dict(row._mapping)
    m["public_key"] = base64.b64encode(bytes(m["public_key"])).decode()
    return m


async def register(rt: Runtime, actor: str, participant_id: int, public_key: bytes, label: str) -> dict[str, Any]:
    try:
        async with rt.tx() as conn:
            row = (await conn.execute(
                text(f"""INSERT INTO participant_signing_keys (participant_id, public_key, label, created_by)
                         VALUES (:p, :k, :l, :a) RETURNING {_COLUMNS}"""),
                {"p": participant_id, "k": public_key, "l": label, "a": actor})).one()
    except IntegrityError:
        raise DomainError("signing_key_exists", "this public key is already registered (and not revoked)") from None
    return _view(row)


async def listing(rt: Runtime, participant_id: int) -> list[dict[str, Any]]:
    async with rt.read() as conn:
        rows = await conn.execute(
            text(f"SELECT {_COLUMNS} FROM participant_signing_keys WHERE participant_id = :p ORDER BY id"),
            {"p": participant_id})
        return [_view(r) for r in rows]


async def revoke(rt: Runtime, actor: str, participant_id: int, key_id: int) -> dict[str, Any]:
    # Verification reads the key from the database on every signed request: revocation works at once.
    async with rt.tx() as conn:
        row = (await conn.execute(
            text(f"""UPDATE participant_signing_keys SET revoked_at = coalesce(revoked_at, now()),
                         revoked_by = coalesce(revoked_by, :a)
                     WHERE id = :k AND participant_id = :p RETURNING {_COLUMNS}"""),
            {"a": actor, "k": key_id, "p": participant_id})).first()
    if row is None:
        raise NotFound("signing key", key_id)
    return _view(row)


async def set_policy(rt: Runtime, participant_id: int, require: bool) -> dict[str, Any]:
    async with rt.tx() as conn:
        if require:
            live = (await conn.execute(
                text("SELECT 1 FROM participant_signing_keys WHERE participant_id = :p AND revoked_at IS NULL"),
                {"p": participant_id})).first()
            if live is None:  # it would lock the participant out of every mutation
                raise DomainError("no_signing_key", f"participant {participant_id} has no signing key to sign with")
        row = (await conn.execute(
            text("UPDATE participants SET require_signatures = :r WHERE id = :p RETURNING id, require_signatures"),
            {"r": require, "p": participant_id})).first()
    if row is None:
        raise NotFound("participant", participant_id)
    return {"participant_id": row.id, "require_signatures": row.require_signatures}


async def get_policy(rt: Runtime, participant_id: int) -> dict[str, Any]:
    async with rt.read() as conn:
        row = (await conn.execute(text("SELECT id, require_signatures FROM participants WHERE id = :p"),
                                  {"p": participant_id})).first()
    if row is None:
        raise NotFound("participant", participant_id)
    return {"participant_id": row.id, "require_signatures": row.require_signatures}
