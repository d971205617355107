"""Any single changed byte in the log, the Merkle tiles, the checkpoints, the projections or the openings of
blinded entries is reported.

An attacker with superuser rights (`session_replication_role = replica` switches off the append-only
triggers and foreign keys) changes one byte of one value; `verify_connection` runs in the same
transaction, which is then rolled back, so every mutation starts from the same clean database.
Seeded, round-robin over the tables; ENVX_TAMPER_ROUNDS runs more (default 200, kept small for CI).
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import asyncpg
from litestar.testing import TestClient

from api.app import create_app
from exchange.core.database import asyncpg_dsn
from exchange.core.settings import Settings
from ledger import commands as c
from ledger.verify import Report, verify_connection, verify_database
from tests.helpers import Api, bootstrap_operator
from tests.ledger_verifiable.helpers import world

# Every column of every ledger table, except the two the verifier documents as not covered.
TABLES = ["ledger_entries", "ledger_tiles", "ledger_checkpoints", "ledger_signing_keys", "ledger_head",
          "ledger_accounts", "ledger_instruments", "ledger_balances", "ledger_batches", "ledger_blocks",
          "ledger_holds", "ledger_hold_resolutions", "ledger_entry_openings"]
NOT_COVERED = {("ledger_entries", "fingerprint"), ("ledger_checkpoints", "created_at")}
ROUNDS = int(os.environ.get("ENVX_TAMPER_ROUNDS", "200"))


class _Rollback(Exception):
    pass


def _build(db_url: str, settings: Settings) -> None:
    """A ledger with every table populated: transfers, retirement, holds posted, voided and pending,
    more than 256 entries (so two tile levels), several checkpoints."""
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as client:
        api = Api(client, bootstrap_operator(client))
        w = world(api, transfers=3)
        seller = w["seller"]["api"]
        api.ok(seller.post("/v1/retirements", {"instrument": "FCT-SM", "quantity": "7", "purpose": "voluntary",
                                              "beneficiary": "成都大运会"}))
        rt = client.app.state.rt
        seller_acc = api.ok(api.get(f"/v1/participants/{w['seller']['id']}"))["holding_account"]
        buyer_acc = api.ok(api.get(f"/v1/participants/{w['buyer']['id']}"))["holding_account"]

        async def more() -> None:
            h1 = await rt.submit(c.Request("t", c.CreateHold("order", seller_acc, buyer_acc, "FCT-SM", 5)))
            h2 = await rt.submit(c.Request("t", c.CreateHold("pledge", seller_acc, buyer_acc, "FCT-SM", 4)))
            await rt.submit(c.Request("t", c.CreateHold("order", seller_acc, buyer_acc, "FCT-SM", 3,
                                                        expires_at=2**52)))
            await rt.submit(c.Request("t", c.PostHold(h1.seq, 2)))
            await rt.submit(c.Request("t", c.VoidHold(h2.seq)))
            await rt.submit_linked([c.Request("t", c.Transfer(seller_acc, buyer_acc, "FCT-SM", 1), f"bulk-{i}")
                                    for i in range(260)])
            await rt.submit(c.Request("t", c.Transfer(buyer_acc, seller_acc, "FCT-SM", 3)))
            # A blinded event (version 3): its accounts by commitment, its openings kept beside it.
            await rt.submit(c.Request("t", c.Event("trade", (c.Transfer(seller_acc, buyer_acc, "FCT-SM", 1),
                                                             c.Transfer(buyer_acc, seller_acc, "FCT-SM", 1)),
                                                   blinded=True)))

        client.blocking_portal.call(more)


async def _columns(conn: asyncpg.Connection) -> dict[str, list[tuple[str, str]]]:
    rows = await conn.fetch("""SELECT table_name, column_name, data_type FROM information_schema.columns
                               WHERE table_schema = 'public' AND table_name = ANY($1::text[])
                               ORDER BY table_name, ordinal_position""", TABLES)
    out: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        if (r["table_name"], r["column_name"]) not in NOT_COVERED:
            out.setdefault(r["table_name"], []).append((r["column_name"], r["data_type"]))
    return out


def _flip_text(value: str, rng: random.Random) -> str:
    raw = bytearray(value.encode("utf-8"))
    i = rng.randrange(len(raw))
    if raw[i] < 0x80:
        raw[i] = rng.choice([b for b in range(0x20, 0x7F) if b != raw[i]])
    else:
        # Move to the last byte of this character; changing its low six bits keeps valid UTF-8.
        while i + 1 < len(raw) and 0x80 <= raw[i + 1] < 0xC0:
            i += 1
        raw[i] = 0x80 | ((raw[i] & 0x3F) ^ rng.randrange(1, 64))
    return raw.decode("utf-8")


def _flip(value: Any, data_type: str, rng: random.Random) -> Any:
    """The value with exactly one byte of its representation changed."""
    if data_type == "bytea":
        raw = bytearray(value)
        raw[rng.randrange(len(raw))] ^= rng.randrange(1, 256)
        return bytes(raw)
    if data_type == "text":
        return _flip_text(value, rng)
    if data_type == "boolean":
        return not value
    width = {"smallint": 2, "integer": 4, "bigint": 8}[data_type]
    raw = bytearray(value.to_bytes(width, "big", signed=True))
    raw[rng.randrange(width)] ^= rng.randrange(1, 256)
    return int.from_bytes(raw, "big", signed=True)


async def _campaign(dsn: str, rounds: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    conn = await asyncpg.connect(dsn)
    caught: dict[str, int] = {}
    try:
        columns = await _columns(conn)
        assert set(columns) == set(TABLES)
        rows = {t: [r["ctid"] for r in await conn.fetch(f"SELECT ctid FROM {t}")] for t in TABLES}
        assert all(rows.values()), {t: len(v) for t, v in rows.items()}
        done = attempts = 0
        while done < rounds:
            attempts += 1
            assert attempts < rounds * 20, "too many mutations refused by constraints"
            table = TABLES[done % len(TABLES)]
            ctid = rng.choice(rows[table])
            # Byte strings (leaf, meta, hashes, tiles) weigh three times: most bytes live there.
            column, data_type = rng.choice([c for c in columns[table] for _ in range(3 if c[1] == "bytea" else 1)])
            value = await conn.fetchval(f"SELECT {column} FROM {table} WHERE ctid = $1", ctid)
            if value is None or value in ("", b""):
                continue
            new = _flip(value, data_type, rng)
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL session_replication_role = replica")  # the attacker's powers
                    try:
                        async with conn.transaction():
                            await conn.execute(f"UPDATE {table} SET {column} = $1 WHERE ctid = $2", new, ctid)
                    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError):
                        raise _Rollback from None  # a CHECK or key refused it: try another byte
                    report = Report()
                    await verify_connection(conn, report)
                    assert not report.ok, f"{table}.{column} {value!r} -> {new!r} went unnoticed"
                    caught[f"{table}.{column}"] = caught.get(f"{table}.{column}", 0) + 1
                    done += 1
                    raise _Rollback
            except _Rollback:
                pass
        return caught
    finally:
        await conn.close()


def test_every_single_byte_change_is_reported(db_url: str, settings: Settings) -> None:
    _build(db_url, settings)
    dsn = asyncpg_dsn(db_url)
    clean = asyncio.run(verify_database(dsn))
    assert clean.ok and not clean.warnings, clean.render()
    assert clean.entries > 256
    caught = asyncio.run(_campaign(dsn, ROUNDS, seed=20261123))
    assert sum(caught.values()) == ROUNDS
    assert {k.split(".")[0] for k in caught} == set(TABLES)
    assert asyncio.run(verify_database(dsn)).ok  # every mutation was rolled back
