"""A restoration order never retires more than it requires (red team round 7, F1): what its open purchases
may still fill counts against the requirement, under the order's lock, whether the purchases race or rest."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ledger import certificate
from tests.helpers import Api, person, project_batch, resident_id, ticket

PAYER_ID = resident_id("35062719900101003")
DEPOSIT = 100_000_00


def _world(api: Api, code: str, kind: str, decimals: int, mode: str, required: str) -> dict[str, Any]:
    api.instrument(code, kind=kind, decimals=decimals)
    court = api.participant(f"{code} 恢复性司法法院", "court")
    payer = api.participant(f"{code} 被告人", "enterprise", **person(PAYER_ID))
    seller = api.participant(f"{code} 项目业主", "enterprise")
    issuer = api.participant(f"{code} 签发机构", "issuer")
    batch = ticket(1) if kind == "forest_ticket" else project_batch(f"{code} 项目")
    api.issue(issuer["api"], seller["id"], code, "100", batch)
    api.ok(api.post("/v1/cash/deposits", {"participant_id": payer["id"], "amount": f"{DEPOSIT // 100}.00",
                                           "bank_reference": f"{code}-payer"}))
    market = f"{code}.{mode}"
    api.ok(api.post("/v1/markets", {"instrument": code, "mode": mode, "settings": {"sessions": []}}))
    api.ok(api.post(f"/v1/markets/{market}/session", {"action": "open"}))
    oid = api.ok(court["api"].post("/v1/restoration-orders", {
        "case_number": f"(2026){code}刑初7号", "case_type": "刑事附带民事公益诉讼", "defendants": [{"name": "被告人"}],
        "payer_id": payer["id"], "payer_identifier": PAYER_ID, "required_quantity": required,
        "eligible_kinds": [kind], "deadline": (date.today() + timedelta(days=30)).isoformat()}))["id"]
    return {"court": court, "payer": payer, "seller": seller, "market": market, "path": f"/v1/restoration-orders/{oid}"}


def _cash(api: Api, who: dict[str, Any]) -> tuple[int, int]:
    """(available, pending) CNY in fen."""
    b = next(x for x in api.ok(who["api"].get("/v1/holdings"))["balances"] if x["instrument"] == "CNY")
    return int(b["available"].replace(".", "")), int(b["pending"].replace(".", ""))


def _fen(money: str) -> int:
    return int(money.replace(".", ""))


def _fulfilled_exactly(api: Api, w: dict[str, Any], required: str, units: int) -> None:
    """Retired is the requirement, the payer paid for that and no more and holds nothing back, and the
    certificate names exactly that many units."""
    state = api.ok(w["court"]["api"].get(w["path"]))
    assert (state["retired_quantity"], state["remaining_quantity"], state["status"]) == (
        required, "0" if "." not in required else "0.000", "fulfilled"), state
    available, pending = _cash(api, w["payer"])
    assert (DEPOSIT - available, pending) == (_fen(state["paid"]), 0), state
    doc = api.ok(api.client.get(f"{w['path']}/certificate"))
    keys = [k["verifier_key"] for k in api.ok(api.client.get("/v1/ledger/keys"))]
    assert certificate.verify(doc, keys).retired == units
    body = json.loads(doc["note"][len(certificate.HEADER):].split("\n", 1)[0])
    assert sum(b["serial_end"] - b["serial_start"] + 1 for b in body["blocks"]) == units
    assert (body["retired_quantity"], body["order"]["required_quantity"], body["status"]) == (
        required, required, "fulfilled")


def test_fifty_parallel_takes_retire_no_more_than_required(api: Api, tmp_path: Path) -> None:
    """restore7.py: a requirement of 5, a listing of 50, fifty takes of 2 at once: two fill, the rest are
    refused before anything is held; a take of the last 1 fulfils the order."""
    w = _world(api, "FCT-RQ", "forest_ticket", 0, "listing", "5")
    payer = w["payer"]["api"]
    listing = api.ok(w["seller"]["api"].post(f"/v1/markets/{w['market']}/listings", {
        "side": "sell", "price": "15.50", "quantity": "50"}))["order"]["id"]

    def take(i: int) -> tuple[int, str]:
        r = payer.post(f"{w['path']}/takes", {"market_id": w["market"], "listing_id": listing, "quantity": "2"},
                       key=f"take-{i}")
        return r.status_code, (r.json()["order"]["status"] if r.status_code == 201 else r.json()["code"])

    with ThreadPoolExecutor(24) as pool:
        out = Counter(pool.map(take, range(50)))
    assert out == {(201, "filled"): 2, (409, "exceeds_requirement"): 48}, out
    state = api.ok(w["court"]["api"].get(w["path"]))
    assert (state["retired_quantity"], state["remaining_quantity"], state["status"]) == ("4", "1", "open")
    assert _cash(api, w["payer"])[1] == 0  # no refused take left a hold
    api.ok(payer.post(f"{w['path']}/takes", {"market_id": w["market"], "listing_id": listing, "quantity": "1"}))
    _fulfilled_exactly(api, w, "5", 5)
    # Offline, the CLI refuses the certificate with its receipts repeated (red team 7 F5, forge.py dup_receipts).
    doc = api.ok(api.client.get(f"{w['path']}/certificate"))
    key = api.ok(api.client.get("/v1/ledger/keys"))[0]["verifier_key"]
    for name, receipts, rc in (("as-issued", doc["receipts"], 0), ("dup", doc["receipts"] * 2, 1)):
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps({**doc, "receipts": receipts}, ensure_ascii=False))
        out = subprocess.run([sys.executable, "-m", "api.cli", "verify-receipt", str(f), "--key", key],
                             capture_output=True, text=True, timeout=60)
        assert (out.returncode != 0) == bool(rc), (name, out.stdout + out.stderr)
        assert ("more than one receipt" in out.stdout + out.stderr) == bool(rc), out.stdout + out.stderr


def test_resting_purchases_count_against_the_requirement(api: Api) -> None:
    """restore7b.py A: a resting purchase of the whole requirement leaves nothing for a second one, with
    no concurrency at all; a cancelled one frees its quantity again."""
    w = _world(api, "CDCER-RQ", "cdcer", 3, "continuous", "5.000")
    payer, seller = w["payer"]["api"], w["seller"]["api"]
    buy = {"market_id": w["market"], "price": "260.00", "quantity": "5.000"}
    first = api.ok(payer.post(f"{w['path']}/purchases", buy))["order"]
    assert first["status"] == "open"
    second = payer.post(f"{w['path']}/purchases", buy)
    assert (second.status_code, second.json()["code"]) == (409, "exceeds_requirement"), second.text
    assert "open purchases" in second.json()["detail"]
    api.ok(payer.post(f"/v1/markets/{w['market']}/orders/{first['id']}/cancel", {}))
    rest = [api.ok(payer.post(f"{w['path']}/purchases", {**buy, "quantity": q}))["order"] for q in ("3.000", "2.000")]
    assert [o["status"] for o in rest] == ["open", "open"]
    one_more = payer.post(f"{w['path']}/purchases", {**buy, "quantity": "0.001"})
    assert (one_more.status_code, one_more.json()["code"]) == (409, "exceeds_requirement"), one_more.text
    api.ok(seller.post(f"/v1/markets/{w['market']}/orders", {"side": "sell", "price": "260.00", "quantity": "12.000"}))
    _fulfilled_exactly(api, w, "5.000", 5000)
    depth = api.ok(api.client.get(f"/v1/markets/{w['market']}/depth"))
    assert [lvl["quantity"] for lvl in depth["asks"]] == ["7.000"]  # the seller's rest waits for someone else


def test_fifty_parallel_ioc_purchases_retire_no_more_than_required(api: Api) -> None:
    """restore7b.py B: forty resting offers of 1.000, fifty IOC purchases of 2.000 at once on 5.000."""
    w = _world(api, "CDCER-IOC", "cdcer", 3, "continuous", "5.000")
    payer, seller = w["payer"]["api"], w["seller"]["api"]
    for i in range(40):
        api.ok(seller.post(f"/v1/markets/{w['market']}/orders", {"side": "sell", "price": "260.00",
                                                                   "quantity": "1.000"}, key=f"ask-{i}"))

    def buy(i: int) -> tuple[int, str]:
        r = payer.post(f"{w['path']}/purchases", {"market_id": w["market"], "price": "260.00", "quantity": "2.000",
                                                  "tif": "ioc"}, key=f"ioc-{i}")
        return r.status_code, (r.json()["order"]["status"] if r.status_code == 201 else r.json()["code"])

    with ThreadPoolExecutor(24) as pool:
        out = Counter(pool.map(buy, range(50)))
    assert out == {(201, "filled"): 2, (409, "exceeds_requirement"): 48}, out
    assert _cash(api, w["payer"])[1] == 0
    api.ok(payer.post(f"{w['path']}/purchases", {"market_id": w["market"], "price": "260.00", "quantity": "1.000",
                                                 "tif": "ioc"}))
    _fulfilled_exactly(api, w, "5.000", 5000)


def test_a_requirement_no_eligible_instrument_can_fill_is_refused_at_creation(api: Api) -> None:
    """restore7d.py: "5.5" t of whole-unit forest tickets could never be fulfilled: 422 at creation, before
    anything is registered; with CDCER (kept in kg) eligible too, the same requirement can be met."""
    api.instrument("FCT-GRID", kind="forest_ticket", decimals=0)
    api.instrument("CDCER-GRID", kind="cdcer", decimals=3)
    court = api.participant("网格 法院", "court")
    payer = api.participant("网格 被告人", "enterprise", **person(PAYER_ID))
    body = {"case_type": "刑事附带民事公益诉讼", "defendants": [{"name": "被告人"}], "payer_id": payer["id"],
            "payer_identifier": PAYER_ID, "deadline": (date.today() + timedelta(days=30)).isoformat()}
    for n, required in enumerate(("5.5", "5.500", "0.001")):
        r = court["api"].post("/v1/restoration-orders", {**body, "case_number": f"(2026)网格{n}号",
                                                          "required_quantity": required,
                                                          "eligible_kinds": ["forest_ticket"]})
        assert (r.status_code, r.json()["code"]) == (422, "requirement_off_grid"), r.text
        assert "1 tCO2e" in r.json()["detail"]
    assert api.ok(court["api"].get("/v1/restoration-orders")) == []
    whole = api.ok(court["api"].post("/v1/restoration-orders", {**body, "case_number": "(2026)网格A号",
                                                                 "required_quantity": "5.000",
                                                                 "eligible_kinds": ["forest_ticket"]}))
    assert whole["required_quantity"] == "5"
    mixed = api.ok(court["api"].post("/v1/restoration-orders", {**body, "case_number": "(2026)网格B号",
                                                                 "required_quantity": "5.5",
                                                                 "eligible_kinds": ["forest_ticket", "cdcer"]}))
    assert mixed["required_quantity"] == "5.500"


def test_one_judgment_is_one_order_however_its_case_number_is_typed(api: Api) -> None:
    """Red team 8 F4: the same case number with full-width brackets (the official spelling of a 案号) or a
    trailing space registered a second order for the same payer: ordered to buy and retire twice."""
    w = _world(api, "RSTK", "forest_ticket", 0, "listing", "5")
    first = api.ok(w["court"]["api"].get(w["path"]))
    body = {"case_type": "刑事附带民事公益诉讼", "defendants": [{"name": "被告人"}], "payer_id": w["payer"]["id"],
            "payer_identifier": PAYER_ID, "required_quantity": "5", "eligible_kinds": ["forest_ticket"],
            "deadline": (date.today() + timedelta(days=30)).isoformat()}
    for n, spelled in enumerate(["（2026）RSTK刑初7号", "(2026)RSTK刑初7号 ", " (２０２６) RSTK刑初7号"]):
        r = w["court"]["api"].post("/v1/restoration-orders", {**body, "case_number": spelled}, key=f"dup-{n}")
        assert (r.status_code, r.json()["code"]) == (409, "duplicate_order"), (spelled, r.text)
    assert api.ok(w["court"]["api"].get(w["path"]))["id"] == first["id"]
