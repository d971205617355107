"""Market data derived from events: OHLC, bars, the VWAP close over listing trades, depth."""

from __future__ import annotations

import pytest

from matching.book import ContinuousBook
from matching.commands import BUY, SELL, NewOrder, PostListing, Take
from matching.listing import ListingBook
from matching.marketdata import MarketData, depth, vwap


def test_vwap_rounds_half_up_on_the_tick_grid() -> None:
    assert vwap(10 * 3 + 11 * 1, 4) == 10  # 10.25
    assert vwap(10 + 11, 2) == 11  # 10.5 rounds up
    assert vwap(1000 * 3 + 1010 * 1, 4, tick=5) == 1005  # 1002.5 -> 1005 on a 5-tick grid
    with pytest.raises(ValueError):
        vwap(0, 0)


def test_close_is_the_vwap_of_listing_trades_only() -> None:
    listing = ListingBook()
    book = ContinuousBook()
    md = MarketData(previous_close=95)
    md.apply(listing.process(1, 0, PostListing(1, "S", SELL, 100, 30)))
    md.apply(listing.process(2, 0, PostListing(2, "S", SELL, 103, 10)))
    md.apply(listing.process(3, 0, Take(3, "B", 1, 30)))
    md.apply(listing.process(4, 0, Take(4, "B", 2, 10)))
    md.apply(book.process(1, 0, NewOrder(1, "S", SELL, 200, 5)))
    md.apply(book.process(2, 0, NewOrder(2, "B", BUY, 200, 5)))
    assert md.close() == 101  # (100*30 + 103*10) / 40 = 100.75
    assert md.ohlc()["volume"] == 45  # the continuous trade is in the quote, not in the close
    assert md.statistics()["listing"] == {"trades": 2, "volume": 40, "turnover": 4030}
    assert MarketData(previous_close=95).close() == 95


def test_ohlc_and_bars() -> None:
    book = ContinuousBook()
    md = MarketData(bar_interval=60)
    seq = 0
    for ts, price in ((5, 100), (30, 104), (61, 98), (119, 101), (130, 102)):
        seq += 1
        md.apply(book.process(seq, ts, NewOrder(seq * 2 - 1, "S", SELL, price, 1)))
        seq += 1
        md.apply(book.process(seq, ts, NewOrder(seq * 2 - 1, "B", BUY, price, 1)))
    assert md.ohlc() == {
        "open": 100,
        "high": 104,
        "low": 98,
        "last": 102,
        "volume": 5,
        "turnover": 505,
        "close": None,
        "previous_close": None,
    }
    assert md.bars == [[0, 100, 104, 100, 104, 2], [60, 98, 101, 98, 101, 2], [120, 102, 102, 102, 102, 1]]
    assert len(md.trades) == 5


def test_depth_is_best_five_by_default() -> None:
    book = ContinuousBook()
    for i in range(7):
        book.process(i + 1, 0, NewOrder(i + 1, "S", SELL, 100 + i, 1))
    assert [p for p, _, _ in depth(book)[SELL]] == [100, 101, 102, 103, 104]
    assert depth(book, 2)[BUY] == []
