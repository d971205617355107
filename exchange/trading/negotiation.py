"""Block negotiation (大宗协议): quotes, responses, counters, confirmations.

Negotiation moves no value, so quotes and proposals carry no hold. Value moves only when a deal is
confirmed by its second party: that confirmation first funds both sides in one linked ledger group
(the buyer's cash with fees, the seller's units); if either side cannot pay or deliver, the
confirmation is refused and the deal stays open. The funded confirmation then trades and settles
delivery-versus-payment like any other trade. Block trades stay out of the quote and the close.
"""

from __future__ import annotations

from typing import Any

from exchange.core.errors import DomainError, Forbidden, Invalid, NotFound
from exchange.core.idempotency import fingerprint
from exchange.core.principal import Principal
from exchange.core.refusals import Refusal
from exchange.core.runtime import Runtime
from exchange.core.units import to_base
from exchange.registry import expiry, participants
from exchange.registry.models import Participant
from exchange.trading import inflight, journal, running
from exchange.trading import repository as repo
from exchange.trading.models import Deal, Journaled, Quote
from exchange.trading.orders import TRADERS, _events_view, _gate, _reason_error, stored_refusal
from exchange.trading.pricing import buy_hold
from ledger import commands as lc
from matching import commands as mc
from matching import events as ev
from matching import reasons as R
from matching.block import BlockDesk


async def submit_plain(rt: Runtime, who: Principal, market_id: str, client_id: str, make: Any,
                       fp_payload: dict[str, Any], order: dict[str, Any] | None = None,
                       prepare: Any = None) -> Journaled:
    """A command with no order row of its own, made idempotent by the journal's client index."""
    if who.kind not in TRADERS:
        raise Forbidden("this participant kind does not trade")
    seq = running.sequencer(rt, market_id)
    fp = fingerprint(fp_payload).hex()

    async def run() -> Journaled:
        nonlocal order
        async with rt.read() as conn:
            row = await journal.client_command(conn, who.participant_id, client_id)
        if row is not None:
            if row.fingerprint != fp:
                raise DomainError("idempotency_conflict", "this client id was already used for a different request")
            refused = await stored_refusal(rt, row.market_id, row.seq)
            if refused is not None:  # the first answer was this refusal: so is the retry's
                raise refused
            return Journaled(row.seq, [], replayed=True)
        if prepare is not None:
            order = await prepare()
        seqno, events, _ = await seq.submit(make, order, {"p": str(who.participant_id), "c": client_id, "fp": fp},
                                            actor=who.participant_id)
        rejected = [e for e in events if e[0] == ev.REJECTED]
        if rejected:
            raise _reason_error(rejected[0][2], rejected[0][3], seq.market.decimals)
        return Journaled(seqno, _events_view(events, seq.market.decimals, who))

    return await inflight.once(rt, ("plain", who.participant_id, client_id), fp, run)


OVERSIGHT = participants.SEES_ALL


def _quote_seen(seq: Any, who: Principal, quote_id: int) -> dict[str, Any]:
    """A live quote the caller may see (its own, public ones, those addressed to it; oversight: all),
    else 404 -- the same answer as for a quote that does not exist, before any state or party check."""
    account = None if who.kind in OVERSIGHT else who.participant_id
    quote = next((q for q in seq.engine.quotes(account) if q["quote_id"] == quote_id), None)
    if quote is None:
        raise NotFound("block quote", quote_id)
    return quote  # type: ignore[no-any-return]


def _deal_seen(seq: Any, who: Principal, deal_id: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """An open negotiation and its quote, if the caller is one of its two parties (or oversight), else 404."""
    deal = seq.engine.deal(deal_id)
    quote = None if deal is None else next(
        (q for q in seq.engine.quotes() if q["quote_id"] == deal["quote_id"]), None)
    parties = set() if deal is None else {deal["responder"], quote["account"] if quote else None}
    if deal is None or (who.kind not in OVERSIGHT and who.participant_id not in parties):
        raise NotFound("negotiation", deal_id)
    return deal, quote


async def _refuse_traded(rt: Runtime, seq: Any, who: Principal, deal_id: int) -> None:
    """A negotiation that already traded, asked about by one of its parties (or oversight): 409
    `deal_not_open` with its status, not the 404 of an unknown one (the responder's side of a block trade is
    the deal's id). Anyone else still gets _deal_seen's 404."""
    if seq.engine.deal(deal_id) is not None:
        return
    async with rt.read() as conn:
        trade_id = await repo.block_trade_of_deal(conn, seq.market.id, deal_id,
                                                  None if who.kind in OVERSIGHT else who.participant_id)
        row = await journal.block_deal(conn, seq.market.id, deal_id) if trade_id is None else None
    if trade_id is not None:
        raise DomainError(Refusal.DEAL_NOT_OPEN, f"negotiation {deal_id} is no longer open: it traded "
                          f"(trade {trade_id})", deal_status="traded", trade_id=trade_id)
    if row is not None and row.status != "open" and (who.kind in OVERSIGHT or row.party(who.participant_id)):
        raise DomainError(Refusal.DEAL_NOT_OPEN, f"negotiation {deal_id} is no longer open: it ended "
                          f"({row.status})", deal_status=row.status)


def _desk_of(seq: running.Running) -> BlockDesk:
    """The engine of a block market (its mode checked before)."""
    desk = seq.engine
    assert isinstance(desk, BlockDesk), type(desk)
    return desk


def _block(rt: Runtime, market_id: str) -> running.Running:
    seq = running.market(rt, market_id)
    if seq.market.mode != "block":
        raise Invalid("wrong_mode", f"market {market_id} trades by {seq.market.mode}, not by negotiation")
    return seq


async def quote(rt: Runtime, who: Principal, market_id: str, client_id: str, *, side: str, price: str,
                quantity: str, audience: str, counterparties: list[int]) -> Journaled:
    seq = _block(rt, market_id)
    _gate(running.sequencer(rt, market_id))
    m = seq.market
    p, q = to_base(price, 2, field="price"), to_base(quantity, m.decimals)
    async with rt.read() as conn:
        for c in counterparties:  # traders the quoter names; anyone else is the same 404 as an unknown id
            await participants.party(conn, who, c, kinds=TRADERS)
    pid = who.participant_id
    return await submit_plain(rt, who, market_id, client_id,
                              lambda qid: mc.Quote(qid, pid, side, p, q, audience, tuple(counterparties)),
                              {"op": "quote", "m": market_id, "side": side, "p": p, "q": q, "a": audience,
                               "c": counterparties})


async def respond(rt: Runtime, who: Principal, market_id: str, quote_id: int, client_id: str, *, price: str,
                  quantity: str) -> Journaled:
    seq = _block(rt, market_id)
    _gate(running.sequencer(rt, market_id))
    p, q = to_base(price, 2, field="price"), to_base(quantity, seq.market.decimals)
    pid = who.participant_id

    async def seen() -> None:  # after the replay look-up: a retry gets its first answer
        _quote_seen(seq, who, quote_id)

    return await submit_plain(rt, who, market_id, client_id, lambda did: mc.Respond(did, quote_id, pid, p, q),
                              {"op": "respond", "m": market_id, "quote": quote_id, "p": p, "q": q}, prepare=seen)


async def counter(rt: Runtime, who: Principal, market_id: str, deal_id: int, client_id: str, *, price: str,
                  quantity: str) -> Journaled:
    seq = _block(rt, market_id)
    _gate(running.sequencer(rt, market_id))
    p, q = to_base(price, 2, field="price"), to_base(quantity, seq.market.decimals)
    pid = who.participant_id

    async def seen() -> None:
        await _refuse_traded(rt, seq, who, deal_id)
        _deal_seen(seq, who, deal_id)

    return await submit_plain(rt, who, market_id, client_id, lambda _s: mc.Counter(deal_id, pid, p, q),
                              {"op": "counter", "m": market_id, "deal": deal_id, "p": p, "q": q}, prepare=seen)


async def decline(rt: Runtime, who: Principal, market_id: str, deal_id: int, client_id: str) -> Journaled:
    seq = _block(rt, market_id)
    pid = who.participant_id

    async def seen() -> None:
        await _refuse_traded(rt, seq, who, deal_id)
        _deal_seen(seq, who, deal_id)

    return await submit_plain(rt, who, market_id, client_id, lambda _s: mc.Decline(deal_id, pid),
                              {"op": "decline", "m": market_id, "deal": deal_id}, prepare=seen)


async def withdraw(rt: Runtime, who: Principal, market_id: str, quote_id: int, client_id: str) -> Journaled:
    seq = _block(rt, market_id)
    pid = who.participant_id

    async def seen() -> None:
        if _quote_seen(seq, who, quote_id)["account"] != pid:
            raise NotFound("block quote", quote_id) if who.kind not in OVERSIGHT else \
                Forbidden("only the quoter withdraws its quote")

    return await submit_plain(rt, who, market_id, client_id, lambda _s: mc.Cancel(quote_id, pid),
                              {"op": "withdraw", "m": market_id, "quote": quote_id}, prepare=seen)


async def confirm(rt: Runtime, who: Principal, market_id: str, deal_id: int, client_id: str) -> Journaled:
    seq = _block(rt, market_id)
    _gate(running.sequencer(rt, market_id))
    m = seq.market
    pid = who.participant_id

    async def fund() -> dict[str, Any]:
        await _refuse_traded(rt, seq, who, deal_id)
        deal, quote = _deal_seen(seq, who, deal_id)
        if quote is None:
            raise DomainError("unknown_quote", f"quote {deal['quote_id']} is not live", 404)
        if pid not in (quote["account"], deal["responder"]):
            raise Forbidden("you are not a party to this negotiation")
        if pid in deal["confirmed"]:
            # A repeated click is refused before anything is funded or journaled (the engine would refuse
            # it too, after the funding): nothing moves, and a retry gets the same refusal.
            raise _reason_error(R.ALREADY_CONFIRMED, "this party already confirmed the current terms", m.decimals)
        price, qty = int(deal["price"]), int(deal["qty"])
        seller_id, buyer_id = ((quote["account"], deal["responder"]) if quote["side"] == mc.SELL
                               else (deal["responder"], quote["account"]))
        async with rt.read() as conn:
            seller, buyer = await participants.find(conn, seller_id), await participants.find(conn, buyer_id)
        cash = buy_hold(price, qty, m.decimals, m.fee_bps, m.years)
        if m.expires:  # no units whose term ended are delivered; the buyer only hears the seller cannot deliver
            try:
                await expiry.refuse_ended(rt, seller.holding_account, m.instrument)
            except DomainError as exc:
                if seller_id == pid:
                    raise
                raise DomainError(Refusal.COUNTERPARTY_UNFUNDED,
                                  "the counterparty cannot deliver these units now") from exc
        if seller.holding_account is None or buyer.cash_account is None:  # admitted, accounts not opened yet
            raise DomainError(Refusal.COUNTERPARTY_UNFUNDED, "a party's accounts are not open yet")
        base = f"{m.id}:deal:{deal_id}:{client_id}"
        holds = await rt.submit_linked([
            lc.Request(f"exchange:{m.id}", lc.CreateHold("order", buyer.cash_account, rt.system["clearing"],
                                                          "CNY", cash), f"{base}:buyer", {"deal": deal_id}),
            lc.Request(f"exchange:{m.id}", lc.CreateHold("order", seller.holding_account, rt.system["clearing"],
                                                          m.instrument, qty), f"{base}:seller", {"deal": deal_id}),
        # The confirming side hears its own shortfall in its units; the other side's is only
        # `counterparty_unfunded`: no account, no balance (issue #14).
        ], own=tuple(a for a in (who.cash_account, who.holding_account) if a is not None), counterparty=True)
        ids = {quote["account"]: deal["quote_id"], deal["responder"]: deal_id}

        def state(p: Participant, side: str, hold: Any, amount: int) -> dict[str, Any]:
            return {"id": ids[p.id], "participant_id": p.id, "kind": "order", "side": side, "price": price,
                    "qty": qty, "hold_id": hold.seq, "hold_amount": amount, "holding_account": p.holding_account,
                    "cash_account": p.cash_account}

        return {"extra": [state(buyer, mc.BUY, holds[0], cash), state(seller, mc.SELL, holds[1], qty)]}

    # One confirmation of a deal at a time: concurrent ones would each fund the deal from the same balances
    # (the later ones failing on money the first one held); after the first, the rest see it traded.
    async with inflight.serially(rt, ("confirm", market_id, deal_id)):
        return await submit_plain(rt, who, market_id, client_id, lambda _s: mc.Confirm(deal_id, pid),
                                  {"op": "confirm", "m": market_id, "deal": deal_id}, prepare=fund)


def quotes_view(rt: Runtime, who: Principal, market_id: str) -> list[Quote]:
    """The live quotes the caller may see (its own, public ones, those addressed to it; oversight: all)."""
    seq = _block(rt, market_id)
    account = None if who.kind in OVERSIGHT else who.participant_id
    return [Quote(q["quote_id"], q["account"], q["side"], int(q["price"]), int(q["qty"]), q["audience"],
                  tuple(q["counterparties"]), seq.market.decimals)
            for q in _desk_of(seq).quotes(account)]


async def deal_view(rt: Runtime, who: Principal, market_id: str, deal_id: int) -> Deal:
    """A negotiation its two parties (and oversight) may read, open or not: once it ended (declined, its
    quote withdrawn or used up, the day's end, traded) its last terms and `status`, from its row; anyone else
    gets 404, as for a deal that does not exist."""
    seq = _block(rt, market_id)
    if _desk_of(seq).deal(deal_id) is None:
        async with rt.read() as conn:
            row = await journal.block_deal(conn, market_id, deal_id)
        if row is None or (who.kind not in OVERSIGHT and not row.party(who.participant_id)):
            raise NotFound("negotiation", deal_id)
        return Deal(row.deal_id, row.quote_id, row.responder_id, row.confirmed, row.price, row.qty,
                    seq.market.decimals, row.status)
    deal, _ = _deal_seen(seq, who, deal_id)
    return Deal(deal["deal_id"], deal["quote_id"], deal["responder"], tuple(deal["confirmed"]), int(deal["price"]),
                int(deal["qty"]), seq.market.decimals)
