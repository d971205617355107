"""The verifiable ledger: signed checkpoints, the keys that sign them, Merkle proofs and receipts."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, MediaType, Request, Response, get
from litestar.params import Parameter
from litestar.types import ExceptionHandlersMap

from api.deps import MAX_ID, Id
from api.problems import problem
from api.schemas.ledger import CheckpointOut, ConsistencyProofOut, InclusionProofOut, LogKeyOut, ReceiptOut
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.courts import restoration
from exchange.verifiable import proofs
from exchange.verifiable.proofs import CheckpointPending

Size = Annotated[int, Parameter(ge=0, le=MAX_ID)]  # tree sizes and leaf indexes, I-JSON safe as every id
OptSize = Annotated[int | None, Parameter(ge=0, le=MAX_ID, required=False)]
OptSeq = Annotated[int | None, Parameter(ge=1, le=MAX_ID, required=False)]
Limit = Annotated[int, Parameter(ge=1, le=1000)]


def _pending(request: Request, exc: CheckpointPending) -> Response:
    resp = problem(exc.status, exc.code, exc.message, request)
    resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


PENDING: ExceptionHandlersMap = {CheckpointPending: _pending}  # 503 with Retry-After



def order_party_of(rt: Runtime) -> proofs.OrderParty:
    """Whether a caller is the court or payer of a restoration order: its judicial retirements' receipts
    (JSON or .tlog-proof) are theirs too."""
    async def order_party(who: Principal, order_id: int) -> bool:
        return await restoration.is_party(rt, who, order_id)
    return order_party

class LedgerProofController(Controller):
    path = "/v1/ledger"
    tags = ("ledger",)

    @get("/checkpoint", operation_id="getCheckpoint", exception_handlers=PENDING, media_type=MediaType.TEXT,
         summary="The latest signed checkpoint (C2SP tlog-checkpoint note)")
    async def checkpoint(self, rt: Runtime) -> str:
        return await proofs.checkpoint_note(rt)

    @get("/checkpoints", operation_id="listCheckpoints",
         summary="Published checkpoints, newest first; page with `before` = the last tree_size seen")
    async def checkpoints(self, rt: Runtime, before: OptSize = None, limit: Limit = 100) -> list[CheckpointOut]:
        return [CheckpointOut.of(p) for p in await proofs.checkpoint_list(rt, before, limit)]

    @get("/keys", operation_id="listSigningKeys",
         summary="Every checkpoint key the log has registered (C2SP verifier keys), oldest first")
    async def keys(self, rt: Runtime) -> list[LogKeyOut]:
        return [LogKeyOut.of(k) for k in await proofs.signing_keys(rt)]

    @get("/proofs/inclusion", operation_id="getInclusionProof", exception_handlers=PENDING,
         summary="RFC 9162 inclusion proof of an entry (seq) or leaf (index); default tree: the latest checkpoint")
    async def inclusion(self, rt: Runtime, seq: OptSeq = None, index: OptSize = None,
                        tree_size: OptSize = None) -> InclusionProofOut:
        return InclusionProofOut.of(await proofs.inclusion(rt, seq=seq, index=index, tree_size=tree_size))

    @get("/proofs/consistency", operation_id="getConsistencyProof", exception_handlers=PENDING,
         summary="RFC 9162 consistency proof between two tree sizes; default second: the latest checkpoint")
    async def consistency(self, rt: Runtime, first: Size, second: OptSize = None) -> ConsistencyProofOut:
        return ConsistencyProofOut.of(await proofs.consistency(rt, first=first, second=second))

    @get("/entries/{seq:int}/receipt", operation_id="getEntryReceipt", exception_handlers=PENDING,
         summary="Offline-verifiable receipt: entry bytes, leaf index, inclusion path, signed checkpoint")
    async def receipt(self, rt: Runtime, principal: Principal, seq: Id) -> ReceiptOut:
        return ReceiptOut.of(await proofs.receipt(rt, principal, seq, order_party_of(rt)))
