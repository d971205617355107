"""A view of the ledger is freed as soon as its last reference goes, without the cyclic garbage collector.

The writer builds one `LedgerState` per batch and drops it after the commit. A view that referred to itself
(its undo journal naming the state) was a reference cycle: each batch's view, with its journal, entries and
balances, waited for a GC pass, and those passes cost the writer about a fifth of its CPU (issue #16).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from ledger import commands as c
from ledger.state import LedgerState, Rejection


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _used_view() -> weakref.ref[LedgerState]:
    s = LedgerState()
    s.apply(c.Request("op", c.DefineInstrument("CNY", "currency", 2)), 1)
    s.apply(c.Request("op", c.DefineInstrument("FCT", "forest_ticket", 0)), 1)
    settle = s.apply(c.Request("op", c.OpenAccount("bank", "settlement")), 1).seq
    issuer = s.apply(c.Request("op", c.OpenAccount("registry", "issuance")), 1).seq
    a = s.apply(c.Request("op", c.OpenAccount("a", "cash")), 1).seq
    b = s.apply(c.Request("op", c.OpenAccount("b", "cash")), 1).seq
    ha = s.apply(c.Request("op", c.OpenAccount("a", "holding")), 1).seq
    hb = s.apply(c.Request("op", c.OpenAccount("b", "holding")), 1).seq
    s.apply(c.Request("op", c.Transfer(settle, a, "CNY", 1_000)), 2)
    s.apply(c.Request("op", c.IssueBatch(issuer, ha, "FCT", 100, "batch-1")), 2)
    s.apply_linked([c.Request("a", c.Transfer(a, b, "CNY", 10), "t1", {"memo": "x"}),
                    c.Request("a", c.Transfer(ha, hb, "FCT", 7), "t2")], 3)
    hold = s.apply(c.Request("a", c.CreateHold("order", ha, hb, "FCT", 5)), 3).seq
    s.apply(c.Request("a", c.PostHold(hold, 2, keep_remainder=True)), 4)
    with pytest.raises(Rejection):  # refused: rolled back through the journal
        s.apply_linked([c.Request("a", c.Transfer(a, b, "CNY", 1)), c.Request("a", c.Transfer(a, b, "CNY", 10**6))], 5)
    s.forget_journal()
    s.apply(c.Request("a", c.Transfer(a, b, "CNY", 1)), 6)  # journal kept, as the writer keeps it for a batch
    return weakref.ref(s)


def test_a_used_view_is_freed_by_reference_counting_alone(no_gc: None) -> None:
    ref = _used_view()
    assert ref() is None, "the view is kept alive by a reference cycle: only the cyclic GC would free it"
