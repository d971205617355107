"""Red team round 7, F5: a body not declared as JSON is not read as JSON (415), a body announced beyond the
limit is refused before it is waited for (413), and a query parameter given twice is refused (422)."""

from __future__ import annotations

import asyncio
import json

from litestar.testing import TestClient

from tests.helpers import Api, ticket


def _world(api: Api) -> tuple[dict, dict]:
    api.instrument("FCT-SM")
    issuer = api.participant("三明市林业局", "issuer")
    seller = api.participant("卖方", "enterprise")
    buyer = api.participant("买方", "enterprise")
    api.issue(issuer["api"], seller["id"], "FCT-SM", "10", ticket(1))
    return seller, buyer


def test_a_body_is_read_as_json_only_when_declared_so(api: Api, client: TestClient) -> None:
    seller, buyer = _world(api)
    body = json.dumps({"to_participant": buyer["id"], "instrument": "FCT-SM", "quantity": "1"}).encode()
    auth = {"Authorization": f"Bearer {seller['token']}"}
    for i, media in enumerate(("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                               "application/json; charset=latin-1", "application/jsonx", "text/json")):
        r = client.post("/v1/transfers", content=body,
                        headers={**auth, "Content-Type": media, "Idempotency-Key": f"m{i}"})
        assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type"), (media, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    held = {b["instrument"]: b["available"] for b in api.ok(seller["api"].get("/v1/holdings"))["balances"]}
    assert held["FCT-SM"] == "10"  # none of them moved anything
    for i, media in enumerate(("application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8",
                               None)):
        headers = {**auth, "Idempotency-Key": f"ok{i}", **({"Content-Type": media} if media else {})}
        r = client.post("/v1/transfers", content=body, headers=headers)
        assert r.status_code == 201, (media, r.text)


def test_a_body_announced_beyond_the_limit_is_refused_at_once(api: Api, client: TestClient) -> None:
    """body7.py: `Content-Length: 999999999999` and then nothing. The answer is 413 at once, without waiting
    for a body that never comes (the ASGI receive below never delivers one: without the early refusal the
    request would wait for it until the test gives up)."""
    seller, buyer = _world(api)
    headers = [(b"authorization", f"Bearer {seller['token']}".encode()), (b"content-type", b"application/json"),
               (b"content-length", b"999999999999"), (b"idempotency-key", b"big"), (b"host", b"testserver")]
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/transfers", "raw_path": b"/v1/transfers",
             "query_string": b"", "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000),
             "server": ("testserver", 80), "state": {}}

    async def call() -> list[dict]:
        sent: list[dict] = []
        never = asyncio.Event()

        async def receive() -> dict:
            await never.wait()  # the body never arrives
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        await asyncio.wait_for(client.app(scope, receive, send), timeout=60)
        return sent

    sent = client.blocking_portal.call(call)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert (start["status"], json.loads(body)["code"]) == (413, "payload_too_large"), body
    held = {b["instrument"]: b["available"] for b in api.ok(seller["api"].get("/v1/holdings"))["balances"]}
    assert held["FCT-SM"] == "10" and buyer["id"]


def test_a_query_parameter_given_twice_is_refused(api: Api, client: TestClient) -> None:
    for q in ("first=1&second=2&second=3", "first=1&first=1", "second=2&first=1&second=2"):
        r = client.get(f"/v1/ledger/proofs/consistency?{q}")
        assert (r.status_code, r.json()["code"]) == (422, "repeated_query_parameter"), (q, r.text)
    r = client.get("/v1/public/pledges?name=a&name=b")
    assert (r.status_code, r.json()["code"]) == (422, "repeated_query_parameter"), r.text
