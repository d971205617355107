"""The ledger log: entries by sequence number, the chain head."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter

from api.deps import Id
from api.schemas.ledger import LedgerEntryOut, LedgerHeadOut
from exchange.core.errors import NotFound
from exchange.core.runtime import Runtime
from ledger import queries

Limit = Annotated[int, Parameter(ge=1, le=1000)]
After = Annotated[int, Parameter(ge=0, le=2**53 - 1)]


class LedgerController(Controller):
    path = "/v1/ledger"
    tags = ["ledger"]

    @get("/entries", operation_id="listLedgerEntries", summary="Entries after a sequence number")
    async def entries(self, rt: Runtime, after: After = 0, limit: Limit = 100) -> list[LedgerEntryOut]:
        async with rt.read() as conn:
            return [LedgerEntryOut.of(e) for e in await queries.entries(conn, after, limit)]

    @get("/entries/{seq:int}", operation_id="getLedgerEntry", summary="One entry, its canonical bytes and metadata")
    async def entry(self, rt: Runtime, seq: Id) -> LedgerEntryOut:
        async with rt.read() as conn:
            e = await queries.entry(conn, seq)
        if e is None:
            raise NotFound("ledger entry", seq)
        return LedgerEntryOut.of(e)

    @get("/head", operation_id="getLedgerHead", summary="The chain head: last sequence number and hash")
    async def head(self, rt: Runtime) -> LedgerHeadOut:
        async with rt.read() as conn:
            return LedgerHeadOut.of(await queries.head(conn))
