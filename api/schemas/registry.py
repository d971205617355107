"""Request bodies for participants, keys, instruments, issuance, transfers and retirements; the answers about
participants and instruments."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from api.schemas.common import MAX_ID, ClientId, Decimal, Name, Note, SerialRange, Strict
from api.schemas.security import SecondHalfOut
from exchange.core.units import iso, iso_or_none, to_text
from exchange.registry.expiry import ExpiryReport
from exchange.registry.kinds import KindAttributes
from exchange.registry.models import (
    CashMovement,
    Flag,
    HeldBlock,
    Holdings,
    Instrument,
    IssuanceRequest,
    IssuerGrant,
    Movement,
    Override,
    Participant,
    Retired,
    StatusChange,
    Transferred,
)
from exchange.registry.transfers import serial_label

ParticipantKind = Literal["operator", "issuer", "enterprise", "bank", "court", "auditor"]
InstrumentKind = Literal["cea", "ccer", "cdcer", "forest_ticket", "emission_right"]
# judicial_restoration is reserved for court restoration orders, which carry the case data.
Purpose = Literal["compliance", "voluntary"]
# `attributes` by the instrument's kind: each kind's schema is in the OpenAPI document (anyOf), and the
# service validates them once it knows the kind, naming every missing or invalid attribute at once.
InstrumentAttributes = Annotated[dict[str, Any], KindAttributes("instrument")]
BatchAttributes = Annotated[dict[str, Any], KindAttributes("batch")]


class IdDocumentIn(Strict):
    type: Literal["resident_id_card", "passport"] = Field(description="resident_id_card: 居民身份证 (GB 11643 "
                                                                      "check digit verified); passport")
    number: str = Field(min_length=1, max_length=32, description="as printed, ASCII (e.g. 11010519491231002X)")
    country: str | None = Field(default=None, min_length=3, max_length=3,
                                description="passports: issuing state, ISO 3166-1 alpha-3 (e.g. CHN); "
                                            "not given for a 居民身份证")


class ParticipantIn(Strict):
    name: Name
    kind: ParticipantKind
    subject: Literal["organisation", "person"] = Field(
        default="organisation", description="an organisation (optionally with its USCC) or a natural person "
                                            "(enterprise kind only, with a private identity document)")
    # Checked in exchange/registry/subjects.py (ASCII, character set, GB 32100-2015 check character): 422 invalid_uscc
    # or uscc_check_failed, with a machine code rather than a pattern mismatch.
    uscc: str | None = Field(default=None, min_length=1, max_length=32,
                             description="统一社会信用代码: 18 ASCII characters, check character verified")
    id_document: IdDocumentIn | None = Field(default=None, description="a person's identity document: stored, "
                                             "unique, seen only by operators, auditors and the person")
    client_id: ClientId = None


class EnrollmentCodeIn(Strict):
    client_id: ClientId = None


class EnrollIn(Strict):
    first_half: str = Field(min_length=1, max_length=200, description="one half of the enrollment code")
    second_half: str = Field(min_length=1, max_length=200, description="the other half (either order)")
    label: str = Field(default="", max_length=200)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    client_id: ClientId = None


class StatusChangeIn(Strict):
    reason: str = Field(min_length=1, max_length=2000)
    client_id: ClientId = None


class KeyIn(Strict):
    label: str = Field(default="", max_length=200)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650,
                                        description="capped at the expiry of the key that mints it")
    client_id: ClientId = None


class InstrumentIn(Strict):
    """An instrument of one kind. Allowances (`cea`) are the national CEA (`scheme` national) or a pilot
    market's allowance with its `region` (e.g. guangdong: GDEA)."""

    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    name: Name
    kind: InstrumentKind
    decimals: int = Field(ge=0, le=6)
    unit: str | None = Field(default=None, max_length=20)
    attributes: InstrumentAttributes = Field(default_factory=dict)
    client_id: ClientId = None


class IssuanceIn(Strict):
    """A batch to issue. An import from another registry names `origin_registry` and `origin_serials`:
    the same range of the same registry again is refused (409 `duplicate_import`), an overlapping one too
    (409 `overlapping_import`)."""

    instrument: str = Field(min_length=1, max_length=32)
    holder_id: int = Field(ge=1, le=MAX_ID)
    quantity: Decimal
    attributes: BatchAttributes = Field(default_factory=dict)
    origin_registry: str | None = Field(default=None, min_length=1, max_length=100,
                                        description="the registry the units come from, e.g. Verra; compared "
                                                    "case- and width-insensitively")
    origin_serials: SerialRange | None = Field(default=None,
                                               description="the origin registry's serial numbers, both ends "
                                                           "included; compared as numbers")
    origin_reference: str | None = Field(default=None, min_length=1, max_length=200,
                                         description="the origin serial as the origin registry prints it, for "
                                                     "the record (not compared)")
    client_id: ClientId = None


class DecisionIn(Strict):
    note: Note = None


class ApprovalIn(DecisionIn):
    """Approving a flagged request (`flags` not empty at approval) needs `override_flags: true` and a
    `reason`; both are recorded on the request (`override`) and in the batch's ledger entry meta."""

    # A JSON boolean only (strict models, api/schemas/common.py): 1 or "true" is no override.
    override_flags: bool = Field(default=False,
                                 description="approve although the request is flagged as a possible double issuance")
    reason: str | None = Field(default=None, max_length=2000,
                               description="why the flags are overridden; required with override_flags")


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


# --- answers ------------------------------------------------------------------------------------------------
# Built from the service's typed result with `.of(...)`; fields in the order the answers have always had (the
# exact-replay store at the edge keeps answered bytes). Times are ISO 8601 in UTC (exchange.core.units.iso).


class IdDocumentOut(BaseModel):
    type: str | None
    country: str | None
    number: str | None


class ParticipantOut(BaseModel):
    """A participant's record. `id_document` is present for a person, and only for operators, auditors and the
    person itself."""

    id: int
    name: str
    kind: str
    subject: str
    uscc: str | None
    holding_account: int | None
    cash_account: int | None
    status: Literal["active", "suspended"]
    suspended_at: str | None = Field(description="ISO 8601, UTC")
    suspended_by: str | None
    suspension_reason: str | None
    created_at: str = Field(description="ISO 8601, UTC")
    id_document: IdDocumentOut | None = Field(default=None, exclude_if=lambda v: v is None)

    @classmethod
    def of(cls, p: Participant, *, private: bool) -> ParticipantOut:
        doc = p.id_document if private else None
        return cls(id=p.id, name=p.name, kind=p.kind, subject=p.subject, uscc=p.uscc,
                   holding_account=p.holding_account, cash_account=p.cash_account,
                   status="active" if p.active else "suspended", suspended_at=iso_or_none(p.suspended_at),
                   suspended_by=p.suspended_by, suspension_reason=p.suspension_reason, created_at=iso(p.created_at),
                   id_document=None if doc is None else IdDocumentOut(**doc))


class AdmittedOut(ParticipantOut):
    """A participant admitted at once (maker-checker off): its record and both halves of its enrollment code."""

    enrollment: SecondHalfOut

    @classmethod
    def admitted(cls, p: Participant, enrollment: SecondHalfOut) -> AdmittedOut:
        return cls(**ParticipantOut.of(p, private=True).model_dump(exclude={"id_document"}),
                   id_document=None if p.id_document is None else IdDocumentOut(**p.id_document),
                   enrollment=enrollment)


class EnrollmentIssuedOut(BaseModel):
    """A new enrollment code issued at once (maker-checker off), both halves to the one operator."""

    participant_id: int
    enrollment: SecondHalfOut


class StatusChangeOut(BaseModel):
    """A suspension or reinstatement as recorded, with the participant's status after it."""

    id: int
    participant_id: int
    change: Literal["suspend", "reinstate"]
    reason: str
    actor: str
    approved_by: str | None
    operator_action_id: int | None
    created_at: str = Field(description="ISO 8601, UTC")
    status: Literal["active", "suspended"]

    @classmethod
    def of(cls, c: StatusChange) -> StatusChangeOut:
        return cls(id=c.id, participant_id=c.participant_id, change="suspend" if c.change == "suspend" else
                   "reinstate", reason=c.reason, actor=c.actor, approved_by=c.approved_by,
                   operator_action_id=c.operator_action_id, created_at=iso(c.created_at),
                   status="suspended" if c.status == "suspended" else "active")


class InstrumentOut(BaseModel):
    code: str
    name: str
    kind: str
    decimals: int
    unit: str
    attributes: dict[str, Any] | None = Field(description="by kind (see the instrument kinds)")
    created_at: str = Field(description="ISO 8601, UTC")

    @classmethod
    def of(cls, i: Instrument) -> InstrumentOut:
        return cls(code=i.code, name=i.name, kind=i.kind, decimals=i.decimals, unit=i.unit,
                   attributes=i.attributes, created_at=iso(i.created_at))


class IssuerGrantIn(Strict):
    """Make a participant (kind issuer) an issuing authority of this instrument."""

    participant_id: int = Field(ge=1, le=MAX_ID)
    client_id: ClientId = None


class IssuerGrantOut(BaseModel):
    """An issuer's authority over an instrument: it may request issuance of it."""

    instrument: str
    participant_id: int
    participant_name: str
    granted_by: str = Field(description="the operator who proposed the grant (a second one approved it)")
    granted_at: str = Field(description="ISO 8601, UTC")

    @classmethod
    def of(cls, g: IssuerGrant) -> IssuerGrantOut:
        return cls(instrument=g.instrument, participant_id=g.participant_id, participant_name=g.participant_name,
                   granted_by=g.granted_by, granted_at=iso(g.granted_at))


class IssuingAuthorityOut(BaseModel):
    """An issuing authority of an instrument, as the public sees it: by name (public answers name no
    participant by id)."""

    instrument: str
    issuer: str = Field(description="the issuing authority's name")
    granted_at: str = Field(description="ISO 8601, UTC")

    @classmethod
    def of(cls, g: IssuerGrant) -> IssuingAuthorityOut:
        return cls(instrument=g.instrument, issuer=g.participant_name, granted_at=iso(g.granted_at))


class AccountBalanceOut(BaseModel):
    instrument: str
    posted: str = Field(description="decimal string in the instrument's unit (CNY in yuan)")
    pending: str = Field(description="decimal string in the instrument's unit")
    available: str = Field(description="decimal string in the instrument's unit")


class AccountOut(BaseModel):
    """An account's balances, in each instrument's unit as /v1/holdings has them."""

    account: int
    participant_id: int
    balances: list[AccountBalanceOut]

    @classmethod
    def of(cls, account: int, owner: int, balances: list[dict[str, Any]], decimals: dict[str, int]) -> AccountOut:
        def shown(b: dict[str, Any], amount: int) -> str:
            return to_text(amount, decimals[b["instrument"]])
        return cls(account=account, participant_id=owner, balances=[AccountBalanceOut(
            instrument=b["instrument"], posted=shown(b, b["posted"]), pending=shown(b, b["pending_out"]),
            available=shown(b, b["posted"] - b["pending_out"])) for b in balances])


# Flags and overrides are stored as jsonb and answered as read back: their keys in jsonb's order (shorter
# keys first), which is the order these fields have.


class PeriodOut(BaseModel):
    end: str = Field(description="YYYY-MM-DD, included")
    start: str = Field(description="YYYY-MM-DD")


class FlagOut(BaseModel):
    """Another request, not rejected, claiming a subject of this one over an overlapping period."""

    code: Literal["possible_double_issuance"]
    kind: str
    period: PeriodOut
    status: str
    message: str
    request: int
    subjects: list[str]
    instrument: str

    @classmethod
    def of(cls, f: Flag) -> FlagOut:
        return cls(code="possible_double_issuance", kind=f.kind, period=PeriodOut(start=f.period[0], end=f.period[1]),
                   status=f.status, message=f.message, request=f.request, subjects=list(f.subjects),
                   instrument=f.instrument)


class OverrideOut(BaseModel):
    """An approval despite flags: who overrode which flags, and why."""

    by: str
    flags: list[FlagOut]
    reason: str

    @classmethod
    def of(cls, o: Override) -> OverrideOut:
        return cls(by=o.by, flags=[FlagOut.of(f) for f in o.flags], reason=o.reason)


class SerialsOut(BaseModel):
    start: int
    end: int


class OriginOut(BaseModel):
    """Where an imported batch comes from."""

    registry: str
    serials: SerialsOut | None
    reference: str | None


class IssuanceOut(BaseModel):
    """An issuance request; `start_serial`..`end_serial`: the issued batch's serials, once approved."""

    id: int
    instrument: str
    kind: str
    issuer_id: int
    holder_id: int
    quantity: str = Field(description="in the instrument's unit")
    attributes: dict[str, Any] = Field(description="the batch's attributes, by kind")
    flags: list[FlagOut] = Field(description="possible double issuances found when it was requested")
    override: OverrideOut | None
    status: Literal["requested", "approved", "rejected"]
    requested_by: str
    decided_by: str | None
    decision_note: str | None
    batch_id: int | None
    issue_entry_seq: int | None
    created_at: str = Field(description="ISO 8601, UTC")
    decided_at: str | None = Field(description="ISO 8601, UTC")
    start_serial: int | None
    end_serial: int | None
    origin: OriginOut | None

    @classmethod
    def of(cls, r: IssuanceRequest) -> IssuanceOut:
        origin = None if r.origin_registry is None else OriginOut(
            registry=r.origin_registry, reference=r.origin_reference,
            serials=None if r.origin_serials is None else SerialsOut(start=r.origin_serials[0],
                                                                     end=r.origin_serials[1]))
        status: Literal["requested", "approved", "rejected"] = (
            "approved" if r.status == "approved" else "rejected" if r.status == "rejected" else "requested")
        return cls(id=r.id, instrument=r.instrument, kind=r.kind, issuer_id=r.issuer_id, holder_id=r.holder_id,
                   quantity=to_text(r.quantity, r.decimals), attributes=r.attributes,
                   flags=[FlagOut.of(f) for f in r.flags],
                   override=None if r.override is None else OverrideOut.of(r.override), status=status,
                   requested_by=r.requested_by, decided_by=r.decided_by, decision_note=r.decision_note,
                   batch_id=r.batch_id, issue_entry_seq=r.issue_entry_seq, created_at=iso(r.created_at),
                   decided_at=iso_or_none(r.decided_at), start_serial=r.serials[0] if r.serials else None,
                   end_serial=r.serials[1] if r.serials else None, origin=origin)



# --- movements, holdings, expiry --------------------------------------------------------------------------------


class _MovementOut(BaseModel):
    """The ledger entry that moved units or cash, and where to fetch it and its receipt."""

    entry_seq: int
    entry_hash: str = Field(description="hex")
    type: str
    client_id: str | None
    instrument: str
    quantity: str = Field(description="in the instrument's unit")
    serials: list[SerialsOut]
    ts: str = Field(description="ISO 8601, UTC")
    entry_url: str
    receipt_url: str


def _movement(m: Movement) -> dict[str, Any]:
    return {"entry_seq": m.entry_seq, "entry_hash": m.entry_hash, "type": m.type, "client_id": m.client_id,
            "instrument": m.instrument, "quantity": to_text(m.amount, m.decimals),
            "serials": [SerialsOut(start=s, end=e) for s, e in m.serials], "ts": iso(m.ts),
            "entry_url": f"/v1/ledger/entries/{m.entry_seq}",
            "receipt_url": f"/v1/ledger/entries/{m.entry_seq}/receipt"}


class TransferOut(_MovementOut):
    from_participant: int | None
    to_participant: int

    @classmethod
    def of(cls, t: Transferred) -> TransferOut:
        return cls(**_movement(t.movement), from_participant=t.from_participant, to_participant=t.to_participant)


class RetirementOut(_MovementOut):
    participant: int | None
    purpose: str
    beneficiary: str
    note: str | None

    @classmethod
    def of(cls, r: Retired) -> RetirementOut:
        return cls(**_movement(r.movement), participant=r.participant, purpose=r.purpose, beneficiary=r.beneficiary,
                   note=r.note)


class CashMovementOut(BaseModel):
    """A deposit or withdrawal: the ledger entry that moved the cash (`amount` in CNY)."""

    entry_seq: int
    entry_hash: str = Field(description="hex")
    type: str
    client_id: str | None
    instrument: Literal["CNY"]
    serials: list[SerialsOut]
    ts: str = Field(description="ISO 8601, UTC")
    entry_url: str
    receipt_url: str
    direction: Literal["deposit", "withdrawal"]
    participant_id: int
    bank_reference: str
    amount: str = Field(description="CNY, e.g. \"5000000.00\"")

    @classmethod
    def of(cls, c: CashMovement) -> CashMovementOut:
        m = _movement(c.movement)
        amount = m.pop("quantity")
        return cls(**m, direction="deposit" if c.direction == "deposit" else "withdrawal",
                   participant_id=c.participant_id, bank_reference=c.bank_reference, amount=amount)


class BalanceOut(BaseModel):
    account: int
    instrument: str
    posted: str = Field(description="in the instrument's unit")
    pending: str = Field(description="held: by orders, pledges, freezes, T+1 locks")
    available: str = Field(description="posted - pending")


class BlockOut(BaseModel):
    """A serial block and its state; a retired block also says how it was retired (`purpose`, `beneficiary`,
    `retired_seq`: present for retired blocks only)."""

    instrument: str
    batch: int
    serial_start: int
    serial_end: int
    quantity: str = Field(description="in the instrument's unit")
    state: str = Field(description="held, order_hold, pledged, frozen, t1_locked, pending_retirement, encumbered, "
                                   "retired or expired")
    hold: int | None
    frozen_by: int | None
    serial: str = Field(description="{instrument}-{batch}-{start}-{end}")
    valid_from: str | None = Field(description="an emission right's term (its batch's); null for other kinds")
    valid_to: str | None
    purpose: str | None = None
    beneficiary: str | None = None
    retired_seq: int | None = None

    @model_serializer(mode="wrap")
    def _retired_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if self.retired_seq is None:
            for k in ("purpose", "beneficiary", "retired_seq"):
                out.pop(k, None)
        return out

    @classmethod
    def of(cls, b: HeldBlock) -> BlockOut:
        r = b.retired
        return cls(instrument=b.instrument, batch=b.batch, serial_start=b.serial_start, serial_end=b.serial_end,
                   quantity=to_text(b.serial_end - b.serial_start + 1, b.decimals), state=b.state, hold=b.hold,
                   frozen_by=b.frozen_by, serial=serial_label(b.instrument, b.batch, b.serial_start, b.serial_end),
                   valid_from=b.valid_from, valid_to=b.valid_to, purpose=r.purpose if r else None,
                   beneficiary=r.beneficiary if r else None, retired_seq=r.retired_seq if r else None)


class HoldingsOut(BaseModel):
    """A participant's balances and serial blocks; `expired`: blocks it held until their term ended."""

    participant_id: int
    balances: list[BalanceOut]
    blocks: list[BlockOut]
    expired: list[BlockOut]

    @classmethod
    def of(cls, h: Holdings) -> HoldingsOut:
        return cls(participant_id=h.participant_id,
                   balances=[BalanceOut(account=b.account, instrument=b.instrument,
                                        posted=to_text(b.posted, b.decimals), pending=to_text(b.pending, b.decimals),
                                        available=to_text(b.posted - b.pending, b.decimals)) for b in h.balances],
                   blocks=[BlockOut.of(b) for b in h.blocks], expired=[BlockOut.of(b) for b in h.expired])


class ExpiredOut(BaseModel):
    instrument: str
    batch: int
    account: int
    valid_until: str = Field(description="YYYY-MM-DD: the batch's term ended after this day")
    quantity: str = Field(description="in the instrument's unit")
    serials: list[list[int]] = Field(description="[start, end] ranges, both ends included")
    entry: int = Field(description="the retirement's ledger entry (purpose expiry)")


class BlockedOut(BaseModel):
    instrument: str
    batch: int
    account: int
    serial_start: int
    serial_end: int
    quantity: str = Field(description="in the instrument's unit")
    encumbrance: str = Field(description="what holds it back: pledged, frozen, order_hold, pledge_enforcement, ...")


class ExpirySweepOut(BaseModel):
    """What a sweep retired at the end of terms (`expired`) and what it had to leave (`blocked`)."""

    as_of: str = Field(description="YYYY-MM-DD")
    expired: list[ExpiredOut]
    blocked: list[BlockedOut]

    @classmethod
    def of(cls, r: ExpiryReport) -> ExpirySweepOut:
        return cls(as_of=r["as_of"], expired=[ExpiredOut(**e) for e in r["expired"]],
                   blocked=[BlockedOut(**b) for b in r["blocked"]])
