"""Listing trading (挂牌协议): unit tests and a property test against a brute-force rank rule."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from matching import reasons as R
from matching.commands import BUY, SELL, Cancel, EndOfDay, Halt, PostListing, Reduce, SetReference, Take
from matching.events import as_dict
from matching.listing import ListingBook
from matching.rules import CEA_LISTING, MarketRules


class Driver:
    def __init__(self, engine: ListingBook) -> None:
        self.engine = engine
        self.seq = 0
        self.next_id = 0

    def __call__(self, command: Any) -> list[tuple[Any, ...]]:
        self.seq += 1
        return self.engine.process(self.seq, self.seq, command)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def post(self, account: Any, side: str, price: int, qty: int) -> int:
        lid = self.new_id()
        ev = self(PostListing(lid, account, side, price, qty))
        assert ev[0][0] == "accepted", ev
        return lid

    def take(self, account: Any, listing_id: int, qty: int) -> list[tuple[Any, ...]]:
        return self(Take(self.new_id(), account, listing_id, qty))


def code(events: list[tuple[Any, ...]]) -> str:
    assert len(events) == 1 and events[0][0] == "rejected", events
    return events[0][2]


def test_take_trades_at_listing_price_for_takers_quantity_and_partially() -> None:
    d = Driver(ListingBook())
    lid = d.post("S", SELL, 105, 100)
    ev = d.take("B", lid, 30)
    t = as_dict(ev[0])
    assert (t["mode"], t["price"], t["qty"], t["maker_id"], t["taker_owner"], t["taker_side"]) == (
        "listing",
        105,
        30,
        lid,
        "B",
        BUY,
    )
    assert d.engine.listing(lid)["qty"] == 70  # type: ignore[index]
    d.take("B", lid, 70)
    assert d.engine.listing(lid) is None and len(d.engine) == 0
    assert code(d.take("B", lid, 1)) == R.UNKNOWN_ORDER


def test_no_time_priority_within_a_level() -> None:
    d = Driver(ListingBook())
    first = d.post("S1", SELL, 100, 10)
    second = d.post("S2", SELL, 100, 10)
    assert d.take("B", second, 10)[0][0] == "trade"  # the later listing, taker's choice
    assert d.engine.listing(first)["qty"] == 10  # type: ignore[index]


def test_only_the_best_five_levels_of_the_side_may_be_taken() -> None:
    d = Driver(ListingBook())
    ids = [d.post(f"S{i}", SELL, 100 + i, 10) for i in range(7)]
    extra = d.post("S9", SELL, 104, 10)  # the fifth level holds two listings
    assert [d.engine.rank(i) for i in ids] == [0, 1, 2, 3, 4, 5, 6]
    assert d.take("B", ids[4], 1)[0][0] == "trade"
    assert d.take("B", extra, 1)[0][0] == "trade"
    assert code(d.take("B", ids[5], 1)) == R.NOT_WITHIN_BEST_LEVELS
    # Buy listings: the best is the highest price.
    bids = [d.post(f"B{i}", BUY, 90 - i, 10) for i in range(6)]
    assert code(d.take("S", bids[5], 1)) == R.NOT_WITHIN_BEST_LEVELS
    assert d.take("S", bids[4], 1)[0][0] == "trade"
    # Once the best level goes, the sixth level moves up into reach.
    d(Cancel(ids[0]))
    assert d.take("B", ids[5], 1)[0][0] == "trade"


def test_strict_best_allows_only_the_best_price() -> None:
    d = Driver(ListingBook(MarketRules(strict_best=True)))
    best = d.post("S1", SELL, 100, 10)
    also_best = d.post("S2", SELL, 100, 10)
    worse = d.post("S3", SELL, 101, 10)
    assert code(d.take("B", worse, 1)) == R.NOT_WITHIN_BEST_LEVELS
    assert d.take("B", also_best, 1)[0][0] == "trade"
    assert d.take("B", best, 1)[0][0] == "trade"


def test_size_band_and_self_rules() -> None:
    rules = CEA_LISTING.with_(min_qty=10, lot=5)
    d = Driver(ListingBook(rules, reference=1000))
    assert d.engine.band == (900, 1100)
    for price, qty, expected in (
        (1101, 100, R.PRICE_OUT_OF_BAND),
        (899, 100, R.PRICE_OUT_OF_BAND),
        (1000, 5, R.QUANTITY_BELOW_MINIMUM),
        (1000, 100_000, R.QUANTITY_ABOVE_MAXIMUM),
        (1000, 12, R.OFF_LOT),
        (-1, 10, R.INVALID_PRICE),
    ):
        assert code(d(PostListing(d.new_id(), "S", SELL, price, qty))) == expected
    assert code(d(PostListing(d.new_id(), "S", "short", 1000, 10))) == R.INVALID_SIDE
    lid = d.post("S", SELL, 1000, 25)
    assert code(d.take("S", lid, 10)) == R.SELF_TRADE
    assert code(d.take("B", lid, 5)) == R.QUANTITY_BELOW_MINIMUM
    assert code(d.take("B", lid, 7)) == R.OFF_LOT
    assert code(d.take("B", lid, 30)) == R.QUANTITY_EXCEEDS_REMAINING
    assert d.take("B", lid, 20)[0][0] == "trade"
    assert d.take("B", lid, 5)[0][0] == "trade"  # the last remainder may be below the minimum
    # A listing left outside a moved band cannot be taken.
    lid = d.post("S", SELL, 1100, 10)
    d(SetReference(900))
    assert code(d.take("B", lid, 10)) == R.PRICE_OUT_OF_BAND


def test_cancel_reduce_halt_and_expiry() -> None:
    d = Driver(ListingBook())
    a = d.post("S", SELL, 100, 10)
    b = d.post("S", SELL, 101, 10)
    assert code(d(Reduce(a, 10))) == R.REDUCE_NOT_LOWER
    assert d(Reduce(a, 4)) == [("reduced", a, "S", 10, 4)]
    assert code(d(Cancel(a, account="X"))) == R.NOT_ORDER_OWNER
    assert d(Cancel(a)) == [("cancelled", a, "S", 4, "requested")]
    d(Halt("test"))
    assert code(d.take("B", b, 1)) == R.MARKET_HALTED
    assert code(d(PostListing(d.new_id(), "S", SELL, 100, 1))) == R.MARKET_HALTED
    assert d(EndOfDay()) == [("expired", b, "S", 10)]
    assert d.engine.depth() == {BUY: [], SELL: []}


def test_depth_and_snapshot_round_trip() -> None:
    d = Driver(ListingBook(CEA_LISTING, reference=100))
    d.post("S1", SELL, 101, 10)
    d.post("S2", SELL, 101, 5)
    d.post("S3", SELL, 103, 7)
    d.post("B1", BUY, 99, 3)
    assert d.engine.depth() == {BUY: [(99, 3, 1)], SELL: [(101, 15, 2), (103, 7, 1)]}
    snap = json.loads(json.dumps(d.engine.snapshot()))
    again = ListingBook.restore(snap)
    assert again.state_hash() == d.engine.state_hash()
    assert again.depth() == d.engine.depth()


ops = st.lists(
    st.tuples(
        st.integers(0, 9), st.integers(0, 3), st.integers(95, 105), st.integers(1, 20), st.integers(0, 50)
    ),
    min_size=20,
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(ops=ops, best_n=st.integers(1, 5), strict=st.booleans(), cut=st.integers(0, 1000))
def test_listing_rules_hold_on_random_streams(
    ops: list[tuple[int, int, int, int, int]], best_n: int, strict: bool, cut: int
) -> None:
    rules = MarketRules(best_n=best_n, strict_best=strict)
    engine = ListingBook(rules)
    commands: list[Any] = []
    listed: dict[int, int] = {}
    taken: dict[int, int] = {}
    cancelled: dict[int, int] = {}
    for next_id, (kind, acct, price, qty, pick) in enumerate(ops, 1):
        live = [x["listing_id"] for x in engine.listings()]
        if kind < 4 or not live:
            command: Any = PostListing(next_id, f"a{acct}", BUY if kind % 2 else SELL, price, qty)
        elif kind < 9:
            command = Take(next_id, f"a{acct}", live[pick % len(live)], qty)
        else:
            command = Cancel(live[pick % len(live)])
        before = {x["listing_id"]: x for x in engine.listings()}
        commands.append(command)
        events = engine.process(len(commands), 0, command)
        if isinstance(command, Take):
            target = before[command.listing_id]
            same_side = sorted({x["price"] for x in before.values() if x["side"] == target["side"]})
            if target["side"] == BUY:
                same_side.reverse()
            rank = same_side.index(target["price"])
            ok_rank = rank < (1 if strict else best_n)
            ok = ok_rank and command.account != target["account"] and command.qty <= target["qty"]
            assert (events[0][0] == "trade") == ok, (events, rank)
            if not ok_rank and command.account != target["account"] and command.qty <= target["qty"]:
                assert events[0][2] == R.NOT_WITHIN_BEST_LEVELS
            if ok:
                taken[command.listing_id] = taken.get(command.listing_id, 0) + command.qty
                assert events[0][5] == target["price"]
        elif isinstance(command, PostListing) and events[0][0] == "accepted":
            listed[command.listing_id] = command.qty
        elif events[0][0] == "cancelled":
            cancelled[events[0][1]] = events[0][3]
    # conservation: every listed lot is taken, cancelled or still open
    for lid in listed:
        now = engine.listing(lid)
        assert listed[lid] == taken.get(lid, 0) + cancelled.get(lid, 0) + (now["qty"] if now else 0)
    # snapshot at a cut, replay the rest: same state hash
    cut %= len(commands) + 1
    head = ListingBook(rules)
    for i, c in enumerate(commands[:cut], 1):
        head.process(i, 0, c)
    resumed = ListingBook.restore(json.loads(json.dumps(head.snapshot())))
    for i, c in enumerate(commands[cut:], cut + 1):
        resumed.process(i, 0, c)
    assert resumed.state_hash() == engine.state_hash()
