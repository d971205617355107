"""One-way auctions (单向竞价): the phase machine, bid rules, extensions and the three allocations."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import reasons as R
from matching.auction import AuctionHouse, allocate
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


def test_top_percent_rounds_up_the_number_of_winners() -> None:
    terms = Announce(1, "s", 100, 1, allocation=TOP_PERCENT, top_percent=34)
    bids = [(i, (f"b{i}", 10 - i, 1)) for i in range(1, 4)]
    assert [f[1] for f in allocate(terms, bids)[0]] == ["b1", "b2"]  # 34 % of 3 bidders -> 2


def test_bid_rules() -> None:
    h = House()
    aid = h.open(max_bids_per_bidder=2, cap_per_bidder=60, min_bid_qty=5)
    assert code(h.bid(aid, "A", START - STEP, 10)) == R.BID_BELOW_MINIMUM
    assert code(h.bid(aid, "A", START + 1, 10)) == R.BID_INCREMENT
    assert code(h.bid(aid, "Z", START, 10)) == R.BIDDER_NOT_REGISTERED
    assert code(h.bid(aid, "A", START, 4)) == R.QUANTITY_BELOW_MINIMUM
    assert code(h.bid(aid, "A", START, 101)) == R.QUANTITY_EXCEEDS_REMAINING
    assert h.bid(aid, "A", START, 40)[0][0] == "bid_accepted"
    assert code(h.bid(aid, "A", START, 30)) == R.BID_CAP_EXCEEDED
    assert h.bid(aid, "A", START + STEP, 20)[0][0] == "bid_accepted"
    bid_id = h.next_id
    assert code(h.bid(aid, "A", START + STEP, 5)) == R.TOO_MANY_BIDS
    assert code(h.at(20, WithdrawBid(aid, bid_id, "A"))) == R.BID_IRREVOCABLE
    assert code(h.bid(aid, "A", START, 5, ts=100)) == R.AUCTION_NOT_OPEN  # the window ended at 100


def test_revocable_bids_can_be_withdrawn_in_the_window() -> None:
    h = House()
    aid = h.open(irrevocable=False)
    h.bid(aid, "A", START, 40)
    bid_id = h.next_id
    assert code(h.at(20, WithdrawBid(aid, bid_id, "B"))) == R.UNKNOWN_BID
    assert h.at(20, WithdrawBid(aid, bid_id, "A")) == [("bid_withdrawn", aid, bid_id, "A", 40)]
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
    "terms",
    [
        {"qty": 0},
        {"min_price": 0},
        {"increment": 0},
        {"allocation": "dutch"},
        {"top_percent": 0},
        {"cap_per_bidder": 0},
        {"extension_window": -1},
    ],
)
def test_inconsistent_terms_are_refused(terms: dict[str, Any]) -> None:
    full = {"qty": 10, "min_price": START, **terms}
    ev = AuctionHouse().process(1, 0, Announce(1, "s", **full))
    assert ev[0][2] == R.INVALID_AUCTION


bids_st = st.lists(
    st.tuples(st.sampled_from("ABCDEF"), st.integers(0, 5), st.integers(1, 40)), min_size=1, max_size=30
)


@settings(max_examples=60, deadline=None)
@given(
    bids=bids_st, method=st.sampled_from((PAY_AS_BID, TOP_PERCENT, UNIFORM_PRICE)), cut=st.integers(0, 100)
)
def test_allocation_properties_and_replay(bids: list[tuple[str, int, int]], method: str, cut: int) -> None:
    h = House()
    aid = h.open(bidders=tuple("ABCDEF"), allocation=method, top_percent=50, max_bids_per_bidder=30, qty=120)
    commands: list[tuple[int, Any]] = []
    for bidder, steps, qty in bids:
        commands.append((10, Bid(aid, h.new_id(), bidder, START + steps * STEP, qty)))
    commands += [(1_000, CloseAuction(aid)), (1_000, Allocate(aid))]
    snap_at = cut % (len(commands) + 1)
    base_seq = h.seq
    snap = None
    events: list[tuple[Any, ...]] = []
    for i, (ts, c) in enumerate(commands):
        if i == snap_at:
            snap = json.loads(json.dumps(h.engine.snapshot()))
        events = h.at(ts, c)
    alloc = fills(events)
    accepted = [(bidder, START + steps * STEP, qty) for bidder, steps, qty in bids]
    # Never more than the lot; winners ranked by price; nobody pays above their bid.
    assert sum(q for _, _, q in alloc) <= 120
    if method != TOP_PERCENT:
        assert sum(q for _, _, q in alloc) == min(120, sum(q for _, _, q in accepted))
    prices_bid = {}
    for e in events:
        if e[0] == "allocated":
            prices_bid[e[2]] = e[4]
    if method == UNIFORM_PRICE:
        assert len({p for _, p, _ in alloc}) <= 1
    elif alloc:
        assert [p for _, p, _ in alloc] == sorted((p for _, p, _ in alloc), reverse=True)
    # Snapshot at any point plus replay of the rest reaches the same state.
    if snap is None:
        snap = json.loads(json.dumps(h.engine.snapshot()))
    resumed = AuctionHouse.restore(snap)
    for i, (ts, c) in enumerate(commands[snap_at:], base_seq + snap_at + 1):
        resumed.process(i, ts, c)
    assert resumed.state_hash() == h.engine.state_hash()
