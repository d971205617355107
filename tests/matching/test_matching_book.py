"""Unit tests of the continuous book, one behaviour each."""

from __future__ import annotations

import json
from typing import Any

import pytest

from matching import reasons as R
from matching.book import ContinuousBook
from matching.commands import (
    BUY,
    CANCEL_BOTH,
    CANCEL_MAKER,
    FOK,
    IOC,
    MARKET,
    SELL,
    Cancel,
    EndOfDay,
    Halt,
    NewOrder,
    Reduce,
    Resume,
    SetReference,
    SetRules,
)
from matching.events import as_dict
from matching.rules import MarketRules


class Driver:
    """Feeds commands with increasing seq/ts and keeps every event."""

    def __init__(self, book: ContinuousBook | None = None) -> None:
        self.book = book if book is not None else ContinuousBook()
        self.seq = 0
        self.next_id = 0

    def __call__(self, command: Any) -> list[tuple[Any, ...]]:
        self.seq += 1
        return self.book.process(self.seq, self.seq * 1000, command)

    def order(self, account: Any, side: str, price: int, qty: int, **kw: Any) -> list[tuple[Any, ...]]:
        self.next_id += 1
        return self(NewOrder(self.next_id, account, side, price, qty, **kw))


def kinds(events: list[tuple[Any, ...]]) -> list[str]:
    return [e[0] for e in events]


def trades(events: list[tuple[Any, ...]]) -> list[tuple[int, int, int, int]]:
    """(price, qty, maker id, taker id) per trade."""
    return [(e[5], e[6], e[8], e[10]) for e in events if e[0] == "trade"]


def reject_code(events: list[tuple[Any, ...]]) -> str:
    assert len(events) == 1 and events[0][0] == "rejected", events
    return events[0][2]


def test_resting_limit_is_accepted_and_shown_in_depth() -> None:
    d = Driver()
    ev = d.order("A", BUY, 100, 10)
    assert ev == [("accepted", 1, "A", BUY, "limit", "day", 100, 10)]
    d.order("B", BUY, 100, 5)
    d.order("C", SELL, 103, 7)
    assert d.book.depth() == {BUY: [(100, 15, 2)], SELL: [(103, 7, 1)]}
    assert d.book.best_bid() == 100 and d.book.best_ask() == 103


def test_price_then_time_priority_and_trade_at_maker_price() -> None:
    d = Driver()
    d.order("A", SELL, 101, 5)  # 1
    d.order("B", SELL, 100, 5)  # 2: better price, later
    d.order("C", SELL, 100, 5)  # 3: same price, later still
    ev = d.order("D", BUY, 105, 12)
    assert trades(ev) == [(100, 5, 2, 4), (100, 5, 3, 4), (101, 2, 1, 4)]
    t = as_dict(ev[1])
    assert (t["maker_owner"], t["taker_owner"], t["taker_side"], t["seq"]) == ("B", "D", BUY, 4)
    assert [as_dict(e)["trade_id"] for e in ev[1:]] == [1, 2, 3]
    assert d.book.order(1) == {"order_id": 1, "account": "A", "side": SELL, "price": 101, "qty": 3}


def test_remainder_of_crossing_limit_rests() -> None:
    d = Driver()
    d.order("A", SELL, 100, 5)
    d.order("B", BUY, 101, 8)
    assert d.book.depth() == {BUY: [(101, 3, 1)], SELL: []}


def test_ioc_cancels_remainder() -> None:
    d = Driver()
    d.order("A", SELL, 100, 5)
    ev = d.order("B", BUY, 100, 8, tif=IOC)
    assert kinds(ev) == ["accepted", "trade", "cancelled"]
    assert ev[-1] == ("cancelled", 2, "B", 3, "ioc_remainder")
    assert len(d.book) == 0


def test_fok_fills_in_full_or_is_rejected() -> None:
    d = Driver()
    d.order("A", SELL, 100, 5)
    d.order("B", SELL, 101, 5)
    assert reject_code(d.order("C", BUY, 101, 11, tif=FOK)) == R.FOK_UNFILLABLE
    assert reject_code(d.order("C", BUY, 100, 6, tif=FOK)) == R.FOK_UNFILLABLE
    ev = d.order("C", BUY, 101, 10, tif=FOK)
    assert trades(ev) == [(100, 5, 1, 5), (101, 5, 2, 5)]
    assert len(d.book) == 0


def test_market_to_limit_reaches_only_best_five_levels_and_rests_remainder_at_last_price() -> None:
    d = Driver()
    for i in range(7):
        d.order(f"S{i}", SELL, 100 + i, 1)
    ev = d.order("B", BUY, 0, 10, type=MARKET)
    assert [t[0] for t in trades(ev)] == [100, 101, 102, 103, 104]
    assert ev[-1] == ("converted", 8, 104, 5)
    assert d.book.best_bid() == 104 and d.book.best_ask() == 105


def test_market_ioc_and_empty_side() -> None:
    d = Driver()
    assert reject_code(d.order("B", BUY, 0, 10, type=MARKET)) == R.NO_LIQUIDITY
    d.order("S", SELL, 100, 3)
    ev = d.order("B", BUY, 0, 10, type=MARKET, tif=IOC)
    assert ev[-1] == ("cancelled", 3, "B", 7, "ioc_remainder")


def test_cancel_and_reduce_keep_priority() -> None:
    d = Driver()
    d.order("A", SELL, 100, 10)  # 1
    d.order("B", SELL, 100, 10)  # 2
    assert d(Reduce(1, 4)) == [("reduced", 1, "A", 10, 4)]
    assert d.book.depth()[SELL] == [(100, 14, 2)]
    ev = d.order("C", BUY, 100, 5)
    assert trades(ev) == [(100, 4, 1, 3), (100, 1, 2, 3)]  # 1 still first after the reduction
    assert d(Cancel(2)) == [("cancelled", 2, "B", 9, "requested")]
    assert d.book.depth()[SELL] == []
    assert reject_code(d(Cancel(2))) == R.UNKNOWN_ORDER


def test_reduce_rules() -> None:
    d = Driver(ContinuousBook(MarketRules(lot=5)))
    d.order("A", SELL, 100, 20)
    assert reject_code(d(Reduce(1, 20))) == R.REDUCE_NOT_LOWER
    assert reject_code(d(Reduce(1, 0))) == R.REDUCE_NOT_LOWER
    assert reject_code(d(Reduce(1, 7))) == R.OFF_LOT
    assert reject_code(d(Reduce(9, 5))) == R.UNKNOWN_ORDER
    assert reject_code(d(Reduce(1, 5, account="X"))) == R.NOT_ORDER_OWNER
    assert reject_code(d(Cancel(1, account="X"))) == R.NOT_ORDER_OWNER


def test_cancelled_order_in_middle_of_queue_is_skipped() -> None:
    d = Driver()
    for acct in ("A", "B", "C"):
        d.order(acct, SELL, 100, 5)
    d(Cancel(2))
    ev = d.order("D", BUY, 100, 10)
    assert trades(ev) == [(100, 5, 1, 4), (100, 5, 3, 4)]
    assert d.book.depth() == {BUY: [], SELL: []}


def test_self_trade_cancel_taker_is_default() -> None:
    d = Driver()
    d.order("X", SELL, 100, 5)  # 1
    d.order("A", SELL, 100, 5)  # 2: own order behind a stranger's
    ev = d.order("A", BUY, 100, 8)
    assert kinds(ev) == ["accepted", "trade", "cancelled"]
    assert ev[-1] == ("cancelled", 3, "A", 3, "self_trade")
    assert d.book.order(2) is not None


def test_self_trade_cancel_maker_continues_matching() -> None:
    d = Driver()
    d.order("A", SELL, 100, 5)  # 1 own
    d.order("X", SELL, 100, 5)  # 2
    ev = d.order("A", BUY, 100, 5, stp=CANCEL_MAKER)
    assert ev[1] == ("cancelled", 1, "A", 5, "self_trade")
    assert trades(ev) == [(100, 5, 2, 3)]


def test_self_trade_cancel_both() -> None:
    d = Driver()
    d.order("A", SELL, 100, 5)
    ev = d.order("A", BUY, 100, 5, stp=CANCEL_BOTH)
    assert ev[1:] == [("cancelled", 1, "A", 5, "self_trade"), ("cancelled", 2, "A", 5, "self_trade")]
    assert len(d.book) == 0


def test_stp_market_default_comes_from_rules() -> None:
    d = Driver(ContinuousBook(MarketRules(stp=CANCEL_MAKER)))
    d.order("A", SELL, 100, 5)
    ev = d.order("A", BUY, 100, 5)
    assert ev[1] == ("cancelled", 1, "A", 5, "self_trade")
    assert d.book.best_bid() == 100


def test_fok_respects_stp() -> None:
    d = Driver()
    d.order("A", SELL, 100, 5)
    d.order("X", SELL, 100, 5)
    assert reject_code(d.order("A", BUY, 100, 5, tif=FOK)) == R.FOK_UNFILLABLE
    assert trades(d.order("A", BUY, 100, 5, tif=FOK, stp=CANCEL_MAKER)) == [(100, 5, 2, 4)]


def test_band_tick_lot_and_size_rules() -> None:
    rules = MarketRules(tick=5, lot=10, band_bps=1000, min_qty=20, max_qty=1000)
    d = Driver(ContinuousBook(rules, reference=1000))
    assert d.book.band == (900, 1100)
    assert reject_code(d.order("A", BUY, 1001, 100)) == R.OFF_TICK
    assert reject_code(d.order("A", BUY, 1000, 105)) == R.OFF_LOT
    assert reject_code(d.order("A", BUY, 895, 100)) == R.PRICE_OUT_OF_BAND
    assert reject_code(d.order("A", BUY, 1105, 100)) == R.PRICE_OUT_OF_BAND
    assert reject_code(d.order("A", BUY, 1000, 10)) == R.QUANTITY_BELOW_MINIMUM
    assert reject_code(d.order("A", BUY, 1000, 1010)) == R.QUANTITY_ABOVE_MAXIMUM
    assert reject_code(d.order("A", BUY, 0, 100)) == R.INVALID_PRICE
    assert reject_code(d.order("A", BUY, 1000, 0)) == R.INVALID_QUANTITY
    assert d.order("A", BUY, 1100, 1000)[0][0] == "accepted"
    assert d(SetReference(2000)) == [("reference_set", 2000, 1800, 2200)]
    assert reject_code(d.order("A", BUY, 1100, 100)) == R.PRICE_OUT_OF_BAND


def test_band_rounds_inward_to_the_tick() -> None:
    assert MarketRules(tick=3, band_bps=1000).band(1001) == (903, 1101)
    assert MarketRules(band_bps=None).band(1000)[0] == 1


def test_enum_and_id_rejections() -> None:
    d = Driver()
    d.order("A", BUY, 100, 1)
    assert reject_code(d(NewOrder(2, "A", "hold", 100, 1))) == R.INVALID_SIDE
    assert reject_code(d(NewOrder(2, "A", BUY, 100, 1, type="stop"))) == R.INVALID_ORDER_TYPE
    assert reject_code(d(NewOrder(2, "A", BUY, 100, 1, tif="gtc"))) == R.INVALID_TIME_IN_FORCE
    assert reject_code(d(NewOrder(2, "A", BUY, 100, 1, stp="allow"))) == R.INVALID_STP
    assert reject_code(d(NewOrder(1, "A", BUY, 100, 1))) == R.DUPLICATE_ORDER_ID
    d(Cancel(1))
    assert reject_code(d(NewOrder(1, "A", BUY, 100, 1))) == R.ORDER_ID_NOT_INCREASING
    with pytest.raises(TypeError):
        NewOrder(3, "A", BUY, 100.0, 1)  # type: ignore[arg-type]


def test_stale_sequence_is_rejected_without_effect() -> None:
    book = ContinuousBook()
    book.process(5, 0, NewOrder(1, "A", BUY, 100, 1))
    before = book.state_hash()
    ev = book.process(5, 0, NewOrder(2, "A", BUY, 100, 1))
    assert ev[0][:3] == ("rejected", 2, R.STALE_SEQUENCE)
    assert book.state_hash() == before


def test_halt_blocks_orders_but_not_cancels() -> None:
    d = Driver()
    d.order("A", BUY, 100, 5)
    assert d(Halt("volatility")) == [("halted", "volatility")]
    assert reject_code(d(Halt())) == R.MARKET_HALTED
    assert reject_code(d.order("B", SELL, 100, 5)) == R.MARKET_HALTED
    assert d(Reduce(1, 2))[0][0] == "reduced"
    assert d(Cancel(1))[0][0] == "cancelled"
    assert d(Resume()) == [("resumed",)]
    assert reject_code(d(Resume())) == R.NOT_HALTED
    assert d.order("B", SELL, 100, 5)[0][0] == "accepted"


def test_end_of_day_expires_everything_in_priority_order() -> None:
    d = Driver()
    d.order("A", BUY, 99, 1)
    d.order("B", BUY, 100, 2)
    d.order("C", SELL, 102, 3)
    d.order("D", SELL, 101, 4)
    assert d(EndOfDay()) == [
        ("expired", 2, "B", 2),
        ("expired", 1, "A", 1),
        ("expired", 4, "D", 4),
        ("expired", 3, "C", 3),
    ]
    assert len(d.book) == 0 and d.book.depth() == {BUY: [], SELL: []}


def test_unknown_command_is_rejected() -> None:
    assert reject_code(Driver()(object())) == R.UNKNOWN_COMMAND


def test_snapshot_round_trips_through_json_and_hash_covers_queue_order() -> None:
    d = Driver(ContinuousBook(MarketRules(band_bps=500), reference=100))
    d.order("A", SELL, 101, 5)
    d.order("B", SELL, 101, 6)
    d.order("C", BUY, 99, 7)
    d(Cancel(1))
    snap = json.loads(json.dumps(d.book.snapshot()))
    restored = ContinuousBook.restore(snap)
    assert restored.state_hash() == d.book.state_hash()
    assert restored.snapshot() == snap

    # Same orders, other time priority: different hash.
    one, two = Driver(), Driver()
    one.order("A", SELL, 101, 5)
    one.order("B", SELL, 101, 5)
    two.order("A", SELL, 101, 5)
    two.order("B", SELL, 101, 5)
    assert one.book.state_hash() == two.book.state_hash()
    swapped = one.book.snapshot()
    swapped["asks"][0][1].reverse()
    assert ContinuousBook.restore(swapped).state_hash() != one.book.state_hash()


def test_restore_rejects_foreign_snapshots() -> None:
    with pytest.raises(ValueError):
        ContinuousBook.restore({"engine": "listing", "version": 1})


def test_a_price_and_quantity_once_accepted_are_judged_again_after_every_change_of_rules() -> None:
    """The book remembers which limit prices and quantities kept the rules (its fast path); each halt,
    resume, reference and rules change must forget them, or an order would pass on a stale answer."""
    d = Driver(ContinuousBook(MarketRules(band_bps=1000, max_qty=50), reference=1000))
    assert kinds(d.order("A", BUY, 1004, 7)) == ["accepted"]
    assert kinds(d.order("A", BUY, 1004, 7)) == ["accepted"]  # the remembered answer
    assert reject_code(d.order("A", BUY, 1004, 7, stp="allow")) == R.INVALID_STP  # still the full rules off it
    d(SetReference(900))  # band [810, 990]
    assert reject_code(d.order("A", BUY, 1004, 7)) == R.PRICE_OUT_OF_BAND
    d(SetReference(1000))
    assert kinds(d.order("A", BUY, 1004, 7)) == ["accepted"]
    d(SetRules(MarketRules(tick=5, band_bps=1000, max_qty=50).to_dict()))
    assert reject_code(d.order("A", BUY, 1004, 7)) == R.OFF_TICK
    assert kinds(d.order("A", BUY, 1005, 7)) == ["accepted"]
    d(SetRules(MarketRules(tick=5, lot=7, band_bps=1000, max_qty=49).to_dict()))
    assert kinds(d.order("A", BUY, 1005, 7)) == ["accepted"]
    d(SetRules(MarketRules(tick=5, lot=7, band_bps=1000, min_qty=14, max_qty=49).to_dict()))
    assert reject_code(d.order("A", BUY, 1005, 7)) == R.QUANTITY_BELOW_MINIMUM
    assert kinds(d.order("A", BUY, 1005, 14)) == ["accepted"]
    d(Halt("fire drill"))
    assert reject_code(d.order("A", BUY, 1005, 14)) == R.MARKET_HALTED
    d(Resume())
    assert kinds(d.order("A", BUY, 1005, 14)) == ["accepted"]
    # A restored book answers the same without the remembered answers.
    restored = ContinuousBook.restore(json.loads(json.dumps(d.book.snapshot())))
    assert restored.process(d.seq + 1, 0, NewOrder(d.next_id + 1, "A", BUY, 1004, 14))[0][2] == R.OFF_TICK
    assert restored.process(d.seq + 2, 0, NewOrder(d.next_id + 2, "A", BUY, 1005, 14))[0][0] == "accepted"


def test_the_remembered_prices_stay_bounded() -> None:
    d = Driver()
    for price in range(1, 3 * 4096):
        d.order("A", BUY, price, 1 + price % 9000)
    assert len(d.book._ok_prices) <= 4096 and len(d.book._ok_qtys) <= 4096
    assert len(d.book) == 3 * 4096 - 1


class _FloatPosingAsInt(float):
    __class__ = property(lambda self: int)  # type: ignore[assignment]


@pytest.mark.parametrize("bad", [100.0, True, "100", None, _FloatPosingAsInt(100.0)])
def test_hot_commands_take_exact_ints_only(bad: Any) -> None:
    """NewOrder and Cancel check their ids, prices and quantities themselves (the book trusts them after):
    exact ints, not bools, floats, strings or an object whose __class__ claims int."""
    with pytest.raises(TypeError):
        NewOrder(3, "A", BUY, bad, 1)
    with pytest.raises(TypeError):
        NewOrder(bad, "A", BUY, 100, 1)
    with pytest.raises(TypeError):
        NewOrder(3, "A", BUY, 100, qty=bad)
    with pytest.raises(TypeError):
        Cancel(bad)


def test_hot_commands_are_dataclasses_the_journal_can_encode_and_decode() -> None:
    import dataclasses

    for command in (NewOrder(7, "A", SELL, 100, 3), NewOrder(8, 5, BUY, 0, 2, MARKET, IOC, CANCEL_BOTH),
                    Cancel(7), Cancel(7, "A")):
        fields = {f.name: getattr(command, f.name) for f in dataclasses.fields(command)}
        assert type(command)(**fields) == command
        assert dataclasses.replace(command) == command and repr(command).startswith(type(command).__name__)
    assert [f.name for f in dataclasses.fields(NewOrder)] == [
        "order_id", "account", "side", "price", "qty", "type", "tif", "stp"]
    with pytest.raises(AttributeError):
        NewOrder(9, "A", BUY, 1, 1).extra = 1  # type: ignore[attr-defined]
