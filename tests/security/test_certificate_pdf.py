"""The restoration certificate's PDF is rendered once per certificate and then served as stored bytes,
to everyone alike (the Host header of a request does not get into them); a further retirement makes a
new certificate and so a new PDF."""

from __future__ import annotations

import asyncio
import io
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from pypdf import PdfReader

from exchange.courts import certificates
from tests.helpers import Api, person, project_batch, resident_id
from tests.security.helpers import sql


def _fulfil(api: Api, quantity: str) -> dict[str, Any]:
    api.instrument("CCER-PDF", kind="ccer")
    court = api.participant("南靖县人民法院", "court")
    payer = api.participant("被告人", "enterprise", **person(resident_id("35062719900101003")))
    seller = api.participant("林场", "enterprise")
    issuer = api.participant("生态环境部", "issuer")
    api.issue(issuer["api"], seller["id"], "CCER-PDF", "100", project_batch("福建林业碳汇"))
    api.ok(api.post("/v1/cash/deposits", {"participant_id": payer["id"], "amount": "10000.00", "bank_reference": "p"}))
    api.ok(api.post("/v1/markets", {"instrument": "CCER-PDF", "mode": "listing", "settings": {"sessions": []}}))
    api.ok(api.post("/v1/markets/CCER-PDF.listing/session", {"action": "open"}))
    listing = api.ok(seller["api"].post("/v1/markets/CCER-PDF.listing/listings",
                                        {"side": "sell", "price": "60.00", "quantity": "50"}))["order"]["id"]
    oid = api.ok(court["api"].post("/v1/restoration-orders", {
        "case_number": "(2022)闽0627刑初1号", "case_type": "刑事", "defendants": [{"name": "甲"}],
        "payer_id": payer["id"], "payer_identifier": payer["id_document"]["number"], "required_quantity": "20",
        "eligible_kinds": ["ccer"],
        "deadline": (date.today() + timedelta(days=30)).isoformat()}))["id"]
    api.ok(payer["api"].post(f"/v1/restoration-orders/{oid}/takes", {"market_id": "CCER-PDF.listing",
                                                                      "listing_id": listing, "quantity": quantity}))
    return {"order": oid, "payer": payer, "listing": listing}


def _text(pdf: bytes) -> str:
    return "".join(PdfReader(io.BytesIO(pdf)).pages[0].extract_text().replace("\x00", "").split())


def test_the_pdf_is_rendered_once_and_served_as_stored_bytes(api: Api, client: TestClient,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    w = _fulfil(api, "20")
    renders: list[str] = []
    real = certificates.render_pdf

    def counting(doc: dict[str, Any], url: str) -> bytes:
        renders.append(url)
        return real(doc, url)

    monkeypatch.setattr(certificates, "render_pdf", counting)
    path = f"/v1/restoration-orders/{w['order']}/certificate.pdf"

    async def at_once() -> list[httpx.Response]:  # five readers while it is being rendered
        transport = httpx.ASGITransport(app=client.app, client=("testclient", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return list(await asyncio.gather(*(c.get(path, headers={"Host": "evil.example"}) for _ in range(5))))

    first = client.blocking_portal.call(at_once)
    assert {r.status_code for r in first} == {200} and len({r.content for r in first}) == 1
    again = client.get(path)
    assert again.status_code == 200 and again.content == first[0].content
    assert len(renders) == 1  # five concurrent readers and a later one: one rendering
    assert sql(client, "SELECT count(*) FROM restoration_certificate_pdfs")[0][0] == 1
    text = _text(again.content)
    assert "evil.example" not in text and "127.0.0.1:8000/v1/public/certificates/" in text  # settings, not Host


def test_a_further_retirement_makes_a_new_certificate_and_pdf(api: Api, client: TestClient) -> None:
    w = _fulfil(api, "5")  # partly fulfilled: 5 of 20 t
    path = f"/v1/restoration-orders/{w['order']}/certificate.pdf"
    partial = client.get(path)
    assert partial.status_code == 200 and "部分履行" in _text(partial.content)
    assert client.get(path).content == partial.content
    api.ok(w["payer"]["api"].post(f"/v1/restoration-orders/{w['order']}/takes", {
        "market_id": "CCER-PDF.listing", "listing_id": w["listing"], "quantity": "15"}))
    full = client.get(path)
    assert full.status_code == 200 and full.content != partial.content
    assert "已履行" in _text(full.content) and "20tCO2e" in _text(full.content)
    assert sql(client, "SELECT count(*) FROM restoration_certificate_pdfs")[0][0] == 2
