"""The ledger accounts a pledge moves units and cash between: the parties' holding and cash accounts and
the bank's pledge escrow. Each takes the caller's connection: no helper checks out a second one."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError
from exchange.core.principal import SYSTEM_ACTOR, Principal
from exchange.core.runtime import Runtime
from exchange.pledging import repository as repo
from exchange.registry import participants
from ledger import commands as c


def yours(who: Principal, *extra: int | None) -> tuple[int, ...]:
    """The accounts a ledger refusal may name to `who` (exchange/core/refusal_text.py): its own, and the escrow it
    holds as a pledgee; never the other party's."""
    return tuple(a for a in (who.cash_account, who.holding_account, *extra) if a is not None)


async def account_of(conn: AsyncConnection, rt: Runtime, participant_id: int, kind: str) -> int:
    """A participant's holding or cash account, read on the caller's connection."""
    p = await participants.find(conn, participant_id)
    acc = p.holding_account if kind == "holding" else p.cash_account
    if acc is None:
        raise DomainError("no_account", f"participant {participant_id} has no {kind} account")
    return int(acc)


async def escrow_account(conn: AsyncConnection, rt: Runtime, bank_id: int) -> int:
    """The bank's pledge escrow account, opened on first use (idempotent by its ledger client id) and
    recorded in the caller's transaction: if that rolls back, the next use replays the same opening."""
    acc = await repo.escrow_of(conn, bank_id)
    if acc is not None:
        return int(acc)
    entry = await rt.submit(c.Request(SYSTEM_ACTOR, c.OpenAccount(f"participant:{bank_id}:pledge-escrow", "escrow"),
                                      f"pledge-escrow:{bank_id}", {"bank": bank_id}))
    await repo.save_escrow(conn, bank_id, entry.body["account"])
    return int(entry.body["account"])

