"""Verifiable ledger at scale: build a ledger, then time Merkle proofs from the DB tiles and the full audit.

    python -m bench.proofs [--size 1000000] [--proofs 2000] [--unit-share 0.1]

Build: real transfers through the real single writer with the production hooks (Merkle tiles in each
batch, signed checkpoints after it, at most one per second), `--concurrency` callers in flight so the
writer group-commits. Nothing is generated behind the writer's back; the build rate printed is the
writer's rate with tree and checkpoints on. Mix: cash transfers, plus `--unit-share` of serial-block
transfers (these cost the state machine more, in the writer and in the audit's replay).

Then, on a fresh connection:
- inclusion proofs of random entries against the latest checkpoint, from the stored tiles (the same
  `ledger.tree_store` call the API makes; one query each), p50/p99; every proof is verified after timing;
- receipts (entry row + newest checkpoint + proof: what `GET /v1/ledger/entries/{seq}/receipt` reads);
- consistency proofs between random sizes;
- the audit, twice: `replay=False` (bytes, hashes, chain, metadata hashes, tree and every tile, every
  checkpoint's root and signature, signing keys) and the full one (plus the state-machine replay and the
  projection diff), each in entries/s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from bench.common import admin_url, fresh_database, pct
from exchange.core.database import asyncpg_dsn
from exchange.core.settings import Settings
from exchange.verifiable.publisher import VerifiableLedger
from ledger import checkpoints, merkle, tree_store
from ledger import commands as c
from ledger.verify import Report, verify_database
from ledger.writer import LedgerWriter

ACCOUNTS = 200


async def build(dsn: str, size: int, concurrency: int, unit_share: float, data_dir: Path) -> tuple[float, int]:
    settings = Settings(data_dir=data_dir, checkpoint_interval_seconds=1.0)
    writer = LedgerWriter(dsn)
    v = VerifiableLedger(settings, dsn)
    v.attach(writer)
    await writer.start()
    try:
        await v.start(writer)
        await writer.submit(c.Request("b", c.DefineInstrument("CNY", "currency", 2)))
        await writer.submit(c.Request("b", c.DefineInstrument("FCT", "forest_ticket", 0)))
        settle = (await writer.submit(c.Request("b", c.OpenAccount("settle", "settlement")))).seq
        issue = (await writer.submit(c.Request("b", c.OpenAccount("issue", "issuance")))).seq
        cash = [e.seq for e in await writer.submit_linked(
            [c.Request("b", c.OpenAccount(f"c{i}", "cash")) for i in range(ACCOUNTS)])]
        units = [e.seq for e in await writer.submit_linked(
            [c.Request("b", c.OpenAccount(f"h{i}", "holding")) for i in range(ACCOUNTS)])]
        await writer.submit_linked([c.Request("b", c.Transfer(settle, a, "CNY", 10**13)) for a in cash])
        await writer.submit_linked([c.Request("b", c.IssueBatch(issue, a, "FCT", 10**9, f"batch-{a}"))
                                    for a in units])
        start = (await writer.submit(c.Request("b", c.OpenAccount("marker", "holding")))).seq
        remaining = max(0, size - start)
        rng = random.Random(7)
        plan = [rng.random() < unit_share for _ in range(remaining)]
        b0, t0 = writer.batches, time.perf_counter()

        async def caller(k: int) -> None:
            for i in range(k, remaining, concurrency):
                accs, inst = (units, "FCT") if plan[i] else (cash, "CNY")
                d = accs[i % ACCOUNTS]
                cr = accs[(i * 7 + 1) % ACCOUNTS]
                if cr == d:
                    cr = accs[(i + 1) % ACCOUNTS]
                await writer.submit(c.Request(f"participant:{i % 97}", c.Transfer(d, cr, inst, 1 + i % 50),
                                              f"t{i}", {"memo": "bench"}))
                if i and i % 100_000 < concurrency and k == 0:
                    print(f"  ... {start + i:,} entries", flush=True)

        await asyncio.gather(*(caller(k) for k in range(concurrency)))
        dt = time.perf_counter() - t0
        return remaining / dt, writer.batches - b0
    finally:
        await writer.stop()
        await v.stop()


async def proofs(dsn: str, count: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        cp = await checkpoints.latest(conn)
        assert cp is not None
        n = cp.size
        rng = random.Random(11)
        idx = [rng.randrange(n) for _ in range(count)]
        for i in idx[:50]:  # warm the connection and the tile pages
            await tree_store.inclusion_proof(conn, i, n)

        lat, paths = [], []
        for i in idx:
            t = time.perf_counter()
            paths.append(await tree_store.inclusion_proof(conn, i, n))
            lat.append(time.perf_counter() - t)
        leaves = {r["seq"]: bytes(r["leaf"]) for r in await conn.fetch(
            "SELECT seq, leaf FROM ledger_entries WHERE seq = ANY($1::bigint[])", [i + 1 for i in idx])}
        assert all(merkle.verify_inclusion(merkle.leaf_hash(leaves[i + 1]), i, n, p, cp.root)
                   for i, p in zip(idx, paths, strict=True)), "a proof did not verify"
        print(f"inclusion proofs at tree size {n:,} ({count} random, from DB tiles, verified): "
              f"p50 {pct(lat, 50) * 1e3:.3f} ms  p99 {pct(lat, 99) * 1e3:.3f} ms  max {max(lat) * 1e3:.3f} ms")

        lat = []
        for i in idx[:count]:
            t = time.perf_counter()
            await conn.fetchrow("SELECT seq, actor, leaf, meta FROM ledger_entries WHERE seq = $1", i + 1)
            latest = await checkpoints.at_least(conn, i + 1)
            assert latest is not None
            await tree_store.inclusion_proof(conn, i, latest.size)
            lat.append(time.perf_counter() - t)
        print(f"receipt reads (entry + checkpoint + proof, {count}):                  "
              f"p50 {pct(lat, 50) * 1e3:.3f} ms  p99 {pct(lat, 99) * 1e3:.3f} ms")

        lat = []
        for _ in range(count):
            a, b = sorted(rng.randrange(1, n + 1) for _ in range(2))
            t = time.perf_counter()
            await tree_store.consistency_proof(conn, a, b)
            lat.append(time.perf_counter() - t)
        print(f"consistency proofs ({count} random size pairs):                      "
              f"p50 {pct(lat, 50) * 1e3:.3f} ms  p99 {pct(lat, 99) * 1e3:.3f} ms")
    finally:
        await conn.close()


def _timings(report: Report) -> str:
    return ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items())


def _cpu() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its finished children (the audit's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1_000_000, help="entries in the ledger")
    ap.add_argument("--proofs", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=4096)
    ap.add_argument("--unit-share", type=float, default=0.1, help="share of serial-block (unit) transfers")
    ap.add_argument("--skip-full-audit", action="store_true", help="only the replay-free audit")
    ap.add_argument("--audit-rounds", type=int, default=3, help="audits of each kind; the median is printed")
    args = ap.parse_args()
    dsn = asyncpg_dsn(fresh_database(admin_url(), "envx_bench_proofs"))
    with tempfile.TemporaryDirectory(prefix="envx-bench-proofs-") as data_dir:
        print(f"building {args.size:,} entries through the writer (tiles + checkpoints on) ...", flush=True)
        rate, batches = asyncio.run(build(dsn, args.size, args.concurrency, args.unit_share, Path(data_dir)))
        print(f"build: {rate:,.0f} transfers/s through the writer with tree and checkpoints "
              f"({batches:,} batches)", flush=True)
    asyncio.run(proofs(dsn, args.proofs))
    kinds = [("audit without replay", False)] + ([] if args.skip_full_audit else [("full audit (with replay)", True)])
    for label, replay in kinds:
        rates, mains = [], []
        for _ in range(args.audit_rounds):
            before = _cpu()
            report = asyncio.run(verify_database(dsn, replay=replay))
            after = _cpu()
            assert report.ok, report.render()
            rates.append(report.entries / report.seconds)
            main_us, workers_us = ((a - b) / report.entries * 1e6 for a, b in zip(after, before, strict=True))
            mains.append(main_us)
            print(f"{label}: {report.entries:,} entries in {report.seconds:.1f} s = {rates[-1]:,.0f} entries/s  "
                  f"({_timings(report)}; CPU per entry: auditing process {main_us:.2f} us, "
                  f"workers {workers_us:.2f} us)", flush=True)
        print(f"{label}: median of {len(rates)} = {statistics.median(rates):,.0f} entries/s "
              f"(auditing process {statistics.median(mains):.2f} us CPU per entry)", flush=True)
    print("goals: proofs p99 < 2 ms; audit >= 300,000 entries/s without replay, >= 100,000 with")


if __name__ == "__main__":
    main()
