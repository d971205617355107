"""One use case on one registration: its row lock, its replay by client id, its event and projection.

`mutate` opens the use case's one transaction, locks the pledge row, answers 404 to a caller who may not
see it (before any replay or state check), replays a client id already used, or runs the body, which
records events (`record_event`: event, projection and webhook outbox in the same transaction). Ledger
requests carry client ids derived from the row's version (`ledger_id`), so a retry after a crash between
the ledger and our commit replays the same entries. Everything the body needs from other tables it reads
on the body's connection: nothing inside the transaction checks out another pooled connection.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Forbidden, NotFound
from exchange.core.idempotency import check_replay, internal
from exchange.core.principal import SYSTEM_ACTOR, Principal
from exchange.core.runtime import Runtime
from exchange.core.units import iso, to_text
from exchange.pledging import repository as repo
from exchange.pledging import webhooks
from exchange.pledging.models import Pledge, PledgeEvent, jsonable_deep
from exchange.pledging.values import (
    now,
    shown,
)
from exchange.pledging.views import (
    PledgeView,
    get,
    role_of,
)
from ledger import queries as ledger
from ledger.state import Entry
from pledges import lifecycle
from pledges import ranges as rg
from pledges import visibility as vis


def kick(rt: Runtime) -> None:
    """Wake the delivery task after a commit that wrote outbox rows (the runtime's event: it stays set
    until a worker, if one runs, takes the rows)."""
    rt.pledge_outbox.set()


def ledger_id(p: Pledge, op: str) -> str:
    # Derived from the row version: a retry of the same step replays, the next step gets a new id. In the
    # registry's own namespace: no key of the caller's (whose actor it runs under) can pre-empt it.
    return internal("pledge", p.id, f"v{p.version + 1}", op)


def ledger_meta(p: Pledge, op: str, **extra: Any) -> dict[str, Any]:
    return {"pledge": p.id, "pledge_number": p.number, "op": op, "pledgee": p.pledgee_id,
            "pledgor": p.pledgor_id, **extra}


def serials_of(entry: Entry) -> list[list[int]]:
    return [list(r) for r in rg.normalise(json.loads(entry.meta).get("serials", []))]


async def cut_pieces(conn: AsyncConnection, instrument: str, serials: list[tuple[int, int]],
                  account: int | None = None) -> tuple[tuple[int, int], ...]:
    """Named serials cut at block edges, as the ledger takes them (see pledges.ranges.split_at)."""
    if not serials:
        return ()
    return tuple(rg.split_at(serials, await ledger.block_bounds(conn, instrument, account)))


# ----------------------------------------------------------------------------------- recording


async def record_event(conn: AsyncConnection, p: Pledge, event_type: str, changes: dict[str, Any], *,
                       actor: str, info: dict[str, Any] | None = None, seqs: list[int] | tuple[int, ...] = (),
                       client_id: str | None = None, fp: bytes | None = None, notify: tuple[int, ...] = ()
                       ) -> Pledge:
    """Append one event, update the projection from it, queue the webhooks: one transaction. Returns
    the registration as the event left it (the next ledger step's client id counts the new version)."""
    changes = jsonable_deep(changes)
    state = lifecycle.apply(p.state(), event_type, {"set": changes})
    await repo.write_state(conn, p.id, state)
    ev = await repo.add_event(conn, p.id, event_type, {"set": changes, **jsonable_deep(info or {})},
                              list(seqs), actor, client_id, fp)
    p = p.with_state(state)
    if event_type in lifecycle.NOTIFY:
        await _notify(conn, p, ev, [p.pledgee_id, *notify])
    return p


async def _notify(conn: AsyncConnection, p: Pledge, ev: PledgeEvent, recipients: list[int]) -> None:
    """Queue the event's webhooks, each recipient getting the event as it may see it (a junior
    creditor the lot's changes and its own claims, a claimant whose claim is only filed that claim)."""
    claims = await repo.claims_of(conn, p.id)
    full = shown(repo.event_view(ev, p.number, p.instrument), p.decimals)
    views: dict[int, bytes] = {}
    for pid in dict.fromkeys(recipients):
        own = [cl for cl in claims if cl.claimant_id == pid]
        # A webhook recipient is a bank (or the pledgor), never oversight: its kind does not matter here.
        seen = vis.event_view(full, vis.role(pid, "", p, own), {cl.id for cl in own})
        if seen is not None:
            views[pid] = webhooks.body_of(seen)
    await repo.enqueue_webhook(conn, ev.id, ev.type, views)


Visibility = Callable[[AsyncConnection, Pledge], Awaitable[bool]]


async def run(rt: Runtime, who: Principal | None, client_id: str, pledge_id: int, fp: bytes,
              body: Callable[[AsyncConnection, Pledge], Awaitable[None]], *, visible: Visibility | None = None
              ) -> None:
    """Run `body` under the pledge's row lock unless this client id already did (then replay): the use
    case's one transaction. `who` None: the registry itself (a settlement, the worker).

    A caller who may not see the registration (by default: has no role on it, pledges.visibility) gets
    404, as for an id that does not exist, before any replay or state check. The event `body` records
    with the client id must use the same actor as the look-up here."""
    actor = who.actor if who else SYSTEM_ACTOR
    async with rt.tx() as conn:
        p = await repo.lock_pledge(conn, pledge_id)
        if p is not None and who is not None:
            seen = await visible(conn, p) if visible is not None else await role_of(conn, who, p) is not None
            p = p if seen else None
        if p is None:
            raise NotFound("pledge", pledge_id)
        prior = await repo.event_by_client(conn, actor, client_id)
        if prior is not None:
            check_replay(prior.fingerprint, fp)
        else:
            await body(conn, p)
    kick(rt)


async def mutate(rt: Runtime, who: Principal, client_id: str, pledge_id: int, fp: bytes,
                 body: Callable[[AsyncConnection, Pledge], Awaitable[None]], *, visible: Visibility | None = None
                 ) -> PledgeView:
    """`run`, then the registration as the caller sees it now."""
    await run(rt, who, client_id, pledge_id, fp, body, visible=visible)
    return await get(rt, who, pledge_id)


def require_pledgee(who: Principal, p: Pledge) -> None:
    if who.participant_id != p.pledgee_id:
        raise Forbidden("only the pledgee bank may do this to the registration")


def require_pledgor(who: Principal, p: Pledge) -> None:
    if who.participant_id != p.pledgor_id:
        raise Forbidden("only the pledgor may do this to the registration")


def require_unexpired(p: Pledge) -> None:
    if now() >= p.expires_at:
        raise DomainError("pledge_expired", f"the registration expired at {iso(p.expires_at)}")


async def require_unfrozen(conn: AsyncConnection, p: Pledge, verb: str) -> None:
    """Refuse a change of the lock while a court freeze sits on it, naming the court and case (the
    parties of a pledge know the freezes on its units; freezes are in the public register)."""
    frozen = [b for b in await ledger.held_blocks(conn, p.hold) if b.frozen_by is not None]
    if frozen:
        n = sum(b.size for b in frozen)
        cases = []
        for hold in sorted({b.frozen_by for b in frozen if b.frozen_by is not None}):
            f = await repo.freeze_of_hold(conn, hold)
            cases.append(f"{f.court_name}, case {f.case_number}" if f else f"freeze hold {hold}")
        raise DomainError("frozen", f"{to_text(n, p.decimals)} pledged units are frozen ({'; '.join(cases)}); the "
                          f"registration cannot be {verb} until the freeze is lifted")


