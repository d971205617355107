"""Judicial freezes in the ledger core: locks that may sit on pledges, deductions, and what they block."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import commands as c
from ledger.state import LedgerState, Rejection

U = "FCT-SM"


def world() -> tuple[LedgerState, dict[str, int]]:
    s = LedgerState()
    r = lambda cmd: s.apply(c.Request("op", cmd), 1)  # noqa: E731
    r(c.DefineInstrument(U, "forest_ticket", 0))
    ids = {"iss": r(c.OpenAccount("sys", "issuance")).seq, "sink": r(c.OpenAccount("sys", "retired")).seq}
    for n in ("owner", "buyer", "bank", "court"):
        ids[n] = r(c.OpenAccount(n, "holding" if n != "bank" else "escrow")).seq
    r(c.IssueBatch(ids["iss"], ids["owner"], U, 100, "b1"))
    return s, ids


def ap(s: LedgerState, cmd: c.Command, ts: int = 5) -> int:
    return s.apply(c.Request("op", cmd), ts).seq


def code(s: LedgerState, cmd: c.Command) -> str:
    with pytest.raises(Rejection) as e:
        s.apply(c.Request("op", cmd), 5)
    return e.value.code


def test_freeze_on_top_of_a_pledge_blocks_enforcement_but_not_release() -> None:
    s, i = world()
    pledge = ap(s, c.CreateHold("pledge", i["owner"], i["bank"], U, 60))
    assert s.balance(i["owner"], U).available == 40
    # Frozen: the 40 free units first, then 20 of the pledged ones; nothing is counted twice.
    freeze = ap(s, c.CreateHold("freeze", i["owner"], i["court"], U, 60))
    assert s.balance(i["owner"], U).available == 0 and s.balance(i["owner"], U).pending_out == 100
    assert code(s, c.Transfer(i["owner"], i["buyer"], U, 1)) == "insufficient_available"
    assert code(s, c.CreateHold("pledge", i["owner"], i["bank"], U, 1)) == "insufficient_available"
    assert code(s, c.Retire(i["owner"], i["sink"], U, 1, "voluntary", "x")) == "insufficient_available"
    assert code(s, c.PostHold(pledge)) == "frozen"  # no enforcement while a court holds the units
    assert code(s, c.PostHold(freeze)) == "pledged"  # no deduction of pledged units
    ap(s, c.VoidHold(pledge))  # the bank releases: the units stay frozen
    assert s.balance(i["owner"], U).available == 40
    ap(s, c.PostHold(freeze))  # deduction (扣划) to the court's account
    assert s.balance(i["court"], U).posted == 60 and s.balance(i["owner"], U).posted == 40
    assert s.check_invariants() == []


def test_a_deduction_takes_the_free_frozen_units_and_keeps_the_rest_frozen() -> None:
    s, i = world()
    pledge = ap(s, c.CreateHold("pledge", i["owner"], i["bank"], U, 60))  # 1-60
    freeze = ap(s, c.CreateHold("freeze", i["owner"], i["court"], U, 70))  # 61-100 free, 1-30 pledged
    assert code(s, c.PostHold(freeze, 41, keep_remainder=True)) == "pledged"  # only 40 are free
    ap(s, c.PostHold(freeze, 25, keep_remainder=True))  # the lowest free frozen ones: 61-85
    assert [(b.start, b.end, b.hold, b.frozen_by) for b in s.blocks[(i["owner"], U)]] == [
        (1, 30, pledge, freeze), (31, 60, pledge, None), (86, 100, None, freeze)]
    assert s.holds[freeze].pending == 45 and s.balance(i["court"], U).posted == 25
    assert code(s, c.PostHold(pledge)) == "frozen"  # the pledge itself is still posted only by the service
    ap(s, c.PostHold(freeze, 15, keep_remainder=True))  # the rest of the free part
    assert s.holds[freeze].pending == 30 and code(s, c.PostHold(freeze, 1, keep_remainder=True)) == "pledged"
    assert s.check_invariants() == []


def test_unfreeze_and_partial_deduction() -> None:
    s, i = world()
    f = ap(s, c.CreateHold("freeze", i["owner"], i["court"], U, 30, ((11, 40),)))
    assert [(b.start, b.end, b.frozen_by) for b in s.blocks[(i["owner"], U)]] == [
        (1, 10, None), (11, 40, f), (41, 100, None)]
    ap(s, c.PostHold(f, 12))
    assert s.balance(i["court"], U).posted == 12
    assert all(b.frozen_by is None for b in s.blocks[(i["owner"], U)])  # the rest is unfrozen
    f2 = ap(s, c.CreateHold("freeze", i["owner"], i["court"], U, 88))
    assert code(s, c.CreateHold("freeze", i["owner"], i["court"], U, 1)) == "insufficient_available"
    ap(s, c.VoidHold(f2))
    assert [(b.start, b.end) for b in s.blocks[(i["owner"], U)]] == [(1, 10), (23, 100)]
    assert s.check_invariants() == []


ops = st.lists(st.one_of(
    st.tuples(st.sampled_from(["pledge", "order", "freeze"]), st.integers(1, 50)),
    st.tuples(st.sampled_from(["post", "void"]), st.integers(0, 20), st.one_of(st.none(), st.integers(1, 50))),
    st.tuples(st.sampled_from(["transfer", "retire"]), st.integers(1, 50)),
), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_random_streams_keep_invariants_and_frozen_units_never_move(sequence: list[tuple]) -> None:
    s, i = world()
    holds: list[int] = []
    for op in sequence:
        kind = op[0]
        if kind in ("pledge", "order", "freeze"):
            dest = {"pledge": i["bank"], "order": i["buyer"], "freeze": i["court"]}[kind]
            cmd: c.Command = c.CreateHold(kind, i["owner"], dest, U, op[1])
        elif kind in ("post", "void"):
            if not holds:
                continue
            h = holds[op[1] % len(holds)]
            cmd = c.PostHold(h, op[2]) if kind == "post" else c.VoidHold(h)
        elif kind == "transfer":
            cmd = c.Transfer(i["owner"], i["buyer"], U, op[1])
        else:
            cmd = c.Retire(i["owner"], i["sink"], U, op[1], "voluntary", "x")
        frozen_before = {(b.start, b.end, b.frozen_by) for b in s.blocks.get((i["owner"], U), []) if b.frozen_by}
        before = copy.deepcopy((s.balances, s.blocks, s.holds, s.head))
        try:
            e = s.apply(c.Request("op", cmd), 5)
        except Rejection:
            assert copy.deepcopy((s.balances, s.blocks, s.holds, s.head)) == before
            continue
        if kind in ("pledge", "order", "freeze"):
            holds.append(e.seq)
        assert s.check_invariants() == []
        # Frozen serials stay with the owner unless their own freeze is posted (deducted) or voided.
        owner_now = {(b.start, b.end) for b in s.blocks.get((i["owner"], U), [])}
        for start, end, f in frozen_before:
            if s.holds[f].state == "pending":
                assert any(a <= start and end <= z for a, z in owner_now), "a frozen unit moved"


def test_freeze_over_free_and_pledged_units_records_sorted_serials_and_replays() -> None:
    """Found by the pledge work: free units (61-100) are frozen before pledged ones (1-30)."""
    from ledger.encoding import decode_entry
    from ledger.replay import request_of

    s, i = world()
    ap(s, c.CreateHold("pledge", i["owner"], i["bank"], U, 60))
    entry = s.apply(c.Request("op", c.CreateHold("freeze", i["owner"], i["court"], U, 70)), 6)
    import json

    assert json.loads(entry.meta)["serials"] == [[1, 30], [61, 100]]
    # Replaying the entry from its bytes on a fresh state reproduces it exactly.
    fresh, _ = world()
    ap(fresh, c.CreateHold("pledge", i["owner"], i["bank"], U, 60))
    again = fresh.apply(request_of(decode_entry(entry.leaf), entry.meta), 6)
    assert again.leaf == entry.leaf


def test_named_range_across_block_edges() -> None:
    s, i = world()
    ap(s, c.IssueBatch(i["iss"], i["owner"], U, 50, "b2"))  # serials 101-150: a second batch, adjacent
    ap(s, c.CreateHold("pledge", i["owner"], i["bank"], U, 10, ((41, 50),)))
    # 91-110 spans two batches: allowed, split at the edge.
    e = s.apply(c.Request("op", c.Transfer(i["owner"], i["buyer"], U, 20, ((91, 110),))), 7)
    import json

    assert json.loads(e.meta)["serials"] == [[91, 100], [101, 110]]
    # 35-45 runs into pledged units: refused.
    assert code(s, c.Transfer(i["owner"], i["buyer"], U, 11, ((35, 45),))) == "serials_not_available"
    assert s.check_invariants() == []


def test_a_pledge_under_a_freeze_can_be_extended() -> None:
    s, i = world()
    pledge = ap(s, c.CreateHold("pledge", i["owner"], i["bank"], U, 60, (), 100), ts=5)
    ap(s, c.CreateHold("freeze", i["owner"], i["court"], U, 100), ts=6)
    ap(s, c.AmendHold(pledge, 500), ts=50)  # extended while frozen: the units never leave the pledge
    assert s.holds[pledge].expires_at == 500 and s.holds[pledge].state == "pending"
    assert code(s, c.AmendHold(pledge, 40)) == "invalid_expiry"
    assert s.check_invariants() == []
