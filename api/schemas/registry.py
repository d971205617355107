"""Request bodies for participants, keys, instruments, issuance, transfers and retirements."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from api.schemas.common import MAX_ID, ClientId, Decimal, Name, Note, SerialRange, Strict

ParticipantKind = Literal["operator", "issuer", "enterprise", "bank", "court", "auditor"]
InstrumentKind = Literal["cea", "ccer", "cdcer", "forest_ticket", "emission_right"]
# judicial_restoration is reserved for court restoration orders, which carry the case data.
Purpose = Literal["compliance", "voluntary"]


class ParticipantIn(Strict):
    name: Name
    kind: ParticipantKind
    uscc: str | None = Field(default=None, pattern=r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$",
                             description="统一社会信用代码 (18 characters)")
    client_id: ClientId = None


class KeyIn(Strict):
    label: str = Field(default="", max_length=200)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class InstrumentIn(Strict):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    name: Name
    kind: InstrumentKind
    decimals: int = Field(ge=0, le=6)
    unit: str | None = Field(default=None, max_length=20)
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=20)
    client_id: ClientId = None


class IssuanceIn(Strict):
    instrument: str = Field(min_length=1, max_length=32)
    holder_id: int = Field(ge=1, le=MAX_ID)
    quantity: Decimal
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=20)
    origin_registry: str | None = Field(default=None, max_length=100)
    origin_serial: str | None = Field(default=None, max_length=200)
    client_id: ClientId = None


class DecisionIn(Strict):
    note: Note = None


class TransferIn(Strict):
    to_participant: int = Field(ge=1, le=MAX_ID)
    instrument: str = Field(min_length=1, max_length=32)
    quantity: Decimal
    serials: list[SerialRange] | None = Field(default=None, max_length=100)
    memo: Note = None
    client_id: ClientId = None


class RetirementIn(Strict):
    instrument: str = Field(min_length=1, max_length=32)
    quantity: Decimal
    purpose: Purpose
    beneficiary: Name
    note: Note = None
    serials: list[SerialRange] | None = Field(default=None, max_length=100)
    client_id: ClientId = None


class CashIn(Strict):
    participant_id: int = Field(ge=1, le=MAX_ID)
    amount: Decimal = Field(description="CNY, at most 2 decimals, e.g. \"5000000.00\"")
    bank_reference: str = Field(min_length=1, max_length=100, description="the bank's transfer confirmation")
    note: Note = None
    client_id: ClientId = None
