"""Naming a participant by id *and* registered identifier (a pledgor, a frozen holder, a restoration
order's payer) without turning the answer into an oracle for the identifier.

participants.party answers one and the same 404 for an unknown id and a wrong identifier. That alone
lets a caller guess a person's identity document number (region + birth date + sequence + check digit:
a known birth date leaves under a thousand guesses). So every failed identified lookup by a caller who
does not see the directory is a row in the security audit chain (operation `identifier_mismatch`, with
the operation and the participant id named, never the identifier tried), and once a caller has
ENVX_IDENTIFIER_MISMATCHES_PER_DAY of them in the registry's day (Asia/Shanghai), every further
identified lookup of that caller is refused for the rest of the day -- right identifier or wrong, so the
refusal tells nothing either (409 `identifier_attempts_exceeded`).

The limit is exact under concurrency: counting the day's misses, matching the identifier and recording a
miss happen in one transaction under a transaction-scoped advisory lock per caller (red team round 5, F2:
150 parallel guesses got 36 answers while each request counted before any of them had missed). Only then
does the use case run; a miss it finds on its own (a participant of another kind, suspended) is recorded
after it as before -- by then the identifier was known to match, so that answer tells nothing about it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, time
from typing import TypeVar

from exchange.core.errors import DomainError
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.registry import participants
from exchange.security import audit
from exchange.security import repository as repo
from pledges.valuation import SHANGHAI

OPERATION = "identifier_mismatch"
T = TypeVar("T")


def _day_start_us(at: datetime) -> int:
    start = datetime.combine(at.astimezone(SHANGHAI).date(), time(0), SHANGHAI)
    return int(start.timestamp()) * 1_000_000


def _miss(who: Principal, operation: str, path: str, participant_id: int) -> audit.AuditEvent:
    return audit.AuditEvent(operation=OPERATION, method="POST", path=path, status=404, outcome="refused",
                            actor=who.actor, participant_kind=who.kind, api_key_id=who.key_id,
                            detail={"operation": operation, "participant_id": participant_id})


async def guarded(rt: Runtime, who: Principal, operation: str, path: str, call: Callable[[], Awaitable[T]], *,
                  named: tuple[int, str | None]) -> T:
    """Run `call` (a use case naming participant `named[0]` by identifier `named[1]`), counted and limited
    per caller and day (module docstring). Oversight sees the directory and is told precisely why
    (participants.party)."""
    if who.kind in participants.SEES_ALL:
        return await call()
    limit = rt.settings.identifier_mismatches_per_day
    participant_id, identifier = named
    async with rt.tx() as conn:  # count, match and record a miss as one step per caller
        await repo.lock_identified(conn, who.actor)
        misses = await repo.audit_count_since(conn, OPERATION, who.actor, _day_start_us(datetime.now(SHANGHAI)))
        if misses >= limit:
            raise DomainError("identifier_attempts_exceeded", f"{limit} requests of yours today named a "
                              "participant by an id and identifier that did not match: participants named by "
                              "identifier are refused to you until the end of the day (Asia/Shanghai)")
        # Naming oneself tells nothing one does not know: the use case refuses it with its own reason.
        named_so = participant_id == who.participant_id or \
            await participants.identified_as(conn, participant_id, identifier)
        if not named_so:
            await audit.append(conn, _miss(who, operation, path, participant_id))
    if not named_so:
        raise participants.Unidentified("participant", participant_id)
    try:
        return await call()
    except participants.Unidentified as exc:
        async with rt.tx() as conn:
            await audit.append(conn, _miss(who, operation, path, exc.participant_id))
        raise
