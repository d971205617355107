"""The audit's fast paths report the same as the serial one: replay-free pass, split over processes.

The split cuts the log on tile boundaries (entries 257, 513, ...): with 800 more accounts the log is long
enough for three parts, and a byte flipped either side of a seam is found as in the serial pass.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

import asyncpg
import pytest
from litestar.testing import TestClient

from api.app import create_app
from exchange.core.database import asyncpg_dsn
from exchange.core.settings import Settings
from ledger import commands as c
from ledger import integrity, note, verify
from tests.helpers import Api, bootstrap_operator
from tests.ledger_verifiable.helpers import head_seq, world
from tests.ledger_verifiable.test_tamper import _columns, _flip


async def _flip_leaf(dsn: str, seq: int) -> bytes:
    """Commit a one-byte change to entry `seq` (as an attacker would); return the original bytes."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        leaf = await conn.fetchval("SELECT leaf FROM ledger_entries WHERE seq = $1", seq)
        await conn.execute("UPDATE ledger_entries SET leaf = $1 WHERE seq = $2",
                           leaf[:-3] + bytes([leaf[-3] ^ 1]) + leaf[-2:], seq)
        return bytes(leaf)
    finally:
        await conn.close()


async def _restore_leaf(dsn: str, seq: int, leaf: bytes) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("UPDATE ledger_entries SET leaf = $1 WHERE seq = $2", leaf, seq)
    finally:
        await conn.close()


def test_replay_free_audit_split_over_processes(db_url: str, settings: Settings,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as client:
        api = Api(client, bootstrap_operator(client))
        world(api, transfers=2)
        rt = client.app.state.rt
        client.blocking_portal.call(rt.submit_linked, [c.Request("t", c.OpenAccount(f"a{i}", "holding"))
                                                       for i in range(800)])
        n = head_seq(client)
    dsn = asyncpg_dsn(db_url)
    monkeypatch.setattr(verify, "PARALLEL_MIN", 10)
    serial = asyncio.run(verify.verify_database(dsn, replay=False, jobs=1))
    split = asyncio.run(verify.verify_database(dsn, replay=False, jobs=3))
    assert serial.ok and split.ok and serial.entries == split.entries == n, split.render()
    assert serial.checks == split.checks
    assert n > 3 * 256, n
    for seq in (2, 256, 257, 513, n - 1):  # in the first part, either side of the seams, in the last part
        original = asyncio.run(_flip_leaf(dsn, seq))
        try:
            for jobs in (1, 3):
                report = asyncio.run(verify.verify_database(dsn, replay=False, jobs=jobs))
                assert any(p.startswith(f"entry {seq}:") for p in report.problems), (jobs, report.render())
                assert any(p.startswith(f"entry {seq + 1}: chain broken") for p in report.problems)
        finally:
            asyncio.run(_restore_leaf(dsn, seq, original))
    assert asyncio.run(verify.verify_database(dsn)).ok


def test_full_audit_replays_while_workers_check_integrity(db_url: str, settings: Settings,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as client:
        api = Api(client, bootstrap_operator(client))
        world(api, transfers=3)
        rt = client.app.state.rt
        client.blocking_portal.call(rt.submit_linked, [c.Request("t", c.OpenAccount(f"a{i}", "holding"))
                                                       for i in range(800)])
        n = head_seq(client)
    dsn = asyncpg_dsn(db_url)
    monkeypatch.setattr(verify, "PARALLEL_MIN", 10)
    serial = asyncio.run(verify.verify_database(dsn, jobs=1))
    for jobs in (2, 3):
        split = asyncio.run(verify.verify_database(dsn, jobs=jobs))
        assert serial.ok and split.ok and serial.entries == split.entries == n, split.render()
        assert serial.checks == split.checks and split.timings["projections"] > 0
    for seq in (2, 256, 257, n):  # first, either side of the seam for jobs=3, the last
        original = asyncio.run(_flip_leaf(dsn, seq))
        try:
            for jobs in (1, 2, 3):
                report = asyncio.run(verify.verify_database(dsn, jobs=jobs))
                assert any(p.startswith(f"entry {seq}:") for p in report.problems), (jobs, report.render())
                assert "replay stopped at the first entry it could not reproduce" in report.warnings
                assert "projections not compared: the replay did not complete" in report.warnings
        finally:
            asyncio.run(_restore_leaf(dsn, seq, original))

    async def tamper_balance(delta: int) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET session_replication_role = replica")
            await conn.execute("""UPDATE ledger_balances SET pending_in = pending_in + $1
                                  WHERE (account, instrument) = (SELECT account, instrument FROM ledger_balances
                                                                 ORDER BY account, instrument LIMIT 1)""", delta)
        finally:
            await conn.close()

    # The replayed state reaches the projection diff on the split path too.
    asyncio.run(tamper_balance(1))
    try:
        for jobs in (1, 2):
            report = asyncio.run(verify.verify_database(dsn, jobs=jobs))
            assert any(p.startswith("balances:") for p in report.problems), (jobs, report.render())
    finally:
        asyncio.run(tamper_balance(-1))
    assert asyncio.run(verify.verify_database(dsn, jobs=2)).ok


# What the replay-free audit covers: the log, the tree, the checkpoints, the keys (not the projections).
INTEGRITY_TABLES = ("ledger_entries", "ledger_tiles", "ledger_checkpoints", "ledger_signing_keys")


async def _flip_committed(dsn: str, rng: random.Random) -> tuple[str, str, object, str] | None:
    """Commit a one-byte change to one value of one integrity table (None if a constraint refused it);
    returns what to restore: table, column, original value, the row's new ctid."""
    conn = await asyncpg.connect(dsn)
    try:
        columns = await _columns(conn)
        table = rng.choice(INTEGRITY_TABLES)
        ctid = rng.choice([r["ctid"] for r in await conn.fetch(f"SELECT ctid FROM {table}")])
        column, data_type = rng.choice([c for c in columns[table] for _ in range(3 if c[1] == "bytea" else 1)])
        value = await conn.fetchval(f"SELECT {column} FROM {table} WHERE ctid = $1", ctid)
        if value is None or value in ("", b""):
            return None
        await conn.execute("SET session_replication_role = replica")  # the attacker's powers
        try:
            moved = await conn.fetchval(f"UPDATE {table} SET {column} = $1 WHERE ctid = $2 RETURNING ctid",
                                        _flip(value, data_type, rng), ctid)
        except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError):
            return None
        return table, column, value, moved
    finally:
        await conn.close()


async def _restore(dsn: str, table: str, column: str, value: object, ctid: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(f"UPDATE {table} SET {column} = $1 WHERE ctid = $2", value, ctid)
    finally:
        await conn.close()


def test_replay_free_audit_reports_a_changed_byte_in_any_column_serial_or_split(
        db_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the replay, every byte of the log's rows (seq, ts, type, actor, client_id, leaf, hash, meta), of
    the tiles, the checkpoints and the keys is still checked, in this process and in the workers alike."""
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as client:
        api = Api(client, bootstrap_operator(client))
        world(api, transfers=2)
        rt = client.app.state.rt
        client.blocking_portal.call(rt.submit_linked, [c.Request("t", c.OpenAccount(f"a{i}", "holding"), f"o{i}")
                                                       for i in range(800)])
    dsn = asyncpg_dsn(db_url)
    monkeypatch.setattr(verify, "PARALLEL_MIN", 10)
    assert asyncio.run(verify.verify_database(dsn, replay=False, jobs=3)).ok
    rng = random.Random(20261201)
    caught: dict[str, int] = {}
    done = attempts = 0
    while done < 24:
        attempts += 1
        assert attempts < 240, "too many mutations refused by constraints"
        flipped = asyncio.run(_flip_committed(dsn, rng))
        if flipped is None:
            continue
        table, column, value, ctid = flipped
        try:
            for jobs in (1, 3):
                report = asyncio.run(verify.verify_database(dsn, replay=False, jobs=jobs))
                assert not report.ok, f"{table}.{column} (jobs={jobs}) went unnoticed"
        finally:
            asyncio.run(_restore(dsn, table, column, value, ctid))
        caught[f"{table}.{column}"] = caught.get(f"{table}.{column}", 0) + 1
        done += 1
    assert {k for k in caught if k.startswith("ledger_entries.")} >= {
        "ledger_entries.leaf", "ledger_entries.hash", "ledger_entries.meta"}, caught
    assert asyncio.run(verify.verify_database(dsn, replay=False, jobs=3)).ok


def test_a_worker_that_fails_or_answers_garbage_fails_the_audit(db_url: str, settings: Settings,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A range no worker vouched for is never taken as checked: the audit raises instead of reporting OK."""
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as client:
        world(Api(client, bootstrap_operator(client)), transfers=1)
        rt = client.app.state.rt
        client.blocking_portal.call(rt.submit_linked, [c.Request("t", c.OpenAccount(f"a{i}", "holding"))
                                                       for i in range(600)])  # two ranges of 256 and more
    dsn = asyncpg_dsn(db_url)
    monkeypatch.setattr(verify, "PARALLEL_MIN", 10)
    assert asyncio.run(verify.verify_database(dsn, replay=False, jobs=2)).ok
    for boot in ("import sys; sys.exit(3)", "print('all fine')"):
        monkeypatch.setattr(integrity, "BOOT", boot)
        for replay in (False, True):
            with pytest.raises((RuntimeError, ValueError)):
                asyncio.run(verify.verify_database(dsn, replay=replay, jobs=2))


def test_checkpoints_kept_by_an_auditor_are_checked_against_the_database(db_url: str, settings: Settings) -> None:
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as client:
        api = Api(client, bootstrap_operator(client))
        world(api, transfers=2)
        kept = client.get("/v1/ledger/checkpoint").text  # what an auditor saved earlier
        key = client.get("/v1/ledger/keys").json()[0]["verifier_key"]
    dsn = asyncpg_dsn(db_url)
    assert asyncio.run(verify.verify_database(dsn, checkpoints=[kept], trusted_keys=[key])).ok
    # A checkpoint of a longer log (the database lost its tail) and one under a key the auditor does not trust.
    cp = note.parse_checkpoint(note.parse_note(kept).text)
    signer = note.Signer.from_key_string((settings.data_dir / "signing.key").read_text())
    # Beyond the whole log, not just beyond the kept checkpoint: entries may have landed after it was read.
    longer = note.sign_checkpoint(note.Checkpoint(cp.origin, cp.size + 1000, cp.root_hash), signer)
    report = asyncio.run(verify.verify_database(dsn, checkpoints=[longer], trusted_keys=[key]))
    assert any("beyond the log" in p for p in report.problems), report.render()
    other = note.generate_signer_key(cp.origin)[1]
    report = asyncio.run(verify.verify_database(dsn, checkpoints=[kept], trusted_keys=[other]))
    assert any("does not verify" in p for p in report.problems), report.render()


async def _cut_entry(dsn: str, seq: int) -> asyncpg.Record:
    """Delete entry `seq` from the log (as an attacker would); return its row."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        return await conn.fetchrow("DELETE FROM ledger_entries WHERE seq = $1 RETURNING *", seq)
    finally:
        await conn.close()


async def _put_entry(dsn: str, row: Mapping[str, Any]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        cols = list(row.keys())
        await conn.execute(f"INSERT INTO ledger_entries ({', '.join(cols)}) "
                           f"VALUES ({', '.join(f'${k + 1}' for k in range(len(cols)))})", *row.values())
    finally:
        await conn.close()


def test_a_gap_in_the_log_is_reported_the_same_by_the_split_audit(db_url: str, settings: Settings,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The split trusts no count of rows: a range that misses an entry sends the audit back to the serial pass,
    which reports the gap exactly -- in the middle of a range and at a range's last entry alike."""
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as client:
        world(Api(client, bootstrap_operator(client)), transfers=1)
        rt = client.app.state.rt
        client.blocking_portal.call(rt.submit_linked, [c.Request("t", c.OpenAccount(f"a{i}", "holding"))
                                                       for i in range(700)])
        n = head_seq(client)
    dsn = asyncpg_dsn(db_url)
    monkeypatch.setattr(verify, "PARALLEL_MIN", 10)
    assert verify.audit_span(n, 3) == 256
    for seq in (300, 256):  # inside the second range; the first range's last entry
        row = asyncio.run(_cut_entry(dsn, seq))
        try:
            for replay in (False, True):
                serial = asyncio.run(verify.verify_database(dsn, replay=replay, jobs=1))
                assert f"seq {seq + 1} found where {seq} was expected (gap or reorder)" in serial.problems
                assert "the log has a gap: tree and checkpoints not checked" in serial.problems
                for jobs in (2, 3):
                    split = asyncio.run(verify.verify_database(dsn, replay=replay, jobs=jobs))
                    assert (split.problems, split.warnings, split.checks, split.entries) == (
                        serial.problems, serial.warnings, serial.checks, serial.entries), (jobs, split.render())
        finally:
            asyncio.run(_put_entry(dsn, row))
    # An entry forged far beyond the log: the split stops at the first range that misses an entry instead of
    # walking the billions of empty ranges up to it, and the serial pass reports the gap.
    far = 10**12
    asyncio.run(_put_entry(dsn, {**dict(asyncio.run(_cut_entry(dsn, n))), "seq": far}))
    try:
        for replay in (False, True):
            serial = asyncio.run(verify.verify_database(dsn, replay=replay, jobs=1))
            assert f"seq {far} found where {n} was expected (gap or reorder)" in serial.problems
            for jobs in (2, 3):
                split = asyncio.run(verify.verify_database(dsn, replay=replay, jobs=jobs))
                assert (split.problems, split.warnings, split.checks) == (
                    serial.problems, serial.warnings, serial.checks), (jobs, split.render())
    finally:
        row = asyncio.run(_cut_entry(dsn, far))
        asyncio.run(_put_entry(dsn, {**dict(row), "seq": n}))
    assert asyncio.run(verify.verify_database(dsn, jobs=3)).ok
