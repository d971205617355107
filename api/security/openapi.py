"""Declare the problem-details responses every operation may give, so the OpenAPI document is honest;
the bounds of every integer parameter, on the integer; and the links from a created object's answer to
the operations on it.

Controllers return plain dicts; their failures come from api/problems.py (and the security middleware)
as application/problem+json with a machine `code`. Rather than repeat `responses=` on ~100 handlers,
this adds them to every HTTP handler once, before the app is built (handlers' own entries win).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_args

from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Link, OpenAPI, OpenAPIResponse, OpenAPIType, Schema
from litestar.params import KwargDefinition
from litestar.routes import HTTPRoute
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
    415: "A body not declared as JSON (Content-Type other than application/json)",
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


def _models(annotation: Any) -> Iterable[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _models(arg)


def _request_models(app: Litestar) -> set[type[BaseModel]]:
    out: set[type[BaseModel]] = set()
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for h in route.route_handlers:
                data = h.parsed_fn_signature.parameters.get("data")
                if data is not None:
                    out.update(_models(data.annotation))
    return out


def _pydantic_components(app: Litestar, components: dict[str, Any]) -> None:
    """Litestar's own rendering of request models loses what matters for clients and fuzzers: unknown
    fields are refused (extra="forbid" -> additionalProperties: false), bounds on optional strings, and it
    renders dict[str, Any] as an array. Pydantic's JSON Schema of the same models says it right."""
    by_title: dict[str, list[str]] = {}
    for key, schema in components.items():
        title = schema.title if isinstance(schema, Schema) else None
        by_title.setdefault(title or key, []).append(key)
    for model in sorted(_request_models(app), key=lambda m: m.__name__):
        js = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in {**js.pop("$defs", {}), model.__name__: js}.items():
            keys = by_title.get(name, [])
            if len(keys) <= 1:  # ambiguous titles are left as Litestar made them
                components[keys[0] if keys else name] = _RawSchema(sub)


class _RawSchema(Schema):
    """A component given as plain JSON Schema (from pydantic), passed through to the document as is."""

    def __init__(self, raw: dict[str, Any]) -> None:
        super().__init__(title=raw.get("title"))
        self._raw = raw

    def to_schema(self) -> dict[str, Any]:
        return self._raw


def _integer_bounds(app: Litestar, doc: OpenAPI) -> None:
    """Litestar writes the bounds of an optional parameter (`int | None`) beside its `oneOf` rather than on
    the integer, and drops a bound of 0 there. Put each declared bound on the integer itself, so clients
    and fuzzers see it (tests/security/test_hostile_input.py checks every integer has both)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        item = (doc.paths or {}).get(route.path_format)
        for handler in route.route_handlers:
            for method in handler.http_methods:
                op = getattr(item, method.lower(), None) if item is not None else None
                declared = {p.name: p for p in (op.parameters or []) if hasattr(p, "schema")} if op else {}
                for name, field in handler.parsed_fn_signature.parameters.items():
                    kw, param = field.kwarg_definition, declared.get(name)
                    if not isinstance(kw, KwargDefinition) or param is None or not isinstance(param.schema, Schema):
                        continue
                    options = param.schema.one_of or [param.schema]
                    for sub in options:
                        if isinstance(sub, Schema) and sub.type == OpenAPIType.INTEGER:
                            lo = kw.ge if kw.ge is not None else (kw.gt + 1 if kw.gt is not None else None)
                            hi = kw.le if kw.le is not None else (kw.lt - 1 if kw.lt is not None else None)
                            sub.minimum = int(lo) if lo is not None else sub.minimum
                            sub.maximum = int(hi) if hi is not None else sub.maximum
                    if param.schema.one_of:
                        param.schema.minimum = param.schema.maximum = None


ID = "$response.body#/id"
_ACTION = {op: {"action_id": ID} for op in ("getOperatorAction", "approveOperatorAction", "rejectOperatorAction")}
# What a created object's answer leads to (OpenAPI links): clients and the stateful fuzzer
# (tests/security/test_schemathesis.py) follow them to act on the object just made. A maker-checker
# operation's 202 (a pending proposal) leads to the proposal; its 201 (maker-checker off) to the object.
# source operationId -> {status: {target operationId: {parameter: runtime expression}}}
LINKS: dict[str, dict[str, dict[str, dict[str, str]]]] = {
    "createParticipant": {"201": {op: {"participant_id": ID} for op in (
        "getParticipant", "createKey", "listKeys", "listEnrollmentCodes", "issueEnrollmentCode",
        "registerSigningKey", "listParticipantSigningKeys", "getSignaturePolicy")}, "202": _ACTION},
    "createKey": {"201": {"revokeKey": {"participant_id": "$request.path.participant_id", "key_id": ID}}},
    "registerSigningKey": {"201": {"revokeSigningKey": {"participant_id": "$request.path.participant_id",
                                                        "key_id": ID}}},
    "requestIssuance": {"201": {op: {"request_id": ID} for op in ("getIssuance", "approveIssuance",
                                                                   "rejectIssuance")}},
    **{maker: {"202": _ACTION} for maker in ("recordDeposit", "recordWithdrawal", "defineInstrument", "defineMarket",
                                             "amendMarket", "issueEnrollmentCode", "reinstateParticipant",
                                             "revaluePledges", "setPledgeHaircut")},
    "filePledge": {"201": {op: {"pledge_id": ID} for op in (
        "getPledge", "listPledgeEvents", "confirmPledge", "declinePledge", "withdrawPledge", "amendPledge",
        "extendPledge", "topUpPledge", "releasePledge", "filePledgeClaim")}},
    "createFreeze": {"201": {op: {"freeze_id": ID} for op in ("getFreeze", "renewFreeze", "deductFreeze",
                                                               "unfreeze")}},
    "createRestorationOrder": {"201": {op: {"order_id": ID} for op in (
        "getRestorationOrder", "listRestorationReminders", "getRestorationCertificate",
        "getRestorationCertificatePdf", "purchaseForRestoration", "takeForRestoration")}},
    "placeOrder": {"201": {op: {"market_id": "$request.path.market_id", "order_id": "$response.body#/order/id"}
                           for op in ("getOrder", "cancelOrder", "reduceOrder")}},
    "createTransfer": {"201": {op: {"seq": "$response.body#/entry_seq"} for op in ("getLedgerEntry",
                                                                                   "getEntryReceipt")}},
}


def _declare_links(doc: OpenAPI) -> None:
    ops = {op.operation_id: op for item in (doc.paths or {}).values()
           for op in (item.get, item.put, item.post, item.delete, item.patch) if op is not None}
    for source, by_status in LINKS.items():
        for status, targets in by_status.items():
            response = (ops[source].responses or {}).get(status)
            if isinstance(response, OpenAPIResponse):
                response.links = {target: Link(operation_id=target, parameters=dict(params))
                                  for target, params in targets.items() if target in ops}


_improved: dict[tuple[str, ...], OpenAPI] = {}


def improve_openapi(app: Litestar) -> None:
    """Build the OpenAPI document once per process (per set of routes) with pydantic's request schemas,
    and hand the same read-only document to every app built afterwards: building it costs ~50 ms, too
    much to pay for each of the hundreds of apps the test suite starts."""
    plugin = app.plugins.get(OpenAPIPlugin)
    key = tuple(sorted(f"{r.path} {sorted(getattr(r, 'methods', ()))}" for r in app.routes))
    cached = _improved.get(key)
    if cached is not None and hasattr(plugin, "_openapi"):
        plugin._openapi = cached  # the plugin's cache slot; Litestar rebuilds it only if routes change
        return
    doc = plugin.provide_openapi()
    if doc.components is not None and isinstance(doc.components.schemas, dict):
        _pydantic_components(app, doc.components.schemas)
    _integer_bounds(app, doc)
    _declare_links(doc)
    _improved[key] = doc
