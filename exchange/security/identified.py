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
"""

from __future__ import annotations

from datetime import datetime, time

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, NotFound
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.registry import participants
from exchange.registry.models import Participant
from exchange.security import audit
from exchange.security import repository as repo
from pledges.valuation import SHANGHAI

OPERATION = "identifier_mismatch"


def _day_start_us(at: datetime) -> int:
    start = datetime.combine(at.astimezone(SHANGHAI).date(), time(0), SHANGHAI)
    return int(start.timestamp()) * 1_000_000


async def party(rt: Runtime, conn: AsyncConnection, who: Principal, participant_id: int, *,
                kinds: frozenset[str], identifier: str | None, operation: str, path: str) -> Participant:
    """participants.party with `identified`, counted and limited per caller and day (module docstring)."""
    if who.kind in participants.SEES_ALL:  # oversight sees the directory: nothing to guess
        return await participants.party(conn, who, participant_id, kinds=kinds, identifier=identifier,
                                        identified=True)
    limit = rt.settings.identifier_mismatches_per_day
    since = _day_start_us(datetime.now(SHANGHAI))
    if await repo.audit_count_since(conn, OPERATION, who.actor, since) >= limit:
        raise DomainError("identifier_attempts_exceeded", f"{limit} requests of yours today named a participant "
                          "by an id and identifier that did not match: participants named by identifier are "
                          "refused to you until the end of the day (Asia/Shanghai)")
    try:
        return await participants.party(conn, who, participant_id, kinds=kinds, identifier=identifier,
                                        identified=True)
    except NotFound:
        async with rt.tx() as log:
            await audit.append(log, audit.AuditEvent(
                operation=OPERATION, method="POST", path=path, status=404, outcome="refused", actor=who.actor,
                participant_kind=who.kind, api_key_id=who.key_id,
                detail={"operation": operation, "participant_id": participant_id}))
        raise
