"""Exact replays of keyed mutations: a retry gets the original answer, byte for byte, at the HTTP edge.

A mutation is keyed when its operation takes an idempotency key (the OpenAPI document declares the
`Idempotency-Key` header for it), the request carries one (that header, else the body's `client_id`) and a
valid API key. Its request is identified by (actor, idempotency key, SHA-256 of the
method, the target as sent and the body bytes). Then:

- a successful (2xx) answer is stored (exchange/core/idempotency.py) before it leaves (the look-ups and the
  stores of concurrent requests share their round trips: `AnswerLog`); the same request again
  gets the stored status and bytes, whatever happened since (the order filled, the day changed);
- except where the handler keeps the answer itself, with its effect, in the same transaction
  (KEPT_BY_HANDLER: a new order's answer is kept in its market's projection transaction, see
  exchange.trading.pipeline.Keep): there the gate neither looks the request up nor stores the answer -- the
  handler finds the answer kept with the order for a retry and answers it -- so that a crash between the
  commit and the reply loses nothing, and a new order costs no round trip of its own for this; the gate still
  stores what the handler answers without having kept it (a retry under other bytes, answered from the row);
- unless it shows a secret: an answer with a field named `token`, `first_half`, `second_half` or `secret`
  anywhere in it (an API key minted, a half of an enrollment code on a proposal or its approval, a
  webhook's secret) is never stored — the store refuses it (exchange.core.idempotency.SECRET_FIELDS), whatever
  the operation. Its retry is answered by the service, which derives the same secret again;
- while a request runs, the same request again waits for it and gets its answer, whatever it is (a 409,
  a 503); a *different* request under the same key waits for it to end, then runs on its own, and the
  service's own idempotency check answers it (`idempotency_conflict`, or its replay);
- refusals are not stored: a retry after a refusal runs again (the state may have changed).

Behind this edge each service keeps its own idempotency (rows keyed by actor and client id with a request
fingerprint): it answers a retry whose bytes differ from the first (the key moved between header and
body, other whitespace) and any retry whose stored answer was lost (a crash between commit and answer).
Those replays describe the same effect but are built from the current state.

One process serves the API (the ledger has one writer), so the in-flight table in memory sees every
concurrent request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.security.signatures import request_target
from exchange.core.idempotency import Answer, AnswerLog, valid_client_key
from exchange.core.principal import Principal

log = logging.getLogger("envx.security")
MAX_STORED = 1_000_000  # larger answers are not kept (no mutation answers with that much)
Shared = tuple[Answer, list[tuple[bytes, bytes]] | None]  # an answer, and the headers it was first sent with


def keyed_operations(app: Any) -> frozenset[str]:
    """The operations that take an idempotency key, as the OpenAPI document says (computed once per app)."""
    cached = getattr(app.state, "_envx_keyed_operations", None)
    if cached is None:
        spec = app.openapi_schema.to_schema()
        cached = frozenset(
            op["operationId"] for item in spec.get("paths", {}).values() for op in item.values()
            if isinstance(op, dict) and "operationId" in op and any(
                p.get("in") == "header" and p.get("name", "").lower() == "idempotency-key"
                for p in op.get("parameters", [])))
        app.state._envx_keyed_operations = cached
    return cached


def method_of(scope: Scope) -> str:
    """The request's method (the security middleware serves HTTP scopes only)."""
    return scope["method"] if scope["type"] == ScopeType.HTTP else "GET"


def request_digest(scope: Scope, body: bytes) -> bytes:
    head = f"{method_of(scope)}\n{request_target(scope)}\n".encode("utf-8", "backslashreplace")
    return hashlib.sha256(head + body).digest()


def idempotency_key(scope: Scope, decoded: Any) -> str | None:
    """The key the services will use, if they will accept it (exchange.core.idempotency.require_client_id):
    header and body agree, 1-128 printable ASCII characters. Otherwise the service refuses the request."""
    header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"idempotency-key"), None)
    body = decoded.get("client_id") if isinstance(decoded, dict) else None
    body = body if isinstance(body, str) else None
    if header and body and header != body:
        return None
    key = header or body
    return key if key and valid_client_key(key) else None


async def send_answer(send: Send, answer: Answer, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """The answer's status and bytes; the original headers to requests that shared it in flight."""
    await send({"type": "http.response.start", "status": answer.status,
                "headers": headers or [(b"content-type", answer.media_type.encode("latin-1")),
                                       (b"content-length", str(len(answer.body)).encode())]})
    await send({"type": "http.response.body", "body": answer.body, "more_body": False})


# Operations whose handler keeps its own answer, with its effect (in the same transaction): the gate neither looks
# the request up before the handler (the handler finds the answer kept with its order, for a retry) nor keeps
# the answer after it -- unless the handler says it kept none (`answer_kept` not called): then the gate keeps it.
KEPT_BY_HANDLER = frozenset({"placeOrder"})
_SLOT = "envx.answer_slot"
_KEPT = "envx.answer_kept"


def answer_slot(scope: Scope) -> tuple[str, str, bytes] | None:
    """(actor, idempotency key, request digest) under which the handler of a KEPT_BY_HANDLER operation keeps this
    request's answer, if the request is keyed; None otherwise."""
    slot = scope.get("state", {}).get(_SLOT)
    return slot if isinstance(slot, tuple) else None


def answer_kept(scope: Scope) -> None:
    """The handler kept this request's answer under `answer_slot` (or found it kept), and answers with it."""
    scope.setdefault("state", {})[_KEPT] = True


class ReplayGate:
    def __init__(self) -> None:
        # (actor, idempotency key) -> (request digest, its answer and headers when it ends)
        self._running: dict[tuple[str, str], tuple[bytes, asyncio.Future[Shared]]] = {}
        self._log: AnswerLog | None = None

    async def run(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp, principal: Principal,
                  key: str, body: bytes, operation: str | None = None) -> None:
        digest = request_digest(scope, body)
        slot = (principal.actor, key)
        while (running := self._running.get(slot)) is not None:
            first, pending = running
            try:
                shared = await asyncio.shield(pending)
            except BaseException:  # the first was cancelled (client gone): this one runs itself
                if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise
                continue
            if first == digest:
                await send_answer(send, *shared)
                return
        # No await between the check above and this line: one request per slot runs at a time.
        done: asyncio.Future[Shared] = asyncio.get_running_loop().create_future()
        self._running[slot] = (digest, done)
        try:
            answers = self._answers(scope["app"].state.rt)
            if operation in KEPT_BY_HANDLER:
                scope.setdefault("state", {})[_SLOT] = (principal.actor, key, digest)
                shared = await self._first(scope, receive, next_app, answers, principal, key, digest)
            else:
                stored = await answers.find((principal.actor, key, digest))
                shared = (stored, None) if stored is not None else \
                    await self._first(scope, receive, next_app, answers, principal, key, digest)
            done.set_result(shared)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # retrieved: waiters may be gone
            raise
        finally:
            del self._running[slot]
        await send_answer(send, *shared)

    def _answers(self, rt: Any) -> AnswerLog:
        """The stored answers of the running registry (a new one when the app starts again on another runtime)."""
        if self._log is None or self._log.engine is not rt.engine:
            self._log = AnswerLog(rt.engine)
        return self._log

    async def _first(self, scope: Scope, receive: Receive, next_app: ASGIApp, answers: AnswerLog,
                     principal: Principal, key: str, digest: bytes) -> Shared:
        messages: list[Message] = []

        async def capture(msg: Message) -> None:
            messages.append(msg)

        await next_app(scope, receive, capture)
        start = next(m for m in messages if m["type"] == "http.response.start")
        headers = list(start.get("headers", []))
        media_type = next((v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"),
                          "application/json")
        answer = Answer(start["status"], media_type,
                        b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body"))
        if 200 <= answer.status < 300 and len(answer.body) <= MAX_STORED and not scope.get("state", {}).get(_KEPT):
            try:
                await answers.keep(principal.actor, key, digest, answer)
            except Exception:  # the effect is done; a retry then gets the service's own replay
                log.warning("could not store the answer of %s %s for replays", method_of(scope), scope["path"],
                            exc_info=True)
        return answer, headers
