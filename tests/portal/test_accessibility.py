"""Accessibility, checked in the browser by axe-core (the axe-playwright-python package bundles axe's JS; nothing
is downloaded at run time): no serious or critical violation on any page, in Chinese and in English, at
desktop and phone width, with results on the page; and the inquiry form used with the keyboard alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.portal.browser import OWNER_USCC, PAGES, Page, certificate
from tests.system.server import Server

AXE = Axe()
# Pages in the states a visitor sees them in, beyond their first view.
STATES = [*PAGES, f"/portal/inquiry?by=uscc&q={OWNER_USCC}", "/portal/inquiry?by=uscc&q=%3Cb%3Ex",
          "/portal/verify?code=zz"]


def _violations(page: Page) -> list[dict[str, Any]]:
    page.tab.wait_for_load_state("networkidle")
    results = AXE.run(page.tab, options={"resultTypes": ["violations"]})
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["html"][:160] for n in v["nodes"][:5]]}
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_no_serious_or_critical_axe_violation_on_any_page(browser_context: Any, server: Server, lang: str) -> None:
    p = Page(browser_context, server.url)
    try:
        found = {}
        for width in (1280, 375):
            p.tab.set_viewport_size({"width": width, "height": 800})
            for path in STATES:
                p.go(path + ("&" if "?" in path else "?") + f"lang={lang}")
                assert p.tab.evaluate("document.documentElement.lang") == ("zh-CN" if lang == "zh" else "en")
                if v := _violations(p):
                    found[f"{path} @{width}"] = v
        assert found == {}
        assert p.errors == []
    finally:
        p.go("/portal?lang=zh")
        p.tab.close()


def test_the_verification_and_consistency_results_pass_axe_too(page: Page, server: Server, tmp_path: Any) -> None:
    doc = certificate(server)
    good = tmp_path / "certificate.json"
    good.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    doc["receipts"][0]["entry"] = doc["receipts"][0]["entry"][:40] + "B" + doc["receipts"][0]["entry"][41:]
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    for lang in ("zh", "en"):
        page.go(f"/portal?lang={lang}")
        for f, verdict in ((good, "pass"), (bad, "fail")):
            assert page.verify_file(f)[0] == verdict
            assert _violations(page) == [], (lang, verdict)
        page.go("/portal/ledger")
        page.tab.click("#consistency button[type=submit]")
        page.tab.wait_for_selector("#consistency #verdict[data-state=pass]")
        assert _violations(page) == [], lang
    page.go("/portal?lang=zh")
    assert page.errors == []


def _focused(page: Page) -> dict[str, Any]:
    """What has the keyboard focus, and whether it is visibly marked (an outline)."""
    return dict(page.tab.evaluate("""() => {
      const e = document.activeElement, s = getComputedStyle(e);
      return {tag: e.tagName.toLowerCase(), id: e.id, name: e.getAttribute('name'), value: e.value || null,
              text: (e.innerText || '').trim().slice(0, 40), href: e.getAttribute('href'),
              outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2};
    }"""))


def _tab_to(page: Page, wanted: Any, limit: int = 40) -> dict[str, Any]:
    for _ in range(limit):
        page.tab.keyboard.press("Tab")
        f = _focused(page)
        if wanted(f):
            return f
    raise AssertionError("never reached with Tab")


def test_the_inquiry_form_works_with_the_keyboard_alone(page: Page) -> None:
    page.go("/portal/inquiry")
    # The first Tab reaches the skip link; Enter on it moves the focus to the main content.
    page.tab.keyboard.press("Tab")
    skip = _focused(page)
    assert skip["href"] == "#main" and skip["outline"], skip
    page.tab.keyboard.press("Enter")
    assert _focused(page)["id"] == "main"
    # Into the form: the search-by radios (arrow keys choose), the query, the record, the button.
    radio = _tab_to(page, lambda f: f["name"] == "by")
    assert radio["value"] == "name" and radio["outline"], radio
    page.tab.keyboard.press("ArrowRight")
    assert _focused(page)["value"] == "uscc"
    q = _tab_to(page, lambda f: f["id"] == "q")
    assert q["outline"], q
    page.tab.keyboard.type(OWNER_USCC.lower())
    record = _tab_to(page, lambda f: f["id"] == "record")
    assert record["outline"], record
    page.tab.keyboard.press("ArrowDown")  # all records -> pledges
    assert page.tab.evaluate("document.getElementById('record').value") == "pledges"
    button = _tab_to(page, lambda f: f["tag"] == "button")
    assert button["outline"], button
    page.tab.keyboard.press("Enter")
    page.tab.wait_for_selector("table.results[data-record=pledges]")
    rows = page.tab.locator("table.results[data-record=pledges] tbody tr")
    assert rows.count() == 1 and OWNER_USCC in rows.first.inner_text()
    assert "record=pledges" in page.tab.url and "by=uscc" in page.tab.url
    # The downloads are reached and started with the keyboard too.
    link = _tab_to(page, lambda f: f["tag"] == "a" and "JSON" in f["text"])
    assert link["outline"], link
    with page.tab.expect_download() as d:
        page.tab.keyboard.press("Enter")
    assert json.loads(Path(d.value.path()).read_text("utf-8"))["certificate"]["query"] == {"uscc": OWNER_USCC}
    # The results table scrolls sideways on a phone: it takes the focus, so arrow keys scroll it.
    region = _tab_to(page, lambda f: f["tag"] == "div" and f["outline"])
    assert region["text"]
    assert page.errors == []
