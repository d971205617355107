"""Property tests of the ledger's state machine against a deliberately simple model.

Random sequences of issue / transfer / hold / post / void / expire / retire: the state machine must
accept exactly what the model accepts, agree with the model's balances, keep every invariant
(conservation per batch, no overdraft, encumbrances = pending, disjoint serial blocks), resolve each
hold at most once, and leave no trace when it refuses.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import commands as c
from ledger.state import LedgerState, Rejection

UNITS, CASH = "FCT-SM", "CNY"
HOLDERS = 3


@dataclass
class Model:
    posted: dict[tuple[int, str], int] = field(default_factory=dict)
    pending: dict[tuple[int, str], int] = field(default_factory=dict)
    holds: dict[int, tuple[int, int, str, int, int | None]] = field(default_factory=dict)  # id -> d, c, i, amt, exp
    resolved: set[int] = field(default_factory=set)

    def avail(self, acc: int, inst: str) -> int:
        return self.posted.get((acc, inst), 0) - self.pending.get((acc, inst), 0)

    def move(self, d: int, cr: int, inst: str, amt: int) -> None:
        self.posted[(d, inst)] = self.posted.get((d, inst), 0) - amt
        self.posted[(cr, inst)] = self.posted.get((cr, inst), 0) + amt


def world() -> tuple[LedgerState, dict[str, int]]:
    s = LedgerState()
    r = lambda cmd: s.apply(c.Request("op", cmd), 1)  # noqa: E731
    r(c.DefineInstrument(UNITS, "forest_ticket", 0))
    r(c.DefineInstrument(CASH, "currency", 2))
    ids = {"issuance": r(c.OpenAccount("sys", "issuance")).seq, "sink": r(c.OpenAccount("sys", "retired")).seq,
           "settlement": r(c.OpenAccount("sys", "settlement")).seq}
    for i in range(HOLDERS):
        ids[f"h{i}"] = r(c.OpenAccount(f"p{i}", "holding")).seq
        ids[f"c{i}"] = r(c.OpenAccount(f"p{i}", "cash")).seq
    return s, ids


ops = st.lists(
    st.one_of(
        st.tuples(st.just("issue"), st.integers(0, HOLDERS - 1), st.integers(1, 60)),
        st.tuples(st.just("deposit"), st.integers(0, HOLDERS - 1), st.integers(1, 500)),
        st.tuples(st.just("transfer"), st.integers(0, HOLDERS - 1), st.integers(0, HOLDERS - 1),
                  st.integers(1, 80), st.booleans()),
        st.tuples(st.just("hold"), st.integers(0, HOLDERS - 1), st.integers(0, HOLDERS - 1), st.integers(1, 80),
                  st.booleans(), st.booleans()),
        st.tuples(st.just("post"), st.integers(0, 30), st.one_of(st.none(), st.integers(1, 80)), st.booleans()),
        st.tuples(st.just("void"), st.integers(0, 30)),
        st.tuples(st.just("expire"), st.integers(0, 30)),
        st.tuples(st.just("retire"), st.integers(0, HOLDERS - 1), st.integers(1, 80)),
    ),
    min_size=1,
    max_size=60,
)


def snapshot(s: LedgerState) -> tuple:
    return (copy.deepcopy(s.balances), copy.deepcopy(s.blocks), copy.deepcopy(s.holds), s.head,
            copy.deepcopy(s.instruments), copy.deepcopy(s.batches))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_state_machine_agrees_with_model_and_keeps_invariants(sequence: list[tuple]) -> None:
    s, ids = world()
    m = Model()
    hold_ids: list[int] = []
    ts = 10
    for op in sequence:
        ts += 1
        kind = op[0]
        expect_ok = True
        cmd: c.Command
        if kind == "issue":
            acc = ids[f"h{op[1]}"]
            cmd = c.IssueBatch(ids["issuance"], acc, UNITS, op[2], f"b{ts}")
        elif kind == "deposit":
            acc = ids[f"c{op[1]}"]
            cmd = c.Transfer(ids["settlement"], acc, CASH, op[2])
        elif kind == "transfer":
            inst = UNITS if op[4] else CASH
            pre = "h" if op[4] else "c"
            d, cr = ids[f"{pre}{op[1]}"], ids[f"{pre}{op[2]}"]
            cmd = c.Transfer(d, cr, inst, op[3])
            expect_ok = d != cr and m.avail(d, inst) >= op[3]
        elif kind == "hold":
            inst = UNITS if op[4] else CASH
            pre = "h" if op[4] else "c"
            d, cr = ids[f"{pre}{op[1]}"], ids[f"{pre}{op[2]}"]
            exp = ts + 5 if op[5] else None
            cmd = c.CreateHold("order", d, cr, inst, op[3], (), exp)
            expect_ok = d != cr and m.avail(d, inst) >= op[3]
        elif kind in ("post", "void", "expire"):
            if not hold_ids:
                continue
            h = hold_ids[op[1] % len(hold_ids)]
            d, cr, inst, amt, exp = m.holds[h]
            expect_ok = h not in m.resolved
            if kind == "post":
                cmd = c.PostHold(h, op[2], keep_remainder=op[3])
                expect_ok = expect_ok and (op[2] or amt) <= amt and (exp is None or ts < exp)
            elif kind == "void":
                cmd = c.VoidHold(h)
            else:
                cmd = c.ExpireHold(h)
                expect_ok = expect_ok and exp is not None and ts >= exp
        else:  # retire
            acc = ids[f"h{op[1]}"]
            cmd = c.Retire(acc, ids["sink"], UNITS, op[2], "voluntary", "x")
            expect_ok = m.avail(acc, UNITS) >= op[2]

        before = snapshot(s)
        try:
            entry = s.apply(c.Request("op", cmd), ts)
        except Rejection as rej:
            assert not expect_ok, f"{op} refused ({rej.code}) but the model accepts it"
            assert snapshot(s) == before, "a refused command left a trace"
            if kind in ("post", "void", "expire") and h in m.resolved:
                assert rej.code == "hold_already_resolved"
            continue
        assert expect_ok, f"{op} accepted but the model refuses it"
        # Mirror in the model.
        if kind == "issue":
            m.move(ids["issuance"], acc, UNITS, op[2])
        elif kind == "deposit":
            m.move(ids["settlement"], acc, CASH, op[2])
        elif kind == "transfer":
            m.move(d, cr, inst, op[3])
        elif kind == "hold":
            m.pending[(d, inst)] = m.pending.get((d, inst), 0) + op[3]
            m.holds[entry.seq] = (d, cr, inst, op[3], exp)
            hold_ids.append(entry.seq)
        elif kind == "post" and op[3] and (op[2] or amt) < amt:
            # Partial post that keeps the rest pending.
            m.pending[(d, inst)] -= op[2]
            m.holds[h] = (d, cr, inst, amt - op[2], exp)
            m.move(d, cr, inst, op[2])
        elif kind in ("post", "void", "expire"):
            m.pending[(d, inst)] -= amt
            m.resolved.add(h)
            if kind == "post":
                m.move(d, cr, inst, op[2] or amt)
        else:
            m.move(acc, ids["sink"], UNITS, op[2])
        problems = s.check_invariants()
        assert problems == [], problems
    for (acc, inst), posted in m.posted.items():
        assert s.balance(acc, inst).posted == posted
        assert s.balance(acc, inst).pending_out == m.pending.get((acc, inst), 0)
    # Every unit ever issued is somewhere, exactly once: holders + sink == supply.
    supply = -s.balance(ids["issuance"], UNITS).posted
    assert sum(b.size for bl in s.blocks.values() for b in bl) == supply


def test_named_serials_split_and_merge_back() -> None:
    s, ids = world()
    a, b = ids["h0"], ids["h1"]
    s.apply(c.Request("op", c.IssueBatch(ids["issuance"], a, UNITS, 100, "b1")), 2)
    s.apply(c.Request("op", c.Transfer(a, b, UNITS, 10, ((41, 50),))), 3)
    assert [(x.start, x.end) for x in s.blocks[(a, UNITS)]] == [(1, 40), (51, 100)]
    hold = s.apply(c.Request("op", c.CreateHold("pledge", a, b, UNITS, 20, ((61, 80),))), 4).seq
    assert [(x.start, x.end, x.hold) for x in s.blocks[(a, UNITS)]] == [(1, 40, None), (51, 60, None),
                                                                          (61, 80, hold), (81, 100, None)]
    s.apply(c.Request("op", c.VoidHold(hold)), 5)
    # Released units merge back with their neighbours.
    assert [(x.start, x.end) for x in s.blocks[(a, UNITS)]] == [(1, 40), (51, 100)]
    s.apply(c.Request("op", c.Transfer(b, a, UNITS, 10)), 6)
    assert [(x.start, x.end) for x in s.blocks[(a, UNITS)]] == [(1, 100)]
    try:
        s.apply(c.Request("op", c.Transfer(a, b, UNITS, 5, ((98, 102),))), 7)
        raise AssertionError("serials beyond the holding must be refused")
    except Rejection as rej:
        assert rej.code == "serials_not_available"
    assert s.check_invariants() == []


def test_retired_sink_is_never_debited() -> None:
    s, ids = world()
    s.apply(c.Request("op", c.IssueBatch(ids["issuance"], ids["h0"], UNITS, 10, "b1")), 2)
    s.apply(c.Request("op", c.Retire(ids["h0"], ids["sink"], UNITS, 10, "compliance", "x")), 3)
    for cmd in (c.Transfer(ids["sink"], ids["h0"], UNITS, 1),
                c.CreateHold("order", ids["sink"], ids["h0"], UNITS, 1),
                c.Transfer(ids["h0"], ids["sink"], UNITS, 1)):
        try:
            s.apply(c.Request("op", cmd), 4)
            raise AssertionError(f"{cmd} must be refused")
        except Rejection as rej:
            assert rej.code in ("retired_final", "use_retire", "insufficient_available")
    assert all(b.retired_seq is not None for b in s.blocks[(ids["sink"], UNITS)])


def test_linked_group_is_all_or_nothing() -> None:
    s, ids = world()
    s.apply(c.Request("op", c.IssueBatch(ids["issuance"], ids["h0"], UNITS, 10, "b1")), 2)
    before = snapshot(s)
    try:
        s.apply_linked([c.Request("op", c.Transfer(ids["h0"], ids["h1"], UNITS, 10)),
                        c.Request("op", c.Transfer(ids["c1"], ids["c0"], CASH, 100))], 3)  # buyer has no cash
        raise AssertionError("must fail")
    except Rejection as rej:
        assert rej.code == "insufficient_available"
    assert snapshot(s) == before
