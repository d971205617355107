"""Maker-checker for operator actions: one operator proposes, another approves — and the rule that makes
this mean something.

**The four-eyes rule.** No single credential, and nothing that credential can create, completes a
four-eyes action. It holds because each link below holds (each has a test in tests/security/):

1. An approval is refused to the proposing *participant* (`actor`), whichever of its keys it uses, and to
   a participant whose key or status is not current in the database (revoked, expired, suspended), not
   just in a cache; the proposer must still be active too (a suspended operator's proposals wait).
2. A credential acts as exactly one participant: API keys are minted only by their own participant
   (`POST /v1/participants/{id}/keys` with a key of participant {id}; exchange/security/credentials.py), so what
   a key can create is more keys of the same actor. A minted key never outlives its parent, and revoking
   a key revokes everything minted under it.
3. New participants, and so new actors, exist only through this four-eyes flow (`createParticipant`),
   or through the trusted bootstrap with database access (`envx admin create-key`, the demo loader).
4. A participant's first credential is an enrollment code split in two: the proposer sees only the first
   half (the 202 answer), the approver only the second (the approval's answer); codes never appear in
   proposals, results, listings, the audit trail or logs. A new code for an existing participant is
   itself a four-eyes action (`issueEnrollmentCode`). So one operator who proposes — or approves — the
   admission of an operator cannot enroll it and hold two operator identities.
5. Reinstating a suspended participant is four-eyes (`reinstateParticipant`). Suspension is not (an
   emergency brake must work alone), and gives nothing: suspending the other operator leaves the one
   who remains unable to approve anything, which is the expected price of the brake.

Covered actions: cash deposits and withdrawals, instrument definitions, market definitions and amendments
of market rules (exchange/trading/amendments.py), trading calendars and which calendar a market follows
(exchange/trading/calendars/editing.py), the online rotation of the checkpoint signing key
(exchange/verifiable/rotation.py), participant
admission, new enrollment codes, reinstatement, a manual mark of pledged collateral (revaluation), an
instrument's pledge haircut, an issuer's authority over an instrument (issuance has its own request/approve flow in
exchange/registry/issuance.py, between an issuer and an operator). A proposal is stored with its payload and a
plain summary of what will happen; approval by a *different* operator runs the same service function
the direct call would (exchange.registry.cash.record, instruments.define, markets.define, participants.create,
...) under a client id derived from the action (`execution_id`, in a namespace no client can type), so
approving twice, or again after a crash, executes once, and no request of the proposer's is ever taken
for the execution. The ledger entry carries `operator_action` = {id, proposed_by, approved_by} in its meta
(exchange/core/provenance.py).

ENVX_MAKER_CHECKER=false turns proposals off (the endpoints act at once, and one operator receives both
halves of an enrollment code): for closed test benches only, the rule above is then off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Forbidden, NotFound
from exchange.core.idempotency import internal
from exchange.core.principal import Principal
from exchange.core.provenance import provenance
from exchange.core.runtime import Runtime
from exchange.core.units import CNY_DECIMALS, iso, times_in_iso, to_base, to_text
from exchange.pledging import valuation
from exchange.registry import cash, instruments, issuers, participants
from exchange.registry import kinds as instrument_kinds
from exchange.registry.subjects import subject_from_payload
from exchange.security import credentials, enrollment
from exchange.security import repository as repo
from exchange.security.enrollment import FirstHalf, SecondHalf
from exchange.security.models import OperatorAction
from exchange.trading import amendments, inflight, markets
from exchange.trading.calendars import editing as calendars
from exchange.verifiable import rotation

Payload = dict[str, Any]


Execute = Callable[[Runtime, Principal, Principal, str, Payload], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Kind:
    # Early refusal of what could never execute; what it returns (if anything) is appended to the summary:
    # what the approver should see beside the payload (a manual mark's reference price and deviation).
    check: Callable[[Runtime, Payload], Awaitable[str | None]]
    summary: Callable[[Payload], str]
    run: Execute  # (rt, maker, checker, client id, payload) -> result
    # Actions that end in an enrollment code: which participant it enrols, from the payload and result.
    enrolls: Callable[[Payload, dict[str, Any]], int] | None = None


def _operator(actor: str) -> Principal:
    # The proposer acts (their actor is on the ledger entry, as without maker-checker), and the approver is named
    # (a reinstatement records it); only `actor` is used.
    pid = int(actor.split(":", 1)[1]) if actor.startswith("participant:") else 0
    return Principal(pid, "operator", "", 0, None, None)


async def _check_cash(rt: Runtime, p: Payload) -> None:
    async with rt.read() as conn:
        who = await participants.find(conn, p["participant_id"])
    if who.cash_account is None:
        raise DomainError("no_account", f"participant {p['participant_id']} has no cash account")
    to_base(p["amount"], CNY_DECIMALS, field="amount")


def _cny_text(amount: str) -> str:
    """An amount as sent ("1", "1.5") as every answer writes CNY ("1.00", "1.50"): _check_cash has read it."""
    return to_text(to_base(amount, CNY_DECIMALS, field="amount"), CNY_DECIMALS)


def _cash(direction: str) -> Execute:
    async def run(rt: Runtime, maker: Principal, checker: Principal, cid: str, p: Payload) -> dict[str, Any]:
        done = await cash.record(rt, maker, cid, direction=direction, participant_id=p["participant_id"],
                                 amount=p["amount"], bank_reference=p["bank_reference"], note=p.get("note"))
        return done.view()
    return run


async def _check_instrument(rt: Runtime, p: Payload) -> None:
    instrument_kinds.instrument_attributes(p["kind"], p.get("attributes") or {})
    try:
        await instruments.instrument(rt, p["code"])
    except NotFound:
        return
    raise DomainError("instrument_exists", f"instrument {p['code']} already exists")


async def _define_instrument(rt: Runtime, maker: Principal, checker: Principal, cid: str,
                             p: Payload) -> dict[str, Any]:
    made = await instruments.define_instrument(rt, maker.actor, cid, code=p["code"], name=p["name"], kind=p["kind"],
                                               decimals=p["decimals"], unit=p.get("unit"),
                                               attributes=p.get("attributes") or {})
    return made.view()


async def _check_issuer(rt: Runtime, p: Payload) -> None:
    await instruments.instrument(rt, p["instrument"])  # 404 now rather than at the approval


async def _authorise_issuer(rt: Runtime, maker: Principal, checker: Principal, cid: str,
                            p: Payload) -> dict[str, Any]:
    grant = await issuers.authorise(rt, maker, instrument=p["instrument"], participant_id=p["participant_id"])
    return grant.view()


async def _check_market(rt: Runtime, p: Payload) -> None:
    # The same checks the definition runs when it is approved: a bad tick/lot pair is refused now.
    await markets.check_definition(rt, p["instrument"], p["mode"], p.get("settings") or {})
    market_id = f"{p['instrument']}.{p['mode']}"
    try:
        await markets.get(rt, market_id)
    except NotFound:
        return
    raise DomainError("market_exists", f"market {market_id} already exists")


async def _define_market(rt: Runtime, maker: Principal, checker: Principal, cid: str, p: Payload) -> dict[str, Any]:
    defined = await markets.define(rt, maker.actor, cid, instrument=p["instrument"], mode=p["mode"],
                                   settings=p.get("settings") or {})
    return defined.as_dict()


async def _amend_market(rt: Runtime, maker: Principal, checker: Principal, cid: str, p: Payload) -> dict[str, Any]:
    return (await amendments.amend(rt, maker.actor, cid, p)).as_dict()


async def _change_calendar(rt: Runtime, maker: Principal, checker: Principal, cid: str,
                           p: Payload) -> dict[str, Any]:
    found, followers = await calendars.change(rt, maker.actor, cid, p)
    return {"calendar_id": found.id, "days": len(found.days), "markets": followers}


async def _assign_calendar(rt: Runtime, maker: Principal, checker: Principal, cid: str,
                           p: Payload) -> dict[str, Any]:
    done = await calendars.assign(rt, maker.actor, cid, p)
    return {"market_id": done.market_id, "calendar_id": done.assignment.calendar_id,
            "trades_on_makeup_days": done.assignment.trades_on_makeup_days}


async def _rotate_signing_key(rt: Runtime, maker: Principal, checker: Principal, cid: str,
                              p: Payload) -> dict[str, Any]:
    return await rotation.rotate(rt, cid)


async def _check_participant(rt: Runtime, p: Payload) -> None:
    await participants.check_unique(rt, subject_from_payload(p["kind"], p))


async def _create_participant(rt: Runtime, maker: Principal, checker: Principal, cid: str,
                              p: Payload) -> dict[str, Any]:
    admitted = await participants.admit(rt, maker.actor, cid, name=p["name"], kind=p["kind"],
                                        subject=subject_from_payload(p["kind"], p))
    return admitted.view(private=True)


def _participant_summary(p: Payload) -> str:
    return (f"admit {p['name']} as {p['kind']}, {subject_from_payload(p['kind'], p).describe()}; "
            "the enrollment code is split between the proposer and the approver")


async def _check_enrollment(rt: Runtime, p: Payload) -> None:
    await participants.check_active(rt, p["participant_id"])


async def _new_enrollment(rt: Runtime, maker: Principal, checker: Principal, cid: str,
                          p: Payload) -> dict[str, Any]:
    await participants.check_active(rt, p["participant_id"])
    return {"participant_id": p["participant_id"]}


async def _check_reinstatement(rt: Runtime, p: Payload) -> None:
    await participants.check_suspended(rt, p["participant_id"])


async def _reinstate(rt: Runtime, maker: Principal, checker: Principal, cid: str, p: Payload) -> dict[str, Any]:
    change = await participants.lift_suspension(rt, maker.actor, cid, p["participant_id"], p["reason"],
                                                approved_by=checker.actor,
                                                operator_action_id=int(cid.rsplit(":", 1)[1]))
    return change.view()


async def _check_mark(rt: Runtime, p: Payload) -> str:
    return await valuation.check_manual_mark(rt, p["instrument"], to_base(p["price"], CNY_DECIMALS, field="price"),
                                             date.fromisoformat(p["as_of"]), "participant:0", p.get("reason"))


async def _revalue(rt: Runtime, maker: Principal, checker: Principal, cid: str, p: Payload) -> dict[str, Any]:
    deadline = datetime.fromisoformat(p["cure_deadline"]) if p.get("cure_deadline") else None
    return await valuation.revalue(rt, p["instrument"], to_base(p["price"], CNY_DECIMALS, field="price"),
                                   date.fromisoformat(p["as_of"]), actor=maker.actor, client_id=cid,
                                   cure_deadline=deadline, reason=p.get("reason"))


async def _check_haircut(rt: Runtime, p: Payload) -> None:
    await valuation.check_haircut(rt, p["instrument"], p["haircut_bps"])


async def _set_haircut(rt: Runtime, maker: Principal, checker: Principal, cid: str, p: Payload) -> dict[str, Any]:
    await valuation.set_haircut(rt, maker, p["instrument"], p["haircut_bps"])
    return {"instrument": p["instrument"], "haircut_bps": p["haircut_bps"]}


KINDS: dict[str, Kind] = {
    "recordDeposit": Kind(
        _check_cash, lambda p: f"credit {_cny_text(p['amount'])} CNY to the cash account of participant "
                               f"{p['participant_id']} (bank reference {p['bank_reference']})", _cash("deposit")),
    "recordWithdrawal": Kind(
        _check_cash, lambda p: f"debit {_cny_text(p['amount'])} CNY from the cash account of participant "
                               f"{p['participant_id']}, paid out (bank reference {p['bank_reference']})",
        _cash("withdrawal")),
    "defineInstrument": Kind(
        _check_instrument, lambda p: f"define instrument {p['code']} ({p['kind']}, {p['decimals']} decimals)",
        _define_instrument),
    "authoriseIssuer": Kind(
        _check_issuer, lambda p: f"make participant {p['participant_id']} an issuing authority of {p['instrument']}",
        _authorise_issuer),
    "defineMarket": Kind(
        _check_market, lambda p: f"define market {p['instrument']}.{p['mode']} with settings "
                                 f"{json.dumps(p.get('settings') or {}, sort_keys=True)}", _define_market),
    "amendMarket": Kind(
        amendments.check, amendments.summary,
        _amend_market),
    "changeCalendar": Kind(calendars.check_change, calendars.summary_change, _change_calendar),
    "assignMarketCalendar": Kind(calendars.check_assignment, calendars.summary_assignment, _assign_calendar),
    "rotateSigningKey": Kind(
        rotation.check_action, lambda p: f"rotate the checkpoint signing key while serving ({p['reason']}); the "
                                         "new key is registered in the log, old keys stay published",
        _rotate_signing_key),
    "createParticipant": Kind(_check_participant, _participant_summary, _create_participant,
                              enrolls=lambda p, result: int(result["id"])),
    "issueEnrollmentCode": Kind(
        _check_enrollment, lambda p: f"issue a new enrollment code for participant {p['participant_id']} "
                                     "(split between the proposer and the approver; older unused codes are cancelled)",
        _new_enrollment, enrolls=lambda p, result: int(p["participant_id"])),
    "reinstateParticipant": Kind(
        _check_reinstatement, lambda p: f"reinstate suspended participant {p['participant_id']} ({p['reason']})",
        _reinstate),
    # A mark decides margin calls and liquidation, a haircut the value of every pledge of an instrument.
    "revaluePledges": Kind(
        _check_mark, lambda p: f"mark {p['instrument']} at {_cny_text(p['price'])} CNY for {p['as_of']} and value "
                               f"every live pledge of it at that price" + (f" ({p['reason']})" if p.get("reason")
                                                                            else ""), _revalue),
    "setPledgeHaircut": Kind(
        _check_haircut, lambda p: f"set the default valuation haircut of {p['instrument']} to "
                                  f"{p['haircut_bps']} bps", _set_haircut),
}


def execution_id(action_id: int) -> str:
    """The client id under which approved action `action_id` runs its service function, as the proposer.
    It is in the registry's own namespace (exchange.idempotency.internal): no Idempotency-Key a client
    can send equals it, so no request of the proposer's can be taken for the execution, or the reverse."""
    return internal("operator-action", action_id)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _fingerprint(kind: str, payload: Payload) -> bytes:
    return hashlib.sha256(_json({"kind": kind, "payload": payload}).encode()).digest()


@dataclass(frozen=True, slots=True)
class ActionAnswer:
    """An action as its proposer or approver is answered: with its enrollment code's half, to that one only."""

    action: OperatorAction
    enrollment: FirstHalf | SecondHalf | None = None


async def propose(rt: Runtime, who: Principal, client_id: str, kind: str, payload: Payload) -> ActionAnswer:
    """Store a proposal (202). For admissions and new enrollment codes the answer also carries the code's
    first half, to the proposer only: a retry by the proposer shows it again, nobody else ever sees it."""
    k = KINDS[kind]
    fp = _fingerprint(kind, payload)
    async with rt.read() as conn:
        prior = await repo.action_by_client(conn, who.actor, client_id)
    if prior is None:
        seen = await k.check(rt, payload)
        summary = k.summary(payload) + (f"; {seen}" if seen else "")
        expires = datetime.now(UTC) + timedelta(hours=rt.settings.operator_action_ttl_hours)
        async with rt.tx() as conn:
            new = await repo.insert_action(conn, kind=kind, payload=payload, summary=summary,
                                           proposed_by=who.actor, client_id=client_id, fingerprint=fp,
                                           expires_at=expires)
            if new is not None and k.enrolls is not None:
                await enrollment.open_code(conn, enrollment.creds(rt), created_by=who.actor,
                                           client_id=f"operator-action:{new}", four_eyes=True,
                                           operator_action_id=new, participant_id=payload.get("participant_id"))
        if new is None:  # a concurrent retry inserted it first
            return await propose(rt, who, client_id, kind, payload)
        return await _proposed(rt, await get(rt, new))
    if prior.fingerprint != fp:
        raise DomainError("idempotency_conflict", "this client id was already used for a different request")
    return await _proposed(rt, prior)


async def _proposed(rt: Runtime, action: OperatorAction) -> ActionAnswer:
    if KINDS[action.kind].enrolls is None:
        return ActionAnswer(action)
    async with rt.read() as conn:
        code = await enrollment.code_of_action(conn, action.id)
    return ActionAnswer(action, enrollment.first_half_answer(enrollment.creds(rt), code))


async def get(rt: Runtime, action_id: int) -> OperatorAction:
    async with rt.read() as conn:
        action = await repo.get_action(conn, action_id)
    if action is None:
        raise NotFound("operator action", action_id)
    return action


async def listing(rt: Runtime, status: str | None, limit: int, after: int) -> list[OperatorAction]:
    async with rt.read() as conn:
        return await repo.actions(conn, status, limit, after)


def _participant_id(actor: str) -> int | None:
    return int(actor.split(":", 1)[1]) if actor.startswith("participant:") else None


async def approve(rt: Runtime, who: Principal, action_id: int, note: str | None) -> ActionAnswer:
    """Decide, then execute, then record -- three steps, so that no service runs inside the action's row lock
    (each opens its own connections and submits to the ledger).

    1. Under the row lock: the four-eyes checks, then the decision committed (`approved`, `decided_by`).
    2. No lock held: the service function, under the action's derived client id (`execution_id`), as the
       proposer; run again, it replays, so it executes once however often this step is repeated.
    3. Under the row lock again: the outcome (`executed` with the result and, for admissions and new codes,
       the second half of the enrollment code bound to the approver; or `failed` with the refusal).

    An action left `approved` (a crash or an outage between the steps) is completed by approving it again,
    by any operator but its proposer; the decision, and the second half, stay the first approver's."""
    async with rt.tx() as conn:
        row = await repo.get_action(conn, action_id, lock=True)
        if row is None:
            raise NotFound("operator action", action_id)
        if row.proposed_by == who.actor:  # never the checker, whatever the state: before any replay
            raise Forbidden("maker-checker: a second operator must approve this action, not its proposer")
        if row.status in ("executed", "rejected", "failed"):
            return await _decided(conn, rt, row, who)
        # Four eyes are checked against the database, not the key cache: the approver's key and participant,
        # and the proposer's standing, as they are now.
        await credentials.assert_current(conn, who)
        if row.status == "pending":
            maker_id = _participant_id(row.proposed_by)
            if maker_id is not None and await repo.participant_status(conn, maker_id) != "active":
                raise DomainError("proposer_suspended", f"operator action {action_id} was proposed by a participant "
                                                        "who is suspended now; it cannot be approved unless reinstated")
            if row.expires_at <= datetime.now(UTC):
                raise DomainError("action_expired", f"operator action {action_id} expired at {iso(row.expires_at)}; "
                                                    "propose it again")
            await repo.action_approved(conn, action_id, who.actor, note)
            row = dataclasses.replace(row, status="approved", decided_by=who.actor, decision_note=note)
    return await _execute(rt, row, who)


async def _decided(conn: AsyncConnection, rt: Runtime, row: OperatorAction, who: Principal) -> ActionAnswer:
    """The answer to approving an action whose outcome is recorded: the same result (and the second half of its
    enrollment code to its holder only), or the refusal it met."""
    if row.status == "rejected":
        raise DomainError("action_rejected", f"operator action {row.id} was rejected")
    if row.status == "failed":
        raise DomainError("action_failed", f"operator action {row.id} failed when it was approved", error=row.error)
    if KINDS[row.kind].enrolls is not None and row.decided_by == who.actor:
        code = await enrollment.code_of_action(conn, row.id)
        return ActionAnswer(row, enrollment.second_half_answer(enrollment.creds(rt), code, who.actor))
    return ActionAnswer(row)


async def _execute(rt: Runtime, row: OperatorAction, who: Principal) -> ActionAnswer:
    """Steps 2 and 3 of `approve` for an `approved` action."""
    k = KINDS[row.kind]
    checker = row.decided_by
    assert checker is not None, f"operator action {row.id} is approved without its approver"
    meta = {"id": row.id, "kind": row.kind, "proposed_by": row.proposed_by, "approved_by": checker}

    async def run() -> tuple[dict[str, Any], DomainError | None]:
        try:
            with provenance(operator_action=meta):
                return await k.run(rt, _operator(row.proposed_by), _operator(checker), execution_id(row.id),
                                   row.payload), None
        except DomainError as exc:
            if exc.status >= 500:
                raise  # transient (ledger unavailable): stays approved, approving again executes it
            return {}, exc

    # A second approval arriving while this one executes waits for its outcome rather than running the service
    # again alongside it (a concurrent rerun could meet the first's effect as a refusal and record a failure).
    result, failure = await inflight.once(rt, ("operator-action", row.id), "", run)
    async with rt.tx() as conn:
        now = await repo.get_action(conn, row.id, lock=True)
        assert now is not None
        if now.status != "approved":  # a concurrent approval recorded the outcome first
            return await _decided(conn, rt, now, who)
        if failure is None and k.enrolls is not None:
            try:
                code = await enrollment.code_of_action(conn, row.id)
                second = await enrollment.complete_code(conn, rt, code.id, k.enrolls(row.payload, result), checker)
                result = {**result, "enrollment": {"code_id": code.id, "expires_at": second.expires_at}}
            except DomainError as exc:
                if exc.status >= 500:
                    raise
                failure = exc
        if failure is not None:
            await repo.action_failed(conn, row.id, checker, row.decision_note,
                                     {"status": failure.status, "code": failure.code, "detail": failure.message})
        else:
            await repo.action_executed(conn, row.id, checker, row.decision_note, times_in_iso(result))
    if failure is not None:  # recorded as failed (committed above); the approver sees why
        raise DomainError(failure.code, failure.message, failure.status, operator_action=row.id, **failure.extra)
    async with rt.read() as conn:
        done = await repo.get_action(conn, row.id)
        assert done is not None
        return await _decided(conn, rt, done, who)


async def reject(rt: Runtime, who: Principal, action_id: int, note: str | None) -> OperatorAction:
    async with rt.tx() as conn:
        row = await repo.get_action(conn, action_id, lock=True)
        if row is None:
            raise NotFound("operator action", action_id)
        if row.status in ("approved", "executed", "failed"):
            raise DomainError("action_decided", f"operator action {action_id} was already approved")
        if row.status == "pending":  # rejecting twice is a no-op
            await repo.action_rejected(conn, action_id, who.actor, note)
    return await get(rt, action_id)
