"""Credentials of participants, the use cases: enrollment codes exchanged for a first API key, further keys
minted by a participant's own key, revocation of a key and everything minted under it.

Nobody mints a key that acts as someone else. A participant's first key comes from an **enrollment code**
in two halves: with maker-checker on, the first half is shown only to the operator who proposed the
admission (or the new code) in the 202 answer, the second only to the operator who approved it, in the
approval's answer; the participant receives one from each and exchanges both, once, at
`POST /v1/enrollments`. Only SHA-256 digests of the halves are stored; each half is derived from the
credential key and the code's public handle (exchange/security/keys.py), so a retry of the proposal or approval by
the same operator shows the same half again, and nobody else ever sees it. Codes expire
(`ENVX_ENROLLMENT_CODE_TTL_HOURS` after the second half), are single use, are cancelled by a newer code
for the same participant and by its suspension, and cannot be used while it is suspended.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Forbidden, Invalid, NotFound
from exchange.core.idempotency import fingerprint
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.secrets import Credentials
from exchange.core.units import iso
from exchange.security import keys
from exchange.security.keys import KeyRow

HALF_PREFIX = "envxe"
_CODE_COLUMNS = ("id, handle, participant_id, operator_action_id, four_eyes, created_by, client_id, first_hash, "
                 "second_hash, second_by, created_at, completed_at, expires_at, used_at, used_client_id, "
                 "used_fingerprint, key_id, cancelled_at, cancel_reason")


def creds(rt: Runtime) -> Credentials:
    if rt.credentials is None:
        raise DomainError("read_only", "this process mints no credentials (a read replica)", 503)
    return rt.credentials


def half(c: Credentials, handle: str, n: int) -> str:
    return f"{HALF_PREFIX}{n}_{handle}_{c.enrollment_secret(handle, n)}"


def _parse_half(value: str) -> tuple[int, str, str] | None:
    parts = value.split("_")
    if len(parts) != 3 or parts[0] not in (f"{HALF_PREFIX}1", f"{HALF_PREFIX}2") or not parts[1] or not parts[2]:
        return None
    return int(parts[0][-1]), parts[1], parts[2]


def code_status(r: Any, now: datetime) -> str:
    if r.used_at is not None:
        return "used"
    if r.cancelled_at is not None:
        return "cancelled"
    if r.completed_at is None:
        return "awaiting_approval"
    return "expired" if r.expires_at <= now else "usable"


def code_view(r: Any) -> dict[str, Any]:
    """What oversight may see of a code: never a half, never a digest."""
    return {"id": r.id, "handle": r.handle, "participant_id": r.participant_id,
            "operator_action_id": r.operator_action_id, "four_eyes": r.four_eyes, "first_half_to": r.created_by,
            "second_half_to": r.second_by, "created_at": r.created_at, "completed_at": r.completed_at,
            "expires_at": r.expires_at, "used_at": r.used_at, "key_id": r.key_id, "cancelled_at": r.cancelled_at,
            "cancel_reason": r.cancel_reason, "status": code_status(r, datetime.now(UTC))}


# --- enrollment codes: opened with the first half, completed with the second ---------------------------


async def open_code(conn: AsyncConnection, c: Credentials, *, created_by: str, client_id: str, four_eyes: bool,
                    operator_action_id: int | None = None, participant_id: int | None = None) -> Any:
    """The code's row with its first half's digest (idempotent by (created_by, client_id))."""
    handle = secrets.token_hex(8)
    await conn.execute(
        text("""INSERT INTO enrollment_codes (handle, participant_id, operator_action_id, four_eyes, created_by,
                                              client_id, first_hash)
                VALUES (:h, :p, :a, :fe, :by, :cid, :d) ON CONFLICT (created_by, client_id) DO NOTHING"""),
        {"h": handle, "p": participant_id, "a": operator_action_id, "fe": four_eyes, "by": created_by,
         "cid": client_id, "d": keys.digest(c.enrollment_secret(handle, 1))})
    return (await conn.execute(text(f"SELECT {_CODE_COLUMNS} FROM enrollment_codes "
                                    "WHERE created_by = :by AND client_id = :cid"),
                               {"by": created_by, "cid": client_id})).one()


def first_half_answer(c: Credentials, row: Any) -> dict[str, Any]:
    """For the proposer only (the caller guarantees it)."""
    out: dict[str, Any] = {"code_id": row.id, "handle": row.handle}
    if hmac.compare_digest(bytes(row.first_hash), keys.digest(c.enrollment_secret(row.handle, 1))):
        out["first_half"] = half(c, row.handle, 1)
    else:  # the credential key was replaced since: the half cannot be shown again
        out.update(first_half=None, note="this half was shown once and cannot be derived here; reject the "
                                         "proposal and propose again")
    out["instructions"] = ("give this first half to the participant yourself; the approving operator gets the "
                           "second half; the participant sends both to POST /v1/enrollments")
    return out


async def code_of_action(conn: AsyncConnection, action_id: int, *, lock: bool = False) -> Any:
    return (await conn.execute(text(f"SELECT {_CODE_COLUMNS} FROM enrollment_codes WHERE operator_action_id = :a"
                                    + (" FOR UPDATE" if lock else "")), {"a": action_id})).first()


async def complete_code(conn: AsyncConnection, rt: Runtime, code_id: int, participant_id: int,
                        second_by: str) -> dict[str, Any]:
    """Issue the second half (to `second_by`), cancelling any older open code of the participant."""
    c = creds(rt)
    row = (await conn.execute(text(f"SELECT {_CODE_COLUMNS} FROM enrollment_codes WHERE id = :i FOR UPDATE"),
                              {"i": code_id})).one()
    if row.completed_at is None:
        if row.cancelled_at is not None:
            raise DomainError("enrollment_code_cancelled", f"this enrollment code was cancelled ({row.cancel_reason})")
        if row.four_eyes and second_by == row.created_by:
            raise Forbidden("split knowledge: the second half never goes to the operator who holds the first")
        status = (await conn.execute(text("SELECT status FROM participants WHERE id = :p FOR SHARE"),
                                     {"p": participant_id})).scalar()
        if status is None:
            raise NotFound("participant", participant_id)
        if status != "active":
            raise DomainError("participant_suspended", f"participant {participant_id} is suspended: no enrollment "
                                                       "code is issued for it")
        await conn.execute(
            text("""UPDATE enrollment_codes SET cancelled_at = now(), cancel_reason = :why
                    WHERE participant_id = :p AND id <> :i AND completed_at IS NOT NULL AND used_at IS NULL
                      AND cancelled_at IS NULL"""),
            {"p": participant_id, "i": code_id, "why": f"superseded by enrollment code {code_id}"})
        row = (await conn.execute(
            text(f"""UPDATE enrollment_codes SET participant_id = :p, second_hash = :d, second_by = :by,
                         completed_at = now(), expires_at = now() + make_interval(secs => :ttl)
                     WHERE id = :i RETURNING {_CODE_COLUMNS}"""),
            {"p": participant_id, "d": keys.digest(c.enrollment_secret(row.handle, 2)), "by": second_by,
             "ttl": rt.settings.enrollment_code_ttl_hours * 3600, "i": code_id})).one()
    return second_half_answer(c, row, second_by)


def second_half_answer(c: Credentials, row: Any, who: str) -> dict[str, Any]:
    if row.second_by != who:  # the second half goes to its holder, nobody else
        return {"code_id": row.id, "handle": row.handle, "expires_at": row.expires_at}
    out: dict[str, Any] = {"code_id": row.id, "handle": row.handle, "expires_at": row.expires_at}
    if hmac.compare_digest(bytes(row.second_hash), keys.digest(c.enrollment_secret(row.handle, 2))):
        out["second_half"] = half(c, row.handle, 2)
    else:
        out.update(second_half=None, note="this half was shown once and cannot be derived here")
    if not row.four_eyes:  # maker-checker off: one operator holds both halves
        out["first_half"] = half(c, row.handle, 1)
    else:
        out["instructions"] = ("give this second half to the participant yourself; the proposing operator has the "
                               "first; the participant sends both to POST /v1/enrollments")
    return out


async def issue_directly(rt: Runtime, who: Principal, operation: str, client_id: str,
                         participant_id: int) -> dict[str, Any]:
    """Maker-checker off (closed test benches): one operator gets both halves at once."""
    c = creds(rt)
    async with rt.tx() as conn:
        row = await open_code(conn, c, created_by=who.actor, client_id=f"direct:{operation}:{client_id}",
                              four_eyes=False, participant_id=participant_id)
        if row.participant_id != participant_id:
            raise DomainError("idempotency_conflict", "this client id was already used for a different request")
        return await complete_code(conn, rt, row.id, participant_id, who.actor)


async def list_codes(rt: Runtime, participant_id: int) -> list[dict[str, Any]]:
    async with rt.read() as conn:
        rows = await conn.execute(text(f"SELECT {_CODE_COLUMNS} FROM enrollment_codes WHERE participant_id = :p "
                                       "ORDER BY id"), {"p": participant_id})
        return [code_view(r) for r in rows]


# --- enrollment: both halves for the participant's own first key -------------------------------------------

_INVALID = ("invalid_enrollment_code", "this is not a valid enrollment code: send both halves you were given "
                                       "(one from each operator)")


async def enroll(rt: Runtime, client_id: str, first_half: str, second_half: str, *, label: str,
                 expires_in_days: int | None) -> dict[str, Any]:
    """Exchange a complete code for the participant's own API key (shown once). A wrong or missing half is
    refused without saying which; only someone holding both is told that a code is used, expired or
    cancelled."""
    c = creds(rt)
    parsed = [_parse_half(first_half), _parse_half(second_half)]
    if None in parsed:
        raise Invalid(*_INVALID)
    halves = {n: (handle, secret) for n, handle, secret in parsed}  # type: ignore[misc]
    if set(halves) != {1, 2} or halves[1][0] != halves[2][0]:
        raise Invalid(*_INVALID)
    handle = halves[1][0]
    fp = fingerprint({"label": label, "expires_in_days": expires_in_days})
    async with rt.tx() as conn:
        row = (await conn.execute(text(f"SELECT {_CODE_COLUMNS} FROM enrollment_codes WHERE handle = :h FOR UPDATE"),
                                  {"h": handle})).first()
        if row is None or row.second_hash is None:
            raise Invalid(*_INVALID)
        first_ok = hmac.compare_digest(bytes(row.first_hash), keys.digest(halves[1][1]))
        second_ok = hmac.compare_digest(bytes(row.second_hash), keys.digest(halves[2][1]))
        if not (first_ok & second_ok):
            raise Invalid(*_INVALID)
        if row.used_at is not None:
            if row.used_client_id == client_id and bytes(row.used_fingerprint or b"") == fp:
                key = await keys.get_key(conn, row.key_id)
                assert key is not None
                return await _enrolled(conn, c, row.participant_id, key)  # the retry gets the original answer
            raise DomainError("enrollment_code_used", "this enrollment code was used already; ask the registry "
                                                      "for a new one (two operators issue it)")
        if row.cancelled_at is not None:
            raise DomainError("enrollment_code_cancelled", f"this enrollment code was cancelled ({row.cancel_reason})")
        now = datetime.now(UTC)
        if row.expires_at <= now:
            raise DomainError("enrollment_code_expired", f"this enrollment code expired at {iso(row.expires_at)}; ask "
                                                         "the registry for a new one (two operators issue it)")
        status = (await conn.execute(text("SELECT status FROM participants WHERE id = :p FOR SHARE"),
                                     {"p": row.participant_id})).scalar()
        if status != "active":
            raise DomainError("participant_suspended", "this participant is suspended and cannot enroll")
        expires = now + timedelta(days=expires_in_days) if expires_in_days else None
        made = await keys.create_key(conn, c, row.participant_id, label, created_by=f"enrollment:{row.id}",
                                     expires_at=expires)
        await conn.execute(
            text("""UPDATE enrollment_codes SET used_at = now(), used_client_id = :cid, used_fingerprint = :fp,
                        key_id = :k WHERE id = :i"""), {"cid": client_id, "fp": fp, "k": made["id"], "i": row.id})
        key = await keys.get_key(conn, made["id"])
        assert key is not None
        return await _enrolled(conn, c, row.participant_id, key)


async def _enrolled(conn: AsyncConnection, c: Credentials, participant_id: int, key: KeyRow) -> dict[str, Any]:
    if not await keys.reproducible(conn, c, key):
        raise DomainError("secret_not_reproducible", "this key's token was shown once and cannot be shown again "
                                                     "here; ask the registry for a new enrollment code")
    return {"participant_id": participant_id, "key": key.shown_once(c)}


# --- further keys: minted by the participant's own key ------------------------------------------------------


async def _current(conn: AsyncConnection, who: Principal) -> KeyRow:
    """The caller's key and participant as the database has them now (not as cached): locked FOR SHARE, so a
    concurrent revocation or suspension either comes first (and we refuse) or waits for us."""
    status = (await conn.execute(text("SELECT status FROM participants WHERE id = :p FOR SHARE"),
                                 {"p": who.participant_id})).scalar()
    key = await keys.get_key(conn, who.key_id, lock=True)
    if status != "active" or key is None or not key.live(datetime.now(UTC)):
        raise DomainError("unauthenticated", "this key was revoked or has expired, or its participant is "
                                             "suspended", 401)
    return key


async def assert_current(conn: AsyncConnection, who: Principal) -> None:
    await _current(conn, who)


async def mint_key(rt: Runtime, who: Principal, participant_id: int, client_id: str, *, label: str,
                   expires_in_days: int | None) -> dict[str, Any]:
    """A new key for the caller's own participant, minted by (and never outliving) the calling key."""
    if who.participant_id != participant_id:
        raise Forbidden("keys are minted by their own participant only; a participant without a working key gets "
                        "a new enrollment code (POST /v1/participants/{id}/enrollment-codes, two operators)")
    c = creds(rt)
    fp = fingerprint({"label": label, "expires_in_days": expires_in_days})
    try:
        async with rt.tx() as conn:
            parent = await _current(conn, who)
            earlier = await keys.minted_by(conn, parent.id, client_id)
            if earlier is not None:
                key, stored = earlier
                if stored != fp:
                    raise DomainError("idempotency_conflict", "this client id was already used for a different request")
                if not await keys.reproducible(conn, c, key):
                    raise DomainError("secret_not_reproducible", "this key's token was shown once and cannot be "
                                                                 "shown again here; revoke it and mint another")
                return key.shown_once(c)
            now = datetime.now(UTC)
            expires = now + timedelta(days=expires_in_days) if expires_in_days else None
            if parent.expires_at is not None and (expires is None or expires > parent.expires_at):
                expires = parent.expires_at  # never outlives the key that minted it
            return await keys.create_key(conn, c, participant_id, label, created_by=f"key:{parent.id}",
                                         expires_at=expires, parent_key_id=parent.id, client_id=client_id,
                                         fingerprint=fp)
    except IntegrityError:  # a concurrent retry with the same client id inserted first
        async with rt.read() as conn:
            earlier = await keys.minted_by(conn, who.key_id, client_id)
        if earlier is None:
            raise
        return await mint_key(rt, who, participant_id, client_id, label=label, expires_in_days=expires_in_days)


async def revoke_key(rt: Runtime, who: Principal, participant_id: int, key_id: int) -> dict[str, Any]:
    """Revoke a key and every key minted under it, at once (this process's cache forgets them all)."""
    if who.kind != "operator" and who.participant_id != participant_id:
        raise Forbidden("you may only revoke your own keys")
    async with rt.tx() as conn:
        key = await keys.get_key(conn, key_id)
        if key is None or key.participant_id != participant_id:
            raise NotFound("key", key_id)
        tree = await keys.revoke_tree(conn, key_id)
        rt.key_cache.forget(tree)
    rt.key_cache.forget(tree)  # again after commit: a request in between may have verified one anew
    return {"id": key_id, "revoked": True, "revoked_keys": sorted(tree)}


async def list_keys(rt: Runtime, who: Principal, participant_id: int) -> list[dict[str, Any]]:
    if who.kind not in ("operator", "auditor") and who.participant_id != participant_id:
        raise Forbidden("you may only see your own keys")
    async with rt.read() as conn:
        return await keys.list_keys(conn, participant_id)
