"""The running system: settings, database engine, the ledger writer, system accounts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from exchange.errors import DomainError
from exchange.keys import Credentials, KeyCache
from exchange.provenance import LEDGER_META
from exchange.refusals import refused
from exchange.settings import Settings
from exchange.verifiable import VerifiableLedger
from ledger import commands as c
from ledger.state import Entry, Rejection
from ledger.writer import LedgerWriter, WriterUnavailable


@dataclass(slots=True)
class Runtime:
    settings: Settings
    url: str
    engine: AsyncEngine
    writer: LedgerWriter
    system: dict[str, int] = field(default_factory=dict)
    # Merkle tree, checkpoint publisher and signing key; None in tools that run a bare writer.
    verifiable: VerifiableLedger | None = None
    # The market sequencers (exchange.hub.MarketHub); None in tools that run a bare writer.
    exchange: Any = None
    # Awaited by each sequencer after settling enforcement sales (exchange.sequencer.SettlementHook).
    settlement_hooks: list[Any] = field(default_factory=list)
    # APScheduler (3.x) running the calendar jobs (exchange.sessions); None when ENVX_SCHEDULER is off.
    scheduler: Any = None
    # The time sessions and the calendar go by (tests drive it; everything else stamps with the system clock).
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Derives secrets shown once (exchange/keys.py); None in a read-only process, which mints nothing.
    credentials: Credentials | None = None
    # Verified API keys of this process (exchange/keys.py).
    key_cache: KeyCache = field(default_factory=KeyCache)
    # Work running now, by key, that a second caller waits for instead of repeating (a PDF being rendered).
    inflight: dict[Hashable, asyncio.Future[Any]] = field(default_factory=dict)

    async def submit(self, request: c.Request, *, own: Collection[int] | None = (),
                     counterparty: bool = False) -> Entry:
        return (await self.submit_linked([request], own=own, counterparty=counterparty))[0]

    @staticmethod
    def with_provenance(requests: list[c.Request]) -> list[c.Request]:
        """The signed instruction / approval behind this call goes with the first entry it makes."""
        extra = LEDGER_META.get()
        if extra and requests:
            return [replace(requests[0], meta={**requests[0].meta, **extra}), *requests[1:]]
        return requests

    async def submit_linked(self, requests: list[c.Request], *, own: Collection[int] | None = (),
                            counterparty: bool = False) -> list[Entry]:
        """Append `requests` all or nothing. A refusal is said to the caller in its units, naming only the
        accounts in `own` (the caller's; OVERSIGHT: every account) -- exchange/refusals.py."""
        requests = self.with_provenance(requests)
        try:
            return await self.writer.submit_linked(requests)
        except Rejection as rej:
            raise refused(rej, own, counterparty=counterparty) from None
        except WriterUnavailable as exc:
            raise DomainError("ledger_unavailable", str(exc), 503) from None

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncConnection]:
        """A transaction on the exchange tables; commits at the end of the block."""
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn
