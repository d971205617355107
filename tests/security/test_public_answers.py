"""Every public (no-key) endpoint of the OpenAPI document, called on demo-like data, answers without
personal identifiers, private USCCs, balances, key material or participant ids.

The rules (README "Visibility"): a company's unified social credit code is public (it is on its business
licence) and shown as the subject of a public record -- the pledgor of a pledge, the holder of a freeze or
retirement -- and nowhere else; a person's ID number never; no balance, no key, no participant id, unless
a rule says so (none does). The JSON is walked (receipts' entry bytes and metadata too) and the raw bytes
are searched for every planted secret.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from api.authz import MATRIX, PUBLIC
from exchange.core.settings import Settings
from tests.helpers import Api, ticket, uscc
from tests.pledges.helpers import Receiver
from tests.security import authz_checker as az

ID_NUMBER = "350627198807150018"          # a defendant's 居民身份证号 (also the paying person's): never public
ID_NUMBER_2 = "511827199001010020"
CASH = ("7654321.98", "765432198")        # a cash balance, in CNY and in fen
UNITS_BALANCE = "31337"                   # the owner's unit balance before anything moved
SUBJECT_USCC = uscc("93350427MA2XY8123")       # the pledgor / holder: public as the subject of its records
PRIVATE_USCCS = {                         # organisations that are never the subject of a public record here
    "bank": uscc("91350000MA31BCDE0"), "junior": uscc("91350400MA2YXW123"), "buyer": uscc("91510100MA6C8PQR2"),
    "court": uscc("11350400MB0C12345"), "issuer": uscc("11350400MB0D54321")}
# Keys naming a participant id (in any answer); actors like "participant:7" are caught by value.
ID_KEYS = {"participant_id", "pledgor_id", "pledgee_id", "claimant_id", "buyer_id", "seller_id", "payer_id",
           "court_id", "holder_id", "designated_seller_id", "to_participant", "from_participant", "bidder", "seller",
           "buyer", "participant"}
ACCOUNT_KEYS = {"account", "debit", "credit", "source", "sink", "holding_account", "cash_account"}
TODAY = date.today()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=None, pledge_webhook_allow_http=True,
                    webhook_allowed_hosts="127.0.0.1", scheduler=False)


def _days(n: int) -> str:
    return (TODAY + timedelta(days=n)).isoformat()


def _demo(api: Api) -> dict[str, Any]:
    """三明 and 南靖 in small: participants with USCCs, a pledge with a junior, a freeze, retirements,
    listings and trades, a block quote, an auction, a restoration order naming a defendant's ID number."""
    api.instrument("FCT-SM")
    assert api.post("/v1/calendars/CN/changes", {"name": "CN", "set": [  # a trading calendar (public)
        {"day": "2026-10-01", "kind": "holiday", "name": "国庆节"}]}).status_code == 201
    p = {
        "issuer": api.participant("三明市林业局", "issuer", uscc=PRIVATE_USCCS["issuer"]),
        "owner": api.participant("三明市沙县林业合作社", "enterprise", uscc=SUBJECT_USCC),
        "bank": api.participant("兴业银行三明分行", "bank", uscc=PRIVATE_USCCS["bank"]),
        "junior": api.participant("三明农村商业银行", "bank", uscc=PRIVATE_USCCS["junior"]),
        "buyer": api.participant("成都市绿色低碳发展协会", "enterprise", uscc=PRIVATE_USCCS["buyer"]),
        "court": api.participant("南靖县人民法院", "court", uscc=PRIVATE_USCCS["court"]),
        # a natural person: no USCC, a private identity document
        "payer": api.participant("张某某", "enterprise", subject="person",
                                 id_document={"type": "resident_id_card", "number": ID_NUMBER}),
    }
    a = {k: v["api"] for k, v in p.items()}
    api.issue(a["issuer"], p["owner"]["id"], "FCT-SM", UNITS_BALANCE, ticket(1))
    api.issue(a["issuer"], p["issuer"]["id"], "FCT-SM", "50", ticket(2))
    for k in ("buyer", "payer", "bank", "junior"):
        api.ok(api.post("/v1/cash/deposits", {"participant_id": p[k]["id"], "amount": CASH[0],
                                               "bank_reference": f"pub-{k}"}))
    with Receiver() as rx:  # the bank's webhook secret must never surface
        api.ok(api.client.put("/v1/pledges/webhook", json={"url": rx.url}, headers={
            "Authorization": f"Bearer {p['bank']['token']}", "Idempotency-Key": "hook"}))
        pl = api.ok(a["bank"].post("/v1/pledges", {
            "pledgor_id": p["owner"]["id"], "pledgor_identifier": SUBJECT_USCC, "instrument": "FCT-SM",
            "quantity": "300",
            "loan_contract": "兴银三明授字(2021)第0518号", "secured_amount": "5000000.00", "term_start": _days(0),
            "term_end": _days(365), "references": [{"source": "中登网", "reference": "07783201000291234567"}]}))
        api.ok(a["owner"].post(f"/v1/pledges/{pl['id']}/confirm"))
        claim = api.ok(a["junior"].post(f"/v1/pledges/{pl['id']}/claims", {
            "loan_contract": "三明农商借字2021-77", "amount": "400000.00", "term_end": _days(200)}))
        api.ok(a["owner"].post(f"/v1/pledges/claims/{claim['id']}/confirm"))
    api.ok(a["court"].post("/v1/freezes", {
        "holder_id": p["owner"]["id"], "holder_identifier": SUBJECT_USCC, "instrument": "FCT-SM", "quantity": "20",
        "case_number": "(2024)闽04执9号",
        "notice_number": "N-SECRET-9", "term_start": _days(0), "term_end": _days(90)}))
    api.ok(a["owner"].post("/v1/retirements", {"instrument": "FCT-SM", "quantity": "5", "purpose": "voluntary",
                                               "beneficiary": "三明市碳中和活动"}))
    markets = {}
    for mode, extra in (("listing", {}), ("continuous", {}), ("block", {"min_units": 1}), ("auction", {})):
        api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": mode,
                                        "settings": {"sessions": [], "t_plus_1": False, **extra}}))
        markets[mode] = f"FCT-SM.{mode}"
        api.ok(api.post(f"/v1/markets/{markets[mode]}/session", {"action": "open"}))
    lm = markets["listing"]
    listing = api.ok(a["owner"].post(f"/v1/markets/{lm}/listings", {"side": "sell", "price": "60.00",
                                                                    "quantity": "200"}))["order"]["id"]
    api.ok(a["buyer"].post(f"/v1/markets/{lm}/listings/{listing}/take", {"quantity": "10"}))
    api.ok(a["owner"].post(f"/v1/markets/{markets['continuous']}/orders", {"side": "sell", "price": "61.00",
                                                                           "quantity": "3"}))
    api.ok(a["owner"].post(f"/v1/markets/{markets['block']}/block-quotes", {"side": "sell", "price": "59.00",
                                                                            "quantity": "100"}))
    am = markets["auction"]
    auction = api.ok(a["issuer"].post(f"/v1/markets/{am}/auctions", {
        "quantity": "50", "min_price": "20.00", "increment": "1.00", "deposit": "10.00"}))["order"]["id"]
    api.ok(a["issuer"].post(f"/v1/markets/{am}/auctions/{auction}/step", {"action": "registration"}))
    api.ok(a["buyer"].post(f"/v1/markets/{am}/auctions/{auction}/register", {}))
    api.ok(a["issuer"].post(f"/v1/markets/{am}/auctions/{auction}/step", {"action": "bidding",
                                                                         "duration_seconds": 1}))
    api.ok(a["buyer"].post(f"/v1/markets/{am}/auctions/{auction}/bids", {"price": "25.00", "quantity": "50"}))
    import time

    time.sleep(1.1)
    for step in ("close", "allocate"):
        api.ok(a["issuer"].post(f"/v1/markets/{am}/auctions/{auction}/step", {"action": step}))
    order = api.ok(a["court"].post("/v1/restoration-orders", {
        "case_number": "(2022)闽0627刑初123号", "case_type": "刑事附带民事公益诉讼", "judgment_reference": "刑事判决书",
        "defendants": [{"name": "张某某", "id_number": ID_NUMBER}, {"name": "李某", "id_number": ID_NUMBER_2}],
        "payer_id": p["payer"]["id"], "payer_identifier": ID_NUMBER, "required_quantity": "96",
        "eligible_kinds": ["forest_ticket"],
        "deadline": _days(90)}))
    api.ok(a["payer"].post(f"/v1/restoration-orders/{order['id']}/takes", {
        "market_id": lm, "listing_id": listing, "quantity": "96"}))
    doc = api.ok(api.client.get(f"/v1/restoration-orders/{order['id']}/certificate"))
    from ledger.certificate import verification_code

    return {"people": p, "markets": markets, "auction": auction, "order": order["id"],
            "code": verification_code(doc["note"])}


def _calls(spec: dict[str, Any], demo: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(operationId, path, query) for every public operation, over the demo's objects and searches."""
    p = demo["people"]
    searches = [{"name": x["name"]} for x in p.values()] + [{"uscc": SUBJECT_USCC}] + [
        {"uscc": u} for u in PRIVATE_USCCS.values()] + [{"serial": s, "instrument": "FCT-SM"} for s in (1, 150, 301,
                                                                                                         999)]
    for op in az.operations(spec):
        # Public reads; the one public mutation (enroll) answers a participant with its own new key.
        if MATRIX.get(op.operation_id) is not PUBLIC or op.method != "GET":
            continue
        if op.path.startswith("/v1/public/") and op.path.removesuffix(".tlog-proof").endswith(
                ("pledges", "freezes", "retirements")):
            for q in searches:
                yield op.operation_id, op.path, q
            continue
        if op.operation_id in ("portalInquiry", "portalInquiryPdf"):  # the portal's form over the same searches
            for q in searches:
                by, value = next((k, v) for k, v in q.items() if k != "instrument")
                yield op.operation_id, op.path, {"by": by, "q": value}
            continue
        values: dict[str, list[Any]] = {"market_id": list(demo["markets"].values()), "auction_id": [demo["auction"]],
                                        "order_id": [demo["order"]],
                                        "tile_path": ["0/000.p/1"],  # a C2SP hash tile (bundles are not public)
                                        "calendar_id": ["CN"]}
        values["code"] = [demo["code"]] if op.path.startswith("/v1/public/certificates") else ["FCT-SM", "CNY"]
        paths = [op.path]
        for param in op.path_params:
            paths = [x.replace("{" + param + "}", str(v)) for x in paths for v in values[param]]
        if "/auctions/" in op.path:
            paths = [x for x in paths if x.startswith(f"/v1/markets/{demo['markets']['auction']}/")]
        if op.path.endswith("/listings"):
            paths = [x for x in paths if x.startswith(f"/v1/markets/{demo['markets']['listing']}/")]
        query: dict[str, Any] = {}
        if op.operation_id == "getInclusionProof":
            query = {"seq": 5}
        if op.operation_id == "getConsistencyProof":
            query = {"first": 3}
        for path in paths:
            yield op.operation_id, path, query


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (key path, leaf) of an answer, looking inside receipts' entries and JSON-in-strings."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield f"{path}.{k}", {"__key__": k}
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value
        inner: Any = None
        if value.startswith("{"):
            try:
                inner = json.loads(value)
            except ValueError:
                inner = None
        elif path.endswith(".entry"):
            raw = base64.b64decode(value)
            if raw.startswith((b"envx-entry/1\n", b"envx-entry/2\n")):  # both entry versions
                inner = json.loads(raw[len(b"envx-entry/1\n"):])
        if inner is not None:
            yield from _strings(inner, f"{path}<decoded>")
    else:
        yield path, value


def _problems(op: str, path: str, body: bytes, content_type: str, tokens: list[str],
              accounts: frozenset[int] = frozenset(), echo: dict[str, Any] | None = None) -> list[str]:
    """What is wrong with one public answer. `echo`: the caller's own query, which a search certificate
    repeats (not a disclosure); `accounts`: the participants' ledger accounts."""
    where = f"{op} {path} {echo or ''}"
    if body.startswith(b"c2sp.org/tlog-proof@v1\n"):
        # A .tlog-proof: scan what its extra data carries (a search certificate's JSON, or an entry's bytes).
        extras = [base64.b64decode(line[len(b"extra "):]) for line in body.split(b"\n") if line.startswith(b"extra ")]
        decoded = [json.loads(x) if x.startswith(b"{") else {"entry": base64.b64encode(x).decode()} for x in extras]
        body = json.dumps({"tlog_proof": decoded}, ensure_ascii=False).encode()
        content_type = "application/json"
    if content_type.startswith("application/pdf"):
        text = "".join(PdfReader(io.BytesIO(body)).pages[0].extract_text().replace("\x00", "").split())
    else:
        text = body.decode("utf-8", "replace")
    for v in (echo or {}).values():
        text = text.replace(f'"{v}"', '""')
        if op.startswith("portal"):  # a page or PDF shows the query back, unquoted (PDF text: without spaces)
            text = text.replace(str(v), "").replace("".join(str(v).split()), "")
    out = []
    raw_secrets = [ID_NUMBER, ID_NUMBER_2, *CASH, "whsec_", "PRIVATE+KEY", "N-SECRET-9", "兴银三明授字",
                   "5000000.00", "400000.00", "三明农商借字", *PRIVATE_USCCS.values(), *tokens]
    for s in raw_secrets:
        if s in text:
            out.append(f"{where}: names {s!r}")
    if not content_type.startswith("application/json"):
        return out
    data = json.loads(body)
    for key_path, leaf in _strings(data):
        if ".certificate.query" in key_path:
            continue
        if key_path.rsplit(".", 1)[-1] in ACCOUNT_KEYS and isinstance(leaf, int) and leaf in accounts:
            out.append(f"{where}: {key_path} = {leaf} is a participant's account")
        if isinstance(leaf, dict):
            k = leaf["__key__"]
            if k in ID_KEYS or (k == "id" and re.search(r"\.(pledgee|pledgor|holder|court|payer)\.id$", key_path)):
                out.append(f"{where}: {key_path} names a participant id")
            if k.endswith("uscc") and not re.search(r"\.(pledgor|holder)_uscc$", key_path):
                out.append(f"{where}: {key_path} is a USCC outside a record's subject")
            if k in ("balance", "balances", "available", "posted", "pending"):
                out.append(f"{where}: {key_path} is a balance")
        elif isinstance(leaf, str):
            if re.fullmatch(r"participant:\d+(:.*)?", leaf):
                out.append(f"{where}: {key_path} = {leaf!r} names a participant")
            if leaf == SUBJECT_USCC and not re.search(r"\.(pledgor|holder)_uscc$", key_path):
                out.append(f"{where}: the subject's USCC at {key_path}")
        if key_path.endswith((".quantity", ".available", ".posted")) and leaf == UNITS_BALANCE:
            out.append(f"{where}: {key_path} is the owner's unit balance")
    return out


def test_public_answers_carry_no_personal_identifiers_balances_keys_or_participant_ids(
        api: Api, client: Any) -> None:
    demo = _demo(api)
    spec = client.get("/schema/openapi.json").json()
    tokens = [x["token"] for x in demo["people"].values()] + [api.token]
    accounts = frozenset(a for x in demo["people"].values() for a in (x["holding_account"], x["cash_account"]))
    problems: list[str] = []
    seen: set[str] = set()
    subject_found = False
    for op, path, query in _calls(spec, demo):
        r = client.get(path, params=query or None)  # no key
        assert r.status_code == 200, (op, path, query, r.text[:300])
        seen.add(op)
        ctype = r.headers.get("content-type", "")
        echo = query if op.startswith(("public", "portal")) else None
        problems += _problems(op, path, r.content, ctype, tokens, accounts, echo)
        subject_found |= SUBJECT_USCC in r.text
    public_ops = {o.operation_id for o in az.operations(spec)
                  if MATRIX.get(o.operation_id) is PUBLIC and o.method == "GET"}
    assert seen == public_ops, public_ops - seen
    assert problems == [], "\n".join(problems)
    assert subject_found  # the rule is not vacuous: the subject's USCC is published where it should be


def test_the_scan_catches_what_it_looks_for() -> None:
    """The scan itself: a participant id, an ID number, a balance, a private USCC and a token are found."""
    entry = base64.b64encode(b'envx-entry/1\n{"actor":"participant:7","body":{}}').decode()
    cases = {
        "id key": {"results": [{"participant_id": 3}]},
        "nested id": {"pledgee": {"id": 3, "name": "x"}},
        "id number": {"defendants": [{"name": "张某某", "note": ID_NUMBER}]},
        "balance": {"balances": []},
        "private uscc": {"court_uscc": PRIVATE_USCCS["court"]},
        "actor in entry": {"receipts": [{"entry": entry}]},
        "token": {"x": "tok-123"},
        "account": {"receipts": [{"entry": base64.b64encode(b'envx-entry/1\n{"body":{"account":42}}').decode()}]},
    }
    for name, body in cases.items():
        found = _problems("op", "/p", json.dumps(body, ensure_ascii=False).encode(), "application/json", ["tok-123"],
                          frozenset({42}))
        assert found, name
    assert _problems("op", "/p", json.dumps({"results": [{"pledgor_uscc": SUBJECT_USCC, "quantity": "300"}]}).encode(),
                     "application/json", []) == []
