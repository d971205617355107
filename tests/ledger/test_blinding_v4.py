"""Entry version 4: an anonymous trade's accounts, holds AND amounts appear in its bytes as commitments
(ledger/blinding.py `FIELDS[4]`), so neither party reads the other's hold rest or release (its limit, its size);
the state machine applies the clear command, the audit unblinds with the stored openings and finds any amount
that does not bind.

Known-answer vectors: tests/data/ledger_blinded_v4_vectors.json (tests/ledger/blinded_v4_workload.py). The
version-1, -2 and -3 vector files stay as they were (test_replay_vectors.py, test_events.py, test_blinding.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import asyncpg
import pytest

from exchange.core.database import asyncpg_dsn
from ledger import blinding, merkle, note, receipt
from ledger import commands as c
from ledger.encoding import DOMAIN_TAG, DOMAIN_TAG_V3, DOMAIN_TAG_V4, canonical_json, decode_entry, sha256
from ledger.replay import request_of, request_of_leaf
from ledger.state import LedgerState, Rejection
from ledger.verify import Report, verify_connection, verify_database
from ledger.writer import LedgerWriter
from tests.ledger import blinded_v4_workload as bw
from tests.ledger import event_workload as ew
from tests.ledger.replay_workload import digest_rows, state_rows
from tests.ledger.test_events import TS, _market, _trade
from tests.ledger.test_replay_vectors import _db_rows

KEY = bytes(range(32))
# What a leg body may still carry in the clear in a version-4 entry: the instrument, a hold's kind, its expiry.
CLEAR = {"instrument", "kind", "expires_at", "previous_expires_at"}


def test_version_4_known_answer_vectors() -> None:
    data = bw.load()
    assert bytes.fromhex(data["key"]) == bw.KEY
    assert bw.record(data["seed"]) == data
    leaves = [bytes.fromhex(leaf) for g in data["groups"] for leaf in g.get("leaves", ())]
    assert len(leaves) > 50
    for g in data["groups"]:
        for leaf, h in zip(g.get("leaves", ()), g.get("entries", ()), strict=False):
            assert sha256(bytes.fromhex(leaf)).hex() == h
    kinds = set()
    for leaf in leaves:
        entry = decode_entry(leaf)
        assert leaf.startswith(DOMAIN_TAG_V4) and entry["v"] == 4
        for leg in entry["body"]["legs"]:  # nothing but commitments, the instrument and a hold's kind/expiry
            kinds.add(leg["type"])
            for f, v in leg["body"].items():
                assert f in CLEAR or (isinstance(v, str) and len(v) == 64), (leg["type"], f, v)
    assert kinds >= {"hold.post", "hold.trim", "transfer", "hold.create"}


def test_the_primitive_by_hand() -> None:
    # The formula of README "Ledger entry encoding (version 4)", written out with hashlib and hmac alone.
    tags = {"debit": b"envx-acct/1\n", "hold": b"envx-hold/1\n"}
    fields = set()
    for p in bw.load()["primitives"]:
        salt = hmac.new(bw.KEY, b"envx-salt/1\n" + p["seq"].to_bytes(8, "big") + p["leg"].to_bytes(2, "big")
                        + p["field"].encode(), hashlib.sha256).digest()
        tag = tags.get(p["field"], b"envx-amt/1\n")
        assert salt.hex() == p["salt"]
        assert hashlib.sha256(tag + salt + p["value"].to_bytes(8, "big")).hexdigest() == p["commitment"]
        fields.add(p["field"])
    assert fields >= {"amount", "released", "remaining", "keep"}


def test_blinding_amounts_changes_the_bytes_only() -> None:
    data, v2 = bw.load(), ew.build(ew.load()["seed"])
    blinded, _ = bw.run(data["seed"])
    clear, mine = state_rows(v2.s), state_rows(blinded)
    clear.pop("head"), mine.pop("head")
    assert clear == mine


def test_a_mixed_v1_v4_log_replays_with_its_openings() -> None:
    data = bw.load()
    _, outcomes = bw.run(data["seed"])
    entries = [e for out in outcomes if not isinstance(out, Rejection) for e in out]
    assert {e.leaf[:13] for e in entries} == {DOMAIN_TAG, DOMAIN_TAG_V4}
    stored = blinding.StoredSalts({e.seq: e.openings for e in entries if e.openings is not None})
    fresh, again = LedgerState(), LedgerState()
    fresh.salts = again.salts = stored  # the auditor has no key: the stored openings give the salts
    for e in entries:
        assert fresh.apply(request_of(decode_entry(e.leaf), e.meta, stored.openings.get(e.seq)), e.ts).leaf == e.leaf
        request, ts = request_of_leaf(e.leaf, e.meta, stored.openings.get(e.seq))  # the audit's fast reader
        assert again.apply(request, ts).leaf == e.leaf
        fresh.forget_journal()
        again.forget_journal()
    assert (fresh.head.hash.hex(), digest_rows(state_rows(fresh))) == (data["final"]["head_hash"],
                                                                        data["final"]["state"])


def _one_trade(*extra: c.Leg) -> tuple[Any, dict[str, int]]:
    s, ids = _market()
    s.salts = blinding.KeyedSalts(KEY)
    e = s.apply(c.Request("exchange:X", _blind(_trade(ids, *extra)), "X:trade:1:0"), TS)
    return e, ids


def _blind(ev: c.Event) -> c.Event:
    """The same event, written blinded with its amounts (version 4)."""
    return c.Event(ev.kind, ev.legs, blinded=True, blind_amounts=True)


def test_the_bytes_carry_no_amount_and_the_openings_bind() -> None:
    s, ids = _market()
    s.salts = blinding.KeyedSalts(KEY)
    # The buyer's rest after the trade is voided in the same event: every leg kind with an amount.
    e = s.apply(c.Request("exchange:X", _blind(_trade(ids, c.VoidHold(ids["buy"]))), "X:trade:1:0"), TS)
    assert e.leaf.startswith(DOMAIN_TAG_V4) and e.openings is not None
    body = decode_entry(e.leaf)["body"]
    assert blinding.check(body, e.openings, blinding.FIELDS[4]) == []
    clear = blinding.unblind(body, e.openings, blinding.FIELDS[4])
    assert [leg["type"] for leg in clear["legs"]] == [
        "hold.post", "transfer", "hold.post", "hold.trim", "transfer", "transfer", "hold.create", "hold.void"]
    buy_post, trim, void = clear["legs"][2]["body"], clear["legs"][3]["body"], clear["legs"][7]["body"]
    assert (buy_post["amount"], buy_post["remaining"]) == (22_022, 60_060 - 22_022)
    assert (trim["keep"], trim["released"]) == (36_036, 60_060 - 22_022 - 36_036)
    assert void["released"] == 36_036
    # None of the buyer's terms -- its hold, its rest, what was trimmed or voided -- is in the bytes.
    text = e.leaf.decode()
    for secret in (60_060, 60_060 - 22_022, 36_036, 2_002, 22_022):
        assert f":{secret}," not in text and f":{secret}}}" not in text
    # Each field has its own salt: equal amounts (4 units posted, moved, locked) give unrelated commitments.
    commitments = [v for leg in body["legs"] for f, v in leg["body"].items() if f in blinding.FIELDS[4]]
    assert len(set(commitments)) == len(commitments)


def test_blind_amounts_alone_still_blinds_everything() -> None:
    s, ids = _market()
    s.salts = blinding.KeyedSalts(KEY)
    ev = _trade(ids)
    e = s.apply(c.Request("exchange:X", c.Event(ev.kind, ev.legs, blind_amounts=True), "X:trade:1:0"), TS)
    assert e.leaf.startswith(DOMAIN_TAG_V4)
    assert blinding.check(decode_entry(e.leaf)["body"], e.openings, blinding.FIELDS[4]) == []


def test_a_version_3_event_is_unchanged() -> None:
    s, ids = _market()
    s.salts = blinding.KeyedSalts(KEY)
    e = s.apply(c.Request("exchange:X", c.Event("trade", _trade(ids).legs, blinded=True), "X:trade:1:0"), TS)
    assert e.leaf.startswith(DOMAIN_TAG_V3)
    assert {f for leg in e.openings or () for f in leg} == {"debit", "credit", "hold"}


@pytest.mark.parametrize("tamper", ["salt", "value", "commitment", "missing", "as_v3"])
def test_a_wrong_amount_opening_is_found(tamper: str) -> None:
    e, _ = _one_trade()
    body = decode_entry(e.leaf)["body"]
    openings = [dict(x) for x in e.openings or ()]
    salt, value = openings[2]["remaining"]  # the buyer's rest after its post
    fields = blinding.FIELDS[4]
    if tamper == "salt":
        openings[2]["remaining"] = (bytes([salt[0] ^ 1]) + salt[1:], value)
    elif tamper == "value":
        openings[2]["remaining"] = (salt, value + 1)
    elif tamper == "commitment":
        body["legs"][2]["body"]["remaining"] = blinding.commitment("remaining", salt, value + 100)
    elif tamper == "missing":
        del openings[2]["remaining"]
    else:  # read as version 3: its amount openings are not of a version-3 entry
        fields = blinding.FIELDS[3]
    assert blinding.check(body, openings, fields) != []
    with pytest.raises(blinding.BlindingError):
        blinding.unblind(body, openings, fields)


def test_the_writer_keeps_the_openings_and_the_audit_checks_the_amounts(db_url: str) -> None:
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
    assert any("97 blinded entries" in line for line in report.checks), report.checks
    stored = asyncio.run(_fetch(dsn, "SELECT seq, openings FROM ledger_entry_openings ORDER BY seq"))
    expected = [canonical_json(o) for g in data["groups"] for o in g.get("openings", ())]
    assert [bytes(r["openings"]) for r in stored] == expected
    seq = stored[0]["seq"]
    # The seller's posted quantity said to be one more: its commitment no longer opens.
    amount = ("UPDATE ledger_entry_openings SET openings = convert_to(regexp_replace(convert_from(openings, 'UTF8'),"
              " '\"amount\":\\[\"([0-9a-f]{64})\",([0-9]+)\\]', '\"amount\":[\"\\1\",9\\2]'), 'UTF8') WHERE seq = $1")
    asyncio.run(_tampered(dsn, amount, seq, "leg 0 amount"))


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
        for replay in (False, True):
            report = Report()
            await verify_connection(conn, report, replay=replay)
            assert not report.ok, what
            assert any(f"entry {seq}: {what}" in p for p in report.problems), (what, report.render())
        await tr.rollback()
    finally:
        await conn.close()


def _signed_receipt(leaf: bytes, opened: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """A receipt of `leaf` as the only entry of a tree, under a freshly made log key."""
    skey, vkey = note.generate_signer_key("envx.example/v4")
    signed = note.sign_checkpoint(note.Checkpoint("envx.example/v4", 1, merkle.leaf_hash(leaf)),
                                  note.Signer.from_key_string(skey))
    return receipt.make_receipt(leaf, 0, 1, [], signed, openings=opened), vkey


def test_the_receipt_verifier_knows_what_version_4_commits_to() -> None:
    e, _ = _one_trade()
    opened = [{"leg": i, "field": f, "salt": s.hex(), "value": v}
              for i, leg in enumerate(e.openings or ()) for f, (s, v) in leg.items() if i == 2]
    rec, key = _signed_receipt(e.leaf, opened)
    ok = receipt.verify_receipt(rec, [key])
    assert {f for _, f, _ in ok.opened} == {"debit", "credit", "hold", "amount", "released", "remaining"}
    # The buyer's post rest written in clear in a version-4 entry: refused, with or without openings.
    entry = decode_entry(e.leaf)
    entry["body"]["legs"][2]["body"]["remaining"] = dict(e.openings[2])["remaining"][1]  # type: ignore[index]
    clear = DOMAIN_TAG_V4 + canonical_json(entry)
    for given in ([], [o for o in opened if o["field"] != "remaining"]):
        rec, key = _signed_receipt(clear, given)
        with pytest.raises(receipt.ReceiptError) as refused:
            receipt.verify_receipt(rec, [key])
        assert refused.value.code == "malformed" and "remaining" in refused.value.message
    # A version-3 entry has no amount commitments: an amount opening on it is refused.
    s, ids = _market()
    s.salts = blinding.KeyedSalts(KEY)
    v3 = s.apply(c.Request("exchange:X", c.Event("trade", _trade(ids).legs, blinded=True), "X:trade:1:0"), TS)
    salt, value = v3.openings[2]["hold"]  # type: ignore[index]
    rec, key = _signed_receipt(v3.leaf, [{"leg": 2, "field": "hold", "salt": salt.hex(), "value": value}])
    assert receipt.verify_receipt(rec, [key]).opened == ((2, "hold", value),)
    rec["openings"].append({"leg": 2, "field": "amount", "salt": salt.hex(), "value": 22_022})
    with pytest.raises(receipt.ReceiptError) as refused:
        receipt.verify_receipt(rec, [key])
    assert refused.value.code == "malformed"
