"""Typed rows of the pledging tables, built from a row right where the repository fetches it.

A registration (`Pledge`) is the `pledges` row joined with its parties' names, its instrument and its
references. Its projected fields are the fold of its events (pledges.lifecycle.project); `state()` is
that projection as the pure rules read it, and `with_state` the row after one more event.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ledger.queries import Retirement

# The columns of `pledges` that are the projection of its events (lifecycle.project reproduces them).
PROJECTED = (
    "pledgee_id", "pledgor_id", "instrument", "quantity", "requested_serials", "serials", "loan_contract",
    "secured_amount", "term_start", "term_end", "grace_days", "expires_at", "haircut_bps", "warning_bps",
    "margin_call_bps", "liquidation_bps", "transfer_on_default", "status", "registration_no", "registered_at",
    "hold_id", "margin_level", "cure_deadline", "last_price", "last_value", "last_ratio_bps", "last_valued_on",
    "deadline_warned", "enforcement", "promoted_from_claim", "secured_scope", "declared_default",
)
DATES = frozenset({"term_start", "term_end", "last_valued_on", "deadline_warned"})
TIMES = frozenset({"expires_at", "registered_at", "cure_deadline"})
JSON = frozenset({"requested_serials", "serials", "enforcement", "secured_scope", "declared_default"})


@dataclass(frozen=True, slots=True)
class Pledge:
    """A pledge registration (`pledges`) with its parties' names, its instrument and its references."""

    id: int
    number: str
    version: int
    pledgee_id: int
    pledgor_id: int
    instrument: str
    quantity: int
    requested_serials: list[list[int]] | None
    serials: list[list[int]]
    loan_contract: str
    secured_amount: int
    term_start: date
    term_end: date
    grace_days: int
    expires_at: datetime
    haircut_bps: int | None
    warning_bps: int
    margin_call_bps: int
    liquidation_bps: int
    transfer_on_default: bool
    status: str
    registration_no: int | None
    registered_at: datetime | None
    hold_id: int | None
    margin_level: str
    cure_deadline: datetime | None
    last_price: int | None
    last_value: int | None
    last_ratio_bps: int | None
    last_valued_on: date | None
    deadline_warned: date | None
    enforcement: dict[str, Any] | None
    promoted_from_claim: int | None
    secured_scope: dict[str, Any] | None
    declared_default: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    pledgee_name: str
    pledgor_name: str
    pledgor_uscc: str | None
    decimals: int
    instrument_kind: str
    instrument_attributes: dict[str, Any] | None
    effective_haircut_bps: int
    refs: list[dict[str, str]]

    @classmethod
    def from_row(cls, r: Any) -> Pledge:
        return cls(**by_name(cls, r))

    @property
    def hold(self) -> int:
        """The lock's ledger hold: a confirmed registration always has one (the table's CHECK says so)."""
        assert self.hold_id is not None, f"pledge {self.id} ({self.status}) has no lock"
        return self.hold_id

    @property
    def running(self) -> dict[str, Any]:
        """The enforcement under way (an enforcing registration always records one)."""
        assert self.enforcement is not None, f"pledge {self.id} ({self.status}) records no enforcement"
        return self.enforcement

    def state(self) -> dict[str, Any]:
        """The projection as pledges.lifecycle folds it (dates and times as ISO strings)."""
        return {k: jsonable(getattr(self, k)) for k in PROJECTED}

    def with_state(self, state: dict[str, Any]) -> Pledge:
        """The row after one more event set `state` (the version counts the event)."""
        return dataclasses.replace(self, **{k: typed_value(k, state[k]) for k in PROJECTED}, version=self.version + 1)


def jsonable(value: Any) -> Any:
    """Event data and states hold ISO strings for dates and times (JSON has none)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def jsonable_deep(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable_deep(v) for v in value]
    return jsonable(value)


def by_name(cls: type[Any], r: Any) -> dict[str, Any]:
    """A row's columns by the names of the dataclass's fields (the query selects each of them)."""
    m = r._mapping
    return {f.name: m[f.name] for f in dataclasses.fields(cls)}


def typed_value(key: str, value: Any) -> Any:
    """A projected value as the row holds it (the inverse of `jsonable` for dates and times)."""
    if isinstance(value, str) and key in DATES:
        return date.fromisoformat(value)
    if isinstance(value, str) and key in TIMES:
        return datetime.fromisoformat(value)
    return value


@dataclass(frozen=True, slots=True)
class Claim:
    """A ranked (junior) claim on a pledged lot (`pledge_claims`), with its claimant's name: paid after the
    lock holder by the waterfall, promoted into the lock when the senior registration is released."""

    id: int
    pledge_id: int
    claimant_id: int
    claimant_name: str
    loan_contract: str
    amount: int
    term_end: date
    reference: str | None
    status: str
    registration_no: int | None
    registered_at: datetime | None
    paid: int
    created_at: datetime

    @classmethod
    def from_row(cls, r: Any) -> Claim:
        return cls(int(r.id), int(r.pledge_id), int(r.claimant_id), r.claimant_name, r.loan_contract, int(r.amount),
                   r.term_end, r.reference, r.status, r.registration_no, r.registered_at, int(r.paid), r.created_at)

    @property
    def rank_no(self) -> int:
        """Its registration number, by which registered claims rank on the lot (a filed one has none)."""
        assert self.registration_no is not None, f"claim {self.id} ({self.status}) is not registered"
        return self.registration_no


@dataclass(frozen=True, slots=True)
class PledgeEvent:
    """One event of a registration (`pledge_events`); `number`, `instrument` and `decimals` are its lot's
    when it is read with them (history, stream), None when it was just written or looked up by client id."""

    id: int
    pledge_id: int
    type: str
    data: dict[str, Any]
    ledger_seqs: list[int]
    actor: str
    created_at: datetime
    fingerprint: bytes | None = None
    number: str | None = None
    instrument: str | None = None
    decimals: int | None = None

    @classmethod
    def from_row(cls, r: Any) -> PledgeEvent:
        m = r._mapping
        fp = m.get("fingerprint")
        return cls(int(r.id), int(r.pledge_id), r.type, dict(r.data), list(r.ledger_seqs), r.actor, r.created_at,
                   None if fp is None else bytes(fp), m.get("number"), m.get("instrument"), m.get("decimals"))


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A bank's webhook endpoint (`pledge_webhooks`); the secret is an HMAC key, kept readable."""

    participant_id: int
    url: str
    secret: bytes
    updated_by: str
    client_id: str | None
    fingerprint: bytes | None
    updated_at: datetime

    @classmethod
    def from_row(cls, r: Any) -> WebhookEndpoint:
        return cls(int(r.participant_id), r.url, bytes(r.secret), r.updated_by, r.client_id,
                   None if r.fingerprint is None else bytes(r.fingerprint), r.updated_at)


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """An outbox row leased for one delivery attempt, with its endpoint."""

    id: int
    event_id: int
    event_type: str
    body: bytes
    attempts: int
    url: str
    secret: bytes

    @classmethod
    def from_row(cls, r: Any) -> DueDelivery:
        return cls(int(r.id), int(r.event_id), r.event_type, bytes(r.body), int(r.attempts), r.url, bytes(r.secret))


@dataclass(frozen=True, slots=True)
class Mark:
    """An instrument's close price for a day (`pledge_marks`), in fen per whole unit."""

    price: int
    fingerprint: bytes | None
    recorded_by: str = ""  # the exchange's close (SYSTEM_ACTOR) or the operator whose mark was approved

    @classmethod
    def from_row(cls, r: Any) -> Mark:
        return cls(int(r.price), None if r.fingerprint is None else bytes(r.fingerprint), r.recorded_by)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row as its bank sees it; `last_error` is the fixed public reason (webhooks.public_reason)."""

    id: int
    event_id: int
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None

    @classmethod
    def from_row(cls, r: Any) -> Delivery:
        return cls(int(r.id), int(r.event_id), r.event_type, r.status, int(r.attempts), r.next_attempt_at,
                   r.delivered_at, r.last_error)


@dataclass(frozen=True, slots=True)
class WebhookStatus:
    endpoint: WebhookEndpoint
    deliveries: list[Delivery]


@dataclass(frozen=True, slots=True)
class PublicRetirement:
    """A retired block as the public register shows it: who retired it -- for a judicial retirement the payer
    (as the judgment names it), with the court and the case."""

    block: Retirement
    decimals: int
    holder_name: str | None
    holder_uscc: str | None
    court_name: str | None
    case_number: str | None


@dataclass(frozen=True, slots=True)
class Freeze:
    """A judicial freeze as stored, with the names of its court and holder and its instrument's decimals."""

    id: int
    court_id: int
    court_name: str
    holder_id: int
    holder_name: str
    holder_uscc: str | None
    instrument: str
    decimals: int
    quantity: int
    requested_serials: list[tuple[int, int]] | None
    serials: list[tuple[int, int]]
    case_number: str
    notice_number: str
    term_start: date
    term_end: date
    expires_at: datetime
    deduct_to_id: int | None
    status: str
    hold_id: int | None
    predecessor_id: int | None
    root_id: int | None
    freeze_no: int
    deducted_quantity: int | None
    proceeds_received: int
    created_at: datetime
    resolved_at: datetime | None

    @classmethod
    def from_row(cls, r: Any) -> Freeze:
        return cls(r.id, r.court_id, r.court_name, r.holder_id, r.holder_name, r.holder_uscc, r.instrument,
                   r.decimals, r.quantity, None if r.requested_serials is None else _spans(r.requested_serials),
                   _spans(r.serials), r.case_number, r.notice_number, r.term_start, r.term_end, r.expires_at,
                   r.deduct_to_id, r.status, r.hold_id, r.predecessor_id, r.root_id, r.freeze_no,
                   r.deducted_quantity, r.proceeds_received, r.created_at, r.resolved_at)


def _spans(v: Any) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in (v or [])]


@dataclass(frozen=True, slots=True)
class TakenReference:
    """An external reference (中登网 登记证明编号, a bank's own number) already registered, and by which
    pledge: a reference names one registration of its source registry only."""

    source: str
    reference: str
    pledge_id: int


@dataclass(frozen=True, slots=True)
class SaleTrade:
    """A settled trade of a sale order, from the seller's side: price per unit, quantity, notional, fee in fen."""

    market_id: str
    trade_id: int
    price: int
    qty: int
    notional: int
    seller_fee: int
    sell_order: int

    @classmethod
    def from_row(cls, r: Any) -> SaleTrade:
        return cls(r.market_id, int(r.trade_id), int(r.price), int(r.qty), int(r.notional), int(r.seller_fee),
                   int(r.sell_order))


@dataclass(frozen=True, slots=True)
class BatchTerms:
    """What decides how long a batch's units stay usable: its instrument's kind and attributes, its own."""

    batch: int
    kind: str
    instrument_attributes: dict[str, Any]
    batch_attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PublicPledge:
    """A line of the public pledge register: a lot's lock (rank 1) or a registered junior claim on it."""

    kind: str  # "pledge" or "junior_claim"
    lot_number: str
    rank_on_lot: int
    claim_id: int | None
    registration_no: int
    registered_at: datetime
    status: str
    pledgee_name: str
    term_start: date | None
    term_end: date
    refs: list[dict[str, str]]
    instrument: str
    decimals: int
    quantity: int
    serials: list[list[int]]
    pledgor_name: str
    pledgor_uscc: str | None

    @classmethod
    def from_row(cls, r: Any) -> PublicPledge:
        return cls(**by_name(cls, r))


@dataclass(frozen=True, slots=True)
class PublicFreeze:
    """A line of the public register of judicial freezes (no notice number, no participant id)."""

    freeze_no: int
    case_number: str
    instrument: str
    decimals: int
    quantity: int
    serials: list[list[int]]
    term_start: date
    term_end: date
    created_at: datetime
    court_name: str
    holder_name: str
    holder_uscc: str | None

    @classmethod
    def from_row(cls, r: Any) -> PublicFreeze:
        return cls(**by_name(cls, r))
