"""Reads: a registration, the list, its history and the event stream, each as the caller may see it
(pledges.visibility); 404 for a registration the caller may not see, before anything about its state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import NotFound
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.units import to_text
from exchange.pledging import repository as repo
from exchange.pledging.models import PROJECTED, Claim, Pledge, PledgeEvent
from exchange.pledging.values import (
    cny,
    present,
    ranges_of,
    shown,
)
from ledger import queries as ledger
from ledger.queries import HeldBlock
from pledges import lifecycle
from pledges import ranges as rg
from pledges import scope as sc
from pledges import visibility as vis

SEES_ALL = frozenset({"operator", "auditor"})

# ----------------------------------------------------------------------------------- reads


def own_claims(claims: list[Claim], who: Principal) -> list[Claim]:
    return [cl for cl in claims if cl.claimant_id == who.participant_id]


async def role_of(conn: AsyncConnection, who: Principal, p: Pledge) -> str | None:
    """The caller's role on the registration (pledges.visibility): None means it may not see it."""
    claims = await repo.claims_of(conn, p.id) if who.kind not in vis.OVERSIGHT else []
    return vis.role(who.participant_id, who.kind, p, own_claims(claims, who))


async def visible_pledge(conn: AsyncConnection, who: Principal, pledge_id: int) -> tuple[Pledge, str]:
    """The registration and the caller's role; 404 -- as for an id that does not exist -- if it may not
    see it, before anything about its state is looked at."""
    p = await repo.get_pledge(conn, pledge_id)
    who_role = None if p is None else await role_of(conn, who, p)
    if p is None or who_role is None:
        raise NotFound("pledge", pledge_id)
    return p, who_role


def claim_view(cl: Claim, rank: int | None) -> dict[str, Any]:
    return {"id": cl.id, "claimant_id": cl.claimant_id, "claimant_name": cl.claimant_name,
            "loan_contract": cl.loan_contract, "amount": cny(cl.amount), "term_end": cl.term_end,
            "reference": cl.reference, "status": cl.status, "registration_no": cl.registration_no,
            "registered_at": cl.registered_at, "rank": rank, "paid": cny(cl.paid)}


@dataclass(frozen=True, slots=True)
class ClaimView:
    """One claim as its claimant sees it: its terms, status and rank (2 is the first junior), and its lot."""

    claim: Claim
    rank: int | None
    pledge_number: str | None


@dataclass(frozen=True, slots=True)
class PledgeView:
    """A registration as one caller may see it: the row, the blocks its lock holds now, the claims on its lot
    with their ranks, its rank among the pledgor's live registrations, the caller's role and own claims."""

    pledge: Pledge
    blocks: list[HeldBlock]
    claims: list[Claim]
    claim_rank: dict[int, int]
    rank: int | None
    role: str
    own: frozenset[int]

    def fields(self) -> dict[str, Any]:
        """The answer's fields the role may see (pledges.visibility.pledge_view), amounts and quantities as
        decimal strings; api/schemas/pledges.py PledgeOut.of reads it."""
        p, dec = self.pledge, self.pledge.decimals
        locked = p.status in lifecycle.LOCKED and p.hold_id is not None
        full = {
            "id": p.id, "number": p.number, "status": p.status,
            "pledgee": {"id": p.pledgee_id, "name": p.pledgee_name},
            "pledgor": {"id": p.pledgor_id, "name": p.pledgor_name, "uscc": p.pledgor_uscc},
            "instrument": p.instrument, "quantity": to_text(p.quantity, dec),
            "requested_serials": [{"start": s, "end": e} for s, e in ranges_of(p.requested_serials)],
            "serials": [{"start": s, "end": e} for s, e in ranges_of(p.serials)],
            "blocks": [{"start": b.start_serial, "end": b.end_serial, "batch": b.batch,
                        "quantity": to_text(b.size, dec),
                        "serial": f"{b.instrument}-{b.batch}-{b.start_serial}-{b.end_serial}",
                        "frozen_by": b.frozen_by} for b in self.blocks],
            "hold_id": p.hold_id, "hold_url": f"/v1/ledger/entries/{p.hold_id}" if p.hold_id else None,
            "registration_no": p.registration_no, "registered_at": p.registered_at,
            "priority": {"rank_on_lot": 1 if locked else None, "rank_among_pledgor_registrations": self.rank},
            "loan_contract": p.loan_contract, "secured_amount": cny(p.secured_amount),
            "term_start": p.term_start, "term_end": p.term_end, "grace_days": p.grace_days,
            "expires_at": p.expires_at, "references": p.refs,
            "haircut_bps": p.effective_haircut_bps, "haircut_own": p.haircut_bps is not None,
            "thresholds": {"warning_bps": p.warning_bps, "margin_call_bps": p.margin_call_bps,
                           "liquidation_bps": p.liquidation_bps},
            "margin": {"level": p.margin_level, "cure_deadline": p.cure_deadline,
                       "price": cny(p.last_price), "value": cny(p.last_value),
                       "ratio_bps": p.last_ratio_bps, "as_of": p.last_valued_on},
            "transfer_on_default": p.transfer_on_default,
            "secured_scope": present(sc.Scope.of(p.secured_scope).to_json(), dec),
            "declared_default": present(p.declared_default, dec),
            "claims": [claim_view(cl, self.claim_rank.get(cl.id)) for cl in self.claims],
            "enforcement": present(enforcement_view(p.enforcement), dec),
            "promoted_from_claim": p.promoted_from_claim,
            "created_at": p.created_at, "updated_at": p.updated_at, "version": p.version,
        }
        return vis.pledge_view(full, self.role, set(self.own))


async def view_of(conn: AsyncConnection, p: Pledge, who: Principal) -> PledgeView:
    """The registration as the caller may see it (pledges.visibility.pledge_view)."""
    locked = p.status in lifecycle.LOCKED and p.hold_id is not None
    blocks = await ledger.held_blocks(conn, p.hold) if locked else []
    claims = await repo.claims_of(conn, p.id)
    own = own_claims(claims, who)
    who_role = vis.role(who.participant_id, who.kind, p, own)
    if who_role is None:
        raise NotFound("pledge", p.id)
    # On its lot the lock holder is rank 1; registered claims follow by registration number.
    live = [cl for cl in claims if cl.status == "registered"]
    claim_rank = {cl.id: i for i, cl in enumerate(sorted(live, key=lambda x: x.rank_no), start=2)}
    rank = (await repo.priority_rank(conn, p.pledgor_id, p.instrument, p.registration_no)
            if locked and p.registration_no else None)
    return PledgeView(p, blocks, claims, claim_rank, rank, who_role, frozenset(cl.id for cl in own))


async def get(rt: Runtime, who: Principal, pledge_id: int) -> PledgeView:
    async with rt.read() as conn:
        p, _ = await visible_pledge(conn, who, pledge_id)
        return await view_of(conn, p, who)


async def listing(rt: Runtime, who: Principal, *, status: str | None, role: str | None, after: int,
                  limit: int) -> list[PledgeView]:
    viewer = None if who.kind in SEES_ALL else who.participant_id
    async with rt.read() as conn:
        rows = await repo.list_pledges(conn, viewer=viewer, status=status, role=role, after=after, limit=limit)
        return [await view_of(conn, p, who) for p in rows]


async def events_as_seen(conn: AsyncConnection, who: Principal, events: list[PledgeEvent]
                         ) -> list[dict[str, Any]]:
    """Each event as the caller may see it (pledges.visibility.event_view); unseen ones left out."""
    if who.kind in SEES_ALL:
        return [shown(repo.event_view(e), _decimals(e)) for e in events]
    roles: dict[int, tuple[str | None, set[int]]] = {}
    out = []
    for e in events:
        pid = e.pledge_id
        if pid not in roles:
            p = await repo.get_pledge(conn, pid)
            own = own_claims(await repo.claims_of(conn, pid), who)
            roles[pid] = (vis.role(who.participant_id, who.kind, p, own) if p else None, {cl.id for cl in own})
        seen = vis.event_view(shown(repo.event_view(e), _decimals(e)), *roles[pid])
        if seen is not None:
            out.append(seen)
    return out


async def history(rt: Runtime, who: Principal, pledge_id: int) -> list[dict[str, Any]]:
    async with rt.read() as conn:
        await visible_pledge(conn, who, pledge_id)
        return await events_as_seen(conn, who, await repo.events_of(conn, pledge_id))


async def projection_check(rt: Runtime, pledge_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state folded from the events, state in the row): equal unless something bypassed the events."""
    async with rt.read() as conn:
        events = await repo.events_of(conn, pledge_id)
        row = await repo.get_pledge(conn, pledge_id)
    assert row is not None
    folded = lifecycle.project((e.type, e.data) for e in events)
    return {k: folded.get(k) for k in PROJECTED}, row.state()


async def event_stream(rt: Runtime, who: Principal, *, after: int, limit: int,
                       types: list[str] | None) -> list[dict[str, Any]]:
    viewer = None if who.kind in SEES_ALL else who.participant_id
    out: list[dict[str, Any]] = []
    async with rt.read() as conn:
        # Pages are cut after the caller's view is applied, so a page of events it may not see does
        # not end the stream early.
        while len(out) < limit:
            rows = await repo.event_stream(conn, viewer, after, limit, types)
            out += await events_as_seen(conn, who, rows)
            if len(rows) < limit:
                break
            after = rows[-1].id
    return out[:limit]


def _decimals(e: PledgeEvent) -> int:
    assert e.decimals is not None, "history and stream read each event with its lot's instrument"
    return e.decimals


def enforcement_view(e: dict[str, Any] | None) -> dict[str, Any] | None:
    if e is None:
        return None
    out = dict(e)
    if "lot" in out:
        out["unsold"] = rg.total(ranges_of(out["lot"]))
    return out


