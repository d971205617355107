"""Request bodies for pledge registrations, ranked claims, revaluations, webhooks and judicial freezes."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from api.schemas.common import (
    MAX_ID,
    ClientId,
    Date,
    DateTime,
    Decimal,
    Name,
    Note,
    RegisteredIdentifier,
    SerialRange,
    Sparse,
    Strict,
    Time,
)
from exchange.core.units import iso, iso_or_none, times_in_iso
from exchange.pledging import webhooks
from exchange.pledging.exchange_sale import SaleStarted
from exchange.pledging.models import Delivery, WebhookEndpoint, WebhookStatus
from exchange.pledging.values import cny
from exchange.pledging.views import ClaimView, PledgeView

Id = Field(ge=1, le=MAX_ID)
Bps = Field(default=None, ge=1, le=1_000_000, description="collateral ratio in basis points (13000 = 130 %)")
Text = Field(min_length=1, max_length=200)


class ReferenceIn(Strict):
    source: str = Field(min_length=1, max_length=50, description="registry of the reference, e.g. 中登网")
    reference: str = Field(min_length=1, max_length=100, description="e.g. the 中登网 登记证明编号")


Component = Literal["realisation_costs", "custody_costs", "interest", "penalty", "damages"]


class ScopeIn(Strict):
    """担保范围 as the pledge contract states it (民法典 §389: everything below unless agreed otherwise)."""

    type: Literal["ordinary", "maximum"] = Field(
        default="ordinary", description="ordinary: the principal up to the secured amount plus the covered "
        "components; maximum (最高额质押): everything claimed up to the secured amount in total")
    covers: list[Component] | None = Field(default=None, max_length=5, description="components secured besides "
                                           "the principal; default all: realisation and custody costs, interest, "
                                           "penalty (违约金/罚息), damages")
    caps: dict[Component, Decimal] = Field(default_factory=dict, max_length=5,
                                           description="CNY caps per covered component")


class ClaimPartsIn(Strict):
    """What is owed now, by component, CNY (pledges.scope decides what of it the pledge secures)."""

    principal: Decimal | None = None
    interest: Decimal | None = None
    penalty: Decimal | None = None
    damages: Decimal | None = None
    custody_costs: Decimal | None = None
    realisation_costs: Decimal | None = None

    def amounts(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class DefaultIn(Strict):
    """The bank's declaration that the secured loan is in default (违约通知 / 逾期通知)."""

    reference: str = Field(min_length=1, max_length=100, description="the notice's number")
    notice_date: Date
    overdue_amount: Decimal | None = Field(default=None, description="CNY overdue, as the notice states")
    note: Note = None
    client_id: ClientId = None

    def notice(self) -> dict[str, object]:
        return {"reference": self.reference, "notice_date": self.notice_date, "overdue_amount": self.overdue_amount,
                "note": self.note}


class PledgeIn(Strict):
    pledgor_id: int = Id
    pledgor_identifier: RegisteredIdentifier
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
    secured_scope: ScopeIn | None = None
    client_id: ClientId = None


class ActionIn(Strict):
    note: Note = None
    client_id: ClientId = None


class ConfirmIn(ActionIn):
    version: int | None = Field(default=None, ge=1, le=MAX_ID, description="The version of the filing the "
                                "pledgor read (`version` of its answer): if the bank amended it since, 409 "
                                "`terms_changed` and nothing is confirmed. Omitted: whatever the filing says now.")


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


class DefaultNoticeIn(Strict):
    reference: str = Field(min_length=1, max_length=100)
    notice_date: Date
    overdue_amount: Decimal | None = None
    note: Note = None


class EnforceIn(Strict):
    method: Literal["transfer", "sale", "exchange"]
    reason: str = Field(min_length=1, max_length=2000, description="the default, e.g. unpaid instalment")
    outstanding: Decimal | None = Field(default=None, description="CNY principal owed now (or use claim); "
                                        "default the secured amount")
    claim: ClaimPartsIn | None = Field(default=None, description="what is owed by component, within the scope")
    default_notice: DefaultNoticeIn | None = Field(default=None, description="declare the loan's default now")
    price: Decimal | None = Field(default=None, description="CNY per unit (sale: at least 70 % of the latest "
                                  "mark; transfer: at least the latest mark, its default)")
    buyer_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    client_id: ClientId = None


class AuctionTermsIn(Strict):
    min_price: Decimal = Field(description="start price, CNY per unit (emission rights: per t·yr of the term)")
    increment: Decimal = Field(description="bid step, CNY")
    deposit: Decimal = "0"
    min_bid_quantity: Decimal | None = None
    cap_per_bidder: Decimal | None = None
    max_bids_per_bidder: int = Field(default=1, ge=1, le=100)
    allocation: Literal["pay_as_bid", "top_percent", "uniform_price"] = "pay_as_bid"
    top_percent: int = Field(default=100, ge=1, le=100)
    extension_window_seconds: int = Field(default=0, ge=0, le=3600)
    extension_length_seconds: int = Field(default=0, ge=0, le=3600)
    max_extensions: int = Field(default=0, ge=0, le=100)
    irrevocable: bool = True

    def terms(self) -> dict[str, object]:
        d = self.model_dump()
        return {"min_price": d["min_price"], "increment": d["increment"], "deposit": d["deposit"],
                "min_bid_quantity": d["min_bid_quantity"], "cap_per_bidder": d["cap_per_bidder"],
                "max_bids_per_bidder": d["max_bids_per_bidder"], "allocation": d["allocation"],
                "top_percent": d["top_percent"], "extension_window_s": d["extension_window_seconds"],
                "extension_length_s": d["extension_length_seconds"], "max_extensions": d["max_extensions"],
                "irrevocable": d["irrevocable"]}


class SaleIn(Strict):
    """A listing (挂牌, with its price) or an auction (单向竞价, with its terms) of the escrowed lot."""

    market_id: str = Field(min_length=1, max_length=64)
    quantity: Decimal | None = Field(default=None, description="default: every unsold unit not yet on sale")
    price: Decimal | None = Field(default=None, description="listing price, CNY per unit")
    auction: AuctionTermsIn | None = None
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
    price: Decimal = Field(description="close price, CNY per unit (emission rights: per t·yr; the value is "
                                       "price × quantity × term years)")
    as_of: Date
    cure_deadline: DateTime | None = Field(default=None, description="default: the next weekday's 09:30 Shanghai")
    reason: str | None = Field(default=None, min_length=1, max_length=2000,
                               description="why the mark is this price; required outside the market's price band "
                                           "around the last close")
    client_id: ClientId = None


class WebhookIn(Strict):
    url: str = Field(min_length=8, max_length=2000)
    client_id: ClientId = None


class HaircutIn(Strict):
    haircut_bps: int = Field(ge=0, le=9999)
    client_id: ClientId = None


class FreezeIn(Strict):
    holder_id: int = Id
    holder_identifier: RegisteredIdentifier
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


# ----------------------------------------------------------------------------------- answers


class SignatureSchemeOut(BaseModel):
    header: str
    timestamp_header: str
    scheme: str


class WebhookOut(BaseModel):
    """The bank's webhook endpoint with its signing secret (shown only in this answer)."""

    url: str
    secret: str
    updated_at: str = Field(description="ISO 8601, UTC")
    signature: SignatureSchemeOut

    @classmethod
    def of(cls, w: WebhookEndpoint) -> WebhookOut:
        return cls(url=w.url, secret=w.secret.decode(), updated_at=iso(w.updated_at),
                   signature=SignatureSchemeOut(header=webhooks.SIGNATURE_HEADER,
                                                timestamp_header=webhooks.TIMESTAMP_HEADER,
                                                scheme="sha256=hex(HMAC-SHA256(secret, timestamp + '.' + body))"))


class DeliveryOut(BaseModel):
    id: int
    event_id: int
    event_type: str
    status: str = Field(description="pending, delivered or failed")
    attempts: int
    next_attempt_at: str = Field(description="ISO 8601, UTC")
    delivered_at: str | None
    last_error: str | None = Field(description="a fixed public reason, never the transport's error text")

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(id=d.id, event_id=d.event_id, event_type=d.event_type, status=d.status, attempts=d.attempts,
                   next_attempt_at=iso(d.next_attempt_at), delivered_at=iso_or_none(d.delivered_at),
                   last_error=d.last_error)


class WebhookStatusOut(BaseModel):
    """The bank's webhook URL (never its secret again) and its recent deliveries, newest first."""

    url: str
    updated_at: str = Field(description="ISO 8601, UTC")
    deliveries: list[DeliveryOut]

    @classmethod
    def of(cls, s: WebhookStatus) -> WebhookStatusOut:
        return cls(url=s.endpoint.url, updated_at=iso(s.endpoint.updated_at),
                   deliveries=[DeliveryOut.of(d) for d in s.deliveries])


class HaircutOut(BaseModel):
    instrument: str
    haircut_bps: int


class ExpirySweepOut(BaseModel):
    pledges_expired: list[int] = Field(description="ids of the registrations (and lapsed filings) expired now")
    freezes_expired: list[int] = Field(description="ids of the judicial freezes expired now")


class InquiryKeyOut(BaseModel):
    """The C2SP Ed25519 verifier key that signs public search certificates."""

    verifier_key: str
    key_name: str
    key_id: str = Field(description="hex")


# ----------------------------------------------------------------------------------- registrations

Money = Annotated[str | None, Field(description="yuan, a decimal string")]


class PartyOut(BaseModel):
    id: int
    name: str


class PledgorOut(PartyOut):
    uscc: str | None


class SpanOut(BaseModel):
    start: int
    end: int


class ReferenceOut(BaseModel):
    source: str
    reference: str


class LockedBlockOut(BaseModel):
    start: int
    end: int
    batch: int
    quantity: str = Field(description="in the instrument's unit")
    serial: str = Field(description="instrument-batch-start-end")
    frozen_by: int | None = Field(description="the court freeze hold on the block, if any")


class PriorityOut(BaseModel):
    rank_on_lot: int | None = Field(description="1: the lock holder (junior claims follow)")
    rank_among_pledgor_registrations: int | None


class ThresholdsOut(BaseModel):
    warning_bps: int | None
    margin_call_bps: int | None
    liquidation_bps: int | None


class MarginOut(BaseModel):
    level: str
    cure_deadline: Time | None
    price: Money
    value: Money
    ratio_bps: int | None
    as_of: dt.date | None


class ClaimOut(BaseModel):
    """A ranked (junior) claim on a pledged lot."""

    id: int
    claimant_id: int
    claimant_name: str
    loan_contract: str
    amount: Money
    term_end: dt.date
    reference: str | None
    status: str = Field(description="filed, registered, released, lapsed, paid, promoted")
    registration_no: int | None
    registered_at: Time | None
    rank: int | None = Field(description="its place on the lot (2 is the first junior), while registered")
    paid: Money


class ClaimAnswerOut(ClaimOut):
    """One claim as its claimant sees it, with the lot it is on."""

    pledge_id: int
    pledge_number: str | None

    @classmethod
    def of(cls, view: ClaimView) -> ClaimAnswerOut:
        c = view.claim
        return cls(id=c.id, claimant_id=c.claimant_id, claimant_name=c.claimant_name, loan_contract=c.loan_contract,
                   amount=cny(c.amount), term_end=c.term_end, reference=c.reference, status=c.status,
                   registration_no=c.registration_no, registered_at=iso_or_none(c.registered_at), rank=view.rank,
                   paid=cny(c.paid), pledge_id=c.pledge_id, pledge_number=view.pledge_number)


class PledgeOut(Sparse):
    """A pledge registration as the caller may see it (pledges.visibility): its parties (pledgee, pledgor,
    oversight) see every field; a junior creditor whose claim the pledgor confirmed, or the buyer a sale is
    offered to, sees the lot, its own claims and the sale terms it may accept -- the fields it may not
    see are left out of the answer, not written as null. Times as exchange.core.units.iso writes them
    (every `.of` here takes its answer through times_in_iso, as api/encoding.py does for plain answers)."""

    _unset = frozenset({
        "requested_serials", "hold_id", "hold_url", "loan_contract", "secured_amount", "grace_days",
        "haircut_bps", "haircut_own", "thresholds", "margin", "transfer_on_default", "secured_scope",
        "declared_default", "version",
    })
    id: int
    number: str
    status: str
    pledgee: PartyOut
    pledgor: PledgorOut
    instrument: str
    quantity: str = Field(description="in the instrument's unit")
    requested_serials: list[SpanOut] | None = None
    serials: list[SpanOut]
    blocks: list[LockedBlockOut] = Field(description="the serial blocks locked now")
    hold_id: int | None = None
    hold_url: str | None = None
    registration_no: int | None
    registered_at: Time | None
    priority: PriorityOut
    loan_contract: str | None = None
    secured_amount: Money = None
    term_start: dt.date
    term_end: dt.date
    grace_days: int | None = None
    expires_at: Time
    references: list[ReferenceOut]
    haircut_bps: int | None = None
    haircut_own: bool | None = None
    thresholds: ThresholdsOut | None = None
    margin: MarginOut | None = None
    transfer_on_default: bool | None = None
    secured_scope: dict[str, Any] | None = Field(default=None, description="amounts in yuan")
    declared_default: dict[str, Any] | None = None
    claims: list[ClaimOut]
    enforcement: dict[str, Any] | None = Field(description="the enforcement as the caller may see it; amounts "
                                                           "in yuan, quantities in the instrument's unit")
    promoted_from_claim: int | None
    created_at: Time
    updated_at: Time
    version: int | None = None

    @classmethod
    def of(cls, view: PledgeView) -> PledgeOut:
        return cls.model_validate(times_in_iso(view.fields()))


class PledgeEventOut(BaseModel):
    """One event of a registration as the caller may see it: amounts in yuan, quantities in the
    instrument's unit; a junior creditor or buyer sees no ledger entries nor actor (empty, null)."""

    id: int
    pledge_id: int
    pledge_number: str | None
    instrument: str | None
    type: str
    changes: dict[str, Any] = Field(description="the registration's fields this event set")
    details: dict[str, Any]
    ledger_seqs: list[int]
    actor: str | None
    at: str = Field(description="ISO 8601")

    @classmethod
    def of(cls, event: dict[str, Any]) -> PledgeEventOut:
        return cls.model_validate(times_in_iso(event))


class SaleOut(BaseModel):
    """An enforcement sale on the exchange: the registration and the listing or auction lot placed."""

    pledge: PledgeOut
    order: dict[str, Any] = Field(description="the sell order (listing) or auction lot, as GET of the order shows it")

    @classmethod
    def of(cls, answer: SaleStarted) -> SaleOut:
        return cls(pledge=PledgeOut.of(answer.pledge), order=times_in_iso(answer.order))


class RevaluedOut(Sparse):
    """A registration revalued at the mark, or (`already_valued`) one valued for that day before."""

    _unset = frozenset({"number", "value", "ratio_bps", "cure_deadline", "already_valued"})
    pledge_id: int
    number: str | None = None
    value: Money = None
    ratio_bps: int | None = None
    level: str = Field(description="ok, warning, margin_call or liquidation")
    cure_deadline: Time | None = None
    already_valued: bool | None = None


class RevaluationOut(BaseModel):
    instrument: str
    as_of: dt.date
    price: str = Field(description="yuan per whole unit")
    pledges: list[RevaluedOut]

    @classmethod
    def of(cls, answer: dict[str, Any]) -> RevaluationOut:
        return cls.model_validate(times_in_iso(answer))


# ----------------------------------------------------------------------------------- public inquiry


class LedgerHeadOut(BaseModel):
    seq: int
    hash: str = Field(description="hex")
    leaf_hash: str = Field(description="base64 Merkle leaf hash SHA-256(0x00 || entry) of entry `seq` (empty when "
                                       "the ledger is empty): what the .tlog-proof form proves in the log")


class InquiryCertificate(BaseModel):
    """What the register publishes for the query (pledges/certificate.py): no balances, loan contracts,
    amounts, notice numbers or participant ids."""

    type: str
    registry: str
    record: Literal["pledges", "freezes", "retirements"]
    query: dict[str, Any] = Field(description="name, uscc, serial, instrument: those given")
    results: list[dict[str, Any]] = Field(description="pledges: type, registration_number, lot_registration_number, "
                                                      "rank_on_lot, registration_no, status, pledgor, pledgor_uscc, "
                                                      "pledgee, instrument, quantity, serials, term_start, term_end, "
                                                      "registered_at, references; freezes: freeze_no, court, "
                                                      "case_number, holder, holder_uscc, instrument, quantity, "
                                                      "serials, term_start, term_end, frozen_at; retirements: "
                                                      "entry_seq, retired_at, holder, holder_uscc, instrument, batch, "
                                                      "serial_start, serial_end, quantity, serial, purpose, "
                                                      "beneficiary, court, case_number")
    result_count: int
    truncated: bool
    issued_at: str = Field(description="ISO 8601, seconds")
    ledger_head: LedgerHeadOut


class CertificateSignatureOut(BaseModel):
    algorithm: str
    key_name: str
    key_id: str = Field(description="hex")
    verifier_key: str
    sha256: str = Field(description="hex SHA-256 of the certificate's canonical JSON")
    note: str = Field(description="the C2SP signed note over the certificate")


class PublicSearchOut(BaseModel):
    """A signed search certificate (verify it with GET /v1/public/inquiry-key)."""

    certificate: InquiryCertificate
    signature: CertificateSignatureOut

    @classmethod
    def of(cls, answer: dict[str, Any]) -> PublicSearchOut:
        return cls.model_validate(times_in_iso(answer))
