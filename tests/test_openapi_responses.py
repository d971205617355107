"""Every 2xx answer of the OpenAPI document has a schema that says its fields (issue #15).

The walk covers the whole app's document: each operation's 2xx answers (204 has no body; redirects are 3xx) are
JSON whose schema is an object with its properties -- an array's items, and each member of a oneOf/anyOf other
than null, likewise. The answers that are not JSON by design are listed below, each with its reason, and the walk
checks that each of them really answers that media type and nothing else: the list cannot hide a JSON answer.
"""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.openapi_answers import resolve

# Operations whose answer is not JSON, by operationId: (media type, why).
NOT_JSON: dict[str, tuple[str, str]] = {
    "getCheckpoint": ("text/plain", "a signed checkpoint note (C2SP signed-note), verified as text"),
    "getTlogCheckpoint": ("text/plain", "the tlog checkpoint, a signed note as tlog clients read it"),
    "getEntryTlogProof": ("text/plain", "a .tlog-proof, a text format of its own"),
    "getRestorationCertificateTlogProof": ("text/plain", "its entries as .tlog-proofs, one after another"),
    "publicPledgesTlogProof": ("text/plain", "a search certificate as a .tlog-proof"),
    "publicFreezesTlogProof": ("text/plain", "a search certificate as a .tlog-proof"),
    "publicRetirementsTlogProof": ("text/plain", "a search certificate as a .tlog-proof"),
    "getTlogTile": ("application/octet-stream", "a tile of the tiled transparency log: hashes or entry bundles"),
    "getRestorationCertificatePdf": ("application/pdf", "the certificate printed for a court file"),
    "portalInquiryPdf": ("application/pdf", "the public inquiry's certificate printed"),
}
# The public portal's pages (api/portal) are HTML for people, not an API: every operation under /portal that
# answers text/html, and only those.
PORTAL = ("/portal", "text/html")


def _bare(doc: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The parts of an answer's schema that are not an object listing its fields."""
    schema = resolve(doc, schema)
    if schema.get("type") == "array":
        return _bare(doc, schema.get("items") or {})
    members = schema.get("oneOf") or schema.get("anyOf")
    if members:
        return [b for m in members if resolve(doc, m).get("type") != "null" for b in _bare(doc, m)]
    return [] if schema.get("type") in (None, "object") and schema.get("properties") else [schema]


def _answers(doc: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(operationId, "METHOD path", status, response) of every 2xx answer that has a body."""
    out = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            for status, response in op["responses"].items():
                if status.startswith("2") and status != "204":
                    out.append((op.get("operationId", ""), f"{method.upper()} {path}", status, response))
    return out


def test_every_2xx_answer_has_a_schema_with_its_fields(client: TestClient) -> None:
    doc = client.get("/schema/openapi.json").json()
    missing, seen = [], set()
    for op_id, where, status, response in _answers(doc):
        path, name = where.split(" ", 1)[1], f"{op_id} ({where})"
        media = sorted((response.get("content") or {}).keys())
        if op_id in NOT_JSON or (path.startswith(PORTAL[0]) and media == [PORTAL[1]]):
            expected = NOT_JSON[op_id][0] if op_id in NOT_JSON else PORTAL[1]
            seen.add(op_id)
            if media != [expected]:
                missing.append(f"{name} {status}: listed as {expected}, answers {media}")
            continue
        if media != ["application/json"]:
            missing.append(f"{name} {status}: answers {media or 'no body'}, not JSON")
            continue
        for bare in _bare(doc, response["content"]["application/json"]["schema"]):
            missing.append(f"{name} {status}: {bare}")
    assert missing == [], "\n".join(missing)
    assert set(NOT_JSON) <= seen, f"listed but not in the document: {set(NOT_JSON) - seen}"


def test_the_walk_finds_a_bare_object_an_untyped_list_and_a_bare_member() -> None:
    """The check itself (it must be able to fail): dict answers, lists of dicts and a union with a dict member
    are found; objects with fields, arrays of them and nullable ones pass."""
    doc = {"components": {"schemas": {"A": {"type": "object", "properties": {"x": {"type": "string"}}}}}}
    a = {"$ref": "#/components/schemas/A"}
    dict_answer = {"type": "object", "additionalProperties": {}}
    assert _bare(doc, a) == [] and _bare(doc, {"type": "array", "items": a}) == []
    assert _bare(doc, {"anyOf": [a, {"type": "null"}]}) == []
    assert _bare(doc, dict_answer) == [dict_answer]
    assert _bare(doc, {"type": "array", "items": dict_answer}) == [dict_answer]
    assert _bare(doc, {"oneOf": [a, dict_answer]}) == [dict_answer]
    assert _bare(doc, {"type": "string"}) == [{"type": "string"}]  # a bare JSON string says no fields either
