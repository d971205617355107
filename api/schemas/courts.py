"""Answers of judicial freezes (their request bodies are in api/schemas/pledges.py, beside the pledges')."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from api.schemas.security import Sparse, Time
from exchange.core.units import CNY_DECIMALS, iso, to_text
from exchange.courts.freezes import FreezeView
from exchange.courts.models import FreezeEvent
from ledger.queries import FrozenBlock


class PartyOut(BaseModel):
    id: int
    name: str


class HolderOut(PartyOut):
    uscc: str | None


class SerialsOut(BaseModel):
    start: int
    end: int


class FrozenBlockOut(BaseModel):
    start: int
    end: int
    batch: int
    pledge_hold: int | None = Field(description="the pledge hold the block also sits in (the pledge ranks first)")

    @classmethod
    def of(cls, b: FrozenBlock) -> FrozenBlockOut:
        return cls(start=b.start_serial, end=b.end_serial, batch=b.batch, pledge_hold=b.hold)


class FreezeEventOut(BaseModel):
    id: int
    type: str = Field(description="frozen, renewed, deducted, unfrozen, expired, ...")
    data: dict[str, Any] = Field(description="quantities as decimal strings in the instrument's unit")
    ledger_seqs: list[int]
    actor: str
    at: Time

    @classmethod
    def of(cls, v: FreezeView, e: FreezeEvent) -> FreezeEventOut:
        return cls(id=e.id, type=e.type, data=v.event_data(e), ledger_seqs=e.ledger_seqs, actor=e.actor,
                   at=iso(e.created_at))


class FreezeOut(Sparse):
    """A judicial freeze; `blocks` (what it locks now) and `events` (its history) in the answer for one freeze."""

    _sparse = frozenset({"blocks", "events"})
    id: int
    freeze_no: int = Field(description="its place in time among registrations (kept by renewals)")
    status: Literal["active", "renewed", "deducted", "unfrozen", "expired"]
    court: PartyOut
    holder: HolderOut
    instrument: str
    quantity: str = Field(description="still frozen, in the instrument's unit")
    serials: list[SerialsOut]
    case_number: str
    notice_number: str
    term_start: dt.date
    term_end: dt.date
    expires_at: Time
    deduct_to_id: int | None
    hold_id: int | None = Field(description="the ledger hold; null once a pledgee's sale took every unit")
    predecessor_id: int | None
    root_id: int | None
    deducted_quantity: str | None
    proceeds_received: str = Field(description="CNY received from a senior pledgee's sale of the frozen units")
    created_at: Time
    resolved_at: Time | None
    blocks: list[FrozenBlockOut] | None = None
    events: list[FreezeEventOut] | None = None

    @classmethod
    def of(cls, v: FreezeView) -> FreezeOut:
        f, dec = v.freeze, v.freeze.decimals
        return cls(
            id=f.id, freeze_no=f.freeze_no, status=f.status,
            court=PartyOut(id=f.court_id, name=f.court_name),
            holder=HolderOut(id=f.holder_id, name=f.holder_name, uscc=f.holder_uscc),
            instrument=f.instrument, quantity=to_text(f.quantity, dec),
            serials=[SerialsOut(start=s, end=e) for s, e in f.serials], case_number=f.case_number,
            notice_number=f.notice_number, term_start=f.term_start, term_end=f.term_end,
            expires_at=iso(f.expires_at), deduct_to_id=f.deduct_to_id, hold_id=f.hold_id,
            predecessor_id=f.predecessor_id, root_id=f.root_id,
            deducted_quantity=None if f.deducted_quantity is None else to_text(f.deducted_quantity, dec),
            proceeds_received=to_text(f.proceeds_received, CNY_DECIMALS), created_at=iso(f.created_at),
            resolved_at=None if f.resolved_at is None else iso(f.resolved_at),
            blocks=None if v.blocks is None else [FrozenBlockOut.of(b) for b in v.blocks],
            events=None if v.events is None else [FreezeEventOut.of(v, e) for e in v.events])
