"""Verification in the browser of what the registry hands out besides restoration certificates: a ledger
receipt (JSON and C2SP .tlog-proof), a search certificate (查询证明) downloaded from the inquiry (JSON, and the
JSON attached to its PDF), and the ledger explorer's consistency check between two checkpoints. Each is
green step by step when true, and red at the step a changed byte breaks.

The page fetches only the published keys; a tampering server is played by Playwright's request routing,
which hands the page altered answers."""

from __future__ import annotations

import io
import itertools
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from ledger.note import Signer, sign_note
from tests.portal.browser import OWNER_USCC, Page, certificate
from tests.system.server import Server


def _flip(text: str, at: int) -> str:
    """One character changed for another of the base64 alphabet (the document stays well-formed)."""
    return text[:at] + ("B" if text[at] != "B" else "C") + text[at + 1:]


def _receipt_seq(server: Server) -> int:
    """The demo's judicial retirement: its ledger entry, whose receipt its payer may fetch."""
    return int(certificate(server)["receipts"][0]["metadata"]["seq"])


def _get(server: Server, path: str, token: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        r = http.get(path, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return r


RECEIPT_STEPS = ["read", "keys", "cp_sig", "size", "leaf", "inclusion", "decode"]


@pytest.mark.parametrize(("where", "step"), [(None, None), ("entry", "inclusion"), ("path", "inclusion"),
                                             ("index", "inclusion"), ("tree_size", "size"),
                                             ("root", "cp_sig"), ("signature", "cp_sig"), ("origin", "cp_sig")])
def test_a_json_ledger_receipt_is_green_step_by_step_and_red_where_a_byte_changed(
        page: Page, server: Server, keys: dict[str, Any], tmp_path: Path, where: str | None, step: str | None) -> None:
    seq = _receipt_seq(server)
    doc = _get(server, f"/v1/ledger/entries/{seq}/receipt", keys["nanjing_defendant"]["api_key"]).json()
    assert doc["format"] == "envx-receipt-v1" and doc["index"] == seq - 1
    if where == "entry":
        doc["entry"] = _flip(doc["entry"], len(doc["entry"]) // 2)
    elif where == "path":
        doc["inclusion_path"][-1] = _flip(doc["inclusion_path"][-1], 7)
    elif where == "index":
        doc["index"] += 1
    elif where == "tree_size":
        doc["tree_size"] += 1
    elif where == "origin":  # validly signed with the registry's own key, but the checkpoint of another log
        signer = Signer.from_key_string((server.data_dir / "signing.key").read_text().strip())
        body = doc["checkpoint"].split("\n\n")[0].split("\n", 1)[1]
        doc["checkpoint"] = sign_note("other.example/log\n" + body + "\n", signer)
    elif where is not None:
        lines = doc["checkpoint"].split("\n")
        if where == "root":
            lines[2] = _flip(lines[2], 3)
        else:  # the signature line, after the em dash and the key's name
            lines[-2] = _flip(lines[-2], len(lines[-2]) - 10)
        doc["checkpoint"] = "\n".join(lines)
    f = tmp_path / f"entry-{seq}.json"
    f.write_text(json.dumps(doc), "utf-8")
    verdict, failed_at = page.verify_file(f)
    steps = page.steps()
    if where is None:
        assert verdict == "pass", steps
        assert steps == [(s, "pass") for s in RECEIPT_STEPS]
        assert f"seq {seq} · retire" in page.tab.locator("#steps li[data-step=decode]").inner_text()
        page.shot("verify-receipt-desktop")
    else:
        assert (verdict, failed_at) == ("fail", step), steps
        done = RECEIPT_STEPS[:RECEIPT_STEPS.index(step)]
        assert steps == [*((s, "pass") for s in done), (step, "fail")]
    assert page.errors == []


TLOG_STEPS = ["read", "keys", "cp_sig", "leaf", "inclusion", "decode"]


@pytest.mark.parametrize(("where", "step"), [(None, None), ("extra", "inclusion"), ("path", "inclusion"),
                                             ("index", "inclusion"), ("root", "cp_sig"), ("signature", "cp_sig"),
                                             ("no_extra", "read"), ("header", "read")])
def test_a_tlog_proof_is_parsed_and_verified_in_the_browser(page: Page, server: Server, keys: dict[str, Any],
                                                            tmp_path: Path, where: str | None,
                                                            step: str | None) -> None:
    seq = _receipt_seq(server)
    # The operator's key: the payer gets this entry's JSON receipt, but (for now) not its tlog-proof.
    r = _get(server, f"/v1/ledger/entries/{seq}/tlog-proof", keys["operator"]["api_key"])
    text = r.text
    head, _, note = text.partition("\n\n")
    lines = head.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1" and lines[2] == f"index {seq - 1}", text
    if where == "extra":
        lines[1] = _flip(lines[1], len(lines[1]) // 2)
    elif where == "path":
        lines[3] = _flip(lines[3], 9)
    elif where == "index":
        lines[2] = f"index {seq}"
    elif where == "no_extra":
        del lines[1]
    elif where == "header":
        lines[0] = "c2sp.org/tlog-proof@v2"
    elif where is not None:
        cp = note.split("\n")
        if where == "root":
            cp[2] = _flip(cp[2], 3)
        else:
            cp[-2] = _flip(cp[-2], len(cp[-2]) - 10)
        note = "\n".join(cp)
    f = tmp_path / f"entry-{seq}.tlog-proof"
    f.write_text("\n".join(lines) + "\n\n" + note, "utf-8")
    verdict, failed_at = page.verify_file(f)
    steps = page.steps()
    if where is None:
        assert verdict == "pass", steps
        assert steps == [(s, "pass") for s in TLOG_STEPS]
        page.shot("verify-tlog-proof-desktop")
    else:
        assert (verdict, failed_at) == ("fail", step), steps
        done = TLOG_STEPS[:TLOG_STEPS.index(step)]
        assert steps == [*((s, "pass") for s in done), (step, "fail")]
    assert page.errors == []


def _download_search_certificate(page: Page) -> tuple[dict[str, Any], bytes]:
    """The Sanming pledge found by USCC: its search certificate as JSON and the PDF, both downloaded."""
    page.go(f"/portal/inquiry?by=uscc&q={OWNER_USCC}&record=pledges")
    with page.tab.expect_download() as d:
        page.tab.locator("a.button", has_text="JSON").first.click()
    cert: dict[str, Any] = json.loads(Path(d.value.path()).read_text("utf-8"))
    with page.tab.expect_download() as d:
        page.tab.locator("a.button", has_text="PDF").click()
    return cert, Path(d.value.path()).read_bytes()


@pytest.mark.parametrize(("where", "step"), [(None, None), ("result", "digest"), ("query", "digest"),
                                             ("head", "digest"), ("signature", "cert_sig"),
                                             ("signed_digest", "cert_sig")])
def test_a_search_certificate_from_the_inquiry_is_verified_in_the_browser(page: Page, tmp_path: Path,
                                                                          where: str | None,
                                                                          step: str | None) -> None:
    cert, _ = _download_search_certificate(page)
    c, sig = cert["certificate"], cert["signature"]
    assert c["results"][0]["pledgor_uscc"] == OWNER_USCC
    if where == "result":  # the pledged quantity: 12000 becomes 12001
        quantity = c["results"][0]["quantity"]
        assert quantity.startswith("12000"), quantity
        c["results"][0]["quantity"] = "12001" + quantity[5:]
    elif where == "query":
        c["query"]["uscc"] = OWNER_USCC[:-1] + "X"
    elif where == "head":
        c["ledger_head"]["seq"] += 1
    elif where == "signature":
        lines = sig["note"].split("\n")
        lines[-2] = _flip(lines[-2], len(lines[-2]) - 10)
        sig["note"] = "\n".join(lines)
    elif where == "signed_digest":  # another digest in the note: the signature no longer covers the text
        lines = sig["note"].split("\n")
        lines[2] = ("0" if lines[2][0] != "0" else "1") + lines[2][1:]
        sig["note"] = "\n".join(lines)
    f = tmp_path / "search-certificate.json"
    f.write_text(json.dumps(cert, ensure_ascii=False), "utf-8")
    verdict, failed_at = page.verify_file(f)
    steps = page.steps()
    order = ["read", "keys", "cert_sig", "digest"]
    if where is None:
        assert verdict == "pass", steps
        assert steps == [(s, "pass") for s in order]
        assert "pledges: 1" in page.tab.locator("#steps li[data-step=digest]").inner_text()
        page.shot("verify-search-certificate-desktop")
    else:
        assert (verdict, failed_at) == ("fail", step), steps
        assert steps == [*((s, "pass") for s in order[:order.index(step)]), (step, "fail")]
    assert page.errors == []


def test_the_json_attached_to_the_search_certificate_pdf_is_verified_in_the_browser(page: Page,
                                                                                    tmp_path: Path) -> None:
    page.go(f"/portal/inquiry?by=uscc&q={OWNER_USCC}")  # every record: three certificates in one PDF
    with page.tab.expect_download() as d:
        page.tab.locator("a.button", has_text="PDF").click()
    attached = PdfReader(io.BytesIO(Path(d.value.path()).read_bytes())).attachments["search-certificate.json"][0]
    answers = json.loads(attached)
    assert [a["certificate"]["record"] for a in answers] == ["pledges", "freezes", "retirements"]
    f = tmp_path / "attached.json"
    f.write_bytes(attached)
    assert page.verify_file(f) == ("pass", None)
    assert [s for s, _ in page.steps()] == ["read", "keys", *["cert_sig", "digest"] * 3]
    # One changed byte in the third certificate: red at its digest, after the first two passed.
    answers[2]["certificate"]["result_count"] += 1
    f.write_text(json.dumps(answers, ensure_ascii=False), "utf-8")
    assert page.verify_file(f) == ("fail", "digest")
    assert page.steps()[-1] == ("digest", "fail") and len(page.steps()) == 2 + 2 * 2 + 2
    assert page.errors == []


def _checkpoint_sizes(server: Server, keys: dict[str, Any], at_least: int) -> list[int]:
    """Published checkpoint sizes, oldest first, waiting (bounded) until there are `at_least`: while there are
    fewer, a one-unit transfer between demo participants, more than the checkpoint interval (1 s) apart, grows
    the log (the demo's load may fit in one or two checkpoints, by how its writes were batched)."""
    deadline = time.monotonic() + 60
    owner, to = keys["sanming_owner"]["api_key"], keys["lowcarbon_assoc"]["participant_id"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for n in itertools.count():
            sizes = sorted(c["tree_size"] for c in http.get("/v1/ledger/checkpoints", params={"limit": 200}).json())
            if len(sizes) >= at_least or time.monotonic() > deadline:
                return sizes
            moved = http.post("/v1/transfers", json={"to_participant": to, "instrument": "FCT-SM", "quantity": "1"},
                              headers={"Authorization": f"Bearer {owner}", "Idempotency-Key": f"grow-{n}"})
            assert moved.status_code == 201, moved.text
            time.sleep(1.5)


def _consistency(page: Page, first: int, second: int) -> tuple[str | None, str | None]:
    page.tab.select_option("#first", str(first))
    page.tab.select_option("#second", str(second))
    page.tab.evaluate("document.getElementById('verdict').removeAttribute('data-state')")
    page.tab.click("#consistency button[type=submit]")
    page.tab.wait_for_selector("#consistency #verdict[data-state]")
    return page.tab.get_attribute("#verdict", "data-state"), page.tab.get_attribute("#verdict", "data-step")


def test_the_ledger_explorer_checks_consistency_in_the_browser_green_for_a_true_pair_red_for_a_tampered_one(
        page: Page, server: Server, keys: dict[str, Any]) -> None:
    sizes = _checkpoint_sizes(server, keys, 3)
    assert len(sizes) >= 3, sizes
    page.go("/portal/ledger")
    order = ["sizes", "keys", "sig1", "sig2", "proof"]
    for first, second in ((sizes[0], sizes[-1]), (sizes[1], sizes[-1]), (sizes[-1], sizes[-1])):
        assert _consistency(page, first, second) == ("pass", None), (first, second, page.steps())
        assert page.steps() == [(s, "pass") for s in order]
    page.shot("ledger-consistency-green-desktop")
    assert _consistency(page, sizes[-1], sizes[0]) == ("fail", "sizes")

    # A lying server: one hash of the consistency proof changed.
    def tampered_proof(route: Any) -> None:
        body = route.fetch().json()
        body["proof"][0] = _flip(body["proof"][0], 4)
        route.fulfill(json=body)

    page.tab.route("**/v1/ledger/proofs/consistency?*", tampered_proof)
    assert _consistency(page, sizes[0], sizes[-1]) == ("fail", "proof")
    assert page.steps() == [*((s, "pass") for s in order[:-1]), ("proof", "fail")]
    page.shot("ledger-consistency-red-desktop")
    page.tab.unroute("**/v1/ledger/proofs/consistency?*")

    # A lying server: the newer checkpoint's root changed (its signature no longer verifies) ...
    def tampered_checkpoint(route: Any) -> None:
        body = route.fetch().json()
        lines = body[0]["checkpoint"].split("\n")
        lines[2] = _flip(lines[2], 3)
        body[0]["checkpoint"] = "\n".join(lines)
        route.fulfill(json=body)

    page.tab.route(f"**/v1/ledger/checkpoints?before={sizes[-1] + 1}&*", tampered_checkpoint)
    assert _consistency(page, sizes[0], sizes[-1]) == ("fail", "sig2")
    page.tab.unroute(f"**/v1/ledger/checkpoints?before={sizes[-1] + 1}&*")

    # ... or another checkpoint, validly signed, handed out for the size asked.
    def wrong_size(route: Any) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            other = http.get("/v1/ledger/checkpoints", params={"before": sizes[1] + 1, "limit": 1}).json()
        route.fulfill(json=other)

    page.tab.route(f"**/v1/ledger/checkpoints?before={sizes[0] + 1}&*", wrong_size)
    assert _consistency(page, sizes[0], sizes[-1]) == ("fail", "sig1")
    page.tab.unroute(f"**/v1/ledger/checkpoints?before={sizes[0] + 1}&*")
    assert _consistency(page, sizes[0], sizes[-1]) == ("pass", None)
    assert page.errors == []
