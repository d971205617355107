"""Tamper campaign: random single-byte changes to the ledger's tables; the audit must catch each one.

The database is a real one: an `envx serve` process under mixed load (transfers, retirements,
orders and trades, listings, pledges, a court freeze), more than 256 entries (two Merkle tile
levels), several signed checkpoints. Then, for each mutation, an attacker with superuser rights
(`session_replication_role = replica` switches off the append-only triggers and foreign keys)
changes one byte of one stored value in one of the ledger's tables, `verify_connection` (the
function behind `envx verify` and `verify_database`) audits inside the same transaction, and the
transaction is rolled back, which restores the byte. A mutation a CHECK or key refuses is not
counted (the database itself stopped it); every counted one must be reported.

The byte-flipping and the table list are those of tests/ledger_verifiable/test_tamper.py (the
verifiable-ledger tests), so both campaigns mean the same by "one byte" and "the ledger's tables".

    python -m tests.campaigns.tamper --mutations 1000
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

import asyncpg

from exchange.core.database import asyncpg_dsn
from ledger.verify import Report, verify_connection
from tests.campaigns import checks
from tests.campaigns.common import INSTRUMENT, EnvxServer, build_world, days, http, local_cluster
from tests.campaigns.load import MixedLoad
from tests.ledger_verifiable.test_tamper import TABLES, _columns, _flip


@dataclass
class TamperSummary:
    entries: int = 0
    checkpoints: int = 0
    mutations: int = 0
    detected: int = 0
    refused_by_constraints: int = 0
    by_table: dict[str, int] = field(default_factory=dict)
    undetected: list[str] = field(default_factory=list)
    audit_seconds_mean: float = 0.0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.mutations > 0 and self.detected == self.mutations and not self.undetected


class _Rollback(Exception):
    pass


MIN_ENTRIES = 300  # more than one full Merkle tile (256)


def build_database(url: str, data_dir: Path, *, load_seconds: float = 4.0, seed: int = 7) -> None:
    """A ledger with every table populated, from real traffic through the API."""
    srv = EnvxServer(url, data_dir, checkpoint_interval_seconds=0.1)
    maker, checker = srv.operators()
    srv.start()
    try:
        with http(srv.url, maker, checker=checker) as op:
            world = build_world(op, court=True)
            load = MixedLoad(srv.url, world, seed=seed, workers=4, tag="tamper")
            load.start()
            time.sleep(load_seconds)
            # At least MIN_ENTRIES, however slowly a loaded machine writes them (a bounded wait, not a timing).
            waited = time.monotonic() + 60
            while op.get("/v1/ledger/head").json()["seq"] <= MIN_ENTRIES and time.monotonic() < waited:
                time.sleep(0.2)
            load.stop()
            assert not load.book.errors, load.book.errors[:5]
            # A court freeze and a deduction: freeze holds, posted to the court's account.
            court = op.as_(world.court.token)  # type: ignore[union-attr]
            f = op.ok(court.post("/v1/freezes", {
                "holder_id": world.traders[0].id, "holder_identifier": world.traders[0].uscc,
                "instrument": INSTRUMENT, "quantity": "3",
                "case_number": "(2025)闽04执恢12号", "notice_number": "XZ-12", "term_start": days(0),
                "term_end": days(90), "deduct_to_id": world.traders[1].id}))
            op.ok(court.post(f"/v1/freezes/{f['id']}/deduction", {}))
            time.sleep(0.5)  # the last checkpoint
    finally:
        srv.stop()


async def mutate(dsn: str, mutations: int, seed: int, log: Any = print) -> TamperSummary:
    s = TamperSummary()
    rng = random.Random(seed)
    caught: Counter[str] = Counter()
    audit = 0.0
    conn = await asyncpg.connect(dsn)
    try:
        s.entries = int(await conn.fetchval("SELECT seq FROM ledger_head WHERE id = 1"))
        s.checkpoints = int(await conn.fetchval("SELECT count(*) FROM ledger_checkpoints"))
        columns = await _columns(conn)
        rows = {t: [r["ctid"] for r in await conn.fetch(f"SELECT ctid FROM {t}")] for t in columns}
        tables = [t for t in TABLES if rows.get(t)]
        attempts = 0
        while s.mutations < mutations and attempts < mutations * 20:
            attempts += 1
            table = tables[s.mutations % len(tables)]  # round-robin: every table gets its share
            ctid = rng.choice(rows[table])
            # Byte strings (leaf, meta, hashes, tiles) weigh three times: most bytes live there.
            column, data_type = rng.choice([c for c in columns[table] for _ in range(3 if c[1] == "bytea" else 1)])
            value = await conn.fetchval(f"SELECT {column} FROM {table} WHERE ctid = $1", ctid)
            if value is None or value in ("", b""):
                continue
            new = _flip(value, data_type, rng)
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL session_replication_role = replica")  # the attacker's powers
                    try:
                        async with conn.transaction():
                            await conn.execute(f"UPDATE {table} SET {column} = $1 WHERE ctid = $2", new, ctid)
                    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError):
                        s.refused_by_constraints += 1
                        raise _Rollback from None
                    report = Report()
                    t = time.monotonic()
                    await verify_connection(conn, report)
                    audit += time.monotonic() - t
                    s.mutations += 1
                    if report.ok:
                        s.undetected.append(f"{table}.{column} {value!r:.80} -> {new!r:.80}")
                    else:
                        s.detected += 1
                        caught[f"{table}.{column}"] += 1
                    raise _Rollback  # restores the byte
            except _Rollback:
                pass
            if s.mutations and s.mutations % 100 == 0:
                log(f"{s.mutations} mutations, {s.detected} detected")
    finally:
        await conn.close()
    s.by_table = dict(sorted(Counter(k.split(".")[0] for k in caught.elements()).items()))
    s.audit_seconds_mean = round(audit / max(s.mutations, 1), 3)
    return s


def run_campaign(url: str, data_dir: Path, *, mutations: int, seed: int = 20261123, load_seconds: float = 4.0,
                 log: Any = print) -> TamperSummary:
    t0 = time.monotonic()
    build_database(url, data_dir, load_seconds=load_seconds)
    ok, report = asyncio.run(checks.verify(url))
    if not ok:
        raise AssertionError(f"the database does not verify before tampering: {report}")
    s = asyncio.run(mutate(asyncpg_dsn(url), mutations, seed, log))
    ok, report = asyncio.run(checks.verify(url))
    if not ok:  # every mutation must have been rolled back
        s.undetected.append(f"the database does not verify after the campaign: {report}")
    s.seconds = round(time.monotonic() - t0, 1)
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.campaigns.tamper", description=__doc__.split("\n")[0])
    p.add_argument("--mutations", type=int, default=1000)
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--load-seconds", type=float, default=4.0)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="envx-tamper-"))
    cluster, url = local_cluster(root)
    try:
        s = run_campaign(url, root / "data", mutations=args.mutations, seed=args.seed, load_seconds=args.load_seconds)
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(asdict(s), ensure_ascii=False, indent=2))
    print(f"tamper campaign: {s.entries} entries, {s.checkpoints} checkpoints, {s.detected}/{s.mutations} single-byte "
          f"changes detected ({s.refused_by_constraints} refused by constraints, not counted), audit "
          f"{s.audit_seconds_mean}s each, {s.seconds}s: {'PASS' if s.ok else 'FAIL'}")
    return 0 if s.ok else 1


if __name__ == "__main__":
    sys.exit(main())
