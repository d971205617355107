"""Every answer of the market, session and market-data endpoints is declared: each 2xx response in the OpenAPI
document names a schema whose fields are listed (issue #15: controllers returned bare dicts); a maker-checker
operation declares both its answers, the result (201) and the pending proposal (202)."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

OPERATIONS = {
    "defineMarket", "listMarkets", "getMarket", "amendMarket", "listMarketEvents", "setSession", "haltMarket",
    "resumeMarket", "getDepth", "listTrades", "getOhlc", "getDailyStats", "listClosePrices",
}


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _objects(doc: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The object schemas an answer may be (an array's items; each member of a oneOf/anyOf)."""
    schema = _resolve(doc, schema)
    if schema.get("type") == "array":
        return _objects(doc, schema["items"])
    members = schema.get("oneOf") or schema.get("anyOf")
    if members:
        return [o for m in members for o in _objects(doc, m) if o.get("type") != "null"]
    return [schema]


def _operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for item in doc["paths"].values() for op in item.values()
            if isinstance(op, dict) and "operationId" in op}


def test_every_answer_has_a_schema_with_its_fields(client: TestClient) -> None:
    doc = client.get("/schema/openapi.json").json()
    ops = _operations(doc)
    assert OPERATIONS <= set(ops), OPERATIONS - set(ops)
    bare = []
    for name in sorted(OPERATIONS):
        answers = {s: r for s, r in ops[name]["responses"].items() if s.startswith("2")}
        assert answers, name
        for status, response in answers.items():
            assert response.get("content"), f"{name} {status}: no content"
            for content in response["content"].values():
                for obj in _objects(doc, content["schema"]):
                    if not obj.get("properties"):
                        bare.append(f"{name} {status}: {obj}")
    assert bare == [], "\n".join(bare)


def test_maker_checker_operations_declare_the_result_and_the_proposal(client: TestClient) -> None:
    ops = _operations(client.get("/schema/openapi.json").json())
    for name, result in (("defineMarket", "MarketOut"), ("amendMarket", "AmendedOut")):
        responses = ops[name]["responses"]
        assert responses["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/OperatorActionOut")
        refs = [s.get("$ref", "") for s in _members(responses["201"]["content"]["application/json"]["schema"])]
        assert any(r.endswith(f"/{result}") for r in refs), (name, responses["201"])


def _members(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return schema.get("oneOf") or schema.get("anyOf") or [schema]
