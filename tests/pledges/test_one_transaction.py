"""One transaction per use case: no pledge use case checks out a second pooled connection while it holds one
(the pool deadlock `_mutation_slots` once held off). Watched on the real pool of the real app, through HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from tests.helpers import Api
from tests.pledges.helpers import days, pledge_body, world


class Nesting:
    """Per asyncio task, the pooled connections it holds; a checkout while it holds one is recorded."""

    def __init__(self) -> None:
        self.held: dict[int, int] = {}
        self.owner: dict[int, int] = {}
        self.nested: list[str] = []

    def checkout(self, dbapi_conn: Any, record: Any, proxy: Any) -> None:
        task = asyncio.current_task()
        if task is None:
            return
        key = id(task)
        if self.held.get(key, 0) > 0:
            self.nested.append(task.get_name())
        self.held[key] = self.held.get(key, 0) + 1
        self.owner[id(record)] = key

    def checkin(self, dbapi_conn: Any, record: Any) -> None:
        key = self.owner.pop(id(record), None)
        if key is not None:
            self.held[key] -= 1


@pytest.fixture
def nesting(api: Api) -> Iterator[Nesting]:
    pool = api.client.app.state.rt.engine.sync_engine.pool
    watch = Nesting()
    event.listen(pool, "checkout", watch.checkout)
    event.listen(pool, "checkin", watch.checkin)
    yield watch
    event.remove(pool, "checkout", watch.checkout)
    event.remove(pool, "checkin", watch.checkin)


def test_no_pledge_use_case_checks_out_a_second_connection(api: Api, nesting: Nesting) -> None:
    w = world(api, "3000")
    bank, owner, junior = w["bank"]["api"], w["owner"]["api"], w["junior"]["api"]
    p = api.ok(bank.post("/v1/pledges", pledge_body(w["owner"]["id"], "1000", transfer_on_default=True)))
    pid = p["id"]
    api.ok(owner.post(f"/v1/pledges/{pid}/confirm"))
    api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                 "instrument": "FCT-SM", "price": "5000.00", "as_of": days(0)}))
    api.ok(owner.post(f"/v1/pledges/{pid}/top-up", {"quantity": "400"}))
    api.ok(bank.post(f"/v1/pledges/{pid}/amend", {"haircut_bps": 0}))
    api.ok(bank.post(f"/v1/pledges/{pid}/extend", {"term_end": days(730)}))
    api.ok(bank.post(f"/v1/pledges/{pid}/partial-release", {"quantity": "100"}))
    claim = api.ok(junior.post(f"/v1/pledges/{pid}/claims", {
        "loan_contract": "J-1", "amount": "100000.00", "term_end": days(300)}))["id"]
    api.ok(owner.post(f"/v1/pledges/claims/{claim}/confirm"))
    api.ok(bank.get(f"/v1/pledges/{pid}/events"))
    api.ok(bank.post(f"/v1/pledges/{pid}/release"))  # promotes the junior's claim into the lock
    other = api.ok(bank.post("/v1/pledges", pledge_body(w["owner"]["id"], "500", transfer_on_default=True,
                                                        references=[{"source": "中登网", "reference": "T-2"}])))
    api.ok(owner.post(f"/v1/pledges/{other['id']}/confirm"))
    api.ok(bank.post(f"/v1/pledges/{other['id']}/enforcement", {
        "method": "transfer", "reason": "违约", "outstanding": "2500000.00", "price": "5000.00",
        "default_notice": {"reference": "兴银违通字2024-1", "notice_date": days(0)}}))
    assert api.client.get("/v1/public/retirements", params={"name": "三明市沙县林业合作社"}).status_code == 200
    assert sum(nesting.held.values()) == 0, "a connection was never given back"
    assert nesting.nested == []
