"""Block negotiation (大宗协议): quotes, negotiation, a trade only when both sides confirm.

A quote is public (anyone may respond), directed (to one named counterparty) or group (to a named set).
A counterparty opens a negotiation (a "deal") on a quote with `Respond`, proposing terms it thereby
confirms; either party may `Counter` with new terms (only the counter-proposer then stands confirmed);
the other party's `Confirm` of the current terms makes the trade. Block trades have their own band and
minimum size (national CEA: ±30 %, ≥ 100,000 t) and carry mode "block", which market data keeps out of
the real-time quote and the close.
"""

from __future__ import annotations

from typing import Any

from . import reasons as R
from .base import Engine
from .commands import (
    AUDIENCES,
    DIRECTED,
    GROUP,
    PUBLIC,
    SIDES,
    Cancel,
    Confirm,
    Counter,
    Decline,
    EndOfDay,
    Quote,
    Respond,
    command_ref,
    opposite,
)
from .events import (
    BLOCK,
    BY_REQUEST,
    CANCELLED,
    DEAL_CLOSED,
    DEAL_CONFIRMED,
    DEAL_PROPOSED,
    DECLINED,
    END_OF_DAY,
    EXPIRED,
    QUOTE_EXHAUSTED,
    QUOTE_WITHDRAWN,
    QUOTED,
    REJECTED,
    RULES_AMENDED,
    TRADE,
    TRADED,
    Event,
)
from .rules import CEA_BLOCK, MarketRules


class _Quote:
    __slots__ = ("account", "audience", "counterparties", "price", "qty", "side")

    def __init__(
        self, account: Any, side: str, price: int, qty: int, audience: str, counterparties: tuple[Any, ...]
    ) -> None:
        self.account, self.side, self.price, self.qty = account, side, price, qty
        self.audience, self.counterparties = audience, counterparties

    def to_list(self) -> list[Any]:
        return [self.account, self.side, self.price, self.qty, self.audience, list(self.counterparties)]


class _Deal:
    __slots__ = ("confirmed", "price", "qty", "quote_id", "responder")

    def __init__(self, quote_id: int, responder: Any, price: int, qty: int, confirmed: list[Any]) -> None:
        self.quote_id, self.responder, self.price, self.qty = quote_id, responder, price, qty
        self.confirmed = confirmed  # accounts that confirmed the current terms, in order

    def to_list(self) -> list[Any]:
        return [self.quote_id, self.responder, self.price, self.qty, list(self.confirmed)]


class BlockDesk(Engine):
    kind = "block"
    __slots__ = ("_deals", "_quotes", "_trade_id")

    def __init__(self, rules: MarketRules | None = None, reference: int | None = None) -> None:
        self._quotes: dict[int, _Quote] = {}  # in id order
        self._deals: dict[int, _Deal] = {}  # in id order
        self._trade_id = 0
        super().__init__(CEA_BLOCK if rules is None else rules, reference)

    def _apply(self, seq: int, ts: int, c: Any) -> list[Event]:
        cls = c.__class__
        if cls is Quote:
            return self._quote(c)
        if cls is Respond:
            return self._respond(c)
        if cls is Counter:
            return self._counter(c)
        if cls is Confirm:
            return self._confirm(seq, ts, c)
        if cls is Decline:
            deal = self._party_deal(c.deal_id, c.account)
            if isinstance(deal, tuple):
                return [deal]
            del self._deals[c.deal_id]
            return [(DEAL_CLOSED, c.deal_id, DECLINED)]
        if cls is Cancel:
            return self._withdraw(c)
        if cls is EndOfDay:
            events: list[Event] = [(DEAL_CLOSED, did, END_OF_DAY) for did in self._deals]
            events += [(EXPIRED, qid, q.account, q.qty) for qid, q in self._quotes.items()]
            self._deals.clear()
            self._quotes.clear()
            return events
        return [(REJECTED, command_ref(c), R.UNKNOWN_COMMAND, f"{cls.__name__} is not a block command")]

    # --- quotes --------------------------------------------------------------------------------

    def _quote(self, c: Quote) -> list[Event]:
        qid = c.quote_id
        reject = self._halted_reject(qid)
        if reject is None and c.side not in SIDES:
            reject = (REJECTED, qid, R.INVALID_SIDE, f"side {c.side!r} is not 'buy' or 'sell'")
        if reject is None:
            reject = self._audience_reject(c)
        if reject is None:
            bad = self.rules.check(c.price, c.qty, self._band)
            if bad is not None:
                reject = (REJECTED, qid, bad[0], bad[1])
        if reject is None:
            reject = self._id_reject(qid, qid in self._quotes or qid in self._deals)
        if reject is not None:
            return [reject]
        self._last_id = qid
        # Counterparties keep the order given (deterministic), without duplicates.
        parties = tuple(dict.fromkeys(c.counterparties))
        self._quotes[qid] = _Quote(c.account, c.side, c.price, c.qty, c.audience, parties)
        return [(QUOTED, qid, c.account, c.side, c.price, c.qty, c.audience, parties)]

    @staticmethod
    def _audience_reject(c: Quote) -> Event | None:
        n = len(set(c.counterparties))
        ok = c.audience in AUDIENCES and (
            (c.audience == PUBLIC and n == 0)
            or (c.audience == DIRECTED and n == 1)
            or (c.audience == GROUP and n >= 1)
        )
        if ok and c.account not in c.counterparties:
            return None
        return (
            REJECTED,
            c.quote_id,
            R.INVALID_AUDIENCE,
            f"audience {c.audience!r} with {n} counterparties (the quoter excluded) is not valid",
        )

    def _withdraw(self, c: Cancel) -> list[Event]:
        qid = c.order_id
        quote = self._quotes.get(qid)
        if quote is None:
            return [(REJECTED, qid, R.UNKNOWN_QUOTE, f"quote {qid} is not live")]
        reject = self._owner_reject(qid, quote.account, c.account)
        if reject is not None:
            return [reject]
        events = self._close_quote(qid, QUOTE_WITHDRAWN)
        events.insert(0, (CANCELLED, qid, quote.account, quote.qty, BY_REQUEST))
        return events

    def _close_quote(self, qid: int, reason: str) -> list[Event]:
        del self._quotes[qid]
        closing = [did for did, deal in self._deals.items() if deal.quote_id == qid]
        for did in closing:
            del self._deals[did]
        return [(DEAL_CLOSED, did, reason) for did in closing]

    # --- negotiation ---------------------------------------------------------------------------

    def _terms_reject(self, ref: int, quote: _Quote, price: int, qty: int) -> Event | None:
        bad = self.rules.check(price, qty, self._band)
        if bad is not None:
            return (REJECTED, ref, bad[0], bad[1])
        if qty > quote.qty:
            return (REJECTED, ref, R.QUANTITY_EXCEEDS_REMAINING, f"{R.qty(qty)} exceeds the {R.qty(quote.qty)} quoted")
        return None

    def _respond(self, c: Respond) -> list[Event]:
        did = c.deal_id
        reject = self._halted_reject(did)
        if reject is not None:
            return [reject]
        quote = self._quotes.get(c.quote_id)
        if quote is None:
            return [(REJECTED, did, R.UNKNOWN_QUOTE, f"quote {c.quote_id} is not live")]
        if c.account == quote.account:
            return [(REJECTED, did, R.SELF_TRADE, f"quote {c.quote_id} is the responder's own")]
        if quote.audience != PUBLIC and c.account not in quote.counterparties:
            return [
                (REJECTED, did, R.NOT_IN_AUDIENCE, f"quote {c.quote_id} is not addressed to this account")
            ]
        reject = self._terms_reject(did, quote, c.price, c.qty) or self._id_reject(
            did, did in self._deals or did in self._quotes
        )
        if reject is not None:
            return [reject]
        self._last_id = did
        self._deals[did] = _Deal(c.quote_id, c.account, c.price, c.qty, [c.account])
        return [(DEAL_PROPOSED, did, c.quote_id, c.account, c.price, c.qty)]

    def _party_deal(self, did: int, account: Any) -> _Deal | Event:
        """The open deal `did` if `account` is one of its two parties, else the rejection."""
        deal = self._deals.get(did)
        if deal is None:
            return (REJECTED, did, R.UNKNOWN_DEAL, f"negotiation {did} is not open")
        if account != deal.responder and account != self._quotes[deal.quote_id].account:
            return (REJECTED, did, R.NOT_A_PARTY, f"the account is not a party to negotiation {did}")
        return deal

    def _counter(self, c: Counter) -> list[Event]:
        reject = self._halted_reject(c.deal_id)
        if reject is not None:
            return [reject]
        deal = self._party_deal(c.deal_id, c.account)
        if isinstance(deal, tuple):
            return [deal]
        reject = self._terms_reject(c.deal_id, self._quotes[deal.quote_id], c.price, c.qty)
        if reject is not None:
            return [reject]
        deal.price, deal.qty, deal.confirmed = c.price, c.qty, [c.account]
        return [(DEAL_PROPOSED, c.deal_id, deal.quote_id, c.account, c.price, c.qty)]

    def _confirm(self, seq: int, ts: int, c: Confirm) -> list[Event]:
        did = c.deal_id
        reject = self._halted_reject(did)
        if reject is not None:
            return [reject]
        deal = self._party_deal(did, c.account)
        if isinstance(deal, tuple):
            return [deal]
        if c.account in deal.confirmed:
            return [(REJECTED, did, R.ALREADY_CONFIRMED, "this party already confirmed the current terms")]
        quote = self._quotes[deal.quote_id]
        # Terms are checked again: another deal may have used the quote up, or the band moved.
        reject = self._terms_reject(did, quote, deal.price, deal.qty)
        if reject is not None:
            return [reject]
        deal.confirmed.append(c.account)
        events: list[Event] = [(DEAL_CONFIRMED, did, c.account)]
        # Both parties have now confirmed: the deal trades.
        self._trade_id += 1
        events.append(
            (
                TRADE,
                BLOCK,
                seq,
                ts,
                self._trade_id,
                deal.price,
                deal.qty,
                opposite(quote.side),
                deal.quote_id,
                quote.account,
                did,
                deal.responder,
            )
        )
        del self._deals[did]
        events.append((DEAL_CLOSED, did, TRADED))
        quote.qty -= deal.qty
        if quote.qty < self.rules.min_qty:
            # What is left cannot make another block trade: the quote ends, and its negotiations.
            left = quote.qty
            events += self._close_quote(deal.quote_id, QUOTE_EXHAUSTED)
            if left:
                events.append((CANCELLED, deal.quote_id, quote.account, left, QUOTE_EXHAUSTED))
        return events

    def _off_grid(self) -> list[Event]:
        """Quotes and negotiations whose terms are off the new tick or lot end (nothing is funded yet)."""
        events: list[Event] = []
        for qid, q in list(self._quotes.items()):
            if not self._on_grid(q.price, q.qty):
                events += self._close_quote(qid, RULES_AMENDED)
                events.append((CANCELLED, qid, q.account, q.qty, RULES_AMENDED))
        for did, d in list(self._deals.items()):
            if not self._on_grid(d.price, d.qty):
                del self._deals[did]
                events.append((DEAL_CLOSED, did, RULES_AMENDED))
        return events

    # --- reading -------------------------------------------------------------------------------

    def quotes(self, account: Any = None) -> list[dict[str, Any]]:
        """Live quotes in id order; with `account`, those that account may see (its own, public
        ones, and those addressed to it)."""
        return [
            {
                "quote_id": qid,
                "account": q.account,
                "side": q.side,
                "price": q.price,
                "qty": q.qty,
                "audience": q.audience,
                "counterparties": q.counterparties,
            }
            for qid, q in self._quotes.items()
            if account is None or q.account == account or q.audience == PUBLIC or account in q.counterparties
        ]

    def deal(self, deal_id: int) -> dict[str, Any] | None:
        d = self._deals.get(deal_id)
        if d is None:
            return None
        return {
            "deal_id": deal_id,
            "quote_id": d.quote_id,
            "responder": d.responder,
            "price": d.price,
            "qty": d.qty,
            "confirmed": tuple(d.confirmed),
        }

    # --- snapshot ------------------------------------------------------------------------------

    def _snapshot_body(self) -> dict[str, Any]:
        return {
            "trade_id": self._trade_id,
            "quotes": [[qid, *q.to_list()] for qid, q in self._quotes.items()],
            "deals": [[did, *d.to_list()] for did, d in self._deals.items()],
        }

    def _restore_body(self, snap: dict[str, Any]) -> None:
        self._trade_id = snap["trade_id"]
        for qid, account, side, price, qty, audience, parties in snap["quotes"]:
            self._quotes[qid] = _Quote(account, side, price, qty, audience, tuple(parties))
        for did, quote_id, responder, price, qty, confirmed in snap["deals"]:
            self._deals[did] = _Deal(quote_id, responder, price, qty, list(confirmed))
