from __future__ import annotations

from typing import Any

from litestar import Controller, post

from api.deps import IdempotencyKey, client_id
from api.schemas.registry import CashIn
from exchange import cash
from exchange.keys import Principal
from exchange.runtime import Runtime


class CashController(Controller):
    path = "/v1/cash"
    tags = ["cash"]

    @post("/deposits", operation_id="recordDeposit", summary="Record a confirmed bank deposit (operator)")
    async def deposit(self, rt: Runtime, principal: Principal, data: CashIn,
                      idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
        return await cash.record(rt, principal, client_id(idempotency_key, data.client_id), direction="deposit",
                                 participant_id=data.participant_id, amount=data.amount,
                                 bank_reference=data.bank_reference, note=data.note)

    @post("/withdrawals", operation_id="recordWithdrawal", summary="Record a withdrawal paid out (operator)")
    async def withdraw(self, rt: Runtime, principal: Principal, data: CashIn,
                       idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
        return await cash.record(rt, principal, client_id(idempotency_key, data.client_id), direction="withdrawal",
                                 participant_id=data.participant_id, amount=data.amount,
                                 bank_reference=data.bank_reference, note=data.note)
