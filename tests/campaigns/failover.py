"""Failover campaign: a primary and a synchronous standby on loopback; kill the primary under load,
promote the standby; envx (one multi-host URL) carries on. Plus read scaling from the standby.

Per run:
1. a primary and a standby made with pg_basebackup, `synchronous_standby_names` naming the standby
   and `synchronous_commit = on`: a commit returns only once the standby has flushed it;
2. `envx serve` on `postgresql://u@127.0.0.1:p1,127.0.0.1:p2/envx?target_session_attrs=read-write`,
   and a second, read-only `envx serve` (ENVX_READ_ONLY=true) on the standby alone: it serves the
   ledger, proofs, checkpoints, public inquiry and market data, and refuses writes (503 read_only);
3. mixed load; the primary's postmaster and backends are SIGKILLed at once, the standby promoted
   (`pg_ctl promote`, what an HA manager would do), the load goes on;
4. then: every acknowledged write is on the promoted server, each acknowledged entry with the hash
   it was acknowledged with (the chain did not fork), seq is continuous, the last checkpoint
   published before the kill verifies against the promoted database, `envx verify` is clean, and
   the exchange invariants of the crash campaign hold.
Failover time = from the kill to the first acknowledged write sent after it.

    python -m tests.campaigns.failover --runs 3
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from exchange.core.database import asyncpg_dsn
from ledger.verify import verify_database
from tests.campaigns import checks
from tests.campaigns.common import BOOK, EnvxServer, World, build_world, http
from tests.campaigns.crash import retry_in_doubt
from tests.campaigns.load import WEIGHTS, MixedLoad
from tests.campaigns.pg import ReplicatedPair

# Writes whose answer proves the ledger writer is back (the market pipeline is reported separately).
LEDGER_WRITES = ("transfer", "retire", "pledge_file", "pledge_confirm", "pledge_release")
MARKET_WRITES = ("order", "listing", "take")


@dataclass
class ReadScaling:
    replica_lag_seconds: float = 0.0
    reads_compared: int = 0
    reads_equal: int = 0
    differences: list[str] = field(default_factory=list)
    writes_refused_read_only: int = 0
    replica_reads_per_second: float = 0.0
    receipt_from_replica_verifies: bool = False


@dataclass
class FailoverRun:
    acked_before_kill: int = 0
    acked_total: int = 0
    acked_found: int = 0
    in_doubt_retried: int = 0
    retry_outcomes: dict[str, int] = field(default_factory=dict)
    answers_5xx_during_failover: int = 0
    kill_to_promoted_seconds: float = 0.0
    failover_seconds: float | None = None  # kill -> first acknowledged ledger write sent after it
    first_order_after_seconds: float | None = None  # kill -> first acknowledged order sent after it
    orders_after_failover: int = 0
    markets_running_after_failover: bool = False
    restart_after_failover_ok: bool | None = None
    entries: int = 0
    seq_continuous: bool = False
    hashes_match: bool = False
    checkpoint_before_kill_size: int = 0
    checkpoint_consistent: bool = False
    checkpoints_after_failover: int = 0
    verify_clean: bool = False
    read_scaling: ReadScaling | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class FailoverSummary:
    runs: list[FailoverRun] = field(default_factory=list)
    writes_lost: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.runs) and self.writes_lost == 0 and all(not r.problems for r in self.runs)


# ------------------------------------------------------------------------------- read scaling


def _strip(body: Any) -> Any:
    """A signed inquiry certificate without what differs by who answered when."""
    if isinstance(body, dict):
        return {k: _strip(v) for k, v in body.items() if k not in ("issued_at", "signature", "signed", "note")}
    if isinstance(body, list):
        return [_strip(x) for x in body]
    return body


def read_scaling(primary: str, replica: str, op_key: str, world: World, markets: list[str]) -> ReadScaling:
    """The replica answers what the primary answers (once it has replayed), refuses writes, and serves
    reads on its own; called with the load paused."""
    rs = ReadScaling()
    h = {"Authorization": f"Bearer {op_key}"}
    with httpx.Client(base_url=primary, timeout=30) as p, httpx.Client(base_url=replica, timeout=30) as r:
        head = p.get("/v1/ledger/head", headers=h).json()
        t0 = time.monotonic()
        while r.get("/v1/ledger/head", headers=h).json() != head:
            if time.monotonic() - t0 > 30:
                rs.differences.append("the replica did not catch up within 30 s")
                return rs
            time.sleep(0.005)
        rs.replica_lag_seconds = round(time.monotonic() - t0, 3)  # the ledger head, seen through both APIs
        time.sleep(0.6)  # market data follows the journal by polling (every 0.25 s): allow it a poll
        seq = int(head["seq"])
        paths = ["/v1/ledger/head", "/v1/ledger/entries?after=0&limit=1000", f"/v1/ledger/entries/{seq}",
                 "/v1/ledger/checkpoints?limit=20", "/v1/ledger/keys", "/v1/participants",
                 f"/v1/holdings?participant_id={world.traders[0].id}", "/v1/pledges"]
        # Public inquiry (公示查询) by a holder's whole name: no key needed.
        paths += [f"/v1/public/{kind}?name={world.traders[0].name}&limit=200"
                  for kind in ("pledges", "retirements", "freezes")]
        for m in markets:
            paths += [f"/v1/markets/{m}", f"/v1/markets/{m}/depth?levels=20", f"/v1/markets/{m}/trades?limit=500",
                      f"/v1/markets/{m}/orders", f"/v1/markets/{m}/ohlc"]
        cp = p.get("/v1/ledger/checkpoint")
        if cp.status_code == 200:
            size = int(cp.text.split("\n")[1])
            paths += [f"/v1/ledger/proofs/inclusion?seq={max(1, size // 2)}&tree_size={size}",
                      f"/v1/ledger/proofs/consistency?first={max(1, size // 3)}&second={size}"]
        for path in paths:
            a, b = p.get(path, headers=h), r.get(path, headers=h)
            rs.reads_compared += 1
            is_json = "json" in a.headers.get("content-type", "")
            same = a.status_code == b.status_code and (
                _strip(a.json()) == _strip(b.json()) if is_json else a.text == b.text)
            if same:
                rs.reads_equal += 1
            else:
                rs.differences.append(f"{path}: primary {a.status_code} {a.text[:200]} / replica {b.status_code} "
                                      f"{b.text[:200]}")
        # A receipt from the replica verifies offline against the registry's key.
        receipt = r.get(f"/v1/ledger/entries/{seq}/receipt", headers=h)
        if receipt.status_code == 200:
            from ledger.receipt import verify_receipt

            keys = [k["verifier_key"] for k in r.get("/v1/ledger/keys").json()]
            try:
                verify_receipt(receipt.json(), keys)
                rs.receipt_from_replica_verifies = True
            except Exception as exc:
                rs.differences.append(f"receipt from the replica does not verify: {exc}")
        else:
            rs.differences.append(f"receipt from the replica: {receipt.status_code} {receipt.text[:200]}")
        # Writes: refused before authentication, with the machine code.
        for path, body in (("/v1/transfers", {"to_participant": world.traders[1].id, "instrument": "FCT-SM",
                                              "quantity": "1"}),
                           (f"/v1/markets/{BOOK}/orders", {"side": "buy", "price": "100.00", "quantity": "1"}),
                           ("/v1/participants", {"name": "x", "kind": "enterprise"})):
            resp = r.post(path, json=body, headers={**h, "Idempotency-Key": f"ro-{path}"})
            if resp.status_code == 503 and resp.json().get("code") == "read_only":
                rs.writes_refused_read_only += 1
            else:
                rs.differences.append(f"write {path} on the replica answered {resp.status_code} {resp.text[:200]}")
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < 2.0:
            for path in ("/v1/ledger/head", f"/v1/markets/{markets[0]}/depth",
                         f"/v1/public/pledges?name={world.traders[0].name}&limit=20"):
                r.get(path, headers=h).raise_for_status()
                n += 1
        rs.replica_reads_per_second = round(n / (time.monotonic() - t0), 1)
    return rs


# ------------------------------------------------------------------------------- one failover


def _markets_take_orders(base_url: str, world: World) -> bool:
    """Whether the continuous market answers an order (a far-away bid, cancelled at once)."""
    t = world.traders[0]
    h = {"Authorization": f"Bearer {t.token}"}
    r = httpx.post(f"{base_url}/v1/markets/{BOOK}/orders", json={"side": "buy", "price": "95.00", "quantity": "1"},
                   headers={**h, "Idempotency-Key": f"probe-{time.monotonic_ns()}"}, timeout=30)
    if r.status_code != 201:
        return False
    httpx.post(f"{base_url}/v1/markets/{BOOK}/orders/{r.json()['order']['id']}/cancel", json={}, headers=h, timeout=30)
    return True


async def _ledger_facts(dsn: str, seqs: dict[int, str], cp_size: int) -> tuple[int, bool, bool, int]:
    """(entries, seq continuous, acknowledged hashes kept, checkpoints published beyond `cp_size`)."""
    conn = await asyncpg.connect(dsn)
    try:
        n, top = await conn.fetchrow("SELECT count(*), coalesce(max(seq), 0) FROM ledger_entries")
        rows = await conn.fetch("SELECT seq, hash FROM ledger_entries WHERE seq = ANY($1::bigint[])", list(seqs))
        same = len(rows) == len(seqs) and all(bytes(r["hash"]).hex() == seqs[r["seq"]] for r in rows)
        later = await conn.fetchval("SELECT count(*) FROM ledger_checkpoints WHERE size > $1", cp_size)
        return int(n), n == top, same, int(later)
    finally:
        await conn.close()


def one_failover(root: Path, *, seed: int, before_seconds: float, after_seconds: float, workers: int,
                 replica: bool, ledger_only: bool = False, log: Any = print) -> FailoverRun:
    """One failover under load; `ledger_only` leaves orders out of the load (the markets' own failover
    problems, see RELIABILITY.md, then cannot mask what the ledger guarantees)."""
    weights = {k: v for k, v in WEIGHTS.items() if k in ("transfer", "retire", "pledge")} if ledger_only else None
    run = FailoverRun()
    pair = ReplicatedPair(root)
    url = pair.start()
    assert pair.standby is not None
    promoted_url = pair.standby.url("envx")
    srv = EnvxServer(url, root / "primary-envx", writer_reconnect_seconds=60)
    reader: EnvxServer | None = None
    try:
        maker, checker = srv.operators()
        srv.start()
        with http(srv.url, maker, checker=checker) as op:
            world = build_world(op)
        if replica:
            # The standby alone: a hot standby serves reads; signing certificates with the registry's key.
            reader = EnvxServer(promoted_url, root / "replica-envx", read_only="true",
                                signing_key_file=srv.data_dir / "signing.key")
            reader.start()
            warm = MixedLoad(srv.url, world, seed=seed, workers=workers, tag=f"f{seed}w", weights=weights)
            warm.start()
            time.sleep(1.5)
            warm.stop()
            run.read_scaling = read_scaling(srv.url, reader.url, maker, world, world.markets)
            run.problems += [f"read scaling: {d}" for d in run.read_scaling.differences]
            run.acked_total += len(warm.book.acked)
        load = MixedLoad(srv.url, world, seed=seed + 1, workers=workers, tag=f"f{seed}", stop_on_error=False,
                         weights=weights)
        load.start()
        time.sleep(before_seconds)
        # The last checkpoint anyone could have obtained before the primary died.
        cp_before = httpx.get(f"{srv.url}/v1/ledger/checkpoint", timeout=10).text
        t_kill = time.monotonic()
        pair.primary.kill()
        pair.standby.promote()
        run.kill_to_promoted_seconds = round(time.monotonic() - t_kill, 3)
        deadline = time.monotonic() + after_seconds + 60
        while time.monotonic() < deadline:  # until writes are acknowledged again, then a while more
            after = [a for a in load.book.acked if a.t_sent > t_kill and a.call.kind in LEDGER_WRITES]
            if after and time.monotonic() > min(a.t for a in after) + after_seconds:
                break
            time.sleep(0.1)
        load.stop()
        book = load.book
        acked = list(book.acked) + (warm.book.acked if replica else [])
        run.acked_before_kill = sum(1 for a in acked if a.t <= t_kill)
        run.acked_total = len(acked)
        after = sorted(a.t for a in book.acked if a.t_sent > t_kill and a.call.kind in LEDGER_WRITES)
        run.failover_seconds = round(after[0] - t_kill, 3) if after else None
        orders = sorted(a.t for a in book.acked if a.t_sent > t_kill and a.call.kind in MARKET_WRITES)
        run.first_order_after_seconds = round(orders[0] - t_kill, 3) if orders else None
        run.orders_after_failover = len(orders)
        run.answers_5xx_during_failover = sum(n for k, n in book.refused.items() if k.startswith("5")) + len(
            [e for e in book.errors if " -> 5" in e])
        run.problems += [e for e in book.errors if " -> 5" not in e]  # 4xx surprises; 5xx are counted above
        if run.failover_seconds is None:
            run.problems.append("no ledger write was acknowledged after the failover")
        if not srv.alive():
            run.problems.append("envx exited during the failover")

        # Phase A, the same envx process: the ledger came back by itself.
        dsn = asyncpg_dsn(promoted_url)
        found, problems = asyncio.run(checks.acknowledged(dsn, acked))
        run.acked_found = found
        run.problems += problems
        ledger_doubt = [c for c in book.in_doubt if c.kind not in (*MARKET_WRITES, "cancel")]
        outcomes, retry_problems = retry_in_doubt(srv.url, ledger_doubt)
        run.problems += retry_problems
        run.in_doubt_retried = len(ledger_doubt)
        run.retry_outcomes = dict(outcomes)
        seqs = {a.result["entry_seq"]: a.result["entry_hash"] for a in acked if a.call.kind in ("transfer", "retire")}
        run.checkpoint_before_kill_size = int(cp_before.split("\n")[1])
        time.sleep(1.0)  # one checkpoint interval and more: the publisher reconnects on its own
        run.entries, run.seq_continuous, run.hashes_match, run.checkpoints_after_failover = asyncio.run(
            _ledger_facts(dsn, seqs, run.checkpoint_before_kill_size))
        if not (run.seq_continuous and run.hashes_match):
            run.problems.append(f"chain: continuous {run.seq_continuous}, acknowledged hashes kept {run.hashes_match}")
        if not run.checkpoints_after_failover:
            run.problems.append("no checkpoint was published on the promoted server")
        report = asyncio.run(verify_database(dsn, checkpoints=[cp_before]))
        run.checkpoint_consistent = run.verify_clean = report.ok  # the full audit, plus that checkpoint
        if not report.ok:
            run.problems.append(f"verify with the checkpoint published before the kill: {report.render()}")

        # Phase B: markets whose settlement stage failed during the failover stop (exchange/trading/pipeline.py);
        # a restart recovers them from the journal. Then the exchange invariants and the full audit.
        run.markets_running_after_failover = bool(_markets_take_orders(srv.url, world))
        srv.stop()
        try:
            srv.start()
        except RuntimeError as exc:
            run.restart_after_failover_ok = False
            run.problems.append(f"envx does not start again after the failover: {str(exc)[-600:]}")
            return run
        run.restart_after_failover_ok = True
        market_doubt = [c for c in book.in_doubt if c.kind in (*MARKET_WRITES, "cancel")]
        more, retry_problems = retry_in_doubt(srv.url, market_doubt)
        outcomes.update(more)
        run.problems += retry_problems
        run.in_doubt_retried += len(market_doubt)
        run.retry_outcomes = dict(outcomes)
        found, problems = asyncio.run(checks.acknowledged(dsn, acked))
        run.problems += [f"after restart: {p}" for p in problems]
        run.problems += asyncio.run(checks.exchange_consistency(dsn))
        run.problems += asyncio.run(checks.books_equal_replay(promoted_url, srv.url, world.markets))
        ok, text = asyncio.run(checks.verify(promoted_url))
        run.verify_clean = run.verify_clean and ok
        if not ok:
            run.problems.append(f"verify: {text}")
    finally:
        log(f"failover: promoted {run.kill_to_promoted_seconds}s after the kill, first acknowledged ledger write "
            f"after {run.failover_seconds}s, first order after {run.first_order_after_seconds}s, markets running "
            f"without a restart: {run.markets_running_after_failover}, restart ok: {run.restart_after_failover_ok}; "
            f"acked {run.acked_found}/{run.acked_total}; problems {len(run.problems)}")
        for s in (reader, srv):
            if s is not None:
                s.stop()
        pair.stop()
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.campaigns.failover", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=6)
    p.add_argument("--before", type=float, default=3.0, help="seconds of load before the kill")
    p.add_argument("--after", type=float, default=3.0, help="seconds of load after the first write")
    p.add_argument("--no-replica", action="store_true", help="skip the read-only replica")
    p.add_argument("--ledger-only", action="store_true", help="no orders in the load (transfers, retirements, pledges)")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    s = FailoverSummary()
    t0 = time.monotonic()
    rng = random.Random(args.seed)
    for n in range(args.runs):
        root = Path(tempfile.mkdtemp(prefix="envx-failover-"))
        try:
            run = one_failover(root, seed=args.seed * 100 + n, before_seconds=args.before + rng.uniform(0, 2),
                               after_seconds=args.after, workers=args.workers, replica=not args.no_replica,
                               ledger_only=args.ledger_only)
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        s.runs.append(run)
        s.writes_lost += run.acked_total - run.acked_found
    s.seconds = round(time.monotonic() - t0, 1)
    print(json.dumps(asdict(s), ensure_ascii=False, indent=2, default=str))
    times = [r.failover_seconds for r in s.runs if r.failover_seconds is not None]
    print(f"failover campaign: {len(s.runs)} failovers, writes lost {s.writes_lost}, failover time "
          f"{min(times, default=0):.2f}-{max(times, default=0):.2f}s, {sum(len(r.problems) for r in s.runs)} "
          f"problems, {s.seconds}s: {'PASS' if s.ok else 'FAIL'}")
    return 0 if s.ok else 1


if __name__ == "__main__":
    sys.exit(main())
