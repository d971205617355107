"""Entry version 3: an anonymous trade's accounts and holds appear in its bytes as commitments
(ledger/blinding.py); the state machine applies the clear command, the audit unblinds with the stored openings
and finds any salt, account or commitment that does not bind.

Known-answer vectors: tests/data/ledger_blinded_vectors.json (tests/ledger/blinded_workload.py). The version-1
and version-2 vector files stay as they were (test_replay_vectors.py, test_events.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import asyncpg
import pytest

from exchange.core.database import asyncpg_dsn
from ledger import blinding
from ledger import commands as c
from ledger.encoding import DOMAIN_TAG, DOMAIN_TAG_V3, canonical_json, decode_entry, sha256
from ledger.replay import request_of
from ledger.state import LedgerState, Rejection
from ledger.verify import verify_database
from ledger.writer import LedgerWriter
from tests.ledger import blinded_workload as bw
from tests.ledger import event_workload as ew
from tests.ledger.replay_workload import digest_rows, state_rows
from tests.ledger.test_events import TS, _market, _trade
from tests.ledger.test_replay_vectors import _db_rows

KEY = bytes(range(32))


def test_version_3_known_answer_vectors() -> None:
    data = bw.load()
    assert bytes.fromhex(data["key"]) == bw.KEY
    assert bw.record(data["seed"]) == data
    leaves = [bytes.fromhex(leaf) for g in data["groups"] for leaf in g.get("leaves", ())]
    assert len(leaves) > 50
    for g in data["groups"]:
        for leaf, h in zip(g.get("leaves", ()), g.get("entries", ()), strict=False):
            assert sha256(bytes.fromhex(leaf)).hex() == h
    for leaf in leaves:
        legs = decode_entry(leaf)["body"]["legs"]
        assert leaf.startswith(DOMAIN_TAG_V3) and decode_entry(leaf)["v"] == 3
        for leg in legs:  # no account or hold of any leg is in the clear
            assert all(isinstance(leg["body"][f], str) and len(leg["body"][f]) == 64
                       for f in ("debit", "credit", "hold") if f in leg["body"])


def test_the_primitive_by_hand() -> None:
    # The formula of README "Ledger entry encoding (version 3)", written out with hashlib and hmac alone.
    for p in bw.load()["primitives"]:
        salt = hmac.new(bw.KEY, b"envx-salt/1\n" + p["seq"].to_bytes(8, "big") + p["leg"].to_bytes(2, "big")
                        + p["field"].encode(), hashlib.sha256).digest()
        tag = b"envx-hold/1\n" if p["field"] == "hold" else b"envx-acct/1\n"
        assert salt.hex() == p["salt"]
        assert hashlib.sha256(tag + salt + p["value"].to_bytes(8, "big")).hexdigest() == p["commitment"]


def test_blinding_changes_the_bytes_only() -> None:
    data, v2 = bw.load(), ew.build(ew.load()["seed"])
    blinded, _ = bw.run(data["seed"])
    clear, mine = state_rows(v2.s), state_rows(blinded)
    clear.pop("head"), mine.pop("head")
    assert clear == mine  # the same balances, blocks and holds: only the entries' bytes differ


def test_a_mixed_v1_v3_log_replays_with_its_openings() -> None:
    data = bw.load()
    _, outcomes = bw.run(data["seed"])
    entries = [e for out in outcomes if not isinstance(out, Rejection) for e in out]
    assert {e.leaf[:13] for e in entries} == {DOMAIN_TAG, DOMAIN_TAG_V3}
    stored = blinding.StoredSalts({e.seq: e.openings for e in entries if e.openings is not None})
    fresh = LedgerState()
    fresh.salts = stored  # the auditor has no key: the stored openings give the salts
    for e in entries:
        assert fresh.apply(request_of(decode_entry(e.leaf), e.meta, stored.openings.get(e.seq)), e.ts).leaf == e.leaf
        fresh.forget_journal()
    assert (fresh.head.hash.hex(), digest_rows(state_rows(fresh))) == (data["final"]["head_hash"],
                                                                        data["final"]["state"])


def _one_trade() -> tuple[Any, dict[str, int]]:
    s, ids = _market()
    s.salts = blinding.KeyedSalts(KEY)
    e = s.apply(c.Request("exchange:X", _blind(_trade(ids)), "X:trade:1:0"), TS)
    return e, ids


def _blind(ev: c.Event) -> c.Event:
    """The same event, written blinded (version 3)."""
    return c.Event(ev.kind, ev.legs, blinded=True)


def test_the_bytes_name_no_account_and_the_openings_bind() -> None:
    e, ids = _one_trade()
    assert e.leaf.startswith(DOMAIN_TAG_V3) and e.openings is not None
    body = decode_entry(e.leaf)["body"]
    assert blinding.check(body, e.openings) == []
    assert blinding.values(e.openings) == {ids[k] for k in ("sh", "sc", "bh", "bc", "clearing", "fees")}
    # Each field has its own salt: the same account twice gives two unrelated commitments.
    commitments = [leg["body"][f] for leg in body["legs"] for f in ("debit", "credit", "hold") if f in leg["body"]]
    assert len(set(commitments)) == len(commitments)
    clear = blinding.unblind(body, e.openings)
    assert clear["legs"][1]["body"] == {"debit": ids["clearing"], "credit": ids["bh"], "instrument": "CEA",
                                        "amount": 4}


@pytest.mark.parametrize("tamper", ["salt", "value", "commitment", "missing", "extra"])
def test_a_wrong_salt_account_or_commitment_is_found(tamper: str) -> None:
    e, ids = _one_trade()
    body = decode_entry(e.leaf)["body"]
    openings = [dict(x) for x in e.openings or ()]
    salt, value = openings[1]["credit"]
    if tamper == "salt":
        openings[1]["credit"] = (bytes([salt[0] ^ 1]) + salt[1:], value)
    elif tamper == "value":
        openings[1]["credit"] = (salt, ids["sh"])  # the seller's account in place of the buyer's
    elif tamper == "commitment":
        body["legs"][1]["body"]["credit"] = blinding.commitment("credit", salt, ids["sh"])
    elif tamper == "missing":
        del openings[1]["credit"]
    else:
        openings[4]["hold"] = (salt, 1)
    assert blinding.check(body, openings) != []
    with pytest.raises(blinding.BlindingError):
        blinding.unblind(body, openings)


def test_no_salts_no_blinded_event() -> None:
    s, ids = _market()
    before = state_rows(s)
    with pytest.raises(Rejection) as refused:
        s.apply(c.Request("exchange:X", _blind(_trade(ids))), TS)
    assert refused.value.code == "blinding_unavailable" and state_rows(s) == before


def test_the_writer_keeps_the_openings_and_the_audit_checks_them(db_url: str) -> None:
    data = bw.load()
    dsn = asyncpg_dsn(db_url)

    async def run() -> list[Any]:
        now = [0]
        writer = LedgerWriter(dsn, clock=lambda: now[0], max_batch=16, blinding_key=bw.KEY)
        await writer.start()
        got: list[Any] = []
        try:
            for ts, group in bw.groups(data["seed"]):
                now[0] = ts
                try:
                    got.append([e.hash.hex() for e in await writer.submit_linked(group)])
                except Rejection as rej:
                    got.append(rej.code)
        finally:
            await writer.stop()
        return got

    assert asyncio.run(run()) == [g.get("entries", g.get("refused")) for g in data["groups"]]
    assert digest_rows(asyncio.run(_db_rows(dsn))) == data["final"]["state"]
    report = asyncio.run(verify_database(dsn))
    assert report.ok, report.render()
    stored = asyncio.run(_fetch(dsn, "SELECT seq, openings FROM ledger_entry_openings ORDER BY seq"))
    expected = [canonical_json(o) for g in data["groups"] for o in g.get("openings", ())]
    assert [bytes(r["openings"]) for r in stored] == expected
    seq = stored[0]["seq"]
    for what, sql in (
        ("a salt", "UPDATE ledger_entry_openings SET openings = convert_to(regexp_replace("
                   "convert_from(openings, 'UTF8'), '\\[\"([0-9a-f])', '[\"' || CASE WHEN substring("
                   "convert_from(openings, 'UTF8') FROM '\\[\"([0-9a-f])') = '0' THEN '1' ELSE '0' END), 'UTF8') "
                   "WHERE seq = $1"),
        ("an account", "UPDATE ledger_entry_openings SET openings = convert_to(regexp_replace("
                       "convert_from(openings, 'UTF8'), ',([0-9]+)\\]', ',999\\1]'), 'UTF8') WHERE seq = $1"),
        ("missing openings", "DELETE FROM ledger_entry_openings WHERE seq = $1"),
    ):
        asyncio.run(_tampered(dsn, sql, seq, what))


async def _fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _tampered(dsn: str, sql: str, seq: int, what: str) -> None:
    """Tamper inside a transaction, audit (integrity pass and replay), roll back."""
    conn = await asyncpg.connect(dsn)
    try:
        tr = conn.transaction()
        await tr.start()
        await conn.execute("SET LOCAL session_replication_role = replica")  # past the append-only triggers
        assert (await conn.execute(sql, seq)).endswith("1"), what
        from ledger.verify import Report, verify_connection
        for replay in (False, True):
            report = Report()
            await verify_connection(conn, report, replay=replay)
            assert not report.ok, what
            assert any(f"entry {seq}:" in p for p in report.problems), (what, report.render())
        await tr.rollback()
    finally:
        await conn.close()
