"""Typed rows of the pledging tables, built from a row right where the repository fetches it.

The registration itself (`pledges` joined with its parties, instrument and references) still travels as
the mapping the pure rules of `pledges/` fold and read (lifecycle.apply, visibility.role); the rows below
are the ones nothing above the repository needs as a mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


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
