"""One middleware for what must happen around every request after the API key is known:

1. per-key (or, without a key, per-address) rate limits: 429 `rate_limited` with Retry-After;
2. input bounds the schemas cannot express: unknown query parameters, over-long query values and path
   segments are refused (422) before any handler runs;
3. signed instructions on mutations: verified, replay-checked and stored, then handed to the ledger
   through exchange.provenance; participants whose operator requires signatures get 401
   `signature_required` for unsigned mutations;
4. the audit trail: administrative requests are recorded (who, what, when, from where, outcome),
   before the response leaves, so a client never sees an answer that is not in the trail.

It runs after ApiKeyMiddleware (scope["user"] is set) and before the guards (authorization matrix).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PROBLEM, TYPE_BASE
from api.security import audit as audit_policy
from api.security.ratelimit import TokenBuckets, retry_after
from api.security.signatures import SignatureError, request_target, requires_signatures, verify_and_record
from exchange import audit as audit_store
from exchange.keys import Principal
from exchange.provenance import provenance
from exchange.settings import Settings

log = logging.getLogger("envx.security")

MAX_BODY = 1_000_000  # as the app's request_max_body_size
MAX_QUERY_VALUE = 1000
MAX_PATH_PARAM = 200
MAX_SAFE_INT = 2**53 - 1
_TITLES = {401: "Unauthenticated", 403: "Forbidden", 413: "Payload too large", 422: "Unprocessable request",
           429: "Too many requests"}


async def send_problem(scope: Scope, send: Send, status: int, code: str, detail: str,
                       headers: dict[str, str] | None = None, **extra: Any) -> None:
    body = json.dumps({"type": TYPE_BASE + code, "title": _TITLES.get(status, code), "status": status,
                       "detail": detail, "code": code, "instance": scope.get("path", ""), **extra},
                      ensure_ascii=False).encode()
    raw = [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode())]
    if status == 401:
        raw.append((b"www-authenticate", b"Bearer"))
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _buffer(receive: Receive) -> tuple[bytes, Receive, bool]:
    """Read the whole body (up to MAX_BODY) and give the app a receive that replays it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return b"".join(chunks), receive, False  # disconnected; the app will see it too
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return b"", receive, True
        chunks.append(chunk)
        if not msg.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay, False


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return None


def _operation(scope: Scope) -> str | None:
    op = getattr(scope.get("route_handler"), "operation_id", None)
    return op if isinstance(op, str) else None


def _query_parameters(app: Any) -> dict[str, frozenset[str]]:
    """operationId -> the query parameters the OpenAPI document declares (computed once per app)."""
    cached = getattr(app.state, "_envx_query_params", None)
    if cached is None:
        spec = app.openapi_schema.to_schema()
        cached = {}
        for item in spec.get("paths", {}).values():
            for op in item.values():
                if isinstance(op, dict) and "operationId" in op:
                    cached[op["operationId"]] = frozenset(
                        p["name"] for p in op.get("parameters", []) if p.get("in") == "query")
        app.state._envx_query_params = cached
    return cached  # type: ignore[no-any-return]


def _input_refusal(scope: Scope, operation: str | None) -> tuple[str, str] | None:
    for name, value in (scope.get("path_params") or {}).items():
        if isinstance(value, str) and len(value) > MAX_PATH_PARAM:
            return "path_parameter_too_long", f"{name} is longer than {MAX_PATH_PARAM} characters"
        if isinstance(value, str) and "\x00" in value:  # PostgreSQL text cannot hold it
            return "invalid_characters", f"{name} contains a NUL character"
        if isinstance(value, int) and abs(value) > MAX_SAFE_INT:  # ids and seqs are I-JSON safe integers
            return "path_parameter_out_of_range", f"{name} is outside ±(2^53 - 1)"
    qs = scope.get("query_string", b"")
    if not qs or operation is None:
        return None
    allowed = _query_parameters(scope["app"]).get(operation, frozenset())
    for name, value in parse_qsl(qs.decode("latin-1"), keep_blank_values=True):
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            return "unknown_query_parameter", f"unknown query parameter {name[:50]!r} (this operation takes: {known})"
        if len(value) > MAX_QUERY_VALUE:
            return "query_parameter_too_long", f"{name} is longer than {MAX_QUERY_VALUE} characters"
        if "\x00" in value:
            return "invalid_characters", f"{name} contains a NUL character"
    return None


class SecurityMiddleware(ASGIMiddleware):
    scopes = ("http",)  # type: ignore[assignment]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keyed = TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst)
        self.anonymous = TokenBuckets(settings.anonymous_rate_limit_per_second,
                                      settings.anonymous_rate_limit_burst)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        user = scope.get("user")
        principal = user if isinstance(user, Principal) else None
        if principal is not None:
            wait = self.keyed.take(principal.key_id)
        else:
            client = scope.get("client")
            wait = self.anonymous.take(client[0] if client else "")
        if wait:
            await send_problem(scope, send, 429, "rate_limited", "too many requests for this key; slow down",
                               {"Retry-After": retry_after(wait)})
            return

        method = scope["method"]
        operation = _operation(scope)
        mutation = method not in audit_policy.SAFE_METHODS
        audited = operation is not None and audit_policy.is_administrative(operation, principal, method)
        rt = scope["app"].state.rt
        signature = _header(scope, b"x-envx-signature") if mutation and principal is not None else None
        must_sign = (mutation and principal is not None and signature is None
                     and await requires_signatures(scope["app"].state, principal.participant_id))

        body, too_big = b"", False
        if audited or signature is not None:
            body, receive, too_big = await _buffer(receive)

        refusal: tuple[int, str, str] | None = None
        signed: dict[str, Any] | None = None
        bad_input = _input_refusal(scope, operation)
        if too_big:
            refusal = (413, "payload_too_large", f"the body is larger than {MAX_BODY} bytes")
        elif bad_input is not None:
            refusal = (422, *bad_input)
        elif must_sign:
            refusal = (401, "signature_required", "your operator requires every mutation to be signed: send "
                                                  "an X-Envx-Signature header (see README, Signed instructions)")
        elif signature is not None and principal is not None:
            try:
                async with rt.tx() as conn:
                    signed = await verify_and_record(
                        conn, principal, signature, method=method, target=request_target(scope), body=body,
                        operation=operation, max_skew=self.settings.signature_max_skew_seconds)
            except SignatureError as exc:
                refusal = (exc.status, exc.code, exc.message)

        async def run(send_: Send) -> None:
            if refusal is not None:
                await send_problem(scope, send_, *refusal)
            elif signed is not None:
                with provenance(signed_instruction=signed):
                    await next_app(scope, receive, send_)
            else:
                await next_app(scope, receive, send_)

        if not audited or operation is None:
            await run(send)
            return
        await self._audited(scope, send, run, operation, principal, body, signed)

    async def _audited(self, scope: Scope, send: Send, run: Callable[[Send], Awaitable[None]], operation: str,
                       principal: Principal | None, body: bytes, signed: dict[str, Any] | None) -> None:
        # Hold the (small) response until its audit row is committed.
        messages: list[Message] = []
        status = 500

        async def capture(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            messages.append(msg)

        try:
            await run(capture)
        finally:
            response_body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
            ev = audit_policy.event(scope, operation, principal, status, body, response_body, signed)
            try:
                async with scope["app"].state.rt.tx() as conn:
                    await audit_store.append(conn, ev)
            except Exception:
                log.critical("audit trail write failed for %s %s (%s)", ev.method, ev.path, ev.outcome, exc_info=True)
        for m in messages:
            await send(m)
