"""Batch order entry: up to MAX_ORDERS orders of one participant in one continuous market, in one request.

Each order is what `POST /v1/markets/{id}/orders` would take alone, with its own client id, and gets the
answer it would have got alone, in its slot, in the order sent: its order and events, or the problem that
refused it (a refusal refuses only its own order). The orders are checked one by one, then queued to the
market's sequencer back to back (no wait between them), so the sequencer funds them in one writer batch,
journals them in one journal transaction and answers them in order, instead of N round trips.

Idempotent per order: a slot's first successful answer is kept as its exact bytes, keyed by the caller, the
order's client id and its fingerprint (`answers_by_request`, under a digest no HTTP request can have), in the
market's projection transaction that answers it (exchange.trading.pipeline.Keep: no round trip of its own, and
nothing lost between the commit and the reply); the same order again, in any later batch request (a new key,
none, another batch), gets those bytes back, as a single order's retry does -- found by the sequencer, which
looks every batch's client ids up anyway, or on a refusal path; the same keyed batch again gets the whole
answer back, byte for byte, at the HTTP edge. An order journaled under its client id whose bytes were not kept
(placed alone first) is answered from its row, as the single-order endpoint replays it (`replayed: true`),
and that answer is kept. The same client id for a different order is 409 `idempotency_conflict`, in its slot.
Refusals are not kept: a refused order sent again is tried again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import msgspec

from exchange.core import store
from exchange.core.errors import DomainError, Forbidden, Invalid
from exchange.core.idempotency import fingerprint
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.store import Answer
from exchange.core.units import iso, to_base
from exchange.registry import expiry
from exchange.trading import inflight, orders, running
from exchange.trading.models import Submitted
from exchange.trading.pipeline import MarketSequencer
from exchange.trading.pricing import buy_hold
from matching import commands as mc
from matching.rules import NO_LIMIT

log = logging.getLogger("envx.batches")
MAX_ORDERS = 100
JSON = "application/json"
_SLOT_DIGEST = b"envx order in a batch\n"  # no HTTP request digest starts like this (api/security/replays.py)


@dataclass(frozen=True, slots=True)
class BatchOrder:
    """One order of a batch as sent: the fields of a single order, in the caller's units."""

    client_id: str
    side: str
    type: str
    tif: str
    price: str | None
    quantity: str
    stp: str | None


@dataclass(frozen=True, slots=True)
class Slot:
    """One order's answer: `body` (the exact bytes of its answer object) or `error` (its refusal)."""

    client_id: str
    status: int
    body: bytes | None = None
    error: DomainError | None = None


@dataclass(frozen=True, slots=True)
class _Checked:
    """An order that passed its checks, ready for the sequencer."""

    order: BatchOrder
    fp: bytes
    price: int | None
    qty: int
    amount: int
    instrument: str
    account: int | None


def encode(value: Any) -> bytes:
    """A slot's answer as bytes, once: compact JSON, times in ISO 8601 (`iso`, as `times_in_iso` writes them),
    dates as YYYY-MM-DD. The encoder asks `_default` only for what JSON has no form for, so the answer is not
    walked twice."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_default).encode()


_SLOT_ENCODER = msgspec.json.Encoder()


def _default(value: Any) -> Any:
    if isinstance(value, datetime):  # before date: a datetime is a date
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _fp_payload(market_id: str, o: BatchOrder, price: int | None, qty: int) -> dict[str, Any]:
    """What the single-order endpoint fingerprints (exchange/trading/orders.py place_order): an order sent
    alone and in a batch under one client id is one order."""
    return {"op": "order", "m": market_id, "side": o.side, "type": o.type, "tif": o.tif, "price": price,
            "qty": qty, "stp": o.stp, "purpose": None}


def slot_digest(market_id: str, fp: bytes) -> bytes:
    return hashlib.sha256(_SLOT_DIGEST + market_id.encode() + b"\n" + fp).digest()


def _check(seq: MarketSequencer, who: Principal, o: BatchOrder, fp: bytes | None) -> _Checked:
    """The checks of `orders.place_order` and `orders._submit_new` for one order, without waiting. `fp`: its
    fingerprint as `_fp_of` found it (None: its numbers do not read, which these checks refuse)."""
    m = seq.market
    qty = to_base(o.quantity, m.decimals)
    hold_price = None
    if o.type == mc.LIMIT:
        if o.price is None:
            raise Invalid("price_required", "a limit order needs a price")
        price: int | None = to_base(o.price, 2, field="price")
    else:
        price = None
        if o.side == mc.BUY:  # fund up to the worst price the order may reach (best N levels, else the band)
            asks = seq.depth(m.rules.best_n)["asks"]
            hold_price = max((lvl[0] for lvl in asks), default=None) or seq.engine.band[1]
    if o.stp is not None and o.stp not in mc.STP_MODES:
        raise Invalid("invalid_stp", f"stp must be one of {', '.join(mc.STP_MODES)}")
    assert fp is not None  # the numbers read
    orders._gate(seq)
    problem = m.rules.check(price, qty, seq.engine.band)
    if problem is not None:
        raise orders._reason_error(*problem, m.decimals)
    if o.side == mc.BUY:
        unit_price = hold_price if hold_price is not None else price
        if unit_price is None or unit_price >= NO_LIMIT:
            raise DomainError("no_reference_price", "a market buy needs a price band or resting offers to fund")
        amount, instrument, account = buy_hold(unit_price, qty, m.decimals, m.fee_bps, m.years), "CNY", \
            who.cash_account
    else:
        amount, instrument, account = qty, m.instrument, who.holding_account
    if account is None:
        raise DomainError("no_account", "this participant has no account for that side")
    return _Checked(o, fp, price, qty, amount, instrument, account)


def _fp_of(seq: MarketSequencer, o: BatchOrder) -> bytes | None:
    """The order's fingerprint, if its numbers read at all (else it has no kept answer to look up)."""
    m = seq.market
    try:
        qty = to_base(o.quantity, m.decimals)
        price = to_base(o.price, 2, field="price") if o.type == mc.LIMIT and o.price is not None else None
    except DomainError:
        return None
    return fingerprint(_fp_payload(m.id, o, price, qty))


async def place_batch(rt: Runtime, who: Principal, market_id: str, batch: list[BatchOrder]) -> list[Slot]:
    """Every order's answer, in the order sent. Whole-batch refusals (role, market, mode, size, duplicate
    client ids) come before anything is looked at; after that, each order stands alone."""
    if who.kind not in orders.TRADERS:
        raise Forbidden("this participant kind does not trade")
    seq = running.sequencer(rt, market_id)
    m = seq.market
    if m.mode != "continuous":
        raise Invalid("wrong_mode", f"market {market_id} trades by {m.mode}, not by order book")
    if not 1 <= len(batch) <= MAX_ORDERS:
        raise Invalid("validation_error", f"a batch has 1 to {MAX_ORDERS} orders")
    ids = [o.client_id for o in batch]
    if len(set(ids)) != len(ids):
        raise Invalid("validation_error", "each order of a batch needs its own client_id")
    # Each order's answer is kept with it (or, for an order sent before, found kept: by the sequencer's look-up
    # of the client ids it journals, or on a refusal path), under its fingerprint's slot digest.
    fps = [_fp_of(seq, o) for o in batch]
    keeps = [None if fp is None else _keep(who, market_id, o, fp) for o, fp in zip(batch, fps, strict=True)]
    slots: list[Slot | None] = []
    checked: list[tuple[int, _Checked]] = []
    for i, (o, fp) in enumerate(zip(batch, fps, strict=True)):
        try:
            checked.append((i, _check(seq, who, o, fp)))
            slots.append(None)
        except DomainError as exc:
            slots.append(await _refusal(rt, who, seq, o, fp, exc, keeps[i]))
    if m.expires:  # units of a term that ended cannot move (checked before any order is queued: order kept)
        for i, c in list(checked):
            if c.instrument != "CNY" and c.amount:
                try:
                    await expiry.refuse_ended(rt, c.account, c.instrument, None, held=False)
                except DomainError as exc:
                    checked.remove((i, c))
                    slots[i] = await _refusal(rt, who, seq, c.order, c.fp, exc, keeps[i])
    outcomes = await _sequence_all(rt, who, seq, [(c, keeps[i]) for i, c in checked])
    fresh: list[tuple[str, bytes, Answer]] = []
    for (i, c), out in zip(checked, outcomes, strict=True):
        if isinstance(out, DomainError):
            slots[i] = await _refusal(rt, who, seq, c.order, c.fp, out, keeps[i])
        elif isinstance(out, BaseException):
            raise out
        elif (kept := keeps[i]) is not None and kept.answer is not None:  # kept with it (or before: a replay)
            slots[i] = Slot(c.order.client_id, kept.answer.status, body=kept.answer.body)
        else:  # answered by a twin in flight, or from the row of an order placed alone first: kept here
            body = _slot_answer(c.order.client_id, out)
            slots[i] = Slot(c.order.client_id, 201, body=body)
            fresh.append((c.order.client_id, slot_digest(market_id, c.fp), Answer(201, JSON, body)))
    if fresh:  # the effects are done; if this fails, a retry gets the orders' rows (`replayed`)
        try:
            async with rt.tx() as conn:
                await store.insert_answers(conn, who.actor, fresh)
        except Exception:  # the answers stand; only their exact replay is lost (a retry gets the rows)
            log.warning("could not keep the answers of a batch of %s for replays", market_id, exc_info=True)
    out_slots = [s for s in slots if s is not None]
    assert len(out_slots) == len(batch)
    return out_slots


def _slot_answer(client_id: str, out: Submitted) -> bytes:
    """A slot's answer: the order's answer as it would be alone, with its client id and status. msgspec writes
    the bytes `encode` would (compact, UTF-8 unescaped, the same escapes; an order's answer holds strings,
    numbers, dates and nulls, no datetime), as the single-order endpoint's answers are written (by Litestar)."""
    return _SLOT_ENCODER.encode({"client_id": client_id, "status": 201, **out.as_dict()})


def _keep(who: Principal, market_id: str, o: BatchOrder, fp: bytes) -> orders.KeptAnswer:
    """Where a slot's answer is kept (and found again): the caller, the client id, the fingerprint's slot digest."""
    client_id = o.client_id
    return orders.KeptAnswer(who.actor, client_id, slot_digest(market_id, fp),
                             render=lambda out: _slot_answer(client_id, out))


async def _sequence_all(rt: Runtime, who: Principal, seq: MarketSequencer,
                        batch: list[tuple[_Checked, orders.KeptAnswer | None]]) -> list[Submitted | BaseException]:
    """The checked orders through the sequencer, queued back to back in the order sent (nothing runs between
    them), one run per client id: an order whose client id is on its way already (a twin in flight, from another
    request) shares that run's answer. The answers are awaited together; only a failed one takes a coroutine
    of its own to say why (exchange.trading.orders.Queued)."""
    pid = who.participant_id
    runs: list[tuple[tuple[Any, ...], asyncio.Future[tuple[str, Any]]] | None] = []
    queued: list[orders.Queued | BaseException | asyncio.Future[tuple[str, Any]]] = []
    for c, keep in batch:
        key = ("order", pid, c.order.client_id)
        if (twin := rt.inflight.get(key)) is not None:  # a twin's run: its answer, when it ends
            runs.append(None)
            queued.append(twin)
            continue
        runs.append((key, inflight.claim(rt, key)))
        try:
            queued.append(orders.queue_funded(
                rt, who, seq, c.order.client_id, c.fp, kind="order", side=c.order.side, price=c.price, qty=c.qty,
                make=_maker(pid, c), type_=c.order.type, tif=c.order.tif, purpose=None, parent=None, amount=c.amount,
                instrument=c.instrument, account=c.account, keep=keep))
        except DomainError as exc:  # the market is not running: each order is refused alike
            queued.append(exc)
    out: list[Submitted | BaseException] = []
    try:
        waiting = [q.future for q in queued if isinstance(q, orders.Queued)]
        if waiting:
            await asyncio.wait(waiting)
        for (c, _keep), q in zip(batch, queued, strict=True):
            try:
                if isinstance(q, asyncio.Future):  # a twin's run
                    out.append(await inflight.joined(q, c.fp.hex()))
                elif isinstance(q, BaseException):
                    raise q
                else:
                    answered = q.settled()
                    out.append(answered if answered is not None else await q.outcome())
            except Exception as exc:
                out.append(exc)
    finally:
        for (c, _keep), run, result in itertools.zip_longest(batch, runs, out):
            if run is not None:
                key, fut = run
                if isinstance(result, Submitted):
                    inflight.release(rt, key, fut, (c.fp.hex(), result))
                else:
                    inflight.release(rt, key, fut, error=result if isinstance(result, BaseException) else
                                     DomainError("market_unavailable", "the batch was not answered; retry", 503))
    return out


def _maker(pid: int, c: _Checked) -> Callable[[int], mc.NewOrder]:
    o, price = c.order, c.price or 0
    return lambda order_id: mc.NewOrder(order_id, pid, o.side, price, c.qty, o.type, o.tif, o.stp)


async def _refusal(rt: Runtime, who: Principal, seq: MarketSequencer, o: BatchOrder, fp: bytes | None,
                   exc: DomainError, keep: orders.KeptAnswer | None) -> Slot:
    """A refused order's slot; but an order journaled under its client id before gets its first answer (the bytes
    kept with it), as a retry of the single-order endpoint does (the market may have closed or moved since)."""
    if fp is not None and exc.code != "idempotency_conflict":
        try:
            answer = await orders.journaled_answer(rt, who, o.client_id, fp, seq.market.decimals, keep)
        except DomainError as conflict:
            return Slot(o.client_id, conflict.status, error=conflict)
        if keep is not None and keep.answer is not None:
            return Slot(o.client_id, keep.answer.status, body=keep.answer.body)
        if answer is not None:
            return Slot(o.client_id, 201, body=_slot_answer(o.client_id, answer))
    return Slot(o.client_id, exc.status, error=exc)


_BATCH_DIGEST = hashlib.sha256(b"envx order batch under one key\n").digest()  # no HTTP request digest is this


async def claim_batch_key(rt: Runtime, who: Principal, market_id: str, key: str, batch: list[BatchOrder]) -> None:
    """A whole batch sent under an Idempotency-Key: the key names that batch only. The same batch again goes
    on (each order answers its first answer); another batch under the key is 409 `idempotency_conflict` and
    places nothing (red team round 5, F8: it placed new orders)."""
    fp = fingerprint({"market": market_id, "orders": [dataclasses.asdict(o) for o in batch]})
    async with rt.tx() as conn:
        await store.insert_answer(conn, who.actor, key, _BATCH_DIGEST,
                                  store.Answer(200, "application/vnd.envx.batch-fingerprint", fp))
        first = await store.stored_answer(conn, who.actor, key, _BATCH_DIGEST)
    if first is not None and first.body != fp:
        raise DomainError("idempotency_conflict", "this Idempotency-Key was already used for a different batch")
