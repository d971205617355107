"""Courts behind the pledge: freezes on pledged units, and what an enforcement does to them.

A freeze on pledged units is always later than the pledge (the ledger never pledges frozen units),
so the pledgee's priority survives it (民诉法解释 §157: preservation of pledged property does not affect
the pledgee's priority): enforcement goes ahead under the freeze. The lot's units leave the freeze
for the sale (void, and the freeze's other units frozen again, in the sale's ledger event); the
freeze extends to what replaces them (查扣冻规定: the freeze reaches the substitute of frozen
property), so the surplus that would go to the pledgor is paid, for the frozen share of the lot, to
the court's designated account (the cash account of its deduct_to participant, else its own), and
unsold units that go back to the pledgor are frozen again in the same share. The banks whose locked
units a court freezes or unfreezes are told (`note_freeze`, called by exchange.courts in its transaction).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError
from exchange.core.ledger_events import created_holds, event_requests
from exchange.core.runtime import Runtime
from exchange.pledging import repository as repo
from exchange.pledging.accounts import account_of
from exchange.pledging.models import Pledge
from exchange.pledging.recording import (
    ledger_id,
    ledger_meta,
    record_event,
)
from exchange.pledging.values import (
    micros,
    ranges_of,
)
from ledger import commands as c
from ledger import queries as ledger
from ledger.state import Entry
from pledges import lifecycle
from pledges import ranges as rg
from pledges import waterfall as wf

# ----------------------------------------------------------------------------------- courts behind the pledge
#
# A freeze on pledged units is always later than the pledge (the ledger never pledges frozen units),
# so the pledgee's priority survives it (民诉法解释 §157: preservation of pledged property does not affect
# the pledgee's priority): enforcement goes ahead under the freeze. The lot's units leave the freeze
# for the sale (void, and the freeze's other units frozen again, in the sale's ledger event); the
# freeze extends to what replaces them (查扣冻规定: the freeze reaches the substitute of frozen
# property), so the surplus that would go to the pledgor is paid, for the frozen share of the lot, to
# the court's designated account (the cash account of its deduct_to participant, else its own), and
# unsold units that go back to the pledgor are frozen again in the same share.


async def courts_on_lot(conn: AsyncConnection, rt: Runtime, p: Pledge) -> list[dict[str, Any]]:
    """The active freezes on the lot's units (locked, pledge row first): who, how many, where to pay."""
    by: dict[int, list[tuple[int, int]]] = {}
    for b in await ledger.held_blocks(conn, p.hold):
        if b.frozen_by is not None:
            by.setdefault(b.frozen_by, []).append((b.start_serial, b.end_serial))
    out = []
    for hold, spans in sorted(by.items()):
        f = await repo.freeze_of_hold(conn, hold, lock=True)
        if f is None:  # a court renewed, lifted or deducted it while we waited for its row
            raise DomainError("freeze_changed", "a court changed a freeze on the lot just now; retry with the "
                              "same Idempotency-Key")
        out.append({"freeze": f.root_id or f.id, "freeze_id": f.id, "court_id": f.court_id,
                    "case_number": f.case_number, "units": rg.total(spans),
                    "serials": [list(r) for r in rg.normalise(spans)],
                    "account": await account_of(conn, rt, f.deduct_to_id or f.court_id, "cash"), "_row": f})
    return out


def court_record(courts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in ct.items() if not k.startswith("_")} for ct in courts]


async def courts_in_force(conn: AsyncConnection, e: dict[str, Any]) -> list[tuple[str, int]]:
    """(party, frozen units) of the courts whose freeze still stands (not lifted, not expired)."""
    out = []
    for ct in e.get("courts") or []:
        head = await repo.freeze_chain_head(conn, ct["freeze"])
        if head is not None and head.status in ("active", "deducted"):
            out.append((f"court:{ct['freeze']}", ct["units"]))
    return out


async def handover(conn: AsyncConnection, rt: Runtime, p: Pledge, courts: list[dict[str, Any]]
                   ) -> tuple[list[c.Leg], list[dict[str, Any]]]:
    """Ledger legs, to go in front of the pledge's post in its event, that take the lot's units out of the
    freezes on them and freeze the rest of each freeze's units again."""
    lot = ranges_of(p.serials)
    holding = await account_of(conn, rt, p.pledgor_id, "holding")
    legs: list[c.Leg] = []
    plan = []
    for ct in courts:
        f = ct["_row"]
        frozen = [(b.start_serial, b.end_serial) for b in await ledger.frozen_blocks(conn, f.hold_id)]
        rest = rg.minus(frozen, lot)
        court_holding = await account_of(conn, rt, f.court_id, "holding")
        legs.append(c.VoidHold(f.hold_id))
        if rest:
            legs.append(c.CreateHold("freeze", holding, court_holding, p.instrument, rg.total(rest), tuple(rest),
                                     micros(f.expires_at)))
        plan.append({"freeze": f, "rest": rest, "units": ct["units"]})
    return legs, plan


def handover_meta(plan: list[dict[str, Any]]) -> dict[str, Any]:
    """What the enforcement's ledger metadata says of the freezes it takes the lot out of."""
    if not plan:
        return {}
    return {"freezes": [{"freeze": x["freeze"].id, "case_number": x["freeze"].case_number,
                         "still_frozen": rg.total(x["rest"])} for x in plan]}


async def after_handover(conn: AsyncConnection, p: Pledge, plan: list[dict[str, Any]],
                         entries: list[Entry], actor: str, method: str) -> None:
    """Record on each freeze what the enforcement's event did to it: the new hold of its rest (the creations of
    the event come in the order `handover` put them, in front of any other)."""
    holds = iter(created_holds(entries))
    seqs = [e.seq for e in entries]
    for item in plan:
        f, rest = item["freeze"], item["rest"]
        hold = next(holds) if rest else None
        await repo.update_freeze(conn, f.id, hold_id=hold, quantity=rg.total(rest), serials=[list(r) for r in rest])
        await repo.add_freeze_event(conn, f.id, "released_to_pledgee", {
            "pledge": p.id, "pledge_number": p.number, "method": method, "units": item["units"],
            "serials": [list(r) for r in rg.intersect(ranges_of(p.serials), f.serials or [])],
            "still_frozen": rg.total(rest),
            "why": "the pledge ranks before the freeze; the freeze extends to the surplus of the sale"},
            seqs, actor, None, None)


async def courts_paid(conn: AsyncConnection, p: Pledge, payouts: list[wf.Payout], seqs: list[int],
                       actor: str) -> None:
    """The court sees what the enforcement paid it, on its freeze."""
    for x in payouts:
        if x.role == "court" and x.paid:
            head = await repo.freeze_chain_head(conn, int(x.party.split(":")[1]))
            if head is None:
                continue
            await repo.add_freeze_proceeds(conn, head.id, x.paid)
            await repo.add_freeze_event(conn, head.id, "proceeds_received", {
                "pledge": p.id, "pledge_number": p.number, "amount": x.paid,
                "total": head.proceeds_received + x.paid}, seqs, actor, None, None)


async def return_units(conn: AsyncConnection, rt: Runtime, p: Pledge, serials: list[tuple[int, int]], *,
                       relock: bool, actor: str) -> list[Entry]:
    """Unsold units from the escrow back to the pledgor -- under the lock again (`relock`), or free --
    and the courts' share of them frozen again (preferring the serials each court froze): one ledger event
    (exchange.core.ledger_events: a further freeze created again is an entry of its own after it)."""
    e = p.running
    holding = await account_of(conn, rt, p.pledgor_id, "holding")
    qty = rg.total(serials)
    legs: list[c.Leg] = [c.Transfer(e["escrow_account"], holding, p.instrument, qty, tuple(serials))]
    if relock:
        legs.append(c.CreateHold("pledge", holding, e["escrow_account"], p.instrument, qty, tuple(serials),
                                 micros(p.expires_at)))
    standing = []
    for ct in e.get("courts") or []:
        head = await repo.freeze_chain_head(conn, ct["freeze"])
        head = await repo.lock_freeze(conn, head.id) if head is not None else None
        if head is not None and head.status == "active":
            standing.append((ct, head))
    # Each standing freeze takes its share of the lot in what comes back; the pledgor the rest.
    shares = wf.apportion(qty, [ct["units"] for ct, _ in standing]
                          + [e["lot_quantity"] - sum(ct["units"] for ct, _ in standing)])
    plan = []
    taken: list[tuple[int, int]] = []
    for (ct, head), n in zip(standing, shares, strict=False):
        if not n:
            continue
        mine = rg.pick(rg.minus(serials, taken), n, prefer=ct["serials"])
        taken = rg.union(taken, mine)
        frozen = rg.union(ranges_of(head.serials), mine)
        court_holding = await account_of(conn, rt, head.court_id, "holding")
        if head.hold_id is not None:
            legs.append(c.VoidHold(head.hold_id))
        legs.append(c.CreateHold("freeze", holding, court_holding, p.instrument, rg.total(frozen), tuple(frozen),
                                 micros(head.expires_at)))
        plan.append((head, frozen, mine))
    meta = ledger_meta(p, "return", relock=relock, **({"refrozen": [
        {"freeze": head.id, "case_number": head.case_number} for head, _, _ in plan]} if plan else {}))
    entries = await rt.submit_linked(event_requests(actor, "return", legs, ledger_id(p, "return"), meta))
    holds = created_holds(entries)[1 if relock else 0:]
    for (head, frozen, mine), hold in zip(plan, holds, strict=True):
        await repo.update_freeze(conn, head.id, hold_id=hold, quantity=rg.total(frozen),
                                 serials=[list(r) for r in frozen])
        await repo.add_freeze_event(conn, head.id, "frozen_again", {
            "pledge": p.id, "pledge_number": p.number, "units": rg.total(mine),
            "serials": [list(r) for r in mine], "why": "unsold units of the pledged lot went back to the holder"},
            [x.seq for x in entries], actor, None, None)
    return entries


async def frozen_pledge_units(conn: AsyncConnection, freeze_hold: int) -> dict[int, int]:
    """Pledge hold -> number of its units the freeze covers (read before the freeze is resolved)."""
    units: dict[int, int] = {}
    for b in await ledger.frozen_blocks(conn, freeze_hold):
        if b.hold is not None:
            units[b.hold] = units.get(b.hold, 0) + b.size
    return units


async def note_freeze(conn: AsyncConnection, units: dict[int, int], freeze_hold: int, event_type: str,
                      info: dict[str, Any], actor: str) -> list[int]:
    """Tell the banks whose locked units a court freeze now covers (freeze_noticed) or left (freeze_lifted)."""
    if not units:
        return []
    noted = []
    for pledge_id in await repo.pledges_of_holds(conn, sorted(units)):
        p = await repo.lock_pledge(conn, pledge_id)
        if p is None or p.status not in lifecycle.LOCKED:
            continue
        await record_event(conn, p, event_type, {}, info={**info, "freeze_hold": freeze_hold,
                                                     "units": units.get(p.hold)}, actor=actor)
        noted.append(pledge_id)
    return noted


