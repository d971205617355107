"""The public portal in a real browser (fixtures: tests/portal/conftest.py): inquiry, restoration
certificates verified step by step, markets live, every page on a phone, hostile input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.portal.browser import MARKET, OWNER, OWNER_USCC, PAGES, PAYER, PAYER_ID_NUMBER, Page, certificate
from tests.system.server import Server


def test_inquiry_finds_the_sanming_pledge_by_name_and_uscc_and_downloads_its_certificates(page: Page) -> None:
    for by, q in (("name", OWNER), ("uscc", OWNER_USCC)):
        page.go("/portal/inquiry")
        page.tab.check(f"input[name=by][value={by}]")
        page.tab.fill("#q", q)
        page.tab.click("button[type=submit]")
        pledges = page.tab.locator("table.results[data-record=pledges] tbody tr")
        assert pledges.count() == 1
        row = pledges.first.inner_text()
        assert OWNER in row and OWNER_USCC in row and "兴业银行三明分行" in row and "12000" in row
        html = page.tab.content()
        # What the register does not publish: the loan contract, the secured amount, the reference's bank data.
        assert "兴银三明授字" not in html and "5000000" not in html and "5,000,000" not in html
        with page.tab.expect_download() as d:
            page.tab.locator("a.button", has_text="JSON").first.click()
        cert = json.loads(Path(d.value.path()).read_text("utf-8"))
        assert cert["certificate"]["results"][0]["pledgor_uscc"] == OWNER_USCC
        with page.tab.expect_download() as d:
            page.tab.locator("a.button", has_text="PDF").click()
        assert Path(d.value.path()).read_bytes().startswith(b"%PDF")
    page.shot("inquiry-desktop")
    # The judicial retirement is found under the payer's name; the payer's ID number is never shown.
    page.go("/portal/inquiry?by=name&q=" + PAYER)
    row = page.tab.locator("table.results[data-record=retirements] tbody tr").first.inner_text()
    assert "judicial_restoration" in row and "南靖县人民法院" in row
    assert PAYER_ID_NUMBER not in page.tab.content()
    assert page.errors == []


def test_a_real_restoration_certificate_turns_green_step_by_step(page: Page, server: Server, tmp_path: Path) -> None:
    doc = certificate(server)
    f = tmp_path / "certificate.json"
    f.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    page.go("/portal/verify")
    page.tab.set_input_files("#file", str(f))
    page.tab.wait_for_selector("#verdict[data-state]")
    steps = page.tab.locator("#steps li")
    states = [(steps.nth(i).get_attribute("data-step"), steps.nth(i).get_attribute("data-state"))
              for i in range(steps.count())]
    assert page.tab.get_attribute("#verdict", "data-state") == "pass", states
    names = [s for s, _ in states]
    for wanted in ("read", "keys", "cert_sig", "body", "cp_sig", "size", "leaf", "inclusion", "entry", "meta",
                   "quantity", "amounts"):
        assert wanted in names, names
    assert all(state == "pass" for _, state in states)
    page.shot("verify-green-desktop")
    # By the code printed on the PDF, the page fetches the document and checks it the same way.
    code = hashlib.sha256(doc["note"].encode()).hexdigest()[:16]
    page.go(f"/portal/verify?code={code}")
    page.tab.wait_for_selector("#verdict[data-state]")
    assert page.tab.get_attribute("#verdict", "data-state") == "pass"
    assert page.errors == []


def _flip(text: str, at: int) -> str:
    """One character changed for another of the same base64 alphabet (the document stays well-formed)."""
    c = text[at]
    return text[:at] + ("B" if c != "B" else "C") + text[at + 1:]


@pytest.mark.parametrize(("where", "step"), [("note", "cert_sig"), ("entry", "inclusion"), ("path", "inclusion"),
                                             ("checkpoint", "cp_sig"), ("dup_receipts", "body")])
def test_a_changed_byte_turns_it_red_at_the_step_that_failed(page: Page, server: Server, tmp_path: Path,
                                                            where: str, step: str) -> None:
    doc = certificate(server)
    r = doc["receipts"][0]
    if where == "note":  # a digit of the case's figures inside the signed body
        i = doc["note"].index('"retired_quantity":"') + len('"retired_quantity":"')
        doc["note"] = doc["note"][:i] + ("7" if doc["note"][i] != "7" else "8") + doc["note"][i + 1:]
    elif where == "entry":
        r["entry"] = _flip(r["entry"], len(r["entry"]) // 2)
    elif where == "path":
        r["inclusion_path"][0] = _flip(r["inclusion_path"][0], 5)
    elif where == "dup_receipts":  # red team 7 F5 (forge.py): one receipt per entry, no copies
        doc["receipts"] = doc["receipts"] * 2
    else:  # the checkpoint's root line
        lines = r["checkpoint"].split("\n")
        lines[2] = _flip(lines[2], 3)
        r["checkpoint"] = "\n".join(lines)
    f = tmp_path / "tampered.json"
    f.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    page.go("/portal/verify")
    page.tab.set_input_files("#file", str(f))
    page.tab.wait_for_selector("#verdict[data-state]")
    assert page.tab.get_attribute("#verdict", "data-state") == "fail"
    assert page.tab.get_attribute("#verdict", "data-step") == step
    failed = page.tab.locator("#steps li[data-state=fail]")
    assert failed.count() == 1 and failed.first.get_attribute("data-step") == step
    if where == "entry":
        page.shot("verify-red-desktop")
    assert page.errors == []


def test_the_market_page_shows_the_demo_trades_and_follows_new_ones_through_a_gap(page: Page, server: Server,
                                                                                  keys: dict[str, Any]) -> None:
    m = MARKET
    page.go(f"/portal/markets/{m}")
    rows = page.tab.locator("#trades tbody tr")
    rows.first.wait_for()
    assert rows.count() == 3  # the two public Sanming sales and the Nanjing order's purchase
    assert {"15.00", "10.00"} <= set(page.tab.locator("#trades tbody tr td:nth-child(2)").all_inner_texts())
    page.tab.locator("#day-chart svg rect").first.wait_for()
    expect(page.tab.locator("#live")).not_to_contain_text("…")  # connected
    seller, buyer = keys["sanming_owner"]["api_key"], keys["lowcarbon_assoc"]["api_key"]

    def trade(n: int, price: str) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            listed = http.post(f"/v1/markets/{m}/listings", json={"side": "sell", "price": price, "quantity": "5"},
                               headers={"Authorization": f"Bearer {seller}", "Idempotency-Key": f"portal-l{n}"})
            assert listed.status_code == 201, listed.text
            took = http.post(f"/v1/markets/{m}/listings/{listed.json()['order']['id']}/take", json={"quantity": "5"},
                             headers={"Authorization": f"Bearer {buyer}", "Idempotency-Key": f"portal-t{n}"})
            assert took.status_code in (200, 201), took.text

    trade(1, "16.00")  # live, over the stream
    expect(rows).to_have_count(4)
    assert page.tab.locator("#trades tbody tr").first.locator("td").nth(1).inner_text() == "16.00"
    # A forced gap: the stream's connection drops; a trade happens meanwhile; the page reconnects and refetches it.
    page.tab.evaluate("window.EnvxMarket.socket().close()")
    trade(2, "17.00")
    expect(rows).to_have_count(5, timeout=20000)
    assert page.tab.locator("#trades tbody tr").first.locator("td").nth(1).inner_text() == "17.00"
    page.tab.locator("#closes-chart svg").wait_for()
    page.shot("market-desktop")
    assert page.errors == []


def test_every_page_is_accessible_has_no_console_errors_and_fits_a_phone(browser_context: Any, server: Server) -> None:
    for width, label in ((1280, "desktop"), (375, "phone")):
        p = Page(browser_context, server.url)
        p.tab.set_viewport_size({"width": width, "height": 800})
        for path in PAGES:
            resp = p.go(path)
            assert resp.status == 200, path
            p.tab.wait_for_load_state("networkidle")
            report = p.tab.evaluate("""() => {
              const unlabelled = [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.outerHTML);
              const charts = [...document.querySelectorAll('svg, canvas, img')]
                .filter(e => !(e.getAttribute('aria-label') || e.getAttribute('alt')
                                || e.closest('[role=img][aria-label]')))
                .map(e => e.outerHTML.slice(0, 80));
              return {lang: document.documentElement.lang, h1: document.querySelectorAll('h1').length,
                      unlabelled, charts,
                      overflow: document.documentElement.scrollWidth - window.innerWidth};
            }""")
            assert report["lang"] in ("zh-CN", "en"), (path, report)
            assert report["h1"] == 1, (path, report)
            assert report["unlabelled"] == [] and report["charts"] == [], (path, report)
            assert report["overflow"] <= 0, (path, label, report)
            p.shot(f"{path.strip('/').replace('/', '-').replace('.', '_') or 'home'}-{label}")
        # The charts are drawn (non-empty SVG) on the home page.
        p.go("/portal")
        p.tab.wait_for_selector("#totals-chart svg rect")
        assert p.errors == [], (label, p.errors)
        p.tab.close()
    # English on request, remembered in a cookie.
    p = Page(browser_context, server.url)
    p.go("/portal?lang=en")
    assert p.tab.evaluate("document.documentElement.lang") == "en" and "What the registry holds" in p.tab.content()
    p.go("/portal/inquiry")
    assert "Public inquiry" in p.tab.locator("h1").inner_text()
    p.go("/portal?lang=zh")
    p.tab.close()


@pytest.mark.parametrize("q", ["<script>window.pwned=1</script>", "' OR 1=1; DROP TABLE participants; --",
                               "<img src=x onerror=window.pwned=1>", "三" * 900, '"><svg onload=window.pwned=1>'])
def test_hostile_input_is_shown_back_escaped_never_executed(page: Page, server: Server, q: str) -> None:
    for by in ("name", "uscc", "serial"):
        resp = page.tab.goto(server.url + "/portal/inquiry?" + httpx.QueryParams({"by": by, "q": q}).__str__())
        assert resp.status == 200
        assert page.tab.evaluate("window.pwned === undefined")
        shown = page.tab.locator("#results q.echo")
        assert shown.count() >= 1 and shown.first.inner_text() == q.strip()
        assert page.tab.locator("#results script, #results img, #results svg").count() == 0
    resp = page.tab.goto(server.url + "/portal/verify?" + httpx.QueryParams({"code": q}).__str__())
    assert resp.status == 200 and page.tab.evaluate("window.pwned === undefined")
    # The PDF of a refused search is a 422 problem document saying why, never a 500.
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.get("/portal/inquiry.pdf", params={"by": "uscc", "q": q})
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "invalid_uscc"
