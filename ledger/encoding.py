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

Version 2 (one business event of several legs, `ledger.commands.Event`) has its own tag, so no v2 leaf can
be read as a v1 leaf or the other way round:

    leaf = b"envx-entry/2\n" || JCS(entry)

with the same fields, `"v": 2`, `"type": "event"` and ``"body": {"kind": "...", "legs": [{"type": <a v1
entry type>, "body": {<that type's v1 body>}}, ...]}``; its metadata's `legs` holds each leg's derived
metadata (serial ranges moved) in leg order.
"""

from __future__ import annotations

import hashlib
import json
import re
from json.encoder import encode_basestring
from typing import Any

import msgspec

DOMAIN_TAG = b"envx-entry/1\n"
VERSION = 1
DOMAIN_TAG_V2 = b"envx-entry/2\n"
VERSION_2 = 2
# Version 3: a version-2 event whose legs name accounts and holds by commitment (ledger/blinding.py).
DOMAIN_TAG_V3 = b"envx-entry/3\n"
VERSION_3 = 3
# Version 4: a version-3 event whose legs' amounts are commitments too (ledger/blinding.py `FIELDS`).
DOMAIN_TAG_V4 = b"envx-entry/4\n"
VERSION_4 = 4
# Every entry version this code reads, by domain tag.
VERSIONS = {DOMAIN_TAG: VERSION, DOMAIN_TAG_V2: VERSION_2, DOMAIN_TAG_V3: VERSION_3, DOMAIN_TAG_V4: VERSION_4}
EVENT_VERSIONS = (VERSION_2, VERSION_3, VERSION_4)
# The blinded versions, by domain tag: their legs carry commitments the stored openings open.
BLINDED_VERSIONS = {DOMAIN_TAG_V3: VERSION_3, DOMAIN_TAG_V4: VERSION_4}
ZERO_HASH = bytes(32)
MAX_SAFE_INT = 2**53 - 1

# The fast encoder. msgspec writes JSON strings exactly as RFC 8785 (and `json.dumps(ensure_ascii=False)`)
# do -- `"` and `\` escaped, \b \f \n \r \t, the other controls as lowercase \u00XX, everything else as
# UTF-8 -- and, with `order="sorted"`, object keys in code-point order, which for the ASCII keys allowed
# here is RFC 8785's UTF-16 order. tests/ledger/test_canonical_json.py holds it to RFC 8785's vectors and
# to the stdlib path below on random values. Anything it is not shown to handle goes the stdlib way.
_fast = msgspec.json.Encoder(order="sorted").encode
_decode = msgspec.json.decode
# Body keys the direct entry encoder writes without escaping: printable ASCII except `"` and `\`.
_PLAIN_KEYS = re.compile(r"[ !#-\[\]-~]*")


class EncodingError(ValueError):
    """A value that has no canonical encoding (float, huge int, non-string key)."""


def _check(value: Any) -> bool:
    """Refuse anything RFC 8785 would encode ambiguously for us; True if every value has an exact
    built-in type (so the fast encoder applies), False if some are subclasses (str/int enums ...).
    Scalars inside containers are checked inline (metadata is mostly flat)."""
    t = type(value)
    if t is str or value is None or t is bool:
        return True
    if t is int:
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise EncodingError(f"integer {value} outside the I-JSON safe range")
        return True
    if t is dict:
        exact = True
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise EncodingError(f"object key {key!r} must be an ASCII string")
                exact = False
            if not key.isascii():
                raise EncodingError(f"object key {key!r} must be an ASCII string")
            ti = type(item)
            if ti is int:
                if not -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
                    raise EncodingError(f"integer {item} outside the I-JSON safe range")
            elif ti is not str and item is not None and ti is not bool and not _check(item):
                exact = False
        return exact
    if t is list or t is tuple:
        exact = True
        for item in value:
            ti = type(item)
            if ti is int:
                if not -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
                    raise EncodingError(f"integer {item} outside the I-JSON safe range")
            elif ti is list or ti is tuple:
                # Arrays of arrays (serial ranges [[start, end], ...]): their integers checked inline.
                for x in item:
                    if type(x) is int:
                        if not -MAX_SAFE_INT <= x <= MAX_SAFE_INT:
                            raise EncodingError(f"integer {x} outside the I-JSON safe range")
                    elif not _check(x):
                        exact = False
            elif ti is not str and item is not None and ti is not bool and not _check(item):
                exact = False
        return exact
    _check_subclass(value)
    return False


def _check_subclass(value: Any) -> None:
    # Subclasses of the allowed types (an IntEnum, a StrEnum, an OrderedDict ...): checked as before.
    if isinstance(value, bool | str):
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


def canonical_json_stdlib(value: Any) -> bytes:
    """The reference path: the standard library's encoder (slow: a new encoder object per call)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes for the integer/string subset (ASCII keys sort identically by code unit)."""
    if _check(value):
        try:
            return _fast(value)
        except UnicodeEncodeError:
            pass  # a lone surrogate: the stdlib path raises the error callers have always seen
    return canonical_json_stdlib(value)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _scalar(value: Any) -> str:
    """Canonical JSON of a scalar, as json.dumps(ensure_ascii=False) writes it."""
    t = type(value)
    if t is str:
        return encode_basestring(value)
    if t is int:
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise EncodingError(f"integer {value} outside the I-JSON safe range")
        return str(value)
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    raise EncodingError(f"entry body values must be scalars, not {t.__name__}")


# Body key tuples already seen to be plain (the state machine uses a dozen); bounded, so that odd
# callers cannot grow it.
_PLAIN_KEY_SETS: set[tuple[Any, ...]] = set()


def _plain_keys(keys: tuple[Any, ...]) -> bool:
    """Keys the direct encoder may write as they are: str, printable ASCII, no `"` or `\\`."""
    if not all(type(k) is str for k in keys) or not _PLAIN_KEYS.fullmatch("".join(keys)):
        return False
    if len(_PLAIN_KEY_SETS) < 256:
        _PLAIN_KEY_SETS.add(keys)
    return True


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
    return encode_leaf(seq, prev, ts, type_, actor, client_id, body, meta)


def encode_leaf(seq: int, prev: bytes, ts: int, type_: str, actor: str, client_id: str | None,
                body: dict[str, Any], meta: bytes) -> bytes:
    """`encode_entry` with positional arguments (the state machine's call, once per entry)."""
    if len(prev) != 32:
        raise EncodingError("prev hash must be 32 bytes")
    for v in (actor, client_id, seq, ts, type_, *body.values()):
        t = type(v)
        if t is int:
            if not -MAX_SAFE_INT <= v <= MAX_SAFE_INT:
                raise EncodingError(f"integer {v} outside the I-JSON safe range")
        elif t is not str and v is not None and t is not bool:
            raise EncodingError(f"entry body values must be scalars, not {t.__name__}")
    keys = tuple(body)
    if keys in _PLAIN_KEY_SETS or _plain_keys(keys):
        try:
            return DOMAIN_TAG + _fast({"actor": actor, "body": body, "client_id": client_id,
                                       "meta": sha256(meta).hex(), "prev": prev.hex(), "seq": seq, "ts": ts,
                                       "type": type_, "v": VERSION})
        except UnicodeEncodeError:
            pass  # a lone surrogate: the reference path raises as it always has
    return encode_entry_reference(seq=seq, prev=prev, ts=ts, type_=type_, actor=actor, client_id=client_id,
                                  body=body, meta=meta)


def encode_entry_reference(
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
    """The entry encoder written out with the standard library: what `encode_entry` must equal."""
    if len(prev) != 32:
        raise EncodingError("prev hash must be 32 bytes")
    body_json = ",".join(f'"{k}":{_scalar(body[k])}' for k in sorted(body))
    text = (
        f'{{"actor":{_scalar(actor)},"body":{{{body_json}}},"client_id":{_scalar(client_id)},'
        f'"meta":"{sha256(meta).hex()}","prev":"{prev.hex()}","seq":{_scalar(seq)},"ts":{_scalar(ts)},'
        f'"type":{_scalar(type_)},"v":{VERSION}}}'
    )
    return DOMAIN_TAG + text.encode("utf-8")


def _event_leaf(tag: bytes, version: int, seq: int, prev: bytes, ts: int, type_: str, actor: str,
                client_id: str | None, body: dict[str, Any], meta: bytes) -> bytes:
    if len(prev) != 32:
        raise EncodingError("prev hash must be 32 bytes")
    for v in (actor, client_id, seq, ts, type_):
        if type(v) is not str and type(v) is not int and v is not None:
            raise EncodingError(f"entry fields must be scalars, not {type(v).__name__}")
    return tag + canonical_json({"actor": actor, "body": body, "client_id": client_id, "meta": sha256(meta).hex(),
                                 "prev": prev.hex(), "seq": seq, "ts": ts, "type": type_, "v": version})


def encode_leaf_v2(seq: int, prev: bytes, ts: int, type_: str, actor: str, client_id: str | None,
                   body: dict[str, Any], meta: bytes) -> bytes:
    """A version-2 leaf (an event of several legs): `DOMAIN_TAG_V2 + canonical_json(entry)`."""
    return _event_leaf(DOMAIN_TAG_V2, VERSION_2, seq, prev, ts, type_, actor, client_id, body, meta)


def encode_leaf_v3(seq: int, prev: bytes, ts: int, type_: str, actor: str, client_id: str | None,
                   body: dict[str, Any], meta: bytes) -> bytes:
    """A version-3 leaf (an event with blinded account references): `DOMAIN_TAG_V3 + canonical_json(entry)`."""
    return _event_leaf(DOMAIN_TAG_V3, VERSION_3, seq, prev, ts, type_, actor, client_id, body, meta)


def encode_leaf_v4(seq: int, prev: bytes, ts: int, type_: str, actor: str, client_id: str | None,
                   body: dict[str, Any], meta: bytes) -> bytes:
    """A version-4 leaf (an event with blinded accounts, holds and amounts): `DOMAIN_TAG_V4 + canonical_json(entry)`."""
    return _event_leaf(DOMAIN_TAG_V4, VERSION_4, seq, prev, ts, type_, actor, client_id, body, meta)


def tag_of(leaf: bytes) -> bytes | None:
    """The domain tag a leaf starts with, if it is one this code reads."""
    for tag in VERSIONS:
        if leaf[: len(tag)] == tag:
            return tag
    return None


def decode_entry(leaf: bytes) -> dict[str, Any]:
    """Parse leaf bytes and insist they are exactly canonical (so no two encodings share a meaning)."""
    tag = tag_of(leaf)
    if tag is None:
        raise EncodingError("missing domain tag")
    try:
        entry = _decode(leaf[len(tag) :])
    except msgspec.DecodeError as exc:
        raise EncodingError(f"entry is not valid JSON: {exc}") from exc
    if not isinstance(entry, dict) or entry.get("v") != VERSIONS[tag]:
        raise EncodingError("unsupported entry version")
    if tag + canonical_json(entry) != leaf:
        raise EncodingError("entry bytes are not canonical")
    return entry


def legs_of(entry: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(type, body) of each movement an entry records: its own for version 1, each leg's for version 2."""
    if entry.get("v") in EVENT_VERSIONS:
        return [(leg["type"], leg["body"]) for leg in entry["body"]["legs"]]
    return [(entry["type"], entry["body"])]


def entry_hash(leaf: bytes) -> bytes:
    return sha256(leaf)
