"""Registry text that shows as something else is refused (red team round 4, F10): controls, bidi
embeddings/overrides/isolates, zero-width space and BOM in case numbers, names and notes -- 422, nothing
stored -- while Chinese, emoji and line breaks in notes are kept as sent."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from tests.courts.test_restoration import PAYER_ID, _setup
from tests.helpers import Api


def _order(w: dict[str, Any], case_number: str, defendant: str, note: str | None = None) -> dict[str, Any]:
    return {"case_number": case_number, "case_type": "刑事", "judgment_reference": "判决书",
            "defendants": [{"name": defendant}], "payer_id": w["payer"]["id"], "payer_identifier": PAYER_ID,
            "assessed_loss": "1", "assessment_method": "评估", "assessing_body": "评估机构", "multiplier": "1",
            "required_quantity": "1", "eligible_kinds": ["ccer"], "note": note,
            "deadline": (date.today() + timedelta(days=30)).isoformat()}


@pytest.mark.parametrize("bad", ["\u202e", "\u2066", "\x1b[31m", "\x01", "\x7f", "\x9b", "\u200b", "\ufeff"])
def test_unsafe_characters_are_refused_everywhere_in_a_body(api: Api, bad: str) -> None:
    w = _setup(api)
    court = w["court"]["api"]
    for body in (_order(w, f"(2026)川01刑9号{bad}", "被告人"), _order(w, "(2026)川01刑9号", f"{bad}evil"),
                 _order(w, "(2026)川01刑9号", "被告人", note=f"备注{bad}")):
        r = court.post("/v1/restoration-orders", body)
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), r.text
        assert f"U+{ord(bad[0]):04X}" in r.text
    assert api.ok(court.get("/v1/restoration-orders")) == []  # nothing was stored
    r = api.post("/v1/participants", {"name": f"某公司{bad}", "kind": "enterprise", "uscc": None})
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")


def test_chinese_emoji_and_line_breaks_are_kept(api: Api) -> None:
    w = _setup(api)
    made = api.ok(w["court"]["api"].post("/v1/restoration-orders", _order(
        w, "(2026)川01刑10号", "被告人丙😀", note="第一行\n第二行\t制表")))
    assert made["defendants"][0]["name"] == "被告人丙😀" and made["note"] == "第一行\n第二行\t制表"
