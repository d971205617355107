"""Reading what a flow wrote to the ledger, for the one-event tests (issue #16): entries, holds, balances,
straight from the ledger's own tables of the real app's database."""

from __future__ import annotations

from typing import Any

from ledger.encoding import decode_entry
from tests.helpers import Api
from tests.security.helpers import sql


def head(api: Api) -> int:
    """The seq of the last entry."""
    return int(sql(api.client, "SELECT coalesce(max(seq), 0) FROM ledger_entries")[0][0])


def entries(api: Api, seqs: list[int]) -> list[dict[str, Any]]:
    rows = sql(api.client, "SELECT seq, leaf FROM ledger_entries WHERE seq = ANY(:s) ORDER BY seq", {"s": seqs})
    return [decode_entry(bytes(r.leaf)) for r in rows]


def since(api: Api, seq: int) -> list[dict[str, Any]]:
    rows = sql(api.client, "SELECT leaf FROM ledger_entries WHERE seq > :s ORDER BY seq", {"s": seq})
    return [decode_entry(bytes(r.leaf)) for r in rows]


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
