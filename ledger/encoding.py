"""Canonical entry bytes: the exact bytes that are hashed, chained and used as Merkle leaves.

Encoding, version 1 (documented in README "Ledger entry encoding"):

    leaf = b"envx-entry/1\\n" || JCS(entry)

where JCS is RFC 8785 canonical JSON restricted to what entries contain: objects with ASCII keys,
strings, booleans, null, arrays and integers in [-(2**53-1), 2**53-1]. No floats exist anywhere in
an entry. `entry` is::

    {"v": 1, "seq": n, "prev": hex(hash of entry n-1, or 64 zeros), "ts": UTC microseconds,
     "type": "...", "actor": "...", "client_id": "..." | null, "body": {...}, "meta": hex(SHA-256(meta))}

`meta` is the canonical JSON of the entry's metadata (serial ranges moved, beneficiary, court case,
pledge contract ...), stored beside the entry and committed through its hash. The entry hash used by
the chain is SHA-256(leaf).
"""

from __future__ import annotations

import hashlib
import json
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

DOMAIN_TAG = b"envx-entry/1\n"
VERSION = 1
ZERO_HASH = bytes(32)
MAX_SAFE_INT = 2**53 - 1


class EncodingError(ValueError):
    """A value that has no canonical encoding (float, huge int, non-string key)."""


def _check(value: Any) -> None:
    # Walk once to refuse anything RFC 8785 would encode ambiguously for us.
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise EncodingError(f"integer {value} outside the I-JSON safe range")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise EncodingError(f"object key {key!r} must be an ASCII string")
            _check(item)
        return
    raise EncodingError(f"type {type(value).__name__} has no canonical encoding")


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes for the integer/string subset (ASCII keys sort identically by code unit)."""
    _check(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _scalar(value: Any) -> str:
    """Canonical JSON of a scalar, as json.dumps(ensure_ascii=False) writes it."""
    t = type(value)
    if t is str:
        return encode_basestring(value)  # type: ignore[no-any-return]
    if t is int:
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise EncodingError(f"integer {value} outside the I-JSON safe range")
        return str(value)
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    raise EncodingError(f"entry body values must be scalars, not {t.__name__}")


def encode_entry(
    *,
    seq: int,
    prev: bytes,
    ts: int,
    type_: str,
    actor: str,
    client_id: str | None,
    body: dict[str, Any],
    meta: bytes,
) -> bytes:
    """The leaf bytes. Built directly (hot path of the writer); the result is exactly
    `DOMAIN_TAG + canonical_json(entry)`, which `decode_entry` re-checks on every read."""
    if len(prev) != 32:
        raise EncodingError("prev hash must be 32 bytes")
    body_json = ",".join(f'"{k}":{_scalar(body[k])}' for k in sorted(body))
    text = (
        f'{{"actor":{_scalar(actor)},"body":{{{body_json}}},"client_id":{_scalar(client_id)},'
        f'"meta":"{sha256(meta).hex()}","prev":"{prev.hex()}","seq":{_scalar(seq)},"ts":{_scalar(ts)},'
        f'"type":{_scalar(type_)},"v":{VERSION}}}'
    )
    return DOMAIN_TAG + text.encode("utf-8")


def decode_entry(leaf: bytes) -> dict[str, Any]:
    """Parse leaf bytes and insist they are exactly canonical (so no two encodings share a meaning)."""
    if not leaf.startswith(DOMAIN_TAG):
        raise EncodingError("missing domain tag")
    try:
        entry = json.loads(leaf[len(DOMAIN_TAG) :].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EncodingError(f"entry is not valid JSON: {exc}") from exc
    if not isinstance(entry, dict) or entry.get("v") != VERSION:
        raise EncodingError("unsupported entry version")
    if DOMAIN_TAG + canonical_json(entry) != leaf:
        raise EncodingError("entry bytes are not canonical")
    return entry


def entry_hash(leaf: bytes) -> bytes:
    return sha256(leaf)
