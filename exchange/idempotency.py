"""Idempotency for exchange-level mutations: every mutated row carries (actor, client_id, fingerprint)
under a unique index; a retry with the same request gets the original, a different one is refused."""

from __future__ import annotations

import hashlib
from typing import Any

from exchange.errors import DomainError, Invalid
from ledger.encoding import canonical_json

MAX_CLIENT_ID = 128


def fingerprint(payload: dict[str, Any]) -> bytes:
    return hashlib.sha256(canonical_json(payload)).digest()


def require_client_id(header: str | None, body_value: str | None) -> str:
    """The idempotency key, from the `Idempotency-Key` header or the body's `client_id`."""
    if header and body_value and header != body_value:
        raise Invalid("idempotency_key_mismatch", "Idempotency-Key header and client_id differ")
    key = header or body_value
    if not key:
        raise Invalid("idempotency_key_required", "send an Idempotency-Key header or a client_id")
    if len(key) > MAX_CLIENT_ID or not key.isprintable():
        raise Invalid("invalid_idempotency_key", f"idempotency keys are 1-{MAX_CLIENT_ID} printable characters")
    return key


def check_replay(stored: bytes | None, fp: bytes) -> None:
    if stored is not None and bytes(stored) != fp:
        raise DomainError("idempotency_conflict", "this client id was already used for a different request")
