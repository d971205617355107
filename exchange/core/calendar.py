"""Registry time: all times are stored in UTC; trading days, calendars and deadlines are Asia/Shanghai."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def trading_day(now: datetime) -> date:
    return now.astimezone(SHANGHAI).date()
