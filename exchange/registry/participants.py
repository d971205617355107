"""Participants: who may hold, trade, lend against or order the retirement of units; what they are (an
organisation with its USCC, or a natural person with a private identity document: exchange/registry/subjects.py);
suspension and reinstatement.

A person's identity document is private: it is in the record only for operators, auditors and the
person itself (`get`, `listing`); `lookup`, which other services use to build their answers, leaves it out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Forbidden, NotFound
from exchange.core.idempotency import check_replay, fingerprint, internal
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
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

_COLUMNS = ("id, name, kind, subject, uscc, id_document_type, id_document_country, id_document_number, "
            "holding_account, cash_account, status, suspended_at, suspended_by, suspension_reason, created_at")
_CHANGE_COLUMNS = "id, participant_id, change, reason, actor, approved_by, operator_action_id, created_at"


def _fingerprint(name: str, kind: str, subject: Subject) -> bytes:
    if subject.kind == "organisation":  # as before subjects existed, so older retries still replay
        return fingerprint({"name": name, "kind": kind, "uscc": subject.uscc})
    return fingerprint({"name": name, "kind": kind, **subject.payload()})


async def check_unique(rt: Runtime, subject: Subject) -> None:
    """409 if the USCC or identity document belongs to a participant already (again at insert: a race)."""
    async with rt.read() as conn:
        if subject.uscc is not None and (await conn.execute(
                text("SELECT 1 FROM participants WHERE uscc = :u"), {"u": subject.uscc})).first():
            raise DomainError("uscc_taken", f"unified social credit code {subject.uscc} is already registered")
        doc = subject.id_document
        if doc is not None and (await conn.execute(
                text("""SELECT 1 FROM participants WHERE id_document_type = :t AND id_document_number = :n
                          AND coalesce(id_document_country, '') = coalesce(CAST(:c AS text), '')"""),
                {"t": doc.type, "n": doc.number, "c": doc.country})).first():
            raise DomainError("id_document_taken", "a participant with this identity document is already registered")


async def create(rt: Runtime, actor: str, client_id: str, *, name: str, kind: str, uscc: str | None = None,
                 subject: Subject | None = None) -> dict[str, Any]:
    """Admit a participant and open its holding and cash accounts. Idempotent by (actor, client_id): the
    row is written first (so a duplicate USCC or document is refused by the unique index before any account
    opens), then the accounts, under client ids derived from it."""
    if kind not in KINDS:
        raise DomainError("invalid_participant_kind", f"kind must be one of {', '.join(KINDS)}", 422)
    if subject is None:
        subject = subject_of(kind, "organisation", uscc, None)
    fp = _fingerprint(name, kind, subject)
    async with rt.read() as conn:
        row = (await conn.execute(
            text(f"SELECT {_COLUMNS}, fingerprint FROM participants WHERE created_by = :a AND client_id = :c"),
            {"a": actor, "c": client_id})).first()
    if row is None:
        await check_unique(rt, subject)
        doc = subject.id_document
        try:
            async with rt.tx() as conn:
                row = (await conn.execute(
                    text(f"""INSERT INTO participants (name, kind, subject, uscc, id_document_type, id_document_country,
                                                       id_document_number, created_by, client_id, fingerprint)
                             VALUES (:n, :k, :s, :u, :dt, :dc, :dn, :a, :cid, :fp)
                             ON CONFLICT (created_by, client_id) WHERE client_id IS NOT NULL DO NOTHING
                             RETURNING {_COLUMNS}, fingerprint"""),
                    {"n": name, "k": kind, "s": subject.kind, "u": subject.uscc, "dt": doc.type if doc else None,
                     "dc": doc.country if doc else None, "dn": doc.number if doc else None, "a": actor,
                     "cid": client_id, "fp": fp})).first()
        except IntegrityError as exc:  # another admission took the code or document between check and insert
            if "participants_id_document" in str(exc.orig):
                raise DomainError("id_document_taken", "a participant with this identity document is already "
                                                       "registered") from None
            if "participants_uscc_key" in str(exc.orig):
                raise DomainError("uscc_taken", f"unified social credit code {subject.uscc} is already "
                                                "registered") from None
            raise
        if row is None:  # a concurrent retry won the insert
            return await create(rt, actor, client_id, name=name, kind=kind, subject=subject)
    check_replay(row.fingerprint, fp)
    if row.holding_account is None or row.cash_account is None:
        row = await _open_accounts(rt, actor, client_id, name, row.id)
    return view(row, private=True)


async def _open_accounts(rt: Runtime, actor: str, client_id: str, name: str, participant_id: int) -> Any:
    # Derived client ids: a retry after a crash reopens nothing.
    holding, cash = await rt.submit_linked([
        c.Request(actor, c.OpenAccount(f"participant:{client_id}", "holding"),
                  internal("account", client_id, "holding"), {"participant_name": name}),
        c.Request(actor, c.OpenAccount(f"participant:{client_id}", "cash"),
                  internal("account", client_id, "cash"), {"participant_name": name}),
    ])
    async with rt.tx() as conn:
        return (await conn.execute(
            text(f"""UPDATE participants SET holding_account = :h, cash_account = :c WHERE id = :i
                     RETURNING {_COLUMNS}"""),
            {"h": holding.body["account"], "c": cash.body["account"], "i": participant_id})).one()


def view(row: Any, *, private: bool) -> dict[str, Any]:
    m = dict(row._mapping)
    m.pop("fingerprint", None)
    doc = {"type": m.pop("id_document_type"), "country": m.pop("id_document_country"),
           "number": m.pop("id_document_number")}
    if m["subject"] == "person" and private:
        m["id_document"] = doc
    return m


async def get(rt: Runtime, viewer: Principal, participant_id: int) -> dict[str, Any]:
    if viewer.kind not in SEES_ALL and viewer.participant_id != participant_id:
        raise Forbidden("you may only see your own participant record")
    async with rt.read() as conn:
        row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM participants WHERE id = :i"),
                                  {"i": participant_id})).first()
    if row is None:
        raise NotFound("participant", participant_id)
    return view(row, private=True)  # oversight, or the participant itself


async def _participant_row(conn: AsyncConnection, participant_id: int) -> Any:
    return (await conn.execute(text(f"SELECT {_COLUMNS} FROM participants WHERE id = :i"),
                               {"i": participant_id})).first()


async def lookup(rt: Runtime, participant_id: int, *, conn: AsyncConnection | None = None) -> dict[str, Any]:
    """For other services: never carries a person's identity document. `conn`: the caller's transaction,
    when it holds one (no second pooled connection is checked out inside it)."""
    if conn is not None:
        row = await _participant_row(conn, participant_id)
    else:
        async with rt.read() as own:
            row = await _participant_row(own, participant_id)
    if row is None:
        raise NotFound("participant", participant_id)
    return view(row, private=False)


async def counterparty(rt: Runtime, who: Principal, participant_id: int, *, kinds: frozenset[str],
                       identifier: str | None = None, identified: bool = False,
                       conn: AsyncConnection | None = None) -> dict[str, Any]:
    """The participant `who` names by id in an operation (a transfer's recipient, a pledgor, a frozen
    holder, a payer, a quote's audience, a sale's buyer ...), as `lookup` gives it.

    It must exist, be active and be of one of `kinds`; with `identified`, the caller must also give its
    registered identifier (an organisation's USCC, a person's identity document number) -- where the
    answer shows who it is (its name), the caller proves it already knew. Whatever fails, the answer is
    one and the same: 404 "participant N", for an id that does not exist, of another kind, suspended or
    named with the wrong identifier alike, so no refusal tells a caller what it may not see. Oversight
    (operators, auditors), who see the whole directory, get the precise refusal instead. `conn`: as for
    `lookup`."""
    if conn is not None:
        row = await _participant_row(conn, participant_id)
    else:
        async with rt.read() as own:
            row = await _participant_row(own, participant_id)
    problem: DomainError | None = None
    if row is None:
        problem = NotFound("participant", participant_id)
    elif row.kind not in kinds:
        problem = DomainError("invalid_counterparty", f"participant {participant_id} is {row.kind}: not one of "
                              f"{', '.join(sorted(kinds))} here", 422)
    elif row.status != "active":
        problem = DomainError("participant_suspended", f"participant {participant_id} is suspended")
    elif identified and not _identifies(row, identifier):
        problem = DomainError("identifier_mismatch", f"participant {participant_id} is not registered under "
                              "that USCC or identity document number", 422)
    if problem is None:
        return view(row, private=False)
    if who.kind in SEES_ALL:
        raise problem
    raise NotFound("participant", participant_id)


def _identifies(row: Any, identifier: str | None) -> bool:
    registered = row.uscc if row.subject == "organisation" else row.id_document_number
    return identifier is not None and registered is not None and identifier == registered


async def listing(rt: Runtime, viewer: Principal, kind: str | None, limit: int, after: int) -> list[dict[str, Any]]:
    sql = f"SELECT {_COLUMNS} FROM participants WHERE id > :after"
    params: dict[str, Any] = {"after": after, "limit": limit}
    if viewer.kind not in SEES_ALL:
        sql += " AND id = :me"
        params["me"] = viewer.participant_id
    if kind:
        sql += " AND kind = :kind"
        params["kind"] = kind
    sql += " ORDER BY id LIMIT :limit"
    async with rt.read() as conn:
        return [view(r, private=True) for r in await conn.execute(text(sql), params)]  # oversight, or oneself


async def owner_of_account(rt: Runtime, account: int) -> int | None:
    async with rt.read() as conn:
        row = (await conn.execute(
            text("SELECT id FROM participants WHERE holding_account = :a OR cash_account = :a"), {"a": account}
        )).first()
    return row.id if row else None


# --- suspension ---------------------------------------------------------------------------------------------


async def _change_replay(rt: Runtime, actor: str, client_id: str, change: str, fp: bytes) -> dict[str, Any] | None:
    """The status change this client id already made, if it was the same change (a suspension's retry is
    never answered with a reinstatement, nor the reverse: idempotency_conflict)."""
    async with rt.read() as conn:
        row = (await conn.execute(
            text(f"""SELECT {_CHANGE_COLUMNS}, fingerprint FROM participant_status_changes
                     WHERE actor = :a AND client_id = :c"""), {"a": actor, "c": client_id})).first()
    if row is None:
        return None
    if row.change != change:
        raise DomainError("idempotency_conflict", "this client id was already used for a different request")
    check_replay(row.fingerprint, fp)
    return _change_view(row)


def _change_view(row: Any) -> dict[str, Any]:
    m = dict(row._mapping)
    m.pop("fingerprint", None)
    m["status"] = "suspended" if m["change"] == "suspend" else "active"
    return m


async def suspend(rt: Runtime, who: Principal, client_id: str, participant_id: int, reason: str) -> dict[str, Any]:
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
            status = (await conn.execute(text("SELECT status FROM participants WHERE id = :i FOR UPDATE"),
                                         {"i": participant_id})).scalar()
            if status is None:
                raise NotFound("participant", participant_id)
            if status == "suspended":
                shut = True  # by a concurrent suspension
                raise DomainError("participant_suspended", f"participant {participant_id} is suspended already")
            rt.key_cache.forget(participant_id=participant_id)
            await conn.execute(
                text("""UPDATE participants SET status = 'suspended', suspended_at = now(), suspended_by = :a,
                            suspension_reason = :r WHERE id = :i"""),
                {"a": who.actor, "r": reason, "i": participant_id})
            await conn.execute(
                text("""UPDATE enrollment_codes SET cancelled_at = now(), cancel_reason = 'participant suspended'
                        WHERE participant_id = :i AND used_at IS NULL AND cancelled_at IS NULL"""),
                {"i": participant_id})
            row = (await conn.execute(
                text(f"""INSERT INTO participant_status_changes (participant_id, change, reason, actor, client_id,
                                                                 fingerprint)
                         VALUES (:i, 'suspend', :r, :a, :c, :fp) RETURNING {_CHANGE_COLUMNS}"""),
                {"i": participant_id, "r": reason, "a": who.actor, "c": client_id, "fp": fp})).one()
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
    return _change_view(row)


async def _sweep(rt: Runtime, participant_id: int) -> None:
    """Cancel what the suspended participant has resting in every market (exchange.sequencer `sweep`).
    A market that cannot take it now makes the answer a 503: the suspension stands; a retry with the same
    key sweeps again. A market stopped for a bug takes no writes, so nothing of it can trade there."""
    hub = rt.exchange
    if hub is None:
        return
    markets = [s for s in hub.sequencers.values() if s.stopped is None]
    outcomes = await asyncio.gather(*(s.sweep(participant_id) for s in markets), return_exceptions=True)
    failed = [s.market.id for s, out in zip(markets, outcomes, strict=True) if isinstance(out, BaseException)]
    if failed:
        raise DomainError("market_unavailable", f"participant {participant_id} is suspended, but its resting orders "
                          f"in {', '.join(failed)} could not be cancelled now: retry the suspension with the same "
                          "Idempotency-Key", 503)


async def check_suspended(rt: Runtime, participant_id: int) -> None:
    async with rt.read() as conn:
        status = (await conn.execute(text("SELECT status FROM participants WHERE id = :i"),
                                     {"i": participant_id})).scalar()
    if status is None:
        raise NotFound("participant", participant_id)
    if status != "suspended":
        raise DomainError("participant_active", f"participant {participant_id} is not suspended")


async def check_active(rt: Runtime, participant_id: int) -> None:
    async with rt.read() as conn:
        status = (await conn.execute(text("SELECT status FROM participants WHERE id = :i"),
                                     {"i": participant_id})).scalar()
    if status is None:
        raise NotFound("participant", participant_id)
    if status != "active":
        raise DomainError("participant_suspended", f"participant {participant_id} is suspended")


async def reinstate(rt: Runtime, actor: str, client_id: str, participant_id: int, reason: str, *,
                    approved_by: str | None, operator_action_id: int | None) -> dict[str, Any]:
    """Lift a suspension (with maker-checker on, as the execution of an approved operator action)."""
    fp = fingerprint({"participant_id": participant_id, "reason": reason})
    if (done := await _change_replay(rt, actor, client_id, "reinstate", fp)) is not None:
        return done
    async with rt.tx() as conn:
        status = (await conn.execute(text("SELECT status FROM participants WHERE id = :i FOR UPDATE"),
                                     {"i": participant_id})).scalar()
        if status is None:
            raise NotFound("participant", participant_id)
        if status != "suspended":
            raise DomainError("participant_active", f"participant {participant_id} is not suspended")
        await conn.execute(
            text("""UPDATE participants SET status = 'active', suspended_at = NULL, suspended_by = NULL,
                        suspension_reason = NULL WHERE id = :i"""), {"i": participant_id})
        row = (await conn.execute(
            text(f"""INSERT INTO participant_status_changes (participant_id, change, reason, actor, approved_by,
                                                             operator_action_id, client_id, fingerprint)
                     VALUES (:i, 'reinstate', :r, :a, :ap, :op, :c, :fp) RETURNING {_CHANGE_COLUMNS}"""),
            {"i": participant_id, "r": reason, "a": actor, "ap": approved_by, "op": operator_action_id,
             "c": client_id, "fp": fp})).one()
    rt.mutations.resume(participant_id)
    return _change_view(row)

