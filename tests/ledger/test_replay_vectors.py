"""Byte identity: a recorded workload must produce exactly the recorded entry bytes and states.

The vectors (tests/data/ledger_replay_vectors.json, see tests/ledger/replay_workload.py) were generated
by the ledger code before its writer was optimised. Every entry hash (which covers the leaf bytes and,
through the committed hash, the metadata bytes), every refusal, the state digest every 50 groups and
the final chain head must come out the same through the pure state machine and through the real writer
against PostgreSQL (whose projections must then equal the replayed state).
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import asyncpg

from exchange.core.database import asyncpg_dsn
from ledger.state import LedgerState, Rejection
from ledger.verify import verify_database
from ledger.writer import LedgerWriter
from tests.ledger import replay_workload as w


def replay_pure(data: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, str], LedgerState]:
    s = LedgerState()
    outcomes: list[dict[str, Any]] = []
    digests: dict[str, str] = {}
    for step in data["steps"]:
        for group in step["groups"]:
            reqs = [w.request_from_json(r) for r in group]
            try:
                res: Any = s.apply_linked(reqs, step["ts"])
            except Rejection as rej:
                res = rej
            s.forget_journal()
            outcomes.append(w.outcome(res))
            if len(outcomes) % w.DIGEST_EVERY == 0:
                digests[str(len(outcomes))] = w.state_digest(s)
    return outcomes, digests, s


def first_difference(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> str | None:
    for k, (a, b) in enumerate(zip(expected, got, strict=False)):
        if a != b:
            return f"group {k}: expected {a}, got {b}"
    if len(expected) != len(got):
        return f"{len(expected)} groups recorded, {len(got)} replayed"
    return None


def test_the_workload_covers_the_ledger() -> None:
    data = w.load()
    kinds = {r["cmd"] for step in data["steps"] for g in step["groups"] for r in g}
    assert kinds == set(w._COMMANDS)
    refusals = {o["refused"] for o in data["outcomes"] if "refused" in o}
    assert {"insufficient_available", "frozen", "pledged", "hold_expired", "serials_not_available",
            "amount_exceeds_hold", "invalid_amount", "hold_already_resolved"} <= refusals
    assert sum(len(o.get("entries", ())) for o in data["outcomes"]) > 1400
    assert any(len(g) > 1 and "refused" in o for g, o in zip(
        (g for step in data["steps"] for g in step["groups"]), data["outcomes"], strict=True))


def test_state_machine_reproduces_the_recorded_bytes_and_states() -> None:
    data = w.load()
    outcomes, digests, s = replay_pure(data)
    assert first_difference(data["outcomes"], outcomes) is None
    assert digests == data["digests"]
    assert (s.head.seq, s.head.hash.hex(), w.state_digest(s)) == (
        data["final"]["head_seq"], data["final"]["head_hash"], data["final"]["state"])
    assert s.check_invariants() == []


def test_one_changed_byte_in_a_recorded_request_is_caught() -> None:
    # The comparison is as sharp as claimed: one character of one request's metadata changes one entry
    # hash (and, through the chain, every later one), and the replay says where.
    data = w.load()
    altered = copy.deepcopy(data)
    k = 0
    for step in altered["steps"]:
        for group in step["groups"]:
            k += 1
            if k > 300 and group[0]["meta"].get("memo") and "entries" in data["outcomes"][k - 1]:
                group[0]["meta"]["memo"] = group[0]["meta"]["memo"][:-1] + "\u00e9"
                break
        else:
            continue
        break
    outcomes, _, s = replay_pure(altered)
    diff = first_difference(data["outcomes"], outcomes)
    assert diff is not None and diff.startswith(f"group {k - 1}:")
    assert s.head.hash.hex() != data["final"]["head_hash"]


async def _db_rows(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        head = await conn.fetchrow("SELECT seq, hash, ts FROM ledger_head WHERE id = 1")
        q = conn.fetch
        return {
            "head": [head["seq"], bytes(head["hash"]).hex(), head["ts"]],
            "instruments": sorted([r["code"], r["kind"], r["decimals"], r["next_serial"]]
                                  for r in await q("TABLE ledger_instruments")),
            "accounts": sorted([r["id"], r["owner"], r["kind"]] for r in await q("TABLE ledger_accounts")),
            "balances": sorted([r["account"], r["instrument"], r["posted"], r["pending_out"], r["pending_in"]]
                               for r in await q("TABLE ledger_balances")
                               if (r["posted"], r["pending_out"], r["pending_in"]) != (0, 0, 0)),
            "blocks": sorted([r["instrument"], r["start_serial"], r["end_serial"], r["batch"], r["account"], r["hold"],
                              r["retired_seq"], r["frozen_by"]] for r in await q("TABLE ledger_blocks")),
            "holds": sorted([r["id"], r["kind"], r["debit"], r["credit"], r["instrument"], r["amount"], r["expires_at"],
                             r["state"], r["posted_amount"], r["resolved_seq"]]
                            for r in await q("TABLE ledger_holds")),
            "batches": sorted([r["id"], r["instrument"], r["start_serial"], r["end_serial"], r["account"],
                               r["reference"]] for r in await q("TABLE ledger_batches")),
            "signing_keys": sorted([r["verifier_key"], r["seq"]]
                                   for r in await q("TABLE ledger_signing_keys")),
        }
    finally:
        await conn.close()


def test_writer_reproduces_the_recorded_bytes_and_projections(db_url: str) -> None:
    data = w.load()
    dsn = asyncpg_dsn(db_url)

    async def run() -> list[dict[str, Any]]:
        now = [0]
        writer = LedgerWriter(dsn, clock=lambda: now[0], max_batch=16)
        await writer.start()
        outcomes: list[dict[str, Any]] = []
        try:
            for step in data["steps"]:
                now[0] = step["ts"]
                # A step's groups are queued together, so the writer group-commits them (in batches of at
                # most 16, which also exercises its block cache across batches).
                futures = [writer.enqueue([w.request_from_json(r) for r in g]) for g in step["groups"]]
                for res in await asyncio.gather(*futures, return_exceptions=True):
                    if isinstance(res, BaseException) and not isinstance(res, Rejection):
                        raise res
                    outcomes.append(w.outcome(res))
        finally:
            await writer.stop()
        return outcomes

    outcomes = asyncio.run(run())
    assert first_difference(data["outcomes"], outcomes) is None
    rows = asyncio.run(_db_rows(dsn))
    assert rows["head"][:2] == [data["final"]["head_seq"], data["final"]["head_hash"]]
    assert w.digest_rows(rows) == data["final"]["state"]
    report = asyncio.run(verify_database(dsn))
    assert report.ok, report.render()
