"""Races through HTTP: a pledge, a transfer, a sale, a retirement and a freeze of the same units, at once.

Whatever wins, no unit is encumbered twice, nothing moves while frozen, and the ledger verifies."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from exchange.core.database import asyncpg_dsn
from ledger.verify import verify_database
from tests.helpers import Api, ticket
from tests.pledges.helpers import OWNER_USCC, days, pledge_body, world

ROUNDS = 6


def overlaps(a: list[list[int]], b: list[list[int]]) -> bool:
    return any(s1 <= e2 and s2 <= e1 for s1, e1 in a for s2, e2 in b)


def one_round(api: Api, w: dict[str, Any], other: dict[str, Any], n: int) -> dict[str, tuple[int, Any]]:
    owner, bank, buyer, court = w["owner"], w["bank"], w["buyer"], w["court"]
    base = n * 100  # this round's units are serials base+1 .. base+100

    def ser(a: int, b: int) -> list[dict[str, int]]:
        return [{"start": base + a, "end": base + b}]

    # Pledge A over 1-40, offered for sale to the buyer; pledge B over 41-80 awaits the pledgor.
    a = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], "40", serials=ser(1, 40), references=[])))
    api.ok(owner["api"].post(f"/v1/pledges/{a['id']}/confirm"))
    api.ok(bank["api"].post(f"/v1/pledges/{a['id']}/enforcement", {
        "method": "sale", "buyer_id": buyer["id"], "price": "10.00", "reason": "违约",
        "default_notice": {"reference": f"违通-{n}", "notice_date": days(0)}}))
    b = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], "40", serials=ser(41, 80), references=[])))
    ops: list[tuple[str, Callable[[], Any]]] = [
        ("sale", lambda: buyer["api"].post(f"/v1/pledges/{a['id']}/enforcement/accept", {"price": "10.00"})),
        ("freeze", lambda: court["api"].post("/v1/freezes", {
            "holder_id": owner["id"], "holder_identifier": OWNER_USCC, "instrument": "FCT-SM", "quantity": "60",
            "serials": ser(1, 60),
            "case_number": f"(2024)闽04执{n}号", "notice_number": f"R-{n}", "term_start": days(0),
            "term_end": days(30)})),
        ("pledge", lambda: owner["api"].post(f"/v1/pledges/{b['id']}/confirm")),
        ("transfer", lambda: owner["api"].post("/v1/transfers", {
            "to_participant": other["id"], "instrument": "FCT-SM", "quantity": "41", "serials": ser(50, 90)})),
        ("retire", lambda: owner["api"].post("/v1/retirements", {
            "instrument": "FCT-SM", "quantity": "10", "purpose": "voluntary", "beneficiary": "x",
            "serials": ser(31, 40)})),
    ]
    gate = threading.Barrier(len(ops))
    # Each round gives another operation a head start of a few ms, so different ones win.
    leader = ops[n % len(ops)][0]

    def run(item: tuple[str, Callable[[], Any]]) -> tuple[str, int, Any]:
        name, call = item
        gate.wait()
        if name != leader:
            time.sleep(0.02)
        r = call()
        return name, r.status_code, r.json()

    with ThreadPoolExecutor(len(ops)) as pool:
        return {name: (code, body) for name, code, body in pool.map(run, ops)}


def test_concurrent_pledge_transfer_sale_and_freeze_of_the_same_units(api: Api, db_url: str) -> None:
    w = world(api, "100")
    other = api.participant("另一企业", "enterprise")
    api.ok(api.post("/v1/cash/deposits", {"participant_id": w["buyer"]["id"], "amount": "1000000.00",
                                           "bank_reference": "race"}))
    api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                 "instrument": "FCT-SM", "price": "10.00", "as_of": days(0)}))
    outcomes = []
    for n in range(ROUNDS):
        if n:
            api.issue(w["issuer"]["api"], w["owner"]["id"], "FCT-SM", "100", ticket(n + 1))
        res = one_round(api, w, other, n)
        ok = {name for name, (code, _) in res.items() if code in (200, 201)}
        for name, (code, body) in res.items():
            assert code in (200, 201, 409), (name, code, body)
            if code == 409:
                assert body["code"] and body["detail"], body
        # Units 1-40 are pledged to A: the pledge ranks before any freeze, so the sale goes ahead under a
        # freeze (the freeze keeps 41-60 and reaches the sale's surplus). Pledge B (41-80) and the
        # transfer (50-90) exclude each other, as do the freeze (1-60) and the transfer.
        if {"sale", "freeze"} <= ok:
            f = res["freeze"][1]
            now = api.ok(w["court"]["api"].get(f"/v1/freezes/{f['id']}"))
            assert now["status"] == "active" and now["quantity"] in ("20", "60"), now
        assert not {"pledge", "transfer"} <= ok, res
        assert not {"freeze", "transfer"} <= ok, res
        assert "retire" not in ok  # 31-40 are pledged (and maybe frozen or sold): never retirable here
        if {"freeze", "pledge"} <= ok:
            # A freeze may sit on a pledge, but a pledge is never made over frozen units.
            assert res["pledge"][1]["hold_id"] < res["freeze"][1]["hold_id"], res
        outcomes.append(tuple(sorted(ok)))

        # Nothing moved while frozen: while a freeze hold stands, no movement touches its serials (a
        # freeze hold is lifted in the same linked group that hands pledged units to the pledgee's sale).
        frozen: dict[int, list[list[int]]] = {}
        for e in api.ok(api.get("/v1/ledger/entries", after=0, limit=1000)):
            meta, body = e["meta"], e["entry"]["body"]
            if e["type"] == "hold.create" and body["kind"] == "freeze":
                frozen[e["seq"]] = meta["serials"]
            elif e["type"] in ("hold.void", "hold.expire") and body["hold"] in frozen:
                del frozen[body["hold"]]
            elif e["type"] in ("transfer", "retire", "hold.post") and body.get("instrument") == "FCT-SM":
                standing = [r for h, spans in frozen.items() if body.get("hold") != h for r in spans]
                assert not overlaps(meta.get("serials", []), standing), (e, frozen)
        # No unit is encumbered twice: the owner's encumbered blocks are disjoint, one hold each.
        holdings = api.ok(api.get("/v1/holdings", participant_id=w["owner"]["id"], instrument="FCT-SM"))
        spans = sorted((x["serial_start"], x["serial_end"]) for x in holdings["blocks"] if x["hold"])
        assert all(e1 < s2 for (_, e1), (s2, _) in itertools.pairwise(spans))
    assert len(outcomes) == ROUNDS
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()
