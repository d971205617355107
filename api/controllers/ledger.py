"""The ledger log: entries by sequence number, the chain head."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from litestar import Controller, get
from litestar.params import Parameter

from api.deps import Id
from exchange.core.errors import NotFound
from exchange.core.runtime import Runtime
from exchange.core.units import iso
from ledger import queries

Limit = Annotated[int, Parameter(ge=1, le=1000)]
After = Annotated[int, Parameter(ge=0, le=2**53 - 1)]


def entry_view(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": e["seq"],
        "ts": e["ts"],
        "type": e["type"],
        "actor": e["actor"],
        "client_id": e["client_id"],
        "hash": e["hash"],
        "entry": e["entry"],
        "leaf_b64": base64.b64encode(e["leaf"]).decode(),
        "meta": json.loads(e["meta"]),
    }


class LedgerController(Controller):
    path = "/v1/ledger"
    tags = ["ledger"]

    @get("/entries", operation_id="listLedgerEntries", summary="Entries after a sequence number")
    async def entries(self, rt: Runtime, after: After = 0, limit: Limit = 100) -> list[dict[str, Any]]:
        async with rt.read() as conn:
            return [entry_view(e) for e in await queries.entries(conn, after, limit)]

    @get("/entries/{seq:int}", operation_id="getLedgerEntry", summary="One entry, its canonical bytes and metadata")
    async def entry(self, rt: Runtime, seq: Id) -> dict[str, Any]:
        async with rt.read() as conn:
            e = await queries.entry(conn, seq)
        if e is None:
            raise NotFound("ledger entry", seq)
        return entry_view(e)

    @get("/head", operation_id="getLedgerHead", summary="The chain head: last sequence number and hash")
    async def head(self, rt: Runtime) -> dict[str, Any]:
        async with rt.read() as conn:
            head = await queries.head(conn)
        return {**head, "ts": iso(head["ts"])}  # UTC ISO 8601 as every answer (stored: microseconds)
