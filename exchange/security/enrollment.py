"""Enrollment codes exchanged for a participant's first API key.

A participant's first key comes from an **enrollment code** in two halves: with maker-checker on, the first
half is shown only to the operator who proposed the admission (or the new code) in the 202 answer, the
second only to the operator who approved it, in the approval's answer; the participant receives one from
each and exchanges both, once, at `POST /v1/enrollments`. Only SHA-256 digests of the halves are stored;
each half is derived from the credential key and the code's public handle (exchange/security/keys.py), so a
retry of the proposal or approval by the same operator shows the same half again, and nobody else ever sees
it. Codes expire (`ENVX_ENROLLMENT_CODE_TTL_HOURS` after the second half), are single use, are cancelled by a
newer code for the same participant and by its suspension, and cannot be used while it is suspended.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Forbidden, Invalid, NotFound
from exchange.core.idempotency import fingerprint
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.secrets import Credentials
from exchange.core.units import iso
from exchange.security import keys
from exchange.security import repository as repo
from exchange.security.keys import IssuedKey
from exchange.security.models import EnrollmentCode, KeyRow

HALF_PREFIX = "envxe"
FIRST_INSTRUCTIONS = ("give this first half to the participant yourself; the approving operator gets the "
                      "second half; the participant sends both to POST /v1/enrollments")
SECOND_INSTRUCTIONS = ("give this second half to the participant yourself; the proposing operator has the "
                       "first; the participant sends both to POST /v1/enrollments")


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


def _derivable(c: Credentials, code: EnrollmentCode, n: int) -> bool:
    """Whether this process derives half `n` of the code (false after the credential key was replaced)."""
    stored = code.first_hash if n == 1 else code.second_hash
    return stored is not None and hmac.compare_digest(stored, keys.digest(c.enrollment_secret(code.handle, n)))


@dataclass(frozen=True, slots=True)
class FirstHalf:
    """For the proposer only (the caller guarantees it); `first_half` None: shown once, not derivable here."""

    code_id: int
    handle: str
    first_half: str | None


@dataclass(frozen=True, slots=True)
class SecondHalf:
    """The completed code as `to` may see it: the second half only to its holder (and with maker-checker off,
    the first half too); `second_half` None for the holder: shown once, not derivable here."""

    code_id: int
    handle: str
    expires_at: datetime | None
    holder: bool
    four_eyes: bool
    second_half: str | None = None
    first_half: str | None = None


@dataclass(frozen=True, slots=True)
class Enrolled:
    participant_id: int
    key: IssuedKey


# --- enrollment codes: opened with the first half, completed with the second ---------------------------


async def open_code(conn: AsyncConnection, c: Credentials, *, created_by: str, client_id: str, four_eyes: bool,
                    operator_action_id: int | None = None, participant_id: int | None = None) -> EnrollmentCode:
    """The code's row with its first half's digest (idempotent by (created_by, client_id))."""
    handle = secrets.token_hex(8)
    return await repo.open_code(conn, handle=handle, participant_id=participant_id,
                                operator_action_id=operator_action_id, four_eyes=four_eyes, created_by=created_by,
                                client_id=client_id, first_hash=keys.digest(c.enrollment_secret(handle, 1)))


def first_half_answer(c: Credentials, code: EnrollmentCode) -> FirstHalf:
    """For the proposer only (the caller guarantees it)."""
    return FirstHalf(code.id, code.handle, half(c, code.handle, 1) if _derivable(c, code, 1) else None)


async def code_of_action(conn: AsyncConnection, action_id: int) -> EnrollmentCode:
    code = await repo.code_of_action(conn, action_id)
    assert code is not None, f"operator action {action_id} enrolls, and its code was opened with the proposal"
    return code


async def complete_code(conn: AsyncConnection, rt: Runtime, code_id: int, participant_id: int,
                        second_by: str) -> SecondHalf:
    """Issue the second half (to `second_by`), cancelling any older open code of the participant."""
    c = creds(rt)
    code = await repo.lock_code(conn, code_id)
    if code.completed_at is None:
        if code.cancelled_at is not None:
            raise DomainError("enrollment_code_cancelled", f"this enrollment code was cancelled ({code.cancel_reason})")
        if code.four_eyes and second_by == code.created_by:
            raise Forbidden("split knowledge: the second half never goes to the operator who holds the first")
        status = await repo.participant_status(conn, participant_id)
        if status is None:
            raise NotFound("participant", participant_id)
        if status != "active":
            raise DomainError("participant_suspended", f"participant {participant_id} is suspended: no enrollment "
                                                       "code is issued for it")
        await repo.cancel_open_codes(conn, participant_id, code_id, f"superseded by enrollment code {code_id}")
        code = await repo.complete_code(conn, code_id, participant_id, keys.digest(c.enrollment_secret(code.handle, 2)),
                                        second_by, rt.settings.enrollment_code_ttl_hours * 3600)
    return second_half_answer(c, code, second_by)


def second_half_answer(c: Credentials, code: EnrollmentCode, who: str) -> SecondHalf:
    if code.second_by != who:  # the second half goes to its holder, nobody else
        return SecondHalf(code.id, code.handle, code.expires_at, holder=False, four_eyes=code.four_eyes)
    return SecondHalf(code.id, code.handle, code.expires_at, holder=True, four_eyes=code.four_eyes,
                      second_half=half(c, code.handle, 2) if _derivable(c, code, 2) else None,
                      # maker-checker off: one operator holds both halves
                      first_half=None if code.four_eyes else half(c, code.handle, 1))


async def issue_directly(rt: Runtime, who: Principal, operation: str, client_id: str,
                         participant_id: int) -> SecondHalf:
    """Maker-checker off (closed test benches): one operator gets both halves at once."""
    c = creds(rt)
    async with rt.tx() as conn:
        code = await open_code(conn, c, created_by=who.actor, client_id=f"direct:{operation}:{client_id}",
                               four_eyes=False, participant_id=participant_id)
        if code.participant_id != participant_id:
            raise DomainError("idempotency_conflict", "this client id was already used for a different request")
        return await complete_code(conn, rt, code.id, participant_id, who.actor)


async def list_codes(rt: Runtime, participant_id: int) -> list[EnrollmentCode]:
    async with rt.read() as conn:
        return await repo.codes_of(conn, participant_id)


# --- enrollment: both halves for the participant's own first key -------------------------------------------

_INVALID = ("invalid_enrollment_code", "this is not a valid enrollment code: send both halves you were given "
                                       "(one from each operator)")


async def enroll(rt: Runtime, client_id: str, first_half: str, second_half: str, *, label: str,
                 expires_in_days: int | None) -> Enrolled:
    """Exchange a complete code for the participant's own API key (shown once). A wrong or missing half is
    refused without saying which; only someone holding both is told that a code is used, expired or
    cancelled."""
    c = creds(rt)
    first, second = _parse_half(first_half), _parse_half(second_half)
    if first is None or second is None:
        raise Invalid(*_INVALID)
    halves = {n: (handle, secret) for n, handle, secret in (first, second)}
    if set(halves) != {1, 2} or halves[1][0] != halves[2][0]:
        raise Invalid(*_INVALID)
    handle = halves[1][0]
    fp = fingerprint({"label": label, "expires_in_days": expires_in_days})
    async with rt.tx() as conn:
        code = await repo.lock_code_by_handle(conn, handle)
        if code is None or code.second_hash is None or code.participant_id is None:
            raise Invalid(*_INVALID)
        first_ok = hmac.compare_digest(code.first_hash, keys.digest(halves[1][1]))
        second_ok = hmac.compare_digest(code.second_hash, keys.digest(halves[2][1]))
        if not (first_ok & second_ok):
            raise Invalid(*_INVALID)
        if code.used_at is not None:
            if code.used_client_id == client_id and (code.used_fingerprint or b"") == fp and code.key_id is not None:
                key = await repo.get_key(conn, code.key_id)
                assert key is not None
                return await _enrolled(conn, c, code.participant_id, key)  # the retry gets the original answer
            raise DomainError("enrollment_code_used", "this enrollment code was used already; ask the registry "
                                                      "for a new one (two operators issue it)")
        if code.cancelled_at is not None:
            raise DomainError("enrollment_code_cancelled", f"this enrollment code was cancelled ({code.cancel_reason})")
        now = datetime.now(UTC)
        assert code.expires_at is not None  # completed: it has a second half, so an expiry
        if code.expires_at <= now:
            raise DomainError("enrollment_code_expired", f"this enrollment code expired at {iso(code.expires_at)}; "
                                                         "ask the registry for a new one (two operators issue it)")
        if await repo.participant_status(conn, code.participant_id) != "active":
            raise DomainError("participant_suspended", "this participant is suspended and cannot enroll")
        expires = now + timedelta(days=expires_in_days) if expires_in_days else None
        made = await keys.create_key(conn, c, code.participant_id, label, created_by=f"enrollment:{code.id}",
                                     expires_at=expires)
        await repo.mark_code_used(conn, code.id, client_id, fp, made.id)
        return await _enrolled(conn, c, code.participant_id, made.key)


async def _enrolled(conn: AsyncConnection, c: Credentials, participant_id: int, key: KeyRow) -> Enrolled:
    if not await keys.reproducible(conn, c, key):
        raise DomainError("secret_not_reproducible", "this key's token was shown once and cannot be shown again "
                                                     "here; ask the registry for a new enrollment code")
    return Enrolled(participant_id, IssuedKey.of(c, key))
