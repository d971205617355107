"""One-way auctions (单向竞价): the phase machine, bid rules, extensions and the three allocations."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import reasons as R
from matching.auction import AuctionHouse, allocate, winners
from matching.commands import (
    PAY_AS_BID,
    TOP_PERCENT,
    UNIFORM_PRICE,
    Allocate,
    Announce,
    Bid,
    CancelAuction,
    CloseAuction,
    Halt,
    OpenBidding,
    OpenRegistration,
    Register,
    WithdrawBid,
)
from matching.rules import MarketRules

START, STEP = 2_100_000, 50_000  # 宁夏 2025: 21,000 CNY/t, step 500 CNY/t, in fen


class House:
    def __init__(self) -> None:
        self.engine = AuctionHouse()
        self.seq = 0
        self.next_id = 0

    def at(self, ts: int, command: Any) -> list[tuple[Any, ...]]:
        self.seq += 1
        return self.engine.process(self.seq, ts, command)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def open(self, bidders: tuple[str, ...] = ("A", "B", "C", "D"), end: int = 100, **terms: Any) -> int:
        aid = self.new_id()
        terms = {"qty": 100, "min_price": START, "increment": STEP, "deposit": 1_000, **terms}
        assert self.at(0, Announce(aid, "reserve", **terms))[0][0] == "auction_announced"
        assert self.at(1, OpenRegistration(aid)) == [("auction_phase", aid, "registration", None)]
        for b in bidders:
            assert self.at(2, Register(aid, b, 1_000))[0][0] == "registered"
        assert self.at(3, OpenBidding(aid, end)) == [("auction_phase", aid, "bidding", end)]
        return aid

    def bid(self, aid: int, bidder: str, price: int, qty: int, ts: int = 10) -> list[tuple[Any, ...]]:
        return self.at(ts, Bid(aid, self.new_id(), bidder, price, qty))

    def finish(self, aid: int, ts: int = 1_000) -> list[tuple[Any, ...]]:
        assert self.at(ts, CloseAuction(aid))[0][2] == "closed"
        return self.at(ts, Allocate(aid))


def code(events: list[tuple[Any, ...]]) -> str:
    assert len(events) == 1 and events[0][0] == "rejected", events
    return events[0][2]


def fills(events: list[tuple[Any, ...]]) -> list[tuple[str, int, int]]:
    return [(e[3], e[4], e[5]) for e in events if e[0] == "allocated"]


def test_pay_as_bid_by_price_then_time() -> None:
    h = House()
    aid = h.open(max_bids_per_bidder=2)
    h.bid(aid, "A", START, 50)
    h.bid(aid, "B", START + 2 * STEP, 40)
    h.bid(aid, "C", START + STEP, 30)
    h.bid(aid, "D", START + STEP, 30)  # same price as C, later
    ev = h.finish(aid)
    assert fills(ev) == [("B", START + 2 * STEP, 40), ("C", START + STEP, 30), ("D", START + STEP, 30)]
    first = next(e for e in ev if e[0] == "trade")
    assert (first[1], first[9], first[11], first[5], first[6]) == (
        "auction",
        "reserve",
        "B",
        START + 2 * STEP,
        40,
    )
    assert ("auction_result", aid, 100, 0, START + STEP) in ev


def test_uniform_price_charges_the_lowest_winning_bid_and_fills_the_margin_partly() -> None:
    h = House()
    aid = h.open(allocation=UNIFORM_PRICE)
    h.bid(aid, "A", START + 3 * STEP, 60)
    h.bid(aid, "B", START + STEP, 60)
    h.bid(aid, "C", START, 60)
    ev = h.finish(aid)
    assert fills(ev) == [("A", START + STEP, 60), ("B", START + STEP, 40)]
    assert ("auction_result", aid, 100, 0, START + STEP) in ev


def test_top_percent_of_bidders_win_at_their_own_price() -> None:
    h = House()
    aid = h.open(allocation=TOP_PERCENT, top_percent=50, qty=1_000)
    h.bid(aid, "A", START + STEP, 10)
    h.bid(aid, "B", START + 4 * STEP, 10)
    h.bid(aid, "C", START + 2 * STEP, 10)
    h.bid(aid, "D", START + 3 * STEP, 10)
    ev = h.finish(aid)
    assert fills(ev) == [("B", START + 4 * STEP, 10), ("D", START + 3 * STEP, 10)]
    assert ("auction_result", aid, 20, 980, START + 3 * STEP) in ev


@pytest.mark.parametrize(
    ("bidders", "percent", "expected"),
    [(8, 60, 5), (10, 70, 7), (5, 50, 3), (9, 50, 5), (6, 25, 2), (3, 34, 1), (4, 30, 1), (1, 30, 1), (7, 10, 1),
     (20, 70, 14), (0, 50, 0), (3, 100, 3)],
)
def test_top_percent_winners_are_rounded_half_up(bidders: int, percent: int, expected: int) -> None:
    """武义 2021: 取出价人的前70%(四舍五入); at least one winner when anyone bid."""
    assert winners(bidders, percent) == expected
    terms = Announce(1, "s", 1_000, 1, allocation=TOP_PERCENT, top_percent=percent)
    bids = [(i, (f"b{i}", 100 - i, 1)) for i in range(1, bidders + 1)]
    assert [f[1] for f in allocate(terms, bids)[0]] == [f"b{i}" for i in range(1, expected + 1)]


def test_bid_rules() -> None:
    h = House()
    aid = h.open(max_bids_per_bidder=2, cap_per_bidder=60, min_bid_qty=5)
    assert code(h.bid(aid, "A", START - STEP, 10)) == R.BID_BELOW_MINIMUM
    assert code(h.bid(aid, "A", START + 1, 10)) == R.BID_INCREMENT
    assert code(h.bid(aid, "Z", START, 10)) == R.BIDDER_NOT_REGISTERED
    assert code(h.bid(aid, "A", START, 4)) == R.QUANTITY_BELOW_MINIMUM
    assert code(h.bid(aid, "A", START, 101)) == R.QUANTITY_EXCEEDS_REMAINING
    assert code(h.bid(aid, "A", START, 61)) == R.BID_CAP_EXCEEDED
    assert h.bid(aid, "A", START, 40)[0][0] == "bid_accepted"
    assert raise_(h, aid, "A", START + STEP, 40)[0][0] == "bid_accepted"
    bid_id = h.next_id
    assert code(raise_(h, aid, "A", START + 2 * STEP, 40)) == R.TOO_MANY_BIDS
    assert code(h.at(20, WithdrawBid(aid, bid_id, "A"))) == R.BID_IRREVOCABLE
    assert code(raise_(h, aid, "A", START + 2 * STEP, 40, ts=100)) == R.AUCTION_NOT_OPEN  # the window ended at 100


def raise_(h: House, aid: int, bidder: str, price: int, qty: int, ts: int = 10) -> list[tuple[Any, ...]]:
    """A bid that replaces the bidder's standing bid, as the exchange sends it."""
    standing = [b for b in h.engine.auction(aid)["bids"] if b[1] == bidder]  # type: ignore[index]
    return h.at(ts, Bid(aid, h.new_id(), bidder, price, qty, standing[0][0] if standing else None))


def test_a_raise_replaces_the_standing_bid_and_ranks_by_the_time_of_the_final_bid() -> None:
    h = House()
    aid = h.open(max_bids_per_bidder=5)
    a1 = h.bid(aid, "A", START, 40)[0][2]
    h.bid(aid, "B", START + STEP, 40)
    ev = raise_(h, aid, "A", START + STEP, 40)
    a2 = ev[0][2]
    assert ev == [("bid_accepted", aid, a2, "A", START + STEP, 40), ("bid_replaced", aid, a1, "A", a2)]
    assert [b[1] for b in h.engine.auction(aid)["bids"]] == ["B", "A"]  # type: ignore[index]
    # B reached START + STEP first: it ranks ahead of A at the same price.
    assert fills(h.finish(aid)) == [("B", START + STEP, 40), ("A", START + STEP, 40)]


def test_raise_rules() -> None:
    h = House()
    aid = h.open(max_bids_per_bidder=3, cap_per_bidder=60)
    h.bid(aid, "A", START + STEP, 30)
    assert code(raise_(h, aid, "A", START + STEP, 40)) == R.BID_NOT_ABOVE_STANDING  # more quantity is no raise
    assert code(raise_(h, aid, "A", START, 30)) == R.BID_NOT_ABOVE_STANDING
    assert code(raise_(h, aid, "A", START + 2 * STEP, 20)) == R.RAISE_LOWERS_QUANTITY
    assert code(raise_(h, aid, "A", START + 2 * STEP, 61)) == R.BID_CAP_EXCEEDED  # the cap bounds the bid
    assert code(h.bid(aid, "A", START + 2 * STEP, 30)) == R.STANDING_BID_CHANGED  # sent as a first bid
    assert code(h.at(10, Bid(aid, h.new_id(), "B", START, 10, replaces=1))) == R.STANDING_BID_CHANGED
    assert raise_(h, aid, "A", START + 3 * STEP, 60)[0][0] == "bid_accepted"
    assert raise_(h, aid, "A", START + 4 * STEP, 60)[0][0] == "bid_accepted"  # the third bid: the last allowed
    assert code(raise_(h, aid, "A", START + 5 * STEP, 60)) == R.TOO_MANY_BIDS
    standing = [(b[1], b[2], b[3]) for b in h.engine.auction(aid)["bids"]]  # type: ignore[index]
    assert standing == [("A", START + 4 * STEP, 60)]


def test_top_percent_of_bidders_with_raises_each_win_once_at_their_final_price() -> None:
    """Issue #14: raises used to add bids, so one bidder took several shares and the next in rank none."""
    h = House()
    aid = h.open(bidders=tuple("ABCDE"), allocation=TOP_PERCENT, top_percent=60, max_bids_per_bidder=5, qty=100)
    for bidder, steps in (("A", 0), ("B", 1), ("C", 2), ("D", 3), ("E", 4)):
        h.bid(aid, bidder, START + steps * STEP, 30)
    for bidder, steps in (("A", 6), ("A", 9), ("B", 7), ("E", 5), ("A", 10)):
        assert raise_(h, aid, bidder, START + steps * STEP, 30)[0][0] == "bid_accepted"
    ev = h.finish(aid)
    # 60 % of 5 bidders = 3 winners: A (10 steps), B (7), E (5); C and D lose; 10 of 100 stay unsold.
    assert fills(ev) == [("A", START + 10 * STEP, 30), ("B", START + 7 * STEP, 30), ("E", START + 5 * STEP, 30)]
    assert ("auction_result", aid, 90, 10, START + 5 * STEP) in ev


def test_the_lot_minimum_governs_bids_and_the_market_size_rules_bound_the_lot() -> None:
    h = House()
    h.engine = AuctionHouse(MarketRules(lot=100, min_qty=1_000, max_qty=10_000))
    assert code(h.at(0, Announce(h.new_id(), "reserve", 900, START, STEP))) == R.QUANTITY_BELOW_MINIMUM
    assert code(h.at(0, Announce(h.new_id(), "reserve", 10_100, START, STEP))) == R.QUANTITY_ABOVE_MAXIMUM
    assert code(h.at(0, Announce(h.new_id(), "reserve", 5_000, START, STEP, min_bid_qty=150))) == R.INVALID_AUCTION
    aid = h.new_id()
    assert h.at(0, Announce(aid, "reserve", 5_000, START, STEP, min_bid_qty=100))[0][0] == "auction_announced"
    h.at(1, OpenRegistration(aid))
    h.at(2, Register(aid, "A", 0))
    h.at(3, OpenBidding(aid, 100))
    assert code(h.bid(aid, "A", START, 250)) == R.OFF_LOT
    assert h.bid(aid, "A", START, 300)[0][0] == "bid_accepted"  # below the market minimum, above the lot's


def test_revocable_bids_can_be_withdrawn_in_the_window() -> None:
    h = House()
    aid = h.open(irrevocable=False)
    h.bid(aid, "A", START, 40)
    bid_id = h.next_id
    assert code(h.at(20, WithdrawBid(aid, bid_id, "B"))) == R.UNKNOWN_BID
    assert h.at(20, WithdrawBid(aid, bid_id, "A")) == [("bid_withdrawn", aid, bid_id, "A", 40)]
    assert code(h.at(20, WithdrawBid(aid, bid_id, "A"))) == R.UNKNOWN_BID
    assert fills(h.finish(aid)) == []


def test_a_withdrawn_bid_leaves_no_standing_bid_and_still_counts() -> None:
    h = House()
    aid = h.open(irrevocable=False, max_bids_per_bidder=2)
    h.bid(aid, "A", START + STEP, 40)
    first = h.next_id
    raise_(h, aid, "A", START + 2 * STEP, 40)
    assert code(h.at(20, WithdrawBid(aid, first, "A"))) == R.UNKNOWN_BID  # replaced: no longer live
    h.at(20, WithdrawBid(aid, h.next_id, "A"))
    assert code(h.bid(aid, "A", START, 40, ts=30)) == R.TOO_MANY_BIDS  # two placed of two allowed
    assert fills(h.finish(aid)) == []


def test_timed_extension_rounds() -> None:
    h = House()
    aid = h.open(end=100, extension_window=10, extension_length=30, max_extensions=2)
    assert h.bid(aid, "A", START, 10, ts=50)[1:] == []  # not near the end
    assert h.bid(aid, "B", START, 10, ts=95)[1] == ("auction_extended", aid, 125, 1)
    assert code(h.at(110, CloseAuction(aid))) == R.AUCTION_STILL_OPEN
    assert h.bid(aid, "C", START, 10, ts=120)[1] == ("auction_extended", aid, 150, 2)
    assert len(h.bid(aid, "D", START, 10, ts=145)) == 1  # rounds used up
    assert code(h.bid(aid, "D", START, 10, ts=150)) == R.AUCTION_NOT_OPEN
    assert h.at(150, CloseAuction(aid)) == [("auction_phase", aid, "closed", 150)]


def test_phase_machine_and_registration() -> None:
    h = House()
    aid = h.new_id()
    h.at(0, Announce(aid, "reserve", 100, START, STEP, deposit=500))
    assert code(h.at(0, Announce(aid, "reserve", 100, START))) == R.DUPLICATE_AUCTION_ID
    assert code(h.at(1, Register(aid, "A", 500))) == R.REGISTRATION_CLOSED
    assert code(h.at(1, OpenBidding(aid, 100))) == R.AUCTION_WRONG_PHASE
    h.at(1, OpenRegistration(aid))
    assert code(h.at(2, Register(aid, "A", 499))) == R.DEPOSIT_INSUFFICIENT
    assert code(h.at(2, Register(aid, "reserve", 500))) == R.SELLER_CANNOT_BID
    h.at(2, Register(aid, "A", 500))
    assert code(h.at(2, Register(aid, "A", 500))) == R.ALREADY_REGISTERED
    assert code(h.bid(aid, "A", START, 10)) == R.AUCTION_NOT_OPEN
    assert code(h.at(5, OpenBidding(aid, 5))) == R.INVALID_AUCTION
    h.at(5, OpenBidding(aid, 50))
    assert code(h.at(6, Allocate(aid))) == R.AUCTION_WRONG_PHASE
    assert code(h.at(7, CloseAuction(aid))) == R.AUCTION_STILL_OPEN
    assert code(h.at(7, Allocate(999))) == R.UNKNOWN_AUCTION
    h.at(8, Halt("x"))
    assert code(h.bid(aid, "A", START, 10)) == R.MARKET_HALTED
    assert h.at(9, CancelAuction(aid, "withdrawn")) == [("auction_phase", aid, "cancelled", 50)]
    assert code(h.at(9, CancelAuction(aid))) == R.AUCTION_WRONG_PHASE


@pytest.mark.parametrize(
    ("terms", "reason"),
    [
        ({"qty": 0}, R.INVALID_QUANTITY),
        ({"min_price": 0}, R.INVALID_PRICE),
        ({"increment": 0}, R.INVALID_PRICE),
        ({"allocation": "dutch"}, R.INVALID_AUCTION),
        ({"top_percent": 0}, R.INVALID_AUCTION),
        ({"cap_per_bidder": 0}, R.INVALID_AUCTION),
        ({"min_bid_qty": 11}, R.INVALID_AUCTION),
        ({"min_bid_qty": 0}, R.INVALID_AUCTION),
        ({"extension_window": -1}, R.INVALID_AUCTION),
    ],
)
def test_inconsistent_terms_are_refused(terms: dict[str, Any], reason: str) -> None:
    full = {"qty": 10, "min_price": START, **terms}
    ev = AuctionHouse().process(1, 0, Announce(1, "s", **full))
    assert ev[0][2] == reason


def test_a_lot_price_off_the_tick_is_off_tick_as_a_bid_is() -> None:
    """One kind of refusal, one code: a minimum price or increment off the tick is `off_tick`, as an
    off-tick bid is (it was `invalid_auction`), and the message marks its prices for the application."""
    house = AuctionHouse(MarketRules(tick=2))
    for seq, terms in enumerate(({"min_price": 10_001}, {"min_price": 10_000, "increment": 3}), 1):
        ev = house.process(seq, 0, Announce(seq, "s", **{"qty": 10, **terms}))
        assert ev[0][2] == R.OFF_TICK, ev
        assert "{price:2}" in ev[0][3], ev


bids_st = st.lists(
    st.tuples(st.sampled_from("ABCDEF"), st.integers(0, 8), st.integers(1, 40), st.integers(0, 9)),
    min_size=1,
    max_size=40,
)


def reference_outcome(
    bids: list[tuple[int, str, int, int, int | None]], method: str, percent: int, max_bids: int, lot: int
) -> tuple[list[str], list[tuple[str, int, int]], int]:
    """An independent statement of the rules: each bid's outcome, then the allocation of standing bids."""
    standing: dict[str, tuple[int, int, int]] = {}  # bidder -> (bid id, price, qty)
    placed: dict[str, int] = {}
    outcomes = []
    for bid_id, bidder, price, qty, replaces in bids:
        mine = standing.get(bidder)
        if (mine[0] if mine else None) != replaces:
            outcomes.append(R.STANDING_BID_CHANGED)
        elif mine and price < mine[1] + STEP:
            outcomes.append(R.BID_NOT_ABOVE_STANDING)
        elif mine and qty < mine[2]:
            outcomes.append(R.RAISE_LOWERS_QUANTITY)
        elif placed.get(bidder, 0) >= max_bids:
            outcomes.append(R.TOO_MANY_BIDS)
        else:
            outcomes.append("bid_accepted")
            placed[bidder] = placed.get(bidder, 0) + 1
            standing[bidder] = (bid_id, price, qty)
    ranked = sorted(standing.items(), key=lambda kv: (-kv[1][1], kv[1][0]))
    if method == TOP_PERCENT:
        n = len(ranked)
        keep = max(1, math.floor(Fraction(n * percent, 100) + Fraction(1, 2))) if n else 0
        ranked = ranked[:keep]
    left, alloc = lot, []
    for bidder, (_, price, qty) in ranked:
        if left:
            alloc.append((bidder, price, min(qty, left)))
            left -= min(qty, left)
    if method == UNIFORM_PRICE and alloc:
        alloc = [(b, alloc[-1][1], q) for b, _, q in alloc]
    return outcomes, alloc, left


@settings(max_examples=80, deadline=None)
@given(
    bids=bids_st,
    method=st.sampled_from((PAY_AS_BID, TOP_PERCENT, UNIFORM_PRICE)),
    percent=st.integers(1, 100),
    max_bids=st.integers(1, 5),
    cut=st.integers(0, 100),
)
def test_standing_bids_and_per_bidder_allocation_match_a_reference_and_replay(
    bids: list[tuple[str, int, int, int]], method: str, percent: int, max_bids: int, cut: int
) -> None:
    lot = 120
    h = House()
    aid = h.open(bidders=tuple("ABCDEF"), allocation=method, top_percent=percent, max_bids_per_bidder=max_bids,
                 qty=lot)
    commands: list[tuple[int, Any]] = []
    sent: list[tuple[int, str, int, int, int | None]] = []
    snap_at = cut % (len(bids) + 3)
    base_seq = h.seq
    snap = None
    outcomes = []
    for i, (bidder, steps, qty, noise) in enumerate(bids):
        if i == snap_at:
            snap = json.loads(json.dumps(h.engine.snapshot()))
        mine = [b[0] for b in h.engine.auction(aid)["bids"] if b[1] == bidder]  # type: ignore[index]
        replaces = mine[0] if mine else None
        if noise == 0:  # a sender that saw an older state
            replaces = None if replaces is not None else aid
        cmd = Bid(aid, h.new_id(), bidder, START + steps * STEP, qty, replaces)
        sent.append((cmd.bid_id, bidder, cmd.price, qty, replaces))
        commands.append((10, cmd))
        before = h.engine.state_hash()
        asked = h.engine.refusal(10, cmd)  # what the application asks before it funds a bid
        assert h.engine.state_hash() == before  # asking changes nothing
        ev = h.at(10, cmd)
        outcomes.append(ev[0][0] if ev[0][0] != "rejected" else ev[0][2])
        assert (None if asked is None else asked[2]) == (None if ev[0][0] != "rejected" else ev[0][2])
    for ts, c in ((1_000, CloseAuction(aid)), (1_000, Allocate(aid))):
        if len(commands) == snap_at:
            snap = json.loads(json.dumps(h.engine.snapshot()))
        commands.append((ts, c))
        events = h.at(ts, c)
    want_outcomes, want_alloc, unsold = reference_outcome(sent, method, percent, max_bids, lot)
    assert outcomes == want_outcomes
    assert fills(events) == want_alloc
    assert len({b for b, _, _ in want_alloc}) == len(want_alloc)  # one allocation per bidder
    assert ("auction_result", aid, lot - unsold, unsold, want_alloc[-1][1] if want_alloc else None) in events
    # Snapshot at any point plus replay of the rest reaches the same state.
    if snap is None:
        snap_at = len(commands)
        snap = json.loads(json.dumps(h.engine.snapshot()))
    resumed = AuctionHouse.restore(snap)
    for i, (ts, c) in enumerate(commands[snap_at:], base_seq + snap_at + 1):
        resumed.process(i, ts, c)
    assert resumed.state_hash() == h.engine.state_hash()
