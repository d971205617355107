"""Block negotiation (大宗协议)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from matching import reasons as R
from matching.block import BlockDesk
from matching.commands import (
    BUY,
    DIRECTED,
    GROUP,
    SELL,
    Cancel,
    Confirm,
    Counter,
    Decline,
    EndOfDay,
    Halt,
    Quote,
    Respond,
)
from matching.events import as_dict
from matching.marketdata import MarketData
from matching.rules import CEA_BLOCK

MIN = CEA_BLOCK.min_qty  # 100,000 t


class Desk:
    def __init__(self, reference: int | None = 10_000) -> None:
        self.engine = BlockDesk(reference=reference)
        self.seq = 0
        self.next_id = 0
        self.log: list[tuple[Any, ...]] = []

    def __call__(self, command: Any) -> list[tuple[Any, ...]]:
        self.seq += 1
        events = self.engine.process(self.seq, self.seq * 10, command)
        self.log += events
        return events

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def quote(
        self, account: Any, side: str, price: int, qty: int, audience: str = "public", to: Any = ()
    ) -> int:
        qid = self.new_id()
        ev = self(Quote(qid, account, side, price, qty, audience, tuple(to)))
        assert ev[0][0] == "quoted", ev
        return qid

    def respond(self, quote_id: int, account: Any, price: int, qty: int) -> tuple[int, list[tuple[Any, ...]]]:
        did = self.new_id()
        return did, self(Respond(did, quote_id, account, price, qty))


def code(events: list[tuple[Any, ...]]) -> str:
    assert len(events) == 1 and events[0][0] == "rejected", events
    return events[0][2]


def test_trade_needs_both_confirmations() -> None:
    d = Desk()
    qid = d.quote("S", SELL, 10_000, 300_000)
    did, ev = d.respond(qid, "B", 9_900, 200_000)
    assert ev == [("deal_proposed", did, qid, "B", 9_900, 200_000)]
    # The responder already stands confirmed; it cannot confirm again, and nothing traded.
    assert code(d(Confirm(did, "B"))) == R.ALREADY_CONFIRMED
    ev = d(Confirm(did, "S"))
    assert [e[0] for e in ev] == ["deal_confirmed", "trade", "deal_closed"]
    t = as_dict(ev[1])
    assert (t["mode"], t["price"], t["qty"], t["maker_owner"], t["taker_owner"], t["taker_side"]) == (
        "block",
        9_900,
        200_000,
        "S",
        "B",
        BUY,
    )
    assert d.engine.quotes()[0]["qty"] == 100_000


def test_counter_offers_reset_confirmation_to_the_proposer() -> None:
    d = Desk()
    qid = d.quote("S", SELL, 10_000, 300_000)
    did, _ = d.respond(qid, "B", 9_000, 300_000)
    assert d(Counter(did, "S", 9_500, 300_000)) == [("deal_proposed", did, qid, "S", 9_500, 300_000)]
    assert code(d(Confirm(did, "S"))) == R.ALREADY_CONFIRMED
    assert d(Counter(did, "B", 9_400, 250_000))[0][3] == "B"
    ev = d(Confirm(did, "S"))
    assert ev[1][5:7] == (9_400, 250_000)
    # 50,000 left is below the block minimum: the quote ends with it.
    assert ev[-1] == ("cancelled", qid, "S", 50_000, "quote_exhausted")
    assert d.engine.quotes() == []


def test_directed_and_group_audiences() -> None:
    d = Desk()
    directed = d.quote("S", SELL, 10_000, MIN, DIRECTED, ["B1"])
    group = d.quote("S", SELL, 10_000, MIN, GROUP, ["B1", "B2"])
    assert code(d.respond(directed, "B2", 10_000, MIN)[1]) == R.NOT_IN_AUDIENCE
    assert d.respond(directed, "B1", 10_000, MIN)[1][0][0] == "deal_proposed"
    assert d.respond(group, "B2", 10_000, MIN)[1][0][0] == "deal_proposed"
    assert code(d.respond(group, "B3", 10_000, MIN)[1]) == R.NOT_IN_AUDIENCE
    assert [q["quote_id"] for q in d.engine.quotes("B2")] == [group]
    assert [q["quote_id"] for q in d.engine.quotes("B3")] == []
    for audience, parties in (("directed", ["B1", "B2"]), ("group", []), ("public", ["B1"]), ("x", [])):
        assert (
            code(d(Quote(d.new_id(), "S", SELL, 10_000, MIN, audience, tuple(parties)))) == R.INVALID_AUDIENCE
        )
    assert code(d(Quote(d.new_id(), "S", SELL, 10_000, MIN, GROUP, ("S",)))) == R.INVALID_AUDIENCE


def test_block_band_minimum_and_parties() -> None:
    d = Desk()
    assert code(d(Quote(d.new_id(), "S", SELL, 10_000, MIN - 1))) == R.QUANTITY_BELOW_MINIMUM
    assert code(d(Quote(d.new_id(), "S", SELL, 13_001, MIN))) == R.PRICE_OUT_OF_BAND
    qid = d.quote("S", SELL, 13_000, MIN * 2)  # +30 % is inside the block band
    assert code(d.respond(qid, "B", 6_999, MIN)[1]) == R.PRICE_OUT_OF_BAND
    assert code(d.respond(qid, "B", 10_000, MIN * 3)[1]) == R.QUANTITY_EXCEEDS_REMAINING
    assert code(d.respond(qid, "S", 10_000, MIN)[1]) == R.SELF_TRADE
    assert code(d.respond(999, "B", 10_000, MIN)[1]) == R.UNKNOWN_QUOTE
    did, _ = d.respond(qid, "B", 10_000, MIN)
    assert code(d(Confirm(did, "X"))) == R.NOT_A_PARTY
    assert code(d(Counter(did, "X", 10_000, MIN))) == R.NOT_A_PARTY
    assert code(d(Confirm(999, "S"))) == R.UNKNOWN_DEAL


def test_competing_deals_on_one_quote() -> None:
    d = Desk()
    qid = d.quote("S", SELL, 10_000, 250_000)
    first, _ = d.respond(qid, "B1", 10_000, 200_000)
    second, _ = d.respond(qid, "B2", 10_000, 200_000)
    d(Confirm(second, "S"))
    # Only 50,000 were left: below the minimum, so the quote and the first deal ended.
    assert d.engine.deal(first) is None
    assert ("deal_closed", first, "quote_exhausted") in d.log


def test_decline_withdraw_halt_and_end_of_day() -> None:
    d = Desk()
    qid = d.quote("S", SELL, 10_000, MIN)
    did, _ = d.respond(qid, "B", 10_000, MIN)
    assert d(Decline(did, "S")) == [("deal_closed", did, "declined")]
    did, _ = d.respond(qid, "B", 10_000, MIN)
    assert code(d(Cancel(qid, "B"))) == R.NOT_ORDER_OWNER
    assert d(Cancel(qid, "S")) == [
        ("cancelled", qid, "S", MIN, "requested"),
        ("deal_closed", did, "quote_withdrawn"),
    ]
    qid = d.quote("S", SELL, 10_000, MIN)
    did, _ = d.respond(qid, "B", 10_000, MIN)
    d(Halt("x"))
    assert code(d(Confirm(did, "S"))) == R.MARKET_HALTED
    assert d(EndOfDay()) == [("deal_closed", did, "end_of_day"), ("expired", qid, "S", MIN)]


def test_block_trades_stay_out_of_quote_and_close_and_snapshot_round_trips() -> None:
    d = Desk()
    qid = d.quote("S", SELL, 10_000, MIN)
    did, _ = d.respond(qid, "B", 9_000, MIN)
    snap = json.loads(json.dumps(d.engine.snapshot()))
    again = BlockDesk.restore(snap)
    assert again.state_hash() == d.engine.state_hash()
    assert again.deal(did) == d.engine.deal(did)
    d(Confirm(did, "S"))
    md = MarketData(previous_close=9_800)
    md.apply(d.log)
    assert md.last is None and md.volume == 0
    assert md.close() == 9_800
    assert md.statistics() == {"block": {"trades": 1, "volume": MIN, "turnover": 9_000 * MIN}}


steps = st.lists(
    st.tuples(
        st.integers(0, 9), st.integers(0, 3), st.integers(-4, 4), st.integers(1, 4), st.integers(0, 99)
    ),
    min_size=10,
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(steps=steps, cut=st.integers(0, 1000))
def test_random_negotiations_conserve_quantity_and_replay(
    steps: list[tuple[int, int, int, int, int]], cut: int
) -> None:
    desk = BlockDesk(reference=10_000)
    commands: list[Any] = []
    accounts = ("A", "B", "C", "D")
    for i, (kind, who, dp, lots, pick) in enumerate(steps, 1):
        account, price, qty = accounts[who], 10_000 + dp * 500, lots * MIN
        quotes = [q["quote_id"] for q in desk.quotes()]
        deals = sorted(desk._deals)  # test-only peek: which negotiations are open
        if kind < 3 or not quotes:
            command: Any = Quote(i, account, SELL if pick % 2 else BUY, price, qty)
        elif kind < 5:
            command = Respond(i, quotes[pick % len(quotes)], account, price, qty)
        elif kind < 7 and deals:
            deal = desk.deal(deals[pick % len(deals)])
            assert deal is not None
            quoter = next(q["account"] for q in desk.quotes() if q["quote_id"] == deal["quote_id"])
            command = Confirm(deal["deal_id"], quoter if pick % 3 else deal["responder"])
        elif kind < 8 and deals:
            command = Counter(deals[pick % len(deals)], account, price, qty)
        else:
            command = Cancel(quotes[pick % len(quotes)])
        commands.append(command)
        desk.process(len(commands), 0, command)
    # Conservation per quote: quoted = traded + what is open + what was cancelled or expired.
    head = BlockDesk(reference=10_000)
    log: list[tuple[Any, ...]] = []
    for seq, c in enumerate(commands, 1):
        log += head.process(seq, 0, c)
    quoted = {e[1]: e[5] for e in log if e[0] == "quoted"}
    traded: dict[int, int] = {}
    for e in log:
        if e[0] == "trade":
            traded[e[8]] = traded.get(e[8], 0) + e[6]
    closed = {e[1]: e[3] for e in log if e[0] == "cancelled"}
    open_qty = {q["quote_id"]: q["qty"] for q in head.quotes()}
    for qid, qty in quoted.items():
        assert qty == traded.get(qid, 0) + open_qty.get(qid, 0) + closed.get(qid, 0), qid
    # Snapshot at a cut, replay the rest: the same state.
    cut %= len(commands) + 1
    first = BlockDesk(reference=10_000)
    for seq, c in enumerate(commands[:cut], 1):
        first.process(seq, 0, c)
    resumed = BlockDesk.restore(json.loads(json.dumps(first.snapshot())))
    for seq, c in enumerate(commands[cut:], cut + 1):
        resumed.process(seq, 0, c)
    assert resumed.state_hash() == desk.state_hash() == head.state_hash()
