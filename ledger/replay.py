"""Rebuild the request behind a stored entry, so the log can be replayed through `ledger.state`.

Replay re-encodes every entry and must reproduce its exact bytes: any change to a stored entry, its
metadata or the order of the log shows up as a mismatch.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec

from ledger import blinding
from ledger import commands as c

_decode = msgspec.json.decode  # the same values as json.loads for the canonical JSON stored as metadata


def _ranges(meta: dict[str, Any]) -> tuple[c.Range, ...]:
    return tuple((int(s), int(e)) for s, e in meta.get("serials", []))


def request_of(entry: dict[str, Any], meta_bytes: bytes, openings: blinding.Openings | None = None) -> c.Request:
    """The request behind `entry`; a blinded event (version 3) is rebuilt in the clear with its `openings`
    (BlindingError if they do not open it)."""
    meta = _decode(meta_bytes)
    if entry["type"] == "event" and entry.get("v") == 3:
        clear = {**entry, "v": 2, "body": blinding.unblind(entry["body"], openings)}
        r = request_of(clear, meta_bytes)
        assert isinstance(r.command, c.Event)
        return c.Request(r.actor, c.Event(r.command.kind, r.command.legs, blinded=True), r.client_id, r.meta)
    if entry["type"] == "event" and entry.get("v") == 2:
        # A version-2 entry: each leg is rebuilt as the v1 entry of its type would be, with its own derived
        # metadata (the `legs` of the event's metadata, in leg order).
        legs, derived = entry["body"]["legs"], meta["legs"]
        if len(legs) != len(derived):
            raise ValueError("an event's metadata names another number of legs than its body")
        # A leg of another type is refused by the state machine when it is replayed (invalid_event).
        cmd: c.Command = c.Event(entry["body"]["kind"], tuple(
            cast(c.Leg, _command(leg["type"], leg["body"], more)) for leg, more in zip(legs, derived, strict=True)))
    else:
        cmd = _command(entry["type"], entry["body"], meta)
    return c.Request(entry["actor"], cmd, entry["client_id"], meta)


def _command(t: str, body: dict[str, Any], meta: dict[str, Any]) -> c.Command:
    cmd: c.Command
    if t == "instrument.define":
        cmd = c.DefineInstrument(body["code"], body["kind"], body["decimals"])
    elif t == "account.open":
        cmd = c.OpenAccount(body["owner"], body["kind"])
    elif t == "batch.issue":
        cmd = c.IssueBatch(body["source"], body["account"], body["instrument"], body["quantity"], body["reference"])
    elif t == "transfer":
        cmd = c.Transfer(body["debit"], body["credit"], body["instrument"], body["amount"], _ranges(meta))
    elif t == "retire":
        cmd = c.Retire(body["account"], body["sink"], body["instrument"], body["amount"], body["purpose"],
                       body["beneficiary"], _ranges(meta))
    elif t == "hold.create":
        cmd = c.CreateHold(body["kind"], body["debit"], body["credit"], body["instrument"], body["amount"],
                           _ranges(meta), body["expires_at"])
    elif t == "hold.post":
        cmd = c.PostHold(body["hold"], body["amount"], body.get("remaining", 0) > 0)
    elif t == "hold.trim":
        cmd = c.TrimHold(body["hold"], body["keep"])
    elif t == "hold.amend":
        cmd = c.AmendHold(body["hold"], body["expires_at"])
    elif t == "hold.void":
        cmd = c.VoidHold(body["hold"])
    elif t == "hold.expire":
        cmd = c.ExpireHold(body["hold"])
    elif t == "key.register":
        cmd = c.RegisterSigningKey(body["key"])
    else:
        raise ValueError(f"unknown entry type {t!r}")
    return cmd
