"""Event stream and webhook delivery: retried with backoff until the bank's endpoint answers."""

from __future__ import annotations

import pytest

from exchange.pledging import webhooks
from tests.helpers import Api
from tests.pledges.helpers import Receiver, pledge_body, world


def test_webhooks_retry_until_delivered_and_the_stream_is_per_participant(api: Api,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks, "BASE_DELAY", 0.05)  # the schedule's shape, at test speed
    w = world(api, "100")
    bank, owner, junior = w["bank"], w["owner"], w["junior"]
    r = bank["api"].client.put("/v1/pledges/webhook", json={"url": "ftp://example.org/x"},
                               headers={"Authorization": f"Bearer {bank['token']}", "Idempotency-Key": "w0"})
    assert r.json()["code"] == "invalid_webhook_url"
    with Receiver(fail=2) as rx:
        hook = api.ok(bank["api"].client.put("/v1/pledges/webhook", json={"url": rx.url},
                                             headers={"Authorization": f"Bearer {bank['token']}",
                                                      "Idempotency-Key": "w1"}))
        p = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], "10")))
        api.ok(owner["api"].post(f"/v1/pledges/{p['id']}/confirm"))
        headers, body = rx.wait_for("confirmed")
        assert rx.hits == 3  # two refusals (503), then delivered
        assert webhooks.verify(hook["secret"].encode(), headers["X-Envx-Timestamp"], headers["X-Envx-Signature"],
                               body)
    status = api.ok(bank["api"].get("/v1/pledges/webhook"))
    [d] = [x for x in status["deliveries"] if x["event_type"] == "confirmed"]
    assert (d["status"], d["attempts"], d["last_error"]) == ("delivered", 3, None)

    # The stream: the bank and the pledgor see the registration's events; another bank none.
    mine = api.ok(bank["api"].get("/v1/pledges/events", after=0))
    assert [e["type"] for e in mine] == ["filed", "confirmed"]
    assert [e["type"] for e in api.ok(owner["api"].get("/v1/pledges/events"))] == ["filed", "confirmed"]
    assert api.ok(junior["api"].get("/v1/pledges/events")) == []
    after = api.ok(bank["api"].get("/v1/pledges/events", after=mine[0]["id"]))
    assert [e["type"] for e in after] == ["confirmed"]
    assert after[0]["changes"]["serials"] == [[1, 10]]
    assert api.ok(bank["api"].get("/v1/pledges/events", types="filed"))[0]["type"] == "filed"
