"""公示查询: public search of pledges, freezes and retirements; no key; answers are signed certificates.

Read-only, so it can run on extra workers against a read replica. Only encumbrances and retirements
are shown, never balances or holdings.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get
from litestar.params import Parameter

from api.controllers.ledger_proofs import PENDING
from api.schemas.pledges import InquiryKeyOut, PublicSearchOut
from exchange.core.runtime import Runtime
from exchange.pledging import public as inquiry

Name = Annotated[str | None, Parameter(max_length=200, description="holder name (or part of it)")]
Uscc = Annotated[str | None, Parameter(min_length=18, max_length=18, description="统一社会信用代码")]
Serial = Annotated[int | None, Parameter(ge=1, le=2**53 - 1, description="a serial number inside a block")]
Instrument = Annotated[str | None, Parameter(max_length=32)]
Limit = Annotated[int, Parameter(ge=1, le=200)]


_PROOF = ("The {} search certificate as a C2SP tlog-proof: extra data = the signed certificate (RFC 8785 JSON), "
          "the ledger head it was read at proven under the (witnessed) checkpoint; envx verify-receipt checks it")


def _proof(record: str, text: str) -> Response[bytes]:
    return Response(text.encode("utf-8"), media_type="text/plain",
                    headers={"Content-Disposition": f'attachment; filename="inquiry-{record}.tlog-proof"'})


class PublicController(Controller):
    path = "/v1/public"
    tags = ("public",)

    @get("/pledges", operation_id="publicPledges", summary="Active pledge registrations (signed certificate)")
    async def pledges(self, rt: Runtime, name: Name = None, uscc: Uscc = None, serial: Serial = None,
                      instrument: Instrument = None, limit: Limit = 100) -> PublicSearchOut:
        answer = await inquiry.public_search(rt, "pledges", name=name, uscc=uscc, serial=serial,
                                            instrument=instrument, limit=limit)
        return PublicSearchOut.of(answer)

    @get("/freezes", operation_id="publicFreezes", summary="Active judicial freezes (signed certificate)")
    async def freezes(self, rt: Runtime, name: Name = None, uscc: Uscc = None, serial: Serial = None,
                      instrument: Instrument = None, limit: Limit = 100) -> PublicSearchOut:
        answer = await inquiry.public_search(rt, "freezes", name=name, uscc=uscc, serial=serial,
                                            instrument=instrument, limit=limit)
        return PublicSearchOut.of(answer)

    @get("/retirements", operation_id="publicRetirements", summary="Retired serial blocks (signed certificate)")
    async def retirements(self, rt: Runtime, name: Name = None, uscc: Uscc = None, serial: Serial = None,
                          instrument: Instrument = None, limit: Limit = 100) -> PublicSearchOut:
        answer = await inquiry.public_search(rt, "retirements", name=name, uscc=uscc, serial=serial,
                                            instrument=instrument, limit=limit)
        return PublicSearchOut.of(answer)

    @get("/pledges.tlog-proof", operation_id="publicPledgesTlogProof", exception_handlers=PENDING,
         media_type="text/plain", summary=_PROOF.format("pledge"))
    async def pledges_proof(self, rt: Runtime, name: Name = None, uscc: Uscc = None, serial: Serial = None,
                            instrument: Instrument = None, limit: Limit = 100) -> Response[bytes]:
        return _proof("pledges", await inquiry.public_search_tlog_proof(
            rt, "pledges", name=name, uscc=uscc, serial=serial, instrument=instrument, limit=limit))

    @get("/freezes.tlog-proof", operation_id="publicFreezesTlogProof", exception_handlers=PENDING,
         media_type="text/plain", summary=_PROOF.format("freeze"))
    async def freezes_proof(self, rt: Runtime, name: Name = None, uscc: Uscc = None, serial: Serial = None,
                            instrument: Instrument = None, limit: Limit = 100) -> Response[bytes]:
        return _proof("freezes", await inquiry.public_search_tlog_proof(
            rt, "freezes", name=name, uscc=uscc, serial=serial, instrument=instrument, limit=limit))

    @get("/retirements.tlog-proof", operation_id="publicRetirementsTlogProof", exception_handlers=PENDING,
         media_type="text/plain", summary=_PROOF.format("retirement"))
    async def retirements_proof(self, rt: Runtime, name: Name = None, uscc: Uscc = None, serial: Serial = None,
                                instrument: Instrument = None, limit: Limit = 100) -> Response[bytes]:
        return _proof("retirements", await inquiry.public_search_tlog_proof(
            rt, "retirements", name=name, uscc=uscc, serial=serial, instrument=instrument, limit=limit))

    @get("/inquiry-key", operation_id="publicInquiryKey",
         summary="The verifier key that signs search certificates (C2SP Ed25519 verifier key)")
    async def key(self, rt: Runtime) -> InquiryKeyOut:
        signer = inquiry.get_signer(rt)
        return InquiryKeyOut(verifier_key=signer.verifier_key_string(), key_name=signer.name,
                             key_id=signer.key_id.hex())
