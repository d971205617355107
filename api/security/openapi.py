"""Declare the problem-details responses every operation may give, so the OpenAPI document is honest.

Controllers return plain dicts; their failures come from api/problems.py (and the security middleware)
as application/problem+json with a machine `code`. Rather than repeat `responses=` on ~100 handlers,
this adds them to every HTTP handler once, before the app is built (handlers' own entries win).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from pydantic import BaseModel, ConfigDict, Field

from api.problems import PROBLEM


class Problem(BaseModel):
    """RFC 9457 problem details; `code` is the machine-readable reason. Some problems add fields."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="machine code, e.g. role_forbidden, insufficient_available, rate_limited")
    instance: str | None = None


_REASONS = {
    400: "Never sent (malformed input is 422); kept so generated clients share one error type",
    401: "No valid API key (`unauthenticated`), or a signed-instruction problem (`signature_*`)",
    403: "Your role may not call this operation (`role_forbidden`) or see this object (`forbidden`)",
    404: "Unknown object",
    409: "Refused by the state of the registry (business rule, idempotency conflict)",
    413: "Body larger than 1 MB",
    422: "Invalid input (body, path or query), including unknown fields and parameters",
    429: "Rate limit of your key exceeded; see Retry-After",
    503: "Temporarily unavailable (ledger writer, checkpoint pending); retry with the same Idempotency-Key",
}


def _spec(status: int) -> ResponseSpec:
    return ResponseSpec(data_container=Problem, media_type=PROBLEM, description=_REASONS[status],
                        generate_examples=False)


PROBLEM_RESPONSES = {status: _spec(status) for status in _REASONS}


def _handlers(routes: Iterable[Any]) -> Iterable[HTTPRouteHandler]:
    for r in routes:
        if isinstance(r, HTTPRouteHandler):
            yield r
        elif isinstance(r, type):
            for name in dir(r):
                v = getattr(r, name, None)
                if isinstance(v, HTTPRouteHandler):
                    yield v


def declare_problem_responses(routes: Iterable[Any]) -> None:
    """Idempotent: safe to call for every app built in the process."""
    for h in _handlers(routes):
        h.responses = {**PROBLEM_RESPONSES, **(h.responses or {})}
