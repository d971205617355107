"""Reading what a flow wrote to the ledger, for the one-event tests (issue #16): entries, holds, balances,
straight from the ledger's own tables of the real app's database."""

from __future__ import annotations

import json
from typing import Any

from ledger import blinding
from ledger.encoding import decode_entry
from tests.helpers import Api
from tests.security.helpers import sql


def head(api: Api) -> int:
    """The seq of the last entry."""
    return int(sql(api.client, "SELECT coalesce(max(seq), 0) FROM ledger_entries")[0][0])


def clear(leaf: bytes, openings: bytes | None) -> dict[str, Any]:
    """An entry as the auditor reads it: a blinded event (version 3 or 4: an anonymous trade) in the clear, with
    the openings stored beside it."""
    entry = decode_entry(leaf)
    fields = blinding.FIELDS.get(entry["v"])
    if fields is None:
        return entry
    opened = blinding.decode_openings(json.loads(openings or b"null"))
    return {**entry, "body": blinding.unblind(entry["body"], opened, fields)}


_CLEAR = "SELECT e.seq, e.leaf, o.openings FROM ledger_entries e LEFT JOIN ledger_entry_openings o USING (seq) "


def entries(api: Api, seqs: list[int]) -> list[dict[str, Any]]:
    """The entries `seqs`, blinded events in the clear (`clear`)."""
    rows = sql(api.client, _CLEAR + "WHERE e.seq = ANY(:s) ORDER BY e.seq", {"s": seqs})
    return [clear(bytes(r.leaf), r.openings and bytes(r.openings)) for r in rows]


def since(api: Api, seq: int) -> list[dict[str, Any]]:
    """The entries after `seq`, blinded events in the clear (`clear`)."""
    rows = sql(api.client, _CLEAR + "WHERE e.seq > :s ORDER BY e.seq", {"s": seq})
    return [clear(bytes(r.leaf), r.openings and bytes(r.openings)) for r in rows]


def shape(entry: dict[str, Any]) -> tuple[str, str | None, list[str]]:
    """(type, event kind, leg types) of an entry: a version-1 entry is its own one leg."""
    if entry["type"] == "event":
        return "event", entry["body"]["kind"], [leg["type"] for leg in entry["body"]["legs"]]
    return entry["type"], None, [entry["type"]]


def hold(api: Api, hold_id: int) -> tuple[str, int, int, int | None]:
    """(state, amount, posted amount, resolved seq) of a ledger hold."""
    [r] = sql(api.client, "SELECT state, amount, posted_amount, resolved_seq FROM ledger_holds WHERE id = :h",
              {"h": hold_id})
    return r.state, int(r.amount), int(r.posted_amount), r.resolved_seq


def balances(api: Api) -> dict[tuple[int, str], tuple[int, int, int]]:
    """Every balance row: (account, instrument) -> (posted, pending_out, pending_in)."""
    rows = sql(api.client, "SELECT account, instrument, posted, pending_out, pending_in FROM ledger_balances")
    return {(int(r.account), r.instrument): (int(r.posted), int(r.pending_out), int(r.pending_in)) for r in rows}


def blocks(api: Api) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in sql(api.client, "SELECT instrument, start_serial, end_serial, account, hold, frozen_by, "
                                              "retired_seq FROM ledger_blocks ORDER BY instrument, start_serial")]


def holds(api: Api) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in sql(api.client, "SELECT id, state, amount, posted_amount FROM ledger_holds ORDER BY id")]


def snapshot(api: Api) -> tuple[int, Any, Any, Any]:
    """Everything a refused step must leave as it was: the head, balances, blocks and holds."""
    return head(api), balances(api), blocks(api), holds(api)
