"""Rebuild the request behind a stored entry, so the log can be replayed through `ledger.state`.

Replay re-encodes every entry and must reproduce its exact bytes: any change to a stored entry, its
metadata or the order of the log shows up as a mismatch.

The leaf's JSON is decoded straight into typed records (msgspec structs, no dict per entry) and from them
into the state machine's commands. Every field is taken as the bytes say, of whatever type (`Any`): the
state machine's rules judge the values, the byte comparison judges the rest; nothing here adds a rule.
An entry read as a dict (`request_of`, the legs of a version-2 event) goes through the same table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import msgspec

from ledger import commands as c
from ledger.encoding import DOMAIN_TAG_V2, VERSION_2, VERSIONS

_decode = msgspec.json.decode  # the same values as json.loads for the canonical JSON stored as metadata
_TAG_LEN = len(DOMAIN_TAG_V2)


class _Entry(msgspec.Struct):
    ts: Any
    type: Any
    actor: Any
    client_id: Any
    body: msgspec.Raw
    v: Any = None


class _Define(msgspec.Struct):
    code: Any
    kind: Any
    decimals: Any


class _Open(msgspec.Struct):
    owner: Any
    kind: Any


class _Issue(msgspec.Struct):
    source: Any
    account: Any
    instrument: Any
    quantity: Any
    reference: Any


class _Transfer(msgspec.Struct):
    debit: Any
    credit: Any
    instrument: Any
    amount: Any


class _Retire(msgspec.Struct):
    account: Any
    sink: Any
    instrument: Any
    amount: Any
    purpose: Any
    beneficiary: Any


class _Create(msgspec.Struct):
    kind: Any
    debit: Any
    credit: Any
    instrument: Any
    amount: Any
    expires_at: Any


class _Post(msgspec.Struct):
    hold: Any
    amount: Any
    remaining: Any = 0


class _Trim(msgspec.Struct):
    hold: Any
    keep: Any


class _Amend(msgspec.Struct):
    hold: Any
    expires_at: Any


class _Hold(msgspec.Struct):
    hold: Any


class _Key(msgspec.Struct):
    key: Any


def _ranges(meta: dict[str, Any]) -> tuple[c.Range, ...]:
    return tuple((int(s), int(e)) for s, e in meta.get("serials", []))


# Entry type -> (what its body holds, the command it records). The one table for bytes and for dicts.
_BODIES: dict[str, tuple[type[msgspec.Struct], Callable[[Any, dict[str, Any]], c.Command]]] = {
    "instrument.define": (_Define, lambda b, m: c.DefineInstrument(b.code, b.kind, b.decimals)),
    "account.open": (_Open, lambda b, m: c.OpenAccount(b.owner, b.kind)),
    "batch.issue": (_Issue, lambda b, m: c.IssueBatch(b.source, b.account, b.instrument, b.quantity, b.reference)),
    "transfer": (_Transfer, lambda b, m: c.Transfer(b.debit, b.credit, b.instrument, b.amount, _ranges(m))),
    "retire": (_Retire, lambda b, m: c.Retire(b.account, b.sink, b.instrument, b.amount, b.purpose, b.beneficiary,
                                              _ranges(m))),
    "hold.create": (_Create, lambda b, m: c.CreateHold(b.kind, b.debit, b.credit, b.instrument, b.amount,
                                                       _ranges(m), b.expires_at)),
    "hold.post": (_Post, lambda b, m: c.PostHold(b.hold, b.amount, b.remaining > 0)),
    "hold.trim": (_Trim, lambda b, m: c.TrimHold(b.hold, b.keep)),
    "hold.amend": (_Amend, lambda b, m: c.AmendHold(b.hold, b.expires_at)),
    "hold.void": (_Hold, lambda b, m: c.VoidHold(b.hold)),
    "hold.expire": (_Hold, lambda b, m: c.ExpireHold(b.hold)),
    "key.register": (_Key, lambda b, m: c.RegisterSigningKey(b.key)),
}
_read_entry = msgspec.json.Decoder(_Entry).decode
_READ_BODY = {t: (msgspec.json.Decoder(kind).decode, build) for t, (kind, build) in _BODIES.items()}


def request_of_leaf(leaf: bytes, meta_bytes: bytes) -> tuple[c.Request, int]:
    """The request behind a stored leaf and its metadata, with the entry's time."""
    version = VERSIONS.get(leaf[:_TAG_LEN])
    if version is None:
        raise ValueError("not an envx entry (unknown domain tag)")
    entry = _read_entry(leaf[_TAG_LEN:])
    meta = _decode(meta_bytes)
    t = entry.type
    cmd: c.Command
    if t == "event" and version == VERSION_2 and entry.v == VERSION_2:
        cmd = _event(_decode(entry.body), meta)
    else:
        read = _READ_BODY.get(t) if type(t) is str else None
        if read is None:
            raise ValueError(f"unknown entry type {t!r}")
        cmd = read[1](read[0](entry.body), meta)
    return c.Request(entry.actor, cmd, entry.client_id, meta), entry.ts


def request_of(entry: dict[str, Any], meta_bytes: bytes) -> c.Request:
    """The request behind an entry already decoded to a dict (`ledger.encoding.decode_entry`)."""
    meta = _decode(meta_bytes)
    cmd: c.Command
    if entry["type"] == "event" and entry.get("v") == VERSION_2:
        cmd = _event(entry["body"], meta)
    else:
        cmd = _command(entry["type"], entry["body"], meta)
    return c.Request(entry["actor"], cmd, entry["client_id"], meta)


def _event(body: dict[str, Any], meta: dict[str, Any]) -> c.Event:
    # A version-2 entry: each leg is rebuilt as the v1 entry of its type would be, with its own derived
    # metadata (the `legs` of the event's metadata, in leg order).
    legs, derived = body["legs"], meta["legs"]
    if len(legs) != len(derived):
        raise ValueError("an event's metadata names another number of legs than its body")
    # A leg of another type is refused by the state machine when it is replayed (invalid_event).
    return c.Event(body["kind"], tuple(
        cast(c.Leg, _command(leg["type"], leg["body"], more)) for leg, more in zip(legs, derived, strict=True)))


def _command(t: Any, body: Any, meta: dict[str, Any]) -> c.Command:
    found = _BODIES.get(t) if type(t) is str else None
    if found is None:
        raise ValueError(f"unknown entry type {t!r}")
    kind, build = found
    return build(msgspec.convert(body, kind), meta)
