"""Court restoration orders end to end: 南靖 (47.07 t assessed x 2, 96 t retired) and 宝兴 (24,000 kg)."""

from __future__ import annotations

import base64
import copy
import io
import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader

from ledger import certificate
from tests.helpers import Api, person, project_batch, resident_id

PAYER_ID = resident_id("35062719880715001")  # the defendant who pays: a natural person


def _setup(api: Api, code: str = "CCER", kind: str = "ccer", decimals: int = 0) -> dict:
    api.instrument(code, kind=kind, decimals=decimals)
    court = api.participant("南靖县人民法院", "court")
    payer = api.participant("南靖 滥伐林木案 被告人", "enterprise", **person(PAYER_ID))
    seller = api.participant("福建某林场 (CCER 项目业主)", "enterprise")
    issuer = api.participant("生态环境部", "issuer")
    api.issue(issuer["api"], seller["id"], code, "500" if decimals == 0 else "500.000", project_batch("福建林业碳汇"))
    api.ok(api.post("/v1/cash/deposits", {"participant_id": payer["id"], "amount": "10000.00", "bank_reference": "p"}))
    return {"court": court, "payer": payer, "seller": seller}


def _keys(api: Api) -> list[str]:
    return [k["verifier_key"] for k in api.ok(api.client.get("/v1/ledger/keys"))]


def test_nanjing_order_take_certificate_and_pdf(api: Api, tmp_path: Path) -> None:
    w = _setup(api)
    court, payer, seller = w["court"]["api"], w["payer"]["api"], w["seller"]["api"]
    api.ok(api.post("/v1/markets", {"instrument": "CCER", "mode": "listing", "settings": {"sessions": []}}))
    api.ok(api.post("/v1/markets/CCER.listing/session", {"action": "open"}))
    listing = api.ok(seller.post("/v1/markets/CCER.listing/listings", {"side": "sell", "price": "60.00",
                                                                        "quantity": "200"}))["order"]["id"]
    assert payer.post("/v1/restoration-orders", {}).status_code in (403, 422)  # only courts register orders
    order = api.ok(court.post("/v1/restoration-orders", {
        "case_number": "(2022)闽0627刑初123号", "case_type": "刑事附带民事公益诉讼", "judgment_reference": "刑事判决书",
        "defendants": [{"name": "被告人甲"}], "payer_id": w["payer"]["id"], "payer_identifier": PAYER_ID,
        "assessed_loss": "47.07",
        "assessment_method": "林业碳汇损失评估", "assessing_body": "福建省林业调查规划院", "multiplier": "2",
        "required_quantity": "96", "eligible_kinds": ["ccer", "forest_ticket"],
        "deadline": (date.today() + timedelta(days=90)).isoformat()}))
    oid = order["id"]
    # Only whole-tonne credits (CCER here, forest tickets) can fill it: whole tonnes, as they are traded.
    assert (order["required_quantity"], order["retired_quantity"], order["status"]) == ("96", "0", "open")
    assert (order["assessed_loss"], order["unit"]) == ("47.07", "tCO2e")
    too_much = payer.post(f"/v1/restoration-orders/{oid}/takes", {"market_id": "CCER.listing",
                                                                  "listing_id": listing, "quantity": "97"})
    assert too_much.status_code == 409 and too_much.json()["code"] == "exceeds_requirement"
    api.ok(payer.post(f"/v1/restoration-orders/{oid}/takes", {"market_id": "CCER.listing", "listing_id": listing,
                                                               "quantity": "96"}))
    state = api.ok(court.get(f"/v1/restoration-orders/{oid}"))
    assert (state["retired_quantity"], state["status"], state["paid"]) == ("96", "fulfilled", "5760.00")
    # The units arrived retired: the payer holds none of them, and nothing can move them.
    hb = api.ok(payer.get("/v1/holdings"))
    assert [b for b in hb["balances"] if b["instrument"] == "CCER"] == []
    doc = api.ok(api.client.get(f"/v1/restoration-orders/{oid}/certificate"))
    body = json.loads(doc["note"][len(certificate.HEADER):].split("\n", 1)[0])
    start, end = body["blocks"][0]["serial_start"], body["blocks"][0]["serial_end"]
    assert end - start + 1 == 96
    for path, payload in (("/v1/transfers", {"to_participant": w["seller"]["id"], "instrument": "CCER",
                                             "quantity": "96", "serials": [{"start": start, "end": end}]}),):
        r = payer.post(path, payload)
        assert r.status_code == 409 and r.json()["code"] in ("serials_not_available", "insufficient_available")
    sell = payer.post("/v1/markets/CCER.listing/listings", {"side": "sell", "price": "60.00", "quantity": "1"})
    assert sell.status_code == 409 and sell.json()["code"] == "insufficient_available"
    # Nor can a bank take them as collateral: filing may be accepted, the lock never is.
    bank = api.participant("兴业银行", "bank")
    filed = bank["api"].post("/v1/pledges", {
        "pledgor_id": w["payer"]["id"], "pledgor_identifier": PAYER_ID, "instrument": "CCER", "quantity": "96",
        "serials": [{"start": start, "end": end}], "loan_contract": "L-1", "secured_amount": "1000.00",
        "term_start": date.today().isoformat(), "term_end": (date.today() + timedelta(days=365)).isoformat()})
    if filed.status_code in (200, 201):
        lock = payer.post(f"/v1/pledges/{filed.json()['id']}/confirm", {})
        assert lock.status_code == 409, lock.text
    else:
        assert filed.status_code in (409, 422), filed.text

    keys = _keys(api)
    verified = certificate.verify(doc, keys)
    assert verified.retired == 96 and verified.body["order"]["case_number"] == "(2022)闽0627刑初123号"
    # Offline, with the CLI, after the server is gone: only Python, cryptography and the key.
    f = tmp_path / "certificate.json"
    f.write_text(json.dumps(doc, ensure_ascii=False))
    pub = api.ok(api.client.get(f"/v1/public/certificates/{verified.code}"))
    assert pub["valid"] is True

    pdf = api.client.get(f"/v1/restoration-orders/{oid}/certificate.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"].startswith("application/pdf")
    (tmp_path / "certificate.pdf").write_bytes(pdf.content)
    # pypdf leaves the high byte of each UTF-16 code as NUL for this CID font; pdftotext reads it cleanly.
    text = "".join(PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text().replace("\x00", "").split())
    for needle in ("购买碳减排量用于替代性生态修复见证", "南靖县人民法院", "(2022)闽0627刑初123号", "96",
                   verified.code):
        assert needle in text, needle
    out = subprocess.run([sys.executable, "-m", "api.cli", "verify-receipt", str(f), "--key", keys[0]],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK" in out.stdout


def _tamper_cases(doc: dict, other_receipt: dict) -> list[tuple[str, dict]]:
    out = []
    t = copy.deepcopy(doc)
    t["note"] = t["note"].replace('"retired_quantity":"96"', '"retired_quantity":"960"')
    out.append(("bad_signature", t))
    t = copy.deepcopy(doc)
    t["receipts"][0]["inclusion_path"][0] = base64.b64encode(bytes(32)).decode()
    out.append(("inclusion_failed", t))
    t = copy.deepcopy(doc)
    other = copy.deepcopy(other_receipt)
    other["metadata"]["seq"] = t["receipts"][0]["metadata"]["seq"]
    t["receipts"][0] = other  # a receipt of some other entry, passed off as the retirement
    out.append(("wrong_entry", t))
    t = copy.deepcopy(doc)
    t["receipts"] = doc["receipts"] * 2  # red team 7 F5 (forge.py dup_receipts): one receipt per entry
    out.append(("duplicate_receipt", t))
    t = copy.deepcopy(doc)
    t["receipts"] = [*doc["receipts"], other_receipt]  # a genuine receipt of an entry no block names
    out.append(("unexpected_receipt", t))
    return out


def test_tampered_or_unretired_certificates_fail_with_a_reason(api: Api) -> None:
    w = _setup(api)
    court, payer, seller = w["court"]["api"], w["payer"]["api"], w["seller"]["api"]
    api.ok(api.post("/v1/markets", {"instrument": "CCER", "mode": "listing", "settings": {"sessions": []}}))
    api.ok(api.post("/v1/markets/CCER.listing/session", {"action": "open"}))
    listing = api.ok(seller.post("/v1/markets/CCER.listing/listings", {"side": "sell", "price": "60.00",
                                                                        "quantity": "200"}))["order"]["id"]
    oid = api.ok(court.post("/v1/restoration-orders", {
        "case_number": "(2022)闽0627刑初123号", "case_type": "刑事", "defendants": [{"name": "甲"}],
        "payer_id": w["payer"]["id"], "payer_identifier": PAYER_ID, "required_quantity": "96",
        "eligible_kinds": ["ccer"],
        "deadline": (date.today() + timedelta(days=30)).isoformat()}))["id"]
    api.ok(payer.post(f"/v1/restoration-orders/{oid}/takes", {"market_id": "CCER.listing", "listing_id": listing,
                                                               "quantity": "96"}))
    doc = api.ok(api.client.get(f"/v1/restoration-orders/{oid}/certificate"))
    keys = _keys(api)
    # A transfer: its receipt is genuine, but the entry is not a judicial retirement.
    t = api.ok(seller.post("/v1/transfers", {"to_participant": w["payer"]["id"], "instrument": "CCER",
                                             "quantity": "1"}))
    transfer_receipt = api.ok(seller.get(f"/v1/ledger/entries/{t['entry_seq']}/receipt"))
    not_retired = copy.deepcopy(doc)
    not_retired["receipts"] = [transfer_receipt]
    body = json.loads(doc["note"][len(certificate.HEADER):].split("\n", 1)[0])
    body["blocks"] = [{**body["blocks"][0], "entry_seq": t["entry_seq"]}]
    signer = api.client.app.state.rt.verifiable.signer  # even a registry-signed body cannot make a transfer count
    not_retired["note"] = certificate.sign_body(body, signer)
    with pytest.raises(certificate.CertificateError) as e:
        certificate.verify(not_retired, keys)
    assert e.value.code == "not_retired"
    for code, bad in _tamper_cases(doc, transfer_receipt):
        with pytest.raises(certificate.CertificateError) as e:
            certificate.verify(bad, keys)
        assert e.value.code == code, (code, e.value)


def test_baoxing_24000_kg_bought_in_parts_on_the_book(api: Api) -> None:
    """宝兴 2022: six defendants, 24,000 kg CO2e via 四川联合环境交易所, bought in two fills."""
    api.instrument("CDCER", kind="cdcer", decimals=3)
    court = api.participant("宝兴县人民法院", "court")
    payer = api.participant("宝兴 盗伐林木案 被告人 (六人)", "enterprise", **person(resident_id("51182719850101002")))
    s1, s2 = api.participant("项目业主一", "enterprise"), api.participant("项目业主二", "enterprise")
    issuer = api.participant("成都市生态环境局", "issuer")
    for year, s in enumerate((s1, s2), start=2021):
        api.issue(issuer["api"], s["id"], "CDCER", "30", project_batch("碳惠天府 林业", year))
    api.ok(api.post("/v1/cash/deposits", {"participant_id": payer["id"], "amount": "5000.00", "bank_reference": "p"}))
    api.ok(api.post("/v1/markets", {"instrument": "CDCER", "mode": "continuous", "settings": {"sessions": []}}))
    m = "CDCER.continuous"
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "open"}))
    api.ok(s1["api"].post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "80.00", "quantity": "10"}))
    api.ok(s2["api"].post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "82.00", "quantity": "30"}))
    oid = api.ok(court["api"].post("/v1/restoration-orders", {
        "case_number": "(2022)川1827刑初X号", "case_type": "刑事附带民事公益诉讼",
        "defendants": [{"name": f"被告人{i}"} for i in range(1, 7)], "payer_id": payer["id"],
        "payer_identifier": payer["id_document"]["number"],
        "required_quantity": "24", "eligible_kinds": ["cdcer", "ccer"],
        "deadline": (date.today() + timedelta(days=5)).isoformat()}))["id"]
    first = api.ok(payer["api"].post(f"/v1/restoration-orders/{oid}/purchases",
                                     {"market_id": m, "price": "82.00", "quantity": "24"}))
    assert first["order"]["status"] == "filled"  # 10 t at 80.00 and 14 t at 82.00
    state = api.ok(court["api"].get(f"/v1/restoration-orders/{oid}"))
    assert (state["retired_quantity"], state["status"], state["fills"]) == ("24.000", "fulfilled", 2)
    assert state["paid"] == "1948.00"  # 10 x 80 + 14 x 82
    doc = api.ok(api.client.get(f"/v1/restoration-orders/{oid}/certificate"))
    assert certificate.verify(doc, _keys(api)).retired == 24_000  # kg: CDCER is kept to 3 decimals
    rt = api.client.app.state.rt
    from exchange.courts import restoration

    # Deadline reminders: none for a fulfilled order.
    assert api.client.blocking_portal.call(restoration.reminders, rt) == 0


def test_judicial_retirement_is_public_under_the_payer_with_receipts_for_payer_and_court(api: Api) -> None:
    """Issue #14: the public record names the payer, court and case; payer and court get the receipts;
    the payer's holdings list the retired blocks; the defendant's ID number is in no public answer."""
    w = _setup(api)
    court, payer, seller = w["court"]["api"], w["payer"]["api"], w["seller"]["api"]
    other_court = api.participant("顺昌县人民法院", "court")
    stranger = api.participant("无关企业", "enterprise")
    id_number = "350627198807150012"
    api.ok(api.post("/v1/markets", {"instrument": "CCER", "mode": "listing", "settings": {"sessions": []}}))
    api.ok(api.post("/v1/markets/CCER.listing/session", {"action": "open"}))
    listing = api.ok(seller.post("/v1/markets/CCER.listing/listings", {"side": "sell", "price": "60.00",
                                                                        "quantity": "200"}))["order"]["id"]
    oid = api.ok(court.post("/v1/restoration-orders", {
        "case_number": "(2022)闽0627刑初123号", "case_type": "刑事附带民事公益诉讼",
        "defendants": [{"name": "被告人甲", "id_number": id_number}], "payer_id": w["payer"]["id"],
        "payer_identifier": PAYER_ID, "required_quantity": "96", "eligible_kinds": ["ccer"],
        "deadline": (date.today() + timedelta(days=30)).isoformat()}))["id"]
    # Before anything is retired the public certificate answers as for an order that does not exist.
    none, unknown = api.client.get(f"/v1/restoration-orders/{oid}/certificate"), \
        api.client.get("/v1/restoration-orders/999/certificate")
    assert (none.status_code, none.json()["code"]) == (unknown.status_code, unknown.json()["code"]) == (
        404, "not_found")
    # Another court, or a stranger, is told the order does not exist -- before its state is looked at.
    for who, path, body in ((other_court["api"], f"/v1/restoration-orders/{oid}", None),
                            (stranger["api"], f"/v1/restoration-orders/{oid}/takes",
                             {"market_id": "CCER.listing", "listing_id": listing, "quantity": "1"})):
        r = who.get(path) if body is None else who.post(path, body)
        assert (r.status_code, r.json()["code"]) == (404, "not_found"), r.text
    # The court sees the order but may not buy for it: 403 (the party), not a state refusal.
    r = court.post(f"/v1/restoration-orders/{oid}/takes", {"market_id": "CCER.listing", "listing_id": listing,
                                                           "quantity": "1000"})
    assert r.status_code == 403, r.text
    api.ok(payer.post(f"/v1/restoration-orders/{oid}/takes", {"market_id": "CCER.listing", "listing_id": listing,
                                                               "quantity": "96"}))
    assert id_number not in json.dumps(api.ok(payer.get(f"/v1/restoration-orders/{oid}")))
    assert api.ok(court.get(f"/v1/restoration-orders/{oid}"))["defendants"][0]["id_number"] == id_number

    # 公示查询 by the payer's whole name finds the retirement, naming payer, court, case and purpose.
    ret = api.ok(api.client.get("/v1/public/retirements", params={"name": "南靖 滥伐林木案 被告人"}))
    [row] = ret["certificate"]["results"]
    assert (row["holder"], row["court"], row["case_number"], row["purpose"]) == (
        "南靖 滥伐林木案 被告人", "南靖县人民法院", "(2022)闽0627刑初123号", "judicial_restoration")
    assert row["beneficiary"] == "南靖县人民法院 (2022)闽0627刑初123号 替代性生态修复"
    assert row["serial_end"] - row["serial_start"] + 1 == 96
    by_serial = api.ok(api.client.get("/v1/public/retirements", params={"serial": row["serial_start"]}))
    assert by_serial["certificate"]["results"] == [row]

    # Receipts of the retirement entry: the payer and the ordering court; not the seller or another court.
    seq = row["entry_seq"]
    keys = _keys(api)
    for who in (payer, court):
        from ledger.receipt import verify_receipt

        verify_receipt(api.ok(who.get(f"/v1/ledger/entries/{seq}/receipt")), keys)
        proof = who.get(f"/v1/ledger/entries/{seq}/tlog-proof")  # the same rule for either shape (round 4, F12)
        assert proof.status_code == 200 and proof.text.startswith("c2sp.org/tlog-proof@v1"), proof.text
    for who in (seller, other_court["api"], stranger["api"]):
        r, u = who.get(f"/v1/ledger/entries/{seq}/receipt"), who.get("/v1/ledger/entries/999999/receipt")
        assert (r.status_code, r.json()["code"]) == (u.status_code, u.json()["code"]) == (404, "not_found")
        assert who.get(f"/v1/ledger/entries/{seq}/tlog-proof").status_code == 404

    # Holdings: the payer's list the retired blocks (state retired, purpose, beneficiary); nothing is held.
    held = api.ok(payer.get("/v1/holdings"))
    assert [(b["state"], b["purpose"], b["quantity"]) for b in held["blocks"]] == [
        ("retired", "judicial_restoration", "96")]
    assert held["blocks"][0]["beneficiary"] == row["beneficiary"] and held["blocks"][0]["retired_seq"] == seq
    assert not [b for b in held["balances"] if b["instrument"] == "CCER"]
    # An ordinary retirement is listed with its holder too.
    api.ok(seller.post("/v1/retirements", {"instrument": "CCER", "quantity": "4", "purpose": "voluntary",
                                           "beneficiary": "福建某林场 2025 年碳中和"}))
    mine = [b for b in api.ok(seller.get("/v1/holdings"))["blocks"] if b["state"] == "retired"]
    assert [(b["purpose"], b["beneficiary"], b["quantity"]) for b in mine] == [
        ("voluntary", "福建某林场 2025 年碳中和", "4")]
    assert not [b for b in api.ok(seller.get("/v1/holdings"))["blocks"] if b.get("purpose") == "judicial_restoration"]

    # The certificate (JSON, PDF, public check) names the defendant, never the ID number; no participant ids.
    doc = api.ok(api.client.get(f"/v1/restoration-orders/{oid}/certificate"))
    verified = certificate.verify(doc, keys)
    assert verified.body["order"]["defendants"] == [{"name": "被告人甲"}]
    pub = api.ok(api.client.get(f"/v1/public/certificates/{verified.code}"))
    pdf = api.client.get(f"/v1/restoration-orders/{oid}/certificate.pdf").content
    for raw in (json.dumps(doc), json.dumps(pub), pdf.decode("latin-1")):
        assert id_number not in raw
    meta = json.loads(doc["receipts"][0]["metadata"]["meta"])
    assert not {"buyer", "seller"} & meta.keys() and meta["restoration"]["restoration_order"] == oid


def test_the_verifier_checks_that_value_and_fee_make_paid() -> None:
    """The money check of ledger.certificate (after the signature and receipts): per block value + fee =
    paid, an entry's values = its price x quantity, the totals the sums; certificates from before fees
    were itemised (no `value`) are checked without it."""
    def block(value: str, fee: str, paid: str, qty: str = "2", price: str = "60.00") -> dict:
        return {"serial_start": 1, "serial_end": 2, "quantity": qty, "price": price, "value": value, "fee": fee,
                "paid": paid}

    good = {"totals": {"value": "120.00", "fees": "0.36", "paid": "120.36"}, "paid": "120.36"}
    certificate._check_money(good, {7: [block("120.00", "0.36", "120.36")]})
    certificate._check_money({"paid": "1.00"}, {7: [{"serial_start": 1, "serial_end": 1, "quantity": "1"}]})
    for body, blocks, why in (
            (good, [block("120.00", "0.36", "120.00")], "value + fee is not paid"),
            (good, [block("119.00", "1.36", "120.36")], "value is not price x quantity"),
            ({**good, "paid": "120.00"}, [block("120.00", "0.36", "120.36")], "paid is not the total"),
            ({**good, "totals": {**good["totals"], "fees": "0.00"}}, [block("120.00", "0.36", "120.36")],
             "fees total"),
            (good, [block("120.00", "0.36", "120.36", price="60")], "a price not in CNY")):
        with pytest.raises(certificate.CertificateError):
            certificate._check_money(body, {7: blocks})
        assert why
