from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, get, post
from litestar.params import Parameter

from api.controllers.security import PROPOSED, propose_or_run
from api.deps import Id, IdempotencyKey, client_id
from api.schemas.registry import (
    AccountOut,
    AdmittedOut,
    EnrollIn,
    EnrollmentCodeIn,
    EnrollmentIssuedOut,
    KeyIn,
    ParticipantIn,
    ParticipantOut,
    StatusChangeIn,
    StatusChangeOut,
)
from api.schemas.security import EnrolledOut, EnrollmentCodeOut, IssuedKeyOut, KeyOut, RevokedKeysOut, SecondHalfOut
from exchange.core.errors import NotFound
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.registry import instruments, participants
from exchange.registry.subjects import subject_of
from exchange.security import credentials, enrollment
from ledger import queries

Limit = Annotated[int, Parameter(ge=1, le=500)]


async def reinstated(rt: Runtime, actor: str, cid: str, participant_id: int, reason: str) -> StatusChangeOut:
    """A reinstatement at once (maker-checker off)."""
    return StatusChangeOut.of(await participants.lift_suspension(rt, actor, cid, participant_id, reason,
                                                                 approved_by=None, operator_action_id=None))
After = Annotated[int, Parameter(ge=0, le=2**53 - 1)]


class ParticipantController(Controller):
    path = "/v1/participants"
    tags = ["participants"]

    @post("/", operation_id="createParticipant", responses=PROPOSED,
          summary="Admit a participant (operator; maker-checker): opens its accounts; the 202 answer carries the "
                  "first half of its enrollment code, the approval's answer the second")
    async def create(self, rt: Runtime, principal: Principal, data: ParticipantIn,
                     idempotency_key: IdempotencyKey = None) -> AdmittedOut:  # or 202 and a proposal
        cid = client_id(idempotency_key, data.client_id)
        subject = subject_of(data.kind, data.subject, data.uscc,
                             data.id_document.model_dump() if data.id_document else None)
        payload = {"name": data.name, "kind": data.kind, **subject.payload()}

        async def direct() -> AdmittedOut:  # maker-checker off: one operator, both halves
            p = await participants.admit(rt, principal.actor, cid, name=data.name, kind=data.kind, subject=subject)
            code = await enrollment.issue_directly(rt, principal, "createParticipant", cid, p.id)
            return AdmittedOut.admitted(p, SecondHalfOut.of(code))

        return await propose_or_run(rt, principal, cid, "createParticipant", payload, direct)

    @get("/", operation_id="listParticipants", summary="Participants (operators and auditors see all)")
    async def listing(self, rt: Runtime, principal: Principal, kind: str | None = None, limit: Limit = 100,
                      after: After = 0) -> list[ParticipantOut]:
        # oversight, or the participant itself: the private record
        return [ParticipantOut.of(p, private=True) for p in await participants.directory(rt, principal, kind, limit,
                                                                                         after)]

    @get("/{participant_id:int}", operation_id="getParticipant", summary="One participant")
    async def get_one(self, rt: Runtime, principal: Principal, participant_id: Id) -> ParticipantOut:
        return ParticipantOut.of(await participants.record_of(rt, principal, participant_id), private=True)

    @post("/{participant_id:int}/suspend", operation_id="suspendParticipant", status_code=200,
          summary="Suspend a participant at once (one operator: an emergency brake); its keys stop working")
    async def suspend(self, rt: Runtime, principal: Principal, participant_id: Id, data: StatusChangeIn,
                      idempotency_key: IdempotencyKey = None) -> StatusChangeOut:
        cid = client_id(idempotency_key, data.client_id)
        return StatusChangeOut.of(await participants.suspend(rt, principal, cid, participant_id, data.reason))

    @post("/{participant_id:int}/reinstate", operation_id="reinstateParticipant", responses=PROPOSED,
          summary="Reinstate a suspended participant (operator; maker-checker: a second operator approves)")
    async def reinstate(self, rt: Runtime, principal: Principal, participant_id: Id, data: StatusChangeIn,
                        idempotency_key: IdempotencyKey = None) -> StatusChangeOut:  # or 202 and a proposal
        cid = client_id(idempotency_key, data.client_id)
        await participants.check_suspended(rt, participant_id)
        return await propose_or_run(
            rt, principal, cid, "reinstateParticipant", {"participant_id": participant_id, "reason": data.reason},
            lambda: reinstated(rt, principal.actor, cid, participant_id, data.reason))

    @post("/{participant_id:int}/enrollment-codes", operation_id="issueEnrollmentCode", responses=PROPOSED,
          summary="A new enrollment code for a participant that lost its keys (operator; maker-checker: the "
                  "proposer gets the first half, the approver the second; older unused codes are cancelled)")
    async def issue_code(self, rt: Runtime, principal: Principal, participant_id: Id, data: EnrollmentCodeIn,
                         idempotency_key: IdempotencyKey = None) -> EnrollmentIssuedOut:  # or 202 and a proposal
        cid = client_id(idempotency_key, data.client_id)
        await participants.check_active(rt, participant_id)

        async def direct() -> EnrollmentIssuedOut:
            code = await enrollment.issue_directly(rt, principal, "issueEnrollmentCode", cid, participant_id)
            return EnrollmentIssuedOut(participant_id=participant_id, enrollment=SecondHalfOut.of(code))

        return await propose_or_run(rt, principal, cid, "issueEnrollmentCode", {"participant_id": participant_id},
                                    direct)

    @get("/{participant_id:int}/enrollment-codes", operation_id="listEnrollmentCodes",
         summary="Enrollment codes of a participant and their state (never the codes themselves)")
    async def list_codes(self, rt: Runtime, participant_id: Id) -> list[EnrollmentCodeOut]:
        async with rt.read() as conn:
            await participants.find(conn, participant_id)  # 404 for none
        now = datetime.now(UTC)
        return [EnrollmentCodeOut.of(c, now) for c in await enrollment.list_codes(rt, participant_id)]

    @post("/{participant_id:int}/keys", operation_id="createKey",
          summary="Mint an API key for yourself with your key (shown once); it never outlives the key minting it")
    async def create_key(self, rt: Runtime, principal: Principal, participant_id: Id, data: KeyIn,
                         idempotency_key: IdempotencyKey = None) -> IssuedKeyOut:
        cid = client_id(idempotency_key, data.client_id)
        return IssuedKeyOut.issued(await credentials.mint_key(rt, principal, participant_id, cid, label=data.label,
                                                              expires_in_days=data.expires_in_days))

    @get("/{participant_id:int}/keys", operation_id="listKeys",
         summary="API keys and their lineage (never their secrets); yours, or anyone's for oversight")
    async def list_keys(self, rt: Runtime, principal: Principal, participant_id: Id) -> list[KeyOut]:
        return [KeyOut.of(k) for k in await credentials.list_keys(rt, principal, participant_id)]

    @post("/{participant_id:int}/keys/{key_id:int}/revoke", operation_id="revokeKey", status_code=200,
          summary="Revoke an API key and every key minted under it; they stop working at once")
    async def revoke_key(self, rt: Runtime, principal: Principal, participant_id: Id,
                         key_id: Id) -> RevokedKeysOut:
        return RevokedKeysOut.of(await credentials.revoke_key(rt, principal, participant_id, key_id))


class EnrollmentController(Controller):
    path = "/v1/enrollments"
    tags = ["participants"]

    @post("/", operation_id="enroll",
          summary="Exchange both halves of an enrollment code for your participant's first API key (no key "
                  "needed; single use)")
    async def enroll(self, rt: Runtime, data: EnrollIn, idempotency_key: IdempotencyKey = None) -> EnrolledOut:
        cid = client_id(idempotency_key, data.client_id)
        return EnrolledOut.of(await enrollment.enroll(rt, cid, data.first_half, data.second_half, label=data.label,
                                                      expires_in_days=data.expires_in_days))


class AccountController(Controller):
    path = "/v1/accounts"
    tags = ["participants"]

    @get("/{account_id:int}", operation_id="getAccount", summary="An account and its balances")
    async def get_one(self, rt: Runtime, principal: Principal, account_id: Id) -> AccountOut:
        owner = await participants.owner_of_account(rt, account_id)
        if owner is None or (principal.kind not in participants.SEES_ALL and owner != principal.participant_id):
            raise NotFound("account", account_id)  # another's account: as if there were none
        decimals = {i.code: i.decimals for i in await instruments.catalogue(rt)}
        async with rt.read() as conn:
            bals = await queries.balances(conn, [account_id])
        return AccountOut.of(account_id, owner, bals, decimals)
