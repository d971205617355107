"""Rebuild the request behind a stored entry, so the log can be replayed through `ledger.state`.

Replay re-encodes every entry and must reproduce its exact bytes: any change to a stored entry, its
metadata or the order of the log shows up as a mismatch.

The leaf's JSON is decoded straight into the state machine's command (msgspec, no dict per entry; see
`_BODIES`), and the entry as read becomes the request (`_Entry`: every attribute of a `Request`): the state
machine's rules judge the values, the byte comparison judges the rest; nothing here adds a rule. An entry
read as a dict (`request_of`, the legs of a version-2 event) goes through the same table (`msgspec.convert`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import msgspec

from ledger import blinding
from ledger import commands as c
from ledger.encoding import DOMAIN_TAG_V2, VERSION_2, VERSION_3, VERSION_4, VERSIONS

_decode = msgspec.json.decode  # the same values as json.loads for the canonical JSON stored as metadata
_TAG_LEN = len(DOMAIN_TAG_V2)


class _Entry(msgspec.Struct):
    """A leaf's entry as read, and then the request it records: its `command` and `meta` (the stored metadata,
    decoded) set in place, it has every attribute of a `ledger.commands.Request` (a frozen dataclass, whose
    construction cost the replay as much as decoding the leaf)."""

    ts: Any
    type: Any
    actor: Any
    client_id: Any
    body: msgspec.Raw
    v: Any = None
    meta: Any = None  # the leaf's metadata hash as read; the metadata itself once `command` is set
    command: Any = None
    link: None = None


class _Post(msgspec.Struct):
    hold: Any
    amount: Any
    remaining: Any = 0


class _Key(msgspec.Struct):
    key: Any


_ABSENT = object()


def _ranges(meta: dict[str, Any]) -> tuple[c.Range, ...]:
    return tuple((int(s), int(e)) for s, e in meta.get("serials", []))


def _transfer(t: c.Transfer, meta: dict[str, Any]) -> c.Transfer:
    return t if meta.get("serials", _ABSENT) is _ABSENT else \
        c.Transfer(t.debit, t.credit, t.instrument, t.amount, _ranges(meta))


def _retire(r: c.Retire, meta: dict[str, Any]) -> c.Retire:
    return r if meta.get("serials", _ABSENT) is _ABSENT else \
        c.Retire(r.account, r.sink, r.instrument, r.amount, r.purpose, r.beneficiary, _ranges(meta))


def _create(h: c.CreateHold, meta: dict[str, Any]) -> c.CreateHold:
    return h if meta.get("serials", _ABSENT) is _ABSENT else \
        c.CreateHold(h.kind, h.debit, h.credit, h.instrument, h.amount, _ranges(meta), h.expires_at)


def _as_is(cmd: Any, meta: dict[str, Any]) -> c.Command:
    return cast(c.Command, cmd)


# Entry type -> (what its body is decoded into, the command it records, given the entry's metadata): where
# the body's fields are the command's, the body is decoded into the command itself (its field types are
# checked on the way: the state machine writes its own values back, so bytes of any other type could never
# be reproduced); the serial ranges moved come from the metadata. The one table for bytes and for dicts.
_BODIES: dict[str, tuple[type, Callable[[Any, dict[str, Any]], c.Command]]] = {
    "instrument.define": (c.DefineInstrument, _as_is),
    "account.open": (c.OpenAccount, _as_is),
    "batch.issue": (c.IssueBatch, _as_is),
    "transfer": (c.Transfer, _transfer),
    "retire": (c.Retire, _retire),
    "hold.create": (c.CreateHold, _create),
    "hold.post": (_Post, lambda b, m: c.PostHold(b.hold, b.amount, b.remaining > 0)),
    "hold.trim": (c.TrimHold, _as_is),
    "hold.amend": (c.AmendHold, _as_is),
    "hold.void": (c.VoidHold, _as_is),
    "hold.expire": (c.ExpireHold, _as_is),
    "key.register": (_Key, lambda b, m: c.RegisterSigningKey(b.key)),
}
_read_entry = msgspec.json.Decoder(_Entry).decode
_Build = Callable[[Any, dict[str, Any]], c.Command]
_READ_BODY: dict[str, tuple[Callable[[Any], Any], _Build]] = {
    t: (msgspec.json.Decoder(kind).decode, build) for t, (kind, build) in _BODIES.items()}


def request_of_leaf(leaf: bytes, meta_bytes: bytes,
                    openings: blinding.Openings | None = None) -> tuple[c.Request, int]:
    """The request behind a stored leaf and its metadata, with the entry's time; a blinded event (version 3 or 4)
    is rebuilt in the clear with its `openings` (BlindingError if they do not open it)."""
    version = VERSIONS.get(leaf[:_TAG_LEN])
    if version is None:
        raise ValueError("not an envx entry (unknown domain tag)")
    if version in (VERSION_3, VERSION_4):
        whole = _decode(leaf[_TAG_LEN:])
        return request_of(whole, meta_bytes, openings), whole["ts"]
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
    entry.command, entry.meta = cmd, meta
    return cast(c.Request, entry), entry.ts


def request_of(entry: dict[str, Any], meta_bytes: bytes, openings: blinding.Openings | None = None) -> c.Request:
    """The request behind an entry already decoded to a dict (`ledger.encoding.decode_entry`); a blinded event
    (version 3 or 4) is rebuilt in the clear with its `openings` (BlindingError if they do not open it)."""
    meta = _decode(meta_bytes)
    v = entry.get("v")
    if entry["type"] == "event" and v in (VERSION_3, VERSION_4):
        clear = {**entry, "v": VERSION_2, "body": blinding.unblind(entry["body"], openings, blinding.FIELDS[v])}
        r = request_of(clear, meta_bytes)
        assert isinstance(r.command, c.Event)
        return c.Request(r.actor, c.Event(r.command.kind, r.command.legs, blinded=True,
                                          blind_amounts=v == VERSION_4), r.client_id, r.meta)
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
