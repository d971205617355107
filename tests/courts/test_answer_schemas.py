"""Every answer of the courts, security and verifiable-ledger endpoints is declared: each 2xx response in the
OpenAPI document names a schema whose fields are listed (issue #15: controllers returned bare dicts)."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

OPERATIONS = {
    # courts: restoration orders, certificates, freezes
    "createRestorationOrder", "listRestorationOrders", "getRestorationOrder", "listRestorationReminders",
    "getRestorationCertificate", "verifyCertificate",
    "createFreeze", "listFreezes", "getFreeze", "renewFreeze", "deductFreeze", "unfreeze",
    # security: signing keys and policy, operator actions, audit trail, API keys and enrollment
    "registerSigningKey", "listParticipantSigningKeys", "revokeSigningKey", "setSignaturePolicy",
    "getSignaturePolicy", "listOperatorActions", "getOperatorAction", "approveOperatorAction",
    "rejectOperatorAction", "listAuditEvents", "listAnonymousRefusals", "verifyAuditTrail",
    "listEnrollmentCodes", "createKey", "listKeys", "revokeKey", "enroll",
    # the ledger log and the verifiable ledger
    "listLedgerEntries", "getLedgerEntry", "getLedgerHead", "listCheckpoints", "listSigningKeys",
    "getInclusionProof", "getConsistencyProof", "getEntryReceipt",
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


def test_a_proposal_answer_is_declared(client: TestClient) -> None:
    """A maker-checker proposal (202) is an operator action, with its fields."""
    doc = client.get("/schema/openapi.json").json()
    proposed = doc["paths"]["/v1/participants"]["post"]["responses"]["202"]["content"]["application/json"]
    assert "approve" in _resolve(doc, proposed["schema"])["properties"]
