"""Entry version 2: one business event of several legs is one entry, applied all or none.

Known-answer vectors (tests/data/ledger_event_vectors.json, tests/ledger/event_workload.py): the bytes of
every version-2 entry, every entry hash and the state digest after each event of a seeded mixed v1/v2
workload. The version-1 vectors (test_replay_vectors.py) stay as they were.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from exchange.core.database import asyncpg_dsn
from ledger import commands as c
from ledger.encoding import DOMAIN_TAG, DOMAIN_TAG_V2, decode_entry, sha256
from ledger.replay import request_of
from ledger.state import LedgerState, Rejection
from ledger.verify import verify_database
from ledger.writer import LedgerWriter
from tests.ledger import event_workload as ew
from tests.ledger.replay_workload import digest_rows, state_digest, state_rows
from tests.ledger.test_replay_vectors import _db_rows

TS = ew.T0


def _market() -> tuple[LedgerState, dict[str, int]]:
    s = LedgerState()
    ids: dict[str, int] = {}

    def one(name: str | None, cmd: c.Command) -> None:
        e = s.apply(c.Request("op", cmd), TS)
        if name:
            ids[name] = e.seq

    one(None, c.DefineInstrument("CNY", "currency", 2))
    one(None, c.DefineInstrument("CEA", "cea", 0))
    for name, kind in (("issuance", "issuance"), ("clearing", "settlement"), ("fees", "fees"),
                       ("sh", "holding"), ("sc", "cash"), ("bh", "holding"), ("bc", "cash"), ("court", "holding")):
        one(name, c.OpenAccount(name, kind))
    one(None, c.IssueBatch(ids["issuance"], ids["sh"], "CEA", 100, "b"))
    one(None, c.Transfer(ids["clearing"], ids["bc"], "CNY", 1_000_000))
    one("sell", c.CreateHold("order", ids["sh"], ids["clearing"], "CEA", 10))
    one("buy", c.CreateHold("order", ids["bc"], ids["clearing"], "CNY", 60_060))  # 10 at 60.00 + 0.1 % fee
    s.forget_journal()
    return s, ids


def _trade(ids: dict[str, int], *extra: c.Leg) -> c.Event:
    """4 units at 55.00 (limit 60.00): seller's units, buyer's cash and fee, the excess trimmed, a T+1 lock."""
    return c.Event("trade", (
        c.PostHold(ids["sell"], 4, keep_remainder=True), c.Transfer(ids["clearing"], ids["bh"], "CEA", 4),
        c.PostHold(ids["buy"], 22_000 + 22, keep_remainder=True), c.TrimHold(ids["buy"], 36_000 + 58 - 22),
        c.Transfer(ids["clearing"], ids["sc"], "CNY", 22_000), c.Transfer(ids["clearing"], ids["fees"], "CNY", 22),
        c.CreateHold("t1", ids["bh"], ids["clearing"], "CEA", 4), *extra))


def test_a_trade_is_one_entry_whose_legs_all_apply_or_none() -> None:
    s, ids = _market()
    before, head = state_rows(s), s.head
    # Refused on its last leg (more than the buyer's hold): nothing of the six legs before it stays.
    with pytest.raises(Rejection) as refused:
        s.apply(c.Request("exchange:X", _trade(ids, c.PostHold(ids["buy"], 10**9)), "X:trade:1:0"), TS)
    assert refused.value.code == "amount_exceeds_hold"
    assert state_rows(s) == before and s.head == head
    # Refused in the middle (the seller's units frozen under the order hold are still encumbered, but a
    # second post of the whole sell hold exceeds it): the same.
    with pytest.raises(Rejection):
        s.apply(c.Request("exchange:X", c.Event("trade", (c.PostHold(ids["sell"], 4, True),
                                                          c.PostHold(ids["sell"], 7, True)))), TS)
    assert state_rows(s) == before and s.head == head
    entry = s.apply(c.Request("exchange:X", _trade(ids), "X:trade:1:0", {"trade_id": 1}), TS)
    assert entry.seq == head.seq + 1 and s.head.seq == head.seq + 1  # one entry for all seven legs
    assert entry.leaf.startswith(DOMAIN_TAG_V2) and entry.type == "event"
    body = decode_entry(entry.leaf)["body"]
    assert body["kind"] == "trade" and [leg["type"] for leg in body["legs"]] == [
        "hold.post", "transfer", "hold.post", "hold.trim", "transfer", "transfer", "hold.create"]
    assert body["legs"][3]["body"]["released"] == 60_060 - 22_022 - 36_036
    # The buyer's available is exact: paid 220.22, holds 360.36 for the 6 units left at 60.00 and their fee.
    assert s.balance(ids["bc"], "CNY").available == 1_000_000 - 22_022 - 36_036
    assert s.holds[entry.seq].kind == "t1" and s.holds[entry.seq].amount == 4  # the lock's id is the entry's seq
    assert s.check_invariants() == []


@pytest.mark.parametrize("legs", [
    (),
    (c.Retire(4, 5, "CEA", 1, "voluntary", "x"),),
    (c.OpenAccount("x", "cash"),),
    (c.Event("inner", (c.VoidHold(1),)),),
    (c.CreateHold("t1", 1, 2, "CEA", 1), c.CreateHold("t1", 1, 2, "CEA", 1)),
])
def test_an_event_is_movements_only(legs: tuple[Any, ...]) -> None:
    s, _ = _market()
    before = state_rows(s)
    with pytest.raises(Rejection) as refused:
        s.apply(c.Request("op", c.Event("trade", legs)), TS)
    assert refused.value.code == "invalid_event" and state_rows(s) == before


def test_trim_releases_only_what_is_held_above_keep() -> None:
    s, ids = _market()
    e = s.apply(c.Request("op", c.TrimHold(ids["buy"], 70_000)), TS)  # holds less than that: nothing to give
    assert decode_entry(e.leaf)["body"] == {"hold": ids["buy"], "keep": 70_000, "released": 0, "remaining": 60_060}
    s.apply(c.Request("op", c.TrimHold(ids["sell"], 3)), TS)  # units: 7 come back free, 3 stay held
    assert s.balance(ids["sh"], "CEA").available == 97 and s.holds[ids["sell"]].pending == 3
    for bad, code in ((c.TrimHold(ids["sell"], -1), "invalid_amount"),
                      (c.TrimHold(ids["sell"], True), "invalid_amount"), (c.TrimHold(999, 1), "unknown_hold")):
        with pytest.raises(Rejection) as refused:
            s.apply(c.Request("op", bad), TS)  # type: ignore[arg-type]
        assert refused.value.code == code
    freeze = s.apply(c.Request("court", c.CreateHold("freeze", ids["sh"], ids["court"], "CEA", 5)), TS).seq
    with pytest.raises(Rejection) as refused:  # a court's freeze is lifted or deducted, never trimmed
        s.apply(c.Request("op", c.TrimHold(freeze, 1)), TS)
    assert refused.value.code == "invalid_hold_kind"
    s.apply(c.Request("op", c.TrimHold(ids["sell"], 0)), TS)  # to nothing: voided
    assert s.holds[ids["sell"]].state == "voided" and s.balance(ids["sh"], "CEA").available == 95  # 5 frozen
    assert s.check_invariants() == []


def test_version_2_known_answer_vectors() -> None:
    data = ew.load()
    got = ew.record(ew.build(data["seed"]))
    assert got == data
    leaves = [(bytes.fromhex(leaf), h) for g in data["groups"] for leaf, h in
              zip(g.get("leaves", ()), [x for x in g.get("entries", ())], strict=False)]
    assert len(leaves) > 50
    for leaf, h in leaves:
        assert sha256(leaf).hex() == h and decode_entry(leaf)["v"] == 2


def test_a_mixed_log_replays_to_the_same_state_hash() -> None:
    data = ew.load()
    w = ew.build(data["seed"])
    entries = [e for out in w.outcomes if not isinstance(out, Rejection) for e in out]
    assert {e.leaf[:13] for e in entries} == {DOMAIN_TAG, DOMAIN_TAG_V2}
    fresh = LedgerState()
    for e in entries:  # what the verifier does: rebuild each request from the stored bytes and metadata
        assert fresh.apply(request_of(decode_entry(e.leaf), e.meta), e.ts).leaf == e.leaf
        fresh.forget_journal()
    assert (fresh.head.hash.hex(), state_digest(fresh)) == (data["final"]["head_hash"], data["final"]["state"])
    assert fresh.check_invariants() == []


def test_the_writer_and_the_verifier_on_a_mixed_log(db_url: str) -> None:
    data = ew.load()
    w = ew.build(data["seed"])
    dsn = asyncpg_dsn(db_url)

    async def run() -> list[Any]:
        now = [0]
        writer = LedgerWriter(dsn, clock=lambda: now[0], max_batch=16)
        await writer.start()
        got: list[Any] = []
        try:
            for ts, group in w.groups:
                now[0] = ts
                try:
                    got.append([e.hash.hex() for e in await writer.submit_linked(group)])
                except Rejection as rej:
                    got.append(rej.code)
        finally:
            await writer.stop()
        return got

    got = asyncio.run(run())
    assert got == [g.get("entries", g.get("refused")) for g in data["groups"]]
    rows = asyncio.run(_db_rows(dsn))
    assert digest_rows(rows) == data["final"]["state"]
    report = asyncio.run(verify_database(dsn))
    assert report.ok, report.render()
