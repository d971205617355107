"""How a request reached the registry (its signed instruction, a maker-checker approval), recorded with
the ledger entries it causes.

The API sets these per request in a context variable; `Runtime.submit_linked` adds them to the meta of
the first request it submits, so the ledger entry itself carries (and commits by hash) the evidence.
The ledger writer leaves these keys out of its idempotency fingerprint: a faithful retry re-signed with
a new nonce, or approved by another operator after a crash, is still the same request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ledger.commands import PROVENANCE_META

LEDGER_META: ContextVar[dict[str, Any] | None] = ContextVar("envx_ledger_meta", default=None)

__all__ = ["LEDGER_META", "PROVENANCE_META", "provenance"]


@contextmanager
def provenance(**items: Any) -> Iterator[None]:
    """Add `items` (keys from PROVENANCE_META) to the ledger meta of everything submitted inside the block."""
    unknown = set(items) - set(PROVENANCE_META)
    if unknown:
        raise ValueError(f"not provenance keys: {sorted(unknown)}")
    token = LEDGER_META.set({**(LEDGER_META.get() or {}), **items})
    try:
        yield
    finally:
        LEDGER_META.reset(token)
