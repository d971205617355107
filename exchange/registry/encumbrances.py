"""Refusals that say what stands on the serials a holder named: which pledge, freeze or order.

The ledger refuses to move, pledge or retire named serials that are not free with a bare "not free".
A holder may know what encumbers its own units -- its pledges (it is their pledgor), the freezes on
them (it is their holder), its own orders -- so a refusal to the holder of the account names each
encumbrance with its registration number, court and case number, or market and order. Serials that
are not in the holder's account at all are only said to be elsewhere: whose they are is not its
business. Nobody else is told more than before (callers pass the holder's own account only).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError
from exchange.registry import repository as repo

REFUSALS = frozenset({"serials_not_available", "insufficient_available"})


def _what(b: dict[str, Any]) -> tuple[dict[str, Any], str]:
    span = {"start": b["start_serial"], "end": b["end_serial"]}
    label = f"{b['start_serial']}-{b['end_serial']}"
    if not b["mine"]:
        return {**span, "encumbrance": "elsewhere"}, f"{label} are not in your account"
    if b["retired_seq"] is not None:
        return ({**span, "encumbrance": "retired", "entry_seq": b["retired_seq"]},
                f"{label} are retired (entry {b['retired_seq']}) and can never move")
    parts, item = [], dict(span)
    if b["hold_kind"] == "pledge":
        item.update(encumbrance="pledge", registration_number=b["pledge_number"], pledgee=b["pledgee_name"])
        parts.append(f"pledged under registration {b['pledge_number']} to {b['pledgee_name']}")
    elif b["hold_kind"] == "order":
        item.update(encumbrance="order", market_id=b["market_id"], order_id=b["order_id"])
        parts.append(f"held by your order {b['order_id']} on {b['market_id']}")
    elif b["hold"] is not None:
        item.update(encumbrance=b["hold_kind"])
        parts.append(f"held ({b['hold_kind']})")
    if b["frozen_by"] is not None:
        item.setdefault("encumbrance", "freeze")
        item.update(frozen=True, court=b["court_name"], case_number=b["case_number"])
        parts.append(f"frozen by {b['court_name']}, case {b['case_number']}")
    if not parts:
        return {**span, "encumbrance": None}, f"{label} are free"
    return item, f"{label} are " + " and ".join(parts)


async def naming(conn: AsyncConnection, exc: DomainError, *, account: int, instrument: str,
                 serials: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> DomainError:
    """`exc` (a ledger refusal of named serials) with what stands on each of them, for their holder."""
    if exc.code not in REFUSALS or not serials:
        return exc
    blocks = await repo.encumbrances(conn, account, instrument, list(serials))
    found = [_what(b) for b in blocks]
    taken = [(item, text) for item, text in found if item["encumbrance"] is not None]
    if not taken:
        return exc
    detail = f"serials of {instrument} are not free: " + "; ".join(text for _, text in taken)
    return DomainError(exc.code, detail, exc.status, encumbrances=[item for item, _ in taken])
