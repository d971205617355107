"""Bad input in every form of the portal, and in every parameter a form sends: shown back escaped (or refused
with a problem document), never executed, never a 500. The forms: the inquiry (by, q, record, lang), the
verification by code (code, lang) and by file (any file at all), the ledger's consistency check (two sizes).
The inquiry's query text itself is covered by test_browser.py::test_hostile_input_is_shown_back_escaped."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.portal.browser import Page
from tests.system.server import Server

MARKUP = ["<script>window.pwned=1</script>", "<img src=x onerror=window.pwned=1>", '"><svg onload=window.pwned=1>',
          "' OR 1=1; DROP TABLE participants; --", "javascript:window.pwned=1"]


def _query(**params: str) -> str:
    return str(httpx.QueryParams(params))


def _clean(page: Page) -> None:
    """Nothing the input carried ran, nor became markup on the page."""
    assert page.tab.evaluate("window.pwned === undefined")
    assert page.tab.locator("main script:not([type='application/json']), main img, main svg:not(.chart-box svg), "
                            "main iframe, main object").count() == 0
    # The data the server hands the page's scripts stays data: no markup inside it.
    for data in page.tab.locator("script[type='application/json']").all_inner_texts():
        assert "<" not in data, data[:200]


@pytest.mark.parametrize("bad", MARKUP)
def test_the_inquiry_s_other_fields_take_anything_and_stay_inert(page: Page, server: Server, bad: str) -> None:
    long = (bad * 50)[:1000]
    for params in ({"by": bad, "q": "三明"}, {"by": "name", "q": "三明", "record": bad},
                   {"by": "name", "q": "三明", "lang": bad}, {"by": long, "q": "三明", "record": long, "lang": long}):
        resp = page.go("/portal/inquiry?" + _query(**params))
        assert resp.status == 200, (params, resp.status)
        _clean(page)
        # An unknown field value falls back to its default: search by name, every record.
        assert page.tab.locator("input[name=by]:checked").get_attribute("value") == "name"
        assert page.tab.locator("#record").input_value() == "all"
        pdf = page.tab.locator("a.button", has_text="PDF").get_attribute("href")
        assert pdf is not None and pdf.endswith("&record=all"), pdf
        for a in page.tab.locator("a[href]").all():
            href = a.get_attribute("href") or ""
            assert not href.lower().startswith("javascript:"), href
    assert page.errors == []


@pytest.mark.parametrize("bad", [*MARKUP, "三" * 999])
def test_the_code_is_shown_back_escaped_in_its_field(page: Page, bad: str) -> None:
    resp = page.go("/portal/verify?" + _query(code=bad))
    assert resp.status == 200
    page.tab.wait_for_selector("#verdict[data-state=fail]")
    assert page.tab.get_attribute("#verdict", "data-step") == "fetch"
    assert page.tab.locator("#code").input_value() == bad.strip()
    _clean(page)
    assert page.errors == []


def test_over_long_values_are_refused_with_a_problem_document(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for path, params in (("/portal/inquiry", {"q": "x" * 1001}), ("/portal/verify", {"code": "x" * 1001}),
                             ("/portal/inquiry", {"q": "三明", "record": "x" * 1001}),
                             ("/portal/inquiry", {"q": "三明", "by": "<" * 1001}),
                             ("/portal", {"lang": "<script>" * 126})):
            r = http.get(path, params=params)
            assert r.status_code == 422, (path, r.status_code)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] in ("query_parameter_too_long", "validation_error"), r.text
        for bad, status in (("<script>alert(1)</script>", 404), ("' OR 1=1 --", 404), ("x" * 300, 422)):
            r = http.get(f"/portal/markets/{bad}")
            assert r.status_code == status, (bad, r.status_code)
            assert r.headers["content-type"].startswith("application/problem+json")


FILES: list[tuple[str, str | bytes, str]] = [
    ("markup.html", "<script>window.pwned=1</script><img src=x onerror=window.pwned=1>", "read"),
    ("binary.json", bytes(range(256)) * 4, "read"),
    ("empty.json", "", "read"),
    ("number.json", "12", "read"),
    ("deep.json", "[" * 5000 + "]" * 5000, "read"),
    ("receipt.json", json.dumps({"format": "envx-receipt-v1", "entry": "<img src=x onerror=window.pwned=1>",
                                 "index": "<svg onload=window.pwned=1>", "tree_size": "' OR 1=1 --",
                                 "inclusion_path": ["<b>"], "checkpoint": "<script>window.pwned=1</script>\n"}),
     "cp_sig"),
    ("entry.tlog-proof", "c2sp.org/tlog-proof@v1\nextra <img src=x onerror=window.pwned=1>\nindex 1\n\nx\n", "read"),
    ("search.json", json.dumps({"certificate": {"type": "envx.public-inquiry/1", "results": ["<script>"]},
                                "signature": {"note": "<img src=x onerror=window.pwned=1>\n\n— x AAAA\n"}}),
     "cert_sig"),
]


@pytest.mark.parametrize(("name", "content", "step"), FILES, ids=[f[0] for f in FILES])
def test_any_file_dropped_on_the_verification_page_fails_at_a_step_and_stays_inert(
        page: Page, tmp_path: Path, name: str, content: str | bytes, step: str) -> None:
    f = tmp_path / name
    if isinstance(content, bytes):
        f.write_bytes(content)
    else:
        f.write_text(content, "utf-8")
    assert page.verify_file(f) == ("fail", step), page.steps()
    _clean(page)
    assert page.tab.locator("#steps li[data-state=fail] .detail").inner_text()  # says why, as text
    assert page.errors == []


def test_the_consistency_check_takes_no_markup_for_a_size(page: Page) -> None:
    page.go("/portal/ledger")
    for bad in MARKUP:
        page.tab.evaluate("bad => { for (const id of ['first', 'second']) "
                          "document.getElementById(id).options[0].value = bad; }", bad)
        page.tab.evaluate("document.getElementById('verdict').removeAttribute('data-state')")
        page.tab.select_option("#first", index=0)
        page.tab.click("#consistency button[type=submit]")
        page.tab.wait_for_selector("#consistency #verdict[data-state=fail]")
        assert page.tab.get_attribute("#verdict", "data-step") == "sizes"
        assert bad in page.tab.locator("#steps li[data-step=sizes]").inner_text()
        _clean(page)
    assert page.errors == []

