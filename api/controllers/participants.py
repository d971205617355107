from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, get, post
from litestar.params import Parameter

from api.deps import Id, IdempotencyKey, client_id
from api.schemas.registry import KeyIn, ParticipantIn
from exchange import keys, participants
from exchange.errors import Forbidden, NotFound
from exchange.keys import Principal
from exchange.runtime import Runtime
from ledger import queries

Limit = Annotated[int, Parameter(ge=1, le=500)]
After = Annotated[int, Parameter(ge=0, le=2**53 - 1)]


class ParticipantController(Controller):
    path = "/v1/participants"
    tags = ["participants"]

    @post("/", operation_id="createParticipant", summary="Admit a participant (opens its holding and cash accounts)")
    async def create(self, rt: Runtime, principal: Principal, data: ParticipantIn,
                     idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
        cid = client_id(idempotency_key, data.client_id)
        return await participants.create(rt, principal.actor, cid, name=data.name, kind=data.kind, uscc=data.uscc)

    @get("/", operation_id="listParticipants", summary="Participants (operators and auditors see all)")
    async def listing(self, rt: Runtime, principal: Principal, kind: str | None = None, limit: Limit = 100,
                      after: After = 0) -> list[dict[str, Any]]:
        return await participants.listing(rt, principal, kind, limit, after)

    @get("/{participant_id:int}", operation_id="getParticipant", summary="One participant")
    async def get_one(self, rt: Runtime, principal: Principal, participant_id: Id) -> dict[str, Any]:
        return await participants.get(rt, principal, participant_id)

    @post("/{participant_id:int}/keys", operation_id="createKey",
          summary="Create an API key (shown once); operators for anyone, others for themselves")
    async def create_key(self, rt: Runtime, principal: Principal, participant_id: Id,
                         data: KeyIn) -> dict[str, Any]:
        _own_or_operator(principal, participant_id)
        await participants.lookup(rt, participant_id)
        expires = datetime.now(UTC) + timedelta(days=data.expires_in_days) if data.expires_in_days else None
        async with rt.tx() as conn:
            return await keys.create_key(conn, participant_id, data.label, expires)

    @get("/{participant_id:int}/keys", operation_id="listKeys", summary="API keys (never their secrets)")
    async def list_keys(self, rt: Runtime, principal: Principal, participant_id: Id) -> list[dict[str, Any]]:
        _own_or_operator(principal, participant_id)
        async with rt.read() as conn:
            return await keys.list_keys(conn, participant_id)

    @post("/{participant_id:int}/keys/{key_id:int}/revoke", operation_id="revokeKey", status_code=200,
          summary="Revoke an API key; it stops working at once")
    async def revoke_key(self, rt: Runtime, principal: Principal, participant_id: Id,
                         key_id: Id) -> dict[str, Any]:
        _own_or_operator(principal, participant_id)
        async with rt.tx() as conn:
            if not await keys.revoke_key(conn, participant_id, key_id):
                raise NotFound("key", key_id)
        keys.forget_key(key_id)  # again after commit: a request in between may have cached it anew
        return {"id": key_id, "revoked": True}


class AccountController(Controller):
    path = "/v1/accounts"
    tags = ["participants"]

    @get("/{account_id:int}", operation_id="getAccount", summary="An account and its balances")
    async def get_one(self, rt: Runtime, principal: Principal, account_id: Id) -> dict[str, Any]:
        owner = await participants.owner_of_account(rt, account_id)
        if owner is None:
            raise NotFound("account", account_id)
        if principal.kind not in participants.SEES_ALL and owner != principal.participant_id:
            raise Forbidden("you may only see your own accounts")
        async with rt.read() as conn:
            bals = await queries.balances(conn, [account_id])
        return {"account": account_id, "participant_id": owner, "balances": [
            {"instrument": b["instrument"], "posted": b["posted"], "pending": b["pending_out"],
             "available": b["posted"] - b["pending_out"]} for b in bals],
            "units": "base units (fen for CNY); see the instrument's decimals"}


def _own_or_operator(principal: Principal, participant_id: int) -> None:
    if principal.kind != "operator" and principal.participant_id != participant_id:
        raise Forbidden("you may only manage your own keys")
