"""Continuous-book throughput against every peer engine that installs, in one run.

    python -m bench.matching [--commands 200000] [--runs 3] [--resting 1000000] [--seed 7]

One stream of commands (60 % passive limits, 15 % crossing limits, 25 % cancels of earlier orders;
integer ticks around 10000, quantities 1-100) goes through our ContinuousBook and through each peer
via a small adapter that calls the peer's own API. Each engine gets a fresh book per run; the table
shows the median ops/s of the runs and our ratios to each peer.

The fair comparison is the first ratio, "built/peer": each peer gets the stream's plain arguments
(its own calls with ints and bools, in the timed loop), and we build our command objects (NewOrder,
Cancel: what the sequencer journals) inside the timed loop from the same plain arguments. The second
ratio, "prebuilt/peer", uses command objects built before timing, for reference. Our figures include
emitting every event (accepts, trades with both sides, cancels, rejects); peers run in their fastest
mode (no trade callbacks).

Finally it fills our book with `--resting` non-crossing orders under tracemalloc and prints the
peak traced memory.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from matching.book import ContinuousBook
from matching.commands import BUY, SELL, Cancel, NewOrder

PLACE, CANCEL = 0, 1
MID = 10_000

# (op, order id, is_buy, price, qty); cancels carry the target id and its side.
Op = tuple[int, int, bool, int, int]


@dataclass
class StreamStats:
    passive: int = 0
    crossing: int = 0
    cancels: int = 0


def make_stream(n: int, seed: int) -> tuple[list[Op], StreamStats]:
    """The benchmark stream. Passive orders rest 1-50 ticks away from the mid on their own side;
    crossing orders are priced 0-20 ticks through the mid, so they meet the near-mid liquidity
    that passive orders keep refilling; cancels pick a random earlier order not yet cancelled
    (it may have been filled meanwhile, which engines must handle)."""
    rng = random.Random(seed)
    ops: list[Op] = []
    live: list[tuple[int, bool]] = []
    stats = StreamStats()
    next_id = 0
    for _ in range(n):
        r = rng.random()
        if r < 0.25 and live:
            j = rng.randrange(len(live))
            live[j], live[-1] = live[-1], live[j]
            oid, is_buy = live.pop()
            ops.append((CANCEL, oid, is_buy, 0, 0))
            stats.cancels += 1
            continue
        next_id += 1
        is_buy = rng.random() < 0.5
        if r < 0.85:
            price = MID - rng.randint(1, 50) if is_buy else MID + rng.randint(1, 50)
            stats.passive += 1
        else:
            price = MID + rng.randint(0, 20) if is_buy else MID - rng.randint(0, 20)
            stats.crossing += 1
        ops.append((PLACE, next_id, is_buy, price, rng.randint(1, 100)))
        live.append((next_id, is_buy))
    return ops, stats


# --- adapters: each returns (run(ops) -> final (best bid, best ask)) -------------------------------


def _ours_prebuilt(ops: list[Op]) -> tuple[Callable[[], Any], str]:
    commands = [
        NewOrder(oid, oid % 997, BUY if is_buy else SELL, price, qty) if op == PLACE else Cancel(oid)
        for op, oid, is_buy, price, qty in ops
    ]

    def run() -> Any:
        book = ContinuousBook()
        process = book.process
        for seq, command in enumerate(commands, 1):
            process(seq, seq, command)
        return book.best_bid(), book.best_ask()

    return run, "same, commands prebuilt before timing"


def _ours_building(ops: list[Op]) -> tuple[Callable[[], Any], str]:
    def run() -> Any:
        book = ContinuousBook()
        process = book.process
        for seq, (op, oid, is_buy, price, qty) in enumerate(ops, 1):
            if op == PLACE:
                process(seq, seq, NewOrder(oid, oid % 997, BUY if is_buy else SELL, price, qty))
            else:
                process(seq, seq, Cancel(oid))
        return book.best_bid(), book.best_ask()

    return run, "pure Python, full events, commands built in the loop"


def _limit_order_book(ops: list[Op]) -> tuple[Callable[[], Any], str]:
    from limit_order_book import LimitOrderBook

    def run() -> Any:
        book = LimitOrderBook()
        limit, has, cancel = book.limit, book.has, book.cancel
        for op, oid, is_buy, price, qty in ops:
            if op == PLACE:
                limit(is_buy, oid, qty, price)
            elif has(oid):  # cancelling a filled order would abort the process (C++ throw)
                cancel(oid)
        return book.best_buy() or None, book.best_sell() or None

    return run, "C++ via ctypes, no trade output"


def _orderly_chaos(ops: list[Op]) -> tuple[Callable[[], Any], str]:
    from orderly_chaos import LimitOrderBook, Side, UnknownOrderIdError

    def run() -> Any:
        book = LimitOrderBook()
        limit, cancel = book.limit, book.cancel
        buy, sell = Side.BUY, Side.SELL
        for op, oid, is_buy, price, qty in ops:
            if op == PLACE:
                limit(buy if is_buy else sell, oid, qty, price)
            else:
                with suppress(UnknownOrderIdError):  # already filled
                    cancel(oid)
        result = book.best_buy(), book.best_sell()
        book.close()
        return result

    return run, "C++ via ctypes, no trade callback"


def _cython_orderbook(ops: list[Op]) -> tuple[Callable[[], Any], str]:
    from cython_orderbook import Order, OrderBook, OrderSide

    def run() -> Any:
        book = OrderBook()
        add, cancel = book.add_limit_order, book.cancel_order
        bid, ask = OrderSide.BID, OrderSide.ASK
        ids: dict[int, str] = {}  # its ids are its own strings
        for op, oid, is_buy, price, qty in ops:
            if op == PLACE:
                order = Order(bid if is_buy else ask, qty, price)
                ids[oid] = order.order_id
                add(order)
            else:
                cancel(ids.pop(oid))
        return book.best_bid(), book.best_ask()

    return run, "Cython"


def _akhil4n_orderbook(ops: list[Op]) -> tuple[Callable[[], Any], str]:
    import orderbook  # type: ignore[import-not-found]  # akhil4n-orderbook, a peer installed only for the bench

    if not hasattr(orderbook, "OrderBook") or not hasattr(orderbook, "OrderSide"):
        raise ImportError("module 'orderbook' is not akhil4n-orderbook")

    def run() -> Any:
        book = orderbook.OrderBook()
        add, cancel = book.add_limit_order, book.cancel_order
        bid, ask = orderbook.OrderSide.BID, orderbook.OrderSide.ASK
        make = orderbook.Order
        ids: dict[int, str] = {}
        for op, oid, is_buy, price, qty in ops:
            if op == PLACE:
                order = make(bid if is_buy else ask, price, qty)
                ids[oid] = order.order_id
                add(order)
            else:
                cancel(ids.pop(oid))
        return book.best_bid(), book.best_ask()

    return run, "pure Python"


def _lobby(ops: list[Op]) -> tuple[Callable[[], Any], str]:
    from lobby import OrderBook

    def run() -> Any:
        book = OrderBook(price_digits=0)  # integer ticks
        process, cancel = book.processOrder, book.cancelOrder
        for seq, (op, oid, is_buy, price, qty) in enumerate(ops, 1):
            side = "bid" if is_buy else "ask"
            if op == PLACE:
                quote = {"type": "limit", "side": side, "qty": qty, "price": price, "tid": oid % 997}
                quote["idNum"] = oid
                quote["timestamp"] = seq
                process(quote, True, False)
            else:
                cancel(side, oid, seq)
        return book.getBestBid(), book.getBestAsk()

    return run, "pure Python"


PEERS: list[tuple[str, Callable[[list[Op]], tuple[Callable[[], Any], str]]]] = [
    ("limit-order-book 2.0.0", _limit_order_book),
    ("orderly-chaos", _orderly_chaos),
    ("cython-orderbook", _cython_orderbook),
    ("akhil4n-orderbook", _akhil4n_orderbook),
    ("lobby", _lobby),
]


Engine = tuple[str, str, Callable[[], Any]]  # (name, note, run)

BUILT = "envx (commands built)"
PREBUILT = "envx (prebuilt)"


def measure(engines: list[Engine], n: int, runs: int, budget: float) -> dict[str, Any]:
    """Runs every engine once per round, `runs` rounds, so that load from elsewhere on the machine
    falls on all engines alike; an engine whose run exceeds `budget` seconds is not run again. Times are
    this process's CPU time: every engine runs in this one thread (the C++ peers through ctypes), and on
    a shared machine the wall clock would also count the time other processes held the core.
    Returns {key: (median ops/s, runs done, final best bid/ask) or the exception raised}."""
    rates: dict[str, list[float]] = {key: [] for key, _, _ in engines}
    finals: dict[str, Any] = {}
    failed: dict[str, Exception] = {}
    for _ in range(runs):
        for key, _, run in engines:
            if key in failed or (rates[key] and n / rates[key][-1] > budget):
                continue
            gc.collect()
            start = time.process_time()
            try:
                finals[key] = run()
            except Exception as error:
                failed[key] = error
                continue
            rates[key].append(n / (time.process_time() - start))
    return {
        key: failed[key] if key in failed else (statistics.median(rates[key]), len(rates[key]), finals[key])
        for key, _, _ in engines
    }


def trade_profile(ops: list[Op]) -> dict[str, int]:
    """What our engine actually did with the stream (counts of events by kind)."""
    book = ContinuousBook()
    counts: dict[str, int] = {}
    crossing_traded = 0
    for seq, (op, oid, is_buy, price, qty) in enumerate(ops, 1):
        side = BUY if is_buy else SELL
        command: Any = NewOrder(oid, oid % 997, side, price, qty) if op == PLACE else Cancel(oid)
        events = book.process(seq, seq, command)
        for e in events:
            counts[e[0]] = counts.get(e[0], 0) + 1
        if len(events) > 1 and events[1][0] == "trade":
            crossing_traded += 1
    counts["orders that traded on entry"] = crossing_traded
    counts["resting at end"] = len(book)
    return counts


def _fill_book(n: int, seed: int) -> ContinuousBook:
    """A book with `n` resting, non-crossing orders; commands are built inside the loop, so what the
    book keeps of them (ids, prices) is counted and the commands themselves are not."""
    rng = random.Random(seed)
    accounts = [f"acct-{i:05d}" for i in range(5_000)]
    book = ContinuousBook()
    process = book.process
    for i in range(1, n + 1):
        if rng.random() < 0.5:
            command = NewOrder(i, accounts[i % 5_000], BUY, MID - rng.randint(1, 1_000), 1 + i % 100)
        else:
            command = NewOrder(i, accounts[i % 5_000], SELL, MID + rng.randint(1, 1_000), 1 + i % 100)
        process(i, i, command)
    return book


def memory_with_resting(n: int, seed: int) -> tuple[float, float, float, float]:
    """For `n` resting orders in our book: (tracemalloc peak MiB, MiB held at the end, bytes per
    order held, growth of the process's peak RSS in MiB measured on a build without tracemalloc)."""
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    book = _fill_book(n, seed)
    rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    del book
    gc.collect()
    tracemalloc.start()
    book = _fill_book(n, seed)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(book) == n
    return peak / 2**20, current / 2**20, current / n, rss_growth


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--resting", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--budget", type=float, default=15.0, help="seconds; slower runs are not repeated")
    args = parser.parse_args(argv)

    ops, stats = make_stream(args.commands, args.seed)
    n = len(ops)
    print(f"python {sys.version.split()[0]}; stream of {n:,} commands (seed {args.seed}):")
    print(
        f"  {stats.passive:,} passive limits ({stats.passive / n:.0%}), {stats.crossing:,} crossing limits "
        f"({stats.crossing / n:.0%}), {stats.cancels:,} cancels ({stats.cancels / n:.0%})"
    )
    profile = trade_profile(ops)
    print("  our engine's events:", ", ".join(f"{k} {v:,}" for k, v in profile.items()))
    print()

    engines: list[Engine] = []
    unavailable: dict[str, str] = {}
    candidates = [(BUILT, _ours_building), (PREBUILT, _ours_prebuilt), *PEERS]
    for name, factory in candidates:
        try:
            run, note = factory(ops)
        except Exception as error:  # ImportError, OSError from a missing .so, ...
            unavailable[name] = f"not installable ({type(error).__name__}: {error})"
            continue
        engines.append((name, note, run))
    results = measure(engines, n, args.runs, args.budget)

    built, prebuilt = results[BUILT][0], results[PREBUILT][0]
    reference_final = results[BUILT][2]
    header = f"{'engine':<24} {'ops/s':>12} {'runs':>5} {'built/peer':>11} {'prebuilt/peer':>14}"
    header += f"  {'same best bid/ask':<18}"
    print(header, "notes")
    for name, note, _ in engines:
        result = results[name]
        if isinstance(result, Exception):
            why = f"failed: {type(result).__name__}: {result}"
            print(f"{name:<24} {'-':>12} {'-':>5} {'-':>11} {'-':>14}  {'-':<18} {why}")
            continue
        rate, done, final = result
        same = "yes" if final == reference_final else f"no: {final}"
        ratios = f"{built / rate:>10.2f}x {prebuilt / rate:>13.2f}x"
        print(f"{name:<24} {rate:>12,.0f} {done:>5} {ratios}  {same:<18} {note}")
    for name, why in unavailable.items():
        print(f"{name:<24} {'-':>12} {'-':>5} {'-':>11} {'-':>14}  {'-':<18} {why}")
    print("(ops/s: median over the runs of CPU time, interleaved across engines; built/peer: our rate with the command")
    print(" objects built in the timed loop, the fair comparison, divided by the engine's rate; prebuilt/peer:")
    print(" the same with our commands built before timing)")
    print()

    if args.resting:
        peak, current, per_order, rss = memory_with_resting(args.resting, args.seed)
        print(
            f"memory with {args.resting:,} resting orders in our book: tracemalloc peak {peak:,.1f} MiB, "
            f"held {current:,.1f} MiB ({per_order:,.0f} bytes/order); peak RSS grew by {rss:,.0f} MiB"
        )


if __name__ == "__main__":
    main()
