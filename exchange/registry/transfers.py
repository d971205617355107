"""Transfers, retirements and holdings: moving units and cash between holders, and reading them back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from exchange.core.errors import DomainError, Forbidden
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.units import to_base
from exchange.registry import encumbrances, expiry, instruments, participants
from exchange.registry import repository as repo
from exchange.registry.models import (
    Balance,
    HeldBlock,
    Holdings,
    Movement,
    Participant,
    Retired,
    RetiredAs,
    Transferred,
)
from ledger import commands as c
from ledger import queries
from ledger.state import Entry


def _account_for(p: Participant | Principal, kind: str) -> int:
    acc = p.holding_account if kind != "currency" else p.cash_account
    if acc is None:
        raise DomainError("no_account", "participant has no account for this instrument")
    return int(acc)


def _serials(ranges: list[tuple[int, int]] | None) -> tuple[c.Range, ...]:
    return tuple((int(s), int(e)) for s, e in (ranges or []))


async def _named(rt: Runtime, exc: DomainError, account: int, instrument: str,
                 serials: list[tuple[int, int]] | None) -> DomainError:
    """A refusal of the holder's named serials, saying which pledge, freeze or order stands on them."""
    if not serials:
        return exc
    async with rt.read() as conn:
        return await encumbrances.naming(conn, exc, account=account, instrument=instrument,
                                         serials=_serials(serials))


def serial_label(instrument: str, batch: int, start: int, end: int) -> str:
    """Human serial of a block, after Verra: {instrument}-{batch}-{start}-{end}."""
    return f"{instrument}-{batch}-{start}-{end}"


def movement_of(entry: Entry, decimals: int) -> Movement:
    meta = json.loads(entry.meta)
    body = entry.body
    amount = int(body["amount"] if "amount" in body else body["quantity"])
    return Movement(entry.seq, entry.hash.hex(), entry.type, entry.client_id, body["instrument"], amount, decimals,
                    tuple((int(s), int(e)) for s, e in meta.get("serials", [])), entry.ts)


async def transfer(rt: Runtime, who: Principal, client_id: str, *, to_participant: int, instrument: str,
                   quantity: str, serials: list[tuple[int, int]] | None, memo: str | None) -> Transferred:
    if who.kind not in participants.HOLDER_KINDS:
        raise Forbidden("this participant kind holds no units")
    inst = await instruments.instrument(rt, instrument)
    amount = to_base(quantity, inst.decimals)
    # A holder (not an auditor, who only looks), active; any other id is 404 like one that does not exist.
    async with rt.read() as conn:
        dest = await participants.party(conn, who, to_participant, kinds=participants.HOLDER_KINDS)
    meta: dict[str, Any] = {"to_participant": to_participant}
    if memo:
        meta["memo"] = memo
    source = _account_for(who, inst.kind)
    await expiry.refuse_ended(rt, source, instrument, _serials(serials))
    try:
        entry = await rt.submit(c.Request(
            who.actor, c.Transfer(source, _account_for(dest, inst.kind), instrument, amount, _serials(serials)),
            client_id, meta), own=(source,))
    except DomainError as exc:
        raise await _named(rt, exc, source, instrument, serials) from None
    return Transferred(movement_of(entry, inst.decimals), who.participant_id, to_participant)


async def retire(rt: Runtime, who: Principal, client_id: str, *, instrument: str, quantity: str, purpose: str,
                 beneficiary: str, note: str | None, serials: list[tuple[int, int]] | None,
                 extra_meta: dict[str, Any] | None = None) -> Retired:
    if who.kind not in participants.HOLDER_KINDS:
        raise Forbidden("this participant kind holds no units")
    inst = await instruments.instrument(rt, instrument)
    if inst.kind == "currency":
        raise DomainError("not_retirable", "cash cannot be retired", 422)
    amount = to_base(quantity, inst.decimals)
    meta: dict[str, Any] = {"beneficiary": beneficiary, "purpose": purpose, **(extra_meta or {})}
    if note:
        meta["note"] = note
    source = _account_for(who, inst.kind)
    await expiry.refuse_ended(rt, source, instrument, _serials(serials))
    try:
        entry = await rt.submit(c.Request(
            who.actor, c.Retire(source, rt.system["retired"], instrument, amount, purpose, beneficiary,
                                _serials(serials)),
            client_id, meta), own=(source,))
    except DomainError as exc:
        raise await _named(rt, exc, source, instrument, serials) from None
    return Retired(movement_of(entry, inst.decimals), who.participant_id, purpose, beneficiary, note)


async def holdings(rt: Runtime, who: Principal, participant_id: int, instrument: str | None,
                   limit: int, after: tuple[str, int] | None, judicial: Sequence[int] = ()) -> Holdings:
    """`judicial`: the judicial retirement entries the participant paid for (exchange.courts.restoration
    knows them): their units never passed through the payer's account, yet its holdings list them."""
    if who.kind not in ("operator", "auditor") and who.participant_id != participant_id:
        raise Forbidden("you may only see your own holdings")
    async with rt.read() as conn:
        p = await participants.find(conn, participant_id)
        accounts = [a for a in (p.holding_account, p.cash_account) if a is not None]
        decimals = {i.code: i.decimals for i in await repo.instruments(conn)}
        bals = await queries.balances(conn, accounts)
        holding = [p.holding_account] if p.holding_account is not None else []
        held = await queries.blocks(conn, holding, instrument, limit, after)
        # What expired at the end of its term is listed apart, as expired (below), not as retired.
        retired = await queries.retired_blocks(conn, holding, list(judicial), instrument, limit, after,
                                               except_purpose=expiry.PURPOSE)
        # Retired blocks rest in the retired sink; they are listed with whoever retired them (for a judicial
        # retirement, the payer). Both lists are in (instrument, serial) order: merge, then cut the page.
        blocks = sorted(held + retired, key=lambda b: (b["instrument"], b["start_serial"]))[:limit]
        expired = await queries.retired_by_prefix(conn, expiry.ACTOR, expiry.account_prefix(p.holding_account),
                                                  instrument) if p.holding_account else []
        terms = await repo.batch_terms(conn, {b["batch"] for b in blocks} | {b["batch"] for b in expired})

    def block(b: dict[str, Any], state: str) -> HeldBlock:
        valid_from, valid_to = terms.get(b["batch"], (None, None))
        retired = None if b.get("retired_seq") is None else RetiredAs(b["purpose"], b["beneficiary"], b["retired_seq"])
        return HeldBlock(b["instrument"], b["batch"], b["start_serial"], b["end_serial"], decimals[b["instrument"]],
                         state, b["hold"], b.get("frozen_by"), valid_from, valid_to, retired)

    return Holdings(
        participant_id,
        tuple(Balance(b["account"], b["instrument"], b["posted"], b["pending_out"], decimals[b["instrument"]])
              for b in bals if instrument is None or b["instrument"] == instrument),
        tuple(block(b, _block_state(b)) for b in blocks),
        tuple(block(b, "expired") for b in expired))


def _block_state(b: dict[str, Any]) -> str:
    """CAD Trust's vocabulary where it fits, plus our encumbrances."""
    if b["retired_seq"] is not None:
        return "retired"
    if b.get("frozen_by") is not None:
        return "frozen"
    if b["hold"] is None:
        return "held"
    return {"order": "order_hold", "pledge": "pledged", "freeze": "frozen", "t1": "t1_locked",
            "retirement": "pending_retirement"}.get(b["hold_kind"], "encumbered")
