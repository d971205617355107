"""Full audit of a ledger database: bytes, chain, Merkle tree, signed checkpoints, replay, projections.

1. every stored leaf is an envx entry, its stored hash is SHA-256(leaf), its columns (seq, ts, type,
   actor, client_id) repeat what the bytes say, and its metadata hashes to the entry's ``meta`` field;
2. each entry names the previous entry's hash (the chain) and seq runs 1..n with no gap;
3. the Merkle tree is rebuilt from the leaf bytes (RFC 9162, leaf index = seq - 1) and every stored
   tile (``ledger_tiles``) must equal the recomputed one;
4. every signed checkpoint: its root is recomputed at its size, its signature verifies with the key
   the log names as in force at that size (``key.register`` entries), and its columns (size, root,
   key id) and its exact text agree with the note; ``ledger_signing_keys`` equals the log's keys;
5. replaying the log through the pure state machine reproduces every leaf byte for byte (this also
   proves the bytes canonical), and the replayed state keeps every invariant;
6. the projections in the database equal the replayed state.

So the full audit reports any single changed byte in the log, the tree, the checkpoints or the projections.
Deliberately not covered: ``ledger_entries.fingerprint`` (a digest of the caller's original request,
used only to tell a faithful retry from a reused client id; the request is not in the log, so it
cannot be recomputed; changing it alters no balance or entry: at worst a retry is refused with 409, or
answered with the entry the log really holds for that client id)
and ``ledger_checkpoints.created_at`` (wall-clock bookkeeping; a checkpoint's meaning is its note).

Speed: entries stream through a server-side cursor in chunks; the hash and tree work is plain
hashlib. With ``replay=False`` steps 5-6 are skipped: an integrity audit (every stored byte against
hashes, chain, tree and signed checkpoints) that does not prove the bytes canonical or the history
valid (the replay does). A large log (``PARALLEL_MIN`` entries) is split: worker processes importing
the audit's snapshot check steps 1-2 by seq range while this process replays the whole log (full
audit) or takes the first range (integrity only); the full audit's speed is then bounded by the state
machine's replay alone.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ledger import blinding, merkle, note, openings
from ledger.checkpoints import key_in_force
from ledger.encoding import DOMAIN_TAG, VERSION_3, VERSIONS, ZERO_HASH, EncodingError
from ledger.replay import request_of
from ledger.state import (
    NEGATIVE_ALLOWED,
    SINK_KINDS,
    Account,
    Balance,
    Block,
    Hold,
    InvariantViolation,
    LedgerState,
    Rejection,
)
from ledger.tiles import TILE_WIDTH, Tile, TileKey, tiles_for_size
from ledger.tree_store import tile_node_getter

_decode_json: Callable[[bytes], Any]
try:  # msgspec (already installed with Litestar) decodes entries ~5x faster than json; same values
    from msgspec.json import decode as _decode_json
except ImportError:  # pragma: no cover - the standalone verifier also runs without it
    _decode_json = json.loads

MAX_PROBLEMS = 200
PARALLEL_MIN = 200_000  # below this, starting worker processes costs more than they save
CHUNK = 20_000
_HASH = merkle.HASH_SIZE
_TAG_LEN = len(DOMAIN_TAG)
assert all(len(tag) == _TAG_LEN for tag in VERSIONS)  # version 1 and 2 tags: "envx-entry/N\n"


@dataclass
class Report:
    entries: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    checks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, msg: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(msg)

    def render(self) -> str:
        lines = [f"envx verify: {self.entries} entries in {self.seconds:.2f}s "
                 f"({self.entries / self.seconds:,.0f} entries/s)" if self.seconds else
                 f"envx verify: {self.entries} entries"]
        lines += [f"  checked: {c}" for c in self.checks]
        if self.timings:
            lines.append("  time: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()))
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.ok:
            lines.append("OK: the ledger verifies")
        else:
            lines.append(f"FAILED: {len(self.problems)} problem(s)")
            lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class LogAuditor:
    """Steps 1, 2 and 5 over entries fed in seq order, chunk by chunk; collects leaf hashes and keys.

    Rows are ``(seq, ts, type, actor, client_id, leaf, hash, meta)``.
    """

    def __init__(self, report: Report, replay: bool = True, *, start: int = 0,
                 prev_hex: str | None = ZERO_HASH.hex()) -> None:
        # A part of the log (parallel audit) starts after `start` with an unknown previous hash:
        # its first entry's `prev` is kept in `first_prev` for the caller to check at the seam.
        self.report = report
        self.n = start
        self.prev_hex = prev_hex
        self.first_prev: str | None = None
        self.leaf_hashes = bytearray()
        self.keys: list[tuple[int, str]] = []  # (seq, verifier key) of key.register entries
        self.state: LedgerState | None = LedgerState() if replay else None
        self.broken = False  # seq gap: nothing after it can be placed in the tree
        # The openings of the blinded entries being fed (by seq; the feeder refills them chunk by chunk): the
        # replay unblinds with them, and the integrity pass checks that they open every commitment.
        self.openings: dict[int, blinding.Openings] = {}
        if self.state is not None:
            self.state.salts = blinding.StoredSalts(self.openings)

    def feed(self, rows: Iterable[Sequence[Any]]) -> None:
        if self.broken:
            return
        add = self.report.add
        sha = hashlib.sha256
        loads = _decode_json
        leaf_hashes = self.leaf_hashes
        state = self.state
        i = self.n
        prev_hex = self.prev_hex
        for seq, ts, type_, actor, client_id, leaf, stored_hash, meta in rows:
            i += 1
            if seq != i:
                add(f"seq {seq} found where {i} was expected (gap or reorder)")
                self.broken = True
                i -= 1
                break
            digest = sha(leaf).digest()
            if digest != stored_hash:
                add(f"entry {i}: stored hash is not SHA-256 of its bytes")
            leaf_hashes += sha(b"\x00" + leaf).digest()
            entry: Any = None
            version = VERSIONS.get(leaf[:_TAG_LEN])
            if version is not None:
                try:
                    entry = loads(leaf[_TAG_LEN:])
                except ValueError:
                    entry = None
            if not isinstance(entry, dict) or entry.get("v") != version:
                add(f"entry {i}: bytes are not a version-1, -2 or -3 envx entry")
                prev_hex = digest.hex()
                state = self._stop_replay(state)
                continue
            if entry.get("seq") != i:
                add(f"entry {i}: encodes seq {entry.get('seq')}")
            if prev_hex is None:
                self.first_prev = entry.get("prev")
            elif entry.get("prev") != prev_hex:
                add(f"entry {i}: chain broken (prev does not match entry {i - 1})")
            if (entry.get("ts"), entry.get("type"), entry.get("actor"), entry.get("client_id")) != (
                    ts, type_, actor, client_id):
                add(f"entry {i}: columns ts/type/actor/client_id differ from the entry bytes")
            if sha(meta).hexdigest() != entry.get("meta"):
                add(f"entry {i}: stored metadata does not match the hash committed in the entry")
            if type_ == "key.register" and isinstance(entry.get("body"), dict):
                self.keys.append((i, entry["body"].get("key")))
            if version == VERSION_3:
                for p in blinding.check(entry.get("body"), self.openings.get(i)):
                    add(f"entry {i}: {p}")
            if state is not None:
                try:
                    replayed = state.apply(request_of(entry, meta, self.openings.get(i)), entry["ts"]).leaf
                except (Rejection, InvariantViolation, EncodingError, ValueError, KeyError, TypeError,
                        AttributeError) as exc:
                    add(f"entry {i}: replay refused it: {exc}")
                    state = self._stop_replay(state)
                else:
                    if replayed != leaf:
                        add(f"entry {i}: replay does not reproduce its bytes (entry or metadata altered)")
                        state = self._stop_replay(state)
                    else:
                        state.forget_journal()
            prev_hex = digest.hex()
        self.n, self.prev_hex, self.state = i, prev_hex, state
        self.report.entries = i

    def feed_replay(self, rows: Iterable[Sequence[Any]]) -> None:
        """Step 5 alone, over rows ``(seq, leaf, meta)`` in seq order: the split full audit replays in this
        process while worker processes check steps 1-2 of the same entries (and report any entry this
        cannot read). Stops at the first entry it cannot reproduce."""
        state = self.state
        if state is None or self.broken:
            return
        add = self.report.add
        loads = _decode_json
        apply = state.apply
        forget = state.forget_journal
        i = self.n
        for seq, leaf, meta in rows:
            i += 1
            entry: Any = None
            version = VERSIONS.get(leaf[:_TAG_LEN]) if seq == i else None
            if version is not None:
                try:
                    entry = loads(leaf[_TAG_LEN:])
                except ValueError:
                    entry = None
            if not isinstance(entry, dict) or entry.get("v") != version:
                # a gap, or bytes that are not an entry: the integrity pass reports which
                i -= 1
                state = self._stop_replay(state)
                break
            try:
                replayed = apply(request_of(entry, meta, self.openings.get(i)), entry["ts"]).leaf
            except (Rejection, InvariantViolation, EncodingError, ValueError, KeyError, TypeError,
                    AttributeError) as exc:
                add(f"entry {i}: replay refused it: {exc}")
                state = self._stop_replay(state)
                break
            if replayed != leaf:
                add(f"entry {i}: replay does not reproduce its bytes (entry or metadata altered)")
                state = self._stop_replay(state)
                break
            forget()
        self.n, self.state = i, state

    def _stop_replay(self, state: LedgerState | None) -> LedgerState | None:
        if state is not None:
            self.report.warnings.append("replay stopped at the first entry it could not reproduce")
        return None

    def finish(self) -> LedgerState | None:
        if self.state is not None:
            for p in self.state.check_invariants():
                self.report.add(f"invariant: {p}")
        return self.state


def replay_rows(rows: list[Any], report: Report) -> LedgerState:
    """Steps 1, 2 and 5 over rows with seq, ts, type, actor, client_id, leaf, hash, meta (in seq order)."""
    auditor = LogAuditor(report)
    auditor.feed([(r["seq"], r["ts"], r["type"], r["actor"], r["client_id"], bytes(r["leaf"]), bytes(r["hash"]),
                   bytes(r["meta"])) for r in rows])
    return auditor.finish() or LedgerState()


async def compare_projections(conn: asyncpg.Connection, state: LedgerState, report: Report) -> None:
    head = await conn.fetchrow("SELECT seq, hash, ts FROM ledger_head WHERE id = 1")
    if (head["seq"], bytes(head["hash"]), head["ts"]) != (state.head.seq, state.head.hash, state.head.ts):
        report.add("ledger_head differs from the end of the chain")
    accounts = {r["id"]: Account(r["id"], r["owner"], r["kind"])
                for r in await conn.fetch("SELECT * FROM ledger_accounts")}
    _diff(report, "accounts", state.accounts, accounts)
    insts = {r["code"]: (r["kind"], r["decimals"], r["next_serial"])
             for r in await conn.fetch("SELECT * FROM ledger_instruments")}
    _diff(report, "instruments", {k: (v.kind, v.decimals, v.next_serial) for k, v in state.instruments.items()},
          insts)
    batches = {r["id"]: (r["instrument"], r["start_serial"], r["end_serial"], r["account"], r["reference"])
               for r in await conn.fetch("SELECT * FROM ledger_batches")}
    _diff(report, "batches", {k: (b.instrument, b.start, b.end, b.account, b.reference)
                              for k, b in state.batches.items()}, batches)
    bals = {(r["account"], r["instrument"]): Balance(r["posted"], r["pending_out"], r["pending_in"])
            for r in await conn.fetch("SELECT * FROM ledger_balances")}
    _diff(report, "balances", {k: v for k, v in state.balances.items()}, bals)
    # The backstop flags of each balance row follow from its account's kind.
    flags = {(r["account"], r["instrument"]): (r["may_go_negative"], r["is_sink"])
             for r in await conn.fetch("SELECT account, instrument, may_go_negative, is_sink FROM ledger_balances")}
    kinds = {k: state.accounts[k[0]].kind if k[0] in state.accounts else None for k in state.balances}
    _diff(report, "balance flags", {k: (kind in NEGATIVE_ALLOWED, kind in SINK_KINDS) for k, kind in kinds.items()},
          flags)
    blocks = {(r["instrument"], r["start_serial"]): Block(r["instrument"], r["start_serial"], r["end_serial"],
                                                          r["batch"], r["account"], r["hold"], r["retired_seq"],
                                                          r["frozen_by"])
              for r in await conn.fetch("SELECT * FROM ledger_blocks")}
    _diff(report, "blocks", {(b.instrument, b.start): b for bl in state.blocks.values() for b in bl}, blocks)
    holds = {r["id"]: Hold(r["id"], r["kind"], r["debit"], r["credit"], r["instrument"], r["amount"],
                           r["expires_at"], r["state"], r["posted_amount"], r["resolved_seq"])
             for r in await conn.fetch("SELECT * FROM ledger_holds")}
    _diff(report, "holds", state.holds, holds)
    resolutions = {r["hold"]: (r["seq"], r["state"], r["amount"])
                   for r in await conn.fetch("SELECT * FROM ledger_hold_resolutions")}
    _diff(report, "hold resolutions", {h.id: (h.resolved_seq, h.state, h.posted_amount)
                                       for h in state.holds.values() if h.resolved_seq is not None}, resolutions)
    report.checks.append("projections (head, accounts, instruments, batches, balances, blocks, holds)")


def _diff(report: Report, what: str, expected: dict, found: dict) -> None:
    for k in expected.keys() - found.keys():
        report.add(f"{what}: {k} missing from the database")
    for k in found.keys() - expected.keys():
        report.add(f"{what}: {k} in the database but not in the replayed log")
    for k in expected.keys() & found.keys():
        if expected[k] != found[k]:
            report.add(f"{what}: {k} differs (log says {expected[k]}, database says {found[k]})")


# --------------------------------------------------------------------------------------------
# Merkle tree and checkpoints
# --------------------------------------------------------------------------------------------


def _next_row(row: bytes) -> bytes:
    """Tile-level row above ``row``: the root of each complete group of 256 hashes."""
    sha = hashlib.sha256
    out = bytearray()
    step = TILE_WIDTH * _HASH
    for start in range(0, len(row) - step + 1, step):
        hs = [row[o : o + _HASH] for o in range(start, start + step, _HASH)]
        while len(hs) > 1:
            hs = [sha(b"\x01" + hs[k] + hs[k + 1]).digest() for k in range(0, len(hs), 2)]
        out += hs[0]
    return bytes(out)


def expected_tiles(leaf_hashes: bytes) -> dict[TileKey, Tile]:
    """Every tile of the tree over these leaf hashes, as the writer should have stored them."""
    size = len(leaf_hashes) // _HASH
    rows = [bytes(leaf_hashes)]
    while len(rows[-1]) >= TILE_WIDTH * _HASH:
        rows.append(_next_row(rows[-1]))
    out: dict[TileKey, Tile] = {}
    for tid in tiles_for_size(size):
        off = tid.index * TILE_WIDTH * _HASH
        out[tid.key] = Tile(tid.level, tid.index, rows[tid.level][off : off + tid.width * _HASH])
    return out


async def check_tiles(conn: asyncpg.Connection, expected: dict[TileKey, Tile], n: int, report: Report) -> None:
    """Step 3: the stored tiles are exactly the tiles of the tree over the log (or of a prefix of it)."""
    stored = {(r[0], r[1]): (r[2], bytes(r[3]))
              for r in await conn.fetch("SELECT level, idx, width, hashes FROM ledger_tiles")}
    level0 = [(idx, width) for (level, idx), (width, _) in stored.items() if level == 0]
    covered = max((idx * TILE_WIDTH + width for idx, width in level0), default=0)
    if covered > n:
        report.add(f"tiles: the stored tree has {covered} leaves, the log {n} entries")
    elif covered < n:
        # Entries written by a writer without the tree hook (older data, tools): the next start builds them.
        report.warnings.append(f"tiles cover {covered} of {n} entries; the writer builds the rest at its next start")
    want = {t.key: t for t in tiles_for_size(min(covered, n))}
    for key in sorted(stored.keys() - want.keys()):
        report.add(f"tiles: tile {key} should not exist at tree size {min(covered, n)}")
    for key, tid in sorted(want.items()):
        got = stored.get(key)
        if got is None:
            report.add(f"tiles: tile {key} is missing")
            continue
        width, hashes = got
        exp = expected[key].hashes[: tid.width * _HASH]
        if width != tid.width or hashes != exp:
            report.add(f"tiles: tile {key} differs from the tree recomputed from the log")
    report.checks.append(f"Merkle tree rebuilt from the leaf bytes; {len(stored)} stored tiles compared")


async def check_checkpoints(conn: asyncpg.Connection, expected: dict[TileKey, Tile], n: int,
                            keys: list[tuple[int, str]], report: Report,
                            external: Sequence[str] = (), trusted: Sequence[str] = ()) -> None:
    """Step 4, plus checkpoints handed in from outside (`envx verify --checkpoint`)."""
    get = tile_node_getter(expected)
    valid_keys: list[tuple[int, str]] = []
    for seq, vkey in keys:
        try:
            note.Verifier.from_key_string(vkey)
            valid_keys.append((seq, vkey))
        except (note.NoteError, AttributeError):
            report.add(f"signing keys: entry {seq} registers an invalid key")
    rows = await conn.fetch("SELECT size, root, note, key_id FROM ledger_checkpoints ORDER BY size")
    origins: set[str] = set()
    for r in rows:
        size, text = r["size"], r["note"]
        where = f"checkpoint {size}"
        if size > n:
            report.add(f"{where}: signs a tree larger than the log ({n} entries)")
            continue
        in_force = key_in_force(valid_keys, size)
        if in_force is None:
            report.add(f"{where}: no signing key was registered in the log at or before it")
            continue
        try:
            opened = note.open_note(text, [in_force])
            cp = note.parse_checkpoint(opened.text)
        except note.NoteError as exc:
            report.add(f"{where}: does not verify with the key in force ({exc.code})")
            continue
        root = merkle.tree_root(size, get)
        origins.add(cp.origin)
        signer = opened.verified_by[0]
        if opened.unverified or len(opened.verified_by) != 1 or cp.extensions or not _exact(text, opened.text):
            report.add(f"{where}: note is not exactly one checkpoint text and one signature")
        if cp.size != size or cp.root_hash != root:
            report.add(f"{where}: signed size/root differ from the tree recomputed from the log")
        if bytes(r["root"]) != root:
            report.add(f"{where}: root column differs from the tree recomputed from the log")
        if r["key_id"] != signer.key_id.hex():
            report.add(f"{where}: key_id column differs from the note's signature")
    if len(origins) > 1:
        report.add(f"checkpoints name several origins: {sorted(origins)}")
    stored = {r["seq"]: (r["name"], r["key_id"], r["verifier_key"])
              for r in await conn.fetch("SELECT * FROM ledger_signing_keys")}
    in_log = {}
    for seq, vkey in valid_keys:
        v = note.Verifier.from_key_string(vkey)
        in_log[seq] = (v.name, v.key_id.hex(), vkey)
    _diff(report, "signing keys", in_log, stored)
    report.checks.append(f"{len(rows)} signed checkpoints: roots recomputed, signatures by the keys in force "
                         f"({len(valid_keys)} registered in the log)")
    for i, text in enumerate(external, start=1):
        where = f"given checkpoint #{i}"
        try:
            cp = note.verify_checkpoint(text, list(trusted) or [k for _, k in valid_keys])
        except note.NoteError as exc:
            report.add(f"{where}: does not verify ({exc.code}: {exc})")
            continue
        if cp.size > n:
            report.add(f"{where}: size {cp.size} is beyond the log ({n} entries): the database lost entries")
        elif merkle.tree_root(cp.size, get) != cp.root_hash:
            report.add(f"{where}: the log's root at size {cp.size} differs: the database is not that log")
    if external:
        report.checks.append(f"{len(external)} given checkpoint(s) against the log")


def _exact(text: str, body: str) -> bool:
    """The note is its text, a blank line and one signature line, nothing else."""
    rest = text[len(body):]
    return text.startswith(body) and rest.startswith("\n") and rest.count("\n") == 2


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


async def verify_connection(conn: asyncpg.Connection, report: Report, *, replay: bool = True,
                            checkpoints: Sequence[str] = (), trusted_keys: Sequence[str] = (),
                            dsn: str | None = None, jobs: int = 1) -> None:
    """Run the audit on ``conn`` inside the caller's transaction (REPEATABLE READ for a consistent view).

    ``jobs > 1`` (with ``dsn``) splits the integrity pass of a large log over processes that import this
    transaction's snapshot, next to the replay in this one; it needs a REPEATABLE READ transaction.
    """
    t0 = time.perf_counter()
    # Nothing on this path makes reference cycles; the collector would only rescan millions of rows.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        await _verify(conn, report, replay=replay, checkpoints=checkpoints, trusted_keys=trusted_keys, t0=t0,
                      dsn=dsn, jobs=jobs)
    finally:
        if gc_was_enabled:
            gc.enable()


async def _feed_range(conn: asyncpg.Connection, auditor: LogAuditor, lo: int = 1, hi: int = 2**63 - 1) -> None:
    cur = await conn.cursor("SELECT seq, ts, type, actor, client_id, leaf, hash, meta FROM ledger_entries "
                            "WHERE seq BETWEEN $1 AND $2 ORDER BY seq", lo, hi)
    while rows := await cur.fetch(CHUNK):
        await _refill_openings(conn, auditor, rows[0]["seq"], rows[-1]["seq"])
        auditor.feed(rows)


async def _refill_openings(conn: asyncpg.Connection, auditor: LogAuditor, lo: int, hi: int) -> None:
    """The openings of the blinded entries of the chunk lo..hi, in place of the last chunk's."""
    auditor.openings.clear()
    auditor.openings.update(await openings.between(conn, lo, hi))


async def _part_async(dsn: str, snapshot: str, lo: int, hi: int) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # The very snapshot the coordinating transaction reads: one consistent view across processes.
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            report = Report()
            auditor = LogAuditor(report, replay=False, start=lo - 1, prev_hex=None)
            await _feed_range(conn, auditor, lo, hi)
    finally:
        await conn.close()
    return {"n": auditor.n, "leaf_hashes": bytes(auditor.leaf_hashes), "keys": auditor.keys,
            "problems": report.problems, "first_prev": auditor.first_prev, "last": auditor.prev_hex,
            "broken": auditor.broken}


def _part(dsn: str, snapshot: str, lo: int, hi: int) -> dict[str, Any]:
    """One worker process's share of the integrity pass (entries lo..hi, no replay)."""
    gc.disable()
    return asyncio.run(_part_async(dsn, snapshot, lo, hi))


async def _feed_parallel(conn: asyncpg.Connection, auditor: LogAuditor, dsn: str, jobs: int, n: int,
                         replayer: LogAuditor | None = None) -> None:
    """The integrity pass (steps 1-2) split by seq range over processes. Without `replayer`, this process
    takes the first range itself; with one (the full audit), this process replays the whole log through
    the state machine while `jobs - 1` (at least one) worker processes check every range."""
    snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
    if not re.fullmatch(r"[0-9A-F-]+", snapshot):
        raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
    parts = max(1, jobs - 1) if replayer is not None else jobs
    bounds = [1 + n * k // parts for k in range(parts + 1)]
    first_worker = 0 if replayer is not None else 1
    ctx = multiprocessing.get_context("spawn")  # no forked copy of this process's loop and sockets
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(parts - first_worker, mp_context=ctx) as pool:
        futures = [loop.run_in_executor(pool, _part, dsn, snapshot, bounds[k], bounds[k + 1] - 1)
                   for k in range(first_worker, parts)]
        if replayer is None:
            await _feed_range(conn, auditor, bounds[0], bounds[1] - 1)
        else:
            cur = await conn.cursor("SELECT seq, leaf, meta FROM ledger_entries ORDER BY seq")
            while rows := await cur.fetch(CHUNK):
                await _refill_openings(conn, replayer, rows[0]["seq"], rows[-1]["seq"])
                replayer.feed_replay(rows)
        results = await asyncio.gather(*futures)
    for k, part in enumerate(results, start=first_worker):
        if auditor.broken or auditor.n != bounds[k] - 1:
            auditor.broken = True
            break
        if part["first_prev"] != auditor.prev_hex:
            auditor.report.add(f"entry {auditor.n + 1}: chain broken (prev does not match entry {auditor.n})")
        for p in part["problems"]:
            auditor.report.add(p)
        auditor.leaf_hashes += part["leaf_hashes"]
        auditor.keys += part["keys"]
        auditor.n, auditor.prev_hex, auditor.broken = part["n"], part["last"], part["broken"]
    auditor.report.entries = auditor.n
    if replayer is not None and replayer.state is not None and replayer.n != auditor.n:
        replayer.state = replayer._stop_replay(replayer.state)


async def _verify(conn: asyncpg.Connection, report: Report, *, replay: bool, checkpoints: Sequence[str],
                  trusted_keys: Sequence[str], t0: float, dsn: str | None = None, jobs: int = 1) -> None:
    count = max_seq = 0
    if jobs > 1 and dsn is not None:
        count, max_seq = await conn.fetchrow("SELECT count(*), coalesce(max(seq), 0) FROM ledger_entries")
    if count >= PARALLEL_MIN and count == max_seq:
        # Split: worker processes check bytes, hashes and chain while this one replays (full audit) or
        # takes the first range (integrity only).
        auditor = LogAuditor(report, replay=False)
        replayer = LogAuditor(report, replay=True) if replay else None
        await _feed_parallel(conn, auditor, dsn, jobs, count, replayer)  # type: ignore[arg-type]
        auditor.state = replayer.state if replayer is not None else None
    else:  # small, or with a gap (the serial pass reports it exactly)
        auditor = LogAuditor(report, replay=replay)
        await _feed_range(conn, auditor)
    state = auditor.finish()
    n = auditor.n
    t1 = time.perf_counter()
    report.timings["log"] = t1 - t0
    report.checks.append(f"bytes, hashes, metadata hashes and chain of {n} entries")
    report.checks.append("blinded entries: every commitment opened by its stored salt and value")
    for seq in await openings.orphans(conn):
        report.add(f"entry {seq}: openings are stored for an entry that blinds nothing")
    if replay:
        report.checks.append("replay through the state machine, byte for byte; invariants")
    if auditor.broken:
        report.add("the log has a gap: tree and checkpoints not checked")
    else:
        expected = expected_tiles(bytes(auditor.leaf_hashes))
        await check_tiles(conn, expected, n, report)
        await check_checkpoints(conn, expected, n, auditor.keys, report, checkpoints, trusted_keys)
    t2 = time.perf_counter()
    report.timings["tree and checkpoints"] = t2 - t1
    if state is not None:
        await compare_projections(conn, state, report)
    elif replay:
        report.warnings.append("projections not compared: the replay did not complete")
    report.timings["projections"] = time.perf_counter() - t2


async def verify_database(dsn: str, *, replay: bool = True, checkpoints: Sequence[str] = (),
                          trusted_keys: Sequence[str] = (), jobs: int | None = None) -> Report:
    """Audit the ledger at `dsn` (an asyncpg DSN), reading in one REPEATABLE READ snapshot.

    ``jobs`` (default: the CPU count) processes share the integrity pass of a large log (the full
    audit replays in this process meanwhile).
    """
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    report = Report()
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await verify_connection(conn, report, replay=replay, checkpoints=checkpoints, trusted_keys=trusted_keys,
                                    dsn=dsn, jobs=jobs)
    finally:
        await conn.close()
    report.seconds = time.perf_counter() - started
    return report
