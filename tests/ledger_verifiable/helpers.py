"""Shared steps for the verifiable-ledger tests."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import asyncpg
from litestar.testing import TestClient

from exchange.core.database import asyncpg_dsn
from ledger import note
from tests.helpers import Api, ticket


def b64d(s: str) -> bytes:
    return base64.b64decode(s)


def world(api: Api, transfers: int = 5) -> dict[str, Any]:
    """An issuer, a seller holding 1000 forest tickets, a buyer, an outsider, and some transfers."""
    api.instrument("FCT-SM")
    issuer = api.participant("三明市林业局", "issuer")
    seller = api.participant("三明林票持有人", "enterprise")
    buyer = api.participant("成都市绿色低碳发展协会", "enterprise")
    outsider = api.participant("旁观者", "enterprise")
    api.issue(issuer["api"], seller["id"], "FCT-SM", "1000", ticket(1))
    moves = [api.ok(seller["api"].post("/v1/transfers", {"to_participant": buyer["id"], "instrument": "FCT-SM",
                                                         "quantity": str(i + 1)})) for i in range(transfers)]
    return {"issuer": issuer, "seller": seller, "buyer": buyer, "outsider": outsider, "moves": moves}


def head_seq(client: TestClient) -> int:
    return int(client.get("/v1/ledger/head").json()["seq"])


def latest_checkpoint(client: TestClient, keys: list[str], at_least: int,
                      timeout: float = 10.0) -> tuple[str, note.Checkpoint]:
    """The latest published checkpoint once it covers ``at_least`` entries (published asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/v1/ledger/checkpoint")
        if r.status_code == 200:
            assert r.headers["content-type"].startswith("text/plain")
            cp = note.verify_checkpoint(r.text, keys)
            if cp.size >= at_least:
                return r.text, cp
        else:
            assert r.status_code == 503 and r.headers["retry-after"], r.text
        assert time.monotonic() < deadline, "no checkpoint was published"
        time.sleep(0.02)


def log_keys(client: TestClient) -> list[str]:
    return [k["verifier_key"] for k in client.get("/v1/ledger/keys").json()]


def admin_sql(url: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())
