"""Signing keys and signature policy, maker-checker operator actions, the audit trail."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar, cast

from litestar import Controller, get, post, put
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from api.deps import Id, IdempotencyKey, client_id
from api.encoding import Answer
from api.schemas.registry import DecisionIn
from api.schemas.security import (
    AnonymousRefusalsOut,
    AuditEventOut,
    ChainCheckOut,
    OperatorActionOut,
    SignaturePolicyIn,
    SignaturePolicyOut,
    SigningKeyIn,
    SigningKeyOut,
)
from api.security.signatures import decode_public_key, forget_policy
from exchange.core.errors import Forbidden, Invalid
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.registry import participants
from exchange.security import audit, instruction_keys, operator_actions

Limit = Annotated[int, Parameter(ge=1, le=1000)]
# A minute as Unix seconds, up to the end of 2199 (the last date an input may name); PostgreSQL's
# to_timestamp fails beyond its own range, which 2^53 - 1 seconds is far past.
Minute = Annotated[int, Parameter(ge=0, le=7_258_118_400, description="Unix seconds, 0 to 2200-01-01T00:00:00Z")]
After = Annotated[int, Parameter(ge=0, le=2**53 - 1)]
OVERSIGHT = frozenset({"operator", "auditor"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

# Documented on the endpoints that may answer with a pending proposal instead of acting.
T = TypeVar("T")
ActionStatus = Literal["pending", "approved", "executed", "rejected", "failed"]
PROPOSED = {202: ResponseSpec(data_container=OperatorActionOut, generate_examples=False,
                              description="Maker-checker: a pending operator action; a second operator approves it "
                                          "with POST /v1/operator-actions/{id}/approve")}



async def propose_or_run(rt: Runtime, principal: Principal, client_id: str, kind: str, payload: dict[str, Any],
                         run: Callable[[], Awaitable[T]]) -> T:
    """With maker-checker on (default), store a proposal and answer 202; otherwise act now (`run`). The
    handler's return type is the direct answer's (the OpenAPI document's 200/201); the 202 is declared by
    PROPOSED and sent as the Response it is."""
    if rt.settings.maker_checker:
        proposed = await operator_actions.propose(rt, principal, client_id, kind, payload)
        return cast(T, Answer(OperatorActionOut.answer(proposed), status_code=202))  # a Response: sent as is
    return await run()


def _own(principal: Principal, participant_id: int) -> None:
    """A participant's signing keys and signature policy are its own key's to set: no one else's, not an
    operator's (an operator's key for another participant, or its policy, would lock that participant out)."""
    if principal.participant_id != participant_id:
        raise Forbidden("only the participant itself manages its signing keys and signature policy")


def _own_or_oversight(principal: Principal, participant_id: int) -> None:
    if principal.kind not in OVERSIGHT and principal.participant_id != participant_id:
        raise Forbidden("you may only see your own signing keys and policy")


class SigningKeyController(Controller):
    path = "/v1/participants/{participant_id:int}"
    tags = ("security",)

    @post("/signing-keys", operation_id="registerSigningKey",
          summary="Register an Ed25519 public key for your own signed instructions")
    async def register(self, rt: Runtime, principal: Principal, participant_id: Id,
                       data: SigningKeyIn, idempotency_key: IdempotencyKey = None) -> SigningKeyOut:
        cid = client_id(idempotency_key, None)  # a retry: the stored answer (api/security/replays.py), else the
        _own(principal, participant_id)          # service's own record of it (exchange/security/instruction_keys.py)
        async with rt.read() as conn:
            await participants.find(conn, participant_id)  # 404 for none
        return SigningKeyOut.of(await instruction_keys.register(rt, principal.actor, participant_id,
                                                                decode_public_key(data.public_key), data.label, cid))

    @get("/signing-keys", operation_id="listParticipantSigningKeys", summary="Signing keys, revoked ones included")
    async def listing(self, rt: Runtime, principal: Principal, participant_id: Id) -> list[SigningKeyOut]:
        _own_or_oversight(principal, participant_id)
        async with rt.read() as conn:
            await participants.find(conn, participant_id)  # 404 for none
        return [SigningKeyOut.of(k) for k in await instruction_keys.listing(rt, participant_id)]

    @post("/signing-keys/{key_id:int}/revoke", operation_id="revokeSigningKey", status_code=200,
          summary="Revoke a signing key; signatures by it are refused at once")
    async def revoke(self, rt: Runtime, principal: Principal, participant_id: Id, key_id: Id) -> SigningKeyOut:
        _own(principal, participant_id)
        return SigningKeyOut.of(await instruction_keys.revoke(rt, principal.actor, participant_id, key_id))

    @put("/signature-policy", operation_id="setSignaturePolicy",
         summary="Require (or stop requiring) signed instructions for your own mutations")
    async def set_policy(self, rt: Runtime, state: State, principal: Principal, participant_id: Id,
                         data: SignaturePolicyIn) -> SignaturePolicyOut:
        _own(principal, participant_id)
        out = await instruction_keys.set_policy(rt, participant_id, data.require_signatures)
        forget_policy(state, participant_id)
        return SignaturePolicyOut.of(out)

    @get("/signature-policy", operation_id="getSignaturePolicy", summary="Whether signatures are required")
    async def get_policy(self, rt: Runtime, principal: Principal, participant_id: Id) -> SignaturePolicyOut:
        _own_or_oversight(principal, participant_id)
        return SignaturePolicyOut.of(await instruction_keys.get_policy(rt, participant_id))


class OperatorActionController(Controller):
    path = "/v1/operator-actions"
    tags = ("operator-actions",)

    @get("/", operation_id="listOperatorActions", summary="Maker-checker proposals (operators and auditors)")
    async def listing(self, rt: Runtime, status: ActionStatus | None = None, limit: Limit = 100,
                      after: After = 0) -> list[OperatorActionOut]:
        return [OperatorActionOut.of(a) for a in await operator_actions.listing(rt, status, limit, after)]

    @get("/{action_id:int}", operation_id="getOperatorAction", summary="One proposal, its decision and result")
    async def get_one(self, rt: Runtime, action_id: Id) -> OperatorActionOut:
        return OperatorActionOut.of(await operator_actions.get(rt, action_id))

    @post("/{action_id:int}/approve", operation_id="approveOperatorAction", status_code=200,
          summary="Approve (a second operator, never the proposer): executes it once and returns the result")
    async def approve(self, rt: Runtime, principal: Principal, action_id: Id,
                      data: DecisionIn | None = None) -> OperatorActionOut:
        return OperatorActionOut.answer(
            await operator_actions.approve(rt, principal, action_id, data.note if data else None))

    @post("/{action_id:int}/reject", operation_id="rejectOperatorAction", status_code=200,
          summary="Reject a pending proposal (any operator; the proposer may withdraw their own)")
    async def reject(self, rt: Runtime, principal: Principal, action_id: Id,
                     data: DecisionIn | None = None) -> OperatorActionOut:
        rejected = await operator_actions.reject(rt, principal, action_id, data.note if data else None)
        return OperatorActionOut.of(rejected)


class AuditController(Controller):
    path = "/v1/audit"
    tags = ("audit",)

    @get("/events", operation_id="listAuditEvents",
         summary="The audit trail of administrative actions, oldest first (operators and auditors)")
    async def events(self, rt: Runtime, after: After = 0, limit: Limit = 100,
                     operation: Annotated[str | None, Parameter(max_length=64)] = None,
                     actor: Annotated[str | None, Parameter(max_length=64)] = None) -> list[AuditEventOut]:
        async with rt.read() as conn:
            found = await audit.listing(conn, after=after, limit=limit, operation=operation, actor=actor)
        return [AuditEventOut.of(r) for r in found]

    @get("/anonymous-refusals", operation_id="listAnonymousRefusals",
         summary="Refused administrative requests without a valid key, counted per client address and minute")
    async def anonymous(self, rt: Runtime, after_minute: Minute = 0,
                        limit: Limit = 100) -> list[AnonymousRefusalsOut]:
        async with rt.read() as conn:
            found = await audit.anonymous_refusals(conn, after_minute=after_minute, limit=limit)
        return [AnonymousRefusalsOut.of(r) for r in found]

    @get("/verification", operation_id="verifyAuditTrail",
         summary="Recompute the audit trail's hash chain; optionally check a head (seq, hash) you recorded")
    async def verify(self, rt: Runtime, seq: Annotated[int | None, Parameter(ge=1, le=2**53 - 1)] = None,
                     hash: Annotated[str | None, Parameter(min_length=64, max_length=64)] = None,
                     ) -> ChainCheckOut:
        if (seq is None) != (hash is None):
            raise Invalid("invalid_head", "give both seq and hash, or neither")
        if hash is not None and not _HEX64.match(hash):
            raise Invalid("invalid_head", "hash is 64 lower-case hex digits")
        async with rt.read() as conn:
            return ChainCheckOut.of(
                await audit.verify(conn, (seq, bytes.fromhex(hash)) if seq is not None and hash else None))
