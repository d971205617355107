"""Dependencies shared by controllers: the runtime, the caller, the idempotency key."""

from __future__ import annotations

from typing import Annotated

from litestar import Request
from litestar.datastructures import State
from litestar.params import Parameter

from exchange.errors import DomainError
from exchange.idempotency import require_client_id
from exchange.keys import Principal
from exchange.runtime import Runtime

IdempotencyKey = Annotated[str | None, Parameter(header="Idempotency-Key", required=False, max_length=128)]


def get_rt(state: State) -> Runtime:
    return state.rt  # type: ignore[no-any-return]


def get_principal(request: Request) -> Principal:
    user = request.scope.get("user")
    if not isinstance(user, Principal):  # the guard refuses first; this is a safety net
        raise DomainError("unauthenticated", "an API key is required", 401)
    return user


def client_id(header: str | None, body_value: str | None) -> str:
    return require_client_id(header, body_value)
