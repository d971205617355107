"""Issuing authorities: an issuer requests issuance only of the instruments it is the authority for.

A city's environment bureau does not issue another region's forest tickets nor the national allowance
(red team round 4, F3). The authority is granted per instrument by four eyes (operator action
`authoriseIssuer`, exchange/security/operator_actions.py) and is public: who may issue what is part of the
registry's rules, not a secret.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Refusal
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.registry import instruments, participants
from exchange.registry import repository as repo
from exchange.registry.models import IssuerGrant

ISSUER_KINDS = frozenset({"issuer"})


async def authorise(rt: Runtime, who: Principal, *, instrument: str, participant_id: int) -> IssuerGrant:
    """Grant (or find granted) `participant_id`'s authority over `instrument`; idempotent by the pair."""
    async with rt.tx() as conn:
        await instruments.find(conn, instrument)
        await participants.party(conn, who, participant_id, kinds=ISSUER_KINDS)  # an active issuer, else 404
        return await repo.grant_issuer(conn, instrument, participant_id, who.actor)


async def of_instrument(rt: Runtime, instrument: str) -> list[IssuerGrant]:
    async with rt.read() as conn:
        await instruments.find(conn, instrument)
        return await repo.issuers_of(conn, instrument)


async def refuse_unauthorised(conn: AsyncConnection, who: Principal, instrument: str) -> None:
    if not await repo.is_issuer_of(conn, instrument, who.participant_id):
        raise DomainError(Refusal.ISSUER_NOT_AUTHORISED, f"participant {who.participant_id} is not an issuing "
                          f"authority of {instrument}; an operator grants it (POST /v1/instruments/{instrument}/"
                          "issuers, four eyes)")
