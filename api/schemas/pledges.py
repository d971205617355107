"""Request bodies for pledge registrations, ranked claims, revaluations, webhooks and judicial freezes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.schemas.common import MAX_ID, ClientId, Date, DateTime, Decimal, Name, Note, SerialRange, Strict

Id = Field(ge=1, le=MAX_ID)
Bps = Field(default=None, ge=1, le=1_000_000, description="collateral ratio in basis points (13000 = 130 %)")
Text = Field(min_length=1, max_length=200)


class ReferenceIn(Strict):
    source: str = Field(min_length=1, max_length=50, description="registry of the reference, e.g. 中登网")
    reference: str = Field(min_length=1, max_length=100, description="e.g. the 中登网 登记证明编号")


class PledgeIn(Strict):
    pledgor_id: int = Id
    instrument: str = Field(min_length=1, max_length=32)
    quantity: Decimal
    serials: list[SerialRange] | None = Field(default=None, max_length=100, description="named blocks to pledge")
    loan_contract: str = Text
    secured_amount: Decimal = Field(description="CNY, at most 2 decimals: the amount the pledge secures")
    term_start: Date
    term_end: Date
    grace_days: int = Field(default=0, ge=0, le=366, description="days the lock outlives the term")
    references: list[ReferenceIn] = Field(default_factory=list, max_length=10)
    haircut_bps: int | None = Field(default=None, ge=0, le=9999,
                                    description="valuation discount (2000 = value at 80 % of the close)")
    warning_bps: int | None = Bps
    margin_call_bps: int | None = Bps
    liquidation_bps: int | None = Bps
    transfer_on_default: bool = Field(default=False, description="the contract lets the bank take the units (折价)")
    client_id: ClientId = None


class ActionIn(Strict):
    note: Note = None
    client_id: ClientId = None


class AmendIn(Strict):
    secured_amount: Decimal | None = None
    loan_contract: str | None = Field(default=None, min_length=1, max_length=200)
    haircut_bps: int | None = Field(default=None, ge=0, le=9999)
    warning_bps: int | None = Bps
    margin_call_bps: int | None = Bps
    liquidation_bps: int | None = Bps
    transfer_on_default: bool | None = None
    add_references: list[ReferenceIn] = Field(default_factory=list, max_length=10)
    note: Note = None
    client_id: ClientId = None


class ExtendIn(Strict):
    term_end: Date
    grace_days: int | None = Field(default=None, ge=0, le=366)
    note: Note = None
    client_id: ClientId = None


class TopUpIn(Strict):
    quantity: Decimal
    serials: list[SerialRange] | None = Field(default=None, max_length=100)
    client_id: ClientId = None


class PartialReleaseIn(Strict):
    quantity: Decimal | None = None
    serials: list[SerialRange] | None = Field(default=None, max_length=100)
    note: Note = None
    client_id: ClientId = None


class EnforceIn(Strict):
    method: Literal["transfer", "sale", "exchange"]
    reason: str = Field(min_length=1, max_length=2000, description="the default, e.g. unpaid instalment")
    outstanding: Decimal | None = Field(default=None, description="CNY owed now; default the secured amount")
    price: Decimal | None = Field(default=None, description="CNY per unit (sale; transfer: default the last mark)")
    buyer_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    fee: Decimal | None = Field(default=None, description="CNY enforcement costs, paid first")
    client_id: ClientId = None


class AcceptSaleIn(Strict):
    price: Decimal = Field(description="the offered price per unit, repeated as the buyer's acceptance")
    client_id: ClientId = None


class ClaimIn(Strict):
    loan_contract: str = Text
    amount: Decimal = Field(description="CNY the claim secures")
    term_end: Date
    reference: str | None = Field(default=None, max_length=100)
    client_id: ClientId = None


class RevaluationIn(Strict):
    instrument: str = Field(min_length=1, max_length=32)
    price: Decimal = Field(description="close price, CNY per unit")
    as_of: Date
    cure_deadline: DateTime | None = Field(default=None, description="default: the next weekday's 09:30 Shanghai")
    client_id: ClientId = None


class WebhookIn(Strict):
    url: str = Field(min_length=8, max_length=2000)
    client_id: ClientId = None


class HaircutIn(Strict):
    haircut_bps: int = Field(ge=0, le=9999)


class FreezeIn(Strict):
    holder_id: int = Id
    instrument: str = Field(min_length=1, max_length=32)
    quantity: Decimal
    serials: list[SerialRange] | None = Field(default=None, max_length=100)
    case_number: Name = Field(description="案号, e.g. (2024)闽0402执123号")
    notice_number: Name = Field(description="协助执行通知书号")
    term_start: Date
    term_end: Date
    deduct_to_id: int | None = Field(default=None, ge=1, le=MAX_ID,
                                     description="participant whose account receives a deduction")
    client_id: ClientId = None


class RenewIn(Strict):
    term_end: Date
    notice_number: Name
    client_id: ClientId = None


class DeductIn(Strict):
    quantity: Decimal | None = None
    to_participant: int | None = Field(default=None, ge=1, le=MAX_ID)
    client_id: ClientId = None
