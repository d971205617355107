"""One middleware for what must happen around every request after the API key is known:

1. per-key (or, without a key, per-address) rate limits: 429 `rate_limited` with Retry-After;
2. input bounds the schemas cannot express: unknown query parameters, over-long query values and path
   segments, integers in the path or query that are not plain ASCII digits, query strings and paths that
   are not UTF-8 once percent-decoded, an Idempotency-Key that is not printable ASCII, are refused (422)
   before any handler runs;
3. the one strict decoding of every mutation's body (api/security/json_body.py: depth, duplicate keys,
   lone surrogates, unsafe integers), for requests the authorization guard will let through; a body it
   refuses is 422 and reaches nothing (no signature record, no handler); a mutation that declares no
   body takes none, or `{}`, and a read (GET, HEAD, OPTIONS) none at all (else 422 `body_not_allowed`);
4. signed instructions on mutations: verified, replay-checked and stored, then handed to the ledger
   through exchange.core.provenance; participants whose operator requires signatures get 401
   `signature_required` for unsigned mutations;
5. a mutation counts as under way for its participant until answered (exchange/core/suspension.py): a
   suspension waits for it, and once one has begun the participant's new mutations are refused (401);
6. exact replays: a keyed mutation retried (or sent again while the first is still running) gets the
   original answer, byte for byte (api/security/replays.py);
7. the audit trail: administrative requests are recorded (who, what, when, from where, outcome),
   before the response leaves, so a client never sees an answer that is not in the trail: if the row
   cannot be written, the answer is replaced by 503 `audit_unavailable`. Steps 1-6 all run inside the
   audited section, so whatever refuses, fails or raises before (or in) the handler still gets its row,
   with the status the client sees (500 for an exception). Requests without a valid key that are
   refused, and rate-limited ones, get at most one row per client address and minute
   (api/security/audit.py says how the rest are counted); a public administrative operation that
   succeeds (enrollment) gets its own row.

It runs after ApiKeyMiddleware (scope["user"] is set) and before the guards (authorization matrix).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, HTTPRequestEvent, Message, Receive, ReceiveMessage, Scope, Send

from api.authz import MATRIX, PUBLIC
from api.problems import PROBLEM, TYPE_BASE, instance
from api.security import audit as audit_policy
from api.security import json_body, replays
from api.security.ratelimit import TokenBuckets, retry_after
from api.security.replays import ReplayGate, method_of
from api.security.signatures import SignatureError, request_target, requires_signatures, verify_and_record
from exchange.core.idempotency import valid_client_key
from exchange.core.principal import Principal
from exchange.core.provenance import provenance
from exchange.core.refusals import Refusal
from exchange.core.settings import Settings
from exchange.security import audit as audit_store

log = logging.getLogger("envx.security")

MAX_BODY = 1_000_000  # as the app's request_max_body_size
MAX_QUERY_VALUE = 1000
MAX_PATH_PARAM = 200
MAX_SAFE_INT = 2**53 - 1
_INTEGER = re.compile(r"0|[1-9][0-9]*", re.ASCII)  # what an integer looks like in a path or query string
_TITLES = {401: "Unauthenticated", 403: "Forbidden", 413: "Payload too large", 422: "Unprocessable request",
           429: "Too many requests", 503: "Service unavailable"}


async def send_problem(scope: Scope, send: Send, status: int, code: str, detail: str,
                       headers: dict[str, str] | None = None, **extra: Any) -> None:
    code = Refusal.of(code, status).value  # the closed set: a code outside it, or another status, is a bug
    body = json.dumps({"type": TYPE_BASE + code, "title": _TITLES.get(status, code), "status": status,
                       "detail": detail, "code": code, "instance": instance(scope), **extra},
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

    async def replay() -> ReceiveMessage:
        nonlocal replayed
        if not replayed:
            replayed = True
            whole: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": False}
            return whole
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


@dataclass(slots=True)
class _Request:
    """What the audit row of a request records, filled in as the checks before the handler learn it."""

    body: bytes = b""
    decoded: Any = audit_policy.NOT_DECODED
    signed: dict[str, Any] | None = None
    audited: bool = False


def _is_integer(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "integer" or any(_is_integer(s) for s in schema.get("oneOf", schema.get("anyOf", [])))


def _query_parameters(app: Any) -> dict[str, dict[str, bool]]:
    """operationId -> {query parameter the OpenAPI document declares: is it an integer} (once per app)."""
    cached = getattr(app.state, "_envx_query_params", None)
    if cached is None:
        spec = app.openapi_schema.to_schema()
        cached = {}
        for item in spec.get("paths", {}).values():
            for op in item.values():
                if isinstance(op, dict) and "operationId" in op:
                    cached[op["operationId"]] = {p["name"]: _is_integer(p.get("schema", {}))
                                                 for p in op.get("parameters", []) if p.get("in") == "query"}
        app.state._envx_query_params = cached
    return cached


def _bodiless(app: Any) -> frozenset[str]:
    """The operations whose OpenAPI entry declares no request body (once per app)."""
    cached = getattr(app.state, "_envx_bodiless", None)
    if cached is None:
        spec = app.openapi_schema.to_schema()
        cached = frozenset(op["operationId"] for item in spec.get("paths", {}).values() for op in item.values()
                           if isinstance(op, dict) and "operationId" in op and "requestBody" not in op)
        app.state._envx_bodiless = cached
    return cached


def _utf8(raw: bytes) -> bool:
    """Whether percent-encoded text (a path or query string as sent) decodes as UTF-8. Python's own
    unquoting replaces what does not (an encoded surrogate "%ED%A0%80", a lone "%FF") with U+FFFD, which
    would then be searched for, echoed and even signed as if the client had sent it."""
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _json_media_type(scope: Scope) -> bool:
    """Whether a body is declared as JSON: `application/json` or a `+json` type, in UTF-8 if a charset is named;
    no Content-Type at all is taken as JSON, the one type the API reads. Anything else (a form, `text/plain`)
    is not read as JSON however it looks (415)."""
    declared = _header(scope, b"content-type")
    if declared is None:
        return True
    media, *params = (part.strip().lower() for part in declared.split(";"))
    charsets = [p.split("=", 1)[1].strip().strip('"') for p in params if p.startswith("charset=")]
    return (media == "application/json" or (media.startswith("application/") and media.endswith("+json"))) and \
        all(c in ("utf-8", "utf8") for c in charsets)


def _declared_too_big(scope: Scope) -> bool:
    """Whether the request announces a body beyond MAX_BODY (Content-Length): refused before waiting for it."""
    declared = _header(scope, b"content-length")
    return declared is not None and declared.strip().isdigit() and int(declared) > MAX_BODY


def _header_refusal(scope: Scope) -> tuple[str, str] | None:
    """Headers we read besides the signature: an Idempotency-Key is printable ASCII (a key in any other
    bytes is refused here, as the services refuse it in a body's client_id)."""
    for k, v in scope.get("headers", []):
        if k == b"idempotency-key" and not valid_client_key(v.decode("latin-1")):
            return "invalid_idempotency_key", "Idempotency-Key is 1-128 printable ASCII characters (space to ~)"
    return None


def _integer_refusal(where: str, name: str, text: str) -> tuple[str, str] | None:
    """Litestar reads "1e3", "14.0", "-0" and "١٤" as integers; here an integer is ASCII digits, nothing else."""
    if not _INTEGER.fullmatch(text):
        return "invalid_integer", f"{where} parameter {name} must be written in ASCII digits 0-9 without sign, " \
                                  "padding, leading zeros, decimals or exponent"
    if len(text) > 16 or int(text) > MAX_SAFE_INT:  # ids and sequence numbers are I-JSON safe integers
        return ("path_parameter_out_of_range" if where == "path" else "query_parameter_out_of_range",
                f"{where} parameter {name} is beyond 2^53 - 1")
    return None


def _path_integers(scope: Scope) -> dict[str, str]:
    """The integer path parameters as the client wrote them (Litestar has already run int() on them)."""
    params = scope.get("path_params") or {}
    names = {k for k, v in params.items() if isinstance(v, int)}
    template = (scope.get("path_template") or "").strip("/").split("/")
    path = (scope.get("path") or "").strip("/").split("/")
    if not names or len(template) != len(path):
        return {}
    return {seg[1:-1]: raw for seg, raw in zip(template, path, strict=True) if seg[1:-1] in names}


def _input_refusal(scope: Scope, operation: str | None) -> tuple[str, str] | None:
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes | bytearray) and not _utf8(bytes(raw_path).split(b"?", 1)[0]):
        return "invalid_characters", "the path is not UTF-8 once percent-decoded"
    for name, value in (scope.get("path_params") or {}).items():
        if isinstance(value, str) and len(value) > MAX_PATH_PARAM:
            return "path_parameter_too_long", f"{name} is longer than {MAX_PATH_PARAM} characters"
        if isinstance(value, str) and "\x00" in value:  # PostgreSQL text cannot hold it
            return "invalid_characters", f"{name} contains a NUL character"
    for name, raw in _path_integers(scope).items():
        if (bad := _integer_refusal("path", name, raw)) is not None:
            return bad
    qs = scope.get("query_string", b"")
    if not qs or operation is None:
        return None
    if not _utf8(qs):
        return "invalid_characters", "the query string is not UTF-8 once percent-decoded"
    allowed = _query_parameters(scope["app"]).get(operation, {})
    seen: set[str] = set()
    for name, value in parse_qsl(qs.decode("latin-1"), keep_blank_values=True):
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            return "unknown_query_parameter", f"unknown query parameter {name[:50]!r} (this operation takes: {known})"
        if name in seen:  # every query parameter is one value: which of two would be meant is not for us to guess
            return "repeated_query_parameter", f"query parameter {name[:50]!r} is given more than once"
        seen.add(name)
        if len(value) > MAX_QUERY_VALUE:
            return "query_parameter_too_long", f"{name} is longer than {MAX_QUERY_VALUE} characters"
        if "\x00" in value:
            return "invalid_characters", f"{name} contains a NUL character"
        if allowed[name] and (bad := _integer_refusal("query", name, value)) is not None:
            return bad
    return None


def _guard_lets_through(operation: str | None, principal: Principal | None) -> bool:
    """What api.authz.authorize will decide; bodies of requests it refuses are never read as JSON."""
    allowed = MATRIX.get(operation or "")
    return allowed is PUBLIC or (allowed is not None and principal is not None and principal.kind in allowed)


class SecurityMiddleware(ASGIMiddleware):
    scopes = ("http",)  # type: ignore[assignment]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keyed = TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst)
        self.anonymous = TokenBuckets(settings.anonymous_rate_limit_per_second,
                                      settings.anonymous_rate_limit_burst)
        self.replays = ReplayGate()

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        user = scope.get("user")
        principal = user if isinstance(user, Principal) else None
        method = method_of(scope)
        operation = _operation(scope)
        audited = operation is not None and audit_policy.is_administrative(operation, principal, method)
        req = _Request()
        if not audited or operation is None:
            await self._respond(scope, receive, send, next_app, principal, operation, req)
            return
        # From here on everything -- rate limit, input checks, decoding, the signature, the handler -- runs
        # inside the audited section: whatever it answers or raises, the row is written (see _audited).
        await self._audited(scope, send, lambda send_: self._respond(scope, receive, send_, next_app, principal,
                                                                     operation, req), operation, principal, req)

    async def _respond(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp,
                       principal: Principal | None, operation: str | None, req: _Request) -> None:
        """Every check before the handler, then the handler (through the replay gate when keyed). Fills
        `req` with what the audit row records as it learns it."""
        if principal is not None:
            wait = self.keyed.take(principal.key_id)
        else:
            client = scope.get("client")
            wait = self.anonymous.take(client[0] if client else "")
        if wait:
            await send_problem(scope, send, 429, "rate_limited", "too many requests for this key; slow down",
                               {"Retry-After": retry_after(wait)})
            return

        method = method_of(scope)
        mutation = method not in audit_policy.SAFE_METHODS
        # Bodies the guard will refuse (no key, wrong role) are never decoded: 401/403 come first.
        decoding = mutation and _guard_lets_through(operation, principal)
        # A read takes no body at all (0 bytes); its body is read only to refuse one, as the guard lets it through.
        reading = not mutation and operation is not None and _guard_lets_through(operation, principal)
        rt = scope["app"].state.rt

        too_big = False
        if decoding or reading or req.audited:
            too_big = _declared_too_big(scope)  # 413 at once, not after waiting for a body that may never come
            if not too_big:
                req.body, receive, too_big = await _buffer(receive)
        body = req.body

        refusal: tuple[int, str, str] | None = None
        bad_input = _input_refusal(scope, operation)
        if too_big:
            refusal = (413, "payload_too_large", f"the body is larger than {MAX_BODY} bytes")
        elif bad_input is not None:
            refusal = (422, *bad_input)
        elif (bad_header := _header_refusal(scope)) is not None:
            refusal = (422, *bad_header)
        elif decoding and body and not _json_media_type(scope):
            refusal = (415, "unsupported_media_type", "a request body is JSON: send it as Content-Type: "
                                                      "application/json (UTF-8)")
        elif decoding and body:
            try:
                req.decoded = json_body.decode(body)
            except json_body.BodyRefused as exc:
                refusal = (422, exc.code, exc.message)
            else:
                if req.decoded != {} and operation in _bodiless(scope["app"]):
                    refusal = (422, "body_not_allowed", "this operation takes no request body: send none, or {}")
        elif reading and body:
            refusal = (422, "body_not_allowed", "this operation takes no request body: send none")
        signature = _header(scope, b"x-envx-signature") if decoding and principal is not None else None
        if refusal is None and decoding and principal is not None:
            if signature is None and await requires_signatures(scope["app"].state, principal.participant_id):
                refusal = (401, "signature_required", "your operator requires every mutation to be signed: send "
                                                      "an X-Envx-Signature header (see README, Signed instructions)")
            elif signature is not None:
                try:
                    async with rt.tx() as conn:
                        req.signed = await verify_and_record(
                            conn, principal, signature, method=method, target=request_target(scope), body=body,
                            operation=operation, max_skew=self.settings.signature_max_skew_seconds)
                except SignatureError as exc:
                    refusal = (exc.status, exc.code, exc.message)
        if refusal is not None:
            await send_problem(scope, send, *refusal)
            return
        key = (replays.idempotency_key(scope, req.decoded) if decoding and principal is not None
               and operation is not None and operation in replays.keyed_operations(scope["app"]) else None)
        if principal is None or not mutation:
            await next_app(scope, receive, send)
            return
        # A mutation counts as under way for its participant until answered: a suspension waits for it, and
        # once a suspension has begun the participant's new mutations are refused (exchange/core/suspension.py).
        async with rt.mutations.mutation(principal.participant_id) as allowed:
            if not allowed:
                await send_problem(scope, send, 401, "unauthenticated", "this key's participant is suspended")
                return
            with provenance(**({"signed_instruction": req.signed} if req.signed is not None else {})):
                if key is not None:
                    await self.replays.run(scope, receive, send, next_app, principal, key, body, operation)
                else:
                    await next_app(scope, receive, send)

    async def _audited(self, scope: Scope, send: Send, run: Callable[[Send], Awaitable[None]], operation: str,
                       principal: Principal | None, req: _Request) -> None:
        # Hold the (small) response until its audit row is committed; without the row, no answer. An
        # exception anywhere in `run` (a check before the handler, the handler itself) is recorded as the
        # 500 the client will get, then raised on to the app's error handler.
        messages: list[Message] = []
        status = 500

        async def capture(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            messages.append(msg)

        req.audited = True
        recorded = False
        try:
            await run(capture)
        finally:
            response_body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
            ev = audit_policy.event(scope, operation, principal, status,
                                    audit_policy.request_detail(req.body, req.decoded), response_body, req.signed)
            try:
                async with scope["app"].state.rt.tx() as conn:
                    # Keyless and refused, or rate limited: counted per address and minute (see audit.py).
                    if status == 429 or (principal is None and status >= 400):
                        await audit_store.record_anonymous(conn, ev)
                    else:
                        await audit_store.append(conn, ev)
                recorded = True
            except Exception:
                log.critical("audit trail write failed for %s %s (%s)", ev.method, ev.path, ev.outcome, exc_info=True)
        if not recorded:
            await send_problem(scope, send, 503, "audit_unavailable",
                               "the audit trail could not record this request, so it is not answered; if it "
                               "was a mutation, retry with the same Idempotency-Key to learn its outcome",
                               {"Retry-After": "1"})
            return
        for m in messages:
            await send(m)
