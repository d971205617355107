"""Dependencies shared by controllers: the runtime, the caller, the idempotency key, bounded ids."""

from __future__ import annotations

from typing import Annotated

from litestar import Request
from litestar.datastructures import State
from litestar.params import Parameter

from exchange.core.errors import DomainError
from exchange.core.idempotency import require_client_id
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime

IdempotencyKey = Annotated[str | None, Parameter(header="Idempotency-Key", required=False, max_length=128)]
# Every id and sequence number in a path or query: 1..2^53 - 1 (I-JSON safe), declared in the OpenAPI
# document; written in ASCII digits only (api/security/middleware.py refuses "1e3", " 7", "٧").
MAX_ID = 2**53 - 1
Id = Annotated[int, Parameter(ge=1, le=MAX_ID)]
OptId = Annotated[int | None, Parameter(ge=1, le=MAX_ID, required=False)]


def get_rt(state: State) -> Runtime:
    return state.rt  # type: ignore[no-any-return]


def get_principal(request: Request) -> Principal:
    user = request.scope.get("user")
    if not isinstance(user, Principal):  # the guard refuses first; this is a safety net
        raise DomainError("unauthenticated", "an API key is required", 401)
    return user


def client_id(header: str | None, body_value: str | None) -> str:
    return require_client_id(header, body_value)
