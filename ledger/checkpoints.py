"""Signed checkpoints: C2SP tlog-checkpoint notes over the ledger's Merkle tree.

A checkpoint commits to ``(origin, tree size, root)`` and is signed with the key that the log itself
names as current at that size (the last ``key.register`` entry with ``seq <= size``), so key rotation
is provable from the log and old keys stay valid for old checkpoints.

:class:`CheckpointPublisher` signs only what is durable: the writer's ``after_commit`` hook marks the
newest committed ``(size, root)``; a small task publishes it at once when the last publication is at
least ``interval`` old (an idle ledger gets a checkpoint per batch) and otherwise when the interval
has elapsed (at most one per interval under load). Each publication is a row of
``ledger_checkpoints`` and, for fork safety, the file ``checkpoint-latest.txt`` in the data dir.

:func:`check_not_behind` is the start-up fork check: a database that is smaller than the last
published checkpoint, or whose tree at that size has another root, must not be written to.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from ledger import note
from ledger.state import Entry
from ledger.tree_store import TreeStore, root_at, stored_size

log = logging.getLogger("envx.ledger.checkpoints")


@dataclass(frozen=True, slots=True)
class Published:
    size: int
    root: bytes
    note: str
    key_id: str
    created_at: datetime | None = None

    def view(self) -> dict[str, Any]:
        return {"tree_size": self.size, "root": base64.b64encode(self.root).decode(), "key_id": self.key_id,
                "created_at": self.created_at, "checkpoint": self.note}


def key_in_force(keys: Iterable[tuple[int, str]], size: int) -> str | None:
    """Verifier key that signs checkpoints of ``size``: the last one registered at ``seq <= size``."""
    current = None
    for seq, vkey in sorted(keys):
        if seq > size:
            break
        current = vkey
    return current


def _published(row: asyncpg.Record | None) -> Published | None:
    if row is None:
        return None
    return Published(int(row["size"]), bytes(row["root"]), row["note"], row["key_id"], row["created_at"])


async def latest(conn: asyncpg.Connection) -> Published | None:
    return _published(await conn.fetchrow("SELECT * FROM ledger_checkpoints ORDER BY size DESC LIMIT 1"))


async def at_least(conn: asyncpg.Connection, size: int) -> Published | None:
    """The newest checkpoint, if it covers a tree of at least ``size`` leaves."""
    cp = await latest(conn)
    return cp if cp is not None and cp.size >= size else None


async def at_size(conn: asyncpg.Connection, size: int) -> Published | None:
    return _published(await conn.fetchrow("SELECT * FROM ledger_checkpoints WHERE size = $1", size))


async def listing(conn: asyncpg.Connection, before: int | None, limit: int) -> list[Published]:
    rows = await conn.fetch("SELECT * FROM ledger_checkpoints WHERE size < $1 ORDER BY size DESC LIMIT $2",
                            before if before is not None else 2**63 - 1, limit)
    return [p for p in map(_published, rows) if p is not None]


async def registered_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT seq, name, key_id, verifier_key FROM ledger_signing_keys ORDER BY seq"))


# --------------------------------------------------------------------------------------------
# The latest-checkpoint file (fork safety)
# --------------------------------------------------------------------------------------------


def write_latest_file(path: Path, text: str) -> None:
    """Replace the file atomically and durably: a crash leaves the old or the new note, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class ForkRefused(RuntimeError):
    """The database is behind, or diverges from, the last checkpoint this registry published."""


async def check_not_behind(conn: asyncpg.Connection, note_text: str, *, origin: str,
                           verifiers: list[str], source: str) -> note.Checkpoint:
    """Refuse (``ForkRefused``) a database whose tree does not extend the published checkpoint.

    ``verifiers`` are the keys known to this database plus our own; a note signed by a key the
    database has never seen (a rotation it is missing) is still compared by size and root, which is
    what decides.
    """
    try:
        cp = note.verify_checkpoint(note_text, verifiers)
    except note.UnknownKeyError:
        try:
            cp = note.parse_checkpoint(note.parse_note(note_text).text)
        except note.NoteError as exc:
            raise ForkRefused(f"{source} is not a checkpoint note ({exc}); inspect it before starting") from None
    except note.NoteError as exc:
        raise ForkRefused(f"{source} does not verify ({exc}); inspect it before starting") from None
    if cp.origin != origin:
        raise ForkRefused(f"{source} is a checkpoint of log {cp.origin!r}, this registry is {origin!r}")
    size = await stored_size(conn)
    if size < cp.size:
        raise ForkRefused(
            f"refusing to start: the database holds {size} ledger entries but checkpoint {cp.size} was already "
            f"published ({source}). Writing now would fork the published log. Was the database restored from "
            f"an old backup, or is this the wrong database? Restore one that contains all {cp.size} entries.")
    if await root_at(conn, cp.size) != cp.root_hash:
        raise ForkRefused(
            f"refusing to start: the database's Merkle root at size {cp.size} differs from the published "
            f"checkpoint ({source}): this database is a fork of the published log.")
    return cp


# --------------------------------------------------------------------------------------------
# Publisher
# --------------------------------------------------------------------------------------------


class CheckpointPublisher:
    """Signs and stores checkpoints of the durable tree; see the module docstring for the cadence."""

    def __init__(self, dsn: str, *, origin: str, signer: note.Signer, tree: TreeStore, interval: float,
                 latest_file: Path | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._dsn = dsn
        self.origin = origin
        self._signers = {signer.verifier_key_string(): signer}
        self._tree = tree
        self.interval = interval
        self._latest_file = latest_file
        self._clock = clock
        self._keys: list[tuple[int, str]] = []
        self._target: tuple[int, bytes] = (0, b"")
        self.latest: Published | None = None
        self._dirty = asyncio.Event()
        self._changed = asyncio.Condition()
        self._last_publish = -math.inf
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # Called (in a thread) with each newly published note, after the latest file: e.g. a copy beside the WAL
        # archive (exchange/core/backup.py).
        self.on_publish: list[Callable[[str], None]] = []

    @property
    def keys(self) -> list[tuple[int, str]]:
        """(seq, verifier key) of every key.register entry, as the log has them."""
        return list(self._keys)

    def add_signer(self, signer: note.Signer) -> None:
        """Hold another key; it signs once the log registers it (see `key_in_force`)."""
        self._signers[signer.verifier_key_string()] = signer

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ---- writer hooks

    async def on_start(self, conn: asyncpg.Connection) -> None:
        """After the tree store's on_start: what is published, which keys the log names."""
        self._keys = [(r["seq"], r["verifier_key"]) for r in await registered_keys(conn)]
        self.latest = await latest(conn)
        self._mark()

    async def after_commit(self, entries: list[Entry]) -> None:
        for e in entries:
            if e.type == "key.register":
                self._keys.append((e.seq, e.body["key"]))
        self._mark()

    def _mark(self) -> None:
        self._target = self._tree.head()
        if self._target[0] > (self.latest.size if self.latest else 0):
            self._dirty.set()

    # ---- task

    async def start(self) -> None:
        self._conn = await asyncpg.connect(self._dsn)
        self._task = asyncio.create_task(self._run(), name="envx-checkpoint-publisher")

    async def stop(self) -> None:
        """Stop the task, publishing what is still unsigned so the latest file is current."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._conn is not None:
            try:
                await self.publish_once()
            except Exception:
                log.exception("final checkpoint failed")
            await self._conn.close()
            self._conn = None

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            delay = self._last_publish + self.interval - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)  # under load: at most one checkpoint per interval
            self._dirty.clear()
            try:
                await self.publish_once()
            except Exception:  # keep publishing: a lost connection is retried, anything else stays loud
                log.exception("publishing a checkpoint failed; retrying")
                self._dirty.set()
                await asyncio.sleep(max(self.interval, 0.5))
                await self._reconnect()

    async def _reconnect(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        try:
            self._conn = await asyncpg.connect(self._dsn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                asyncpg.exceptions.TargetServerAttributeNotMatched) as exc:  # a standby not yet promoted
            log.warning("checkpoint publisher cannot reconnect: %s", exc)

    async def publish_once(self) -> Published | None:
        """Sign and store the newest durable tree head if it is not published yet."""
        async with self._lock:
            size, root = self._target
            if size == 0 or (self.latest is not None and size <= self.latest.size):
                return self.latest
            vkey = key_in_force(self._keys, size)
            signer = self._signers.get(vkey) if vkey else None
            if signer is None:
                # Nothing registered yet, or the log names a key we do not hold: wait for a registration.
                log.warning("no signing key in force for tree size %d; checkpoint deferred", size)
                return self.latest
            text = note.sign_checkpoint(note.Checkpoint(self.origin, size, root), signer)
            assert self._conn is not None
            row = await self._conn.fetchrow(
                """INSERT INTO ledger_checkpoints (size, root, note, key_id) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (size) DO NOTHING RETURNING *""", size, root, text, signer.key_id.hex())
            if row is None:
                row = await self._conn.fetchrow("SELECT * FROM ledger_checkpoints WHERE size = $1", size)
                if row is None or bytes(row["root"]) != root:
                    raise RuntimeError(f"a different checkpoint already exists at size {size}")
            published = _published(row)
            assert published is not None
            if self._latest_file is not None:
                await asyncio.to_thread(write_latest_file, self._latest_file, published.note)
            for hook in self.on_publish:
                try:
                    await asyncio.to_thread(hook, published.note)
                except Exception:
                    log.exception("a checkpoint publication hook failed")
            self.latest = published
            self._last_publish = self._clock()
        async with self._changed:
            self._changed.notify_all()
        return published

    async def wait_covering(self, size: int, timeout: float) -> Published | None:
        """The newest checkpoint once it covers ``size`` leaves; None after ``timeout`` seconds."""
        def covered() -> bool:
            return self.latest is not None and self.latest.size >= size

        if covered():
            return self.latest
        if not self.running:
            return None
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(covered), timeout)
        except TimeoutError:
            return None
        return self.latest
