"""The portal's in-browser receipt check of an anonymous trade's entry (version 4, ledger/blinding.py): the
receipt's openings -- accounts, holds and amounts -- are checked against the commitments in the entry bytes
with WebCrypto; one changed value, amount or salt is red at that step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.portal.browser import Page
from tests.system.server import Server

STEPS = ["read", "keys", "cp_sig", "size", "leaf", "inclusion", "decode", "openings"]


def _blinded(server: Server, token: str) -> int:
    """The demo's first anonymous market trade (a version-4 entry)."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        after = 0
        while True:
            page = http.get("/v1/ledger/entries", params={"after": after, "limit": 1000},
                            headers={"Authorization": f"Bearer {token}"}).json()
            assert page, "the demo has no blinded entry"
            for e in page:
                if e["entry"]["v"] == 4:
                    return int(e["seq"])
            after = page[-1]["seq"]


@pytest.mark.parametrize("where", [None, "value", "salt", "amount"])
def test_a_blinded_receipt_opens_its_fields_in_the_browser(page: Page, server: Server, keys: dict[str, Any],
                                                          tmp_path: Path, where: str | None) -> None:
    token = keys["operator"]["api_key"]
    seq = _blinded(server, token)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        r = http.get(f"/v1/ledger/entries/{seq}/receipt", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["openings"], doc  # the operator's receipt opens every field
    if where == "value":
        doc["openings"][0]["value"] += 1
    elif where == "salt":
        s = doc["openings"][-1]["salt"]
        doc["openings"][-1]["salt"] = ("0" if s[0] != "0" else "1") + s[1:]
    elif where == "amount":  # a leg's amount said to be one more
        next(o for o in doc["openings"] if o["field"] == "amount")["value"] += 1
    f = tmp_path / f"entry-{seq}.json"
    f.write_text(json.dumps(doc), "utf-8")
    verdict, failed_at = page.verify_file(f)
    steps = page.steps()
    if where is None:
        assert verdict == "pass", steps
        assert steps == [(s, "pass") for s in STEPS]
        assert "leg 0 " in page.tab.locator("#steps li[data-step=openings]").inner_text()
    else:
        assert (verdict, failed_at) == ("fail", "openings"), steps
        assert steps == [*((s, "pass") for s in STEPS[:-1]), ("openings", "fail")]
    assert page.errors == []
