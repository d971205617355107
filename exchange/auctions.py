"""One-way auctions (单向竞价): a seller (e.g. a government emission-right reserve) sells a lot.

Everything that can move value is pre-funded: the lot's units are held when it is announced, a
bidder's deposit is held when it registers, each bid holds its cash (price x quantity + fee). At
allocation the winning bids settle against the lot like trades; then unsold units, losing bids and
every deposit are released together. Times (bidding window, extension rounds) are the sequencer's.
"""

from __future__ import annotations

import time
from typing import Any

from exchange.errors import DomainError, Forbidden, Invalid, NotFound
from exchange.keys import Principal
from exchange.negotiation import submit_plain
from exchange.orders import _public, submit_new
from exchange.runtime import Runtime
from exchange.units import to_base, to_text
from matching import commands as mc

US = 1_000_000


def _auction_market(rt: Runtime, market_id: str) -> Any:
    seq = rt.exchange.get(market_id)
    if seq.market.mode != "auction":
        raise Invalid("wrong_mode", f"market {market_id} trades by {seq.market.mode}, not by auction")
    return seq


def _auction(seq: Any, auction_id: int) -> dict[str, Any]:
    a = seq.engine.auction(auction_id)
    if a is None:
        raise DomainError("unknown_auction", f"auction {auction_id} does not exist", 404)
    return a  # type: ignore[no-any-return]


def _seller_or_operator(who: Principal, a: dict[str, Any]) -> None:
    if who.kind != "operator" and who.participant_id != a["terms"]["seller"]:
        raise Forbidden("only the seller or an operator runs the auction")


async def announce(rt: Runtime, who: Principal, market_id: str, client_id: str, *, quantity: str, min_price: str,
                   increment: str, deposit: str, min_bid_quantity: str | None, cap_per_bidder: str | None,
                   max_bids_per_bidder: int, allocation: str, top_percent: int, extension_window_s: int,
                   extension_length_s: int, max_extensions: int, irrevocable: bool) -> dict[str, Any]:
    seq = _auction_market(rt, market_id)
    d = seq.market.decimals
    qty = to_base(quantity, d)
    terms = {"min_price": to_base(min_price, 2, field="min_price"),
             "increment": to_base(increment, 2, field="increment"),
             "deposit": to_base(deposit, 2, field="deposit", allow_zero=True),
             "min_bid_qty": to_base(min_bid_quantity, d) if min_bid_quantity else seq.market.rules.lot,
             "cap_per_bidder": to_base(cap_per_bidder, d) if cap_per_bidder else None,
             "max_bids_per_bidder": max_bids_per_bidder, "allocation": allocation, "top_percent": top_percent,
             "extension_window": extension_window_s * US, "extension_length": extension_length_s * US,
             "max_extensions": max_extensions, "irrevocable": irrevocable}
    pid = who.participant_id
    result = await submit_new(
        rt, who, market_id, client_id, kind="auction", side=mc.SELL, price=terms["min_price"], qty=qty,
        type_="auction", tif="auction", check=False,
        make=lambda aid: mc.Announce(aid, pid, qty, **terms),
        fp_payload={"op": "announce", "m": market_id, "qty": qty, **terms})
    return _public(result)


async def step(rt: Runtime, who: Principal, market_id: str, auction_id: int, client_id: str, action: str,
               duration_s: int | None = None) -> dict[str, Any]:
    """Phase changes run by the seller or an operator: registration, bidding, close, allocate, cancel."""
    seq = _auction_market(rt, market_id)
    _seller_or_operator(who, _auction(seq, auction_id))
    if action == "registration":
        make: Any = lambda _s: mc.OpenRegistration(auction_id)  # noqa: E731
    elif action == "bidding":
        if not duration_s:
            raise Invalid("duration_required", "opening the bidding window needs duration_seconds")
        end = time.time_ns() // 1000 + duration_s * US
        make = lambda _s: mc.OpenBidding(auction_id, end)  # noqa: E731
    elif action == "close":
        make = lambda _s: mc.CloseAuction(auction_id)  # noqa: E731
    elif action == "allocate":
        make = lambda _s: mc.Allocate(auction_id)  # noqa: E731
    elif action == "cancel":
        make = lambda _s: mc.CancelAuction(auction_id, "cancelled by " + who.kind)  # noqa: E731
    else:
        raise Invalid("invalid_action", "action is registration, bidding, close, allocate or cancel")
    out = await submit_plain(rt, who, market_id, client_id, make,
                             {"op": action, "m": market_id, "auction": auction_id, "d": duration_s})
    return {**out, "auction": view(rt, market_id, auction_id)}


async def register(rt: Runtime, who: Principal, market_id: str, auction_id: int, client_id: str) -> dict[str, Any]:
    seq = _auction_market(rt, market_id)
    a = _auction(seq, auction_id)
    deposit = int(a["terms"]["deposit"])
    pid = who.participant_id
    return _public(await submit_new(
        rt, who, market_id, client_id, kind="deposit", side=mc.BUY, price=deposit or None, qty=1, type_="deposit",
        tif="auction", check=False, parent=auction_id, hold_amount=deposit if deposit else None,
        make=lambda _s: mc.Register(auction_id, pid, deposit),
        fp_payload={"op": "register", "m": market_id, "auction": auction_id}))


async def bid(rt: Runtime, who: Principal, market_id: str, auction_id: int, client_id: str, *, price: str,
              quantity: str) -> dict[str, Any]:
    seq = _auction_market(rt, market_id)
    _auction(seq, auction_id)
    p, q = to_base(price, 2, field="price"), to_base(quantity, seq.market.decimals)
    pid = who.participant_id
    return _public(await submit_new(
        rt, who, market_id, client_id, kind="bid", side=mc.BUY, price=p, qty=q, type_="bid", tif="auction",
        check=False, parent=auction_id, make=lambda bid_id: mc.Bid(auction_id, bid_id, pid, p, q),
        fp_payload={"op": "bid", "m": market_id, "auction": auction_id, "p": p, "q": q}))


async def withdraw_bid(rt: Runtime, who: Principal, market_id: str, auction_id: int, bid_id: int,
                       client_id: str) -> dict[str, Any]:
    seq = _auction_market(rt, market_id)
    pid = who.participant_id

    async def own_bid() -> None:  # after the replay look-up; before the auction's phase or terms
        bids = {b[0]: b[1] for b in _auction(seq, auction_id)["bids"]}
        if bids.get(bid_id) != pid:  # another bidder's bid: as if there were none
            raise NotFound("bid", bid_id)

    return await submit_plain(rt, who, market_id, client_id, lambda _s: mc.WithdrawBid(auction_id, bid_id, pid),
                              {"op": "withdraw_bid", "m": market_id, "auction": auction_id, "bid": bid_id},
                              prepare=own_bid)


def view(rt: Runtime, market_id: str, auction_id: int) -> dict[str, Any]:
    seq = _auction_market(rt, market_id)
    a = _auction(seq, auction_id)
    d = seq.market.decimals
    t = a["terms"]
    # Public (getAuction has no key): terms, phase, counts and results; no participant ids.
    out = {"auction_id": auction_id, "phase": a["phase"], "end_ts": a["end_ts"], "extensions": a["extensions"],
           "quantity": to_text(t["qty"], d), "min_price": to_text(t["min_price"], 2),
           "increment": to_text(t["increment"], 2), "deposit": to_text(t["deposit"], 2),
           "allocation": t["allocation"], "registered": len(a["registered"]), "bids": len(a["bids"])}
    if a["phase"] == "allocated":
        out["allocations"] = [{"bid_id": b, "price": to_text(p, 2), "quantity": to_text(q, d)}
                              for b, _bidder, p, q in a["allocations"]]
    return out
