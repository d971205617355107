"""Full audit of a ledger database: bytes, chain, replay, invariants and projections.

1. every stored leaf decodes as canonical bytes and its hash is SHA-256(leaf);
2. each entry names the previous entry's hash (the chain) and seq runs 1..n with no gap;
3. replaying the log through the pure state machine reproduces every leaf byte for byte;
4. the replayed state keeps every invariant (conservation, no overdraft, holds resolved once, disjoint
   serial blocks, retired units never move);
5. the projections in the database (balances, blocks, holds, accounts, instruments, batches, head)
   equal the replayed state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ledger.encoding import ZERO_HASH, EncodingError, decode_entry, entry_hash
from ledger.replay import request_of
from ledger.state import Account, Balance, Block, Hold, LedgerState, Rejection

MAX_PROBLEMS = 200


@dataclass
class Report:
    entries: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    checks: list[str] = field(default_factory=list)

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
        if self.ok:
            lines.append("OK: the ledger verifies")
        else:
            lines.append(f"FAILED: {len(self.problems)} problem(s)")
            lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def replay_rows(rows: list[Any], report: Report) -> LedgerState:
    """Steps 1-4 over rows with seq, leaf, hash, meta (in seq order)."""
    state = LedgerState()
    prev = ZERO_HASH
    for i, r in enumerate(rows, start=1):
        report.entries += 1
        leaf, stored_hash, meta = bytes(r["leaf"]), bytes(r["hash"]), bytes(r["meta"])
        if r["seq"] != i:
            report.add(f"seq {r['seq']} found where {i} was expected (gap or reorder)")
            return state
        if entry_hash(leaf) != stored_hash:
            report.add(f"entry {i}: stored hash is not SHA-256 of its bytes")
        try:
            entry = decode_entry(leaf)
        except EncodingError as exc:
            report.add(f"entry {i}: {exc}")
            return state
        if entry["seq"] != i:
            report.add(f"entry {i}: encodes seq {entry['seq']}")
        if entry["prev"] != prev.hex():
            report.add(f"entry {i}: chain broken (prev does not match entry {i - 1})")
        for col in ("type", "actor", "client_id", "ts"):
            if col in r and r[col] != entry[col]:
                report.add(f"entry {i}: column {col} differs from the entry bytes")
        try:
            request = request_of(entry, meta)
            replayed = state.apply(request, entry["ts"])
        except (Rejection, ValueError, KeyError, TypeError) as exc:
            report.add(f"entry {i}: replay refused it: {exc}")
            return state
        if replayed.leaf != leaf:
            report.add(f"entry {i}: replay does not reproduce its bytes (entry or metadata altered)")
            return state
        state.forget_journal()
        prev = entry_hash(leaf)
    for p in state.check_invariants():
        report.add(f"invariant: {p}")
    return state


async def compare_projections(conn: asyncpg.Connection, state: LedgerState, report: Report) -> None:
    head = await conn.fetchrow("SELECT seq, hash, ts FROM ledger_head WHERE id = 1")
    if (head["seq"], bytes(head["hash"]), head["ts"]) != (state.head.seq, state.head.hash, state.head.ts):
        report.add("ledger_head differs from the end of the chain")
    accounts = {r["id"]: Account(r["id"], r["owner"], r["kind"]) for r in await conn.fetch("SELECT * FROM ledger_accounts")}
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


async def verify_database(dsn: str) -> Report:
    """Audit the ledger at `dsn` (an asyncpg DSN), reading in one REPEATABLE READ snapshot."""
    report = Report()
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch("SELECT seq, ts, type, actor, client_id, leaf, hash, meta FROM ledger_entries ORDER BY seq")
            state = replay_rows(rows, report)
            report.checks.append(f"canonical bytes, hashes and chain of {len(rows)} entries")
            report.checks.append("replay through the state machine, byte for byte; invariants")
            await compare_projections(conn, state, report)
    finally:
        await conn.close()
    report.seconds = time.perf_counter() - started
    return report
