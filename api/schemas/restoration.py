"""Request bodies and answers of court restoration orders and their certificates."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from api.schemas.common import MAX_ID, ClientId, Date, Decimal, Name, Note, RegisteredIdentifier, Strict
from exchange.core.units import CARBON_UNIT, cny, iso
from exchange.courts.certificates import CertificateCheck
from exchange.courts.models import Reminder
from exchange.courts.restoration import OrderState


class Defendant(Strict):
    name: Name
    id_number: str | None = Field(default=None, max_length=40, description="kept private; not printed")


class RestorationOrderIn(Strict):
    case_number: str = Field(min_length=1, max_length=100, description="案号, e.g. (2022)闽0627刑初XX号")
    case_type: str = Field(min_length=1, max_length=100, description="e.g. 刑事附带民事公益诉讼")
    judgment_reference: str | None = Field(default=None, max_length=200)
    defendants: list[Defendant] = Field(min_length=1, max_length=100)
    payer_id: int = Field(ge=1, le=MAX_ID, description="the participant whose account pays")
    payer_identifier: RegisteredIdentifier
    assessed_loss: Decimal | None = Field(default=None, description="assessed loss, tCO2e (up to 3 decimals)")
    assessment_method: str | None = Field(default=None, max_length=200)
    assessing_body: str | None = Field(default=None, max_length=200)
    multiplier: Decimal | None = None
    required_quantity: Decimal = Field(description="tCO2e to buy and retire (up to 3 decimals)")
    eligible_kinds: list[Literal["ccer", "cdcer", "forest_ticket", "cea"]] = Field(min_length=1, max_length=4)
    designated_seller_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    deadline: Date
    note: Note = None
    client_id: ClientId = None


class RestorationPurchaseIn(Strict):
    market_id: str = Field(min_length=1, max_length=64)
    type: Literal["limit", "market"] = "limit"
    tif: Literal["day", "ioc", "fok"] = "day"
    price: Decimal | None = None
    quantity: Decimal
    client_id: ClientId = None


class RestorationTakeIn(Strict):
    market_id: str = Field(min_length=1, max_length=64)
    listing_id: int = Field(ge=1, le=MAX_ID)
    quantity: Decimal
    client_id: ClientId = None


# --- answers ------------------------------------------------------------------------------------------------

Quantity = Annotated[str, Field(description="tCO2e, a decimal string at the order's precision")]
Money = Annotated[str, Field(description="CNY, a decimal string with 2 decimals")]
Time = Annotated[str, Field(description="ISO 8601, UTC, microseconds, Z")]


class RestorationOrderOut(BaseModel):
    id: int
    court_id: int
    court: str
    case_number: str
    case_type: str
    judgment_reference: str | None
    defendants: list[dict[str, str | None]] = Field(
        description="each {name, id_number}: the ID number only for the court and oversight")
    payer_id: int
    payer: str
    assessed_loss: Quantity | None
    assessment_method: str | None
    assessing_body: str | None
    multiplier: str | None
    required_quantity: Quantity
    retired_quantity: Quantity
    remaining_quantity: Quantity
    unit: str = Field(description="tCO2e")
    value: Money = Field(description="what the fills were worth: price x quantity")
    fees: Money = Field(description="the exchange's fees on the fills")
    paid: Money = Field(description="value + fees")
    eligible_kinds: list[str]
    designated_seller_id: int | None
    deadline: dt.date
    effective_deadline: dt.date = Field(description="the deadline, or the first trading day after it if the "
                                                    "exchange does not trade that day (a holiday, a make-up day)")
    days_left: int = Field(description="calendar days to the effective deadline")
    trading_days_left: int = Field(description="trading days after today up to the effective deadline")
    overdue: bool
    status: str = Field(description="open, fulfilled or cancelled")
    note: str | None
    fills: int = Field(description="how many settled trades were bought for the order")

    @classmethod
    def of(cls, s: OrderState) -> RestorationOrderOut:
        o = s.order
        return cls(id=o.id, court_id=o.court_id, court=o.court, case_number=o.case_number, case_type=o.case_type,
                   judgment_reference=o.judgment_reference, defendants=s.defendants, payer_id=o.payer_id,
                   payer=o.payer, assessed_loss=s.assessed_loss, assessment_method=o.assessment_method,
                   assessing_body=o.assessing_body, multiplier=o.multiplier, required_quantity=s.required_quantity,
                   retired_quantity=s.retired_quantity, remaining_quantity=s.remaining_quantity, unit=CARBON_UNIT,
                   value=cny(s.value), fees=cny(s.fees), paid=cny(s.value + s.fees), eligible_kinds=o.eligible_kinds,
                   designated_seller_id=o.designated_seller_id, deadline=o.deadline, days_left=s.days_left,
                   effective_deadline=s.effective_deadline, trading_days_left=s.trading_days_left,
                   overdue=s.overdue, status=s.status, note=o.note, fills=s.fills)


class ReminderOut(BaseModel):
    kind: str = Field(description="due_soon (at most 5 trading days left) or overdue")
    day: dt.date
    message: str
    created_at: Time

    @classmethod
    def of(cls, r: Reminder) -> ReminderOut:
        return cls(kind=r.kind, day=r.day, message=r.message, created_at=iso(r.created_at))


class CertificateOut(BaseModel):
    """The signed certificate (format in ledger.certificate): verify offline with `envx verify-receipt`."""

    format: str
    note: str = Field(description="the signed note: header, the body as JSON, the registry's signature")
    receipts: list[dict[str, Any]] = Field(description="a receipt (inclusion proof under a signed checkpoint) "
                                                       "per retirement entry")

    @classmethod
    def of(cls, doc: dict[str, Any]) -> CertificateOut:
        return cls(format=doc["format"], note=doc["note"], receipts=doc["receipts"])


class CertificateValidOut(BaseModel):
    code: str
    valid: Literal[True]
    order_id: int
    entries: list[int] = Field(description="the ledger entries the certificate proves")
    certificate: CertificateOut | None = Field(description="null for a certificate that names an ID number")
    verifier_keys: list[str]


class CertificateInvalidOut(BaseModel):
    code: str
    valid: Literal[False]
    reason: str
    detail: str


def certificate_check(c: CertificateCheck) -> CertificateValidOut | CertificateInvalidOut:
    if not c.valid:
        return CertificateInvalidOut(code=c.code, valid=False, reason=c.reason or "", detail=c.detail or "")
    assert c.order_id is not None and c.entries is not None
    return CertificateValidOut(code=c.code, valid=True, order_id=c.order_id, entries=c.entries,
                               certificate=None if c.certificate is None else CertificateOut.of(c.certificate),
                               verifier_keys=c.verifier_keys)
