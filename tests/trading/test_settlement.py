"""The settlement-leg builder (exchange/trading/settlement.py), pure: engine events in, ledger groups out.

No database, no writer: a real matching engine produces the events, `Book.stage` turns them into the
linked groups the sequencer would submit, the trade rows and the projection of the orders.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from exchange.trading.markets import Market
from exchange.trading.models import Trade
from exchange.trading.settlement import Book, Effect, Venue
from ledger import commands as lc
from matching import commands as mc
from matching.book import ContinuousBook
from matching.rules import MarketRules

SYSTEM = {"clearing": 1, "retired": 2, "fees": 3}
DAY = date(2025, 3, 4)
BUYER, SELLER = 10, 20  # participants; their accounts: holding 11/21, cash 12/22


def market(**kw: Any) -> Market:
    base: dict[str, Any] = {"id": "X.continuous", "instrument": "X", "mode": "continuous", "decimals": 0,
                            "rules": MarketRules(), "sessions": (), "fee_bps": 0, "t_plus_1": False,
                            "in_close": True}
    return Market(**{**base, **kw})


def ctx(pid: int, side: str, price: int, qty: int, hold: int, amount: int, **kw: Any) -> dict[str, Any]:
    return {"participant_id": pid, "kind": "order", "side": side, "price": price, "qty": qty, "hold_id": hold,
            "hold_amount": amount, "holding_account": pid + 1, "cash_account": pid + 2, "client_id": f"c{pid}",
            "fingerprint": "00", **kw}


def cross(m: Market, buy_qty: int = 10, sell_qty: int = 10, price: int = 500, buy: dict[str, Any] | None = None,
          ) -> tuple[Book, Any]:
    """A resting sell (id 1) and a crossing buy (id 2), staged one command at a time as the sequencer does."""
    engine, book = ContinuousBook(m.rules), Book(Venue.of(m, SYSTEM))
    sell = ctx(SELLER, mc.SELL, price, sell_qty, 101, sell_qty)
    book.stage([(1, 1, None, engine.process(1, 1, mc.NewOrder(1, SELLER, mc.SELL, price, sell_qty)), sell)], DAY)
    bctx = buy or ctx(BUYER, mc.BUY, price, buy_qty, 102, 10**9)
    events = engine.process(2, 2, mc.NewOrder(2, BUYER, mc.BUY, price, buy_qty))
    return book, book.stage([(2, 2, None, events, bctx)], DAY)


def test_a_trade_settles_delivery_versus_payment_in_one_group_with_fees_and_names_its_parties() -> None:
    book, batch = cross(market(fee_bps=10), price=1005)  # 10 t at 10.05: notional 100.50, fee 0.11 each side
    (group,) = [g for g in batch.groups if g.effect is Effect.TRADE]
    # One request, one ledger event (entry version 4 on this anonymous book: accounts, holds and amounts by
    # commitment) with every leg; both orders complete, so their holds post without keeping a remainder: what
    # is left goes back in this same event. Its metadata names neither party (the trade row below does, privately).
    (request,) = group.requests
    assert request.command == lc.Event("trade", (
        lc.PostHold(101, 10, keep_remainder=False), lc.Transfer(1, BUYER + 1, "X", 10),
        lc.PostHold(102, 10050 + 11, keep_remainder=False), lc.Transfer(1, SELLER + 2, "CNY", 10050 - 11),
        lc.Transfer(1, 3, "CNY", 22)), blinded=True, blind_amounts=True)
    assert request.client_id == "X.continuous:trade:1:0"
    assert request.meta == {"market": "X.continuous", "trade_id": 1, "price": 1005, "qty": 10}
    assert batch.trades() == [Trade("X.continuous", 1, 2, 2, "continuous", "X", 1005, 10, 10050, 2, 1, BUYER,
                                    SELLER, 11, 11, True, DAY)]
    # Both filled: the trade gave the remainders back, so no release is asked (it could only answer
    # "already resolved"), neither with the trade nor after it.
    assert group.resolves == (101, 102)
    assert batch.releases == [] and [g.effect for g in batch.groups] == [Effect.TRADE]
    assert {u.id: (u.status, u.filled_qty, u.fees) for u in batch.updates} == {1: ("filled", 10, 11),
                                                                            2: ("filled", 10, 11)}
    assert book.orders == {}  # finished orders leave the book


def test_term_pricing_and_the_t_plus_1_lock() -> None:
    # An emission right of 3 t/yr for a 5-year term at 20.00 per t·yr: 300.00; bought today, locked until tomorrow.
    _, batch = cross(market(years=5, t_plus_1=True), buy_qty=3, sell_qty=3, price=2000)
    (group,) = batch.groups
    legs = group.requests[0].command.legs
    assert legs[2] == lc.PostHold(102, 2000 * 3 * 5, keep_remainder=False)
    assert legs[-1] == lc.CreateHold("t1", BUYER + 1, 1, "X", 3)
    assert batch.trades()[0].notional == 30000


def test_a_partial_fill_keeps_the_rest_resting_and_its_hold() -> None:
    book, batch = cross(market(), buy_qty=4, sell_qty=10)
    # The buyer's hold is resolved by the trade (no release asked); the seller's rests on.
    assert batch.releases == [] and [g.effect for g in batch.groups] == [Effect.TRADE]
    assert book.orders[1].open_qty == 6 and book.orders[1].status == "open" and book.orders[1].hold_id == 101
    assert batch.groups[0].requests[0].command.legs[0] == lc.PostHold(101, 4, keep_remainder=True)


def test_a_resting_buy_filled_below_its_limit_keeps_only_what_its_rest_needs() -> None:
    # A buy of 10 at 6.00 (fee 0.1 %) rests; 4 sell at 5.00 against it: the buy is the maker, so 6.00. Then
    # a buy of 10 at 6.00 takes a sell resting at 5.00: taker, filled 4 at 5.00, 6 rest at 6.00.
    m = market(fee_bps=10)
    engine, book = ContinuousBook(m.rules), Book(Venue.of(m, SYSTEM))
    book.stage([(1, 1, None, engine.process(1, 1, mc.NewOrder(1, SELLER, mc.SELL, 500, 4)),
                 ctx(SELLER, mc.SELL, 500, 4, 101, 4))], DAY)
    events = engine.process(2, 2, mc.NewOrder(2, BUYER, mc.BUY, 600, 10))
    batch = book.stage([(2, 2, None, events, ctx(BUYER, mc.BUY, 600, 10, 102, 6000 + 6))], DAY)
    legs = batch.groups[0].requests[0].command.legs
    # paid 20.00 + 0.02; the 6 left can cost 36.00 + (fee of 56.00 = 0.06) - 0.02: keep 36.04, free 23.96 - 0.02
    assert legs[2] == lc.PostHold(102, 2000 + 2, keep_remainder=True)
    assert legs[3] == lc.TrimHold(102, 3600 + 4)
    # A reduce of the rest to 2: keep 12.00 + (fee of 32.00 = 0.04) - 0.02, at once, in its own request.
    events = engine.process(3, 3, mc.Reduce(2, 2, BUYER))
    batch = book.stage([(3, 3, None, events, None)], DAY)
    assert [r.command for g in batch.groups for r in g.requests] == [lc.TrimHold(102, 1200 + 2)]
    assert batch.groups[0].requests[0].client_id == "X.continuous:trim:hold:102:3"


def test_a_judicial_restoration_purchase_retires_what_it_buys_and_names_the_case_not_the_parties() -> None:
    purpose = {"retire": True, "beneficiary": "the public", "case": "(2025) 闽0402民初1号"}
    _, batch = cross(market(t_plus_1=True), buy=ctx(BUYER, mc.BUY, 500, 10, 102, 10**9, purpose=purpose))
    (group,) = [g for g in batch.groups if g.effect is Effect.TRADE]
    retire = group.requests[1]
    assert retire.command == lc.Retire(1, 2, "X", 10, "judicial_restoration", "the public")
    assert retire.meta["restoration"] == purpose and "buyer" not in retire.meta and "seller" not in retire.meta
    assert not any(isinstance(r.command, lc.CreateHold) for r in group.requests)  # nothing to lock: retired


def test_a_rejected_command_finishes_only_what_it_brought() -> None:
    m = market(rules=MarketRules(lot=5))
    engine, book = ContinuousBook(m.rules), Book(Venue.of(m, SYSTEM))
    events = engine.process(1, 1, mc.NewOrder(1, SELLER, mc.SELL, 500, 7))  # off the lot: refused
    batch = book.stage([(1, 1, None, events, ctx(SELLER, mc.SELL, 500, 7, 101, 7))], DAY)
    assert [(u.id, u.status) for u in batch.updates] == [(1, "rejected")]
    assert batch.refusals and batch.refusals[0][0] == 1
    assert [r.command for g in batch.groups for r in g.requests] == [lc.VoidHold(101)]  # nothing traded: at once


def test_a_release_waits_for_the_trades_only_if_its_order_traded_in_the_batch() -> None:
    m = market()
    engine, book = ContinuousBook(m.rules), Book(Venue.of(m, SYSTEM))
    other = 30
    book.stage([(1, 1, None, engine.process(1, 1, mc.NewOrder(1, SELLER, mc.SELL, 500, 4)),
                 ctx(SELLER, mc.SELL, 500, 4, 101, 4)),
                (3, 3, None, engine.process(3, 3, mc.NewOrder(3, other, mc.BUY, 400, 5)),
                 ctx(other, mc.BUY, 400, 5, 103, 2000))], DAY)
    # One batch: an IOC buy of 10 takes the 4 offered and ends (its rest cancelled), and the resting bid 3,
    # which trades nothing here, is cancelled.
    ioc = engine.process(4, 4, mc.NewOrder(4, BUYER, mc.BUY, 500, 10, mc.LIMIT, mc.IOC))
    cancel = engine.process(5, 5, mc.Cancel(3, other))
    batch = book.stage([(4, 4, None, ioc, ctx(BUYER, mc.BUY, 500, 10, 104, 5000)), (5, 5, None, cancel, None)],
                       DAY)
    # The seller's hold is resolved by the trade: nothing to release. The IOC's rest waits for its trade (a
    # refused trade would keep it); the cancelled bid's release goes to the ledger with the trade.
    assert [g.effect for g in batch.groups] == [Effect.TRADE, Effect.RELEASE]
    assert batch.groups[0].resolves == (101,) and batch.groups[1].requests[0].command == lc.VoidHold(103)
    assert [r.command for g in batch.releases for r in g.requests] == [lc.VoidHold(104)]
    assert {u.id: u.status for u in batch.updates} == {1: "filled", 4: "cancelled", 3: "cancelled"}
