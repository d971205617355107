"""Shared bits of the security tests: SQL through the app's own loop, signed requests."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar.testing import TestClient
from sqlalchemy import text

from api.security.signatures import generate_key, sign_request
from tests.helpers import Api, ticket


def sql(client: TestClient, query: str, params: dict[str, Any] | None = None, *, write: bool = False) -> list[Any]:
    rt = client.app.state.rt

    async def run() -> list[Any]:
        async with (rt.tx() if write else rt.read()) as conn:
            res = await conn.execute(text(query), params or {})
            return list(res.all()) if res.returns_rows else []

    return client.blocking_portal.call(run)


def signer(caller: Api, participant_id: int) -> tuple[Ed25519PrivateKey, int]:
    """A new signing key, registered by the participant itself."""
    private, public = generate_key()
    key = caller.ok(caller.post(f"/v1/participants/{participant_id}/signing-keys", {"public_key": public}))
    return private, key["id"]


def signed(client: TestClient, token: str, method: str, path: str, body: dict[str, Any] | None,
           private: Ed25519PrivateKey, key_id: int, idem: str | None = None, **sign: Any) -> Any:
    raw = json.dumps(body).encode() if body is not None else b""
    headers = {"Authorization": f"Bearer {token}", **sign_request(private, key_id, method, path, raw, **sign)}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if idem:
        headers["Idempotency-Key"] = idem
    return client.request(method, path, content=raw, headers=headers)


def trading_world(api: Api, units: str = "100") -> dict[str, Any]:
    api.instrument("FCT-SEC")
    issuer = api.participant("三明市林业局", "issuer")
    seller = api.participant("沙县林业合作社", "enterprise")
    buyer = api.participant("成都碳中和协会", "enterprise")
    api.issue(issuer["api"], seller["id"], "FCT-SEC", units, ticket(1))
    return {"issuer": issuer, "seller": seller, "buyer": buyer}


def raw_request(client: TestClient, method: str, target: str, headers: list[tuple[bytes, bytes]],
                body: bytes = b"") -> tuple[int, Any]:
    """A request whose header bytes reach the app exactly as given (the test client re-encodes header values
    as UTF-8, so a lone latin-1 byte such as 0xB2 cannot be sent through it); through the whole app, its
    middleware included, on the app's own loop. Returns the status and the decoded JSON answer."""
    path, _, query = target.partition("?")
    scope = {"type": "http", "http_version": "1.1", "method": method, "scheme": "http", "path": unquote(path),
             "raw_path": path.encode("latin-1"), "root_path": "", "query_string": query.encode("latin-1"),
             "headers": [(b"host", b"testserver.local"), *((k.lower(), v) for k, v in headers),
                         *([(b"content-length", str(len(body)).encode())] if body else [])],
             "client": ("testclient", 50000), "server": ("testserver.local", 80), "extensions": {}}
    sent: list[dict[str, Any]] = []

    async def call() -> None:
        done = False

        async def receive() -> dict[str, Any]:
            nonlocal done
            if not done:
                done = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await client.app(scope, receive, send)  # type: ignore[arg-type]

    client.blocking_portal.call(call)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    raw = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(raw) if raw else None


MAX_SAFE_INTEGER = 2**53 - 1


def unsafe_integers(value: Any, path: str = "$") -> list[str]:
    """Where a decoded JSON answer holds an integer outside ±(2^53 - 1) (I-JSON, RFC 7493 §2.2): every id,
    count, ratio or timestamp an answer carries must be exact for a JavaScript client."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [f"{path} = {value}"] if abs(value) > MAX_SAFE_INTEGER else []
    if isinstance(value, dict):
        return [hit for k, v in value.items() for hit in unsafe_integers(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in unsafe_integers(v, f"{path}[{i}]")]
    return []
