"""Trading calendars: public reads; changes and market assignments by one operator, approved by another."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from litestar import Controller, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from api.controllers.security import PROPOSED, propose_or_run
from api.deps import IdempotencyKey, client_id
from api.encoding import Answer
from api.schemas.calendars import CalendarChangeIn, CalendarOut, MarketCalendarIn, MarketCalendarOut
from exchange.core.calendar import trading_day
from exchange.core.errors import Invalid
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.trading.calendars import editing

CalendarPath = Annotated[str, Parameter(pattern=r"^[A-Z][A-Z0-9-]{0,31}$", max_length=32)]
Year = Annotated[int | None, Parameter(ge=2000, le=2199, description="Only the days of this year")]
Day = Annotated[str | None, Parameter(pattern=r"^2[01][0-9]{2}-[01][0-9]-[0-3][0-9]$",
                                      description="YYYY-MM-DD (Asia/Shanghai)")]


def _result(schema: type[object], description: str) -> ResponseSpec:
    return ResponseSpec(data_container=schema, generate_examples=False,
                        description=f"{description} (maker-checker off)")


def _day(value: str | None, default: date) -> date:
    if value is None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid("invalid_date", f"{value} is not a date (YYYY-MM-DD)") from None


class CalendarController(Controller):
    path = "/v1/calendars"
    tags = ["calendars"]

    @get("/", operation_id="listCalendars", summary="Trading calendars: public holidays and make-up working days")
    async def listing(self, rt: Runtime, year: Year = None) -> list[CalendarOut]:
        return [CalendarOut.of(c, year=year) for c in await editing.listing(rt)]

    @get("/{calendar_id:str}", operation_id="getCalendar",
         summary="One calendar: its declared days (of a year, if asked) and the markets that follow it")
    async def get_one(self, rt: Runtime, calendar_id: CalendarPath, year: Year = None) -> CalendarOut:
        found, markets = await editing.get(rt, calendar_id)
        return CalendarOut.of(found, markets, year)

    @post("/{calendar_id:str}/changes", operation_id="changeCalendar",
          responses={**PROPOSED, 201: _result(CalendarOut, "The calendar, changed")},
          summary="Set or remove holidays and make-up working days (operator; maker-checker)",
          description="In force once approved: the markets that follow the calendar open and close by it from "
                      "that moment (a day declared a holiday closes them).")
    async def change(self, rt: Runtime, principal: Principal, calendar_id: CalendarPath, data: CalendarChangeIn,
                     idempotency_key: IdempotencyKey = None) -> CalendarOut | Answer:
        cid = client_id(idempotency_key, data.client_id)
        payload = {"calendar_id": calendar_id,
                   **data.model_dump(mode="json", exclude={"client_id"}, exclude_none=True)}
        answer = await propose_or_run(rt, principal, cid, "changeCalendar", payload,
                                      lambda: editing.change(rt, principal.actor, cid, payload))
        if isinstance(answer, Answer):
            return answer
        found, markets = answer
        return CalendarOut.of(found, markets)


class MarketCalendarController(Controller):
    path = "/v1/markets/{market_id:str}/calendar"
    tags = ["calendars"]

    @get("/", operation_id="getMarketCalendar",
         summary="A market's days from `start` to `end` (default: today and the next 30 days): trading or not, "
                 "why, and the first trading day after")
    async def days(self, rt: Runtime, market_id: str, start: Day = None, end: Day = None) -> MarketCalendarOut:
        first = _day(start, trading_day(rt.clock()))
        return MarketCalendarOut.of(await editing.market_days(rt, market_id, first,
                                                              _day(end, first + timedelta(days=30))))

    @put("/", operation_id="assignMarketCalendar", status_code=200,
         responses={**PROPOSED, 200: _result(MarketCalendarOut, "The market's calendar, today")},
         summary="Which calendar the market follows and whether it trades on make-up working days "
                 "(operator; maker-checker)")
    async def assign(self, rt: Runtime, principal: Principal, market_id: str, data: MarketCalendarIn,
                     idempotency_key: IdempotencyKey = None) -> MarketCalendarOut | Answer:
        cid = client_id(idempotency_key, data.client_id)
        payload = {"market_id": market_id, "calendar_id": data.calendar_id,
                   "trades_on_makeup_days": data.trades_on_makeup_days}
        answer = await propose_or_run(rt, principal, cid, "assignMarketCalendar", payload,
                                      lambda: editing.assign(rt, principal.actor, cid, payload))
        return answer if isinstance(answer, Answer) else MarketCalendarOut.of(answer)
