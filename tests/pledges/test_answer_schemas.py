"""Every answer of the pledge registry and the public inquiry is declared: each 2xx response in the OpenAPI
document names a schema whose fields are listed (issue #15: the pledge controllers returned bare dicts)."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

OPERATIONS = {
    "filePledge", "listPledges", "pledgeEventStream", "getPledge", "listPledgeEvents", "confirmPledge",
    "declinePledge", "withdrawPledge", "amendPledge", "extendPledge", "topUpPledge", "partiallyReleasePledge",
    "releasePledge", "enforcePledge", "declarePledgeDefault", "startPledgeSale", "acceptPledgeSale",
    "cancelPledgeSale", "filePledgeClaim", "confirmPledgeClaim", "releasePledgeClaim", "revaluePledges",
    "sweepPledgeExpiry", "setPledgeWebhook", "getPledgeWebhook", "setPledgeHaircut",
    "publicPledges", "publicFreezes", "publicRetirements", "publicInquiryKey",
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
        return [o for m in members for o in _objects(doc, m)]
    return [schema]


def test_every_answer_has_a_schema_with_its_fields(client: TestClient) -> None:
    doc = client.get("/schema/openapi.json").json()
    seen, bare = set(), []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or op.get("operationId") not in OPERATIONS:
                continue
            seen.add(op["operationId"])
            for status, response in op["responses"].items():
                if not status.startswith("2"):
                    continue
                for content in response.get("content", {}).values():
                    for obj in _objects(doc, content["schema"]):
                        if not obj.get("properties"):
                            bare.append(f"{method.upper()} {path} {status}: {obj}")
    assert seen == OPERATIONS, OPERATIONS - seen
    assert bare == [], "\n".join(bare)


def test_fields_a_role_may_not_see_are_not_in_the_pledge_schema_as_required(client: TestClient) -> None:
    """A junior creditor's or buyer's view leaves the parties' fields out: the schema says they may be absent."""
    doc = client.get("/schema/openapi.json").json()
    pledge = _resolve(doc, doc["paths"]["/v1/pledges/{pledge_id}"]["get"]["responses"]["200"]["content"]
                      ["application/json"]["schema"])
    required = set(pledge.get("required", []))
    assert {"loan_contract", "secured_amount", "margin", "thresholds", "hold_id"}.isdisjoint(required)
    assert {"id", "number", "status", "serials", "blocks", "claims"} <= required
