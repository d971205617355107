"""Court restoration orders (替代性生态修复) and their certificates."""

from __future__ import annotations

from litestar import Controller, Response, get, post

from api.controllers.ledger_proofs import PENDING
from api.deps import Id, IdempotencyKey, client_id
from api.schemas.restoration import (
    CertificateInvalidOut,
    CertificateOut,
    CertificateValidOut,
    ReminderOut,
    RestorationOrderIn,
    RestorationOrderOut,
    RestorationPurchaseIn,
    RestorationTakeIn,
    certificate_check,
)
from api.schemas.trading import OrderPlacedOut
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.courts import certificates, restoration
from exchange.security import identified


class RestorationController(Controller):
    path = "/v1/restoration-orders"
    tags = ["restoration"]

    @post("/", operation_id="createRestorationOrder", summary="A court registers a buy-and-retire order")
    async def create(self, rt: Runtime, principal: Principal, data: RestorationOrderIn,
                     idempotency_key: IdempotencyKey = None) -> RestorationOrderOut:
        body = data.model_dump(exclude={"client_id"})
        cid = client_id(idempotency_key, data.client_id)
        return RestorationOrderOut.of(await identified.guarded(
            rt, principal, "createRestorationOrder", "/v1/restoration-orders",
            lambda: restoration.create(rt, principal, cid, body), named=(data.payer_id, data.payer_identifier)))

    @get("/", operation_id="listRestorationOrders", summary="Orders of your court (or that you pay); all for oversight")
    async def listing(self, rt: Runtime, principal: Principal) -> list[RestorationOrderOut]:
        return [RestorationOrderOut.of(s) for s in await restoration.listing(rt, principal)]

    @get("/{order_id:int}", operation_id="getRestorationOrder", summary="Status and partial fulfilment")
    async def get_one(self, rt: Runtime, principal: Principal, order_id: Id) -> RestorationOrderOut:
        return RestorationOrderOut.of(await restoration.get(rt, principal, order_id))

    @get("/{order_id:int}/reminders", operation_id="listRestorationReminders", summary="Deadline reminders")
    async def reminders(self, rt: Runtime, principal: Principal, order_id: Id) -> list[ReminderOut]:
        return [ReminderOut.of(r) for r in await restoration.reminders_of(rt, principal, order_id)]

    @post("/{order_id:int}/purchases", operation_id="purchaseForRestoration",
          summary="The payer buys on the exchange; every fill is retired at once for the case")
    async def purchase(self, rt: Runtime, principal: Principal, order_id: Id, data: RestorationPurchaseIn,
                       idempotency_key: IdempotencyKey = None) -> OrderPlacedOut:
        return OrderPlacedOut.of(await restoration.purchase(
            rt, principal, order_id, client_id(idempotency_key, data.client_id), market_id=data.market_id,
            type_=data.type, tif=data.tif, price=data.price, quantity=data.quantity))

    @post("/{order_id:int}/takes", operation_id="takeForRestoration",
          summary="The payer takes a listing; the units are retired at once for the case")
    async def take(self, rt: Runtime, principal: Principal, order_id: Id, data: RestorationTakeIn,
                   idempotency_key: IdempotencyKey = None) -> OrderPlacedOut:
        return OrderPlacedOut.of(await restoration.take(
            rt, principal, order_id, client_id(idempotency_key, data.client_id), market_id=data.market_id,
            listing_id=data.listing_id, quantity=data.quantity))

    @get("/{order_id:int}/certificate", operation_id="getRestorationCertificate", exception_handlers=PENDING,
         summary="The signed JSON certificate (public): verify offline with envx verify-receipt")
    async def certificate(self, rt: Runtime, order_id: Id) -> CertificateOut:
        return CertificateOut.of(await certificates.issue(rt, order_id))

    @get("/{order_id:int}/certificate.tlog-proof", operation_id="getRestorationCertificateTlogProof",
         exception_handlers=PENDING, media_type="text/plain",
         summary="The certificate's retirement entries as C2SP tlog-proofs, one after the other (public; under "
                 "the witness policy's checkpoint when one is configured): verify offline with envx verify-receipt")
    async def certificate_tlog_proof(self, rt: Runtime, order_id: Id) -> Response[bytes]:
        text = await certificates.tlog_proof(rt, order_id)
        return Response(text.encode("utf-8"), media_type="text/plain", headers={
            "Content-Disposition": f'attachment; filename="restoration-{order_id}.tlog-proof"'})

    @get("/{order_id:int}/certificate.pdf", operation_id="getRestorationCertificatePdf", exception_handlers=PENDING,
         summary="The certificate as a PDF (Chinese, with its verification code)", media_type="application/pdf")
    async def certificate_pdf(self, rt: Runtime, order_id: Id) -> Response[bytes]:
        return Response(await certificates.pdf(rt, order_id), media_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="restoration-{order_id}.pdf"'})


class CertificateCheckController(Controller):
    path = "/v1/public/certificates"
    tags = ["public"]

    @get("/{code:str}", operation_id="verifyCertificate",
         summary="Anyone: check a certificate by its verification code")
    async def verify(self, rt: Runtime, code: str) -> CertificateValidOut | CertificateInvalidOut:
        return certificate_check(await certificates.verify_code(rt, code))
