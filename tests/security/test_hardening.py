"""Input hardening: bounded sizes and lengths, unknown fields and parameters refused, every failure a
problem-details response. The schema checks are generated from the OpenAPI document."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.helpers import Api

MAX_STRING = 2000


def _walk(schema: dict[str, Any], spec: dict[str, Any], where: str, seen: set[str]) -> list[str]:
    """Every object model closed to unknown fields, every string and list bounded."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in seen:
            return []
        seen.add(name)
        return _walk(spec["components"]["schemas"][name], spec, name, seen)
    problems: list[str] = []
    for key in ("oneOf", "anyOf", "allOf"):
        for i, sub in enumerate(schema.get(key, [])):
            problems += _walk(sub, spec, f"{where}[{i}]", seen)
    t = schema.get("type")
    types = set(t) if isinstance(t, list) else {t}
    if "object" in types and "properties" in schema and schema.get("additionalProperties") is not False:
        problems.append(f"{where}: accepts unknown fields")
    if "object" in types and "properties" not in schema and "maxProperties" not in schema:
        problems.append(f"{where}: free-form object without maxProperties")
    if "string" in types and not ({"maxLength", "enum", "const"} & schema.keys()
                                  or schema.get("format") in ("date", "date-time")):
        problems.append(f"{where}: string without maxLength")
    if "string" in types and schema.get("maxLength", 0) > MAX_STRING:
        problems.append(f"{where}: string longer than {MAX_STRING}")
    if "array" in types:
        if "maxItems" not in schema:
            problems.append(f"{where}: list without maxItems")
        problems += _walk(schema.get("items", {}), spec, f"{where}[]", seen)
    for name, prop in schema.get("properties", {}).items():
        problems += _walk(prop, spec, f"{where}.{name}", seen)
    return problems


def test_every_body_model_refuses_unknown_fields_and_bounds_its_strings(client: TestClient) -> None:
    spec = client.get("/schema/openapi.json").json()
    problems: list[str] = []
    bodies = 0
    for path, item in spec["paths"].items():
        for method, op in item.items():
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema") \
                if isinstance(op, dict) else None
            if body:
                bodies += 1
                problems += [f"{op['operationId']} ({method.upper()} {path}): {p}"
                             for p in _walk(body, spec, "body", set())]
    assert bodies > 40
    assert problems == [], "\n".join(sorted(set(problems)))


def test_unknown_or_overlong_parameters_are_refused(api: Api, client: TestClient) -> None:
    r = api.get("/v1/holdings", participant=1)  # a typo of participant_id: silently ignored before
    assert (r.status_code, r.json()["code"]) == (422, "unknown_query_parameter")
    assert "participant_id" in r.json()["detail"]
    r = client.get("/v1/instruments", params={"kind": "ccer", "debug": "1"})
    assert (r.status_code, r.json()["code"]) == (422, "unknown_query_parameter")
    assert client.get("/v1/instruments", params={"kind": "ccer"}).status_code == 200
    # Query strings a schema leaves unbounded are capped at 1000 characters for every operation.
    r = api.get("/v1/participants", kind="x" * 1001)
    assert (r.status_code, r.json()["code"]) == (422, "query_parameter_too_long")
    r = client.get("/v1/markets/" + "M" * 201)
    assert (r.status_code, r.json()["code"]) == (422, "path_parameter_too_long")
    r = api.get(f"/v1/participants/{2**53}")
    assert (r.status_code, r.json()["code"]) == (422, "path_parameter_out_of_range")
    r = client.get("/v1/instruments", params={"kind": "a\x00b"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_characters")
    r = api.post("/v1/participants", {"name": "a\x00b", "kind": "bank"})
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")


def test_bodies_are_bounded_and_malformed_ones_are_problems(api: Api, client: TestClient) -> None:
    h = {"Authorization": f"Bearer {api.token}", "Idempotency-Key": "big", "Content-Type": "application/json"}
    big = b'{"name": "' + b"x" * 1_000_100 + b'", "kind": "bank"}'
    r = client.post("/v1/participants", content=big, headers=h)
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "payload_too_large"
    for body, code in ((b"{not json", "malformed_json"), (b"[]", "validation_error"), (b'"x"', "validation_error"),
                       (b"", "validation_error"), (b'{"name": "x", "kind": "bank", "extra": 1}', "validation_error"),
                       (b'{"name": "' + b"x" * 201 + b'", "kind": "bank"}', "validation_error"),
                       (b'{"name": "x", "kind": "wizard"}', "validation_error")):
        r = client.post("/v1/participants", content=body, headers={**h, "Idempotency-Key": f"b{len(body)}"})
        assert r.status_code == 422, (body[:40], r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == code, (body[:40], r.text)


def test_every_failure_is_a_problem_document(api: Api, client: TestClient) -> None:
    cases = [client.get("/v1/no-such-thing"), client.delete("/v1/instruments"), api.get("/v1/instruments/NOPE"),
             api.get("/v1/participants/0"), api.get("/v1/participants/abc"), client.get("/v1/whoami"),
             api.post("/v1/transfers", {}, key=None)]
    for r in cases:
        assert r.status_code >= 400
        assert r.headers["content-type"].startswith("application/problem+json"), (r.status_code, r.text)
        body = r.json()
        assert {"type", "title", "status", "detail", "code"} <= body.keys() and body["status"] == r.status_code
