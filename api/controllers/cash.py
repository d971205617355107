from __future__ import annotations

from litestar import Controller, post

from api.controllers.security import PROPOSED, propose_or_run
from api.deps import IdempotencyKey, client_id
from api.schemas.registry import CashIn, CashMovementOut
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.registry import cash


async def recorded(rt: Runtime, who: Principal, cid: str, direction: str, data: CashIn) -> CashMovementOut:
    """A deposit or withdrawal recorded at once (maker-checker off)."""
    return CashMovementOut.of(await cash.record(rt, who, cid, direction=direction, participant_id=data.participant_id,
                                                amount=data.amount, bank_reference=data.bank_reference,
                                                note=data.note))


class CashController(Controller):
    path = "/v1/cash"
    tags = ["cash"]

    @post("/deposits", operation_id="recordDeposit", responses=PROPOSED,
          summary="Record a confirmed bank deposit (operator; maker-checker)")
    async def deposit(self, rt: Runtime, principal: Principal, data: CashIn,
                      idempotency_key: IdempotencyKey = None) -> CashMovementOut:  # or 202 and a proposal
        cid = client_id(idempotency_key, data.client_id)
        return await propose_or_run(  # maker-checker: 202 and a pending action, unless switched off
            rt, principal, cid, "recordDeposit", data.model_dump(exclude={"client_id"}),
            lambda: recorded(rt, principal, cid, "deposit", data))

    @post("/withdrawals", operation_id="recordWithdrawal", responses=PROPOSED,
          summary="Record a withdrawal paid out (operator; maker-checker)")
    async def withdraw(self, rt: Runtime, principal: Principal, data: CashIn,
                       idempotency_key: IdempotencyKey = None) -> CashMovementOut:  # or 202 and a proposal
        cid = client_id(idempotency_key, data.client_id)
        return await propose_or_run(
            rt, principal, cid, "recordWithdrawal", data.model_dump(exclude={"client_id"}),
            lambda: recorded(rt, principal, cid, "withdrawal", data))
