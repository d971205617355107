"""Differential tests: our continuous book against independent C++ engines from PyPI.

The same random stream of limit orders and cancels (and, for orderly-chaos, reductions) goes through
both engines; every account is distinct, so self-trade prevention never applies (neither peer has it).

* `limit-order-book` 2.0.0 reports no trades, so its fills are read from the book: its exported
  `get(uid)` returns the C++ `Order`, whose open quantity we read (layout checked first). Fills agree
  when every maker we report lost exactly the traded quantity there, the opposite side lost exactly
  the traded total, and every order's open quantity and every level's volume and count agree.
* `orderly-chaos` reports each trade (maker, taker, price, quantity) in execution order, which we
  compare one for one, along with the full depth after every command.
"""

from __future__ import annotations

import ctypes
import random
from collections.abc import Iterator
from typing import Any

import pytest

from matching.book import ContinuousBook
from matching.commands import BUY, SELL, Cancel, NewOrder, Reduce


def stream(seed: int, n: int, reduces: bool) -> Iterator[tuple[str, int, Any, Any, Any]]:
    """("limit", id, side, price, qty) | ("cancel", pick, ...) | ("reduce", pick, cut, ...).

    Cancels and reductions carry a random pick that the runner maps onto a live order.
    """
    rng = random.Random(seed)
    next_id = 0
    for _ in range(n):
        r = rng.random()
        if r < 0.25:
            yield ("cancel", rng.randrange(1 << 30), None, None, None)
        elif reduces and r < 0.32:
            yield ("reduce", rng.randrange(1 << 30), rng.randint(1, 40), None, None)
        else:
            next_id += 1
            side = BUY if rng.random() < 0.5 else SELL
            # 10 levels each side of 1000, and 20 % of orders aggressive up to 6 levels through.
            if rng.random() < 0.8:
                price = 1000 - rng.randint(1, 10) if side == BUY else 1000 + rng.randint(1, 10)
            else:
                price = 1000 + rng.randint(-2, 6) if side == BUY else 1000 - rng.randint(-2, 6)
            yield ("limit", next_id, side, price, rng.randint(1, 50))


def live_ids(book: ContinuousBook) -> list[int]:
    return [o["order_id"] for side in (BUY, SELL) for o in book.open_orders(side)]


def all_levels(book: ContinuousBook) -> dict[str, list[tuple[int, int, int]]]:
    return book.depth(1_000_000)


# ---------------------------------------------------------------------------------------------
# limit-order-book 2.0.0
# ---------------------------------------------------------------------------------------------


def _lob_reader(lob: Any) -> Any:
    """A function uid -> open quantity, reading the C++ Order struct the library's get() returns:
    DLL::Node{prev, next} (16 bytes), uid u64 @16, side bool @24, quantity u32 @28, price u64 @32."""
    from limit_order_book.library import Library

    get = Library.functions.get

    def qty(uid: int) -> int:
        return ctypes.c_uint32.from_address(get(lob._book, uid) + 28).value

    return qty, get


def test_layout_probe_of_limit_order_book() -> None:
    lob_module = pytest.importorskip("limit_order_book")
    lob = lob_module.LimitOrderBook()
    lob.limit_sell(4242, 321, 98765)
    qty, get = _lob_reader(lob)
    address = get(lob._book, 4242)
    assert ctypes.c_uint64.from_address(address + 16).value == 4242
    assert ctypes.c_uint64.from_address(address + 32).value == 98765
    assert qty(4242) == 321


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_fills_as_limit_order_book(seed: int) -> None:
    lob_module = pytest.importorskip("limit_order_book")
    test_layout_probe_of_limit_order_book()
    lob = lob_module.LimitOrderBook()
    peer_qty, _ = _lob_reader(lob)
    book = ContinuousBook()
    trades_seen = 0
    for seq, (kind, a, b, c, d) in enumerate(stream(seed, 3000, reduces=False), 1):
        if kind == "limit":
            opposite_before = lob.volume_sell() if b == BUY else lob.volume_buy()
            events = book.process(seq, seq, NewOrder(a, a, b, c, d))
            lob.limit(b == BUY, a, d, c)
            fills = [(e[8], e[6]) for e in events if e[0] == "trade"]
            trades_seen += len(fills)
            opposite_after = lob.volume_sell() if b == BUY else lob.volume_buy()
            assert opposite_before - opposite_after == sum(q for _, q in fills), seq
            for maker, _ in fills:
                ours = book.order(maker)
                assert lob.has(maker) == (ours is not None), (seq, maker)
                if ours is not None:
                    assert peer_qty(maker) == ours["qty"], (seq, maker)
            resting = book.order(a)
            assert lob.has(a) == (resting is not None), seq
            if resting is not None:
                assert peer_qty(a) == resting["qty"], seq
        else:
            ids = live_ids(book)
            if not ids:
                continue
            victim = ids[a % len(ids)]
            assert lob.has(victim)
            book.process(seq, seq, Cancel(victim))
            lob.cancel(victim)
        assert (lob.best_buy(), lob.best_sell()) == (book.best_bid() or 0, book.best_ask() or 0)
        assert lob.count() == len(book)
        if seq % 50 == 0:
            levels = all_levels(book)
            for side, volume_at in ((BUY, lob.volume_buy), (SELL, lob.volume_sell)):
                for price, volume, count in levels[side]:
                    assert (volume_at(price), lob.count_at(price)) == (volume, count), (seq, side, price)
            for oid in live_ids(book):
                assert peer_qty(oid) == book.order(oid)["qty"]  # type: ignore[index]
    assert trades_seen > 300  # the stream really crosses


# ---------------------------------------------------------------------------------------------
# orderly-chaos
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_same_trades_as_orderly_chaos(seed: int) -> None:
    oc = pytest.importorskip("orderly_chaos")
    peer_trades: list[tuple[int, int, int, int]] = []
    peer = oc.LimitOrderBook(
        on_trade=lambda t: peer_trades.append((t.maker_id, t.taker_id, t.price, t.quantity))
    )
    book = ContinuousBook()
    trades_seen = 0
    for seq, (kind, a, b, c, d) in enumerate(stream(seed, 3000, reduces=True), 1):
        peer_trades.clear()
        if kind == "limit":
            events = book.process(seq, seq, NewOrder(a, a, b, c, d))
            peer.limit(oc.Side.BUY if b == BUY else oc.Side.SELL, a, d, c)
        else:
            ids = live_ids(book)
            if not ids:
                continue
            victim = ids[a % len(ids)]
            if kind == "cancel":
                events = book.process(seq, seq, Cancel(victim))
                peer.cancel(victim)
            else:
                open_qty = book.order(victim)["qty"]  # type: ignore[index]
                if open_qty <= 1:
                    continue
                new = max(1, open_qty - b)
                events = book.process(seq, seq, Reduce(victim, new))
                peer.reduce(victim, open_qty - new)
        ours = [(e[8], e[10], e[5], e[6]) for e in events if e[0] == "trade"]
        trades_seen += len(ours)
        assert ours == peer_trades, seq
        levels = all_levels(book)
        for side, peer_side in ((BUY, oc.Side.BUY), (SELL, oc.Side.SELL)):
            theirs = [(lv.price, lv.volume, lv.count) for lv in peer.depth(peer_side, 1_000)]
            assert theirs == levels[side], (seq, side)
    assert trades_seen > 300
