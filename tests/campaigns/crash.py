"""Crash campaign: SIGKILL `envx serve` at random moments of mixed load, restart, check everything.

Each run: mixed load (transfers, retirements, orders, cancels, listings and takes, pledges) for a
random 0.3-3 s, SIGKILL, restart (in a quarter of the runs it is killed again while it recovers),
then: every acknowledged operation is there as acknowledged; the requests that got no answer are
retried with their idempotency keys and must converge (no 5xx, no idempotency conflict); no trade
is half-settled (every settlement group complete, the clearing account empty); holds, orders,
trades and pledges agree, no lock is left without an owner; the recovered books equal the open
orders and a replay of the journal; and the full ledger audit (`envx verify`) is clean.

    python -m tests.campaigns.crash --runs 20            # the long version, prints a summary
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from exchange.core.database import asyncpg_dsn
from tests.campaigns import checks
from tests.campaigns.common import EnvxServer, World, build_world, http, local_cluster
from tests.campaigns.load import MixedLoad, send


@dataclass
class CrashSummary:
    runs: int = 0
    kills: int = 0
    kills_during_recovery: int = 0
    acknowledged: int = 0
    acknowledged_found: int = 0
    acknowledged_by_kind: dict[str, int] = field(default_factory=dict)
    refused_by_code: dict[str, int] = field(default_factory=dict)
    in_doubt_retried: int = 0
    in_doubt_applied_before_retry: int = 0  # the kill fell between the commit and the answer
    retry_outcomes: dict[str, int] = field(default_factory=dict)
    trades: int = 0
    ledger_entries: int = 0
    verify_clean: int = 0
    recovery_seconds_max: float = 0.0
    recovery_seconds_mean: float = 0.0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and self.acknowledged_found == self.acknowledged and self.verify_clean == self.runs


async def applied_keys(dsn: str, calls: list[Any]) -> set[str]:
    """Which unanswered requests had nevertheless been applied (found by their idempotency key)."""
    import asyncpg

    keys = [c.key for c in calls]
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT client_id FROM ledger_entries WHERE client_id = ANY($1::text[])
               UNION SELECT client_id FROM orders WHERE client_id = ANY($1::text[])
               UNION SELECT client_id FROM pledge_events WHERE client_id = ANY($1::text[])""", keys)
    finally:
        await conn.close()
    return {r["client_id"] for r in rows}


def retry_in_doubt(base_url: str, calls: list[Any]) -> tuple[Counter[str], list[str]]:
    """What a client does after a timeout: send the same request with the same key again."""
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for call in calls:
            r = send(client, call)
            code = r.json().get("code", "") if r.status_code >= 400 else ""
            outcomes[f"{r.status_code} {code}".strip()] += 1
            if r.status_code >= 500 or code == "idempotency_conflict" or r.status_code == 422:
                problems.append(f"retry of {call.kind} {call.key} -> {r.status_code} {r.text[:200]}")
    return outcomes, problems


def run_campaign(url: str, data_dir: Path, *, runs: int, seed: int = 1, workers: int = 6,
                 max_load_seconds: float = 3.0, min_acknowledged: int = 0,
                 log: Any = print) -> CrashSummary:
    rng = random.Random(seed)
    s = CrashSummary()
    t0 = time.monotonic()
    srv = EnvxServer(url, data_dir)
    op_key, checker = srv.operators()
    srv.start()
    recoveries: list[float] = []
    by_kind: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    retried: Counter[str] = Counter()
    try:
        with http(srv.url, op_key, checker=checker) as op:
            world: World = build_world(op)
        for run in range(runs):
            load = MixedLoad(srv.url, world, seed=seed * 100 + run, workers=workers, tag=f"s{seed}r{run}")
            load.start()
            loaded = rng.uniform(0.3, max_load_seconds)
            time.sleep(loaded)
            # Kill with some acknowledged work in flight however slowly the machine runs (bounded wait).
            waited = time.monotonic() + 30
            while load.acked_count() < min_acknowledged and time.monotonic() < waited:
                time.sleep(0.05)
            srv.kill()  # mid-flight: the workers are still sending
            s.kills += 1
            load.stop()
            t_kill = time.monotonic()
            srv.spawn()
            if rng.random() < 0.25:  # and once more while it replays journals and re-settles
                time.sleep(rng.uniform(0.2, 1.5))
                srv.kill()
                s.kills += 1
                s.kills_during_recovery += 1
                srv.spawn()
            srv.wait_healthy()
            recoveries.append(time.monotonic() - t_kill)
            book = load.book
            found, problems = asyncio.run(checks.acknowledged(asyncpg_dsn(url), book.acked))
            s.acknowledged += len(book.acked)
            s.acknowledged_found += found
            by_kind.update(book.counts())
            refused.update(book.refused)
            problems += book.errors
            s.in_doubt_applied_before_retry += len(asyncio.run(applied_keys(asyncpg_dsn(url), book.in_doubt)))
            outcomes, retry_problems = retry_in_doubt(srv.url, book.in_doubt)
            s.in_doubt_retried += len(book.in_doubt)
            retried.update(outcomes)
            problems += retry_problems
            problems += asyncio.run(checks.exchange_consistency(asyncpg_dsn(url)))
            problems += asyncio.run(checks.books_equal_replay(url, srv.url, world.markets))
            ok, report = asyncio.run(checks.verify(url))
            s.verify_clean += ok
            if not ok:
                problems.append(f"verify: {report}")
            s.problems += [f"run {run}: {p}" for p in problems]
            s.runs += 1
            log(f"run {run + 1}/{runs}: {loaded:.1f}s of load, acked {len(book.acked)} (found {found}), in doubt "
                f"{len(book.in_doubt)}, "
                f"recovered in {recoveries[-1]:.1f}s, problems {len(problems)}")
    finally:
        srv.stop()
    s.acknowledged_by_kind = dict(by_kind)
    s.refused_by_code = dict(refused)
    s.retry_outcomes = dict(retried)
    s.recovery_seconds_max = round(max(recoveries, default=0.0), 2)
    s.recovery_seconds_mean = round(sum(recoveries) / max(len(recoveries), 1), 2)
    s.trades, s.ledger_entries = asyncio.run(_counts(url))
    ok, report = _verify_cli(srv)
    if not ok:
        s.problems.append(f"envx verify (CLI): {report}")
    s.seconds = round(time.monotonic() - t0, 1)
    return s


async def _counts(url: str) -> tuple[int, int]:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return (int(await conn.fetchval("SELECT count(*) FROM trades")),
                int(await conn.fetchval("SELECT seq FROM ledger_head WHERE id = 1")))
    finally:
        await conn.close()


def _verify_cli(srv: EnvxServer) -> tuple[bool, str]:
    """`envx verify` itself, once at the end (the per-run audit calls the same function in-process)."""
    try:
        out = srv.cli("verify")
    except Exception as exc:
        return False, str(getattr(exc, "stdout", b"") or exc)[-2000:]
    return "OK: the ledger verifies" in out, out[-2000:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.campaigns.crash", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=6)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (database, logs)")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="envx-crash-"))
    cluster, url = local_cluster(root)
    try:
        s = run_campaign(url, root / "data", runs=args.runs, seed=args.seed, workers=args.workers)
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(asdict(s), ensure_ascii=False, indent=2))
    print(f"crash campaign: {s.runs} runs, {s.kills} kills ({s.kills_during_recovery} during recovery), "
          f"{s.acknowledged_found}/{s.acknowledged} acknowledged operations found, {s.in_doubt_retried} in doubt "
          f"retried ({s.in_doubt_applied_before_retry} had been applied), {s.trades} trades, {s.ledger_entries} "
          f"ledger entries, verify clean {s.verify_clean}/{s.runs}, "
          f"recovery max {s.recovery_seconds_max}s, {len(s.problems)} problems, {s.seconds}s: "
          f"{'PASS' if s.ok else 'FAIL'}")
    return 0 if s.ok else 1


if __name__ == "__main__":
    sys.exit(main())
