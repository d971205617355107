"""Participants: who may hold, trade, lend against or order the retirement of units; what they are (an
organisation with its USCC, or a natural person with a private identity document: exchange/registry/subjects.py);
suspension and reinstatement.

A person's identity document is private: it is in the record only for operators, auditors and the
person itself (`record_of`, `directory`, answered with `private=True`); what other services build answers
from leaves it out.

Every function answers models (exchange/registry/models.py); `find` and `party` take the caller's
connection, so a use case resolves its parties on its own connection (inside its one transaction, or in a
read before it) without checking out a second pooled connection.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Forbidden, NotFound
from exchange.core.idempotency import check_replay, fingerprint, internal
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.registry import repository as repo
from exchange.registry.models import Participant, StatusChange
from exchange.registry.subjects import Subject, subject_of
from ledger import commands as c

log = logging.getLogger("envx.participants")

KINDS = ("operator", "issuer", "enterprise", "bank", "court", "auditor")
# Who may hold, trade and retire units (auditors only look).
HOLDER_KINDS = frozenset({"operator", "issuer", "enterprise", "bank", "court"})
# Who sees every participant; the rest see themselves.
SEES_ALL = frozenset({"operator", "auditor"})
# Who may be issued units (an issuance's holder).
ISSUANCE_HOLDER_KINDS = frozenset({"enterprise", "issuer", "operator"})


def _fingerprint(name: str, kind: str, subject: Subject) -> bytes:
    if subject.kind == "organisation":  # as before subjects existed, so older retries still replay
        return fingerprint({"name": name, "kind": kind, "uscc": subject.uscc})
    return fingerprint({"name": name, "kind": kind, **subject.payload()})


# --- admission ----------------------------------------------------------------------------------------------


async def check_unique(rt: Runtime, subject: Subject) -> None:
    """409 if the USCC or identity document belongs to a participant already (again at insert: a race)."""
    async with rt.read() as conn:
        if subject.uscc is not None and await repo.uscc_taken(conn, subject.uscc):
            raise DomainError("uscc_taken", f"unified social credit code {subject.uscc} is already registered")
        doc = subject.id_document
        if doc is not None and await repo.id_document_taken(conn, doc):
            raise DomainError("id_document_taken", "a participant with this identity document is already registered")


async def admit(rt: Runtime, actor: str, client_id: str, *, name: str, kind: str, uscc: str | None = None,
                subject: Subject | None = None) -> Participant:
    """Admit a participant and open its holding and cash accounts. Idempotent by (actor, client_id): the
    row is written first (so a duplicate USCC or document is refused by the unique index before any account
    opens), then the accounts, under client ids derived from it."""
    if kind not in KINDS:
        raise DomainError("invalid_participant_kind", f"kind must be one of {', '.join(KINDS)}", 422)
    if subject is None:
        subject = subject_of(kind, "organisation", uscc, None)
    fp = _fingerprint(name, kind, subject)
    async with rt.read() as conn:
        p = await repo.admission(conn, actor, client_id)
    if p is None:
        await check_unique(rt, subject)
        try:
            async with rt.tx() as conn:
                p = await repo.insert_participant(conn, actor, client_id, name, kind, subject, fp)
        except IntegrityError as exc:  # another admission took the code or document between check and insert
            if "participants_id_document" in str(exc.orig):
                raise DomainError("id_document_taken", "a participant with this identity document is already "
                                                       "registered") from None
            if "participants_uscc_key" in str(exc.orig):
                raise DomainError("uscc_taken", f"unified social credit code {subject.uscc} is already "
                                                "registered") from None
            raise
        if p is None:  # a concurrent retry won the insert
            return await admit(rt, actor, client_id, name=name, kind=kind, subject=subject)
    check_replay(p.fingerprint, fp)
    if p.holding_account is None or p.cash_account is None:
        p = await _open_accounts(rt, actor, client_id, name, p.id)
    return p


async def _open_accounts(rt: Runtime, actor: str, client_id: str, name: str, participant_id: int) -> Participant:
    # Derived client ids: a retry after a crash reopens nothing.
    holding, cash = await rt.submit_linked([
        c.Request(actor, c.OpenAccount(f"participant:{client_id}", "holding"),
                  internal("account", client_id, "holding"), {"participant_name": name}),
        c.Request(actor, c.OpenAccount(f"participant:{client_id}", "cash"),
                  internal("account", client_id, "cash"), {"participant_name": name}),
    ])
    async with rt.tx() as conn:
        return await repo.set_accounts(conn, participant_id, int(holding.body["account"]), int(cash.body["account"]))


# --- the directory ------------------------------------------------------------------------------------------


async def find(conn: AsyncConnection, participant_id: int) -> Participant:
    """The participant, on the caller's connection; 404 if there is none."""
    p = await repo.participant(conn, participant_id)
    if p is None:
        raise NotFound("participant", participant_id)
    return p


async def record_of(rt: Runtime, viewer: Principal, participant_id: int) -> Participant:
    """A participant's record for oversight or the participant itself (403 for anyone else)."""
    if viewer.kind not in SEES_ALL and viewer.participant_id != participant_id:
        raise Forbidden("you may only see your own participant record")
    async with rt.read() as conn:
        return await find(conn, participant_id)


async def party(conn: AsyncConnection, who: Principal, participant_id: int, *, kinds: frozenset[str],
                identifier: str | None = None, identified: bool = False) -> Participant:
    """The participant `who` names by id in an operation (a transfer's recipient, a pledgor, a frozen
    holder, a payer, a quote's audience, a sale's buyer ...), read on the caller's connection.

    It must exist, be active and be of one of `kinds`; with `identified`, the caller must also give its
    registered identifier (an organisation's USCC, a person's identity document number) -- where the
    answer shows who it is (its name), the caller proves it already knew. Whatever fails, the answer is
    one and the same: 404 "participant N", for an id that does not exist, of another kind, suspended or
    named with the wrong identifier alike, so no refusal tells a caller what it may not see. Oversight
    (operators, auditors), who see the whole directory, get the precise refusal instead."""
    p = await repo.participant(conn, participant_id)
    problem: DomainError | None = None
    if p is None:
        problem = NotFound("participant", participant_id)
    elif p.kind not in kinds:
        problem = DomainError("invalid_counterparty", f"participant {participant_id} is {p.kind}: not one of "
                              f"{', '.join(sorted(kinds))} here", 422)
    elif not p.active:
        problem = DomainError("participant_suspended", f"participant {participant_id} is suspended")
    elif identified and (identifier is None or p.registered_identifier is None
                         or identifier != p.registered_identifier):
        problem = DomainError("identifier_mismatch", f"participant {participant_id} is not registered under "
                              "that USCC or identity document number", 422)
    if problem is None and p is not None:
        return p
    if who.kind in SEES_ALL and problem is not None:
        raise problem
    raise (Unidentified if identified else NotFound)("participant", participant_id)


async def identified_as(conn: AsyncConnection, participant_id: int, identifier: str | None) -> bool:
    """Whether participant `participant_id` exists and is registered under `identifier` (a USCC or an
    identity document number) -- the identifier half of `party` with `identified`, nothing else."""
    p = await repo.participant(conn, participant_id)
    return (p is not None and identifier is not None and p.registered_identifier is not None
            and identifier == p.registered_identifier)


class Unidentified(NotFound):
    """The one 404 of a participant named by id and identifier that is not there so (`party` with
    `identified`); the API counts these (exchange/security/identified.py)."""

    def __init__(self, what: str, ident: int) -> None:
        super().__init__(what, ident)
        self.participant_id = ident


async def directory(rt: Runtime, viewer: Principal, kind: str | None, limit: int, after: int) -> list[Participant]:
    """Participants by id: all of them for oversight, else the viewer itself."""
    only = None if viewer.kind in SEES_ALL else viewer.participant_id
    async with rt.read() as conn:
        return await repo.participants_after(conn, after, limit, only=only, kind=kind)


async def owner_of_account(rt: Runtime, account: int) -> int | None:
    async with rt.read() as conn:
        return await repo.owner_of_account(conn, account)


# --- suspension ---------------------------------------------------------------------------------------------


async def _change_replay(rt: Runtime, actor: str, client_id: str, change: str, fp: bytes) -> StatusChange | None:
    """The status change this client id already made, if it was the same change (a suspension's retry is
    never answered with a reinstatement, nor the reverse: idempotency_conflict)."""
    async with rt.read() as conn:
        done = await repo.status_change(conn, actor, client_id)
    if done is None:
        return None
    if done.change != change:
        raise DomainError("idempotency_conflict", "this client id was already used for a different request")
    check_replay(done.fingerprint, fp)
    return done


async def suspend(rt: Runtime, who: Principal, client_id: str, participant_id: int, reason: str) -> StatusChange:
    """The emergency brake: one operator, at once. The participant's keys stop in this process now (the key
    cache forgets them), its open enrollment codes are cancelled, and nothing mints credentials for it until
    two operators reinstate it. An operator cannot suspend itself (it would only lock itself out).

    What it has in flight and at rest (exchange/core/suspension.py): its mutations under way end before the
    suspension commits (new ones are refused), nothing of its commits at the ledger or a market after it,
    and its resting orders, listings and block quotes are cancelled before the answer. A retry with the
    same key answers the same suspension and cancels whatever is still resting."""
    fp = fingerprint({"participant_id": participant_id, "reason": reason})
    if (done := await _change_replay(rt, who.actor, client_id, "suspend", fp)) is not None:
        await _sweep(rt, participant_id)
        return done
    if participant_id == who.participant_id:
        raise DomainError("cannot_suspend_self", "you cannot suspend your own participant; revoke your keys instead")
    await check_active(rt, participant_id)  # 404 / 409 before anything waits
    shut = False  # whether the participant is suspended now (else the gate opens again)
    try:
        if not await rt.mutations.stop(participant_id):
            log.warning("participant %s still had mutations under way when its suspension committed; the ledger "
                        "and market journals refuse whatever of them comes after", participant_id)
        async with rt.tx() as conn:
            status = await repo.status_of(conn, participant_id, lock=True)
            if status is None:
                raise NotFound("participant", participant_id)
            if status == "suspended":
                shut = True  # by a concurrent suspension
                raise DomainError("participant_suspended", f"participant {participant_id} is suspended already")
            rt.key_cache.forget(participant_id=participant_id)
            await repo.mark_suspended(conn, participant_id, who.actor, reason)
            change = await repo.insert_status_change(conn, participant_id, "suspend", reason, who.actor, client_id,
                                                     fp)
        shut = True
    except IntegrityError:  # a concurrent retry with the same client id
        if (done := await _change_replay(rt, who.actor, client_id, "suspend", fp)) is not None:
            shut = True
            await _sweep(rt, participant_id)
            return done
        raise
    finally:
        rt.key_cache.forget(participant_id=participant_id)  # after commit too: nothing verified before it stays
        if not shut:
            rt.mutations.resume(participant_id)
    await _sweep(rt, participant_id)
    return change


async def _sweep(rt: Runtime, participant_id: int) -> None:
    """Cancel what the suspended participant has resting in every market (exchange.sequencer `sweep`).
    A market that cannot take it now makes the answer a 503: the suspension stands; a retry with the same
    key sweeps again. A market stopped for a bug takes no writes, so nothing of it can trade there."""
    failed = await rt.exchange.sweep(participant_id)
    if failed:
        raise DomainError("market_unavailable", f"participant {participant_id} is suspended, but its resting orders "
                          f"in {', '.join(failed)} could not be cancelled now: retry the suspension with the same "
                          "Idempotency-Key", 503)


async def check_suspended(rt: Runtime, participant_id: int) -> None:
    async with rt.read() as conn:
        status = await repo.status_of(conn, participant_id)
    if status is None:
        raise NotFound("participant", participant_id)
    if status != "suspended":
        raise DomainError("participant_active", f"participant {participant_id} is not suspended")


async def check_active(rt: Runtime, participant_id: int) -> None:
    async with rt.read() as conn:
        status = await repo.status_of(conn, participant_id)
    if status is None:
        raise NotFound("participant", participant_id)
    if status != "active":
        raise DomainError("participant_suspended", f"participant {participant_id} is suspended")


async def lift_suspension(rt: Runtime, actor: str, client_id: str, participant_id: int, reason: str, *,
                          approved_by: str | None, operator_action_id: int | None) -> StatusChange:
    """Lift a suspension (with maker-checker on, as the execution of an approved operator action)."""
    fp = fingerprint({"participant_id": participant_id, "reason": reason})
    if (done := await _change_replay(rt, actor, client_id, "reinstate", fp)) is not None:
        return done
    async with rt.tx() as conn:
        status = await repo.status_of(conn, participant_id, lock=True)
        if status is None:
            raise NotFound("participant", participant_id)
        if status != "suspended":
            raise DomainError("participant_active", f"participant {participant_id} is not suspended")
        await repo.mark_active(conn, participant_id)
        change = await repo.insert_status_change(conn, participant_id, "reinstate", reason, actor, client_id, fp,
                                                 approved_by=approved_by, operator_action_id=operator_action_id)
    rt.mutations.resume(participant_id)
    return change
