"""The running system: settings, database engine, the ledger writer, system accounts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Hashable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from exchange.core.errors import DomainError, NotFound
from exchange.core.provenance import LEDGER_META
from exchange.core.refusal_text import refused
from exchange.core.secrets import Credentials, KeyCache
from exchange.core.settings import Settings
from exchange.core.suspension import MutationGate
from ledger import commands as c
from ledger.checkpoints import CheckpointPublisher
from ledger.note import Signer
from ledger.state import Entry, Rejection
from ledger.writer import LedgerWriter, WriterStopped, WriterUnavailable


class Verifiable(Protocol):
    """What the runtime's users need of the verifiable-ledger wiring (exchange.verifiable.publisher)."""

    signer: Signer
    publisher: CheckpointPublisher

    async def rotate(self, writer: LedgerWriter, client_id: str) -> Any: ...


# Called after a batch's settlement is durable with the enforcement sales it touched (exchange.trading.pipeline):
# (market id, [{"pledge_id", "order_id", "trade_id"?, "ended"?}]). exchange.pledging pays the proceeds out.
SettlementHook = Callable[[str, list[dict[str, Any]]], Awaitable[None]]


class Markets(Protocol):
    """The trading side as the runtime holds it: the hub that starts (and so recovers) every market's sequencer
    and routes commands to them -- exchange.trading.hub.MarketHub, or exchange.trading.replica.ReadOnlyHub in a
    read-only process. Owned here, below trading, so that the runtime names it without importing trading.

    A market's sequencer is trading's own type (exchange.trading.pipeline.MarketSequencer; a MarketFollower on a
    replica), which this layer cannot name without reaching up: to it a sequencer is an `object`, and trading
    reaches its sequencers, typed, through exchange/trading/running.py (which checks what it gets)."""

    @property
    def sequencers(self) -> Mapping[str, object]: ...

    def get(self, market_id: str) -> object:
        """The market's sequencer; NotFound (404) for a market that does not run here."""

    def stopped(self) -> dict[str, str]:
        """Markets that take no writes, and why."""

    async def start_market(self, market_id: str) -> object:
        """Start a newly defined market's sequencer (a read-only process refuses)."""

    async def sweep(self, participant_id: int) -> list[str]:
        """Cancel what the participant has resting in every market that takes writes (a suspension); the
        markets that could not take it now."""

    async def start(self) -> None: ...

    async def stop(self, grace: float = 0.0) -> None: ...


class NoMarkets:
    """No market runs in this process (tools that run a bare writer, before the hub starts): every market is
    unknown here."""

    sequencers: Mapping[str, object] = {}

    def get(self, market_id: str) -> NoReturn:
        raise NotFound("market", market_id)

    def stopped(self) -> dict[str, str]:
        return {}

    async def start_market(self, market_id: str) -> NoReturn:
        raise NotFound("market", market_id)

    async def sweep(self, participant_id: int) -> list[str]:
        return []

    async def start(self) -> None:
        return None

    async def stop(self, grace: float = 0.0) -> None:
        return None


class Scheduler(Protocol):
    """APScheduler 3's AsyncIOScheduler as envx uses it: the calendar's jobs (exchange.trading.sessions) and the
    daily sweeps (exchange.registry.expiry). Jobs are APScheduler's own (`id`, `remove()`)."""

    def add_job(self, func: Callable[..., Any], trigger: str, **options: Any) -> Any: ...

    def get_jobs(self) -> list[Any]: ...


@dataclass(slots=True)
class Runtime:
    settings: Settings
    url: str
    engine: AsyncEngine
    writer: LedgerWriter
    system: dict[str, int] = field(default_factory=dict)
    # Merkle tree, checkpoint publisher and signing key; None in tools that run a bare writer.
    verifiable: Verifiable | None = None
    # The market sequencers (exchange.trading.hub.MarketHub); none in tools that run a bare writer.
    exchange: Markets = field(default_factory=NoMarkets)
    # Awaited by each sequencer after settling enforcement sales (exchange/pledging/worker.py adds its own).
    settlement_hooks: list[SettlementHook] = field(default_factory=list)
    # Awaited after each instrument's close (instrument, close price in fen, trading day): pledge valuations.
    close_hooks: list[Callable[[str, int, date], Awaitable[None]]] = field(default_factory=list)
    # APScheduler (3.x) running the calendar jobs (exchange.trading.sessions); None when ENVX_SCHEDULER is off.
    scheduler: Scheduler | None = None
    # The time sessions and the calendar go by (tests drive it; everything else stamps with the system clock).
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Derives secrets shown once (exchange/security/keys.py); None in a read-only process, which mints nothing.
    credentials: Credentials | None = None
    # Verified API keys of this process (exchange/security/keys.py).
    key_cache: KeyCache = field(default_factory=KeyCache)
    # Work running now, by key, that a second caller waits for instead of repeating (a PDF being rendered).
    inflight: dict[Hashable, asyncio.Future[Any]] = field(default_factory=dict)
    # Work that must run one at a time per key in this process (a block deal's confirmations), by key.
    serial_locks: dict[Hashable, tuple[asyncio.Lock, int]] = field(default_factory=dict)  # (lock, users)
    # Set after a commit that queued pledge webhooks; the pledge worker (exchange/pledging/worker.py) waits on it.
    pledge_outbox: asyncio.Event = field(default_factory=asyncio.Event)
    # Mutations under way per participant, and those being suspended (exchange/core/suspension.py).
    mutations: MutationGate = field(default_factory=MutationGate)
    # The keys that sign public inquiry certificates when no publisher runs, by the key file they were read
    # from (exchange/pledging/public.py get_signer).
    inquiry_signers: dict[Path, Signer] = field(default_factory=dict)

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
        accounts in `own` (the caller's; OVERSIGHT: every account) -- exchange/core/refusal_text.py."""
        requests = self.with_provenance(requests)
        try:
            return await self.writer.submit_linked(requests)
        except (Rejection, WriterUnavailable, WriterStopped) as exc:
            raise ledger_error(exc, own, counterparty=counterparty) from None

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncConnection]:
        """A transaction on the exchange tables; commits at the end of the block."""
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn


def ledger_error(exc: Rejection | WriterUnavailable | WriterStopped, own: Collection[int] | None = (), *,
                 counterparty: bool = False) -> DomainError:
    """What a caller whose request the writer did not apply is told: its refusal (4xx, in its units, naming
    only the accounts in `own`: exchange/core/refusal_text.py), an outage (503 ledger_unavailable, retry), or a
    ledger stopped on a broken invariant (503 ledger_stopped, never a 4xx)."""
    if isinstance(exc, Rejection):
        return refused(exc, own, counterparty=counterparty)
    if isinstance(exc, WriterStopped):
        return DomainError("ledger_stopped", f"the ledger takes no writes: {exc}", reason=str(exc))
    return DomainError("ledger_unavailable", str(exc))
