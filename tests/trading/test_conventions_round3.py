"""Red team round 3, finding 6 (in part): times in problems are written as every answer writes them (UTC, Z)."""

from __future__ import annotations

from exchange.core.units import iso
from tests.helpers import Api
from tests.trading.clock import Calendar, at


def test_the_outside_hours_problem_writes_now_in_utc(api: Api, cal: Calendar) -> None:
    api.instrument("CEA25", kind="cea", attributes={"compliance_year": 2025})
    api.ok(api.post("/v1/markets", {"instrument": "CEA25", "mode": "block"}))  # 13:00-15:00 Asia/Shanghai
    cal.now = at(cal.now.date(), "17:04")
    late = api.post("/v1/markets/CEA25.block/session", {"action": "open"})
    assert (late.status_code, late.json()["code"]) == (409, "outside_hours"), late.text
    assert late.json()["now"] == iso(cal.now) and late.json()["now"].endswith("T09:04:00.000000Z"), late.text
