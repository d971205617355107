"""Every answer of the pledge registry and the public inquiry is declared: each 2xx response in the OpenAPI
document names a schema whose fields are listed (issue #15: the pledge controllers returned bare dicts)."""

from __future__ import annotations

from litestar.testing import TestClient

from tests.openapi_answers import bare_answers, resolve

OPERATIONS = {
    "filePledge", "listPledges", "pledgeEventStream", "getPledge", "listPledgeEvents", "confirmPledge",
    "declinePledge", "withdrawPledge", "amendPledge", "extendPledge", "topUpPledge", "partiallyReleasePledge",
    "releasePledge", "enforcePledge", "declarePledgeDefault", "startPledgeSale", "acceptPledgeSale",
    "cancelPledgeSale", "filePledgeClaim", "confirmPledgeClaim", "releasePledgeClaim", "revaluePledges",
    "sweepPledgeExpiry", "setPledgeWebhook", "getPledgeWebhook", "setPledgeHaircut",
    "publicPledges", "publicFreezes", "publicRetirements", "publicInquiryKey",
}


def test_every_answer_has_a_schema_with_its_fields(client: TestClient) -> None:
    doc = client.get("/schema/openapi.json").json()
    seen, bare = bare_answers(doc, OPERATIONS)
    assert seen == OPERATIONS, OPERATIONS - seen
    assert bare == [], "\n".join(bare)


def test_fields_a_role_may_not_see_are_not_in_the_pledge_schema_as_required(client: TestClient) -> None:
    """A junior creditor's or buyer's view leaves the parties' fields out: the schema says they may be absent."""
    doc = client.get("/schema/openapi.json").json()
    pledge = resolve(doc, doc["paths"]["/v1/pledges/{pledge_id}"]["get"]["responses"]["200"]["content"]
                      ["application/json"]["schema"])
    required = set(pledge.get("required", []))
    assert {"loan_contract", "secured_amount", "margin", "thresholds", "hold_id"}.isdisjoint(required)
    assert {"id", "number", "status", "serials", "blocks", "claims"} <= required
