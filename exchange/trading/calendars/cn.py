"""China's public holidays and make-up working days (调休) as the State Council publishes them, one notice
a year. Data only: entered as published, never extrapolated.

- 2026: 国务院办公厅关于2026年部分节假日安排的通知, 国办发明电〔2025〕7号, issued 2025-11-04.
- 2027: the notice is not published (or was not findable when this was written, 2026-12-01). It is NOT
  here, and no date of 2027 is guessed: until an operator enters it (POST /v1/calendars/CN/changes,
  maker-checker), 2027 counts as weekdays only, which is wrong from 2027-01-01 on. Enter it when published.
"""

from __future__ import annotations

from datetime import date, timedelta

CALENDAR_ID = "CN"
NAME = "中国 全国年节及纪念日放假安排 (State Council)"
NOTE = ("2026: 国办发明电〔2025〕7号 (2025-11-04). 2027: not yet published/entered -- until it is, 2027 counts "
        "weekdays only.")
SOURCE_2026 = "国务院办公厅关于2026年部分节假日安排的通知 国办发明电〔2025〕7号 2025-11-04"


def _span(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# (name, days off, make-up working days), as the notice lists them.
_2026: list[tuple[str, list[date], list[date]]] = [
    ("元旦", _span(date(2026, 1, 1), date(2026, 1, 3)), [date(2026, 1, 4)]),
    ("春节", _span(date(2026, 2, 15), date(2026, 2, 23)), [date(2026, 2, 14), date(2026, 2, 28)]),
    ("清明节", _span(date(2026, 4, 4), date(2026, 4, 6)), []),
    ("劳动节", _span(date(2026, 5, 1), date(2026, 5, 5)), [date(2026, 5, 9)]),
    ("端午节", _span(date(2026, 6, 19), date(2026, 6, 21)), []),
    ("中秋节", _span(date(2026, 9, 25), date(2026, 9, 27)), []),
    ("国庆节", _span(date(2026, 10, 1), date(2026, 10, 7)), [date(2026, 9, 20), date(2026, 10, 10)]),
]


def days_2026() -> list[dict[str, str]]:
    """The 2026 notice as calendar days: {day, kind (holiday | workday), name, source}."""
    out = []
    for name, off, work in _2026:
        out += [{"day": d.isoformat(), "kind": "holiday", "name": name, "source": SOURCE_2026} for d in off]
        out += [{"day": d.isoformat(), "kind": "workday", "name": f"{name}调休上班", "source": SOURCE_2026}
                for d in work]
    return sorted(out, key=lambda d: d["day"])
