"""Cash in fen: deposits and withdrawals recorded by an operator from bank transfer confirmations.

Cash enters from the `settlement` system account (the exchange's settlement bank, which may go negative:
its balance is minus the cash held for participants) and leaves back to it.
"""

from __future__ import annotations

from typing import Any

from exchange.core.errors import DomainError
from exchange.core.principal import Principal
from exchange.core.refusal_text import OVERSIGHT
from exchange.core.runtime import Runtime
from exchange.core.units import CNY_DECIMALS, to_base
from exchange.registry import participants
from exchange.registry.models import CashMovement
from exchange.registry.transfers import movement_of
from ledger import commands as c


async def record(rt: Runtime, who: Principal, client_id: str, *, direction: str, participant_id: int,
                 amount: str, bank_reference: str, note: str | None) -> CashMovement:
    async with rt.read() as conn:
        account = (await participants.find(conn, participant_id)).cash_account
    if account is None:
        raise DomainError("no_account", f"participant {participant_id} has no cash account")
    fen = to_base(amount, CNY_DECIMALS, field="amount")
    settlement = rt.system["settlement"]
    debit, credit = (settlement, account) if direction == "deposit" else (account, settlement)
    meta: dict[str, Any] = {"direction": direction, "participant": participant_id, "bank_reference": bank_reference,
                            "recorded_by": who.actor}
    if note:
        meta["note"] = note
    # Operators record deposits and withdrawals: oversight, told the account and its figures (in CNY).
    entry = await rt.submit(c.Request(who.actor, c.Transfer(debit, credit, "CNY", fen), client_id, meta),
                            own=OVERSIGHT)
    return CashMovement(movement_of(entry, CNY_DECIMALS), direction, participant_id, bank_reference)
