"""The markets running in this process, typed. The runtime (exchange/core/runtime.py) holds the hub as its own
`Markets` protocol, below trading, so to it a sequencer is an `object`; trading reaches its sequencers here,
checked: the primary's `MarketSequencer`, or on a read replica (ENVX_READ_ONLY) the `MarketFollower` that
follows the primary's journal and answers the reads that come from a market's engine."""

from __future__ import annotations

from exchange.core.runtime import Runtime
from exchange.trading.pipeline import MarketSequencer
from exchange.trading.replica import MarketFollower, ReadOnly

Running = MarketSequencer | MarketFollower


def _checked(seq: object) -> Running:
    assert isinstance(seq, MarketSequencer | MarketFollower), type(seq)  # the hubs run nothing else
    return seq


def market(rt: Runtime, market_id: str) -> Running:
    """The market's sequencer or, on a read replica, its follower: for reads of its engine (depth, listings,
    quotes, auctions). NotFound (404) for a market that does not run here."""
    return _checked(rt.exchange.get(market_id))


def sequencer(rt: Runtime, market_id: str) -> MarketSequencer:
    """The market's sequencer, which takes its commands: 404 for a market that does not run here, 503
    `read_only` in a read-only process (whose edge refuses every mutation before this)."""
    seq = market(rt, market_id)
    if isinstance(seq, MarketFollower):
        raise ReadOnly()
    return seq


def sequencers(rt: Runtime) -> list[MarketSequencer]:
    """Every market's sequencer in this process (none in a read-only one: its followers take no commands)."""
    return [s for s in map(_checked, rt.exchange.sequencers.values()) if isinstance(s, MarketSequencer)]
