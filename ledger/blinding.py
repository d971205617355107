"""Blinded account references and amounts: an anonymous trade's entry names its accounts and holds (version 3),
and since version 4 every amount of its legs too, by commitment, so each party's receipt proves the whole event
without naming the other side or telling it the other side's order terms (its limit, its size, its rest).

In the entry bytes every `debit`, `credit` and `hold` field of every leg is a commitment (64 lowercase hex
digits) instead of the integer it stands for::

    commitment = hex(SHA-256(tag || salt || value as 8 bytes, big-endian))
    tag        = "envx-acct/1\\n" (debit, credit) | "envx-hold/1\\n" (hold)
                 | "envx-amt/1\\n" (amount, released, remaining, keep: version 4 only)
    salt       = HMAC-SHA256(key, "envx-salt/1\\n" || seq (8 bytes) || leg (2 bytes) || field name), 32 bytes

Which fields are commitments is fixed by the entry version (`FIELDS`): version 3 the accounts and holds,
version 4 these and the amounts. One salt per leg and field, derived from the ledger's blinding key. The
openings -- each field's salt and value, ``[{"debit": [salt hex, value], ...} per leg]`` -- are kept privately
beside the entry (`ledger.openings`); the audit unblinds with them and checks that every commitment binds. A
party's receipt carries the openings of its own fields only.

Pure: no I/O, clock or randomness; the key is data the writer passes in (`KeyedSalts`), the auditor replays
with the stored openings instead (`StoredSalts`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, MutableMapping
from typing import Any, Protocol

ACCOUNT_TAG = b"envx-acct/1\n"
HOLD_TAG = b"envx-hold/1\n"
AMOUNT_TAG = b"envx-amt/1\n"
SALT_TAG = b"envx-salt/1\n"
# The fields of a leg's body that a blinded entry may commit to, and the tag of each.
TAGS = {"debit": ACCOUNT_TAG, "credit": ACCOUNT_TAG, "hold": HOLD_TAG,
        "amount": AMOUNT_TAG, "released": AMOUNT_TAG, "remaining": AMOUNT_TAG, "keep": AMOUNT_TAG}
ACCOUNT_FIELDS = ("debit", "credit")
# The fields a version-3 entry commits to (accounts and holds) ...
BLINDED_FIELDS = ("debit", "credit", "hold")
# ... and those a version-4 entry adds: every amount a leg can carry (a transfer's or a hold's `amount`, what a
# post or trim `released`, what a hold has `remaining`, what a trim `keep`s). Together they are each side's
# order terms beyond the trade itself: a buy's limit and size show in its hold's rest and release.
AMOUNT_FIELDS = ("amount", "released", "remaining", "keep")
BLINDED_FIELDS_V4 = BLINDED_FIELDS + AMOUNT_FIELDS
# Entry version -> the fields of every leg body that are commitments in it (all of them, where present).
FIELDS = {3: BLINDED_FIELDS, 4: BLINDED_FIELDS_V4}
KEY_BYTES = 32
_MAX_VALUE = 2**63 - 1
_HEX64 = re.compile(r"[0-9a-f]{64}")

# One leg's openings: field -> (salt, value).
LegOpenings = dict[str, tuple[bytes, int]]
Openings = list[LegOpenings]


class BlindingError(ValueError):
    """Openings that do not open an entry's commitments (missing, malformed, or not binding)."""


class Salts(Protocol):
    """Where the state machine takes the salt of each blinded field from."""

    def salt(self, seq: int, leg: int, field: str) -> bytes: ...


class KeyedSalts:
    """The writer's salts: derived from the ledger's blinding key (so a replay with the key gets the same)."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        if type(key) is not bytes or len(key) != KEY_BYTES:
            raise ValueError(f"a blinding key is {KEY_BYTES} bytes")
        # HMAC-SHA256 keyed once; each salt continues a copy (a version-4 trade takes ~30 salts).
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def salt(self, seq: int, leg: int, field: str) -> bytes:
        h = self._keyed.copy()
        h.update(SALT_TAG + seq.to_bytes(8, "big") + leg.to_bytes(2, "big") + field.encode("ascii"))
        return h.digest()


class StoredSalts:
    """The auditor's salts: those of the stored openings (`openings` by seq, which the caller may refill)."""

    __slots__ = ("openings",)

    def __init__(self, openings: MutableMapping[int, Openings] | None = None) -> None:
        self.openings: MutableMapping[int, Openings] = {} if openings is None else openings

    def salt(self, seq: int, leg: int, field: str) -> bytes:
        found = self.openings.get(seq)
        if found is None or leg >= len(found) or field not in found[leg]:
            raise BlindingError(f"no opening of leg {leg} field {field} of entry {seq}")
        return found[leg][field][0]


def commitment(field: str, salt: bytes, value: int) -> str:
    """The commitment a blinded entry writes for `value` in `field` under `salt`."""
    if type(value) is not int or not 0 <= value <= _MAX_VALUE:
        raise BlindingError(f"{field} must be a non-negative integer, not {value!r}")
    return hashlib.sha256(TAGS[field] + salt + value.to_bytes(8, "big")).hexdigest()


def blind(body: dict[str, Any], salts: Salts, seq: int,
          fields: tuple[str, ...] = BLINDED_FIELDS) -> tuple[dict[str, Any], Openings]:
    """An event's clear body -> (the body with every one of `fields` committed, the openings)."""
    legs: list[dict[str, Any]] = []
    openings: Openings = []
    for i, leg in enumerate(body["legs"]):
        clear = leg["body"]
        out = dict(clear)
        mine: LegOpenings = {}
        for f in fields:
            if f in clear:
                salt = salts.salt(seq, i, f)
                out[f] = commitment(f, salt, clear[f])
                mine[f] = (salt, clear[f])
        legs.append({"type": leg["type"], "body": out})
        openings.append(mine)
    return {**body, "legs": legs}, openings


def unblind(body: dict[str, Any], openings: Openings | None,
            fields: tuple[str, ...] = BLINDED_FIELDS) -> dict[str, Any]:
    """A blinded event's body -> its clear body; raise BlindingError unless `openings` open every commitment
    of it (`fields` of each leg, and nothing else)."""
    problems = check(body, openings, fields)
    if problems:
        raise BlindingError(problems[0])
    assert openings is not None
    legs = []
    for leg, mine in zip(body["legs"], openings, strict=True):
        legs.append({"type": leg["type"], "body": {**leg["body"], **{f: v for f, (_s, v) in mine.items()}}})
    return {**body, "legs": legs}


def check(body: Any, openings: Openings | None, fields: tuple[str, ...] = BLINDED_FIELDS) -> list[str]:
    """What is wrong with `openings` for a blinded event's body: each of `fields` (`FIELDS[version]`) of each
    leg must be a commitment and be opened by exactly its salt and value. Empty: they bind."""
    if openings is None:
        return ["no openings are stored for its blinded fields"]
    legs = body.get("legs") if isinstance(body, dict) else None
    if not isinstance(legs, list) or len(legs) != len(openings):
        return ["its openings name another number of legs than its body"]
    problems = []
    for i, (leg, mine) in enumerate(zip(legs, openings, strict=True)):
        b = leg.get("body") if isinstance(leg, dict) else None
        if not isinstance(b, dict):
            problems.append(f"leg {i} has no body")
            continue
        present = {f for f in fields if f in b}
        if present != set(mine):
            problems.append(f"leg {i}: the openings cover {sorted(mine)}, the body blinds {sorted(present)}")
            continue
        for f, (salt, value) in mine.items():
            c = b[f]
            if not isinstance(c, str) or not _HEX64.fullmatch(c):
                problems.append(f"leg {i} {f} is not a commitment")
            elif not opens(c, f, salt, value):
                problems.append(f"leg {i} {f}: the stored salt and value do not open its commitment")
    return problems


def opens(c: str, field: str, salt: bytes, value: int) -> bool:
    """Whether (salt, value) opens commitment `c` of `field`."""
    try:
        return hmac.compare_digest(commitment(field, salt, value), c)
    except BlindingError:
        return False


def encode_openings(openings: Openings) -> dict[str, Any]:
    """Openings as JSON data: ``{"legs": [{field: [salt hex, value]}, ...]}``."""
    return {"legs": [{f: [s.hex(), v] for f, (s, v) in mine.items()} for mine in openings]}


def decode_openings(data: Mapping[str, Any]) -> Openings:
    """The inverse of `encode_openings`; BlindingError on anything else."""
    legs = data.get("legs") if isinstance(data, Mapping) else None
    if not isinstance(legs, list):
        raise BlindingError("openings are {\"legs\": [...]}")
    out: Openings = []
    for mine in legs:
        if not isinstance(mine, dict):
            raise BlindingError("each leg's openings are an object")
        leg: LegOpenings = {}
        for f, pair in mine.items():
            if f not in TAGS or not isinstance(pair, list) or len(pair) != 2:
                raise BlindingError(f"an opening is {{field: [salt hex, value]}}, not {f!r}: {pair!r}")
            salt, value = pair
            if not isinstance(salt, str) or not _HEX64.fullmatch(salt) or type(value) is not int:
                raise BlindingError(f"opening of {f}: a 32-byte hex salt and an integer")
            leg[f] = (bytes.fromhex(salt), value)
        out.append(leg)
    return out


def values(openings: Openings, fields: tuple[str, ...] = ACCOUNT_FIELDS) -> set[int]:
    """Every value the openings give for `fields` (by default the accounts an event names)."""
    return {v for mine in openings for f, (_s, v) in mine.items() if f in fields}
