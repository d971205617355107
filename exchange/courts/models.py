"""The courts' rows, typed: built from a row right where it is fetched (exchange/courts/repository.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from exchange.pledging.models import Freeze

# The freeze row is pledging's (a freeze sits on pledged lots, which pledging enforces around); courts use it.
__all__ = ["Fill", "Freeze", "FreezeEvent", "Reminder", "RestorationOrder", "StoredCertificate"]


@dataclass(frozen=True, slots=True)
class RestorationOrder:
    """A restoration order as stored, with the names of its court and payer."""

    id: int
    court_id: int
    court: str
    case_number: str
    case_type: str
    judgment_reference: str | None
    defendants: list[dict[str, Any]]
    payer_id: int
    payer: str
    assessed_loss_kg: int | None
    assessment_method: str | None
    assessing_body: str | None
    multiplier: str | None
    required_kg: int
    eligible_kinds: list[str]
    designated_seller_id: int | None
    deadline: date
    status: str
    note: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, r: Any) -> RestorationOrder:
        return cls(r.id, r.court_id, r.court, r.case_number, r.case_type, r.judgment_reference, list(r.defendants),
                   r.payer_id, r.payer, r.assessed_loss_kg, r.assessment_method, r.assessing_body, r.multiplier,
                   r.required_kg, list(r.eligible_kinds), r.designated_seller_id, r.deadline, r.status, r.note,
                   r.created_at)

    def parties(self) -> tuple[int, int, int | None]:
        return self.court_id, self.payer_id, self.designated_seller_id


@dataclass(frozen=True, slots=True)
class Reminder:
    kind: str
    day: date
    message: str
    created_at: datetime

    @classmethod
    def from_row(cls, r: Any) -> Reminder:
        return cls(r.kind, r.day, r.message, r.created_at)


@dataclass(frozen=True, slots=True)
class Fill:
    """A settled trade bought for a restoration order, with its retirement entry (None until it is in the
    ledger) and the decimals of its instrument."""

    market_id: str
    trade_id: int
    instrument: str
    price: int
    qty: int
    notional: int
    buyer_fee: int
    ts: int
    decimals: int
    retire_seq: int | None
    retire_meta: bytes | None

    def retired_serials(self) -> list[tuple[int, int]]:
        """The serial blocks the retirement entry names (none before it is in the ledger)."""
        if self.retire_meta is None:
            return []
        return [(int(a), int(b)) for a, b in json.loads(self.retire_meta).get("serials", [])]


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    order_id: int
    certificate: dict[str, Any]

    @classmethod
    def from_row(cls, r: Any) -> StoredCertificate:
        return cls(r.order_id, dict(r.certificate))


@dataclass(frozen=True, slots=True)
class FreezeEvent:
    id: int
    freeze_id: int
    type: str
    data: dict[str, Any]
    ledger_seqs: list[int]
    actor: str
    created_at: datetime

    @classmethod
    def from_row(cls, r: Any) -> FreezeEvent:
        return cls(r.id, r.freeze_id, r.type, dict(r.data), list(r.ledger_seqs), r.actor, r.created_at)
