"""Hostile input against every operation, generated from the OpenAPI document (so a new endpoint is
covered the day it ships), sent with a key of a role the authorization matrix allows:

- every mutation: a nesting bomb, duplicate keys, a lone surrogate; for each field of its body schema
  (nested ones too): integers beyond int64 and at 2^53, one past the declared bound, booleans, floats
  and numeric strings for integers; far dates, datetimes for dates and numbers for dates; padded,
  signed, full-width and Arabic-Indic digits in decimal strings; integers for strings and for booleans;
- every operation: each integer path and query parameter beyond int64, at 2^53, written as "1e3",
  "14.0", " 1", "01", "-1", "true" and in Arabic-Indic or full-width digits.

Every answer must be a 4xx problem document (application/problem+json) with a machine `code`, never a
5xx, and carry no integer beyond ±(2^53 - 1); and afterwards the registry must be as it was: the
ledger's entry count and head hash, every table's row count — except the audit trail, which must have
grown by exactly the administrative requests among them (api/security/audit.py).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from litestar.testing import TestClient

from api.authz import MATRIX, PUBLIC
from api.schemas.common import DECIMAL_PATTERN
from api.security.audit import ADMIN_OPERATIONS, SAFE_METHODS
from exchange.core.settings import Settings
from tests.helpers import Api
from tests.security import authz_checker as az
from tests.security.helpers import sql, unsafe_integers

BOMB = "[" * 5000 + "]" * 5000
INT64_PLUS_1 = 2**63
INTEGERS = [INT64_PLUS_1, 2**53, -(2**63) - 1, True, False, 14.0, 1000.0, "14", "1e3"]
DATES = ["9999-12-31", "0001-01-01", "1999-12-31", "2200-01-01", "2025-02-30", "2025-01-01T00:00:00Z",
         "2025-01-01 ", "２０２５-01-01", 20250101, True]
DATETIMES = ["9999-12-31T00:00:00Z", "2025-01-01", "2025-01-01T00:00:00", 1700000000, "٢٠٢٥-01-01T00:00:00Z"]
DECIMALS = [" 1", "1 ", "1\n", "\u30001", "１", "١", "१", "+1", "-1", "1e1", "01", "1.", "1_0", 1, 1.5, True]
PARAM_INTEGERS = [str(INT64_PLUS_1), str(2**53), "1e3", "14.0", "%201", "01", "-1", "true", "%D9%A1",
                  "%EF%BC%91", "1_0"]
# Tables a refused request may write to: the audit trail (checked exactly below) and nothing else.
AUDIT = frozenset({"audit_log", "audit_anonymous_refusals"})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:  # thousands of requests with one key: no rate limit in the way
    return Settings(data_dir=tmp_path, database_url=None, scheduler=False, rate_limit_per_second=0,
                    anonymous_rate_limit_per_second=0)


def _role(operation_id: str) -> str:
    allowed = MATRIX[operation_id]
    if allowed is PUBLIC or "operator" in allowed:
        return "operator"
    return next(r for r in az.ROLES if r in allowed)


def _audited(operation_id: str, role: str, method: str) -> bool:
    return operation_id in ADMIN_OPERATIONS or (method not in SAFE_METHODS and role == "operator")


def _leaves(schema: dict[str, Any], spec: dict[str, Any], path: tuple[Any, ...] = (),
            depth: int = 0) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """(path in the body, schema) of every scalar field, nested objects and list items included."""
    s = az._resolve(schema, spec)
    if depth > 4:
        return []
    t = s.get("type")
    if t == "object" or "properties" in s:
        return [leaf for k, sub in s.get("properties", {}).items()
                for leaf in _leaves(sub, spec, (*path, k), depth + 1)]
    if t == "array":
        return _leaves(s.get("items", {}), spec, (*path, 0), depth + 1)
    return [(path, s)] if t in ("integer", "string", "boolean") else []


def _hostile_values(s: dict[str, Any]) -> list[Any]:
    t = s.get("type")
    if t == "integer":
        past = [s["maximum"] + 1] if "maximum" in s else []
        return [*INTEGERS, *past, *([s["minimum"] - 1] if "minimum" in s else [])]
    if t == "boolean":
        return [1, 0, "true", "false"]
    if s.get("format") == "date":
        return DATES
    if s.get("format") == "date-time":
        return DATETIMES
    if s.get("pattern") == DECIMAL_PATTERN:
        return DECIMALS
    if "enum" in s:
        return [7, True, s["enum"][0].upper() + " " if isinstance(s["enum"][0], str) else "x"]
    return [7, True, 1.5]  # a string field


def _container(schema: dict[str, Any], spec: dict[str, Any], world: az.World, name: str) -> Any:
    s = az._resolve(schema, spec)
    if s.get("type") == "array":
        return [_container(s.get("items", {}), spec, world, name)]
    if s.get("type") == "object" or "properties" in s:
        return az.sample(s, spec, world, name)
    return az.sample(s, spec, world, name)


def _with(base: Any, schema: dict[str, Any], spec: dict[str, Any], world: az.World, path: tuple[Any, ...],
          value: Any) -> Any:
    """`base` with the field at `path` set to `value`, building the containers on the way."""
    s = az._resolve(schema, spec)
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = s.get("items", {})
        out = list(base) if isinstance(base, list) and base else [_container(items, spec, world, "")]
        out[0] = _with(out[0], items, spec, world, rest, value)
        return out
    sub = s.get("properties", {})[head]
    out = dict(base) if isinstance(base, dict) else {}
    current = out.get(head, _container(sub, spec, world, head) if rest else None)
    out[head] = _with(current, sub, spec, world, rest, value)
    return out


def _bodies(op: az.Operation, spec: dict[str, Any], world: az.World) -> list[tuple[str, bytes]]:
    base = az.sample(op.body_schema, spec, world) if op.body_schema else {}
    base = base if isinstance(base, dict) else {}
    text = json.dumps(base, ensure_ascii=False)
    first = next(iter(base), "client_id")
    out = [
        ("nesting bomb", json.dumps({**base, "x": 0}).replace("0}", BOMB + "}").encode()),
        ("raw nesting bomb", BOMB.encode()),
        ("duplicate key", (text[:-1] + ("," if base else f' "{first}": "a",') + f' "{first}": '
                           f'{json.dumps(base.get(first, "a"))}}}').encode()),
        ("nested duplicate key", (text[:-1] + ("," if base else "") + ' "y": {"a": 1, "a": 2}}').encode()),
        ("lone surrogate key", (text[:-1] + ("," if base else "") + ' "\\ud800": 1}').encode()),
        ("integer beyond int64", (text[:-1] + ("," if base else "") + f' "z": {INT64_PLUS_1}}}').encode()),
    ]
    if not op.body_schema:
        return out
    for path, leaf in _leaves(op.body_schema, spec):
        if leaf.get("type") == "string" and "pattern" not in leaf and "enum" not in leaf and "format" not in leaf:
            out.append((f"{'.'.join(map(str, path))} = lone surrogate",
                        json.dumps(_with(base, op.body_schema, spec, world, path, "\ud800")).encode()))
        for value in _hostile_values(leaf):
            body = _with(base, op.body_schema, spec, world, path, value)
            out.append((f"{'.'.join(map(str, path))} = {value!r}", json.dumps(body, ensure_ascii=False).encode()))
    return out


def _integer_params(op: az.Operation, spec: dict[str, Any], where: str) -> list[str]:
    raw = spec["paths"][op.path][op.method.lower()]
    return [p["name"] for p in raw.get("parameters", []) if p.get("in") == where
            and az._resolve(p.get("schema", {}), spec).get("type") == "integer"]


def _routed(segment: str) -> bool:
    """Litestar's router runs int() on an integer path segment; what int() refuses matches no route (404
    before any middleware, so no operation and no audit row); the rest reaches the operation and is
    refused there (422 invalid_integer)."""
    try:
        int(unquote(segment))
    except ValueError:
        return False
    return True


def _counts(client: TestClient) -> dict[str, int]:
    tables = [r[0] for r in sql(client, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    return {t: int(sql(client, f'SELECT count(*) FROM "{t}"')[0][0]) for t in sorted(tables)}


def _ledger(client: TestClient) -> tuple[int, str]:
    n = int(sql(client, "SELECT count(*) FROM ledger_entries")[0][0])
    head = sql(client, "SELECT hash FROM ledger_entries ORDER BY seq DESC LIMIT 1")
    return n, bytes(head[0][0]).hex()


def _settled(client: TestClient) -> None:
    """Wait until the checkpoint publisher has signed the whole log (it may still be catching up with the
    world just built), so its rows do not count as a change made by the hostile requests."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        size = sql(client, "SELECT coalesce(max(size), 0) FROM ledger_checkpoints")[0][0]
        if size >= _ledger(client)[0]:
            return
        time.sleep(0.1)
    raise AssertionError("the checkpoint publisher did not catch up")


def test_hostile_input_is_refused_everywhere_and_changes_nothing(api: Api, client: TestClient) -> None:
    spec = client.get("/schema/openapi.json").json()
    world = az.build_world(api)
    _settled(client)
    ledger_before, counts_before = _ledger(client), _counts(client)
    audit_before = counts_before["audit_log"]

    failures: list[str] = []
    sent = Counter[str]()
    audited = 0
    for op in az.operations(spec):
        role = _role(op.operation_id)
        headers = {"Authorization": f"Bearer {world.tokens[role]}"}
        values = az.path_values(op, role, world)
        path = op.path
        for k, v in values.items():
            path = path.replace("{" + k + "}", str(v))
        requests: list[tuple[str, str, bytes | None, bool]] = []  # label, target, body, reaches the operation
        if op.method in ("POST", "PUT", "PATCH"):
            requests += [(label, path, body, True) for label, body in _bodies(op, spec, world)]
        for name in _integer_params(op, spec, "path"):
            for bad in PARAM_INTEGERS:
                p = op.path
                for k, v in values.items():
                    p = p.replace("{" + k + "}", bad if k == name else str(v))
                body = json.dumps(az.sample(op.body_schema, spec, world)).encode() if op.body_schema else b"{}"
                requests.append((f"path {name}={bad}", p, body if op.method != "GET" else None, _routed(bad)))
        for name in _integer_params(op, spec, "query"):
            for bad in PARAM_INTEGERS:
                body = json.dumps(az.sample(op.body_schema, spec, world)).encode() if op.body_schema else b"{}"
                requests.append((f"query {name}={bad}", f"{path}?{quote(name)}={bad}",
                                 body if op.method != "GET" else None, True))
        for i, (label, target, body, routed) in enumerate(requests):
            h = {**headers, "Idempotency-Key": f"hostile-{op.operation_id}-{i}"}
            if body is not None:
                h["Content-Type"] = "application/json"
            r = client.request(op.method, target, content=body, headers=h)
            sent[op.operation_id] += 1
            audited += routed and _audited(op.operation_id, role, op.method)
            what = f"{op.operation_id} as {role}, {label}: {r.status_code}"
            if not 400 <= r.status_code < 500:
                failures.append(f"{what} {r.text[:300]}")
            elif not r.headers.get("content-type", "").startswith("application/problem+json"):
                failures.append(f"{what} not a problem document: {r.text[:200]}")
            elif not isinstance(code := r.json().get("code"), str) or not code:
                failures.append(f"{what} without a code: {r.text[:200]}")
            elif unsafe := unsafe_integers(r.json()):  # e.g. a hostile integer echoed back
                failures.append(f"{what} carries integers beyond 2^53 - 1: {unsafe[:3]}")
    assert failures == [], f"{len(failures)} of {sum(sent.values())}:\n" + "\n".join(failures[:80])

    mutations = {o.operation_id for o in az.operations(spec) if o.method in ("POST", "PUT", "PATCH")}
    assert len(mutations) > 60 and all(sent[m] >= 6 for m in mutations)
    assert sum(sent.values()) > 3000
    assert _ledger(client) == ledger_before
    counts_after = _counts(client)
    changed = {t: (counts_before[t], counts_after[t]) for t in counts_before
               if t not in AUDIT and counts_before[t] != counts_after.get(t)}
    assert changed == {}
    assert counts_after["audit_log"] - audit_before == audited  # every administrative request, once
    assert counts_after["audit_anonymous_refusals"] == counts_before["audit_anonymous_refusals"]
    assert api.ok(api.get("/v1/audit/verification"))["ok"] is True


def test_every_integer_and_date_declares_its_bounds_in_the_openapi_document(client: TestClient) -> None:
    spec = client.get("/schema/openapi.json").json()
    problems: list[str] = []
    checked = Counter[str]()

    def check(where: str, s: dict[str, Any]) -> None:
        if s.get("type") == "integer":
            checked["integer"] += 1
            if not ("minimum" in s and "maximum" in s and -(2**53 - 1) <= s["minimum"] <= s["maximum"] <= 2**53 - 1):
                problems.append(f"{where}: integer without bounds within ±(2^53 - 1): {s}")
        if s.get("format") in ("date", "date-time"):
            checked["date"] += 1
            if not s.get("pattern", "").startswith("^2[01][0-9]{2}-"):
                problems.append(f"{where}: {s['format']} without its range (2000-2199) as a pattern: {s}")

    for op in az.operations(spec):
        raw = spec["paths"][op.path][op.method.lower()]
        for p in raw.get("parameters", []):
            s = az._resolve(p.get("schema", {}), spec)
            check(f"{op.operation_id} {p['in']} {p['name']}", s)
        if op.body_schema:
            for path, leaf in _leaves(op.body_schema, spec):
                check(f"{op.operation_id} body {'.'.join(map(str, path))}", leaf)
    assert checked["integer"] > 100 and checked["date"] >= 10
    assert problems == [], "\n".join(problems)
