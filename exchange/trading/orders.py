"""Order entry: validate, pre-fund with a ledger hold, hand to the market's sequencer.

Pre-funded only: a buy holds its cash (limit notional + fee), a sell holds its units, before the
order reaches the engine. The hold is released by the sequencer when the order ends (filled,
cancelled, expired, rejected). A hold whose order never reached the journal (crash in between) is
voided when the market hub starts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exchange.core import units
from exchange.core.errors import DomainError, Forbidden, Invalid, NotFound
from exchange.core.idempotency import fingerprint, internal, stored_answer
from exchange.core.principal import Principal
from exchange.core.refusal_text import refused
from exchange.core.runtime import Runtime, ledger_error
from exchange.core.store import Answer
from exchange.core.units import to_base
from exchange.registry import expiry, participants
from exchange.trading import inflight, repository, running
from exchange.trading.models import EventView, Listing, Order, ShownOrder, Submitted, sale_of
from exchange.trading.pipeline import Answer as Sequenced
from exchange.trading.pipeline import Keep, MarketSequencer, Replay
from exchange.trading.pricing import buy_hold
from ledger import commands as lc
from ledger.state import Rejection
from ledger.writer import WriterStopped
from matching import commands as mc
from matching import events as ev
from matching.listing import ListingBook
from matching.rules import NO_LIMIT

TRADERS = participants.HOLDER_KINDS
SEES_ALL = participants.SEES_ALL  # oversight sees every order


# The engine's refusal of a command before it is funded, as (code, message), or None.
Precheck = Callable[[], tuple[str, str] | None]


@dataclass(frozen=True, slots=True)
class EscrowSale:
    """A sale on a pledgee's behalf (exchange.pledging): the named serials of the pledge's lot, sold
    from the bank's escrow account, the cash paid into it; the order is marked as the enforcement
    sale of the registration (`purpose.enforcement`)."""

    account: int
    serials: tuple[tuple[int, int], ...]
    pledge_id: int
    pledge_number: str

    def purpose(self) -> dict[str, Any]:
        return {"enforcement": {"pledge_id": self.pledge_id, "pledge_number": self.pledge_number,
                                "escrow": self.account}}


@dataclass(slots=True)
class KeptAnswer:
    """A keyed request's answer, kept with its order (exchange.trading.pipeline.Keep: in the projection's own
    transaction) under (actor, client id, request digest). `render` makes the answer's bytes of the order's
    answer; `answer` is what was kept once the order is answered -- or, for a retry of an order journaled
    before, the answer kept then under the same digest. None: nothing was kept for this request (a twin in
    flight answered it, the answer could not be rendered, an earlier answer was kept under other bytes)."""

    actor: str
    client_id: str
    digest: bytes
    render: Callable[[Submitted], bytes]
    answer: Answer | None = None


def enforcement_of(seq: running.Running, order_id: int) -> str | None:
    """The pledge registration a resting listing or auction lot is the enforcement sale of (public, as
    the register is), or None. A read replica's follower keeps the open orders of its listing and auction
    markets for this (exchange/trading/replica.py)."""
    o = seq.orders.get(order_id)
    return sale_of(o.purpose) if o is not None else None


def _reason_error(code: str, message: str, decimals: int) -> DomainError:
    """An engine's refusal (a matching.reasons code) as a problem: its status is the code's, its marked
    numbers in the market's units (exchange.core.units.speak)."""
    return DomainError(code, units.speak(message, decimals))


async def _order_row(rt: Runtime, market_id: str, order_id: int) -> Order | None:
    async with rt.read() as conn:
        return await repository.order(conn, market_id, order_id)


# Who sent what, in the engine's words: in an answer the caller's own `owner` is its participant id; the
# other side of a trade is not named (trades are anonymous; the caller knows its own order by its id).
_OWNER_FIELDS = {"owner": "participant_id"}
_COUNTERPARTY_FIELDS = frozenset({"maker_owner", "taker_owner"})
# A trade's order of each side, by the field naming that side's owner.
_SIDE_ORDERS = {"maker_id": "maker_owner", "taker_id": "taker_owner"}


# Each event kind's fields as _events_view answers them (owner renamed, counterparties left out), and those it
# leaves out when they are another party's (so an answer may lack them): what the OpenAPI document lists.
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(_OWNER_FIELDS.get(f, f) for f in names if f not in _COUNTERPARTY_FIELDS)
    for kind, names in ev.FIELDS.items()}
SOMETIMES_HIDDEN = frozenset({*_SIDE_ORDERS, "bidder"})


def _events_view(events: list[ev.Event], decimals: int, who: Principal) -> list[EventView]:
    """Events of the caller's own command, in its units (exchange.core.units.event_fields): amounts, prices and
    quantities as decimal strings, times in ISO 8601, refusals spoken; base units never leak. The other side
    is never named to a party: neither its order in a trade (`maker_id`/`taker_id` of an order not the
    caller's) nor another bidder (`bidder`, as a seller's allocation has it); oversight sees every side."""
    sees_all = who.kind in SEES_ALL
    out = []
    for e in events:
        d = units.event_fields(ev.as_dict(e), decimals)
        hidden = set(_COUNTERPARTY_FIELDS)
        if not sees_all:
            hidden |= {k for k, owner in _SIDE_ORDERS.items() if k in d and d.get(owner) != who.participant_id}
            if "bidder" in d and d["bidder"] != who.participant_id:
                hidden.add("bidder")
        out.append({_OWNER_FIELDS.get(k, k): v for k, v in d.items() if k not in hidden})
    return out


def _gate(seq: MarketSequencer) -> None:
    if getattr(seq, "stopped", None) is not None:  # before any hold is created
        raise seq.stopped_error()
    if seq.halted or seq.engine.halted:
        raise DomainError("market_halted", f"market {seq.market.id} is halted")
    if not seq.session_open:
        raise DomainError("outside_session", f"market {seq.market.id} is not in a trading session")


async def submit_new(rt: Runtime, who: Principal, market_id: str, client_id: str, *, kind: str, side: str,
                     price: int | None, qty: int, make: Any, type_: str = "limit", tif: str = "day",
                     hold_price: int | None = None, purpose: dict[str, Any] | None = None,
                     fp_payload: dict[str, Any], check: bool = True, parent: int | None = None,
                     hold_amount: int | None = None, escrow: EscrowSale | None = None,
                     precheck: Precheck | None = None, keep: KeptAnswer | None = None) -> Submitted:
    """Shared path of orders, listings, takes and auction lots, deposits and bids: idempotency, gates,
    hold, sequencer, answer. With `escrow`, a sell on a pledgee's behalf from its escrow account.
    `precheck`: the engine's own rules for this command (an auction's), asked before anything is funded.
    `keep`: the answer to keep with the order, or to find kept for a retry (KeptAnswer)."""
    if who.kind not in TRADERS:
        raise Forbidden("this participant kind does not trade")
    return await inflight.once(rt, ("order", who.participant_id, client_id), fingerprint(fp_payload).hex(),
                               lambda: _submit_new(rt, who, market_id, client_id, kind=kind, side=side, price=price,
                                                   qty=qty, make=make, type_=type_, tif=tif, hold_price=hold_price,
                                                   purpose=purpose, fp_payload=fp_payload, check=check,
                                                   parent=parent, hold_amount=hold_amount, escrow=escrow,
                                                   precheck=precheck, keep=keep))


async def _submit_new(rt: Runtime, who: Principal, market_id: str, client_id: str, *, kind: str, side: str,
                      price: int | None, qty: int, make: Any, type_: str, tif: str, hold_price: int | None,
                      purpose: dict[str, Any] | None, fp_payload: dict[str, Any], check: bool = True,
                      parent: int | None = None, hold_amount: int | None = None,
                      escrow: EscrowSale | None = None, precheck: Precheck | None = None,
                      keep: KeptAnswer | None = None) -> Submitted:
    seq = running.sequencer(rt, market_id)
    m = seq.market
    fp = fingerprint(fp_payload)
    try:
        _gate(seq)
        problem: tuple[str, str] | None = m.rules.check(price, qty, seq.engine.band) if check else None
        if problem is not None:
            raise _reason_error(*problem, m.decimals)
        # The auction's own rules before its cash: a command they refuse is journaled unfunded, as the
        # refusal it is (matching.commands.Refused), so that its retries get the same refusal.
        refusal = precheck() if precheck is not None else None
        if refusal is not None:
            make = _refused(*refusal)
            amount, instrument, account = 0, "CNY", who.cash_account
            purpose = escrow.purpose() if escrow is not None else purpose
        elif hold_amount is not None:  # a fixed amount of cash (a deposit, a raise's top-up); 0: nothing to hold
            amount, instrument, account = hold_amount, "CNY", who.cash_account
        elif side == mc.BUY:
            unit_price = hold_price if hold_price is not None else price
            if unit_price is None or unit_price >= NO_LIMIT:
                raise DomainError("no_reference_price", "a market buy needs a price band or resting offers to fund")
            amount, instrument = buy_hold(unit_price, qty, m.decimals, m.fee_bps, m.years), "CNY"
            account = who.cash_account
        elif escrow is not None:
            amount, instrument, account = qty, m.instrument, escrow.account
            purpose = escrow.purpose()
        else:
            amount, instrument, account = qty, m.instrument, who.holding_account
        if account is None and refusal is None:
            raise DomainError("no_account", "this participant has no account for that side")
        if instrument != "CNY" and amount and m.expires:  # units of a term that ended cannot move
            await expiry.refuse_ended(rt, account, instrument, escrow.serials if escrow else None,
                                      held=escrow is not None)
    except DomainError:
        # A retry of an order accepted before the market closed or moved still gets its first answer.
        answer = await journaled_answer(rt, who, client_id, fp, m.decimals, keep)
        if answer is not None:
            return answer
        raise
    return await sequence_funded(rt, who, seq, client_id, fp, kind=kind, side=side, price=price, qty=qty,
                                 make=make, type_=type_, tif=tif, purpose=purpose, parent=parent, amount=amount,
                                 instrument=instrument, account=account, escrow=escrow, keep=keep)


async def sequence_funded(rt: Runtime, who: Principal, seq: MarketSequencer, client_id: str, fp: bytes, *,
                          kind: str, side: str, price: int | None, qty: int, make: Any, type_: str, tif: str,
                          purpose: dict[str, Any] | None, parent: int | None, amount: int, instrument: str,
                          account: int | None, escrow: EscrowSale | None = None,
                          keep: KeptAnswer | None = None) -> Submitted:
    """An order that passed its checks: funded by the sequencer (its hold batched with the other orders the
    sequencer takes at once), journaled, matched and answered (`queue_funded`, then its `outcome`).
    With `keep`, its answer is kept with its projection (KeptAnswer)."""
    try:
        queued = queue_funded(rt, who, seq, client_id, fp, kind=kind, side=side, price=price, qty=qty, make=make,
                              type_=type_, tif=tif, purpose=purpose, parent=parent, amount=amount,
                              instrument=instrument, account=account, escrow=escrow, keep=keep)
    except DomainError as exc:  # the market is not running: as a failure of the queued order
        return await Queued.failed(rt, who, seq, client_id, fp, keep, exc)
    return await queued.outcome()


def queue_funded(rt: Runtime, who: Principal, seq: MarketSequencer, client_id: str, fp: bytes, *,
                 kind: str, side: str, price: int | None, qty: int, make: Any, type_: str, tif: str,
                 purpose: dict[str, Any] | None, parent: int | None, amount: int, instrument: str,
                 account: int | None, escrow: EscrowSale | None = None,
                 keep: KeptAnswer | None = None) -> Queued:
    """Hand a checked order to the market's sequencer, without waiting: orders queued back to back are queued in
    that order (exchange/trading/batches.py). Raises DomainError if the market is not running."""
    market_id = seq.market.id
    m = seq.market
    # The sequencer looks the client id up and creates the hold, batched with the other orders it takes
    # at once. A fresh nonce: a retry after a crash must not reuse a hold the hub has since voided.
    hold = rt.with_provenance([lc.Request(
        who.actor, lc.CreateHold("order", account, rt.system["clearing"], instrument, amount,
                                 escrow.serials if escrow else ()),
        f"hold:{market_id}:{client_id}:{seq.nonce()}",
        {"market": market_id, "client_id": client_id})])[0] if amount and account is not None else None
    # An enforcement sale delivers from the escrow and is paid into it (sequencer.accounts_of after a restart).
    ctx: dict[str, Any] = {"participant_id": who.participant_id, "kind": kind, "side": side, "type": type_, "tif": tif,
           "price": price, "qty": qty, "hold_id": None, "hold_amount": amount,
           "holding_account": escrow.account if escrow else who.holding_account,
           "cash_account": escrow.account if escrow else who.cash_account, "client_id": client_id,
           "fingerprint": fp.hex(), "purpose": purpose, "parent": parent}
    shown: list[Submitted] = []  # the answer, made once: for the bytes kept in the sequencer, and for the caller

    def answer(out: Sequenced) -> Submitted:
        if not shown:
            order_id, events, changed = out
            # The projection is committed (or being committed, when its answer is kept with it): the answer is
            # what the sequencer wrote, not a re-read (a raise's one hold, once merged, is the update's).
            row = Order(order_id, market_id, who.participant_id, kind, side, type_, tif, price, qty, qty, 0, 0, 0,
                        "open", None, ctx["hold_id"], amount, seq.trading_day, client_id, parent, purpose,
                        fp).updated(changed)
            shown.append(Submitted(ShownOrder(row, m.decimals), _events_view(events, m.decimals, who)))
        return shown[0]

    kept = None
    if keep is not None:
        render = keep.render
        kept = Keep(keep.actor, keep.client_id, keep.digest, lambda out: render(answer(out)))
    future = seq.queue_funded(make, ctx, hold=hold, lookup=(who.participant_id, client_id),
                              actor=who.participant_id, keep=kept)
    return Queued(rt, who, seq, client_id, fp, account, ctx, keep, kept, answer, future)


@dataclass(slots=True)
class Queued:
    """An order with its market's sequencer (`queue_funded`): `outcome()` awaits its answer; once its future is
    done, `settled()` gives it without a coroutine (None: it failed -- then `outcome()` says how)."""

    rt: Runtime
    who: Principal
    seq: MarketSequencer
    client_id: str
    fp: bytes
    account: int | None
    ctx: dict[str, Any]
    keep: KeptAnswer | None
    kept: Keep | None
    answer: Callable[[Sequenced], Submitted]
    future: asyncio.Future[Sequenced | Replay | int | list[Sequenced]]

    def settled(self) -> Submitted | None:
        """The answer of a done future that did not fail (a new order's, or a retry's replay)."""
        f = self.future
        if f.cancelled() or f.exception() is not None:
            return None
        out = f.result()
        assert not isinstance(out, int | list)
        if self.keep is not None and self.kept is not None:
            self.keep.answer = self.kept.kept
        if isinstance(out, Replay):
            return _replayed(out.order, self.fp, self.seq.market.decimals)
        return self.answer(out)

    async def outcome(self) -> Submitted:
        try:
            await self.future
        except Rejection as rej:  # the hold was refused (insufficient_available, frozen units, ...): the caller's own
            raise refused(rej, own=() if self.account is None else (self.account,)) from None
        except Exception as exc:
            await _void_unjournaled(self.rt, self.who, self.client_id, self.ctx.get("hold_id"))
            if isinstance(exc, DomainError):  # market_unavailable or market_stopped, from the sequencer
                return await Queued.failed(self.rt, self.who, self.seq, self.client_id, self.fp, self.keep, exc)
            if isinstance(exc, WriterStopped):  # the hold met a stopped ledger: a bug elsewhere, never a 4xx
                raise ledger_error(exc) from None
            raise DomainError("market_unavailable", f"market {self.seq.market.id} could not take the order now "
                              f"({exc}); retry with the same Idempotency-Key", 503) from None
        answered = self.settled()
        assert answered is not None
        return answered

    @staticmethod
    async def failed(rt: Runtime, who: Principal, seq: MarketSequencer, client_id: str, fp: bytes,
                     keep: KeptAnswer | None, exc: DomainError) -> Submitted:
        """The market could not take the order (not running, stopped, unavailable): `exc` -- but a retry of an
        order answered before gets that answer (the edge left it here), not a replay of a journaled order
        nobody was answered."""
        if keep is not None:
            with contextlib.suppress(Exception):
                first = await journaled_answer(rt, who, client_id, fp, seq.market.decimals, keep)
                if first is not None and keep.answer is not None:
                    return first
            keep.answer = None
        raise exc


def _refused(code: str, message: str) -> Callable[[int], mc.Refused]:
    return lambda ref: mc.Refused(ref, code, message)


def _replayed(row: Order, fp: bytes, decimals: int) -> Submitted:
    if row.fingerprint != fp:
        raise DomainError("idempotency_conflict", "this client id was already used for a different request")
    return Submitted(ShownOrder(row, decimals), [], replayed=True)


async def _journaled_row(rt: Runtime, who: Principal, client_id: str) -> Order | None:
    """The order journaled under this client id, if any (off the hot path: the sequencer batches it)."""
    async with rt.read() as conn:
        return await repository.order_by_client(conn, who.participant_id, client_id)


async def journaled_answer(rt: Runtime, who: Principal, client_id: str, fp: bytes, decimals: int,
                           keep: KeptAnswer | None = None) -> Submitted | None:
    """On refusal paths only: the answer of an order already journaled under this client id, if any; with
    `keep`, also the answer kept with it for this very request (`keep.answer`)."""
    async with rt.read() as conn:
        row = await repository.order_by_client(conn, who.participant_id, client_id)
        if row is not None and keep is not None:
            keep.answer = await stored_answer(conn, keep.actor, keep.client_id, keep.digest)
    return None if row is None else _replayed(row, fp, decimals)


async def _void_unjournaled(rt: Runtime, who: Principal, client_id: str, hold_id: int | None) -> None:
    """Void the hold only if the order surely never reached the journal; if it did (or we cannot tell),
    recovery settles or cancels it, and the hub voids holds of orders never journaled when it starts.
    Voiding a journaled order's hold would leave it unfunded."""
    if hold_id is None:
        return
    try:
        if await _journaled_row(rt, who, client_id) is None:
            await rt.submit(lc.Request(who.actor, lc.VoidHold(hold_id), internal("void", hold_id)))
    except Exception:
        pass


async def stored_refusal(rt: Runtime, market_id: str, seq: int) -> DomainError | None:
    """How the engine refused the journaled command `seq`, as the very problem its first answer was."""
    async with rt.read() as conn:
        row = await repository.refusal(conn, market_id, seq)
    return None if row is None else _reason_error(*row, running.market(rt, market_id).market.decimals)


async def place_order(rt: Runtime, who: Principal, market_id: str, client_id: str, *, side: str, type_: str,
                      tif: str, price: str | None, quantity: str, stp: str | None,
                      purpose: dict[str, Any] | None = None, keep: KeptAnswer | None = None) -> Submitted:
    """A new order of a continuous market. `keep`: its answer to keep with it (KeptAnswer)."""
    seq = running.sequencer(rt, market_id)
    m = seq.market
    if m.mode != "continuous":
        raise Invalid("wrong_mode", f"market {market_id} trades by {m.mode}, not by order book")
    qty = to_base(quantity, m.decimals)
    hold_price = None
    if type_ == mc.LIMIT:
        if price is None:
            raise Invalid("price_required", "a limit order needs a price")
        price_fen: int | None = to_base(price, 2, field="price")
    else:
        price_fen = None
        if side == mc.BUY:  # fund up to the worst price the order may reach (best N levels, else the band)
            asks = seq.depth(m.rules.best_n)["asks"]
            hold_price = max((lvl[0] for lvl in asks), default=None) or seq.engine.band[1]
    if stp is not None and stp not in mc.STP_MODES:
        raise Invalid("invalid_stp", f"stp must be one of {', '.join(mc.STP_MODES)}")
    pid = who.participant_id

    def make(order_id: int) -> mc.NewOrder:
        return mc.NewOrder(order_id, pid, side, price_fen or 0, qty, type_, tif, stp)

    return await submit_new(
        rt, who, market_id, client_id, kind="order", side=side, price=price_fen, qty=qty, make=make, type_=type_,
        tif=tif, hold_price=hold_price, purpose=purpose,
        fp_payload={"op": "order", "m": market_id, "side": side, "type": type_, "tif": tif, "price": price_fen,
                    "qty": qty, "stp": stp, "purpose": purpose}, keep=keep)


async def post_listing(rt: Runtime, who: Principal, market_id: str, client_id: str, *, side: str, price: str,
                       quantity: str, escrow: EscrowSale | None = None) -> dict[str, Any]:
    """new_listing's answer as a dict (exchange.pledging's enforcement sale reads it so)."""
    return (await new_listing(rt, who, market_id, client_id, side=side, price=price, quantity=quantity,
                              escrow=escrow)).as_dict()


async def new_listing(rt: Runtime, who: Principal, market_id: str, client_id: str, *, side: str, price: str,
                      quantity: str, escrow: EscrowSale | None = None) -> Submitted:
    seq = running.sequencer(rt, market_id)
    m = seq.market
    if m.mode != "listing":
        raise Invalid("wrong_mode", f"market {market_id} trades by {m.mode}, not by listing")
    qty, price_fen = to_base(quantity, m.decimals), to_base(price, 2, field="price")
    pid = who.participant_id
    fp_payload = {"op": "listing", "m": market_id, "side": side, "price": price_fen, "qty": qty}
    if escrow is not None:
        fp_payload["enforcement"] = escrow.pledge_id
    return await submit_new(
        rt, who, market_id, client_id, kind="listing", side=side, price=price_fen, qty=qty, type_="listing",
        make=lambda lid: mc.PostListing(lid, pid, side, price_fen, qty), fp_payload=fp_payload, escrow=escrow)


def _listings_of(seq: running.Running) -> ListingBook:
    """The engine of a listing market (its mode checked before)."""
    book = seq.engine
    assert isinstance(book, ListingBook), type(book)
    return book


def open_listing(rt: Runtime, market_id: str, listing_id: int) -> dict[str, Any] | None:
    """A live listing of a listing market (`account`: its lister's participant id); None if none is open."""
    seq = running.market(rt, market_id)
    return None if seq.market.mode != "listing" else _listings_of(seq).listing(listing_id)


async def take_listing(rt: Runtime, who: Principal, market_id: str, listing_id: int, client_id: str, *,
                       quantity: str, purpose: dict[str, Any] | None = None) -> Submitted:
    seq = running.sequencer(rt, market_id)
    m = seq.market
    if m.mode != "listing":
        raise Invalid("wrong_mode", f"market {market_id} trades by {m.mode}, not by listing")
    listing = _listings_of(seq).listing(listing_id)
    qty = to_base(quantity, m.decimals)
    fp_payload = {"op": "take", "m": market_id, "listing": listing_id, "qty": qty, "purpose": purpose}
    if listing is None:  # gone, perhaps taken by this very request before a retry
        answer = await journaled_answer(rt, who, client_id, fingerprint(fp_payload), m.decimals)
        if answer is not None:
            return answer
        raise DomainError("unknown_listing", f"listing {listing_id} is not open", 404)
    side = mc.opposite(listing["side"])
    maker = seq.orders.get(listing_id)
    if m.expires and listing["side"] == mc.SELL and maker is not None and await expiry.hold_ended(rt, maker.hold_id):
        # Listed before its term ended (the close withdraws it): not sold now. The lister's blocks are its own.
        raise DomainError("units_expired", f"the term of the units of listing {listing_id} has ended; "
                          "they can no longer be sold")
    price_fen = int(listing["price"])
    pid = who.participant_id
    return await submit_new(
        rt, who, market_id, client_id, kind="take", side=side, price=price_fen, qty=qty, type_="take", tif="ioc",
        make=lambda tid: mc.Take(tid, pid, listing_id, qty), purpose=purpose, fp_payload=fp_payload)


async def _change(seq: MarketSequencer, who: Principal, cmd: Any, reason: str | None = None) -> ev.Event | None:
    """Send a cancel or reduce of a resting order; its refusal event, if the engine refused it."""
    _, events, _row = await seq.submit(lambda _s: cmd, actor=who.participant_id,  # 503 market_unavailable / ...
                                       reason=reason)
    return next((e for e in events if e[0] == ev.REJECTED), None)


async def cancel(rt: Runtime, who: Principal, market_id: str, order_id: int) -> ShownOrder:
    seq = running.sequencer(rt, market_id)
    row = await _order_row(rt, market_id, order_id)
    if row is None or (row.participant_id != who.participant_id and who.kind != "operator"):
        raise NotFound("order", order_id)  # another's order: as if there were none
    if row.status == "open":
        owner = row.participant_id
        # The venue cancelling a member's order says so, not that the member asked (round 5, F7).
        rejected = await _change(seq, who, mc.Cancel(order_id, owner), None if owner == who.participant_id
                                 else ev.VENUE)
        row = await _order_row(rt, market_id, order_id)
        assert row is not None
        # A concurrent cancel (or a fill) ended it first: answer as a repeated cancel does, with its state.
        if rejected and row.status == "open":
            raise _reason_error(rejected[2], rejected[3], seq.market.decimals)
    return ShownOrder(row, seq.market.decimals)


async def reduce(rt: Runtime, who: Principal, market_id: str, order_id: int, quantity: str) -> ShownOrder:
    seq = running.sequencer(rt, market_id)
    row = await _order_row(rt, market_id, order_id)
    if row is None or (row.participant_id != who.participant_id and who.kind not in SEES_ALL):
        raise NotFound("order", order_id)  # another's order: as if there were none, before its state
    if row.participant_id != who.participant_id:
        raise Forbidden("you may only change your own orders")
    if row.status != "open":
        raise DomainError("order_not_open", f"order {order_id} is {row.status}")
    new_open = to_base(quantity, seq.market.decimals)
    owner = row.participant_id
    rejected = await _change(seq, who, mc.Reduce(order_id, new_open, owner))
    if rejected:
        now = await _order_row(rt, market_id, order_id)
        if now is not None and now.status != "open":  # filled or cancelled meanwhile: the engine no longer knows
            raise DomainError("order_not_open", f"order {order_id} is {now.status}")  # it (round 5, F10)
        raise _reason_error(rejected[2], rejected[3], seq.market.decimals)
    row = await _order_row(rt, market_id, order_id)
    assert row is not None
    return ShownOrder(row, seq.market.decimals)


async def find(rt: Runtime, who: Principal, market_id: str, order_id: int) -> ShownOrder:
    """One order of the caller's (oversight: anyone's); another's is the 404 of an unknown one."""
    seq = running.market(rt, market_id)
    row = await _order_row(rt, market_id, order_id)
    if row is None or (row.participant_id != who.participant_id and who.kind not in SEES_ALL):
        raise NotFound("order", order_id)
    return ShownOrder(row, seq.market.decimals)


async def get_order(rt: Runtime, who: Principal, market_id: str, order_id: int) -> dict[str, Any]:
    """find's answer as a dict (exchange.pledging's enforcement sale reads it so)."""
    return (await find(rt, who, market_id, order_id)).as_dict()


async def list_orders(rt: Runtime, who: Principal, market_id: str, status: str | None, after: int | None = None,
                      limit: int = 500) -> list[ShownOrder]:
    """Orders in id order (oldest first), after the order id `after`; one more than `limit` if there are."""
    seq = running.market(rt, market_id)
    async with rt.read() as conn:
        rows = await repository.orders(conn, market_id, after=after or 0, limit=limit + 1, status=status,
                                       participant_id=None if who.kind in ("operator", "auditor")
                                       else who.participant_id)
    return [ShownOrder(r, seq.market.decimals) for r in rows]


def listings(rt: Runtime, market_id: str, side: str | None) -> list[Listing]:
    """The open listings of a listing market in their place (Listing.place), public: who listed is not shown (a
    lister finds its own listings among its orders)."""
    seq = running.market(rt, market_id)
    if seq.market.mode != "listing":
        raise DomainError("wrong_mode", f"market {market_id} has no listings", 422)
    book = _listings_of(seq)
    found = [Listing(li["listing_id"], li["side"], int(li["price"]), int(li["qty"]),
                     # rank: 1 = the best price level of its side; takes may reach ranks 1..best_n.
                     book.rank(li["listing_id"]) + 1,
                     # The pledge registration the listing is the enforcement sale of (public, as the register is).
                     enforcement_of(seq, li["listing_id"]), seq.market.decimals)
             for li in book.listings(side)]
    return sorted(found, key=lambda li: li.place)
