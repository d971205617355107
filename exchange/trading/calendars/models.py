"""Trading calendars as their tables hold them: a calendar, its declared days, a market's assignment, a change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from exchange.core.calendar import HOLIDAY, WEEKDAYS, WORKDAY, TradingCalendar


@dataclass(frozen=True, slots=True)
class CalendarDay:
    day: date
    kind: str  # holiday | workday (a weekend day declared working: 调休上班)
    name: str
    source: str

    @classmethod
    def from_row(cls, r: Mapping[Any, Any]) -> CalendarDay:
        return cls(r["day"], r["kind"], r["name"], r["source"])


@dataclass(frozen=True, slots=True)
class Calendar:
    id: str
    name: str
    note: str
    days: tuple[CalendarDay, ...]

    @classmethod
    def from_row(cls, r: Mapping[Any, Any], days: Sequence[CalendarDay]) -> Calendar:
        return cls(r["id"], r["name"], r["note"], tuple(days))

    def rules(self, trades_on_makeup_days: bool) -> TradingCalendar:
        return TradingCalendar(self.id, frozenset(d.day for d in self.days if d.kind == HOLIDAY),
                               frozenset(d.day for d in self.days if d.kind == WORKDAY), trades_on_makeup_days)


@dataclass(frozen=True, slots=True)
class Assignment:
    """Which calendar a market follows (None: weekdays only) and whether it trades on make-up working days.
    `explicit` is False for a market with no row: it follows the registry's default calendar."""

    market_id: str
    calendar_id: str | None
    trades_on_makeup_days: bool
    explicit: bool


@dataclass(frozen=True, slots=True)
class Change:
    id: int
    calendar_id: str | None
    market_id: str | None
    change: dict[str, Any]
    actor: str
    fingerprint: bytes
    operator_action: dict[str, Any] | None
    at: datetime

    @classmethod
    def from_row(cls, r: Mapping[Any, Any]) -> Change:
        return cls(r["id"], r["calendar_id"], r["market_id"], dict(r["change"]), r["actor"], bytes(r["fingerprint"]),
                   r["operator_action"], r["at"])


def rules_of(calendar: Calendar | None, trades_on_makeup_days: bool) -> TradingCalendar:
    return WEEKDAYS if calendar is None else calendar.rules(trades_on_makeup_days)
