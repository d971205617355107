"""PostgreSQL side of the writer: load the view a batch touches, flush what the batch changed.

Raw asyncpg on the writer's own connection: this is the hot path, and every statement works on
whole arrays (unnest / COPY) so a batch costs a fixed number of round trips, not one per entry.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg

from ledger import commands as c
from ledger.note import Verifier
from ledger.state import (
    HOLD_PENDING,
    NEGATIVE_ALLOWED,
    SINK_KINDS,
    Account,
    Balance,
    Block,
    Entry,
    Head,
    Hold,
    Instrument,
    LedgerState,
)

BalanceKey = tuple[int, str]


@dataclass(slots=True)
class Touched:
    """Every row a set of requests may read or change; the view must hold all of them."""

    accounts: set[int] = field(default_factory=set)
    instruments: set[str] = field(default_factory=set)
    holds: set[int] = field(default_factory=set)
    pairs: set[BalanceKey] = field(default_factory=set)
    # A freeze chooses among free and pledged blocks, so it needs the holds those blocks name.
    block_holds: bool = False
    signing_keys: bool = False  # key.register checks the whole (short) key list

    def add(self, cmd: c.Command) -> None:
        if type(cmd) is c.Transfer:  # the common case first, without the pattern match
            inst = cmd.instrument
            self.instruments.add(inst)
            self.accounts.add(cmd.debit)
            self.accounts.add(cmd.credit)
            self.pairs.add((cmd.debit, inst))
            self.pairs.add((cmd.credit, inst))
            return
        match cmd:
            case c.DefineInstrument(code=code):
                self.instruments.add(code)
            case c.OpenAccount():
                pass
            case c.IssueBatch(source=src, account=acc, instrument=inst):
                self._pairs(inst, src, acc)
            case c.CreateHold(kind=kind, debit=d, credit=cr, instrument=inst):
                self._pairs(inst, d, cr)
                self.block_holds = self.block_holds or kind == "freeze"
            case c.Transfer(debit=d, credit=cr, instrument=inst):
                self._pairs(inst, d, cr)
            case c.Retire(account=acc, sink=sink, instrument=inst):
                self._pairs(inst, acc, sink)
            case (c.PostHold(hold=h) | c.VoidHold(hold=h) | c.ExpireHold(hold=h) | c.AmendHold(hold=h)
                  | c.TrimHold(hold=h)):
                self.holds.add(h)
            case c.Event(legs=legs):
                for leg in legs:
                    self.add(leg)
            case c.RegisterSigningKey():
                self.signing_keys = True

    def _pairs(self, inst: str, *accounts: int) -> None:
        self.instruments.add(inst)
        for a in accounts:
            self.accounts.add(a)
            self.pairs.add((a, inst))

    def add_hold_rows(self, holds: Iterable[Hold]) -> None:
        for h in holds:
            self._pairs(h.instrument, h.debit, h.credit)


async def read_head(conn: asyncpg.Connection) -> Head:
    row = await conn.fetchrow("SELECT seq, hash, ts FROM ledger_head WHERE id = 1")
    return Head(row["seq"], bytes(row["hash"]), row["ts"])


async def find_idempotent(
    conn: asyncpg.Connection, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], tuple[bytes | None, Entry]]:
    """Entries already written under these (actor, client_id) keys, with their request fingerprints."""
    if not keys:
        return {}
    rows = await conn.fetch(
        """SELECT e.* FROM ledger_entries e
           JOIN unnest($1::text[], $2::text[]) AS k(actor, client_id)
             ON e.actor = k.actor AND e.client_id = k.client_id""",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r["actor"], r["client_id"]): (r["fingerprint"], entry_from_row(r)) for r in rows}


def entry_from_row(r: asyncpg.Record) -> Entry:
    from ledger.encoding import decode_entry

    leaf = bytes(r["leaf"])
    body = decode_entry(leaf)["body"]
    return Entry(r["seq"], r["ts"], r["type"], r["actor"], r["client_id"], leaf, bytes(r["hash"]),
                 bytes(r["meta"]), body)


Originals = dict[BalanceKey, list[Block]]


class BlockCache:
    """Committed serial blocks per (account, instrument), kept by the single writer between batches.

    Serial holdings fragment as they trade, so reloading every block of every holder a batch touches
    costs O(blocks) per batch. The writer holds the writer lock and the chain head moves by
    compare-and-swap, so nobody else changes blocks behind it; even so the cache is only filled
    with what a committed transaction read or wrote, and is dropped whole on any failure.
    Blocks are immutable, so the view gets a copy of the list but the same block objects; the flush
    diffs by identity against them.
    """

    def __init__(self, max_pairs: int = 20_000) -> None:
        self.max_pairs = max_pairs
        self._pairs: OrderedDict[BalanceKey, list[Block]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: BalanceKey) -> list[Block] | None:
        found = self._pairs.get(key)
        if found is not None:
            self._pairs.move_to_end(key)
        return found

    def commit(self, loaded: Originals, written: Originals) -> None:
        """After a commit: what the batch read, updated by what it wrote (only pairs it loaded whole)."""
        for key, blocks in loaded.items():
            self._pairs[key] = written.get(key, blocks)
            self._pairs.move_to_end(key)
        while len(self._pairs) > self.max_pairs:
            self._pairs.popitem(last=False)

    def clear(self) -> None:
        self._pairs.clear()


_BALANCES = """SELECT b.* FROM ledger_balances b
               JOIN unnest($1::bigint[], $2::text[]) AS k(account, instrument)
                 ON b.account = k.account AND b.instrument = k.instrument
               ORDER BY b.account, b.instrument"""


def _hold_of(r: asyncpg.Record) -> Hold:
    return Hold(r["id"], r["kind"], r["debit"], r["credit"], r["instrument"], r["amount"], r["expires_at"],
                r["state"], r["posted_amount"], r["resolved_seq"])


def _overlay_holds(state: LedgerState, base: LedgerState | None, wanted: Iterable[int]) -> None:
    """The holds `base` changed or created, as it left them (copies: `base` is still being written)."""
    if base is not None:
        for h in wanted:
            if h in base.dirty_holds and h in base.holds:
                state.holds[h] = dataclasses.replace(base.holds[h])


async def load_view(conn: asyncpg.Connection, head: Head, touched: Touched,
                    cache: BlockCache | None = None, base: LedgerState | None = None,
                    lock: bool = True) -> tuple[LedgerState, Originals]:
    """Load (and lock, in sorted order) everything the batch touches. Returns the view and the
    original blocks of every holder pair loaded whole (empty ones included), which the flush diffs
    against.

    `base`: the batch applied just before this one, whose write may not have committed yet (the writer's
    pipeline): every row it changed is taken from it as it left it, the rest from `conn` (committed rows,
    which only the single writer changes, and which `base` did not change). Then `lock` is False: the rows
    are read on another connection than the one that writes them, and a lock there would stop that one."""
    state = LedgerState(head)
    if touched.holds:
        for r in await conn.fetch("SELECT * FROM ledger_holds WHERE id = ANY($1::bigint[])",
                                  sorted(touched.holds)):
            state.holds[r["id"]] = _hold_of(r)
        _overlay_holds(state, base, touched.holds)
        touched.add_hold_rows(state.holds.values())
    if touched.instruments:
        for r in await conn.fetch("SELECT * FROM ledger_instruments WHERE code = ANY($1::text[])",
                                  sorted(touched.instruments)):
            state.instruments[r["code"]] = Instrument(r["code"], r["kind"], r["decimals"], r["next_serial"])
        if base is not None:
            for code in touched.instruments & base.dirty_instruments:
                state.instruments[code] = base.instruments[code]  # immutable
    if touched.accounts:
        for r in await conn.fetch("SELECT * FROM ledger_accounts WHERE id = ANY($1::bigint[])",
                                  sorted(touched.accounts)):
            state.accounts[r["id"]] = Account(r["id"], r["owner"], r["kind"])
        if base is not None:
            for a in base.new_accounts:
                if a in touched.accounts and a in base.accounts:
                    state.accounts[a] = base.accounts[a]  # immutable
    if touched.signing_keys:
        for r in await conn.fetch("SELECT seq, verifier_key FROM ledger_signing_keys"):
            state.signing_keys[r["verifier_key"]] = r["seq"]
        if base is not None:
            for k in base.new_signing_keys:
                if k in base.signing_keys:
                    state.signing_keys[k] = base.signing_keys[k]
    originals: Originals = {}
    if touched.pairs:
        pairs = sorted(touched.pairs)
        # Sorted row locks: a second process (there should be none) would queue, never deadlock.
        rows = await conn.fetch(
            _BALANCES + " FOR UPDATE OF b" if lock else _BALANCES,
            [p[0] for p in pairs],
            [p[1] for p in pairs],
        )
        for r in rows:
            state.balances[(r["account"], r["instrument"])] = Balance(r["posted"], r["pending_out"],
                                                                      r["pending_in"])
        if base is not None:
            for key in base.dirty_balances.intersection(pairs):
                b = base.balances.get(key)
                if b is not None:
                    state.balances[key] = Balance(b.posted, b.pending_out, b.pending_in)
        # Blocks of every touched holder pair; the retired sink's blocks are never needed (they
        # never move), so retiring stays O(1) however many retirements exist.
        block_pairs = [p for p in pairs
                       if p[0] in state.accounts and state.accounts[p[0]].kind not in SINK_KINDS
                       and p[1] in state.instruments and state.instruments[p[1]].serialised]
        missing: list[BalanceKey] = []
        for key in block_pairs:
            cached: list[Block] | None
            if base is not None and key in base.dirty_blocks:
                cached = base.blocks.get(key, [])  # what `base` leaves there (its flush diffs against its own)
            else:
                cached = cache.get(key) if cache is not None else None
            if cached is None:
                missing.append(key)
                continue
            originals[key] = cached
            if cached:
                state.blocks[key] = list(cached)
        if cache is not None:
            cache.hits += len(block_pairs) - len(missing)
            cache.misses += len(missing)
        if missing:
            rows = await conn.fetch(
                """SELECT b.* FROM ledger_blocks b
                   JOIN unnest($1::bigint[], $2::text[]) AS k(account, instrument)
                     ON b.account = k.account AND b.instrument = k.instrument
                   ORDER BY b.instrument, b.start_serial""",
                [p[0] for p in missing],
                [p[1] for p in missing],
            )
            for r in rows:
                key = (r["account"], r["instrument"])
                state.blocks.setdefault(key, []).append(
                    Block(r["instrument"], r["start_serial"], r["end_serial"], r["batch"], r["account"],
                          r["hold"], r["retired_seq"], r["frozen_by"]))
            for key in missing:
                originals[key] = list(state.blocks.get(key, ()))
        if touched.block_holds:
            refs = sorted({ref for bl in state.blocks.values() for b in bl for ref in (b.hold, b.frozen_by)
                           if ref is not None and ref not in state.holds})
            for r in await conn.fetch("SELECT * FROM ledger_holds WHERE id = ANY($1::bigint[])", refs):
                state.holds[r["id"]] = _hold_of(r)
            _overlay_holds(state, base, refs)
    return state, originals


async def flush(
    conn: asyncpg.Connection,
    state: LedgerState,
    originals: Originals,
    entries: list[Entry],
    fingerprints: list[bytes | None],
    old_head: Head,
) -> Originals:
    """Write one batch (`fingerprints`: of each entry's request). Caller holds the transaction; the head moves
    by compare-and-swap. Returns the blocks now held by each changed pair, for the writer's block cache."""
    written: Originals = {}
    if not entries:
        return written
    if len(fingerprints) != len(entries):
        raise ValueError("one fingerprint (or None) per entry")
    await conn.copy_records_to_table(
        "ledger_entries",
        # An entry is a tuple (seq, ts, type, actor, client_id, leaf, hash, meta, body): the row is its first
        # five fields, the request's fingerprint, then leaf, hash and meta.
        records=[(*e[:5], fp, *e[5:8]) for e, fp in zip(entries, fingerprints, strict=True)],
        columns=["seq", "ts", "type", "actor", "client_id", "fingerprint", "leaf", "hash", "meta"],
    )
    if state.dirty_instruments:
        insts = [state.instruments[code] for code in sorted(state.dirty_instruments)]
        await conn.execute(
            """INSERT INTO ledger_instruments (code, kind, decimals, next_serial)
               SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[])
               ON CONFLICT (code) DO UPDATE SET next_serial = EXCLUDED.next_serial""",
            [i.code for i in insts], [i.kind for i in insts], [i.decimals for i in insts],
            [i.next_serial for i in insts],
        )
    new_accounts = [state.accounts[a] for a in state.new_accounts if a in state.accounts]
    if new_accounts:
        await conn.execute(
            "INSERT INTO ledger_accounts (id, owner, kind) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])",
            [a.id for a in new_accounts], [a.owner for a in new_accounts], [a.kind for a in new_accounts],
        )
    new_batches = [state.batches[b] for b in state.new_batches if b in state.batches]
    if new_batches:
        await conn.execute(
            """INSERT INTO ledger_batches (id, instrument, start_serial, end_serial, account, reference)
               SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[])""",
            [b.id for b in new_batches], [b.instrument for b in new_batches], [b.start for b in new_batches],
            [b.end for b in new_batches], [b.account for b in new_batches], [b.reference for b in new_batches],
        )
    if state.dirty_balances:
        keys = sorted(state.dirty_balances)
        bals = [state.balance(*k) for k in keys]
        kinds = [state.accounts[k[0]].kind for k in keys]
        await conn.execute(
            """INSERT INTO ledger_balances (account, instrument, posted, pending_out, pending_in,
                                            may_go_negative, is_sink)
               SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                                    $6::bool[], $7::bool[])
               ON CONFLICT (account, instrument) DO UPDATE SET posted = EXCLUDED.posted,
                   pending_out = EXCLUDED.pending_out, pending_in = EXCLUDED.pending_in""",
            [k[0] for k in keys], [k[1] for k in keys], [b.posted for b in bals],
            [b.pending_out for b in bals], [b.pending_in for b in bals],
            [k in NEGATIVE_ALLOWED for k in kinds], [k in SINK_KINDS for k in kinds],
        )
    if state.dirty_blocks:
        gone: list[tuple[str, int]] = []
        new: list[Block] = []
        for key in sorted(state.dirty_blocks):
            # Blocks are immutable and the state keeps the objects it did not change, so the diff is
            # by identity (set operations, not a Python loop over a fragmented holding). A block that
            # changed shape is deleted by (instrument, start) and inserted anew.
            old = originals.get(key, [])
            after = written[key] = state.blocks.get(key, [])
            before = dict(zip(map(id, old), old, strict=True))
            now = dict(zip(map(id, after), after, strict=True))
            gone.extend((before[i].instrument, before[i].start) for i in before.keys() - now.keys())
            new.extend(now[i] for i in now.keys() - before.keys())
        if gone:
            await conn.execute(
                """DELETE FROM ledger_blocks b USING unnest($1::text[], $2::bigint[]) AS k(instrument, s)
                   WHERE b.instrument = k.instrument AND b.start_serial = k.s""",
                [g[0] for g in gone], [g[1] for g in gone],
            )
        if new:
            await conn.copy_records_to_table(
                "ledger_blocks",
                records=new,  # a block is the tuple of these columns, in this order
                columns=["instrument", "start_serial", "end_serial", "batch", "account", "hold", "retired_seq",
                         "frozen_by"],
            )
    if state.dirty_holds:
        holds = [state.holds[h] for h in sorted(state.dirty_holds)]
        await conn.execute(
            """INSERT INTO ledger_holds (id, kind, debit, credit, instrument, amount, expires_at, state,
                                         posted_amount, resolved_seq)
               SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
                                    $6::bigint[], $7::bigint[], $8::text[], $9::bigint[], $10::bigint[])
               ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount, state = EXCLUDED.state,
                   posted_amount = EXCLUDED.posted_amount,
                   resolved_seq = EXCLUDED.resolved_seq, expires_at = EXCLUDED.expires_at""",
            [h.id for h in holds], [h.kind for h in holds], [h.debit for h in holds], [h.credit for h in holds],
            [h.instrument for h in holds], [h.amount for h in holds], [h.expires_at for h in holds],
            [h.state for h in holds], [h.posted_amount for h in holds], [h.resolved_seq for h in holds],
        )
        resolved = [h for h in holds if h.state != HOLD_PENDING]
        if resolved:
            await conn.execute(
                """INSERT INTO ledger_hold_resolutions (hold, seq, state, amount)
                   SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])""",
                [h.id for h in resolved], [h.resolved_seq for h in resolved], [h.state for h in resolved],
                [h.posted_amount for h in resolved],
            )
    new_keys = [k for k in state.new_signing_keys if k in state.signing_keys]
    if new_keys:
        parsed = [Verifier.from_key_string(k) for k in new_keys]
        await conn.execute(
            """INSERT INTO ledger_signing_keys (seq, name, key_id, verifier_key)
               SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])""",
            [state.signing_keys[k] for k in new_keys], [v.name for v in parsed], [v.key_id.hex() for v in parsed],
            new_keys,
        )
    head = state.head
    status = await conn.execute(
        "UPDATE ledger_head SET seq = $1, hash = $2, ts = $3 WHERE id = 1 AND seq = $4 AND hash = $5",
        head.seq, head.hash, head.ts, old_head.seq, old_head.hash,
    )
    if status != "UPDATE 1":
        raise ChainHeadMoved(f"chain head moved under the writer (expected seq {old_head.seq})")
    return written


class ChainHeadMoved(RuntimeError):
    """Compare-and-swap on the chain head failed: another writer appended. Fatal for this writer."""
