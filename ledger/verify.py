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

Speed: entries stream through server-side cursors in chunks; steps 1-3 are `ledger.integrity` (plain
hashlib, the entry's JSON read into a struct, the tree level by level), step 5 decodes each leaf straight
into the state machine's command (`ledger.replay.request_of_leaf`). With ``replay=False`` steps 5-6 are
skipped: an integrity audit (every stored byte against hashes, chain, tree and signed checkpoints) that
does not prove the bytes canonical or the history valid (the replay does). A large log (``PARALLEL_MIN``
entries) is split into seq ranges on tile boundaries, claimed one at a time: worker processes
(`ledger.integrity`, an interpreter each, importing the audit's snapshot) check steps 1-2 and their share
of the tree's first tile level, and so does this process (integrity only), or it replays the whole log (full
audit), read a chunk ahead on a second connection in the same snapshot, through a state machine that keeps
no undo journal (the replay stops at the first entry that does not apply); the full audit's speed is then
bounded by the state machine's replay alone. A range that misses an entry (a gap in seq) sends the audit back
to the serial pass, which reports the gap exactly.
"""

from __future__ import annotations

import asyncio
import gc
import operator
import os
import re
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec

from ledger import blinding, merkle, note, openings
from ledger.checkpoints import key_in_force
from ledger.encoding import BLINDED_VERSIONS, DOMAIN_TAG_V3, EncodingError
from ledger.integrity import (
    CHUNK,
    MAX_PROBLEMS,
    ROWS,
    Claims,
    IntegrityPass,
    Job,
    Part,
    check_claimed,
    next_tile_row,
    run_worker,
    whole,
)
from ledger.replay import request_of_leaf
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

PARALLEL_MIN = 100_000  # below this, starting worker processes costs more than they save
_HASH = merkle.HASH_SIZE
_REPLAY_COLUMNS = operator.itemgetter(0, 5, 7)  # seq, leaf, meta of an integrity row (`ledger.integrity.ROWS`)
# A chunk of the replay as three arrays: reading them costs this process a third of reading the same rows (the
# server does more of the work, on the other core).
_REPLAY_CHUNK = ("SELECT array_agg(seq ORDER BY seq), array_agg(leaf ORDER BY seq), array_agg(meta ORDER BY seq) "
                 "FROM ledger_entries WHERE seq BETWEEN $1 AND $2")


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


class Replayer:
    """Step 5 over rows ``(seq, leaf, meta)`` fed in seq order: each entry's request, read from its bytes, is
    applied to the pure state machine, which must reproduce those bytes. Stops at the first entry it cannot
    reproduce (at a gap in seq too, which the integrity pass reports)."""

    def __init__(self, report: Report) -> None:
        self.report = report
        # No undo journal: the replay stops at the first entry that does not apply, so nothing is ever rolled back.
        self.state: LedgerState | None = LedgerState(undo=False)
        self.n = 0
        # The openings of the blinded entries (version 3) of the rows being fed, by seq: the feeder refills them
        # chunk by chunk (`refill`); the replay unblinds with them and re-blinds with their salts.
        self.openings: dict[int, blinding.Openings] = {}
        self.state.salts = blinding.StoredSalts(self.openings)

    async def refill(self, conn: asyncpg.Connection, lo: int, hi: int) -> None:
        self.openings.clear()
        self.openings.update(await openings.between(conn, lo, hi))

    def feed(self, rows: Iterable[Sequence[Any]]) -> None:
        state = self.state
        if state is None:
            return
        add = self.report.add
        read = request_of_leaf
        apply = state.apply
        i = self.n
        opened = self.openings.get
        for seq, leaf, meta in rows:
            i += 1
            if seq != i:
                break
            try:
                request, ts = read(leaf, meta, opened(seq))
                replayed = apply(request, ts).leaf
            except (Rejection, InvariantViolation, EncodingError, ValueError, KeyError, TypeError,
                    AttributeError) as exc:
                add(f"entry {i}: replay refused it: {exc}")
                break
            if replayed != leaf:
                add(f"entry {i}: replay does not reproduce its bytes (entry or metadata altered)")
                break
        else:
            self.n = i
            return
        self.n = i - 1
        self.stop()

    def stop(self) -> None:
        if self.state is not None:
            self.report.warnings.append("replay stopped at the first entry it could not reproduce")
        self.state = None

    def finish(self) -> LedgerState | None:
        if self.state is not None:
            for p in self.state.check_invariants():
                self.report.add(f"invariant: {p}")
        return self.state


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


def expected_tiles(leaf_hashes: bytes, level1: bytes | None = None) -> dict[TileKey, Tile]:
    """Every tile of the tree over these leaf hashes, as the writer should have stored them. ``level1``: the
    row above the leaves (the root of each complete group of 256), when the workers have computed it."""
    size = len(leaf_hashes) // _HASH
    rows = [bytes(leaf_hashes)]
    if len(rows[0]) >= TILE_WIDTH * _HASH:
        rows.append(next_tile_row(rows[0]) if level1 is None else level1)
    while len(rows[-1]) >= TILE_WIDTH * _HASH:
        rows.append(next_tile_row(rows[-1]))
    out: dict[TileKey, Tile] = {}
    for tid in tiles_for_size(size):
        off = tid.index * TILE_WIDTH * _HASH
        out[tid.key] = Tile(tid.level, tid.index, rows[tid.level][off : off + tid.width * _HASH])
    return out


StoredTiles = dict[TileKey, tuple[int, bytes]]


async def stored_tiles(conn: asyncpg.Connection) -> StoredTiles:
    return {(r[0], r[1]): (r[2], r[3]) for r in await conn.fetch("SELECT level, idx, width, hashes FROM ledger_tiles")}


def check_tiles(stored: StoredTiles, expected: dict[TileKey, Tile], n: int, report: Report) -> None:
    """Step 3: the stored tiles are exactly the tiles of the tree over the log (or of a prefix of it)."""
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
                            keys: list[tuple[int, Any]], report: Report,
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


async def _serial(conn: asyncpg.Connection, check: IntegrityPass, replayer: Replayer | None) -> None:
    """Steps 1-2 and (with `replayer`) 5 in this process, over one cursor."""
    cur = await conn.cursor(ROWS, 1, 2**63 - 1)
    while rows := await cur.fetch(CHUNK):
        check.feed(rows)
        if replayer is not None:
            await replayer.refill(conn, rows[0]["seq"], rows[-1]["seq"])
            replayer.feed(map(_REPLAY_COLUMNS, rows))


async def _replay_ahead(conn: asyncpg.Connection, dsn: str, snapshot: str, replayer: Replayer, n: int) -> None:
    """Step 5 over entries 1..n, read a chunk ahead on a connection of its own (in the audit's snapshot), so the
    server reads the next chunk while this process replays the one before."""
    reader = await asyncpg.connect(dsn)
    ahead: asyncio.Future[Any] | None = None
    try:
        # Read-only, so never committed: the connection is dropped at the end.
        await reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        await reader.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        ahead = chunk = asyncio.ensure_future(reader.fetchrow(_REPLAY_CHUNK, 1, CHUNK))
        for lo in range(1, n + 1, CHUNK):
            seqs, leaves, metas = await chunk
            ahead = None
            if lo + CHUNK <= n:  # the next chunk, read while this one is replayed
                ahead = chunk = asyncio.ensure_future(reader.fetchrow(_REPLAY_CHUNK, lo + CHUNK, lo + 2 * CHUNK - 1))
            if seqs is None:  # no entry in the chunk: a gap, where the replay stops
                break
            await replayer.refill(conn, lo, lo + CHUNK - 1)
            replayer.feed(zip(seqs, leaves, metas, strict=True))
            if replayer.state is None:
                break
    finally:
        if ahead is not None:
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)
        reader.terminate()


def audit_span(n: int, jobs: int) -> int:
    """The length of the audit's ranges of entries 1..n: whole tiles (each range's groups of 256 leaves are its
    own, so it yields its level-1 hashes), about eight ranges per process, from one tile to 256 tiles long."""
    return min(max(n // (8 * jobs) // TILE_WIDTH, 1), 256) * TILE_WIDTH


async def _split(conn: asyncpg.Connection, report: Report, dsn: str, jobs: int, n: int,
                 replayer: Replayer | None) -> tuple[IntegrityPass, bytes, StoredTiles] | None:
    """Steps 1-2 over tile-aligned seq ranges (`audit_span`) that worker processes (`ledger.integrity`) and,
    without `replayer`, this process claim one at a time; with one (the full audit), this process replays the
    whole log through the state machine while `jobs - 1` (at least one) workers check every range. Returns the
    pass over the whole log (seq 1..n), the level-1 tile row and the stored tiles; None if seq has a gap (some
    range misses an entry), having reported nothing but what the replay found."""
    snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
    if not re.fullmatch(r"[0-9A-F-]+", snapshot):
        raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
    found: list[Part] = []
    with tempfile.TemporaryDirectory(prefix="envx-audit-") as tmp:
        path = os.path.join(tmp, "claims")
        claims = Claims.create(path)
        job = Job(dsn, snapshot, n, audit_span(n, jobs), path)
        workers = [asyncio.ensure_future(run_worker(job)) for _ in range(max(1, jobs - 1))]
        try:
            if replayer is None:
                stored = await stored_tiles(conn)  # while the workers start
                found += await check_claimed(conn, claims, job)
            else:
                await _replay_ahead(conn, dsn, snapshot, replayer, n)
                stored = await stored_tiles(conn)
            for parts in await asyncio.gather(*workers):
                found += parts
        except BaseException:
            for w in workers:
                w.cancel()  # kills its process
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        finally:
            claims.close()
    found.sort(key=operator.attrgetter("index"))
    if not all(whole(part, job) for part in found):
        return None
    if [part.index for part in found] != list(range(job.count)):
        raise RuntimeError(f"the audit's processes checked ranges {[p.index for p in found]} of {job.count}")
    check = IntegrityPass(report.add)
    levels: list[bytes] = []
    for part in found:
        if part.first_prev != check.prev_hex:
            report.add(f"entry {check.n + 1}: chain broken (prev does not match entry {check.n})")
        for p in part.problems:
            report.add(p)
        check.leaf_hashes += part.leaf_hashes
        check.keys += part.keys
        check.blinded += part.blinded
        levels.append(part.level1)
        check.n, check.prev_hex = part.n, part.last
    return check, b"".join(levels), stored


_BLINDED_ROWS = ("SELECT e.seq, e.leaf, o.openings FROM ledger_entries e LEFT JOIN ledger_entry_openings o USING (seq) "
                 "WHERE substring(e.leaf FROM 1 FOR $1) = ANY($2::bytea[]) ORDER BY e.seq")
_BLINDED_ROWS_AT = ("SELECT e.seq, e.leaf, o.openings FROM ledger_entries e LEFT JOIN ledger_entry_openings o "
                    "USING (seq) WHERE e.seq = ANY($3::bigint[]) AND substring(e.leaf FROM 1 FOR $1) = "
                    "ANY($2::bytea[]) ORDER BY e.seq")


async def _check_blinded(conn: asyncpg.Connection, report: Report, seqs: list[int] | None = None) -> int:
    """Every blinded entry (version 3 or 4) is opened by its stored openings, and no openings are stored for an
    entry that blinds nothing. Its own pass (few entries are blinded), in replay and integrity-only audits:
    over ``seqs`` (those the integrity pass found with a blinded version's tag, when it read the whole log), or
    over a scan of the log for the tags."""
    n = 0
    tags = list(BLINDED_VERSIONS)
    query = (_BLINDED_ROWS, len(DOMAIN_TAG_V3), tags) if seqs is None else \
        (_BLINDED_ROWS_AT, len(DOMAIN_TAG_V3), tags, seqs)
    async for r in conn.cursor(*query):
        n += 1
        seq = r["seq"]
        leaf = bytes(r["leaf"])
        # Which fields must be commitments is the entry version's (version 4: the amounts too).
        fields = blinding.FIELDS[BLINDED_VERSIONS[leaf[:len(DOMAIN_TAG_V3)]]]
        try:
            body = msgspec.json.decode(leaf[len(DOMAIN_TAG_V3):]).get("body")
            opened = None if r["openings"] is None else openings.decode(bytes(r["openings"]))
        except (ValueError, AttributeError, msgspec.DecodeError, blinding.BlindingError) as exc:
            report.add(f"entry {seq}: blinded entry or its openings unreadable: {exc}")
            continue
        for p in blinding.check(body, opened, fields):
            report.add(f"entry {seq}: {p}")
    for seq in await openings.orphans(conn):
        report.add(f"entry {seq}: openings are stored for an entry that blinds nothing")
    return n


async def _verify(conn: asyncpg.Connection, report: Report, *, replay: bool, checkpoints: Sequence[str],
                  trusted_keys: Sequence[str], t0: float, dsn: str | None = None, jobs: int = 1) -> None:
    max_seq = 0
    if jobs > 1 and dsn is not None:
        max_seq = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM ledger_entries")  # the index's last key
    replayer = Replayer(report) if replay else None
    level1: bytes | None = None
    stored: StoredTiles | None = None
    split = None
    if max_seq >= PARALLEL_MIN:
        kept = len(report.problems), len(report.warnings)
        split = await _split(conn, report, dsn, jobs, max_seq, replayer)  # type: ignore[arg-type]
        if split is None:  # a gap in seq: start again on the serial pass, which reports it exactly
            del report.problems[kept[0]:], report.warnings[kept[1]:]
            replayer = Replayer(report) if replay else None
    if split is not None:
        check, level1, stored = split
    else:  # small, or with a gap
        check = IntegrityPass(report.add)
        await _serial(conn, check, replayer)
    n = report.entries = check.n
    if replayer is not None and replayer.state is not None and replayer.n != n:
        replayer.stop()
    state = replayer.finish() if replayer is not None else None
    t1 = time.perf_counter()
    report.timings["log"] = t1 - t0
    report.checks.append(f"bytes, hashes, metadata hashes and chain of {n} entries")
    blinded = await _check_blinded(conn, report, None if check.broken else check.blinded)
    report.checks.append(f"{blinded} blinded entries: every commitment opened by its stored salt and value")
    if replay:
        report.checks.append("replay through the state machine, byte for byte; invariants")
    if check.broken:
        report.add("the log has a gap: tree and checkpoints not checked")
    else:
        expected = expected_tiles(bytes(check.leaf_hashes), level1)
        check_tiles(stored if stored is not None else await stored_tiles(conn), expected, n, report)
        await check_checkpoints(conn, expected, n, check.keys, report, checkpoints, trusted_keys)
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
