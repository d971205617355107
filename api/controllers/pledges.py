"""Pledge registrations, ranked claims, valuations, webhooks (banks) and judicial freezes (courts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from litestar import Controller, Litestar, get, post, put
from litestar.params import Parameter

from api.controllers.security import PROPOSED, propose_or_run
from api.deps import Id, IdempotencyKey, client_id
from api.schemas.common import ranges
from api.schemas.courts import FreezeOut
from api.schemas.pledges import (
    AcceptSaleIn,
    ActionIn,
    AmendIn,
    ClaimAnswerOut,
    ClaimIn,
    ConfirmIn,
    DeductIn,
    DefaultIn,
    EnforceIn,
    ExpirySweepOut,
    ExtendIn,
    FreezeIn,
    HaircutIn,
    HaircutOut,
    PartialReleaseIn,
    PledgeEventOut,
    PledgeIn,
    PledgeOut,
    RenewIn,
    RevaluationIn,
    RevaluationOut,
    SaleIn,
    SaleOut,
    TopUpIn,
    WebhookIn,
    WebhookOut,
    WebhookStatusOut,
)
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.units import CNY_DECIMALS, to_base
from exchange.courts import freezes as freezing
from exchange.pledging import (
    claims,
    enforcement,
    exchange_sale,
    filing,
    realisation,
    valuation,
    views,
    webhook_endpoint,
    worker,
)
from exchange.security import identified

Limit = Annotated[int, Parameter(ge=1, le=500)]
After = Annotated[int, Parameter(ge=0, le=2**53 - 1)]


@asynccontextmanager
async def pledge_worker(app: Litestar) -> AsyncIterator[None]:
    """Lifespan: webhook delivery and expiry sweeps, after the runtime is up, stopped before it goes."""
    running = worker.PledgeWorker(app.state.rt, sweeps=[freezing.expire_due])
    await running.start()
    try:
        yield
    finally:
        await running.stop()


def _action_id(idempotency_key: str | None, data: ActionIn | None) -> str:
    """The client id of an action whose body is optional."""
    return client_id(idempotency_key, data.client_id if data else None)


def _refs(items: list[Any]) -> list[tuple[str, str]]:
    return [(r.source, r.reference) for r in items]


class PledgeController(Controller):
    path = "/v1/pledges"
    tags = ("pledges",)

    @post("/", operation_id="filePledge", summary="File a pledge registration (bank); the pledgor confirms it")
    async def file(self, rt: Runtime, principal: Principal, data: PledgeIn,
                   idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await identified.guarded(rt, principal, "filePledge", "/v1/pledges", lambda: filing.file(
            rt, principal, client_id(idempotency_key, data.client_id), pledgor_id=data.pledgor_id,
            pledgor_identifier=data.pledgor_identifier, instrument=data.instrument, quantity=data.quantity,
            serials=ranges(data.serials),
            loan_contract=data.loan_contract, secured_amount=data.secured_amount, term_start=data.term_start,
            term_end=data.term_end, grace_days=data.grace_days, references=_refs(data.references),
            haircut_bps=data.haircut_bps, warning_bps=data.warning_bps, margin_call_bps=data.margin_call_bps,
            liquidation_bps=data.liquidation_bps, transfer_on_default=data.transfer_on_default,
            secured_scope=data.secured_scope.model_dump() if data.secured_scope else None),
            named=(data.pledgor_id, data.pledgor_identifier))
        return PledgeOut.of(answer)

    @get("/", operation_id="listPledges", summary="Pledges you hold, gave or have a claim on (operators: all)")
    async def listing(self, rt: Runtime, principal: Principal, status: str | None = None,
                      role: str | None = None, limit: Limit = 100, after: After = 0) -> list[PledgeOut]:
        answers = await views.listing(rt, principal, status=status, role=role, after=after, limit=limit)
        return [PledgeOut.of(x) for x in answers]

    @get("/events", operation_id="pledgeEventStream",
         summary="Event stream of the pledges you may see, after an event id (poll with ?after=)")
    async def stream(self, rt: Runtime, principal: Principal, after: After = 0, limit: Limit = 100,
                     types: str | None = None) -> list[PledgeEventOut]:
        answers = await views.event_stream(rt, principal, after=after, limit=limit,
                                           types=types.split(",") if types else None)
        return [PledgeEventOut.of(x) for x in answers]

    @get("/{pledge_id:int}", operation_id="getPledge", summary="One registration with its locked serial blocks")
    async def get_one(self, rt: Runtime, principal: Principal, pledge_id: Id) -> PledgeOut:
        answer = await views.get(rt, principal, pledge_id)
        return PledgeOut.of(answer)

    @get("/{pledge_id:int}/events", operation_id="listPledgeEvents", summary="A registration's history")
    async def events(self, rt: Runtime, principal: Principal, pledge_id: Id) -> list[PledgeEventOut]:
        answers = await views.history(rt, principal, pledge_id)
        return [PledgeEventOut.of(x) for x in answers]

    @post("/{pledge_id:int}/confirm", operation_id="confirmPledge", status_code=200,
          summary="Confirm (pledgor): locks the units; the registration takes effect and gets its number")
    async def confirm(self, rt: Runtime, principal: Principal, pledge_id: Id, data: ConfirmIn | None = None,
                      idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await filing.confirm(rt, principal, _action_id(idempotency_key, data), pledge_id,
                                      version=None if data is None else data.version)
        return PledgeOut.of(answer)

    @post("/{pledge_id:int}/decline", operation_id="declinePledge", status_code=200, summary="Decline (pledgor)")
    async def decline(self, rt: Runtime, principal: Principal, pledge_id: Id, data: ActionIn | None = None,
                      idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await filing.decline(rt, principal, _action_id(idempotency_key, data), pledge_id,
                                      data.note if data else None)
        return PledgeOut.of(answer)

    @post("/{pledge_id:int}/withdraw", operation_id="withdrawPledge", status_code=200,
          summary="Withdraw an unconfirmed filing (bank)")
    async def withdraw(self, rt: Runtime, principal: Principal, pledge_id: Id, data: ActionIn | None = None,
                       idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await filing.withdraw(rt, principal, _action_id(idempotency_key, data), pledge_id,
                                       data.note if data else None)
        return PledgeOut.of(answer)

    @post("/{pledge_id:int}/amend", operation_id="amendPledge", status_code=200,
          summary="Amend terms (bank): secured amount down, haircut, thresholds, references")
    async def amend(self, rt: Runtime, principal: Principal, pledge_id: Id, data: AmendIn,
                    idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await filing.amend(
            rt, principal, client_id(idempotency_key, data.client_id), pledge_id,
            secured_amount=data.secured_amount, loan_contract=data.loan_contract, haircut_bps=data.haircut_bps,
            warning_bps=data.warning_bps, margin_call_bps=data.margin_call_bps, liquidation_bps=data.liquidation_bps,
            transfer_on_default=data.transfer_on_default, add_references=_refs(data.add_references), note=data.note)
        return PledgeOut.of(answer)

    @post("/{pledge_id:int}/extend", operation_id="extendPledge", status_code=200,
          summary="Extend the term (bank): the lock gets the new expiry, same serials, same priority")
    async def extend(self, rt: Runtime, principal: Principal, pledge_id: Id, data: ExtendIn,
                     idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await filing.extend(rt, principal, client_id(idempotency_key, data.client_id), pledge_id,
                                     term_end=data.term_end, grace_days=data.grace_days, note=data.note)
        return PledgeOut.of(answer)

    @post("/{pledge_id:int}/top-up", operation_id="topUpPledge", status_code=200,
          summary="Add units to the lock (pledgor), e.g. to cure a margin call")
    async def top_up(self, rt: Runtime, principal: Principal, pledge_id: Id, data: TopUpIn,
                     idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await filing.top_up(rt, principal, client_id(idempotency_key, data.client_id), pledge_id,
                                     quantity=data.quantity, serials=ranges(data.serials))
        return PledgeOut.of(answer)

    @post("/{pledge_id:int}/partial-release", operation_id="partiallyReleasePledge", status_code=200,
          summary="Release part of the lock (bank): named serials or the highest ones")
    async def partial_release(self, rt: Runtime, principal: Principal, pledge_id: Id, data: PartialReleaseIn,
                              idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await filing.partial_release(rt, principal, client_id(idempotency_key, data.client_id), pledge_id,
                                              quantity=data.quantity, serials=ranges(data.serials), note=data.note)
        return PledgeOut.of(answer)

    @post("/{pledge_id:int}/release", operation_id="releasePledge", status_code=200,
          summary="Release (bank): unlocks the units, or promotes the first junior claim into the lock")
    async def release(self, rt: Runtime, principal: Principal, pledge_id: Id, data: ActionIn | None = None,
                      idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await filing.release(rt, principal, _action_id(idempotency_key, data), pledge_id,
                                      data.note if data else None)
        return PledgeOut.of(answer)

    @post("/{pledge_id:int}/enforcement", operation_id="enforcePledge", status_code=200,
          summary="Enforce on default (bank): transfer to the bank, propose a sale, or sell on the exchange")
    async def enforce(self, rt: Runtime, principal: Principal, pledge_id: Id, data: EnforceIn,
                      idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await enforcement.enforce(rt, principal, client_id(idempotency_key, data.client_id), pledge_id,
                                      method=data.method, reason=data.reason, outstanding=data.outstanding,
                                      price=data.price, buyer_id=data.buyer_id,
                                      claim=data.claim.amounts() if data.claim else None,
                                      default_notice=data.default_notice.model_dump() if data.default_notice
                                      else None)
        return PledgeOut.of(answer)

    @post("/{pledge_id:int}/default", operation_id="declarePledgeDefault", status_code=200,
          summary="Declare the secured loan in default (bank), with its notice's number and date; the pledgor "
                  "is told")
    async def declare_default(self, rt: Runtime, principal: Principal, pledge_id: Id, data: DefaultIn,
                              idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await enforcement.declare_default(rt, principal, client_id(idempotency_key, data.client_id), pledge_id,
                                              **data.notice())  # type: ignore[arg-type]
        return PledgeOut.of(answer)

    @post("/{pledge_id:int}/enforcement-consent", operation_id="consentPledgeEnforcement", status_code=200,
          summary="Consent to enforcement of the declared default before its notice period has run (pledgor)")
    async def consent(self, rt: Runtime, principal: Principal, pledge_id: Id, data: ActionIn | None = None,
                      idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await realisation.consent(rt, principal, _action_id(idempotency_key, data), pledge_id,
                                           data.note if data else None)
        return PledgeOut.of(answer)

    @post("/{pledge_id:int}/enforcement/sales", operation_id="startPledgeSale", status_code=201,
          summary="List or auction the escrowed lot on the exchange on the bank's behalf (enforcement sale)")
    async def start_sale(self, rt: Runtime, principal: Principal, pledge_id: Id, data: SaleIn,
                         idempotency_key: IdempotencyKey = None) -> SaleOut:
        answer = await exchange_sale.start_sale(rt, principal, client_id(idempotency_key, data.client_id), pledge_id,
                                         market_id=data.market_id, quantity=data.quantity, price=data.price,
                                         auction=data.auction.terms() if data.auction else None)
        return SaleOut.of(answer)

    @post("/{pledge_id:int}/enforcement/accept", operation_id="acceptPledgeSale", status_code=200,
          summary="Accept the bank's sale (buyer): units against cash in one step, proceeds by priority")
    async def accept(self, rt: Runtime, principal: Principal, pledge_id: Id, data: AcceptSaleIn,
                     idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await enforcement.accept_sale(rt, principal, client_id(idempotency_key, data.client_id), pledge_id,
                                          price=data.price)
        return PledgeOut.of(answer)

    @post("/{pledge_id:int}/enforcement/cancel", operation_id="cancelPledgeSale", status_code=200,
          summary="Withdraw the enforcement (bank): a sale not accepted, or an exchange sale before anything "
                  "was sold (the lot is locked again)")
    async def cancel(self, rt: Runtime, principal: Principal, pledge_id: Id, data: ActionIn | None = None,
                     idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await enforcement.cancel_sale(rt, principal, _action_id(idempotency_key, data),
                                          pledge_id, data.note if data else None)
        return PledgeOut.of(answer)

    @post("/{pledge_id:int}/claims", operation_id="filePledgeClaim",
          summary="File a ranked (junior) claim on a pledged lot (bank); counts once the pledgor confirms")
    async def file_claim(self, rt: Runtime, principal: Principal, pledge_id: Id, data: ClaimIn,
                         idempotency_key: IdempotencyKey = None) -> ClaimAnswerOut:
        answer = await claims.file_claim(rt, principal, client_id(idempotency_key, data.client_id), pledge_id,
                                         loan_contract=data.loan_contract, amount=data.amount,
                                         term_end=data.term_end, reference=data.reference)
        return ClaimAnswerOut.of(answer)

    @post("/claims/{claim_id:int}/confirm", operation_id="confirmPledgeClaim", status_code=200,
          summary="Confirm a ranked claim (pledgor): it is registered and gets its place in the order")
    async def confirm_claim(self, rt: Runtime, principal: Principal, claim_id: Id, data: ActionIn | None = None,
                            idempotency_key: IdempotencyKey = None) -> PledgeOut:
        answer = await claims.confirm_claim(rt, principal, _action_id(idempotency_key, data),
                                            claim_id)
        return PledgeOut.of(answer)

    @post("/claims/{claim_id:int}/release", operation_id="releasePledgeClaim", status_code=200,
          summary="Release a ranked claim (claimant)")
    async def release_claim(self, rt: Runtime, principal: Principal, claim_id: Id, data: ActionIn | None = None,
                            idempotency_key: IdempotencyKey = None) -> ClaimAnswerOut:
        answer = await claims.release_claim(rt, principal, _action_id(idempotency_key, data),
                                            claim_id)
        return ClaimAnswerOut.of(answer)

    @post("/revaluations", operation_id="revaluePledges", status_code=200, responses=PROPOSED,
          summary="Mark an instrument and revalue every live pledge of it (operator; maker-checker)")
    async def revalue(self, rt: Runtime, principal: Principal, data: RevaluationIn,
                      idempotency_key: IdempotencyKey = None) -> RevaluationOut:  # or 202 and a proposal
        cid = client_id(idempotency_key, data.client_id)

        async def run() -> RevaluationOut:
            answer = await valuation.revalue(rt, data.instrument, to_base(data.price, CNY_DECIMALS, field="price"),
                                             data.as_of, actor=principal.actor, client_id=cid,
                                             cure_deadline=data.cure_deadline, reason=data.reason)
            return RevaluationOut.of(answer)

        return await propose_or_run(rt, principal, cid, "revaluePledges",
                                    data.model_dump(mode="json", exclude={"client_id"}), run)

    @post("/expiry-sweeps", operation_id="sweepPledgeExpiry", status_code=200,
          summary="Expire registrations and freezes past their term now (operator; also runs by itself)")
    async def sweep(self, rt: Runtime) -> ExpirySweepOut:
        return ExpirySweepOut(pledges_expired=await worker.expire_due(rt),
                              freezes_expired=await freezing.expire_due(rt))

    @put("/webhook", operation_id="setPledgeWebhook",
         summary="Set your webhook URL (bank); returns the signing secret, shown only here")
    async def set_webhook(self, rt: Runtime, principal: Principal, data: WebhookIn,
                          idempotency_key: IdempotencyKey = None) -> WebhookOut:
        cid = client_id(idempotency_key, data.client_id)
        answer = await webhook_endpoint.set_webhook(rt, principal, cid, url=data.url)
        return WebhookOut.of(answer)

    @get("/webhook", operation_id="getPledgeWebhook", summary="Your webhook URL and recent deliveries (bank)")
    async def get_webhook(self, rt: Runtime, principal: Principal) -> WebhookStatusOut:
        answer = await webhook_endpoint.webhook_status(rt, principal)
        return WebhookStatusOut.of(answer)

    @put("/haircuts/{instrument:str}", operation_id="setPledgeHaircut", responses=PROPOSED,
         summary="Default valuation haircut of an instrument (operator; maker-checker)")
    async def set_haircut(self, rt: Runtime, principal: Principal, instrument: str,
                          data: HaircutIn, idempotency_key: IdempotencyKey = None) -> HaircutOut:
        async def run() -> HaircutOut:
            await valuation.set_haircut(rt, principal, instrument, data.haircut_bps)
            return HaircutOut(instrument=instrument, haircut_bps=data.haircut_bps)

        cid = client_id(idempotency_key, data.client_id)
        return await propose_or_run(rt, principal, cid, "setPledgeHaircut",
                                    {"instrument": instrument, "haircut_bps": data.haircut_bps}, run)


class FreezeController(Controller):
    path = "/v1/freezes"
    tags = ("freezes",)

    @post("/", operation_id="createFreeze", summary="Freeze a quantity or named blocks of a holder's units (court)")
    async def create(self, rt: Runtime, principal: Principal, data: FreezeIn,
                     idempotency_key: IdempotencyKey = None) -> FreezeOut:
        answer = await identified.guarded(rt, principal, "createFreeze", "/v1/freezes", lambda: freezing.create(
            rt, principal, client_id(idempotency_key, data.client_id), holder_id=data.holder_id,
            holder_identifier=data.holder_identifier, instrument=data.instrument, quantity=data.quantity,
            serials=ranges(data.serials),
            case_number=data.case_number, notice_number=data.notice_number, term_start=data.term_start,
            term_end=data.term_end, deduct_to_id=data.deduct_to_id), named=(data.holder_id, data.holder_identifier))
        return FreezeOut.of(answer)

    @get("/", operation_id="listFreezes", summary="Freezes: a court its own, a holder those on its units")
    async def listing(self, rt: Runtime, principal: Principal, status: str | None = None, limit: Limit = 100,
                      after: After = 0) -> list[FreezeOut]:
        return [FreezeOut.of(v) for v in await freezing.listing(rt, principal, status=status, after=after,
                                                                limit=limit)]

    @get("/{freeze_id:int}", operation_id="getFreeze", summary="One freeze with its frozen blocks and history")
    async def get_one(self, rt: Runtime, principal: Principal, freeze_id: Id) -> FreezeOut:
        answer = await freezing.get(rt, principal, freeze_id)
        return FreezeOut.of(answer)

    @post("/{freeze_id:int}/renewals", operation_id="renewFreeze", status_code=200,
          summary="续冻 before expiry: the same units stay frozen without a gap")
    async def renew(self, rt: Runtime, principal: Principal, freeze_id: Id, data: RenewIn,
                    idempotency_key: IdempotencyKey = None) -> FreezeOut:
        answer = await freezing.renew(rt, principal, client_id(idempotency_key, data.client_id), freeze_id,
                                                 term_end=data.term_end, notice_number=data.notice_number)
        return FreezeOut.of(answer)

    @post("/{freeze_id:int}/deduction", operation_id="deductFreeze", status_code=200,
          summary="扣划: move frozen units to the court's (or the named) account")
    async def deduct(self, rt: Runtime, principal: Principal, freeze_id: Id, data: DeductIn,
                     idempotency_key: IdempotencyKey = None) -> FreezeOut:
        answer = await freezing.deduct(rt, principal, client_id(idempotency_key, data.client_id),
                                                  freeze_id, quantity=data.quantity,
                                                  to_participant=data.to_participant)
        return FreezeOut.of(answer)

    @post("/{freeze_id:int}/unfreeze", operation_id="unfreeze", status_code=200, summary="解冻 (court)")
    async def unfreeze(self, rt: Runtime, principal: Principal, freeze_id: Id, data: ActionIn | None = None,
                       idempotency_key: IdempotencyKey = None) -> FreezeOut:
        cid = client_id(idempotency_key, data.client_id if data else None)
        answer = await freezing.unfreeze(rt, principal, cid, freeze_id, data.note if data else None)
        return FreezeOut.of(answer)
