"""The audit's replay keeps no undo journal (`LedgerState(undo=False)`): it must still fail, at the right entry,
on a stored log whose entry does not apply -- here an overdraft forged into the log, alone and as the second leg
of an event whose first leg applies (the half-applied change nothing can undo)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from exchange.core.database import asyncpg_dsn
from exchange.core.settings import Settings
from ledger import blinding, verify
from ledger import commands as c
from ledger.encoding import DOMAIN_TAG, DOMAIN_TAG_V2, canonical_json
from ledger.state import LedgerState, Rejection
from tests.helpers import Api, bootstrap_operator
from tests.ledger_verifiable.helpers import world

_TAGS = {1: DOMAIN_TAG, 2: DOMAIN_TAG_V2}


def _forge(leaf: bytes, change: Any) -> bytes:
    """The leaf with `change` applied to its decoded entry, written canonically again (as a forger would)."""
    entry = msgspec.json.decode(leaf[len(DOMAIN_TAG):])
    change(entry)
    return _TAGS[entry["v"]] + canonical_json(entry)


def _cash_log() -> tuple[list[tuple[int, bytes, bytes]], int]:
    """A small cash log through the state machine; the seq of its event of two transfers (50, then 10)."""
    s = LedgerState()
    reqs = [c.Request("op", c.DefineInstrument("CNY", "currency", 2)),
            c.Request("op", c.OpenAccount("bank", "settlement")),
            c.Request("op", c.OpenAccount("a", "cash")),
            c.Request("op", c.OpenAccount("b", "cash")),
            c.Request("op", c.Transfer(2, 3, "CNY", 100)),
            c.Request("op", c.Transfer(3, 4, "CNY", 30), "t1"),
            c.Request("op", c.Event("trade", (c.Transfer(3, 4, "CNY", 50), c.Transfer(3, 4, "CNY", 10))), "e1"),
            c.Request("op", c.Transfer(4, 3, "CNY", 5), "t2", {"memo": "after"})]
    entries = [s.apply(r, 1_000 + k) for k, r in enumerate(reqs)]
    return [(e.seq, e.leaf, e.meta) for e in entries], entries[6].seq


def _replay(rows: list[tuple[int, bytes, bytes]]) -> tuple[verify.Report, verify.Replayer]:
    report = verify.Report()
    replayer = verify.Replayer(report)
    replayer.feed(rows)
    replayer.finish()
    return report, replayer


def test_replay_keeps_no_undo_journal_and_a_refusal_says_so() -> None:
    rows, _ = _cash_log()
    report, replayer = _replay(rows)
    assert report.ok and replayer.n == len(rows) and replayer.state is not None, report.render()
    state = replayer.state
    assert len(state._journal) == 0 and state.mark() == 0  # nothing journalled along the whole log
    with pytest.raises(Rejection) as refused:
        state.apply(c.Request("op", c.Event("x", (c.Transfer(3, 4, "CNY", 1), c.Transfer(3, 4, "CNY", 10**6)))), 9_999)
    assert refused.value.code == "insufficient_available"
    assert state.undone is False  # its first leg stays applied: this state must not decide anything more


def test_a_replay_without_undo_fails_at_the_entry_that_overdraws() -> None:
    rows, event_seq = _cash_log()

    def overdraw_second_leg(entry: dict[str, Any]) -> None:
        entry["body"]["legs"][1]["body"]["amount"] = 60  # 100 - 30 - 50 leaves 20 in account 3

    forged = list(rows)
    k = event_seq - 1
    forged[k] = (event_seq, _forge(rows[k][1], overdraw_second_leg), rows[k][2])
    report, replayer = _replay(forged)
    assert replayer.n == event_seq - 1 and replayer.state is None
    assert len(report.problems) == 1, report.render()
    assert report.problems[0].startswith(f"entry {event_seq}: replay refused it: account 3 has 20 available")
    assert "replay stopped at the first entry it could not reproduce" in report.warnings
    # The same verdict as a replay that keeps its undo journal.
    undo = verify.Report()
    with_undo = verify.Replayer(undo)
    with_undo.state = LedgerState()
    with_undo.state.salts = blinding.StoredSalts(with_undo.openings)
    with_undo.feed(forged)
    assert undo.problems == report.problems and with_undo.n == replayer.n

    # A single transfer that overdraws, and the entry after it is never applied.
    forged = list(rows)
    forged[5] = (6, _forge(rows[5][1], lambda e: e["body"].update(amount=101)), rows[5][2])
    report, replayer = _replay(forged)
    assert replayer.n == 5 and replayer.state is None
    assert [p.split(":")[0] for p in report.problems] == ["entry 6"], report.render()
    assert "account 3 has 100 available of CNY, needs 101" in report.problems[0]


async def _forge_stored(dsn: str, seq: int, change: Any) -> tuple[bytes, bytes]:
    """Commit a forged leaf (and its matching stored hash) for entry `seq`; return the originals."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")  # the attacker's powers
        leaf, digest = await conn.fetchrow("SELECT leaf, hash FROM ledger_entries WHERE seq = $1", seq)
        forged = _forge(bytes(leaf), change)
        await conn.execute("UPDATE ledger_entries SET leaf = $1, hash = $2 WHERE seq = $3",
                           forged, hashlib.sha256(forged).digest(), seq)
        return bytes(leaf), bytes(digest)
    finally:
        await conn.close()


async def _restore(dsn: str, seq: int, leaf: bytes, digest: bytes) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("UPDATE ledger_entries SET leaf = $1, hash = $2 WHERE seq = $3", leaf, digest, seq)
    finally:
        await conn.close()


async def _transfer_entries(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["seq"] for r in await conn.fetch("SELECT seq FROM ledger_entries WHERE type = 'transfer' "
                                                   "ORDER BY seq")]
    finally:
        await conn.close()


def _overdraw(entry: dict[str, Any]) -> None:
    entry["body"]["amount"] = 10**9  # the seller was issued 1000 units


def test_the_audit_reports_an_overdraft_forged_into_the_stored_log(db_url: str, settings: Settings,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as client:
        world(Api(client, bootstrap_operator(client)), transfers=3)
        rt = client.app.state.rt
        client.blocking_portal.call(rt.submit_linked, [c.Request("t", c.OpenAccount(f"a{i}", "holding"))
                                                       for i in range(300)])
    dsn = asyncpg_dsn(db_url)
    monkeypatch.setattr(verify, "PARALLEL_MIN", 10)
    assert asyncio.run(verify.verify_database(dsn, jobs=2)).ok
    transfers = asyncio.run(_transfer_entries(dsn))
    assert len(transfers) >= 3, transfers
    seq = transfers[1]
    original = asyncio.run(_forge_stored(dsn, seq, _overdraw))
    try:
        for jobs in (1, 2):  # the serial pass, and the replay next to a worker
            report = asyncio.run(verify.verify_database(dsn, jobs=jobs))
            refused = [p for p in report.problems if "replay refused it" in p]
            assert refused and refused[0].startswith(f"entry {seq}: replay refused it: "), (jobs, report.render())
            assert "available" in refused[0] and "needs 1000000000" in refused[0]
            assert "replay stopped at the first entry it could not reproduce" in report.warnings
            assert "projections not compared: the replay did not complete" in report.warnings
            # A forger who rewrote the hash too still breaks the chain after it: the integrity pass says so.
            assert any(p.startswith(f"entry {seq + 1}: chain broken") for p in report.problems)
    finally:
        asyncio.run(_restore(dsn, seq, *original))
    assert asyncio.run(verify.verify_database(dsn, jobs=2)).ok
