"""Every answer of the courts, security and verifiable-ledger endpoints is declared: each 2xx response in the
OpenAPI document names a schema whose fields are listed (issue #15: controllers returned bare dicts)."""

from __future__ import annotations

from litestar.testing import TestClient

from tests.openapi_answers import bare_answers, resolve

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


def test_every_answer_has_a_schema_with_its_fields(client: TestClient) -> None:
    doc = client.get("/schema/openapi.json").json()
    seen, bare = bare_answers(doc, OPERATIONS)
    assert seen == OPERATIONS, OPERATIONS - seen
    assert bare == [], "\n".join(bare)


def test_a_proposal_answer_is_declared(client: TestClient) -> None:
    """A maker-checker proposal (202) is an operator action, with its fields."""
    doc = client.get("/schema/openapi.json").json()
    proposed = doc["paths"]["/v1/participants"]["post"]["responses"]["202"]["content"]["application/json"]
    assert "approve" in resolve(doc, proposed["schema"])["properties"]
