"""Maker-checker for operator actions that move value or set rules: one operator proposes, another approves.

Covered: cash deposits and withdrawals, instrument definitions, market definitions (issuance has its own
request/approve flow in exchange/issuance.py). A proposal is stored with its payload and a plain summary
of what will happen; approval by a *different* operator runs the same service function the direct call
would (exchange.cash.record, instruments.define, markets.define) under a client id derived from the
action, so approving twice, or again after a crash, executes once. The ledger entry carries
`operator_action` = {id, proposed_by, approved_by} in its meta (exchange/provenance.py).

ENVX_MAKER_CHECKER=false turns proposals off (the endpoints act at once), for closed test benches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from exchange import cash, instrument_kinds, instruments, markets, participants
from exchange.errors import DomainError, Forbidden, Invalid, NotFound
from exchange.keys import Principal
from exchange.provenance import provenance
from exchange.runtime import Runtime
from exchange.units import CNY_DECIMALS, to_base

_COLUMNS = ("id, kind, payload, summary, status, proposed_by, client_id, created_at, expires_at, decided_by, "
            "decided_at, decision_note, result, error")

Payload = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Kind:
    check: Callable[[Runtime, Payload], Awaitable[None]]  # early refusal of what could never execute
    summary: Callable[[Payload], str]
    execute: Callable[[Runtime, Principal, str, Payload], Awaitable[dict[str, Any]]]


def _maker(actor: str) -> Principal:
    # The proposer acts (their actor is on the ledger entry, as without maker-checker); only `actor` is used.
    pid = int(actor.split(":", 1)[1]) if actor.startswith("participant:") else 0
    return Principal(pid, "operator", "", 0, None, None)


async def _check_cash(rt: Runtime, p: Payload) -> None:
    who = await participants.lookup(rt, p["participant_id"])
    if who["cash_account"] is None:
        raise DomainError("no_account", f"participant {p['participant_id']} has no cash account")
    to_base(p["amount"], CNY_DECIMALS, field="amount")


def _cash(direction: str) -> Callable[[Runtime, Principal, str, Payload], Awaitable[dict[str, Any]]]:
    async def run(rt: Runtime, maker: Principal, cid: str, p: Payload) -> dict[str, Any]:
        return await cash.record(rt, maker, cid, direction=direction, participant_id=p["participant_id"],
                                 amount=p["amount"], bank_reference=p["bank_reference"], note=p.get("note"))
    return run


async def _check_instrument(rt: Runtime, p: Payload) -> None:
    instrument_kinds.instrument_attributes(p["kind"], p.get("attributes") or {})
    async with rt.read() as conn:
        if (await conn.execute(text("SELECT 1 FROM instruments WHERE code = :c"), {"c": p["code"]})).first():
            raise DomainError("instrument_exists", f"instrument {p['code']} already exists")


async def _define_instrument(rt: Runtime, maker: Principal, cid: str, p: Payload) -> dict[str, Any]:
    return await instruments.define(rt, maker.actor, cid, code=p["code"], name=p["name"], kind=p["kind"],
                                    decimals=p["decimals"], unit=p.get("unit"), attributes=p.get("attributes") or {})


async def _check_market(rt: Runtime, p: Payload) -> None:
    inst = await instruments.get(rt, p["instrument"])
    if inst["kind"] == "currency":
        raise Invalid("not_tradable", "cash is not traded")
    async with rt.read() as conn:
        market_id = f"{p['instrument']}.{p['mode']}"
        if (await conn.execute(text("SELECT 1 FROM markets WHERE id = :i"), {"i": market_id})).first():
            raise DomainError("market_exists", f"market {market_id} already exists")


async def _define_market(rt: Runtime, maker: Principal, cid: str, p: Payload) -> dict[str, Any]:
    return await markets.define(rt, maker.actor, cid, instrument=p["instrument"], mode=p["mode"],
                                settings=p.get("settings") or {})


KINDS: dict[str, Kind] = {
    "recordDeposit": Kind(
        _check_cash, lambda p: f"credit {p['amount']} CNY to the cash account of participant {p['participant_id']} "
                               f"(bank reference {p['bank_reference']})", _cash("deposit")),
    "recordWithdrawal": Kind(
        _check_cash, lambda p: f"debit {p['amount']} CNY from the cash account of participant "
                               f"{p['participant_id']}, paid out (bank reference {p['bank_reference']})",
        _cash("withdrawal")),
    "defineInstrument": Kind(
        _check_instrument, lambda p: f"define instrument {p['code']} ({p['kind']}, {p['decimals']} decimals)",
        _define_instrument),
    "defineMarket": Kind(
        _check_market, lambda p: f"define market {p['instrument']}.{p['mode']} with settings "
                                 f"{json.dumps(p.get('settings') or {}, sort_keys=True)}", _define_market),
}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _fingerprint(kind: str, payload: Payload) -> bytes:
    return hashlib.sha256(_json({"kind": kind, "payload": payload}).encode()).digest()


def view(row: Any) -> dict[str, Any]:
    m = dict(row._mapping)
    m.pop("fingerprint", None)  # internal: the request digest behind the client id
    m["approve"] = f"/v1/operator-actions/{m['id']}/approve" if m["status"] == "pending" else None
    return m


async def propose(rt: Runtime, who: Principal, client_id: str, kind: str, payload: Payload) -> dict[str, Any]:
    k = KINDS[kind]
    fp = _fingerprint(kind, payload)
    async with rt.read() as conn:
        row = (await conn.execute(
            text(f"SELECT {_COLUMNS}, fingerprint FROM operator_actions WHERE proposed_by = :a AND client_id = :c"),
            {"a": who.actor, "c": client_id})).first()
    if row is None:
        await k.check(rt, payload)
        expires = datetime.now(UTC) + timedelta(hours=rt.settings.operator_action_ttl_hours)
        async with rt.tx() as conn:
            new = (await conn.execute(
                text("""INSERT INTO operator_actions (kind, payload, summary, proposed_by, client_id, fingerprint,
                                                      expires_at)
                        VALUES (:k, CAST(:p AS jsonb), :s, :a, :c, :fp, :exp)
                        ON CONFLICT (proposed_by, client_id) DO NOTHING RETURNING id"""),
                {"k": kind, "p": _json(payload), "s": k.summary(payload), "a": who.actor, "c": client_id, "fp": fp,
                 "exp": expires})).scalar()
        if new is None:  # a concurrent retry inserted it first
            return await propose(rt, who, client_id, kind, payload)
        return await get(rt, new)
    if bytes(row.fingerprint) != fp:
        raise DomainError("idempotency_conflict", "this client id was already used for a different request")
    return view(row)


async def get(rt: Runtime, action_id: int) -> dict[str, Any]:
    async with rt.read() as conn:
        row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM operator_actions WHERE id = :i"),
                                  {"i": action_id})).first()
    if row is None:
        raise NotFound("operator action", action_id)
    return view(row)


async def listing(rt: Runtime, status: str | None, limit: int, after: int) -> list[dict[str, Any]]:
    sql = f"SELECT {_COLUMNS} FROM operator_actions WHERE id > :after"
    params: dict[str, Any] = {"after": after, "limit": limit}
    if status:
        sql += " AND status = :status"
        params["status"] = status
    async with rt.read() as conn:
        return [view(r) for r in await conn.execute(text(sql + " ORDER BY id LIMIT :limit"), params)]


async def approve(rt: Runtime, who: Principal, action_id: int, note: str | None) -> dict[str, Any]:
    failure: DomainError | None = None
    # The row lock serialises approvals of one action; the derived client id makes a re-execution after a
    # crash (ledger written, status not yet) a replay in the services, never a second deposit.
    async with rt.tx() as conn:
        row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM operator_actions WHERE id = :i FOR UPDATE"),
                                  {"i": action_id})).first()
        if row is None:
            raise NotFound("operator action", action_id)
        if row.status == "executed":
            return view(row)  # approving again answers the same result
        if row.status == "rejected":
            raise DomainError("action_rejected", f"operator action {action_id} was rejected")
        if row.status == "failed":
            raise DomainError("action_failed", f"operator action {action_id} failed when it was approved",
                              error=row.error)
        if row.proposed_by == who.actor:
            raise Forbidden("maker-checker: a second operator must approve this action, not its proposer")
        if row.expires_at <= datetime.now(UTC):
            raise DomainError("action_expired", f"operator action {action_id} expired at {row.expires_at}; "
                                                "propose it again")
        meta = {"id": action_id, "kind": row.kind, "proposed_by": row.proposed_by, "approved_by": who.actor}
        try:
            with provenance(operator_action=meta):
                result = await KINDS[row.kind].execute(rt, _maker(row.proposed_by), f"operator-action:{action_id}",
                                                       row.payload)
        except DomainError as exc:
            if exc.status >= 500:
                raise  # transient (ledger unavailable): stays pending, approve again later
            failure = exc
            await conn.execute(
                text("""UPDATE operator_actions SET status = 'failed', decided_by = :d, decided_at = now(),
                            decision_note = :n, error = CAST(:e AS jsonb) WHERE id = :i"""),
                {"d": who.actor, "n": note, "i": action_id,
                 "e": _json({"status": exc.status, "code": exc.code, "detail": exc.message})})
        else:
            await conn.execute(
                text("""UPDATE operator_actions SET status = 'executed', decided_by = :d, decided_at = now(),
                            decision_note = :n, result = CAST(:r AS jsonb) WHERE id = :i"""),
                {"d": who.actor, "n": note, "r": _json(result), "i": action_id})
    if failure is not None:  # recorded as failed (committed above); the approver sees why
        raise DomainError(failure.code, failure.message, failure.status, operator_action=action_id,
                          **failure.extra)
    return await get(rt, action_id)


async def reject(rt: Runtime, who: Principal, action_id: int, note: str | None) -> dict[str, Any]:
    async with rt.tx() as conn:
        row = (await conn.execute(text("SELECT status FROM operator_actions WHERE id = :i FOR UPDATE"),
                                  {"i": action_id})).first()
        if row is None:
            raise NotFound("operator action", action_id)
        if row.status in ("executed", "failed"):
            raise DomainError("action_decided", f"operator action {action_id} was already approved")
        if row.status == "pending":  # rejecting twice is a no-op
            await conn.execute(
                text("""UPDATE operator_actions SET status = 'rejected', decided_by = :d, decided_at = now(),
                            decision_note = :n WHERE id = :i"""), {"d": who.actor, "n": note, "i": action_id})
    return await get(rt, action_id)
