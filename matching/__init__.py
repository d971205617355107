"""Pure, deterministic trading engines: continuous book, listing, block negotiation, auctions.

Every engine has one core, `process(seq, ts, command) -> list of events`, plus `snapshot()`,
`restore(snapshot)` and `state_hash()`. Prices are integer ticks and quantities integer lots; nothing
here reads a clock, draws a random number, does I/O or imports another envx package.
"""

from .auction import AuctionHouse
from .base import Engine
from .block import BlockDesk
from .book import ContinuousBook
from .listing import ListingBook
from .marketdata import MarketData, depth, vwap
from .rules import CEA_BLOCK, CEA_LISTING, MarketRules

__all__ = [
    "CEA_BLOCK",
    "CEA_LISTING",
    "AuctionHouse",
    "BlockDesk",
    "ContinuousBook",
    "Engine",
    "ListingBook",
    "MarketData",
    "MarketRules",
    "depth",
    "vwap",
]
