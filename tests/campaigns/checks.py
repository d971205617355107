"""Invariants checked after every recovery, straight from the database (and the API where the
answer lives only in the server's memory: the engines' books).

Each check returns the problems it found as text (an empty list is a pass), so that a campaign can
count and report instead of stopping at the first one; the pytest versions assert the list is empty.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import asyncpg
import httpx

from exchange.core.database import asyncpg_dsn, make_engine
from exchange.core.settings import Settings
from exchange.trading.markets import load as load_market
from exchange.trading.replica import book_depth, replay_engine
from tests.campaigns.load import PLEDGE_RANK, Ack

TERMINAL = {"cancelled", "filled", "rejected", "expired"}
_TRADE_ID = re.compile(r"^(?P<m>.+):trade:(?P<tid>\d+):(?P<k>\d+)$")


async def acknowledged(dsn: str, acked: list[Ack]) -> tuple[int, list[str]]:
    """Every acknowledged operation is in the database as it was acknowledged; (found, problems)."""
    problems: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        seqs = {a.result["entry_seq"]: a for a in acked if a.call.kind in ("transfer", "retire")}
        rows = {r["seq"]: r for r in await conn.fetch(
            "SELECT seq, client_id FROM ledger_entries WHERE seq = ANY($1::bigint[])", list(seqs))}
        for seq, a in seqs.items():
            if seq not in rows:
                problems.append(f"acknowledged {a.call.kind} {a.call.key} (entry {seq}) is lost")
            elif rows[seq]["client_id"] != a.call.key:
                problems.append(f"entry {seq} is {rows[seq]['client_id']}, acknowledged as {a.call.key}")
        # Order ids are journal sequence numbers: unique per market only.
        orders: dict[tuple[str, int], list[Ack]] = defaultdict(list)
        for a in acked:
            if a.call.kind in ("order", "listing", "take"):
                orders[(a.result["order"]["market_id"], a.result["order"]["id"])].append(a)
            elif a.call.kind == "cancel":
                orders[(a.result["market_id"], a.result["id"])].append(a)
        rows = {(r["market_id"], r["id"]): r for r in await conn.fetch(
            """SELECT market_id, id, client_id, status, filled_qty FROM orders
               WHERE id = ANY($1::bigint[])""", list({oid for _, oid in orders}))}
        for oid, acks in orders.items():
            row = rows.get(oid)
            if row is None:
                problems.append(f"acknowledged order {oid} ({acks[0].call.key}) is lost")
                continue
            for a in acks:
                view = a.result["order"] if a.call.kind != "cancel" else a.result
                if a.call.kind != "cancel" and row["client_id"] != a.call.key:
                    problems.append(f"order {oid} has client id {row['client_id']}, acknowledged as {a.call.key}")
                if view["status"] in TERMINAL and row["status"] != view["status"]:
                    problems.append(f"order {oid} acknowledged {view['status']} is {row['status']}")
                if int(row["filled_qty"]) < int(view["filled_quantity"]):
                    problems.append(f"order {oid} acknowledged filled {view['filled_quantity']}, now "
                                    f"{row['filled_qty']}")
        pledges: dict[int, int] = {}
        for a in acked:
            if a.call.kind.startswith("pledge_"):
                pid = a.result["id"]
                pledges[pid] = max(pledges.get(pid, 0), PLEDGE_RANK.get(a.result["status"], 0))
        rows = {r["id"]: r["status"] for r in await conn.fetch(
            "SELECT id, status FROM pledges WHERE id = ANY($1::bigint[])", list(pledges))}
        for pid, rank in pledges.items():
            if pid not in rows:
                problems.append(f"acknowledged pledge {pid} is lost")
            elif PLEDGE_RANK.get(rows[pid], 9) < rank:
                problems.append(f"pledge {pid} went back to {rows[pid]} after an acknowledged later step")
    finally:
        await conn.close()
    return len(acked) - len(problems), problems


async def exchange_consistency(dsn: str) -> list[str]:
    """Nothing settled halfway; holds, orders, trades and pledges agree."""
    problems: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        # Every trade's delivery-versus-payment group is complete: its entries 0..n-1 all exist.
        entries: dict[tuple[str, int], list[int]] = defaultdict(list)
        events: set[tuple[str, int]] = set()  # trades settled as one version-2 entry (all legs in it)
        for r in await conn.fetch("SELECT client_id, type FROM ledger_entries WHERE client_id LIKE '%:trade:%'"):
            m = _TRADE_ID.match(r["client_id"])
            if m:
                entries[(m["m"], int(m["tid"]))].append(int(m["k"]))
                if r["type"] == "event":
                    events.add((m["m"], int(m["tid"])))
        trades = await conn.fetch(
            """SELECT t.market_id, t.trade_id, t.notional, t.buyer_fee, t.seller_fee, t.settlement_seq,
                      mk.t_plus_1, coalesce((o.purpose ->> 'retire')::boolean, false) AS retire
               FROM trades t JOIN markets mk ON mk.id = t.market_id
               LEFT JOIN orders o ON o.market_id = t.market_id AND o.id = t.buy_order""")
        for t in trades:
            # One event; a restoration purchase's retirement is an entry of its own, right after it.
            if (t["market_id"], t["trade_id"]) in events:
                want = 1 + t["retire"]
            else:
                want = 3 + (t["notional"] - t["seller_fee"] > 0) + (t["buyer_fee"] + t["seller_fee"] > 0) + (
                    t["t_plus_1"] and not t["retire"])
            got = sorted(entries.pop((t["market_id"], t["trade_id"]), []))
            if got != list(range(want)):
                problems.append(f"trade {t['market_id']}#{t['trade_id']}: settlement entries {got}, want 0..{want - 1}")
        for (m, tid), ks in entries.items():
            problems.append(f"settlement entries {sorted(ks)} of trade {m}#{tid}, which the trade record lacks")
        left = await conn.fetch(
            """SELECT b.instrument, b.posted, b.pending_out FROM ledger_balances b
               JOIN system_accounts s ON s.account = b.account
               WHERE s.name = 'clearing' AND (b.posted <> 0 OR b.pending_out <> 0)""")
        problems += [f"clearing account holds {dict(r)}: a trade settled halfway" for r in left]
        bad = await conn.fetch(
            """SELECT o.market_id, o.id, o.status, h.state FROM orders o JOIN ledger_holds h ON h.id = o.hold_id
               WHERE (o.status = 'open' AND h.state <> 'pending') OR (o.status <> 'open' AND h.state = 'pending')""")
        problems += [f"order {dict(r)}: its hold disagrees" for r in bad]
        bad = await conn.fetch(
            """SELECT o.market_id, o.id, o.filled_qty, x.q FROM orders o LEFT JOIN LATERAL (
                   SELECT coalesce(sum(qty), 0) AS q FROM trades t
                   WHERE t.market_id = o.market_id AND (t.buy_order = o.id OR t.sell_order = o.id)) x ON true
               WHERE o.filled_qty <> x.q""")
        problems += [f"order {dict(r)}: filled quantity differs from its trades" for r in bad]
        bad = await conn.fetch(
            """SELECT m.id, m.applied_seq, max(j.seq) AS journaled FROM markets m
               LEFT JOIN market_journal j ON j.market_id = m.id GROUP BY m.id, m.applied_seq
               HAVING coalesce(max(j.seq), 0) > m.applied_seq""")
        problems += [f"market {dict(r)}: journaled commands not applied after recovery" for r in bad]
        bad = await conn.fetch(
            """SELECT h.id, h.kind, h.amount FROM ledger_holds h WHERE h.state = 'pending' AND (
                   (h.kind = 'order' AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.hold_id = h.id))
                OR (h.kind = 'pledge' AND NOT EXISTS (SELECT 1 FROM pledges p WHERE p.hold_id = h.id
                                                       AND p.status IN ('active', 'enforcing'))))""")
        problems += [f"hold {dict(r)} has no owner (orphan: units locked for nobody)" for r in bad]
        bad = await conn.fetch(
            """SELECT p.id, p.status, h.state FROM pledges p LEFT JOIN ledger_holds h ON h.id = p.hold_id
               WHERE p.status IN ('active', 'enforcing') AND h.state IS DISTINCT FROM 'pending'""")
        problems += [f"pledge {dict(r)} is in force without a pending lock" for r in bad]
    finally:
        await conn.close()
    return problems


async def books_equal_replay(url: str, base_url: str, market_ids: list[str], levels: int = 20) -> list[str]:
    """The recovered engines' books (API depth) equal the open orders' projection and a replay of the
    whole journal from scratch; a replay from the latest snapshot has the same state hash."""
    problems: list[str] = []
    engine = make_engine(url, 2)
    rt = _Reader(engine)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            for mid in market_ids:
                market = await load_market(rt, mid)  # type: ignore[arg-type]
                api = (await client.get(f"/v1/markets/{mid}/depth", params={"levels": levels})).json()
                async with engine.connect() as conn:
                    applied = (await conn.exec_driver_sql(
                        "SELECT applied_seq FROM markets WHERE id = $1", (mid,))).scalar_one()
                    rows = (await conn.exec_driver_sql(
                        """SELECT side, price, sum(open_qty) AS q, count(*) AS n FROM orders
                           WHERE market_id = $1 AND status = 'open' AND id <= $2 GROUP BY side, price""",
                        (mid, applied))).all()
                    full = await replay_engine(conn, market, applied, use_snapshot=False)
                    snap = await replay_engine(conn, market, applied, use_snapshot=True)
                if api["seq"] != applied:
                    problems.append(f"{mid}: engine at seq {api['seq']}, projection at {applied}")
                proj = {"bids": sorted(((r.price, int(r.q), int(r.n)) for r in rows if r.side == "buy"), reverse=True),
                        "asks": sorted((r.price, int(r.q), int(r.n)) for r in rows if r.side == "sell")}
                replayed = book_depth(full, levels)
                for side in ("bids", "asks"):
                    got = [(_fen(x["price"]), _units(x["quantity"], market.decimals), x["orders"]) for x in api[side]]
                    want = [tuple(x) for x in proj[side][:levels]]
                    rep = [tuple(x) for x in replayed.get(side, [])]
                    if got != want:
                        problems.append(f"{mid} {side}: engine book {got} != open orders {want}")
                    if got != rep:
                        problems.append(f"{mid} {side}: engine book {got} != journal replay {rep}")
                if full.state_hash() != snap.state_hash():
                    problems.append(f"{mid}: replay from the snapshot and from scratch differ in state hash")
    finally:
        await engine.dispose()
    return problems


class _Reader:
    """Just enough of a Runtime for `exchange.trading.markets.load`."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.settings = Settings()  # the default calendar a market follows (exchange/trading/calendars/)

    def read(self) -> Any:
        return self.engine.connect()


def _fen(price: str) -> int:
    whole, _, frac = price.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def _units(q: str, decimals: int) -> int:
    whole, _, frac = q.partition(".")
    return int(whole) * 10**decimals + (int((frac + "0" * decimals)[:decimals]) if decimals else 0)


async def verify(url: str) -> tuple[bool, str]:
    """The full audit (`envx verify`'s own function, in this process): (ok, rendered report)."""
    from ledger.verify import verify_database

    report = await verify_database(asyncpg_dsn(url))
    return report.ok, report.render()


async def holds_spent_once(dsn: str) -> tuple[int, list[str]]:
    """Re-derived from the log's bytes, independently of the state machine: every hold is resolved at
    most once, nothing moves after its resolution, and what it moved and released never exceeds what it
    held (no double-spent hold). (holds checked, problems)"""
    import msgspec

    from ledger import blinding
    from ledger.encoding import decode_entry, legs_of

    problems: list[str] = []
    holds: dict[int, dict[str, int]] = {}
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # Version-1 hold entries, and the hold legs of version-2 events (a trade's posts, trim, T+1 lock).
            # A blinded event (version 3, 4) names its holds (and amounts) by commitment: read in the clear with
            # its openings.
            cur = conn.cursor("SELECT e.seq, e.type, e.leaf, o.openings FROM ledger_entries e LEFT JOIN "
                              "ledger_entry_openings o USING (seq) WHERE e.type LIKE 'hold.%' OR e.type = 'event' "
                              "ORDER BY e.seq")
            async for r in cur:
                entry = decode_entry(bytes(r["leaf"]))
                if entry["v"] in blinding.FIELDS:
                    try:
                        opened = blinding.decode_openings(msgspec.json.decode(bytes(r["openings"] or b"null")))
                        entry = {**entry, "body": blinding.unblind(entry["body"], opened, blinding.FIELDS[entry["v"]])}
                    except (blinding.BlindingError, msgspec.DecodeError) as exc:
                        problems.append(f"entry {r['seq']}: its openings do not open it: {exc}")
                        continue
                for type_, body in legs_of(entry):
                    if not type_.startswith("hold."):
                        continue
                    if type_ == "hold.create":
                        holds[r["seq"]] = {"amount": body["amount"], "used": 0, "final": 0}
                        continue
                    if type_ == "hold.amend":
                        continue
                    h = holds.get(body["hold"])
                    if h is None:
                        problems.append(f"entry {r['seq']} resolves hold {body['hold']}, which was never created")
                        continue
                    if h["final"]:
                        problems.append(f"entry {r['seq']} touches hold {body['hold']} after it was resolved")
                    h["used"] += body.get("amount", 0) + body.get("released", 0)
                    if type_ not in ("hold.post", "hold.trim") or body.get("remaining", 0) == 0:
                        h["final"] = r["seq"]
                    if h["used"] > h["amount"]:
                        problems.append(f"hold {body['hold']} spent {h['used']} of {h['amount']}")
        for hid, h in holds.items():
            if h["final"] and h["used"] != h["amount"]:
                problems.append(f"hold {hid} resolved with {h['used']} of {h['amount']} accounted for")
        bad = await conn.fetch(
            """SELECT b.account, b.instrument, b.posted, b.pending_out FROM ledger_balances b
               WHERE NOT b.may_go_negative AND b.posted - b.pending_out < 0""")
        problems += [f"overdrawn: {dict(r)}" for r in bad]
        bad = await conn.fetch("SELECT instrument, sum(posted) AS s FROM ledger_balances GROUP BY instrument "
                               "HAVING sum(posted) <> 0")
        problems += [f"double entry broken: {dict(r)} (every debit has its credit: the sum must be 0)" for r in bad]
    finally:
        await conn.close()
    return len(holds), problems
