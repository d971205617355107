"""One sequencer per market: stamp, journal, match, settle, project.

Each batch of commands is stamped with consecutive sequence numbers and written to `market_journal`
in one transaction (with the rows of new orders) before the engine sees it. The pure engine then
produces events; every trade is settled delivery-versus-payment through the ledger writer as one
linked group (units from the seller's hold, cash from the buyer's hold, fees), holds of finished
orders are released, and the order/trade projection moves together with `markets.applied_seq` in one
transaction. Callers are answered after that, so an acknowledged order is journaled and its trades
are settled.

Recovery: restore the latest snapshot at or below `applied_seq`, replay the journal up to
`applied_seq` silently (its effects are already durable), then replay the rest with effects. The
ledger's idempotency (client ids derived from market, trade and hold ids) makes re-settlement a
no-op, so a crash at any point settles every journaled trade exactly once.

Failures follow the one policy of exchange/core/refusals.py. An outage (the database or the ledger
writer away for now) pauses the market: it rebuilds from the journal until the database is back.
Anything else is a broken invariant, a bug: holds are sized so that a journaled trade always settles,
so a settlement the ledger refuses (or a replay that raises, or a ledger writer stopped on its own
broken invariant) means the market's state can no longer be trusted. The market then stops
taking writes (every command answers 503 `market_stopped` with the reason), says why in `/health`,
logs it once as CRITICAL and does not retry; reads keep working, other markets trade on, nothing
settles halfway (each trade is one linked ledger group) and holds stay where they are. A restart
replays the journal again and stops at the same point until the bug is fixed.

The pipeline's parts: the settlement legs are built by the pure exchange/trading/settlement.py (`Book`),
the journal's and projection's SQL is exchange/trading/journal.py, the rows are exchange/trading/models.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from exchange.core import store, suspension
from exchange.core.database import asyncpg_dsn, database_unreachable
from exchange.core.errors import DomainError
from exchange.core.idempotency import encoded_carries_secret
from exchange.core.runtime import Runtime
from exchange.core.store import Answer as StoredAnswer
from exchange.trading import journal, marketdata
from exchange.trading.journal import ENGINES, JournalRecord, NewOrder
from exchange.trading.markets import Market
from exchange.trading.models import EnforcementNote, Order, OrderState, OrderUpdate
from exchange.trading.settlement import Batch, Book, Effect, Group, Result, Venue
from ledger import commands as lc
from ledger.state import Rejection
from ledger.writer import WriterUnavailable
from matching import commands as mc
from matching import events as ev
from matching.base import Engine

log = logging.getLogger("envx.sequencer")

SNAPSHOT_EVERY = 10_000
MAX_BATCH = 1024


# Called after a batch's settlement is durable with the enforcement sales it touched: (market id,
# [{"pledge_id", "order_id", "trade_id"?, "ended"?}]). exchange.pledging pays the proceeds out.
SettlementHook = Callable[[str, list[dict[str, Any]]], Awaitable[None]]


@dataclass(slots=True)
class _Staged:
    """A matched batch waiting for its settlement to be durable."""

    batch: Batch
    futures: list[asyncio.Future[list[Any]]]
    last: int
    results: list[tuple[int, list[ev.Event]]]
    callers: list[Submission]


# What a caller of `submit` hears once its command's batch is settled: (seq, events, what the batch changed
# of the command's own order, or None).
Answer = tuple[int, list[ev.Event], OrderUpdate | None]


@dataclass(slots=True, frozen=True)
class Replay:
    """The answer to a retry: the order first journaled under the same client id."""

    order: Order


@dataclass(slots=True)
class Keep:
    """A keyed request's answer, kept with its command's projection (in the same transaction): the bytes
    `encode` makes of what the sequencer answers, with `status` and `media_type`, under (actor, client id,
    request digest) in answers_by_request, so that a retry gets them back even after a crash between the
    commit and the reply. `kept` is the answer once kept -- or, for a retry of a journaled order, the one kept
    before under the same digest (None: none was). `encode` runs in the sequencer: if it raises, nothing is
    kept (the caller keeps its answer its own way) and the market goes on."""

    actor: str
    client_id: str
    digest: bytes
    encode: Callable[[Answer], bytes]
    status: int = 201
    media_type: str = "application/json"
    kept: StoredAnswer | None = None


def _relabel(events: list[ev.Event], reason: str | None) -> list[ev.Event]:
    """The engine's events of a command the exchange gave its own cancel `reason` (a suspension's sweep)."""
    if reason is None:
        return events
    return [(e[0], e[1], e[2], e[3], reason) if e[0] == ev.CANCELLED and e[4] == ev.BY_REQUEST else e
            for e in events]


@dataclass(slots=True)
class Submission:
    """A command for the engine; `make(seq)` builds it once the id (= seq) is known."""

    make: Callable[[int], Any]
    # An Answer; a Replay for a new order journaled before; how many were cancelled for a sweep (their
    # answers for a sweep that collects them).
    future: asyncio.Future[Answer | Replay | int | list[Answer]]
    order: dict[str, Any] | None = None  # context of a new order: participant, hold, accounts, ...
    client: dict[str, Any] | None = None  # {"p": participant, "c": client id, "fp": fingerprint} for row-less commands
    # The pre-trade hold to create before the order is journaled; its entry's seq becomes order["hold_id"].
    hold: lc.Request | None = None
    # (participant, client id) of a new order: if an order was already journaled under it, the
    # submission is answered with that row (a Replay) instead of being journaled again.
    lookup: tuple[int, str] | None = None
    # The participant whose request this is (None: the exchange's own, e.g. a session change); it, and
    # every participant a new order or deal names, must be active when the command is journaled.
    actor: int | None = None
    # Not a command: cancel what this participant has resting here (`sweep`), at this point of the queue.
    sweep: int | None = None
    # A sweep's future gets the answers of its cancels (a mass cancel's) rather than how many there were.
    collect: bool = False
    # The reason this command's cancels carry instead of the engine's `requested` (a sweep's: suspended);
    # journaled with it, so a replay after a restart projects the same.
    reason: str | None = None
    # The caller's answer to keep with the projection (a keyed request's), or to find kept (its retry).
    keep: Keep | None = None

    def participants(self) -> set[int]:
        ids = set() if self.actor is None else {self.actor}
        for ctx in (self.order, *((self.order or {}).get("extra", ()))):
            if ctx and ctx.get("participant_id") is not None:
                ids.add(int(ctx["participant_id"]))
        if self.client is not None:
            ids.add(int(self.client["p"]))
        return ids


def _constant(cmd: Any) -> Callable[[int], Any]:
    return lambda _seq: cmd


def _now_us() -> int:
    return time.time_ns() // 1000


def _consumed(f: asyncio.Future[Any]) -> None:
    """For futures nobody awaits: a refusal (already released by the caller) is no news."""
    if not f.cancelled():
        f.exception()


def _when_all(target: asyncio.Future[Any], futures: list[asyncio.Future[Any]], *, collect: bool = False) -> None:
    """Resolve `target` with how many `futures` there are once all are done (or with the first failure); with
    `collect`, with their results in order."""
    if not futures:
        target.set_result([] if collect else 0)
        return
    left = len(futures)

    def done(f: asyncio.Future[Any]) -> None:
        nonlocal left
        left -= 1
        if target.done():
            return
        if not f.cancelled() and f.exception() is not None:
            target.set_exception(f.exception())  # type: ignore[arg-type]
        elif f.cancelled():
            target.cancel()
        elif left == 0:
            target.set_result([g.result() for g in futures] if collect else len(futures))

    for f in futures:
        f.add_done_callback(done)


class SettlementRefused(RuntimeError):
    """The ledger refused the settlement of something the market had journaled: a broken invariant."""


def outage(exc: BaseException | None) -> bool:
    """The database or the ledger writer is away for now (wait and rebuild), as opposed to a bug (stop).
    Walks the chain, since drivers and SQLAlchemy wrap each other's errors."""
    if database_unreachable(exc):
        return True
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, WriterUnavailable | TimeoutError):
            return True
        # SQLSTATE classes of a server in trouble rather than a statement in error: connection (08),
        # transaction rollback (40: serialization, deadlock), resources (53), operator intervention (57),
        # system (58).
        state = getattr(exc, "sqlstate", None)
        if isinstance(state, str) and state[:2] in ("08", "40", "53", "57", "58"):
            return True
        exc = exc.__cause__ or getattr(exc, "orig", None) or exc.__context__
    return False


class MarketSequencer:
    def __init__(self, rt: Runtime, market: Market, trading_day: date | None) -> None:
        self.rt = rt
        self._market = market
        self.engine: Engine = ENGINES[market.mode](market.rules)
        # The open order states and how each journaled command's events settle (exchange/trading/settlement.py).
        self.book = Book(Venue.of(market, rt.system))
        self.last_seq = 0
        self.applied_seq = 0
        self.trading_day = trading_day
        self.queue: asyncio.Queue[Submission] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        # Stage two of the pipeline: batches whose settlement is in the writer's queue, in order.
        self.finishing: asyncio.Queue[_Staged | None] = asyncio.Queue()
        self.finisher: asyncio.Task[None] | None = None
        self._busy = False  # a batch is being matched and journaled (a graceful stop lets it finish: `drain`)
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._conns: dict[str, asyncpg.Connection] = {}
        self.actor = f"exchange:{market.id}"
        # Mirrors of markets.halted / session_open, kept by exchange.trading.sessions (one process owns a market).
        self.halted = False
        self.session_open = False
        # Why the market takes no writes any more (a broken invariant, see the module docstring), or None.
        self.stopped: str | None = None
        # Serialises session changes (operator calls and calendar jobs) of this market.
        self.session_lock = asyncio.Lock()
        # Fresh suffixes of hold client ids (`nonce`): a random prefix per sequencer, then a counter.
        self._nonce_prefix = secrets.token_hex(8)
        self._nonces = itertools.count()

    @property
    def market(self) -> Market:
        """The market's rules in force (exchange.trading.sessions moves it when an amendment takes effect)."""
        return self._market

    @market.setter
    def market(self, market: Market) -> None:
        self._market = market
        self.book.venue = Venue.of(market, self.rt.system)

    def nonce(self) -> str:
        """A suffix no hold client id of this market has had: unique in this sequencer by its counter, across
        processes and restarts by its random prefix (one draw per sequencer, not one per order)."""
        return f"{self._nonce_prefix}-{next(self._nonces):x}"

    @property
    def orders(self) -> dict[int, OrderState]:
        """The market's open order states, by order id."""
        return self.book.orders

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.recover()
        self.finisher = asyncio.create_task(self._finish_loop(), name=f"settle-{self.market.id}")
        self.task = asyncio.create_task(self._run(), name=f"sequencer-{self.market.id}")

    async def _connection(self, role: str) -> asyncpg.Connection:
        """One connection per pipeline stage (they run concurrently), reopened after a failure."""
        conn = self._conns.get(role)
        if conn is None or conn.is_closed():
            conn = await asyncpg.connect(asyncpg_dsn(self.rt.url))
            self._conns[role] = conn
        return conn

    async def drain(self, timeout: float) -> bool:
        """Wait, at most `timeout` seconds, until nothing is queued, no batch is being matched and every matched
        batch is settled: a graceful stop lets the batches in hand finish instead of cancelling them (they would
        be replayed from the journal at the next start). False if time ran out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.task is not None and not self.task.done() and (self._busy or not self.queue.empty()):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.005)
        if self.finisher is None or self.finisher.done():
            return True
        try:
            await asyncio.wait_for(self._drain(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        for task in (self.task, self.finisher):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for conn in self._conns.values():  # after the stages: nothing is using them any more
            with contextlib.suppress(Exception):
                await conn.close()
        while not self.queue.empty():
            sub = self.queue.get_nowait()
            if not sub.future.done():
                sub.future.set_exception(DomainError("market_unavailable", "the market sequencer stopped", 503))

    def stopped_error(self) -> DomainError:
        return DomainError("market_stopped", f"market {self.market.id} takes no writes: {self.stopped}", 503,
                           reason=self.stopped)

    def stop_writes(self, exc: BaseException) -> None:
        """A broken invariant: no more writes, no retries; say why (health, the log) and fail the waiting."""
        self.stopped = f"{type(exc).__name__}: {exc}"
        log.critical("market %s stops taking writes: %s. This is a bug, not an outage: the market is not "
                     "retried; fix the cause and restart (recovery replays the journal)", self.market.id,
                     self.stopped)
        error = self.stopped_error()
        while not self.queue.empty():
            sub = self.queue.get_nowait()
            if not sub.future.done():
                sub.future.set_exception(error)

    def _caller_error(self, exc: BaseException) -> DomainError:
        """What a caller whose command was in a failed batch is told: retry later (outage), or stopped."""
        if outage(exc):
            return DomainError("market_unavailable", f"market {self.market.id} is recovering from {exc}; retry "
                               "with the same Idempotency-Key", 503)
        return DomainError("market_stopped", f"market {self.market.id} takes no writes: "
                           f"{type(exc).__name__}: {exc}", 503)

    async def submit(self, make: Callable[[int], Any], order: dict[str, Any] | None = None,
                     client: dict[str, Any] | None = None, *, actor: int | None = None,
                     reason: str | None = None) -> Answer:
        out = await self.submit_funded(make, order, client=client, actor=actor, reason=reason)
        assert not isinstance(out, Replay)
        return out

    async def submit_funded(self, make: Callable[[int], Any], order: dict[str, Any] | None = None, *,
                            hold: lc.Request | None = None, lookup: tuple[int, str] | None = None,
                            client: dict[str, Any] | None = None, actor: int | None = None,
                            reason: str | None = None, keep: Keep | None = None) -> Answer | Replay:
        """Submit a command; with `hold`, the sequencer creates the hold first (batched with the holds of
        the other orders in its batch), with `lookup` it answers a retry from the journaled row. `actor`:
        the participant asking (exchange/core/suspension.py: it must be active when the command is journaled).
        `keep`: the caller's answer to keep with the projection (see Keep)."""
        out = await self.queue_funded(make, order, hold=hold, lookup=lookup, client=client, actor=actor,
                                      reason=reason, keep=keep)
        assert not isinstance(out, int | list)
        return out

    def queue_funded(self, make: Callable[[int], Any], order: dict[str, Any] | None = None, *,
                     hold: lc.Request | None = None, lookup: tuple[int, str] | None = None,
                     client: dict[str, Any] | None = None, actor: int | None = None,
                     reason: str | None = None, keep: Keep | None = None,
                     ) -> asyncio.Future[Answer | Replay | int | list[Answer]]:
        """`submit_funded` without waiting: the command is queued (behind what was queued before it) and its
        future returned. Raises DomainError if the market is not running."""
        self._check_running()
        sub = Submission(make, asyncio.get_running_loop().create_future(), order, client, hold, lookup, actor,
                         reason=reason, keep=keep)
        self.queue.put_nowait(sub)
        return sub.future

    def _check_running(self) -> None:
        if self.stopped is not None:
            raise self.stopped_error()
        if self.task is None or self.task.done() or self.finisher is None or self.finisher.done():
            raise DomainError("market_unavailable", f"market {self.market.id} is not running now; retry with the "
                              "same Idempotency-Key", 503)

    async def sweep(self, participant_id: int) -> int:
        """Cancel the participant's open orders and listings and withdraw its block quotes, releasing their
        holds; answered once that is settled. Queued like a command, so whatever of the participant's was
        journaled before is included (and nothing of it can be journaled after: see `_admit`). How many."""
        self._check_running()
        sub = Submission(lambda _s: None, asyncio.get_running_loop().create_future(), sweep=participant_id)
        self.queue.put_nowait(sub)
        out = await sub.future
        assert isinstance(out, int)
        return out

    async def cancel_all(self, participant_id: int, reason: str) -> list[Answer]:
        """As `sweep`, with the cancels carrying `reason` (a mass cancel's, a dead-man switch's): the answer of
        each cancel (its seq and events), in order; none if nothing of the participant's rests here."""
        self._check_running()
        sub = Submission(lambda _s: None, asyncio.get_running_loop().create_future(), sweep=participant_id,
                         reason=reason, collect=True)
        self.queue.put_nowait(sub)
        out = await sub.future
        assert isinstance(out, list)
        return out

    def _resting(self, participant_id: int) -> list[Any]:
        """The cancels of what the participant has resting in this market now."""
        quotes = getattr(self.engine, "quotes", None)
        if quotes is not None:  # block negotiation: its quotes (withdrawing one closes its negotiations)
            return [mc.Cancel(int(q["quote_id"]), participant_id) for q in quotes(participant_id)
                    if q["account"] == participant_id]
        return [mc.Cancel(o.id, participant_id) for o in sorted(self.orders.values(), key=lambda o: o.id)
                if o.participant_id == participant_id and o.status == "open" and o.kind in ("order", "listing")]

    def _expand_sweeps(self, items: list[Submission]) -> list[Submission]:
        if all(it.sweep is None for it in items):
            return items
        loop = asyncio.get_running_loop()
        out: list[Submission] = []
        for it in items:
            if it.sweep is None:
                out.append(it)
                continue
            cancels = [Submission(_constant(cmd), loop.create_future(), reason=it.reason or ev.SUSPENDED)
                       for cmd in self._resting(it.sweep)]
            out += cancels
            _when_all(it.future, [c.future for c in cancels], collect=it.collect)
        return out

    async def _admit(self, conn: asyncpg.Connection, items: list[Submission]) -> list[Submission]:
        """Inside the journal transaction: refuse the commands of participants that are not active (their
        funding is released), keep the rest."""
        stopped = await suspension.inactive(conn, (p for it in items for p in it.participants()))
        if not stopped:
            return items
        keep = []
        for it in items:
            who = it.participants() & stopped
            if not who:
                keep.append(it)
                continue
            holds = [ctx.get("hold_id") for ctx in (it.order, *((it.order or {}).get("extra", ()))) if ctx]
            for hold in holds:
                if hold is not None:  # named like every release: a hold is resolved once
                    with contextlib.suppress(WriterUnavailable):  # then the hub voids it when it starts
                        self.rt.writer.enqueue([self.book.release(hold)]).add_done_callback(_consumed)
            if not it.future.done():
                it.future.set_exception(DomainError(
                    "participant_suspended", f"participant {min(who)} is suspended: nothing was done"))
        return keep

    # ------------------------------------------------------------------ recovery

    async def recover(self) -> None:
        mid = self.market.id
        async with self.rt.read() as conn:
            head = await journal.head(conn, mid)
            snap = await journal.latest_snapshot(conn, mid, head.applied_seq)
        self.halted, self.session_open = head.halted, head.session_open
        self.applied_seq = head.applied_seq
        start = 0
        if snap is not None:
            self.engine = type(self.engine).restore(snap.snapshot)
            if self.engine.state_hash() != snap.state_hash:
                raise RuntimeError(f"snapshot {mid}@{snap.seq} does not reproduce its state hash")
            start = snap.seq
        else:
            self.engine = ENGINES[self.market.mode](self.market.rules, head.reference_price)
        pending: list[journal.Journaled] = []
        async with self.rt.read() as conn:
            for j in await journal.commands(conn, mid, start):
                if j.seq <= self.applied_seq:
                    self.engine.process(j.seq, j.ts, j.command())  # effects already durable
                else:
                    pending.append(j)
                self.last_seq = j.seq
            self.last_seq = max(self.last_seq, self.applied_seq)
            self.book = Book(self.book.venue, await journal.open_orders(conn, mid))
        if pending:
            log.warning("market %s: replaying %d journaled commands after a restart", mid, len(pending))
            results: list[Result] = []
            for j in pending:
                cmd = j.command()
                results.append((j.seq, j.ts, cmd, _relabel(self.engine.process(j.seq, j.ts, cmd), j.reason()),
                                j.order()))
            await self._finish(self._stage(results, []))

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        while True:
            first = await self.queue.get()
            items = [first]
            while len(items) < MAX_BATCH and not self.queue.empty():
                items.append(self.queue.get_nowait())
            self._busy = True
            try:
                await self._process(items)
            except Exception as exc:
                self._busy = False
                log.exception("market %s: batch failed", self.market.id)
                error = self._caller_error(exc)
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(error)
                # The journal may or may not have committed: rebuild from the database, once the
                # batches already in stage two are durable. A bug is not retried.
                delay = 0.2
                while True:
                    try:
                        await self._drain()
                        if not outage(exc):
                            self.stop_writes(exc)
                            return
                        for conn in self._conns.values():
                            with contextlib.suppress(Exception):
                                await conn.close()
                        self._conns.clear()
                        await self.recover()
                        break
                    except asyncio.CancelledError:
                        raise
                    except Exception as again:
                        if not outage(again):
                            self.stop_writes(again)
                            return
                        log.warning("market %s: recovery failed (%s); retrying", self.market.id, again)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 5.0)
            else:
                self._busy = False

    async def _prefund(self, items: list[Submission]) -> list[Submission]:
        """Answer retries of journaled orders from their rows, then create the holds of the rest: one
        look-up and one writer batch for the whole batch instead of two round trips per order. A hold
        created here whose order then fails to be journaled is voided by the caller or, after a crash,
        when the hub starts."""
        lookups = [it.lookup for it in items if it.lookup is not None]
        if lookups:
            conn = await self._connection("journal")
            found = await journal.journaled_orders(conn, lookups)
            if found:
                keep, replays = [], []
                for it in items:
                    row = found.get(it.lookup) if it.lookup is not None else None
                    if row is None:
                        keep.append(it)
                    else:
                        replays.append((it, row))
                # The answers kept with those orders, for the retries that would find theirs (one statement).
                kept = await store.kept_answers(conn, [(it.keep.actor, it.keep.client_id, it.keep.digest)
                                                       for it, _ in replays if it.keep is not None])
                for it, row in replays:
                    if it.keep is not None:
                        it.keep.kept = kept.get((it.keep.actor, it.keep.client_id, it.keep.digest))
                    if not it.future.done():
                        it.future.set_result(Replay(row))
                items = keep
        funded = [it for it in items if it.hold is not None]
        if not funded:
            return items
        # The writer's own futures, awaited together: no task per hold.
        outcomes = await asyncio.gather(*(self._enqueue([it.hold]) for it in funded if it.hold is not None),
                                        return_exceptions=True)
        refused: set[int] = set()
        for it, out in zip(funded, outcomes, strict=True):
            if isinstance(out, BaseException):
                refused.add(id(it))
                if not it.future.done():
                    it.future.set_exception(out)
            else:
                assert it.order is not None
                it.order["hold_id"] = out[0].seq
        return [it for it in items if id(it) not in refused]

    def _enqueue(self, requests: list[lc.Request]) -> asyncio.Future[list[Any]]:
        """The writer's future of a linked group; enqueue raises at once if the writer is down: then a future
        failed with that, so one refusal stays the refusal of its own order."""
        try:
            return self.rt.writer.enqueue(requests)
        except Exception as exc:
            failed: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    async def _process(self, items: list[Submission]) -> None:
        items = await self._prefund(self._expand_sweeps(items))
        if not items:
            return
        ts = _now_us()
        day = self.trading_day or date.today()
        # Raw asyncpg and COPY on the market's own connection: this transaction is on every order's path.
        conn = await self._connection("journal")
        async with conn.transaction():
            items = await self._admit(conn, items)
            seq = self.last_seq
            staged: list[tuple[int, Any, Submission]] = []
            records: list[JournalRecord] = []
            new_orders: list[NewOrder] = []
            for it in items:
                seq += 1
                cmd = it.make(seq)
                payload = journal.encode_command(cmd)
                if it.order is not None:
                    payload["order"] = it.order
                if it.client is not None:
                    payload["client"] = it.client
                if it.reason is not None:
                    payload["reason"] = it.reason
                if it.order is not None and it.order.get("kind"):
                    new_orders.append(NewOrder.of(seq, it.order, day))
                records.append(JournalRecord(seq, ts, payload))
                staged.append((seq, cmd, it))
            await journal.append(conn, self.market.id, records, new_orders)
        if not staged:
            return
        self.last_seq = seq
        results: list[Result] = []
        for seq, cmd, it in staged:
            results.append((seq, ts, cmd, _relabel(self.engine.process(seq, ts, cmd), it.reason), it.order))
        # Settlement goes to the writer's queue now; stage two awaits it and answers the callers, while
        # this stage journals and matches the next batch.
        st = self._stage(results, [it for _, _, it in staged])
        self.finishing.put_nowait(st)
        if st.batch.raises:  # the raised bids' new hold ids come from the ledger: later batches need them
            await self._drain()

    async def _finish_loop(self) -> None:
        while True:
            staged = await self.finishing.get()
            if staged is None:
                self.finishing.task_done()
                continue
            try:
                await self._finish(staged)
            except Exception as exc:
                log.error("market %s: settlement stage failed (%s)", self.market.id, exc)
                self._fail_staged(staged, self._caller_error(exc))
                if not await self._recover_after_failure(exc):
                    return
                continue
            self.finishing.task_done()

    def _fail_staged(self, staged: _Staged, exc: BaseException) -> None:
        """Fail this batch and every batch matched after it: recovery re-derives them from the journal."""
        failed = [staged]
        while not self.finishing.empty():
            nxt = self.finishing.get_nowait()
            if nxt is not None:
                failed.append(nxt)
        for st in failed:
            for fut in st.futures:  # their settlement may still finish; nobody waits for it here
                fut.add_done_callback(lambda f: f.cancelled() or f.exception())
            for it in st.callers:
                if not it.future.done():
                    it.future.set_exception(exc)
            self.finishing.task_done()

    async def _recover_after_failure(self, exc: BaseException) -> bool:
        """Stop matching, then rebuild from the journal (idempotent re-settlement) until the database is
        back; a database outage or failover thus pauses the market instead of ending it. A bug stops
        the market's writes instead (False)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if not outage(exc):
            self.stop_writes(exc)
            return False
        delay = 0.2
        while True:
            try:
                for conn in self._conns.values():
                    with contextlib.suppress(Exception):
                        await conn.close()
                self._conns.clear()
                await self.recover()
                break
            except Exception as again:
                if not outage(again):
                    self.stop_writes(again)
                    return False
                log.warning("market %s: recovery failed (%s); retrying in %.1fs", self.market.id, again, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.warning("market %s: recovered at seq %d after %s", self.market.id, self.applied_seq, exc)
        self.task = asyncio.create_task(self._run(), name=f"sequencer-{self.market.id}")
        return True

    async def _drain(self) -> None:
        await self.finishing.join()

    # ------------------------------------------------------------------ effects

    def _stage(self, results: list[Result], callers: list[Submission]) -> _Staged:
        """Settle the batch's events on the book (exchange/trading/settlement.py) and queue its groups."""
        batch = self.book.stage(results, self.trading_day or date.today())
        futures = [self.rt.writer.enqueue(g.requests) for g in batch.groups]
        last = results[-1][0] if results else self.applied_seq
        return _Staged(batch, futures, last, [(r[0], r[3]) for r in results], callers)

    async def _settled(self, groups: list[Group], futures: list[asyncio.Future[list[Any]]]) -> None:
        """Wait for the groups' entries and note what each tells (a trade's settlement, a raised bid's hold).
        A refusal is a broken invariant, except a release finding its hold already resolved."""
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        for g, out in zip(groups, outcomes, strict=True):
            if isinstance(out, Rejection) and g.effect is Effect.RELEASE and out.code == "hold_already_resolved":
                continue  # fully posted by its fills (or released before a restart): nothing left to give back
            if isinstance(out, Rejection):
                # Holds are sized so that this cannot happen; if it does, it is a bug: the market stops.
                raise SettlementRefused(f"the ledger refused settlement {g.requests[0].client_id}: {out.code}: {out}")
            if isinstance(out, BaseException):
                raise out  # an outage (recover when the database is back) or a bug (stop): the caller decides
            if g.trade is not None:
                g.trade = dataclasses.replace(g.trade, settlement_seq=out[0].seq)
            if g.bid is not None:
                g.bid.hold_id = out[-1].seq

    async def _finish(self, st: _Staged) -> None:
        b = st.batch
        await self._settled(b.groups, st.futures)
        # The raised bids' one hold each, created by their group's last entry.
        held = {o.id: o.hold_id for o in b.raises}
        updates = [dataclasses.replace(u, hold_id=held[u.id]) if u.id in held else u for u in b.updates]
        if b.releases:
            await self._settled(b.releases, [self.rt.writer.enqueue(g.requests) for g in b.releases])
        rows = {u.id: u for u in updates}
        answers = self._answers(st, rows)
        conn = await self._connection("project")
        async with conn.transaction():
            await journal.project(conn, self.market.id, b.trades(), updates, b.raises, b.refusals, st.last)
            await store.keep_answers(conn, [(k.actor, k.client_id, k.digest, a) for k, a in answers])
            if self.market.mode == "block":  # the negotiations' rows, for their parties after they end
                await journal.project_deals(conn, self.market.id, journal.deal_changes(st.results))
        for k, a in answers:
            k.kept = a
        before = self.applied_seq
        self.applied_seq = st.last
        if self.applied_seq // SNAPSHOT_EVERY != before // SNAPSHOT_EVERY:
            await self.snapshot()
        self._publish(b.published)
        await self._call_settlement_hooks(b.enforcement)
        for it, (seq, events) in zip(st.callers, st.results, strict=False):
            if not it.future.done():
                it.future.set_result((seq, events, rows.get(seq)))

    def _answers(self, st: _Staged, rows: dict[int, OrderUpdate]) -> list[tuple[Keep, StoredAnswer]]:
        """The answers of the batch's callers that asked to keep theirs (Keep), as their callers will hear them."""
        out = []
        for it, (seq, events) in zip(st.callers, st.results, strict=False):
            k = it.keep
            if k is None:
                continue
            try:
                body = k.encode((seq, events, rows.get(seq)))
                if not encoded_carries_secret(body):  # no table keeps an answer showing a secret
                    out.append((k, StoredAnswer(k.status, k.media_type, body)))
            except Exception:  # the caller keeps its answer its own way; the market goes on
                log.warning("market %s: could not encode the answer of %s to keep it", self.market.id,
                            k.client_id, exc_info=True)
        return out

    async def _call_settlement_hooks(self, notes: list[EnforcementNote]) -> None:
        """Tell the settlement hooks (exchange.pledging) about enforcement sales this batch settled or
        ended, before the callers are answered. A failing hook never stops the market: the pledge
        worker reconciles every enforcement sale from the trades table anyway."""
        if not notes:
            return
        items = [n.as_dict() for n in notes]
        for hook in list(self.rt.settlement_hooks):
            try:
                await hook(self.market.id, items)
            except Exception:
                log.exception("market %s: settlement hook failed; the pledge worker will reconcile", self.market.id)

    # ------------------------------------------------------------------ snapshots and market data

    async def snapshot(self) -> None:
        async with self.rt.tx() as conn:
            await journal.write_snapshot(conn, self.market.id, self.applied_seq, self.engine.state_hash(),
                                         self.engine.snapshot())

    def depth(self, levels: int = 5) -> dict[str, list[tuple[int, int, int]]]:
        """Best levels as {"bids": [(price, qty, count)], "asks": [...]}, best first."""
        depth = getattr(self.engine, "depth", None)
        if depth is None:
            return {"bids": [], "asks": []}
        d = depth(levels)
        return {"bids": list(d.get("bids", d.get(mc.BUY, []))), "asks": list(d.get("asks", d.get(mc.SELL, [])))}

    def _publish(self, messages: list[dict[str, Any]]) -> None:
        if not self.subscribers:
            return
        out = [*messages, {"type": "depth", **marketdata.depth_of(self, 5)}]
        for q in list(self.subscribers):
            for msg in out:
                if q.qsize() > 10_000:  # a stalled client is dropped rather than grow memory
                    self.subscribers.discard(q)
                    break
                q.put_nowait(msg)
