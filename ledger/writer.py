"""The single ledger writer: one task appends for everyone, with group commit.

Loop: wait for the first request, drain whatever else is queued (no fixed sleep), load and lock the
rows the batch touches in sorted order, apply the requests in arrival order through the pure state
machine (each refusal is the caller's own, with its code), write the whole batch, move the chain
head by compare-and-swap, commit once, and only then answer the callers and run after-commit hooks.

A second writer is refused by a session advisory lock held on the writer's own connection.

Failures follow the one policy of exchange/core/refusals.py. A `Rejection` is its caller's alone. Losing
the database is an outage: the batch's callers get `WriterUnavailable` and the writer reconnects. A
broken invariant (`broken_invariant`: the state machine's `InvariantViolation`, a PostgreSQL backstop
firing, the chain head moved under it) is a bug: nothing of the batch commits, the writer logs one
CRITICAL line and stops taking writes (`stopped` says why; every caller, queued or later, gets
`WriterStopped`), and it is never answered as a refusal. Any other error of a batch is retried request
by request, so that it fails only the request that causes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import typing
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ledger import blinding, openings, store
from ledger import commands as c
from ledger.encoding import canonical_json, sha256
from ledger.state import Entry, Head, InvariantViolation, Rejection

log = logging.getLogger("envx.ledger.writer")

# pg advisory lock key: "envx" in ASCII, the ledger writer's lock.
WRITER_LOCK_KEY = 0x656E7678
MAX_BATCH = 2048
# How long the writer keeps trying to reach a server (the same one restarted, or a promoted standby
# named in a multi-host URL) before it gives up and stops.
RECONNECT_SECONDS = 60.0
# What losing the database looks like: a dropped socket, a server shutting down or still starting,
# or a closed connection used again.
CONNECTION_LOST = (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
                   asyncpg.InterfaceError, ConnectionError, OSError)

AfterCommit = Callable[[list[Entry]], Awaitable[None]]
# Runs inside the batch's transaction after the entries are written and before the commit; may add
# rows that must be durable together with the entries (Merkle tree nodes). Raising aborts the batch.
BeforeCommit = Callable[[asyncpg.Connection, list[Entry], Head], Awaitable[None]]
# Runs once on the writer's connection after it takes the lock, before it accepts requests
# (fork checks: refuse a database behind the last published checkpoint).
OnStart = Callable[[asyncpg.Connection], Awaitable[None]]
# Runs inside the batch's transaction before anything is applied, on the requests about to be applied
# (retries of applied ones are answered before it); a refusal (or None) per request. A linked group with
# one refused request is refused whole. The application decides who may write (a suspended participant).
Gate = Callable[[asyncpg.Connection, list[c.Request]], Awaitable[list[Rejection | None]]]


class WriterUnavailable(RuntimeError):
    """The writer is not running (stopped, lost its lock, or its database)."""


class WriterStopped(RuntimeError):
    """The writer stopped taking writes on a broken invariant (a bug); the message says why. Not an
    outage: it does not come back without a restart."""


class SecondWriter(RuntimeError):
    """Another process holds the writer lock on this database."""


def broken_invariant(exc: BaseException) -> bool:
    """A bug the writer must stop on, as opposed to a refusal, an outage or one request's own error."""
    if isinstance(exc, InvariantViolation | store.ChainHeadMoved):
        return True
    # PostgreSQL's backstops behind the state machine: CHECK constraints (no overdraft, retired units
    # final, the sink never debited), the log tables' append-only triggers, one resolution per hold.
    if isinstance(exc, asyncpg.CheckViolationError | asyncpg.InsufficientPrivilegeError):
        return True
    return isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name == "ledger_hold_resolutions_pkey"


# Each command's dataclass-generated __repr__ without the recursion guard dataclasses wrap it in (a command is
# a frozen value of ints, strings and tuples: never recursive), so the same string at half the cost.
_REPRS: dict[type, Callable[[Any], str]] = {
    t: getattr(t.__repr__, "__wrapped__", t.__repr__) for t in typing.get_args(c.Command)
}


def fingerprint(request: c.Request) -> bytes:
    """Digest of what the caller asked for, to tell a faithful retry from a reused client id.

    Commands are frozen dataclasses of ints, strings and tuples, so their repr is canonical. The digests are
    stored with the entries and compared on every retry: they must never change (tests/ledger/test_fingerprint.py).
    """
    meta = request.meta
    if meta and not meta.keys().isdisjoint(c.PROVENANCE_META):  # how it arrived is not part of what was asked
        meta = {k: v for k, v in meta.items() if k not in c.PROVENANCE_META}
    command = request.command
    return sha256(_REPRS.get(type(command), repr)(command).encode() + b"\x00" + canonical_json(meta))


@dataclass(slots=True)
class _Item:
    requests: list[c.Request]
    future: asyncio.Future[list[Entry]]
    fingerprints: list[bytes | None] = field(default_factory=list)


def _now_us() -> int:
    return time.time_ns() // 1000


class LedgerWriter:
    def __init__(
        self,
        dsn: str,
        *,
        max_batch: int = MAX_BATCH,
        clock: Callable[[], int] = _now_us,
        after_commit: Sequence[AfterCommit] = (),
        before_commit: Sequence[BeforeCommit] = (),
        on_start: Sequence[OnStart] = (),
        gates: Sequence[Gate] = (),
        reconnect_seconds: float = RECONNECT_SECONDS,
        blinding_key: bytes | None = None,
    ) -> None:
        self._dsn = dsn
        self._reconnect_seconds = reconnect_seconds
        # Salts of blinded events (ledger/blinding.py): from `blinding_key`, else the database's (made at start).
        self._salts = blinding.KeyedSalts(blinding_key) if blinding_key is not None else None
        self._max_batch = max_batch
        self._clock = clock
        self._after_commit = list(after_commit)
        self._before_commit = list(before_commit)
        self._on_start = list(on_start)
        self._gates = list(gates)
        # The queue: callers append, the writer takes everything queued at once. A plain deque and one future
        # the idle writer waits on (asyncio.Queue's per-item bookkeeping cost more than the rest of a submit).
        self._queue: deque[_Item] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._busy = False  # a batch is being written (a graceful stop lets it commit: `drain`)
        # Why the writer takes no writes any more (a broken invariant), or None.
        self.stopped: str | None = None
        self.blocks = store.BlockCache()
        self.batches = 0
        self.entries_written = 0
        # Called after each committed batch with (requests, entries written, seconds in the transaction).
        self._batch_observers: list[Callable[[int, int, float], None]] = []

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        # The writer keeps thousands of callers' futures alive; full GC passes over them stalled
        # batches by ~100 ms. Objects alive at start go to the permanent generation, and gen-0
        # collections run less often (cyclic garbage is rare on this path).
        gc.freeze()
        gc.set_threshold(50_000, 20, 50)
        self.blocks.clear()
        self.stopped = None
        self._conn = await asyncpg.connect(self._dsn)
        if not await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", WRITER_LOCK_KEY):
            await self._conn.close()
            self._conn = None
            raise SecondWriter("another envx writer holds the ledger lock on this database")
        try:
            if self._salts is None:
                self._salts = blinding.KeyedSalts(await openings.blinding_key(self._conn))
            for hook in self._on_start:
                await hook(self._conn)
        except BaseException:
            await self._conn.close()
            self._conn = None
            raise
        self._task = asyncio.create_task(self._run(), name="envx-ledger-writer")

    async def drain(self, timeout: float) -> bool:
        """Wait, at most `timeout` seconds, until nothing is queued and no batch is being written: a graceful stop
        lets what its callers already handed over commit instead of cancelling it. False if time ran out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (self._busy or self._queue) and self._task is not None and not self._task.done():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(WriterUnavailable("ledger writer stopped"))
        if self._conn:
            await self._conn.close()
            self._conn = None

    def add_after_commit(self, hook: AfterCommit) -> None:
        self._after_commit.append(hook)

    def add_before_commit(self, hook: BeforeCommit) -> None:
        self._before_commit.append(hook)

    def add_on_start(self, hook: OnStart) -> None:
        self._on_start.append(hook)

    def add_batch_observer(self, observer: Callable[[int, int, float], None]) -> None:
        """Told of every committed batch: its requests, the entries it wrote, its transaction's seconds (metrics)."""
        self._batch_observers.append(observer)

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch."""
        return len(self._queue)

    def add_gate(self, gate: Gate) -> None:
        self._gates.append(gate)

    @property
    def connection(self) -> asyncpg.Connection | None:
        """The writer's own connection, for hooks only (it holds the writer lock)."""
        return self._conn

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ----------------------------------------------------------------- submit

    async def submit(self, request: c.Request) -> Entry:
        return (await self.enqueue([request]))[0]

    async def submit_linked(self, requests: list[c.Request]) -> list[Entry]:
        """Append `requests` all together or not at all; raises `Rejection` with the first refusal."""
        return await self.enqueue(requests)

    def enqueue(self, requests: list[c.Request]) -> asyncio.Future[list[Entry]]:
        """Queue a linked group now and return its future: the writer applies its queue in order, so
        callers can pipeline dependent groups (settle, then release) without waiting in between."""
        if self.stopped is not None:
            raise WriterStopped(self.stopped)
        if not self.running:
            raise WriterUnavailable("ledger writer is not running")
        fut: asyncio.Future[list[Entry]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(list(requests), fut, [fingerprint(r) if r.client_id else None for r in requests]))
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        return fut

    async def _next(self) -> list[_Item]:
        """Wait for the first queued request, then take whatever else is queued (at most `max_batch` groups)."""
        queue = self._queue
        while not queue:
            self._wakeup = wakeup = asyncio.get_running_loop().create_future()
            try:
                await wakeup
            finally:
                self._wakeup = None
        if len(queue) <= self._max_batch:
            items = list(queue)
            queue.clear()
            return items
        return [queue.popleft() for _ in range(self._max_batch)]

    # ----------------------------------------------------------------- loop

    async def _run(self) -> None:
        while not self._stopping:
            items = await self._next()
            self._busy = True
            try:
                try:
                    await self._process(items)
                except Exception as exc:
                    if broken_invariant(exc):
                        self._stop_writes(items, exc)
                        break
                    if self._lost(exc):
                        await self._lost_database(items, exc)
                        continue
                    # Neither a bug of the ledger nor an outage (one request's own error, say metadata that
                    # does not encode): it must not stop the ledger; isolate the culprit.
                    log.exception("batch of %d failed; retrying one by one", len(items))
                    if len(items) == 1:
                        self._fail(items, exc)
                        continue
                    for n, item in enumerate(items):
                        try:
                            await self._process([item])
                        except Exception as exc2:
                            if broken_invariant(exc2):
                                self._stop_writes(items[n:], exc2)
                                break
                            if self._lost(exc2):
                                await self._lost_database(items[n:], exc2)
                                break
                            log.exception("request failed alone")
                            self._fail([item], exc2)
            finally:
                self._busy = False
        # Stopped for good (no database, refused, a broken invariant): nobody may wait forever on a queued
        # request.
        while self._queue:
            self._fail([self._queue.popleft()], WriterStopped(self.stopped) if self.stopped is not None
                       else WriterUnavailable("ledger writer stopped"))

    def _stop_writes(self, items: list[_Item], exc: BaseException) -> None:
        """A broken invariant: no more writes, no retries; say why (`stopped`, the log) and fail the waiting."""
        self.stopped = f"{type(exc).__name__}: {exc}"
        self._stopping = True
        log.critical("ledger writer stops taking writes: %s. This is a bug, not an outage: nothing of the batch "
                     "was committed and the writer is not retried; fix the cause and restart", self.stopped)
        self._fail(items, WriterStopped(self.stopped))

    def _lost(self, exc: BaseException) -> bool:
        return isinstance(exc, CONNECTION_LOST) or self._conn is None or self._conn.is_closed()

    async def _lost_database(self, items: list[_Item], exc: BaseException) -> None:
        # The batch may or may not have committed: callers get 503 and retry with their client ids,
        # which replay whatever did commit.
        log.error("ledger writer lost its database: %s", exc)
        self._fail(items, WriterUnavailable(f"ledger database unavailable: {exc}"))
        await self._reconnect()

    def _fail(self, items: list[_Item], exc: BaseException) -> None:
        for item in items:
            if not item.future.done():
                item.future.set_exception(exc)

    async def _reconnect(self) -> None:
        self.blocks.clear()  # possibly another server after a failover
        if self._conn is not None:
            self._conn.terminate()  # the socket is dead or suspect; do not wait for a goodbye
            self._conn = None
        deadline = time.monotonic() + self._reconnect_seconds
        delay = 0.05
        while not self._stopping and time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            try:
                # With a multi-host URL (target_session_attrs=read-write) this finds the promoted standby.
                conn = await asyncpg.connect(self._dsn)
            except Exception as exc:  # refused, still starting, in recovery, not writable: retry
                log.warning("reconnect failed: %s", exc)
                continue
            try:
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", WRITER_LOCK_KEY):
                    log.critical("writer lock taken by another process after reconnect; stopping")
                    await conn.close()
                    break
                # Possibly another server now (failover): reload the tree from it and refuse it if it
                # is behind the last published checkpoint, exactly as at start.
                for hook in self._on_start:
                    await hook(conn)
            except Exception as exc:
                if isinstance(exc, CONNECTION_LOST):
                    log.warning("reconnect failed: %s", exc)
                    conn.terminate()
                    continue
                log.critical("the database found after reconnecting is refused: %s; writer stops", exc)
                conn.terminate()
                break
            log.warning("ledger writer reconnected")
            self._conn = conn
            return
        self._stopping = True

    async def _process(self, items: list[_Item]) -> None:
        """Optimistic about idempotency: most client ids are new, so the batch is written without a
        look-up and the unique index decides; if it fires, the batch is redone with the look-up."""
        try:
            try:
                await self._process_once(items, lookup=False)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "ledger_entries_client_id":
                    raise
                await self._process_once(items, lookup=True)
        except BaseException:
            self.blocks.clear()  # whatever happened, trust only the database from here on
            raise

    async def _process_once(self, items: list[_Item], lookup: bool) -> None:
        conn = self._conn
        assert conn is not None
        # Results decided before the transaction: faithful retries and reused ids.
        results: dict[int, list[Entry] | BaseException] = {}
        started = time.perf_counter()
        async with conn.transaction():
            head = await store.read_head(conn)
            existing: dict[tuple[str, str], tuple[bytes | None, Entry]] = {}
            if lookup:
                keys = [(r.actor, r.client_id) for it in items for r in it.requests if r.client_id]
                existing = await store.find_idempotent(conn, keys)
            live: list[int] = []
            seen_in_batch: dict[tuple[str, str], int] = {}
            for i, it in enumerate(items):
                if existing:
                    outcome = self._replay(it, existing)
                    if outcome is not None:
                        results[i] = outcome
                        continue
                ids = [(r.actor, r.client_id) for r in it.requests if r.client_id]
                dup = None
                for k in ids:
                    if k in seen_in_batch:
                        dup = seen_in_batch[k]
                        break
                if dup is not None:
                    results[i] = _Later(dup, it)  # type: ignore[assignment]
                    continue
                for k in ids:
                    seen_in_batch[k] = i
                live.append(i)

            gated = await self._gate(conn, items, live)
            touched = store.Touched()
            for i in live:
                for r in items[i].requests:
                    touched.add(r.command)
            state, originals = await store.load_view(conn, head, touched, self.blocks)
            state.salts = self._salts
            written: list[Entry] = []
            fingerprints: list[bytes | None] = []  # of each written entry's request
            refused: list[int] = []  # items a gate or the state refused
            clock = self._clock
            for i in live:
                it = items[i]
                if gated and i in gated:
                    results[i] = gated[i]
                    refused.append(i)
                    continue
                try:
                    entries = state.apply_linked(it.requests, clock())
                except Rejection as rej:
                    results[i] = rej
                    refused.append(i)
                    continue
                # An InvariantViolation is not caught: it aborts the transaction and stops the writer.
                results[i] = entries
                written += entries
                fingerprints += it.fingerprints
            if not lookup:
                # A retry of something already applied may now be refused by the state (a hold voided
                # twice) instead of reaching the unique index: a refused request with a client id is
                # looked up before its refusal is believed.
                refused = [i for i in refused if any(r.client_id for r in items[i].requests)]
                if refused:
                    keys2 = [(r.actor, r.client_id) for i in refused for r in items[i].requests if r.client_id]
                    found = await store.find_idempotent(conn, keys2)
                    for i in refused:
                        replay = self._replay(items[i], found)
                        if replay is not None:
                            results[i] = replay
            changed_blocks = await store.flush(conn, state, originals, written, fingerprints, head)
            await openings.write(conn, written)  # a blinded event's openings, privately
            if written:
                for before in self._before_commit:
                    await before(conn, written, head)
        self.blocks.commit(originals, changed_blocks)  # committed: now the cache may learn from it
        # Durable: answer the callers, then the side effects.
        self.batches += 1
        self.entries_written += len(written)
        for observe in self._batch_observers:
            observe(sum(len(it.requests) for it in items), len(written), time.perf_counter() - started)
        for i, it in enumerate(items):
            res = results[i]
            if isinstance(res, _Later):
                res = res.resolve(items, results)
            if it.future.done():
                continue
            if isinstance(res, BaseException):
                it.future.set_exception(res)
            else:
                it.future.set_result(res)
        if written:
            for hook in self._after_commit:
                try:
                    await hook(written)
                except Exception:
                    log.exception("after-commit hook failed")

    async def _gate(self, conn: asyncpg.Connection, items: list[_Item], live: list[int]) -> dict[int, Rejection]:
        """The gates' refusals, by item: an item is refused whole for the first refusal of any request."""
        refused: dict[int, Rejection] = {}
        if not self._gates or not live:
            return refused
        flat = [(i, r) for i in live for r in items[i].requests]
        for gate in self._gates:
            for (i, _), verdict in zip(flat, await gate(conn, [r for _, r in flat]), strict=True):
                if verdict is not None and i not in refused:
                    refused[i] = verdict
        return refused

    @staticmethod
    def _replay(it: _Item, existing: dict[tuple[str, str], tuple[bytes | None, Entry]]
                ) -> list[Entry] | Rejection | None:
        found = [existing.get((r.actor, r.client_id)) for r in it.requests if r.client_id]
        if not found or all(f is None for f in found):
            return None
        fps = [fp for r, fp in zip(it.requests, it.fingerprints, strict=True) if r.client_id]
        hits = [f for f in found if f is not None]
        if len(hits) != len(found) or any(bytes(f[0] or b"") != fp for f, fp in zip(hits, fps, strict=True)):
            return Rejection("idempotency_conflict", "this client id was already used for a different request")
        return [f[1] for f in hits]


@dataclass(slots=True)
class _Later:
    """A duplicate client id within one batch: a faithful copy gets what the first got."""

    first: int
    item: _Item

    def resolve(self, items: list[_Item], results: dict[int, Any]) -> list[Entry] | BaseException:
        if items[self.first].fingerprints != self.item.fingerprints:
            return Rejection("idempotency_conflict", "this client id was already used for a different request")
        first: list[Entry] | BaseException = results[self.first]
        return first
