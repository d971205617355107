"""The audit's integrity pass over one seq range of the log (steps 1-3 of `ledger.verify`), in the
auditing process or in a worker process of its own.

Per entry: the stored hash is SHA-256(leaf); the bytes are a version-1, 2 or 3 envx entry whose seq,
prev, ts, type, actor, client_id and metadata hash agree with its row and with the entry before it; its
Merkle leaf hash is SHA-256(0x00 || leaf) (RFC 9162). A range that starts on a tile boundary also yields
the root of each of its complete groups of 256 leaves: its part of the level-1 tile row.

A large log is cut into tile-aligned ranges that the auditing process and its workers claim one at a time
(`Claims`), whichever is free first: a worker that starts late (an interpreter and its imports take a while on
a busy machine) or runs slower than the others takes fewer ranges instead of holding up the audit.

This module imports nothing the check does not need: `ledger.verify` runs it as a worker with an
interpreter of its own (`python -c` with `BOOT`), not through multiprocessing, which would import the
caller's main module (`envx`'s whole app, a bench) in every worker before any work. The job (DSN,
snapshot, range) arrives on stdin and the answer leaves on stdout, both msgpack.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import asyncpg
import msgspec

from ledger.encoding import BLINDED_VERSIONS, DOMAIN_TAG, VERSIONS, ZERO_HASH

MAX_PROBLEMS = 200
CHUNK = 20_000
TILE_WIDTH = 256  # ledger.tiles.TILE_WIDTH (not imported here: it brings the whole Merkle module)
TILE_HEIGHT = 8
HASH_SIZE = 32
_TAG_LEN = len(DOMAIN_TAG)
assert all(len(tag) == _TAG_LEN for tag in VERSIONS)  # version 1, 2 and 3 tags: "envx-entry/N\n"

ROWS = "SELECT seq, ts, type, actor, client_id, leaf, hash, meta FROM ledger_entries WHERE seq BETWEEN $1 AND $2 " \
       "ORDER BY seq"
# The worker's command line: `sys.path` of the caller follows as arguments, so the worker imports this very code.
BOOT = "import sys; sys.path[:0] = sys.argv[1:]; from ledger.integrity import main; main()"


class _Fields(msgspec.Struct):
    """What the integrity pass reads of an entry's JSON. Any value is taken as it is (what it must equal is
    checked below) and the body is left undecoded; the replay reads every byte."""

    v: Any = None
    seq: Any = None
    prev: Any = None
    ts: Any = None
    type: Any = None
    actor: Any = None
    client_id: Any = None
    meta: Any = None
    body: msgspec.Raw = msgspec.Raw()


_read_fields = msgspec.json.Decoder(_Fields).decode
_read_json = msgspec.json.decode


class IntegrityPass:
    """Steps 1-2 over rows ``(seq, ts, type, actor, client_id, leaf, hash, meta)`` fed in seq order, chunk by
    chunk; collects the leaf hashes and the keys the log registers (``key.register`` entries).

    A part of the log (``start`` > 0) may begin with an unknown previous hash (``prev_hex=None``): its first
    entry's ``prev`` is kept in ``first_prev`` for the caller to check at the seam.
    """

    def __init__(self, add: Callable[[str], None], *, start: int = 0,
                 prev_hex: str | None = ZERO_HASH.hex()) -> None:
        self.add = add
        self.start = start
        self.n = start
        self.prev_hex = prev_hex
        self.first_prev: Any = None
        self.leaf_hashes = bytearray()
        self.keys: list[tuple[int, Any]] = []  # (seq, verifier key) of key.register entries
        self.blinded: list[int] = []  # seq of the blinded entries, versions 3 and 4 (`verify._check_blinded`)
        self.broken = False  # seq gap: nothing after it can be placed in the tree

    def feed(self, rows: Iterable[Sequence[Any]]) -> None:
        if self.broken:
            return
        sha = hashlib.sha256
        leaf_prefix = sha(b"\x00")
        read = _read_fields
        versions = VERSIONS
        blinded_tags = BLINDED_VERSIONS
        blinded = self.blinded
        leaf_hashes = self.leaf_hashes
        i = self.n
        prev_hex = self.prev_hex
        for seq, ts, type_, actor, client_id, leaf, stored_hash, meta in rows:
            i += 1
            if seq != i:
                self.add(f"seq {seq} found where {i} was expected (gap or reorder)")
                self.broken = True
                i -= 1
                break
            digest = sha(leaf).digest()
            h = leaf_prefix.copy()
            h.update(leaf)
            leaf_hashes += h.digest()
            tag = leaf[:_TAG_LEN]
            version = versions.get(tag)
            if tag in blinded_tags:
                blinded.append(i)
            entry: _Fields | None = None
            if version is not None:
                try:
                    entry = read(leaf[_TAG_LEN:])
                except ValueError:
                    entry = None
            if entry is None or entry.v != version:
                if digest != stored_hash:
                    self.add(f"entry {i}: stored hash is not SHA-256 of its bytes")
                self.add(f"entry {i}: bytes are not a version-1, -2, -3 or -4 envx entry")
                prev_hex = digest.hex()
                continue
            if prev_hex is None:
                self.first_prev = prev_hex = entry.prev
            if (digest != stored_hash or entry.seq != i or entry.prev != prev_hex or entry.ts != ts
                    or entry.type != type_ or entry.actor != actor or entry.client_id != client_id
                    or entry.meta != sha(meta).hexdigest()):
                self._explain(i, entry, digest, prev_hex, (seq, ts, type_, actor, client_id, leaf, stored_hash, meta))
            if type_ == "key.register":
                self._key(i, entry)
            prev_hex = digest.hex()
        self.n, self.prev_hex = i, prev_hex

    def _explain(self, i: int, entry: _Fields, digest: bytes, prev_hex: str | None, row: Sequence[Any]) -> None:
        """Each way this entry disagrees with its row or its predecessor, one problem each."""
        _, ts, type_, actor, client_id, _, stored_hash, meta = row
        if digest != stored_hash:
            self.add(f"entry {i}: stored hash is not SHA-256 of its bytes")
        if entry.seq != i:
            self.add(f"entry {i}: encodes seq {entry.seq}")
        if entry.prev != prev_hex:
            self.add(f"entry {i}: chain broken (prev does not match entry {i - 1})")
        if (entry.ts, entry.type, entry.actor, entry.client_id) != (ts, type_, actor, client_id):
            self.add(f"entry {i}: columns ts/type/actor/client_id differ from the entry bytes")
        if hashlib.sha256(meta).hexdigest() != entry.meta:
            self.add(f"entry {i}: stored metadata does not match the hash committed in the entry")

    def _key(self, i: int, entry: _Fields) -> None:
        try:
            body = _read_json(entry.body) if entry.body else None
        except ValueError:
            body = None
        if isinstance(body, dict):
            self.keys.append((i, body.get("key")))

    def level1(self) -> bytes:
        """The roots of this range's complete groups of 256 leaves (it must start on a tile boundary)."""
        if self.start % TILE_WIDTH:
            raise ValueError("a range's level-1 hashes need it to start on a tile boundary")
        return next_tile_row(bytes(self.leaf_hashes))


def next_tile_row(row: bytes) -> bytes:
    """Tile-level row above ``row``: the root of each complete group of 256 hashes, the tree computed level by
    level over the whole row (the pairs of one level never straddle two groups)."""
    sha = hashlib.sha256
    full = len(row) // (TILE_WIDTH * HASH_SIZE) * TILE_WIDTH * HASH_SIZE
    level = row[:full]
    pair = 2 * HASH_SIZE
    for _ in range(TILE_HEIGHT):
        level = b"".join([sha(b"\x01" + level[o : o + pair]).digest() for o in range(0, len(level), pair)])
    return level


# --------------------------------------------------------------------------------------------
# The worker process
# --------------------------------------------------------------------------------------------


class Job(msgspec.Struct):
    """The audit's snapshot and its ranges of seq, 1..n cut every ``span`` entries (`audit_range`), claimed one
    at a time through ``claims``."""

    dsn: str
    snapshot: str
    n: int
    span: int
    claims: str

    @property
    def count(self) -> int:
        return -(-self.n // self.span)


def audit_range(job: Job, k: int) -> tuple[int, int]:
    """Range ``k`` of the audit: entries lo..hi."""
    lo = 1 + k * job.span
    return lo, min(lo + job.span - 1, job.n)


class Part(msgspec.Struct):
    """What a process found over range ``index`` of the audit: as `IntegrityPass` leaves it, plus the range's
    level-1 row."""

    index: int
    n: int
    leaf_hashes: bytes
    level1: bytes
    keys: list[tuple[int, Any]]
    blinded: list[int]
    problems: list[str]
    first_prev: Any
    last: Any
    broken: bool


_DONE = 2**63 - 1  # the claim counter of an abandoned split


class Claims:
    """The next range nobody has claimed, shared by the auditing process and its workers: a counter in a small
    file (made by `Claims.create`), read and advanced under an exclusive lock, so each range is checked by
    exactly one process."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR)

    @staticmethod
    def create(path: str) -> Claims:
        with open(path, "wb") as f:
            f.write(bytes(8))
        return Claims(path)

    def next(self) -> int:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            k = int.from_bytes(os.pread(self.fd, 8, 0), "big")
            if k < _DONE:
                os.pwrite(self.fd, (k + 1).to_bytes(8, "big"), 0)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        return k

    def stop(self) -> None:
        """No more claims, for anyone: a range missed an entry, so the split is abandoned for the serial pass
        (without this, a forged entry with a huge seq would make every process walk millions of empty ranges)."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            os.pwrite(self.fd, _DONE.to_bytes(8, "big"), 0)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)


def _bounded(problems: list[str]) -> Callable[[str], None]:
    def add(msg: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(msg)

    return add


async def check_range(conn: asyncpg.Connection, check: IntegrityPass, lo: int, hi: int) -> None:
    """Feed entries lo..hi of the log, read on `conn` through a server-side cursor, to `check`."""
    cur = await conn.cursor(ROWS, lo, hi)
    while rows := await cur.fetch(CHUNK):
        check.feed(rows)


async def check_part(conn: asyncpg.Connection, index: int, lo: int, hi: int) -> Part:
    """Range ``index`` (entries lo..hi, lo on a tile boundary) checked on `conn`, its predecessor unknown."""
    problems: list[str] = []
    check = IntegrityPass(_bounded(problems), start=lo - 1, prev_hex=None)
    await check_range(conn, check, lo, hi)
    return Part(index, check.n, bytes(check.leaf_hashes), b"" if check.broken else check.level1(), check.keys,
                check.blinded, problems, check.first_prev, check.prev_hex, check.broken)


def whole(part: Part, job: Job) -> bool:
    """The part holds every entry of its range: no gap in seq."""
    return not part.broken and part.n == audit_range(job, part.index)[1]


async def check_claimed(conn: asyncpg.Connection, claims: Claims, job: Job) -> list[Part]:
    """Claim ranges and check them on `conn` until none is left, or until one misses an entry (then nobody
    claims any more)."""
    parts = []
    while (k := claims.next()) < job.count:
        part = await check_part(conn, k, *audit_range(job, k))
        parts.append(part)
        if not whole(part, job):
            claims.stop()
            break
    return parts


async def _run(job: Job) -> list[Part]:
    conn = await asyncpg.connect(job.dsn)
    claims = Claims(job.claims)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # The very snapshot the auditing transaction reads: one consistent view across processes.
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{job.snapshot}'")
            return await check_claimed(conn, claims, job)
    finally:
        claims.close()
        await conn.close()


def main() -> None:
    """The worker: one job from stdin, the `Part` of each range it claimed to stdout."""
    gc.disable()  # nothing here makes reference cycles; the collector would only rescan the rows
    job = msgspec.msgpack.decode(sys.stdin.buffer.read(), type=Job)
    parts = asyncio.run(_run(job))
    sys.stdout.buffer.write(msgspec.msgpack.encode(parts))
    sys.stdout.buffer.flush()


async def run_worker(job: Job) -> list[Part]:
    """Check ranges in a worker process (see the module's docstring). Its answer (32 bytes a leaf) goes to
    a temporary file, not a pipe: a pipe would stall the worker while this process is busy with its own
    share of the audit."""
    with tempfile.TemporaryFile() as answer:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", BOOT, *sys.path,
                                                    stdin=asyncio.subprocess.PIPE, stdout=answer)
        try:
            await proc.communicate(msgspec.msgpack.encode(job))
        except BaseException:
            if proc.returncode is None:
                proc.kill()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"an audit worker failed (exit {proc.returncode})")
        answer.seek(0)
        return msgspec.msgpack.decode(answer.read(), type=list[Part])
