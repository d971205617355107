"""Property tests: the continuous book against the reference model on random command streams."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from matching_reference import ReferenceBook

from matching.book import ContinuousBook
from matching.commands import BUY, SELL, Cancel, Halt, NewOrder, Reduce, Resume
from matching.rules import MarketRules

ACCOUNTS = ("a", "b", "c", "d")

# One op = (selector, a, b, c, d, e): the selector picks the command kind with fixed weights and the
# other draws fill its fields, scaled to the market's tick and lot in build() so that most orders
# are valid and the interesting paths (crossing, STP, partial fills, cancels of live orders) dominate.
op = st.tuples(
    st.integers(0, 99),
    st.integers(0, 1_000),
    st.integers(0, 1_000),
    st.integers(0, 1_000),
    st.integers(0, 1_000),
    st.integers(0, 1_000),
)
rules_st = st.sampled_from(
    (
        MarketRules(band_bps=1000, max_qty=50),
        MarketRules(tick=2, lot=3, band_bps=1000, min_qty=3, max_qty=45, best_n=2),
        MarketRules(band_bps=1000, stp="cancel_maker", best_n=1),
    )
)
STPS = (None,) * 5 + ("cancel_taker", "cancel_maker", "cancel_both")
TIFS = ("day",) * 8 + ("ioc", "fok")


def build(ops: list[tuple[int, ...]], rules: MarketRules) -> list[Any]:
    """Turns abstract ops into commands; ids increase, cancels/reduces pick earlier ids."""
    commands: list[Any] = []
    issued: list[tuple[int, str]] = []
    next_id = 0
    tick, lot = rules.tick, rules.lot
    for kind, a, b, c, d, e in ops:
        if kind < 62:  # new order
            side = BUY if a % 2 else SELL
            # Prices straddle 100 (the reference; the band is 90..110) so that about a third cross.
            ticks = 100 // tick + (b % 9) - (3 if side == BUY else 6) + (0 if side == BUY else 1)
            price = ticks * tick
            qty = (1 + c % 12) * lot
            if kind < 3:  # a few malformed ones: off tick, off lot, out of band, too big
                price, qty = [(price + 1, qty), (price, qty + 1), (price * 2, qty), (price, 20 * lot * 10)][
                    d % 4
                ]
            otype = "market" if d % 11 == 0 else "limit"
            tif = TIFS[e % len(TIFS)]
            stp = STPS[(d // 11) % len(STPS)]
            acct = ACCOUNTS[(a // 2) % len(ACCOUNTS)]
            if kind == 61 and issued:
                oid = issued[-1][0]  # reuse an id: duplicate or not increasing
            else:
                next_id += 1
                oid = next_id
            issued.append((oid, acct))
            commands.append(
                NewOrder(oid, acct, side, 0 if otype == "market" else price, qty, otype, tif, stp)
            )
        elif kind < 85 and issued:  # cancel, mostly of recent orders
            oid, acct = issued[-1 - a % min(len(issued), 8)] if b % 4 else issued[a % len(issued)]
            commands.append(Cancel(oid, None if c % 5 else (acct if c % 2 else "zz")))
        elif kind < 95 and issued:
            oid, _ = issued[-1 - a % min(len(issued), 8)]
            commands.append(Reduce(oid, (1 + b % 10) * lot))
        elif kind < 96:
            commands.append(Halt("test"))
        else:
            commands.append(Resume())
    return commands


def normal(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rejections compare by code; the message is free text."""
    return [e[:3] if e[0] == "rejected" else e for e in events]


def check_book_invariants(book: ContinuousBook) -> None:
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is None or ask is None or bid < ask, f"crossed book {bid} >= {ask}"
    for side in (BUY, SELL):
        orders = book.open_orders(side)
        keys = [(-o["price"] if side == BUY else o["price"], o["order_id"]) for o in orders]
        # price priority, then time priority (ids increase with arrival)
        assert keys == sorted(keys)
        depth = book.depth(10_000)[side]
        totals: dict[int, int] = defaultdict(int)
        for o in orders:
            assert o["qty"] > 0
            totals[o["price"]] += o["qty"]
        assert [(p, q) for p, q, _ in depth] == sorted(totals.items(), reverse=side == BUY)


@settings(max_examples=300, deadline=None)
@given(rules=rules_st, ops=st.lists(op, min_size=40, max_size=200))
def test_book_matches_reference_model(rules: MarketRules, ops: list[tuple[int, ...]]) -> None:
    band = rules.band(100)
    book = ContinuousBook(rules, reference=100)
    ref = ReferenceBook(
        rules.tick, rules.lot, band, rules.min_qty, rules.max_qty_bound, rules.best_n, rules.stp
    )
    submitted: dict[int, int] = {}
    settled: dict[int, int] = defaultdict(int)  # filled + cancelled + reduced away, per order
    for seq, command in enumerate(build(ops, rules), 1):
        events = book.process(seq, seq, command)
        assert normal(events) == ref.process(seq, seq, command), command
        for e in events:
            kind = e[0]
            if kind == "accepted":
                submitted[e[1]] = e[7]
            elif kind == "trade":
                settled[e[8]] += e[6]
                settled[e[10]] += e[6]
            elif kind == "cancelled":
                settled[e[1]] += e[3]
            elif kind == "reduced":
                settled[e[1]] += e[3] - e[4]
        check_book_invariants(book)
        for side in (BUY, SELL):
            assert [(p, q) for p, q, _ in book.depth(10_000)[side]] == ref.book_levels(side)
    # Quantity conservation: every accepted lot is filled, cancelled, reduced away or still resting.
    for oid, qty in submitted.items():
        resting = book.order(oid)
        assert qty == settled[oid] + (resting["qty"] if resting else 0), oid


@settings(max_examples=80, deadline=None)
@given(rules=rules_st, ops=st.lists(op, min_size=30, max_size=150), cut=st.integers(0, 10_000))
def test_snapshot_plus_replay_gives_the_same_state_hash(
    rules: MarketRules, ops: list[tuple[int, ...]], cut: int
) -> None:
    commands = build(ops, rules)
    cut %= len(commands) + 1
    whole = ContinuousBook(rules, reference=100)
    head = ContinuousBook(rules, reference=100)
    events_whole = [whole.process(i, i, c) for i, c in enumerate(commands, 1)]
    for i, c in enumerate(commands[:cut], 1):
        head.process(i, i, c)
    snap = json.loads(json.dumps(head.snapshot()))  # as it would come back from the journal
    resumed = ContinuousBook.restore(snap)
    assert resumed.state_hash() == head.state_hash()
    events_tail = [resumed.process(i, i, c) for i, c in enumerate(commands[cut:], cut + 1)]
    # Replaying what the snapshot already covers is refused and changes nothing.
    if cut:
        assert resumed.process(cut, cut, commands[cut - 1])[0][2] == "stale_sequence"
    assert events_tail == events_whole[cut:]
    assert resumed.state_hash() == whole.state_hash()
    assert resumed.snapshot() == whole.snapshot()
