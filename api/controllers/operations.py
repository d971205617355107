"""Operations against the running registry: the online rotation of the checkpoint signing key (maker-checker)."""

from __future__ import annotations

from litestar import Controller, post
from litestar.openapi.datastructures import ResponseSpec
from pydantic import BaseModel, Field

from api.controllers.security import PROPOSED, propose_or_run
from api.deps import IdempotencyKey, client_id
from api.encoding import Answer
from api.schemas.common import ClientId, Strict
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.verifiable import rotation


class RotationIn(Strict):
    reason: str = Field(min_length=1, max_length=500, description="Why (scheduled rotation, suspected exposure, ...)")
    client_id: ClientId = None


class RotationOut(BaseModel):
    old_key: str | None = Field(description="The key that signed until the rotation (C2SP verifier key)")
    new_key: str = Field(description="The key that signs from the tree that includes its registration on")
    registered_at_seq: int = Field(description="The log entry registering the new key")


class KeyRotationController(Controller):
    path = "/v1/ledger/key-rotations"
    tags = ["ledger"]

    @post("/", operation_id="rotateSigningKey",
          responses={**PROPOSED, 201: ResponseSpec(data_container=RotationOut, generate_examples=False,
                                                   description="The rotation, done (maker-checker off)")},
          summary="Rotate the checkpoint signing key while serving (operator; maker-checker)",
          description="The new key is registered in the log, then signs; old keys stay published at "
                      "GET /v1/ledger/keys, so receipts under older checkpoints verify with the key that signed "
                      "them. 409 `rotation_unavailable` if the key comes from ENVX_SIGNING_KEY.")
    async def rotate(self, rt: Runtime, principal: Principal, data: RotationIn,
                     idempotency_key: IdempotencyKey = None) -> RotationOut | Answer:
        cid = client_id(idempotency_key, data.client_id)
        answer = await propose_or_run(rt, principal, cid, "rotateSigningKey", {"reason": data.reason},
                                      lambda: rotation.rotate(rt, cid))
        return answer if isinstance(answer, Answer) else RotationOut(**answer)
