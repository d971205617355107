"""Instruments, issuance (maker-checker), transfers, retirements and holdings."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import Parameter

from api.controllers.security import PROPOSED, propose_or_run
from api.deps import Id, IdempotencyKey, OptId, client_id
from api.schemas.common import ranges
from api.schemas.registry import (
    ApprovalIn,
    DecisionIn,
    ExpirySweepOut,
    HoldingsOut,
    InstrumentIn,
    InstrumentOut,
    IssuanceIn,
    IssuanceOut,
    IssuerGrantIn,
    IssuerGrantOut,
    IssuingAuthorityOut,
    RetirementIn,
    RetirementOut,
    TransferIn,
    TransferOut,
)
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.courts import restoration
from exchange.registry import expiry, instruments, issuance, issuers, transfers

Limit = Annotated[int, Parameter(ge=1, le=1000)]
After = Annotated[int, Parameter(ge=0, le=2**53 - 1)]


async def defined(rt: Runtime, actor: str, cid: str, data: InstrumentIn) -> InstrumentOut:
    """An instrument defined at once (maker-checker off)."""
    return InstrumentOut.of(await instruments.define_instrument(
        rt, actor, cid, code=data.code, name=data.name, kind=data.kind, decimals=data.decimals, unit=data.unit,
        attributes=data.attributes))


class InstrumentController(Controller):
    path = "/v1/instruments"
    tags = ["instruments"]

    @post("/", operation_id="defineInstrument", responses=PROPOSED,
          summary="Define an instrument (operator; maker-checker)")
    async def define(self, rt: Runtime, principal: Principal, data: InstrumentIn,
                     idempotency_key: IdempotencyKey = None) -> InstrumentOut:  # or 202 and a proposal
        cid = client_id(idempotency_key, data.client_id)
        return await propose_or_run(  # maker-checker: 202 and a pending action, unless switched off
            rt, principal, cid, "defineInstrument", data.model_dump(exclude={"client_id"}),
            lambda: defined(rt, principal.actor, cid, data))

    @get("/", operation_id="listInstruments", summary="All instruments")
    async def listing(self, rt: Runtime, kind: str | None = None) -> list[InstrumentOut]:
        return [InstrumentOut.of(i) for i in await instruments.catalogue(rt, kind)]

    @post("/expiry-sweeps", operation_id="sweepEmissionRightExpiry", status_code=200,
          summary="Expire what is left of emission-right batches past their term now (operator; also daily)",
          description="Unencumbered units of a batch whose term (valid_from..valid_until) has ended are retired "
                      "with purpose `expiry` and listed as expired in holdings; so are T+1-locked units (the "
                      "lock is lifted for them). Pledged, frozen or order-held units are reported as `blocked` "
                      "and expire at the first sweep after the encumbrance ends. Idempotent.")
    async def sweep_expiry(self, rt: Runtime) -> ExpirySweepOut:
        return ExpirySweepOut.of(await expiry.expire_due(rt))

    @post("/{code:str}/issuers", operation_id="authoriseIssuer", responses=PROPOSED,
          summary="Make an issuer an issuing authority of this instrument (operator; maker-checker)",
          description="Only an instrument's issuing authorities request its issuance (403 issuer_not_authorised "
                      "for any other issuer). Granting an authority twice is the first grant.")
    async def authorise_issuer(self, rt: Runtime, principal: Principal, code: str, data: IssuerGrantIn,
                               idempotency_key: IdempotencyKey = None) -> IssuerGrantOut:  # or 202 and a proposal
        cid = client_id(idempotency_key, data.client_id)

        async def grant() -> IssuerGrantOut:
            return IssuerGrantOut.of(await issuers.authorise(rt, principal, instrument=code,
                                                             participant_id=data.participant_id))
        return await propose_or_run(rt, principal, cid, "authoriseIssuer",
                                    {"instrument": code, "participant_id": data.participant_id}, grant)

    @get("/{code:str}/issuers", operation_id="listInstrumentIssuers",
         summary="The instrument's issuing authorities (public)")
    async def list_issuers(self, rt: Runtime, code: str) -> list[IssuingAuthorityOut]:
        return [IssuingAuthorityOut.of(g) for g in await issuers.of_instrument(rt, code)]

    @get("/{code:str}", operation_id="getInstrument", summary="One instrument")
    async def get_one(self, rt: Runtime, code: str) -> InstrumentOut:
        return InstrumentOut.of(await instruments.instrument(rt, code))


class IssuanceController(Controller):
    path = "/v1/issuances"
    tags = ["issuance"]

    @post("/", operation_id="requestIssuance", summary="Request issuance of a batch (issuer; maker)")
    async def request(self, rt: Runtime, principal: Principal, data: IssuanceIn,
                      idempotency_key: IdempotencyKey = None) -> IssuanceOut:
        cid = client_id(idempotency_key, data.client_id)
        serials = data.origin_serials
        return IssuanceOut.of(await issuance.request(
            rt, principal, cid, instrument=data.instrument, holder_id=data.holder_id, quantity=data.quantity,
            attributes=data.attributes, origin_registry=data.origin_registry,
            origin_serials=(serials.start, serials.end) if serials else None, origin_reference=data.origin_reference))

    @get("/", operation_id="listIssuances", summary="Issuance requests")
    async def listing(self, rt: Runtime, principal: Principal, status: str | None = None, limit: Limit = 100,
                      after: After = 0) -> list[IssuanceOut]:
        return [IssuanceOut.of(r) for r in await issuance.listing(rt, principal, status, limit, after)]

    @get("/{request_id:int}", operation_id="getIssuance", summary="One issuance request")
    async def get_one(self, rt: Runtime, principal: Principal, request_id: Id) -> IssuanceOut:
        return IssuanceOut.of(await issuance.get(rt, principal, request_id))

    @post("/{request_id:int}/approve", operation_id="approveIssuance", status_code=200,
          summary="Approve (operator; checker): creates the serial range and credits the holder. Idempotent.",
          description="A request flagged as a possible double issuance at approval (the same parcel, or "
                      "project of the same kind, over an overlapping period in a request approved already or "
                      "made before it) is refused 409 `flagged_double_issuance` with the `flags`, unless the "
                      "body says `override_flags: true` and a `reason`.")
    async def approve(self, rt: Runtime, principal: Principal, request_id: Id,
                      data: ApprovalIn | None = None) -> IssuanceOut:
        data = data or ApprovalIn()
        return IssuanceOut.of(await issuance.approve(rt, principal, request_id, data.note,
                                                     issuance.override_reason(data.override_flags, data.reason)))

    @post("/{request_id:int}/reject", operation_id="rejectIssuance", status_code=200,
          summary="Reject (operator; checker)")
    async def reject(self, rt: Runtime, principal: Principal, request_id: Id,
                     data: DecisionIn | None = None) -> IssuanceOut:
        return IssuanceOut.of(await issuance.reject(rt, principal, request_id, data.note if data else None))


class TransferController(Controller):
    path = "/v1/transfers"
    tags = ["registry"]

    @post("/", operation_id="createTransfer",
          summary="Transfer units (from your holding account) or cash (from your cash account)")
    async def create(self, rt: Runtime, principal: Principal, data: TransferIn,
                     idempotency_key: IdempotencyKey = None) -> TransferOut:
        cid = client_id(idempotency_key, data.client_id)
        return TransferOut.of(await transfers.transfer(rt, principal, cid, to_participant=data.to_participant,
                                                       instrument=data.instrument, quantity=data.quantity,
                                                       serials=ranges(data.serials), memo=data.memo))


class RetirementController(Controller):
    path = "/v1/retirements"
    tags = ["registry"]

    @post("/", operation_id="createRetirement", summary="Retire units (final)")
    async def create(self, rt: Runtime, principal: Principal, data: RetirementIn,
                     idempotency_key: IdempotencyKey = None) -> RetirementOut:
        cid = client_id(idempotency_key, data.client_id)
        return RetirementOut.of(await transfers.retire(
            rt, principal, cid, instrument=data.instrument, quantity=data.quantity, purpose=data.purpose,
            beneficiary=data.beneficiary, note=data.note, serials=ranges(data.serials)))


class HoldingController(Controller):
    path = "/v1/holdings"
    tags = ["registry"]

    @get("/", operation_id="getHoldings", summary="Balances and serial blocks of a participant, with their state")
    async def holdings(self, rt: Runtime, principal: Principal, participant_id: OptId = None,
                       instrument: Annotated[str | None, Parameter(max_length=32)] = None, limit: Limit = 500,
                       after_instrument: Annotated[str | None, Parameter(max_length=32)] = None,
                       after_serial: OptId = None) -> HoldingsOut:
        pid = participant_id or principal.participant_id
        after = (after_instrument, after_serial) if after_instrument and after_serial else None
        # Judicial retirements are the payer's although its account never held them (exchange/courts).
        judicial = await restoration.retirements_paid_by(rt, pid)
        return HoldingsOut.of(await transfers.holdings(rt, principal, pid, instrument, limit, after, judicial))
