"""Request bodies for signing keys and the signature policy; answers of the security package (keys, signing
keys, enrollment codes, operator actions, the audit trail)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, SerializerFunctionWrapHandler, model_serializer

from api.schemas.common import Sparse, Strict, Time
from exchange.core.units import iso
from exchange.security.credentials import Revoked
from exchange.security.enrollment import FIRST_INSTRUCTIONS, SECOND_INSTRUCTIONS, Enrolled, FirstHalf, SecondHalf
from exchange.security.keys import IssuedKey
from exchange.security.models import (
    AnonymousRefusals,
    AuditRecord,
    ChainCheck,
    EnrollmentCode,
    KeyRow,
    OperatorAction,
    SignaturePolicy,
    SigningKey,
)
from exchange.security.operator_actions import ActionAnswer


class SigningKeyIn(Strict):
    public_key: str = Field(min_length=43, max_length=64,
                            description="The raw 32-byte Ed25519 public key, base64 (standard or URL-safe)")
    label: str = Field(default="", max_length=200)


class SignaturePolicyIn(Strict):
    require_signatures: bool = Field(description="Refuse this participant's unsigned mutations (401)")


# --- answers ------------------------------------------------------------------------------------------------

def _time(at: datetime | None) -> str | None:
    return None if at is None else iso(at)


class SigningKeyOut(BaseModel):
    id: int
    participant_id: int
    public_key: str = Field(description="the raw 32-byte Ed25519 public key, base64")
    label: str
    created_at: Time
    created_by: str
    revoked_at: Time | None
    revoked_by: str | None

    @classmethod
    def of(cls, k: SigningKey) -> SigningKeyOut:
        return cls(id=k.id, participant_id=k.participant_id, public_key=k.public_key_b64, label=k.label,
                   created_at=iso(k.created_at), created_by=k.created_by, revoked_at=_time(k.revoked_at),
                   revoked_by=k.revoked_by)


class SignaturePolicyOut(BaseModel):
    participant_id: int
    require_signatures: bool

    @classmethod
    def of(cls, p: SignaturePolicy) -> SignaturePolicyOut:
        return cls(participant_id=p.participant_id, require_signatures=p.require_signatures)


class KeyOut(BaseModel):
    """An API key and its lineage, never its secret."""

    id: int
    prefix: str
    label: str
    created_at: Time
    expires_at: Time | None
    revoked_at: Time | None
    parent_key_id: int | None = Field(description="the key that minted it; null for a root key")
    created_by: str

    @classmethod
    def of(cls, k: KeyRow) -> KeyOut:
        return cls(id=k.id, prefix=k.prefix, label=k.label, created_at=iso(k.created_at),
                   expires_at=_time(k.expires_at), revoked_at=_time(k.revoked_at), parent_key_id=k.parent_key_id,
                   created_by=k.created_by)


class IssuedKeyOut(KeyOut):
    """A key with its token: only to whoever made the key, at once or on a retry."""

    token: str

    @classmethod
    def issued(cls, k: IssuedKey) -> IssuedKeyOut:
        return cls(**KeyOut.of(k.key).model_dump(), token=k.token)


class RevokedKeysOut(BaseModel):
    id: int
    revoked: Literal[True]
    revoked_keys: list[int] = Field(description="the key and every key minted under it")

    @classmethod
    def of(cls, r: Revoked) -> RevokedKeysOut:
        return cls(id=r.id, revoked=True, revoked_keys=r.revoked_keys)


class EnrolledOut(BaseModel):
    participant_id: int
    key: IssuedKeyOut

    @classmethod
    def of(cls, e: Enrolled) -> EnrolledOut:
        return cls(participant_id=e.participant_id, key=IssuedKeyOut.issued(e.key))


class EnrollmentCodeOut(BaseModel):
    """What oversight may see of a code: never a half, never a digest."""

    id: int
    handle: str
    participant_id: int | None
    operator_action_id: int | None
    four_eyes: bool
    first_half_to: str
    second_half_to: str | None
    created_at: Time
    completed_at: Time | None
    expires_at: Time | None
    used_at: Time | None
    key_id: int | None
    cancelled_at: Time | None
    cancel_reason: str | None
    status: Literal["awaiting_approval", "usable", "used", "expired", "cancelled"]

    @classmethod
    def of(cls, c: EnrollmentCode, now: datetime) -> EnrollmentCodeOut:
        return cls(id=c.id, handle=c.handle, participant_id=c.participant_id, operator_action_id=c.operator_action_id,
                   four_eyes=c.four_eyes, first_half_to=c.created_by, second_half_to=c.second_by,
                   created_at=iso(c.created_at), completed_at=_time(c.completed_at), expires_at=_time(c.expires_at),
                   used_at=_time(c.used_at), key_id=c.key_id, cancelled_at=_time(c.cancelled_at),
                   cancel_reason=c.cancel_reason, status=c.status(now))


class FirstHalfOut(Sparse):
    """The first half of an enrollment code, for the proposer only."""

    _sparse = frozenset({"note"})
    code_id: int
    handle: str
    first_half: str | None = Field(description="null: it was shown once and cannot be derived here (see note)")
    note: str | None = None
    instructions: str

    @classmethod
    def of(cls, h: FirstHalf) -> FirstHalfOut:
        return cls(code_id=h.code_id, handle=h.handle, first_half=h.first_half,
                   note=None if h.first_half is not None else
                   "this half was shown once and cannot be derived here; reject the proposal and propose again",
                   instructions=FIRST_INSTRUCTIONS)


class SecondHalfOut(Sparse):
    """The completed code as its reader may see it: the second half only to the operator who holds it."""

    _sparse = frozenset({"second_half", "note", "first_half", "instructions"})
    code_id: int
    handle: str
    expires_at: Time | None
    second_half: str | None = Field(default=None, description="to its holder only")
    note: str | None = None
    first_half: str | None = Field(default=None, description="with maker-checker off only: one operator holds both")
    instructions: str | None = None
    _holder: bool = PrivateAttr(default=False)

    @classmethod
    def of(cls, h: SecondHalf) -> SecondHalfOut:
        if not h.holder:
            return cls(code_id=h.code_id, handle=h.handle, expires_at=_time(h.expires_at))
        out = cls(code_id=h.code_id, handle=h.handle, expires_at=_time(h.expires_at), second_half=h.second_half,
                  note=None if h.second_half is not None else "this half was shown once and cannot be derived here",
                  first_half=h.first_half, instructions=SECOND_INSTRUCTIONS if h.four_eyes else None)
        out._holder = True
        return out

    @model_serializer(mode="wrap")
    def _leave_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        # To its holder the second half is always named, null if it cannot be derived here.
        keep = {"second_half"} if self._holder else set()
        return {k: v for k, v in out.items() if not (v is None and k in self._sparse - keep)}


class OperatorActionOut(Sparse):
    """A maker-checker proposal, its decision and result; `enrollment` only in the proposer's and the approver's
    own answers (their half of the code)."""

    _sparse = frozenset({"enrollment"})
    id: int
    kind: str
    payload: dict[str, Any]
    summary: str
    status: Literal["pending", "approved", "executed", "rejected", "failed"] = Field(
        description="approved: decided, its execution not recorded yet (approving again completes it)")
    proposed_by: str
    client_id: str
    created_at: Time
    expires_at: Time
    decided_by: str | None
    decided_at: Time | None
    decision_note: str | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    approve: str | None = Field(description="where a second operator approves it, while it is pending (or "
                                            "completes an approved one)")
    enrollment: FirstHalfOut | SecondHalfOut | None = None

    @classmethod
    def of(cls, a: OperatorAction, enrollment: FirstHalf | SecondHalf | None = None) -> OperatorActionOut:
        half: FirstHalfOut | SecondHalfOut | None = (
            None if enrollment is None else
            FirstHalfOut.of(enrollment) if isinstance(enrollment, FirstHalf) else SecondHalfOut.of(enrollment))
        return cls(id=a.id, kind=a.kind, payload=a.payload, summary=a.summary, status=a.status,
                   proposed_by=a.proposed_by, client_id=a.client_id, created_at=iso(a.created_at),
                   expires_at=iso(a.expires_at), decided_by=a.decided_by, decided_at=_time(a.decided_at),
                   decision_note=a.decision_note, result=a.result, error=a.error,
                   approve=f"/v1/operator-actions/{a.id}/approve" if a.status in ("pending", "approved") else None,
                   enrollment=half)

    @classmethod
    def answer(cls, a: ActionAnswer) -> OperatorActionOut:
        return cls.of(a.action, a.enrollment)


class AuditEventOut(BaseModel):
    seq: int
    ts: Time
    actor: str | None
    participant_kind: str | None
    api_key_id: int | None
    operation: str
    method: str
    path: str
    client_ip: str | None
    forwarded_for: str | None
    status: int
    outcome: Literal["ok", "refused", "failed"]
    detail: Any = Field(description="what was recorded of the request (JSON; the stored text if it is not JSON)")
    prev_hash: str = Field(description="hex SHA-256 of the row before")
    hash: str = Field(description="hex SHA-256 of this row, chained")

    @classmethod
    def of(cls, r: AuditRecord) -> AuditEventOut:
        return cls(seq=r.seq, ts=iso(r.ts), actor=r.actor, participant_kind=r.participant_kind,
                   api_key_id=r.api_key_id, operation=r.operation, method=r.method, path=r.path,
                   client_ip=r.client_ip, forwarded_for=r.forwarded_for, status=r.status,
                   outcome=r.outcome, detail=r.decoded_detail(),
                   prev_hash=r.prev_hash.hex(), hash=r.hash.hex())


class AnonymousRefusalsOut(BaseModel):
    client_ip: str
    minute: str = Field(description="the minute's start, ISO 8601, UTC, Z")
    cursor: int = Field(description="pass as after_minute for the next page (the minute in Unix seconds)")
    refusals: int
    first_seq: int | None = Field(description="the audit row of the minute's first refusal")
    last_operation: str
    last_at: Time

    @classmethod
    def of(cls, r: AnonymousRefusals) -> AnonymousRefusalsOut:
        return cls(client_ip=r.client_ip, minute=iso(datetime.fromtimestamp(r.minute, UTC)), cursor=r.minute,
                   refusals=r.refusals, first_seq=r.first_seq,
                   last_operation=r.last_operation, last_at=iso(r.last_at))


class ChainCheckOut(Sparse):
    """The audit chain recomputed: ok with its head, or the first bad row and why."""

    _sparse = frozenset({"head_seq", "head_hash", "first_bad_seq", "problem"})
    ok: bool
    rows_checked: int
    head_seq: int | None = None
    head_hash: str | None = None
    first_bad_seq: int | None = None
    problem: str | None = None

    @classmethod
    def of(cls, c: ChainCheck) -> ChainCheckOut:
        return cls(ok=c.ok, rows_checked=c.rows_checked, head_seq=c.head_seq, head_hash=c.head_hash,
                   first_bad_seq=c.first_bad_seq, problem=c.problem)
