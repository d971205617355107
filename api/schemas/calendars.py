"""Trading calendars: the days a notice declares, a change an operator proposes, a market's days."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from api.schemas.common import ClientId, Date, Name, Strict
from exchange.trading.calendars.editing import MAX_DAYS, MarketCalendar, MarketDay
from exchange.trading.calendars.models import Calendar, CalendarDay

CalendarId = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Z][A-Z0-9-]{0,31}$",
                                  description="A calendar's id: capitals, digits and -, e.g. CN")]
Source = Annotated[str, Field(min_length=1, max_length=500, description="Where the day is published (the notice)")]


class CalendarDayIn(Strict):
    day: Date
    kind: Literal["holiday", "workday"] = Field(description="`holiday`: no trading, no work; `workday`: a Saturday "
                                                             "or Sunday declared a working day (调休上班)")
    name: Name = Field(description="The holiday's name (春节), or of the make-up day (春节调休上班)")
    source: Source | None = None


class CalendarChangeIn(Strict):
    """Days to set (added, or replacing what the calendar said of that day) and days to remove."""

    name: Name | None = Field(default=None, description="Required when the calendar is new")
    note: Annotated[str, Field(max_length=2000)] | None = None
    set: list[CalendarDayIn] = Field(default_factory=list, max_length=MAX_DAYS)
    remove: list[Date] = Field(default_factory=list, max_length=MAX_DAYS)
    client_id: ClientId = None


class MarketCalendarIn(Strict):
    calendar_id: CalendarId | None = Field(description="The calendar to follow; null: weekdays only")
    trades_on_makeup_days: bool = Field(default=False, description="Whether the market trades on make-up working "
                                                                   "days (调休). Exchanges do not (SSE/SZSE practice)")
    client_id: ClientId = None


class CalendarDayOut(BaseModel):
    day: dt.date
    kind: str
    name: str
    source: str

    @classmethod
    def of(cls, d: CalendarDay) -> CalendarDayOut:
        return cls(day=d.day, kind=d.kind, name=d.name, source=d.source)


class CalendarOut(BaseModel):
    """A calendar's declared days (in a year, if asked) and the markets that follow it."""

    id: str
    name: str
    note: str
    days: list[CalendarDayOut]
    markets: list[str] | None = None

    @classmethod
    def of(cls, c: Calendar, markets: list[str] | None = None, year: int | None = None) -> CalendarOut:
        return cls(id=c.id, name=c.name, note=c.note, markets=markets,
                   days=[CalendarDayOut.of(d) for d in c.days if year is None or d.day.year == year])


class MarketDayOut(BaseModel):
    day: dt.date
    trading: bool
    why_not: str | None = Field(description="holiday, makeup_day (a working day the market does not trade), "
                                            "weekend or market_holiday; null on a trading day")
    name: str | None

    @classmethod
    def of(cls, d: MarketDay) -> MarketDayOut:
        return cls(day=d.day, trading=d.trading, why_not=d.why_not, name=d.name)


class MarketCalendarOut(BaseModel):
    market_id: str
    calendar_id: str | None
    trades_on_makeup_days: bool
    assigned: bool = Field(description="false: the market follows the registry's default calendar")
    days: list[MarketDayOut]
    next_trading_day: dt.date = Field(description="The first trading day after the period")

    @classmethod
    def of(cls, m: MarketCalendar) -> MarketCalendarOut:
        a = m.assignment
        return cls(market_id=m.market_id, calendar_id=a.calendar_id, trades_on_makeup_days=a.trades_on_makeup_days,
                   assigned=a.explicit, days=[MarketDayOut.of(d) for d in m.days],
                   next_trading_day=m.next_trading_day)
