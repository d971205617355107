"""A controlled clock and a paused scheduler holding the markets' calendar jobs, for session tests."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from exchange.core.calendar import SHANGHAI
from exchange.trading import sessions
from tests.helpers import Api


def monday() -> date:
    """A Monday one to two weeks ahead: ledger entries stamped now lie before any of its days."""
    today = datetime.now(SHANGHAI).date()
    return today + timedelta(days=14 - today.weekday())


def at(day: date, hhmm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), SHANGHAI)


class Calendar:
    """The runtime's clock and a paused scheduler holding the markets' jobs."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.rt = api.client.app.state.rt
        self.scheduler = AsyncIOScheduler(timezone=SHANGHAI)
        api.client.blocking_portal.call(lambda: self.scheduler.start(paused=True))
        self.rt.scheduler = self.scheduler
        self.now = at(monday(), "10:00")
        self.rt.clock = lambda: self.now

    def jobs(self, market_id: str) -> list[str]:
        prefix = sessions.job_id(market_id, "")
        return sorted(j.id[len(prefix):] for j in self.scheduler.get_jobs() if j.id.startswith(prefix))

    def run(self, market_id: str, when: datetime) -> None:
        """Move the clock to `when` and run the market's job for that time, as the scheduler would."""
        job = self.scheduler.get_job(sessions.job_id(market_id, when.strftime("%H:%M")))
        assert job is not None, f"no job of {market_id} at {when:%H:%M}: {self.jobs(market_id)}"
        assert job.trigger.get_next_fire_time(None, when - timedelta(seconds=1)) == when
        self.now = when
        self.api.client.blocking_portal.call(job.func, *job.args)

    def close(self) -> None:
        self.api.client.blocking_portal.call(lambda: self.scheduler.shutdown(wait=False))


def market(api: Api, m: str) -> dict[str, Any]:
    return api.ok(api.client.get(f"/v1/markets/{m}"))


def events(api: Api, m: str) -> list[dict[str, Any]]:
    return api.ok(api.client.get(f"/v1/markets/{m}/events"))
