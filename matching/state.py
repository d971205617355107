"""Canonical serialisation and hashing of engine snapshots."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_bytes(snapshot: dict[str, Any]) -> bytes:
    """One byte string per state: sorted keys, no whitespace, ASCII only.

    Lists keep their order, which is where queue order lives, so two books with the same orders in a
    different time priority hash differently.
    """
    return json.dumps(snapshot, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def canonical_hash(snapshot: dict[str, Any]) -> bytes:
    """SHA-256 of the canonical serialisation."""
    return hashlib.sha256(canonical_bytes(snapshot)).digest()
