"""Check every cell of the authorization matrix against the running app, operation by operation,
generated from the OpenAPI document (so a new endpoint is covered the day it ships).

For each operation and each participant kind, plus a caller without a key, one request is made with
a key of that kind, path parameters naming objects that exist where possible (the caller's own
participant and account, a pledge, a freeze, an order ...) and a body built from the operation's
request schema. The verdicts:

- a kind the matrix allows never gets 401, nor 403 `role_forbidden` (it may get 403 `forbidden`,
  404, 409 or 422 for object-level or business reasons: those come after the guard);
- a kind the matrix does not allow always gets 403 `role_forbidden`;
- without a key: PUBLIC operations answer without 401/403, the rest 401 `unauthenticated`;
- nothing answers 5xx;
- every operation in the spec is in the matrix, and every matrix entry is an operation.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from litestar.handlers import WebsocketRouteHandler

from api.authz import MATRIX, PUBLIC, operation_of
from api.security.signatures import generate_key
from tests.helpers import fresh_uscc, ticket

ROLES = ("operator", "issuer", "enterprise", "bank", "court", "auditor")
INSTRUMENT = "FCT-AZ"
MARKET = f"{INSTRUMENT}.continuous"
_keys = itertools.count(1)


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str
    path_params: tuple[str, ...]
    body_schema: dict[str, Any] | None


@dataclass
class World:
    """Callers of every kind and the objects path parameters name."""

    tokens: dict[str, str]
    ids: dict[str, int]
    accounts: dict[str, int]
    objects: dict[str, int | str] = field(default_factory=dict)
    spare_keys: dict[str, int] = field(default_factory=dict)  # API keys each role may revoke
    spare_signing_keys: dict[str, int] = field(default_factory=dict)


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    calls: int = 0


def operations(spec: dict[str, Any]) -> list[Operation]:
    out = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or "operationId" not in op:
                continue
            params = tuple(p["name"] for p in op.get("parameters", []) if p.get("in") == "path")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            out.append(Operation(op["operationId"], method.upper(), path, params, body))
    return sorted(out, key=lambda o: (o.path, o.method))


def websocket_operations(app: Any) -> set[str]:
    """WebSocket routes are not in the OpenAPI document; the matrix guards them all the same."""
    return {op for r in app.routes if isinstance(h := getattr(r, "route_handler", None), WebsocketRouteHandler)
            and (op := operation_of(h)) is not None}


def coverage_problems(spec: dict[str, Any], app: Any) -> list[str]:
    in_spec = {o.operation_id for o in operations(spec)}
    known = in_spec | websocket_operations(app)
    problems = [f"{op}: in the OpenAPI document but not in MATRIX (refused to everyone)"
                for op in sorted(in_spec - MATRIX.keys())]
    problems += [f"{op}: in MATRIX but no such operation" for op in sorted(MATRIX.keys() - known)]
    return problems


# --- inputs ---------------------------------------------------------------------------------------------


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for key in ("oneOf", "anyOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _resolve(options[0], spec) if options else {"type": "null"}
    return schema


_NAMED = {"quantity": "1", "amount": "1.00", "price": "1.00", "secured_amount": "1000.00", "outstanding": "1.00",
          "fee": "0.00", "code": "AZ-NEW", "instrument": INSTRUMENT, "url": "https://example.com/hook",
          "term_start": date.today().isoformat(), "term_end": (date.today() + timedelta(days=30)).isoformat(),
          "as_of": date.today().isoformat(), "cure_deadline": (date.today() + timedelta(days=3)).isoformat()}


def sample(schema: dict[str, Any], spec: dict[str, Any], world: World, name: str = "") -> Any:
    """A small value that satisfies the schema where it is easy; business validity is not the point."""
    s = _resolve(schema, spec)
    if name == "public_key":
        return generate_key()[1]
    if name in _NAMED and s.get("type") in ("string", None):
        return _NAMED[name]
    if "enum" in s:
        return s["enum"][0]
    if "const" in s:
        return s["const"]
    t = s.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t == "object" or "properties" in s:
        props = s.get("properties", {})
        return {k: sample(props[k], spec, world, k) for k in s.get("required", []) if k in props}
    if t == "array":
        n = s.get("minItems", 0)
        return [sample(s.get("items", {}), spec, world, name) for _ in range(n)]
    if t == "integer":
        if name.endswith("_id") or name in ("to_participant", "holder_id"):
            return world.ids["enterprise"]
        return max(int(s.get("minimum", 1)), 1) if s.get("minimum", 1) <= 1 else int(s["minimum"])
    if t == "number":
        return s.get("minimum", 1)
    if t == "boolean":
        return False  # never switch on require_signatures or the like for the caller
    if t == "string":
        if s.get("format") == "date":
            return date.today().isoformat()
        if s.get("format") == "date-time":
            return f"{date.today().isoformat()}T00:00:00Z"
        return "x" * max(int(s.get("minLength", 1)), 1)
    return None


def path_values(op: Operation, role: str, world: World) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in op.path_params:
        if p == "participant_id":
            out[p] = world.ids[role] if role in world.ids else world.ids["enterprise"]
        elif p == "key_id":
            spare = world.spare_signing_keys if "SigningKey" in op.operation_id else world.spare_keys
            out[p] = spare.get(role, 1)
        elif p == "account_id":
            out[p] = world.accounts.get(role, world.accounts["enterprise"])
        elif world.objects.get(p) is not None:
            out[p] = world.objects[p]
        elif p in ("code", "instrument"):
            out[p] = INSTRUMENT
        elif p == "market_id":
            out[p] = MARKET
        else:
            out[p] = 1  # an id that may not exist: allowed roles then get 404, which is not a guard refusal
    return out


# --- the check ------------------------------------------------------------------------------------------


def _code(resp: Any) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def call(client: Any, op: Operation, role: str | None, world: World, spec: dict[str, Any]) -> Any:
    path = op.path
    for k, v in path_values(op, role or "enterprise", world).items():
        path = path.replace("{" + k + "}", str(v))
    headers = {"Idempotency-Key": f"authz-{next(_keys)}"}
    if role is not None:
        headers["Authorization"] = f"Bearer {world.tokens[role]}"
    kwargs: dict[str, Any] = {"headers": headers}
    if op.method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = sample(op.body_schema, spec, world) if op.body_schema else {}
    return client.request(op.method, path, **kwargs)


def check(client: Any, world: World, spec: dict[str, Any], only: set[str] | None = None) -> Verdict:
    v = Verdict()
    for op in operations(spec):
        if only is not None and op.operation_id not in only:
            continue
        allowed = MATRIX.get(op.operation_id, frozenset())
        for role in (*ROLES, None):
            resp = call(client, op, role, world, spec)
            v.calls += 1
            status, code = resp.status_code, _code(resp)
            who = role or "no key"
            cell = f"{op.operation_id} as {who}: {status} {code}"
            if status >= 500:
                v.server_errors.append(f"{cell} {resp.text[:200]}")
                continue
            guard_refused = status == 403 and code == "role_forbidden"
            if allowed is PUBLIC:
                if guard_refused or status == 401:
                    v.violations.append(f"{cell} (public operation refused)")
            elif role is None:
                if status != 401 or code != "unauthenticated":
                    v.violations.append(f"{cell} (expected 401 unauthenticated without a key)")
            elif role in allowed:
                if guard_refused or status == 401:
                    v.violations.append(f"{cell} (allowed by MATRIX, refused by the guard)")
            elif not guard_refused:
                v.violations.append(f"{cell} (not allowed by MATRIX, expected 403 role_forbidden)")
    return v


# --- the world ------------------------------------------------------------------------------------------


def build_world(api: Any) -> World:
    """Participants of every kind with keys, and one of each object the path parameters name. Creation
    steps that fail (another module still in progress) leave that object out: its operations are then
    called with an id that does not exist, which still tells the guard's answer apart."""
    tokens: dict[str, str] = {"operator": api.token}
    me = api.get("/v1/whoami").json()
    ids = {"operator": me["participant_id"]}
    usccs: dict[str, str] = {}
    accounts = {"operator": me["holding_account"]}
    for role in ROLES[1:]:
        p = api.participant(f"authz {role}", role, uscc=fresh_uscc())
        tokens[role], ids[role], accounts[role] = p["token"], p["id"], p["holding_account"]
        usccs[role] = p["uscc"]
    w = World(tokens, ids, accounts)
    as_ = {role: api.as_(tokens[role]) for role in ROLES}
    for role in ROLES:  # a spare API key (minted by the role's own key) and signing key per role, to revoke
        w.spare_keys[role] = api.ok(as_[role].post(f"/v1/participants/{ids[role]}/keys", {"label": "spare"}))["id"]
        w.spare_signing_keys[role] = api.ok(as_[role].post(f"/v1/participants/{ids[role]}/signing-keys",
                                                     {"public_key": generate_key()[1], "label": "spare"}))["id"]
    api.instrument(INSTRUMENT)
    api.authorise_issuer(INSTRUMENT, ids["issuer"])
    req = api.ok(as_["issuer"].post("/v1/issuances", {"instrument": INSTRUMENT, "holder_id": ids["enterprise"],
                                                       "quantity": "1000", "attributes": ticket(1)}))
    api.ok(api.post(f"/v1/issuances/{req['id']}/approve", {}))
    pending = api.ok(as_["issuer"].post("/v1/issuances", {"instrument": INSTRUMENT, "holder_id": ids["enterprise"],
                                                           "quantity": "5", "attributes": ticket(2)}))
    w.objects["request_id"] = pending["id"]
    for role in ("enterprise", "bank"):
        api.ok(api.post("/v1/cash/deposits", {"participant_id": ids[role], "amount": "100000.00",
                                              "bank_reference": f"authz-{role}"}))
    api.ok(api.post("/v1/markets", {"instrument": INSTRUMENT, "mode": "continuous",
                                    "settings": {"sessions": [], "t_plus_1": False}}))
    api.ok(api.post(f"/v1/markets/{MARKET}/session", {"action": "open"}))
    order = as_["enterprise"].post(f"/v1/markets/{MARKET}/orders", {"side": "sell", "price": "50.00",
                                                                      "quantity": "10"})
    if order.status_code in (200, 201):
        w.objects["order_id"] = order.json()["order"]["id"]
    w.objects["seq"] = 1
    action = api.propose("/v1/cash/deposits", {"participant_id": ids["enterprise"], "amount": "1.00",
                                               "bank_reference": "authz-pending"})
    if action.status_code == 202:
        w.objects["action_id"] = action.json()["id"]
    today = date.today()
    pledge = as_["bank"].post("/v1/pledges", {
        "pledgor_id": ids["enterprise"], "pledgor_identifier": usccs["enterprise"], "instrument": INSTRUMENT,
        "quantity": "100", "loan_contract": "AZ-1",
        "secured_amount": "1000.00", "term_start": today.isoformat(),
        "term_end": (today + timedelta(days=365)).isoformat(), "references": []})
    assert pledge.status_code in (200, 201), pledge.text  # (else the pledge operations go unexercised)
    w.objects["pledge_id"] = pledge.json()["id"]
    freeze = as_["court"].post("/v1/freezes", {
        "holder_id": ids["enterprise"], "holder_identifier": usccs["enterprise"], "instrument": INSTRUMENT,
        "quantity": "10", "case_number": "(2025)闽0402执1号",
        "notice_number": "N-1", "term_start": today.isoformat(), "term_end": (today + timedelta(days=365)).isoformat()})
    assert freeze.status_code in (200, 201), freeze.text
    w.objects["freeze_id"] = freeze.json()["id"]
    return w
