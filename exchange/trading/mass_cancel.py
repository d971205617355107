"""Mass cancel: everything a participant has resting in one market, or in every market, in one request.

Queued to each market's sequencer like a command (exchange/trading/pipeline.py `cancel_all`): whatever of
the participant's was queued before it is cancelled too, and each cancel releases its order's hold as any
cancel does. The cancels carry the reason `mass_cancel` (a dead-man switch's: `dead_man_switch`), in the
orders' projection and in a replay after a restart alike.

Idempotent by client id: the answer is kept (`answers_by_request`, under a digest no HTTP request can have)
and a retry with the same client id gets it back; the same client id for another scope is 409
`idempotency_conflict`. A market that takes no writes now (stopped on a bug, or recovering from an outage) is
named in `not_cancelled` rather than failing the others; the holds there stay where they are.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from exchange.core import store
from exchange.core.errors import DomainError, Forbidden
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.store import Answer
from exchange.core.units import to_text
from exchange.registry import participants
from exchange.trading import inflight, repository, running
from exchange.trading.pipeline import MarketSequencer
from matching import events as ev

_DIGEST = hashlib.sha256(b"envx mass cancel\n").digest()  # no HTTP request digest is this one


@dataclass(frozen=True, slots=True)
class Cancelled:
    market_id: str
    order_id: int
    kind: str
    side: str
    quantity: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class NotCancelled:
    market_id: str
    code: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CancelAll:
    client_id: str | None
    market_id: str | None
    reason: str
    cancelled: tuple[Cancelled, ...]
    not_cancelled: tuple[NotCancelled, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "market_id": self.market_id, "reason": self.reason,
                "cancelled": [c.as_dict() for c in self.cancelled],
                "not_cancelled": [n.as_dict() for n in self.not_cancelled]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CancelAll:
        return cls(d["client_id"], d["market_id"], d["reason"], tuple(Cancelled(**c) for c in d["cancelled"]),
                   tuple(NotCancelled(**n) for n in d["not_cancelled"]))


async def mass_cancel(rt: Runtime, who: Principal, client_id: str, market_id: str | None) -> CancelAll:
    """The caller's mass cancel (idempotent by client id)."""
    if who.kind not in participants.HOLDER_KINDS:
        raise Forbidden("this participant kind does not trade")
    if market_id is not None:
        running.sequencer(rt, market_id)  # 404 for an unknown market, before anything else
    async with rt.read() as conn:
        kept = await store.stored_answer(conn, who.actor, client_id, _DIGEST)
    if kept is not None:
        return _replayed(kept, market_id)
    fp = json.dumps({"market_id": market_id})

    async def run() -> CancelAll:
        done = await cancel_all(rt, who.participant_id, market_id, ev.MASS_CANCEL, client_id)
        answer = Answer(200, "application/json", json.dumps(done.as_dict(), ensure_ascii=False).encode())
        async with rt.tx() as conn:
            await store.insert_answer(conn, who.actor, client_id, _DIGEST, answer)
        async with rt.read() as conn:  # a twin that raced us here kept its answer first: that one stands
            first = await store.stored_answer(conn, who.actor, client_id, _DIGEST)
        return _replayed(first, market_id) if first is not None else done

    return await inflight.once(rt, ("mass_cancel", who.participant_id, client_id), fp, run)


def _replayed(kept: Answer, market_id: str | None) -> CancelAll:
    done = CancelAll.from_dict(json.loads(kept.body))
    if done.market_id != market_id:
        raise DomainError("idempotency_conflict", "this client id was already used for a different request")
    return done


async def cancel_all(rt: Runtime, participant_id: int, market_id: str | None, reason: str,
                     client_id: str | None = None) -> CancelAll:
    """Cancel what the participant has resting in `market_id` (None: every market), with `reason`."""
    seqs = [running.sequencer(rt, market_id)] if market_id is not None else \
        sorted(running.sequencers(rt), key=lambda s: s.market.id)
    outcomes = await asyncio.gather(*(_one(s, participant_id, reason) for s in seqs))
    cancelled: list[tuple[str, int, int]] = []  # (market, order id, quantity cancelled)
    not_cancelled: list[NotCancelled] = []
    for s, out in zip(seqs, outcomes, strict=True):
        if isinstance(out, DomainError):
            not_cancelled.append(NotCancelled(s.market.id, str(out.code), out.message))
        else:
            cancelled += [(s.market.id, int(e[1]), int(e[3])) for e in out]
    keys = [(mid, oid) for mid, oid, _ in cancelled]
    async with rt.read() as conn:
        rows = {(o.market_id, o.id): o for o in await repository.orders_by_ids(conn, keys)} if keys else {}
    decimals = {s.market.id: s.market.decimals for s in seqs}
    items = []
    for mid, oid, qty in cancelled:
        row = rows.get((mid, oid))
        items.append(Cancelled(mid, oid, row.kind if row else "order", row.side if row else "",
                               to_text(qty, decimals[mid]), reason))
    return CancelAll(client_id, market_id, reason, tuple(items), tuple(not_cancelled))


async def _one(seq: MarketSequencer, participant_id: int, reason: str) -> list[ev.Event] | DomainError:
    """The participant's cancel events in one market (its own cancels only), or why it takes no writes."""
    try:
        answers = await seq.cancel_all(participant_id, reason)
    except DomainError as exc:  # market_stopped / market_unavailable
        return exc
    return [e for _, events, _ in answers for e in events
            if e[0] == ev.CANCELLED and e[2] == participant_id]
