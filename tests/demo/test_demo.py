"""`envx serve --demo`: the demo data (exchange/demo/demo_data.json) loads through the same services users call,
twice; the loader (the trusted bootstrap, system actor) writes a working key for every demo participant,
each acting as that participant only; loading again keeps them."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

from litestar.testing import TestClient

from api.app import create_app
from exchange.core.settings import Settings
from exchange.demo import loader as demo
from tests.helpers import Api


def test_demo_data_loads_and_reloads(api: Api, client) -> None:
    rt = client.app.state.rt
    people = client.blocking_portal.call(demo.load, rt, None)
    client.blocking_portal.call(demo.load, rt, None)  # idempotent: fixed client ids
    requests = api.ok(api.get("/v1/issuances"))
    assert len(requests) == len(demo.demo_data()["issuances"])
    assert all(r["status"] == "approved" and r["flags"] == [] for r in requests)
    tickets = [r["attributes"]["ticket_number"] for r in requests if r["kind"] == "forest_ticket"]
    assert tickets == ["0000001", "0000002", "0000003", "0000004", "0000005"]
    assert api.ok(api.get("/v1/instruments/GDEA24"))["attributes"]["region"] == "guangdong"
    assert people["sanming_owner"].kind == "enterprise"


def test_demo_keys_work_for_every_demo_participant(db_url: str, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "demo-keys.json"

    async def load(rt):  # type: ignore[no-untyped-def]
        await demo.load(rt, path)

    for attempt in range(2):
        with TestClient(create_app(settings, db_url, on_ready=[load]), raise_server_exceptions=False,
                        timeout=120) as client:
            keys = json.loads(path.read_text("utf-8"))
            assert keys.keys() == {p["key"] for p in demo.demo_data()["participants"]}
            for entry in keys.values():
                me = client.get("/v1/whoami", headers={"Authorization": f"Bearer {entry['api_key']}"})
                assert me.status_code == 200, me.text
                assert (me.json()["participant_id"], me.json()["kind"]) == (entry["participant_id"], entry["kind"])
            if attempt == 0:
                first = keys
    assert keys == first  # loading again changed nothing
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_the_demo_loads_again_on_a_later_day(api: Api, client, monkeypatch) -> None:
    """Red team 8 F3: `envx serve --demo` restarted the next day re-filed the demo pledge with another term start
    (the loader took today's date), got idempotency_conflict, and the server did not start. Its terms run from the
    day the demo was first loaded."""
    rt = client.app.state.rt
    client.blocking_portal.call(demo.load, rt, None)

    class Tomorrow(date):
        @classmethod
        def today(cls) -> Tomorrow:
            d = date.today() + timedelta(days=1)
            return cls(d.year, d.month, d.day)

    monkeypatch.setattr(demo, "date", Tomorrow)  # the clock the loader read its day from
    client.blocking_portal.call(demo.load, rt, None)  # raised DomainError(idempotency_conflict) before
    pledges = api.ok(api.get("/v1/pledges"))
    assert len([p for p in pledges if p["status"] == "active"]) == 1
