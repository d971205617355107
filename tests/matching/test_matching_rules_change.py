"""New trading rules mid-life (an amendment taking effect): what rests off the new tick or lot is cancelled
with reason `rules_amended`, the rest keeps its place, the band follows, and replay reproduces it all."""

from __future__ import annotations

import json
from typing import Any

from matching import reasons as R
from matching.auction import AuctionHouse
from matching.block import BlockDesk
from matching.book import ContinuousBook
from matching.commands import BUY, SELL, Announce, Cancel, NewOrder, PostListing, Quote, Respond, SetRules
from matching.events import CANCELLED, DEAL_CLOSED, RULES_AMENDED, RULES_SET
from matching.listing import ListingBook
from matching.rules import MarketRules

TICK5 = MarketRules(tick=5, lot=1, band_bps=1000).to_dict()


def run(engine: Any, commands: list[Any]) -> list[list[tuple[Any, ...]]]:
    return [engine.process(seq, seq, c) for seq, c in enumerate(commands, start=engine.last_seq + 1)]


def test_book_cancels_orders_off_the_new_tick_and_keeps_the_others_in_priority() -> None:
    book = ContinuousBook(MarketRules(tick=1, band_bps=1000), reference=1000)
    run(book, [NewOrder(1, "a", BUY, 995, 10), NewOrder(2, "b", BUY, 995, 5), NewOrder(3, "c", BUY, 996, 7),
               NewOrder(4, "d", SELL, 1010, 3), NewOrder(5, "e", BUY, 995, 2)])
    (events,) = run(book, [SetRules(TICK5)])
    assert events[0][0] == RULES_SET and events[0][2:] == (900, 1100)  # band on the new grid
    assert [(e[0], e[1], e[4]) for e in events[1:]] == [(CANCELLED, 3, RULES_AMENDED)]
    assert book.depth(5)[BUY] == [(995, 17, 3)]
    assert [o["order_id"] for o in book.open_orders(BUY)] == [1, 2, 5]  # time priority kept
    (off,) = run(book, [NewOrder(6, "f", SELL, 1012, 1)])
    assert off[0][2] == R.OFF_TICK
    again = ContinuousBook.restore(json.loads(json.dumps(book.snapshot())))
    assert again.state_hash() == book.state_hash()


def test_listing_and_block_end_what_is_off_the_new_grid() -> None:
    listings = ListingBook(MarketRules(tick=1), reference=None)
    run(listings, [PostListing(1, "a", SELL, 1001, 10), PostListing(2, "a", SELL, 1005, 10)])
    (events,) = run(listings, [SetRules(TICK5)])
    assert [(e[0], e[1]) for e in events[1:]] == [(CANCELLED, 1)]
    assert [x["listing_id"] for x in listings.listings()] == [2]

    desk = BlockDesk(MarketRules(tick=1, min_qty=100), reference=None)
    run(desk, [Quote(1, "s", SELL, 1000, 300), Quote(2, "s", SELL, 1003, 300), Respond(3, 1, "b", 1001, 100),
               Respond(4, 1, "b", 1000, 100)])
    (events,) = run(desk, [SetRules(MarketRules(tick=5, min_qty=100).to_dict())])
    kinds = [(e[0], e[1]) for e in events[1:]]
    assert (CANCELLED, 2) in kinds and (DEAL_CLOSED, 3) in kinds and (DEAL_CLOSED, 4) not in kinds
    assert [q["quote_id"] for q in desk.quotes()] == [1] and desk.deal(4) is not None


def test_auction_lots_keep_their_announced_terms_and_bad_rules_are_refused() -> None:
    house = AuctionHouse(MarketRules(tick=1), reference=None)
    run(house, [Announce(1, "seller", 10, 1001, 1)])
    (events,) = run(house, [SetRules(TICK5)])
    assert [e[0] for e in events] == [RULES_SET]
    (bad,) = run(house, [SetRules({**TICK5, "tick": 0})])
    assert bad[0][2] == R.INVALID_RULES and house.rules.tick == 5
    (unknown,) = run(house, [Cancel(99)])
    assert unknown[0][0] == "rejected"
