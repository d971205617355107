"""The registry's typed rows: built from a row right where it is fetched (exchange/registry/repository.py), so
nothing above the repository sees a row mapping."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import RowMapping

from exchange.core.units import iso, to_text


@dataclass(frozen=True, slots=True)
class Participant:
    """A participant's record. Its identity document (persons only) is private: operators, auditors and the
    person itself see it (`view(private=True)`); what other services build answers from never carries it."""

    id: int
    name: str
    kind: str
    subject: str
    uscc: str | None
    id_document_type: str | None
    id_document_country: str | None
    id_document_number: str | None
    holding_account: int | None
    cash_account: int | None
    status: str
    suspended_at: datetime | None
    suspended_by: str | None
    suspension_reason: str | None
    created_at: datetime
    # The admission's request fingerprint (replays); only where the admission itself is read back.
    fingerprint: bytes | None = None

    @classmethod
    def from_row(cls, r: RowMapping) -> Participant:
        fp = r.get("fingerprint")
        return cls(r["id"], r["name"], r["kind"], r["subject"], r["uscc"], r["id_document_type"],
                   r["id_document_country"], r["id_document_number"], r["holding_account"], r["cash_account"],
                   r["status"], r["suspended_at"], r["suspended_by"], r["suspension_reason"], r["created_at"],
                   None if fp is None else bytes(fp))

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def registered_identifier(self) -> str | None:
        """What names it in a contract or judgment: an organisation's USCC, a person's document number."""
        return self.uscc if self.subject == "organisation" else self.id_document_number

    @property
    def id_document(self) -> dict[str, str | None] | None:
        if self.subject != "person":
            return None
        return {"type": self.id_document_type, "country": self.id_document_country,
                "number": self.id_document_number}

    def view(self, *, private: bool) -> dict[str, Any]:
        """The record as JSON (an operator action's stored result; the direct admission's answer)."""
        m: dict[str, Any] = {
            "id": self.id, "name": self.name, "kind": self.kind, "subject": self.subject, "uscc": self.uscc,
            "holding_account": self.holding_account, "cash_account": self.cash_account, "status": self.status,
            "suspended_at": self.suspended_at, "suspended_by": self.suspended_by,
            "suspension_reason": self.suspension_reason, "created_at": self.created_at}
        if private and self.subject == "person":
            m["id_document"] = self.id_document
        return m


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A suspension or reinstatement, as recorded."""

    id: int
    participant_id: int
    change: str
    reason: str
    actor: str
    approved_by: str | None
    operator_action_id: int | None
    created_at: datetime
    fingerprint: bytes | None = None

    @classmethod
    def from_row(cls, r: RowMapping) -> StatusChange:
        fp = r.get("fingerprint")
        return cls(r["id"], r["participant_id"], r["change"], r["reason"], r["actor"], r["approved_by"],
                   r["operator_action_id"], r["created_at"], None if fp is None else bytes(fp))

    @property
    def status(self) -> str:
        return "suspended" if self.change == "suspend" else "active"

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "participant_id": self.participant_id, "change": self.change, "reason": self.reason,
                "actor": self.actor, "approved_by": self.approved_by, "operator_action_id": self.operator_action_id,
                "created_at": self.created_at, "status": self.status}


@dataclass(frozen=True, slots=True)
class Instrument:
    code: str
    name: str
    kind: str
    decimals: int
    unit: str
    attributes: dict[str, Any] | None
    created_at: datetime
    # Who defined it under which client id, and the request's fingerprint (replays of the definition).
    created_by: str | None = None
    client_id: str | None = None
    fingerprint: bytes | None = None

    @classmethod
    def from_row(cls, r: RowMapping) -> Instrument:
        fp = r.get("fingerprint")
        return cls(r["code"], r["name"], r["kind"], r["decimals"], r["unit"], r["attributes"],
                   r["created_at"], r.get("created_by"), r.get("client_id"), None if fp is None else bytes(fp))

    def view(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "kind": self.kind, "decimals": self.decimals,
                "unit": self.unit, "attributes": self.attributes, "created_at": self.created_at}


@dataclass(frozen=True, slots=True)
class IssuerGrant:
    """An issuer's authority over an instrument: it may request issuance of it (four eyes granted it)."""

    instrument: str
    participant_id: int
    participant_name: str
    granted_by: str
    granted_at: datetime

    @classmethod
    def from_row(cls, r: RowMapping) -> IssuerGrant:
        return cls(r["instrument"], r["participant_id"], r["participant_name"], r["granted_by"], r["granted_at"])

    def view(self) -> dict[str, Any]:
        return {"instrument": self.instrument, "participant_id": self.participant_id,
                "participant_name": self.participant_name, "granted_by": self.granted_by,
                "granted_at": self.granted_at}


@dataclass(frozen=True, slots=True)
class DueBatch:
    """An emission-right batch whose term has ended (exchange/registry/expiry.py)."""

    batch_id: int
    instrument: str
    valid_until: str
    decimals: int

    @classmethod
    def from_row(cls, r: RowMapping) -> DueBatch:
        return cls(r["batch_id"], r["instrument"], r["valid_until"], r["decimals"])


@dataclass(frozen=True, slots=True)
class LeftBlock:
    """An unretired block of a batch whose term has ended, with what stands on it."""

    account: int
    start_serial: int
    end_serial: int
    hold: int | None
    frozen_by: int | None
    hold_kind: str | None
    escrowed: bool  # it rests in a bank's pledge escrow (an enforcement under way)

    @classmethod
    def from_row(cls, r: RowMapping) -> LeftBlock:
        return cls(r["account"], r["start_serial"], r["end_serial"], r["hold"], r["frozen_by"], r["hold_kind"],
                   bool(r["escrowed"]))


@dataclass(frozen=True, slots=True)
class EndedBlock:
    """A block of an account whose term has ended and that the sweep has not retired yet."""

    batch: int
    start_serial: int
    end_serial: int
    valid_until: str
    decimals: int

    @classmethod
    def from_row(cls, r: RowMapping) -> EndedBlock:
        return cls(r["batch"], r["start_serial"], r["end_serial"], r["valid_until"], r["decimals"])


@dataclass(frozen=True, slots=True)
class Flag:
    """Another request, not rejected, that claims a subject of this one over an overlapping period
    (`possible_double_issuance`). Stored as JSON on the request (`flags`), and in an override's record."""

    request: int
    instrument: str
    kind: str
    status: str
    subjects: tuple[str, ...]  # described (exchange.registry.kinds.describe_subject)
    period: tuple[str, str]  # ISO dates, both ends included
    message: str
    code: str = "possible_double_issuance"

    @classmethod
    def from_json(cls, f: dict[str, Any]) -> Flag:
        return cls(f["request"], f["instrument"], f["kind"], f["status"], tuple(f["subjects"]),
                   (f["period"]["start"], f["period"]["end"]), f["message"], f["code"])

    def json(self) -> dict[str, Any]:
        return {"code": self.code, "request": self.request, "instrument": self.instrument, "kind": self.kind,
                "status": self.status, "subjects": list(self.subjects),
                "period": {"start": self.period[0], "end": self.period[1]}, "message": self.message}


@dataclass(frozen=True, slots=True)
class ClaimOverlap:
    """A row of the double-issuance search: a request over an overlapping period, with the claimed subjects."""

    id: int
    instrument: str
    kind: str
    status: str
    start: date
    end: date
    subjects: tuple[str, ...]

    @classmethod
    def from_row(cls, r: RowMapping) -> ClaimOverlap:
        return cls(r["id"], r["instrument"], r["kind"], r["status"], r["start"], r["end"], tuple(r["subjects"]))


@dataclass(frozen=True, slots=True)
class Override:
    """Approving a flagged request anyway: the flags, the reason and who overrode them."""

    flags: tuple[Flag, ...]
    reason: str
    by: str

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> Override:
        return cls(tuple(Flag.from_json(f) for f in o["flags"]), o["reason"], o["by"])

    def json(self) -> dict[str, Any]:
        return {"flags": [f.json() for f in self.flags], "reason": self.reason, "by": self.by}


@dataclass(frozen=True, slots=True)
class ImportedRange:
    """An import request's origin serials (both ends included)."""

    request: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class IssuanceRequest:
    """An issuance request with its instrument's kind and decimals; `serials`: the issued batch's serial range
    (the ledger's, read through ledger.queries), once approved."""

    id: int
    instrument: str
    kind: str
    decimals: int
    issuer_id: int
    holder_id: int
    quantity: int  # base units
    attributes: dict[str, Any]
    period: tuple[date, date] | None
    origin_registry: str | None
    origin_serials: tuple[int, int] | None
    origin_reference: str | None
    flags: tuple[Flag, ...]
    override: Override | None
    status: str
    requested_by: str
    decided_by: str | None
    decision_note: str | None
    batch_id: int | None
    issue_entry_seq: int | None
    created_at: datetime
    decided_at: datetime | None
    fingerprint: bytes | None = None  # only where a request is read back for a replay
    serials: tuple[int, int] | None = None

    @classmethod
    def from_row(cls, r: RowMapping) -> IssuanceRequest:
        fp = r.get("fingerprint")
        period = None if r["period_start"] is None else (r["period_start"], r["period_end"])
        origin = None if r["origin_start"] is None else (int(r["origin_start"]), int(r["origin_end"]))
        return cls(r["id"], r["instrument"], r["kind"], r["decimals"], r["issuer_id"], r["holder_id"], r["quantity"],
                   r["attributes"] or {}, period, r["origin_registry"], origin, r["origin_reference"],
                   tuple(Flag.from_json(f) for f in r["flags"] or []),
                   None if r["override"] is None else Override.from_json(r["override"]), r["status"],
                   r["requested_by"], r["decided_by"], r["decision_note"], r["batch_id"], r["issue_entry_seq"],
                   r["created_at"], r["decided_at"], None if fp is None else bytes(fp))

    def visible_to(self, participant_id: int | None, *, sees_all: bool) -> bool:
        return sees_all or participant_id in (self.issuer_id, self.holder_id)


# --- answers of the registry's movements and holdings (built from ledger entries and blocks) -----------------


@dataclass(frozen=True, slots=True)
class Movement:
    """A ledger entry that moved units or cash: its amount in base units of an instrument with `decimals`."""

    entry_seq: int
    entry_hash: str
    type: str
    client_id: str | None
    instrument: str
    amount: int
    decimals: int
    serials: tuple[tuple[int, int], ...]
    ts: int  # microseconds since the epoch, UTC

    def view(self) -> dict[str, Any]:
        """As JSON (an operator action's stored result), in the answers' order."""
        return {"entry_seq": self.entry_seq, "entry_hash": self.entry_hash, "type": self.type,
                "client_id": self.client_id, "instrument": self.instrument,
                "quantity": to_text(self.amount, self.decimals),
                "serials": [{"start": s, "end": e} for s, e in self.serials], "ts": iso(self.ts),
                "entry_url": f"/v1/ledger/entries/{self.entry_seq}",
                "receipt_url": f"/v1/ledger/entries/{self.entry_seq}/receipt"}


@dataclass(frozen=True, slots=True)
class Transferred:
    movement: Movement
    from_participant: int | None
    to_participant: int


@dataclass(frozen=True, slots=True)
class Retired:
    movement: Movement
    participant: int | None
    purpose: str
    beneficiary: str
    note: str | None


@dataclass(frozen=True, slots=True)
class CashMovement:
    """A deposit or withdrawal recorded by an operator (in CNY)."""

    movement: Movement
    direction: str
    participant_id: int
    bank_reference: str

    def view(self) -> dict[str, Any]:
        """As JSON (an operator action's stored result; the direct answer has the same fields)."""
        m = self.movement.view()
        amount = m.pop("quantity")
        return {**m, "direction": self.direction, "participant_id": self.participant_id,
                "bank_reference": self.bank_reference, "amount": amount}


@dataclass(frozen=True, slots=True)
class Balance:
    account: int
    instrument: str
    posted: int
    pending: int  # held (pending out)
    decimals: int


@dataclass(frozen=True, slots=True)
class RetiredAs:
    """How a retired block was retired."""

    purpose: str | None
    beneficiary: str | None
    retired_seq: int


@dataclass(frozen=True, slots=True)
class HeldBlock:
    """A serial block as a holder's holdings list it, with its state; `valid_from`/`valid_to`: an emission
    right's term (its batch's), None for other kinds."""

    instrument: str
    batch: int
    serial_start: int
    serial_end: int
    decimals: int
    state: str
    hold: int | None
    frozen_by: int | None
    valid_from: str | None
    valid_to: str | None
    retired: RetiredAs | None


@dataclass(frozen=True, slots=True)
class Holdings:
    participant_id: int
    balances: tuple[Balance, ...]
    blocks: tuple[HeldBlock, ...]
    expired: tuple[HeldBlock, ...]  # retired at the end of their term (exchange/registry/expiry.py)
