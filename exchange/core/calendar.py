"""Registry time: all times are stored in UTC; trading days, calendars and deadlines are Asia/Shanghai.

`TradingCalendar` is the one rule of which days are trading days, and the one place that counts them
(next trading day, N trading days on, trading days left). Pure: its days come from the calendar tables
(exchange/trading/calendars/) and it never reads a clock.

- Monday to Friday are trading days unless the calendar declares a holiday;
- a weekend day the calendar declares a make-up working day (调休上班日) is a working day for offices,
  and a trading day only where the market says `trades_on_makeup_days`. The Shanghai and Shenzhen stock
  exchanges do not trade on make-up weekends (their holiday notices close them on those Saturdays and
  Sundays, because their settlement and the banks' payment systems keep weekend hours): exchange
  markets default to false, a venue that settles on working days may say true.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOLIDAY, WORKDAY = "holiday", "workday"
# However a calendar is filled, a year has at most 366 days off; a search past ten years is a bug.
_HORIZON = 3660


def trading_day(now: datetime) -> date:
    return now.astimezone(SHANGHAI).date()


@dataclass(frozen=True, slots=True)
class TradingCalendar:
    """Which days trade: weekdays minus `holidays`, plus the weekend `workdays` if `trades_on_makeup_days`."""

    id: str | None = None
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()  # make-up working days (调休): weekend days declared working
    trades_on_makeup_days: bool = False
    every_day: bool = False  # a market that is always open (no sessions): every day is a trading day

    def is_trading_day(self, day: date) -> bool:
        if self.every_day:
            return True
        if day in self.holidays:
            return False
        if day.weekday() < 5:
            return True
        return self.trades_on_makeup_days and day in self.workdays

    def why_not(self, day: date) -> str | None:
        """None on a trading day; else `holiday`, `makeup_day` (a working day the market does not trade) or
        `weekend`."""
        if self.is_trading_day(day):
            return None
        if day in self.holidays:
            return "holiday"
        return "makeup_day" if day in self.workdays else "weekend"

    def on_or_after(self, day: date) -> date:
        """`day` if it trades, else the first trading day after it."""
        for _ in range(_HORIZON):
            if self.is_trading_day(day):
                return day
            day += timedelta(days=1)
        raise AssertionError(f"calendar {self.id}: no trading day within {_HORIZON} days")

    def next_trading_day(self, day: date) -> date:
        """The first trading day after `day` (T+1 of a trade on `day`)."""
        return self.on_or_after(day + timedelta(days=1))

    def add_trading_days(self, day: date, n: int) -> date:
        """The n-th trading day after `day` (n >= 0; 0 is `day` itself, trading or not)."""
        assert n >= 0
        for _ in range(n):
            day = self.next_trading_day(day)
        return day

    def trading_days_between(self, start: date, end: date) -> int:
        """How many trading days lie after `start` up to and including `end` (negative if `end` is earlier)."""
        if end < start:
            return -self.trading_days_between(end, start)
        assert (end - start).days <= _HORIZON * 10, "a span of more than a century"
        return sum(1 for i in range(1, (end - start).days + 1) if self.is_trading_day(start + timedelta(days=i)))


WEEKDAYS = TradingCalendar()  # no calendar data: Monday to Friday
