"""The outermost layer of every HTTP request, before routing: its request id, and ``/metrics``.

- **Request id**: the client's ``X-Request-Id`` if it is 1-64 characters of ``[A-Za-z0-9._:-]``, otherwise a
  new random one; set in `exchange.core.logs.REQUEST_ID` for the whole request (every log line it causes
  carries it) and returned in the answer's ``X-Request-Id`` header. With ``ENVX_ACCESS_LOG`` each request ends
  with one ``envx.access`` line (method, path without query, status, milliseconds).
- **/metrics** (api/metrics.py): served here, outside the routes and the OpenAPI document. Allowed to an
  operator's or auditor's API key, or without a key to a client address in ``ENVX_METRICS_ALLOWED_ADDRESSES``
  (IP addresses or networks, e.g. the Prometheus host); anyone else gets the problem document any
  operation would give (401 ``unauthenticated``, 403 ``role_forbidden``). Disabled: 404 ``not_found``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
import time
from typing import Any

from litestar import Litestar
from litestar.types import ASGIApp

from api import metrics
from api.auth import _bearer
from api.problems import PROBLEM, TYPE_BASE
from exchange.core.logs import REQUEST_ID
from exchange.core.refusals import Refusal
from exchange.core.settings import Settings
from exchange.security import keys

access = logging.getLogger("envx.access")
_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
OVERSIGHT = frozenset({"operator", "auditor"})


def _request_id(scope: Any) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            try:
                given: str = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if _ID.fullmatch(given):
                return given
            break
    return secrets.token_hex(8)


def _networks(spec: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spec.split(",") if item.strip())


# The API docs pages: scripts and styles from envx only (Swagger UI's own start-up script is inline).
DOCS_HEADERS = (
    (b"content-security-policy", b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
     b"'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
     b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
)


class Edge:
    def __init__(self, app: Litestar, inner: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.inner = inner
        self.settings = settings
        self.allowed = _networks(settings.metrics_allowed_addresses)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.inner(scope, receive, send)
            return
        rid = _request_id(scope)
        token = REQUEST_ID.set(rid)
        header = (b"x-request-id", rid.encode("ascii"))
        status = [0]
        started = time.perf_counter()

        extra = (header, *DOCS_HEADERS) if scope["path"].startswith("/schema") else (header,)

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        try:
            if scope["type"] == "http" and scope["path"] == "/metrics":
                await self.metrics(scope, send_with_id)
            else:
                await self.inner(scope, receive, send_with_id)
        finally:
            if self.settings.access_log:
                access.info("%s %s %s %.1f ms", scope.get("method", "WS"), scope["path"], status[0] or "-",
                            (time.perf_counter() - started) * 1000)
            REQUEST_ID.reset(token)

    def _address_allowed(self, scope: Any) -> bool:
        client = scope.get("client")
        if not client or not self.allowed:
            return False
        try:
            addr = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(addr in net for net in self.allowed)

    async def metrics(self, scope: Any, send: Any) -> None:
        if not self.settings.metrics_enabled:
            return await _problem(send, Refusal.NOT_FOUND, "no such resource")
        if scope["method"] not in ("GET", "HEAD"):
            return await _problem(send, Refusal.METHOD_NOT_ALLOWED, "/metrics answers GET only")
        rt = getattr(self.app.state, "rt", None)
        if rt is None:
            return await _problem(send, Refusal.UNAVAILABLE, "the registry is starting")
        if not self._address_allowed(scope):
            token = _bearer(scope)
            principal = None
            if token:
                principal = rt.key_cache.get(token)
                if principal is None:
                    async with rt.read() as conn:
                        principal = await keys.authenticate(conn, rt.key_cache, token)
            if principal is None:
                return await _problem(send, Refusal.UNAUTHENTICATED, "send an operator's or auditor's API key as "
                                      "'Authorization: Bearer <key>', or scrape from an address in "
                                      "ENVX_METRICS_ALLOWED_ADDRESSES")
            if principal.kind not in OVERSIGHT:
                return await _problem(send, Refusal.ROLE_FORBIDDEN, "metrics are for operators and auditors")
        body = await metrics.render(rt, getattr(self.app.state, "witnessing", None))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", metrics.CONTENT_TYPE.encode()),
                                (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
        return None


async def _problem(send: Any, refusal: Refusal, detail: str) -> None:
    code, status = refusal.value, refusal.status
    body = json.dumps({"type": TYPE_BASE + code, "title": code.replace("_", " ").capitalize(), "status": status,
                       "detail": detail, "code": code, "instance": "/metrics"}).encode()
    headers = [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install(app: Litestar, settings: Settings) -> None:
    """Put the edge in front of the app's routing (Litestar calls `asgi_handler` for every request)."""
    app.asgi_handler = Edge(app, app.asgi_handler, settings)
