"""The security package's rows, typed: built from a row right where it is fetched (exchange/security/repository.py,
the audit chain's included)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exchange.core.principal import Principal


@dataclass(frozen=True, slots=True)
class KeyRow:
    """An API key's public facts (never its secret)."""

    id: int
    participant_id: int
    prefix: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    parent_key_id: int | None
    created_by: str

    @classmethod
    def from_row(cls, r: Any) -> KeyRow:
        return cls(r.id, r.participant_id, r.prefix, r.label, r.created_at, r.expires_at, r.revoked_at,
                   r.parent_key_id, r.created_by)

    def live(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """What authenticating a token needs: the key's digest and state, and the participant it acts as."""

    key_id: int
    secret_hash: bytes
    expires_at: datetime | None
    revoked_at: datetime | None
    participant_status: str
    principal: Principal

    @classmethod
    def from_row(cls, r: Any) -> KeyHolder:
        return cls(r.id, bytes(r.secret_hash), r.expires_at, r.revoked_at, r.status,
                   Principal(r.pid, r.kind, r.name, r.id, r.holding_account, r.cash_account))


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A participant's Ed25519 public key for signed instructions."""

    id: int
    participant_id: int
    public_key: bytes
    label: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None

    @classmethod
    def from_row(cls, r: Any) -> SigningKey:
        return cls(r.id, r.participant_id, bytes(r.public_key), r.label, r.created_at, r.created_by, r.revoked_at,
                   r.revoked_by)

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key).decode()


@dataclass(frozen=True, slots=True)
class SignaturePolicy:
    participant_id: int
    require_signatures: bool


@dataclass(frozen=True, slots=True)
class EnrollmentCode:
    """An enrollment code's row: the digests of its halves, never the halves."""

    id: int
    handle: str
    participant_id: int | None
    operator_action_id: int | None
    four_eyes: bool
    created_by: str
    client_id: str
    first_hash: bytes
    second_hash: bytes | None
    second_by: str | None
    created_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None
    used_at: datetime | None
    used_client_id: str | None
    used_fingerprint: bytes | None
    key_id: int | None
    cancelled_at: datetime | None
    cancel_reason: str | None

    @classmethod
    def from_row(cls, r: Any) -> EnrollmentCode:
        return cls(r.id, r.handle, r.participant_id, r.operator_action_id, r.four_eyes, r.created_by, r.client_id,
                   bytes(r.first_hash), None if r.second_hash is None else bytes(r.second_hash), r.second_by,
                   r.created_at, r.completed_at, r.expires_at, r.used_at, r.used_client_id,
                   None if r.used_fingerprint is None else bytes(r.used_fingerprint), r.key_id, r.cancelled_at,
                   r.cancel_reason)

    def status(self, now: datetime) -> str:
        if self.used_at is not None:
            return "used"
        if self.cancelled_at is not None:
            return "cancelled"
        if self.completed_at is None or self.expires_at is None:
            return "awaiting_approval"
        return "expired" if self.expires_at <= now else "usable"


@dataclass(frozen=True, slots=True)
class OperatorAction:
    """A maker-checker proposal, its decision and result (`fingerprint`: the request digest behind its client id)."""

    id: int
    kind: str
    payload: dict[str, Any]
    summary: str
    status: str
    proposed_by: str
    client_id: str
    created_at: datetime
    expires_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    fingerprint: bytes

    @classmethod
    def from_row(cls, r: Any) -> OperatorAction:
        return cls(r.id, r.kind, r.payload, r.summary, r.status, r.proposed_by, r.client_id, r.created_at,
                   r.expires_at, r.decided_by, r.decided_at, r.decision_note, r.result, r.error,
                   bytes(r.fingerprint))


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One row of the audit chain; `detail` is the exact text that was hashed."""

    seq: int
    ts: int
    actor: str | None
    participant_kind: str | None
    api_key_id: int | None
    operation: str
    method: str
    path: str
    client_ip: str | None
    forwarded_for: str | None
    status: int
    outcome: str
    detail: str
    prev_hash: bytes
    hash: bytes

    @classmethod
    def from_row(cls, r: Any) -> AuditRecord:
        return cls(r.seq, r.ts, r.actor, r.participant_kind, r.api_key_id, r.operation, r.method, r.path,
                   r.client_ip, r.forwarded_for, r.status, r.outcome, r.detail, bytes(r.prev_hash), bytes(r.hash))

    def fields(self) -> list[Any]:
        """What the row's hash covers, in order."""
        return [self.seq, self.ts, self.actor, self.participant_kind, self.api_key_id, self.operation, self.method,
                self.path, self.client_ip, self.forwarded_for, self.status, self.outcome, self.detail]

    def decoded_detail(self) -> Any:
        try:
            return json.loads(self.detail)
        except ValueError:  # only after tampering; verify() says where
            return self.detail


@dataclass(frozen=True, slots=True)
class AnonymousRefusals:
    """Refused requests without a valid key from one address in one minute (Unix seconds)."""

    client_ip: str
    minute: int
    refusals: int
    first_seq: int | None
    last_operation: str
    last_at: datetime

    @classmethod
    def from_row(cls, r: Any) -> AnonymousRefusals:
        return cls(r.client_ip, int(r.minute), r.refusals, r.first_seq, r.last_operation, r.last_at)


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What recomputing the audit chain found: ok with its head, or the first bad row and why."""

    ok: bool
    rows_checked: int
    head_seq: int | None = None
    head_hash: str | None = None
    first_bad_seq: int | None = None
    problem: str | None = None
