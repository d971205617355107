"""RFC 9457 problem details for every failure, each with a machine `code`. Never a bare 500 for input."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from api.encoding import Answer
from exchange.core.database import database_unreachable
from exchange.core.errors import DomainError
from exchange.core.refusals import Refusal

log = logging.getLogger("envx.api")
PROBLEM = "application/problem+json"
TYPE_BASE = "https://envx.example/problems/"

# The codes of Litestar's own HTTP errors, by status (400 is a malformed body or parameter: 422 here).
_HTTP_CODES = {401: Refusal.UNAUTHENTICATED, 403: Refusal.FORBIDDEN, 404: Refusal.NOT_FOUND,
               405: Refusal.METHOD_NOT_ALLOWED, 413: Refusal.PAYLOAD_TOO_LARGE, 422: Refusal.VALIDATION_ERROR,
               429: Refusal.RATE_LIMITED, 500: Refusal.INTERNAL_ERROR, 503: Refusal.UNAVAILABLE}
_TITLES = {401: "Unauthenticated", 403: "Forbidden", 404: "Not found", 409: "Conflict", 415: "Unsupported media type",
           422: "Unprocessable request", 503: "Service unavailable", 500: "Internal error"}


def path_is_utf8(scope: Any) -> bool:
    """Whether the path as sent decodes as UTF-8 once percent-decoded (else Python's unquoting has put
    U+FFFD where the bytes were)."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes | bytearray):
        return True
    try:
        unquote_to_bytes(bytes(raw).split(b"?", 1)[0]).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def instance(scope: Any) -> str:
    """A problem's `instance`: the decoded path, or -- when the path is not UTF-8 -- the path as sent,
    percent-encoded, so that no U+FFFD the client never sent is echoed."""
    if path_is_utf8(scope):
        return str(scope.get("path", ""))
    return quote(unquote_to_bytes(bytes(scope["raw_path"]).split(b"?", 1)[0]), safe="/")


def problem(status: int, code: str, detail: str, request: Request | None = None, **extra: Any) -> Response:
    """A problem document; `code` is from the closed set and `status` must be its (else UnknownRefusal)."""
    code = Refusal.of(code, status).value
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": _TITLES.get(status, code.replace("_", " ").capitalize()),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if request is not None:
        body["instance"] = instance(request.scope)
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Answer(body, status_code=status, media_type=PROBLEM, headers=headers)


def domain_error(request: Request, exc: DomainError) -> Response:
    return problem(exc.status, exc.code, exc.message, request, **exc.extra)


def validation_error(request: Request, exc: ValidationException) -> Response:
    errors = exc.extra if isinstance(exc.extra, list) else []
    return problem(422, "validation_error", exc.detail or "the request is not valid", request,
                   errors=[_clean(e) for e in errors][:20])


def _clean(e: Any) -> Any:
    if isinstance(e, dict):
        return {k: str(v) if not isinstance(v, str | int | float | bool | None | list | dict) else v
                for k, v in e.items()}
    return str(e)


def http_error(request: Request, exc: HTTPException) -> Response:
    if not path_is_utf8(request.scope):  # no route matched it, or any other: the request edge's refusal
        return problem(422, "invalid_characters", "the path is not UTF-8 once percent-decoded", request)
    status = exc.status_code
    if status == 400:  # Litestar reports malformed bodies and parameters as 400; they are 422 here
        status = 422
    # Any other status Litestar may use: a client error we name no better, or a server error (a bug).
    code = _HTTP_CODES.get(status) or (Refusal.BAD_REQUEST if status < 500 else Refusal.INTERNAL_ERROR)
    status = code.status
    return problem(status, code, exc.detail or code.replace("_", " "), request,
                   **({"errors": [_clean(e) for e in exc.extra][:20]} if isinstance(exc.extra, list) else {}))


def internal_error(request: Request, exc: Exception) -> Response:
    if database_unreachable(exc):
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        resp = problem(503, "database_unavailable",
                       "the database cannot be reached right now; nothing was applied twice, retry with the "
                       "same Idempotency-Key", request)
        resp.headers["Retry-After"] = "1"
        return resp
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Response({"type": TYPE_BASE + "internal_error", "title": "Internal error", "status": 500,
                     "detail": "an internal error occurred; nothing was applied twice, retry with the same key",
                     "code": "internal_error"}, status_code=HTTP_500_INTERNAL_SERVER_ERROR, media_type=PROBLEM)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    DomainError: domain_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: internal_error,
}
__all__ = ["EXCEPTION_HANDLERS", "MediaType", "problem"]
