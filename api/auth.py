"""Bearer API keys: resolve the caller before guards run; the matrix in `api.authz` decides."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from exchange.security import keys


class ApiKeyMiddleware(ASGIMiddleware):
    scopes = ("http", "websocket")  # type: ignore[assignment]

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        scope["user"] = None
        header = _bearer(scope)
        if header:
            state: State = scope["app"].state
            principal = state.rt.key_cache.get(header)
            if principal is None:
                async with state.rt.read() as conn:
                    principal = await keys.authenticate(conn, state.rt.key_cache, header)
            scope["user"] = principal
        await next_app(scope, receive, send)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            if not value.isascii():  # a token is ASCII: anything else is no key at all (401), not a look-up
                return None
            text = value.decode("ascii")
            if text[:7].lower() == "bearer ":
                return text[7:].strip()
    return None
