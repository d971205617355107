"""Ranked (junior) claims of other creditors on a pledged lot: filed by a bank, registered when the
pledgor confirms, released by the claimant. Claim changes run under the lot's pledge row lock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Forbidden, Invalid, NotFound
from exchange.core.idempotency import fingerprint
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.units import CNY_DECIMALS, to_base
from exchange.pledging import repository as repo
from exchange.pledging.models import Claim, Pledge
from exchange.pledging.recording import (
    record_event,
    require_pledgor,
    require_unfrozen,
    run,
)
from exchange.pledging.refusals import translate_refusals
from exchange.pledging.values import (
    now,
    today,
)
from exchange.pledging.views import (
    ClaimView,
    PledgeView,
    get,
    role_of,
)
from pledges import lifecycle
from pledges import visibility as vis

# ----------------------------------------------------------------------------------- ranked claims


@translate_refusals
async def file_claim(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, loan_contract: str,
                     amount: str, term_end: date, reference: str | None) -> ClaimView:
    """A second-ranking creditor records its claim on a pledged lot; it counts once the pledgor confirms.

    A lot in the public register (active or being enforced) may be claimed on by any bank; anything
    else is 404 unless the caller may see it. The answer is the claim alone: a filing grants no
    visibility of the senior registration (pledges.visibility)."""
    fen = to_base(amount, CNY_DECIMALS, field="amount")
    if term_end < today():
        raise Invalid("term_ended", f"the claim's term ended on {term_end}")
    fp = fingerprint({"op": "file_claim", "pledge": pledge_id, "contract": loan_contract, "amount": fen,
                      "term_end": term_end.isoformat(), "reference": reference})

    async def visible(conn: AsyncConnection, p: Pledge) -> bool:
        if p.status in lifecycle.PUBLIC or await role_of(conn, who, p) is not None:
            return True
        prior = await repo.event_by_client(conn, who.actor, client_id)  # a retry gets its first answer
        return prior is not None and prior.pledge_id == p.id

    async def body(conn: AsyncConnection, p: Pledge) -> None:
        if who.kind != "bank":
            raise Forbidden("only a bank files a ranked claim")
        lifecycle.require(p.status, "file_claim")
        claim_id = await repo.insert_claim(conn, p.id, who.participant_id, loan_contract, fen, term_end, reference)
        await record_event(conn, p, "claim_filed", {}, info={"claim": claim_id, "claimant": who.participant_id,
                                                        "amount": fen, "term_end": term_end.isoformat()},
                      actor=who.actor, client_id=client_id, fp=fp, notify=(who.participant_id,))

    await run(rt, who, client_id, pledge_id, fp, body, visible=visible)
    async with rt.read() as conn:
        event = await repo.event_by_client(conn, who.actor, client_id)
        assert event is not None and event.type == "claim_filed"
        return await _claim_answer(conn, int(event.data["claim"]))


async def _claim_answer(conn: AsyncConnection, claim_id: int) -> ClaimView:
    """One claim as its claimant sees it: its own terms, status and rank, and which lot it is on."""
    cl = await repo.get_claim(conn, claim_id)
    assert cl is not None
    rank = None
    if cl.status == "registered":
        live = await repo.claims_of(conn, cl.pledge_id, ("registered",))
        rank = 2 + sorted(x.rank_no for x in live).index(cl.rank_no)
    lot = await repo.get_pledge(conn, cl.pledge_id)
    return ClaimView(cl, rank, None if lot is None else lot.number)


async def _claim_mutation(rt: Runtime, who: Principal, client_id: str, claim_id: int, op: str,
                          body: Callable[[AsyncConnection, Pledge, Claim, bytes], Awaitable[None]]) -> int:
    """Claim changes run under the lot's pledge row lock (pledge first, then claim: one lock order).

    A claim is seen by its claimant and by the lot's parties; anyone else gets 404 as for no claim. Returns
    the lot's pledge id."""
    async with rt.read() as conn:
        claim = await repo.get_claim(conn, claim_id)
        lot = await repo.get_pledge(conn, claim.pledge_id) if claim is not None else None
    if claim is None or lot is None or not vis.claim_visible(who.participant_id, who.kind, lot, claim):
        raise NotFound("claim", claim_id)
    fp = fingerprint({"op": op, "claim": claim_id})

    async def seen(conn: AsyncConnection, p: Pledge) -> bool:
        return True  # the claim's visibility decides, checked above and again under the lock below

    async def wrapped(conn: AsyncConnection, p: Pledge) -> None:
        cl = await repo.lock_claim(conn, claim_id)
        if cl is None or not vis.claim_visible(who.participant_id, who.kind, p, cl):
            raise NotFound("claim", claim_id)
        if cl.pledge_id != p.id:
            raise DomainError("claim_moved", "the claim moved to another pledge (its senior was released); retry")
        await body(conn, p, cl, fp)

    await run(rt, who, client_id, claim.pledge_id, fp, wrapped, visible=seen)
    return claim.pledge_id


@translate_refusals
async def confirm_claim(rt: Runtime, who: Principal, client_id: str, claim_id: int) -> PledgeView:
    async def body(conn: AsyncConnection, p: Pledge, cl: Claim, fp: bytes) -> None:
        require_pledgor(who, p)
        if cl.status != "filed":
            raise DomainError("claim_not_filed", f"claim {claim_id} is {cl.status}")
        lifecycle.require(p.status, "file_claim")
        # A charge the holder sets on frozen property cannot be asserted against the court's creditor
        # (查扣冻规定): no new registration on a lot while a court freeze sits on it.
        await require_unfrozen(conn, p, "given a new registered claim")
        reg = await repo.next_registration_no(conn)
        await repo.update_claim(conn, claim_id, status="registered", registration_no=reg, registered_at=now())
        await record_event(conn, p, "claim_registered", {}, info={"claim": claim_id, "registration_no": reg},
                      actor=who.actor, client_id=client_id, fp=fp, notify=(cl.claimant_id,))

    return await get(rt, who, await _claim_mutation(rt, who, client_id, claim_id, "confirm_claim", body))


@translate_refusals
async def release_claim(rt: Runtime, who: Principal, client_id: str, claim_id: int) -> ClaimView:
    """The claimant gives up its claim; the answer is the claim (it sees the lot no longer)."""
    async def body(conn: AsyncConnection, p: Pledge, cl: Claim, fp: bytes) -> None:
        if who.participant_id != cl.claimant_id:
            raise Forbidden("only the claimant releases its claim")
        if cl.status not in ("filed", "registered"):
            raise DomainError("claim_closed", f"claim {claim_id} is {cl.status}")
        await repo.update_claim(conn, claim_id, status="released")
        await record_event(conn, p, "claim_released", {}, info={"claim": claim_id}, actor=who.actor,
                           client_id=client_id,
                      fp=fp, notify=(cl.claimant_id,))

    await _claim_mutation(rt, who, client_id, claim_id, "release_claim", body)
    async with rt.read() as conn:
        return await _claim_answer(conn, claim_id)


