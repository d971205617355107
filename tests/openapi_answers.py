"""What the answer-schema tests of each package share: the object schemas a 2xx answer may be, and the
operations whose answers list no fields."""

from __future__ import annotations

from typing import Any


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def objects(doc: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The object schemas an answer may be (an array's items; each member of a oneOf/anyOf)."""
    schema = resolve(doc, schema)
    if schema.get("type") == "array":
        return objects(doc, schema["items"])
    members = schema.get("oneOf") or schema.get("anyOf")
    if members:
        return [o for m in members for o in objects(doc, m)]
    return [schema]


def bare_answers(doc: dict[str, Any], operations: set[str]) -> tuple[set[str], list[str]]:
    """(the operations found, each 2xx answer of them whose schema lists no fields)."""
    seen, bare = set(), []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or op.get("operationId") not in operations:
                continue
            seen.add(op["operationId"])
            for status, response in op["responses"].items():
                if not status.startswith("2"):
                    continue
                for content in response.get("content", {}).values():
                    for obj in objects(doc, content["schema"]):
                        if not obj.get("properties"):
                            bare.append(f"{method.upper()} {path} {status}: {obj}")
    return seen, bare
