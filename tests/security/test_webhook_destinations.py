"""Webhooks reach the public Internet only (no SSRF): loopback, private, link-local, multicast and
unspecified destinations are refused, as IP literals and as names resolving to them, when the URL is set
and again at delivery (DNS rebinding); an operator may allow a host; failures carry fixed reasons."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from exchange.core.settings import Settings
from exchange.pledging import webhooks
from tests.helpers import Api
from tests.pledges.helpers import Receiver, pledge_body, world


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Plain http allowed (the test receiver has no certificate), but no allowed hosts: the production rule.
    return Settings(data_dir=tmp_path, database_url=None, pledge_webhook_allow_http=True,
                    pledge_worker_interval_seconds=0.2, scheduler=False)


def _set(api: Api, bank: dict, url: str, key: str) -> object:
    return bank["api"].client.put("/v1/pledges/webhook", json={"url": url}, headers={
        "Authorization": f"Bearer {bank['token']}", "Idempotency-Key": key})


REFUSED = [
    "http://127.0.0.1:8000/hook", "http://127.1/hook", "http://2130706433/hook", "http://0x7f000001/hook",
    "http://localhost:8000/hook", "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook", "http://0.0.0.0/hook",
    "http://[::]/hook", "http://10.1.2.3/hook", "http://172.16.0.1/hook", "http://192.168.1.1/hook",
    "http://100.64.0.1/hook", "http://169.254.169.254/latest/meta-data", "http://[fe80::1]/hook",
    "http://[fc00::1]/hook", "http://224.0.0.1/hook", "http://[ff02::1]/hook", "http://[2002:7f00:1::]/hook",
    "http://[64:ff9b::a00:1]/hook", "http://no-such-host.invalid/hook",
    # IPv6 site-local (Python's ipaddress calls fec0::/10 global), and what else the registries reserve.
    "https://[fec0::1]:8443/hook", "https://[fec0::a9fe:a9fe]/hook", "https://[feff:ffff::1]/hook",
    "https://[64:ff9b:1::a9fe:a9fe]/hook", "https://[2001::a9fe:a9fe]/hook", "https://[3fff::1]/hook",
    "https://192.0.0.170/hook", "https://198.18.0.1/hook", "https://240.0.0.1/hook", "https://[100::1]/hook",
]

# Address by address, after the IANA special-purpose registries (IPv4 and IPv6), and what stays allowed.
FORBIDDEN = [
    "0.1.2.3", "10.0.0.1", "100.64.0.1", "100.127.255.254", "127.0.0.1", "169.254.169.254", "172.31.0.1",
    "192.0.0.1", "192.0.0.9", "192.0.2.1", "192.31.196.1", "192.52.193.1", "192.88.99.1", "192.168.0.1",
    "192.175.48.1", "198.18.0.1", "198.19.255.255", "198.51.100.1", "203.0.113.1", "224.0.0.1", "239.1.1.1",
    "240.0.0.1", "255.255.255.255",
    "::", "::1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1", "100::1",
    "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:1::1", "2001:2::1", "2001:3::1", "2001:4:112::1",
    "2001:10::1", "2001:20::1", "2001:30::1", "2001:db8::1", "2002:a00:1::1", "2002:7f00:1::", "2620:4f:8000::1",
    "3fff::1", "5f00::1", "fc00::1", "fd12:3456::1", "fe80::1", "fe80::1%eth0", "fec0::1", "fec0::a9fe:a9fe",
    "feff:ffff::1", "ff02::1", "ff0e::1",
]
ALLOWED = ["8.8.8.8", "93.184.216.34", "1.1.1.1", "2001:4860:4860::8888", "2a00:1450:4001::200e", "::ffff:8.8.8.8",
           "64:ff9b::808:808", "2002:808:808::1", "2400:cb00::1"]


def test_the_destination_rule_follows_the_special_purpose_registries() -> None:
    assert [a for a in FORBIDDEN if not webhooks.forbidden_address(a)] == []
    assert [a for a in ALLOWED if webhooks.forbidden_address(a)] == []


def test_non_public_destinations_are_refused_when_set(api: Api) -> None:
    w = world(api, "10")
    bank = w["bank"]
    for i, url in enumerate(REFUSED):
        r = _set(api, bank, url, f"w{i}")
        assert (r.status_code, r.json()["code"]) == (422, "webhook_destination_refused"), (url, r.text)  # type: ignore[attr-defined]
    r = _set(api, bank, "http://user@8.8.8.8/hook", "userinfo")
    assert r.json()["code"] == "invalid_webhook_url"  # type: ignore[attr-defined]
    for i, url in enumerate(("https://8.8.8.8:0/x", "https://8.8.8.8:00/x", "https://[2001:4860:4860::8888]:0/x")):
        r = _set(api, bank, url, f"port0-{i}")  # red team 7 F5 (webhook7.py): nothing listens on port 0
        assert (r.status_code, r.json()["code"]) == (422, "invalid_webhook_url"), (url, r.text)  # type: ignore[attr-defined]
    assert bank["api"].get("/v1/pledges/webhook").status_code == 404  # nothing was stored
    # The rule itself, address by address (public ones pass).
    assert not any(webhooks.forbidden_address(a) for a in ("8.8.8.8", "2001:4860:4860::8888", "93.184.216.34"))
    assert all(webhooks.forbidden_address(a) for a in ("127.0.0.1", "::1", "::ffff:10.0.0.1", "fe80::1%eth0",
                                                        "198.18.0.1", "255.255.255.255", "2001:db8::1"))


def test_an_operator_may_allow_a_host(db_url: str, settings: Settings) -> None:
    from litestar.testing import TestClient

    from api.app import create_app
    from tests.helpers import bootstrap_operator

    allowed = settings.model_copy(update={"webhook_allowed_hosts": "127.0.0.1, hooks.internal"})
    with TestClient(create_app(allowed, db_url), raise_server_exceptions=False, timeout=60) as c, Receiver() as rx:
        op = Api(c, bootstrap_operator(c))
        w = world(op, "10")
        assert _set(op, w["bank"], rx.url, "ok").status_code == 200  # type: ignore[attr-defined]
        assert _set(op, w["bank"], "http://10.0.0.1/x", "no").json()["code"] == "webhook_destination_refused"  # type: ignore[attr-defined]
        assert _set(op, w["bank"], rx.url, "ok").status_code == 200  # type: ignore[attr-defined]
        p = op.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"], "1")))
        op.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/confirm"))
        rx.wait_for("confirmed")


def test_a_name_that_resolves_elsewhere_at_delivery_is_refused_then(api: Api,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: public when set, loopback when delivered. The delivery is refused (the local
    receiver is never reached) and recorded as destination_refused."""
    answers = {"rebind.example": ["93.184.216.34"]}

    async def fake_resolve(host: str, port: int) -> list[str]:  # the resolver, not the database or ledger
        return list(answers.get(host, []))

    monkeypatch.setattr(webhooks, "resolve", fake_resolve)
    w = world(api, "10")
    bank, owner = w["bank"], w["owner"]
    with Receiver() as rx:
        port = rx.server.server_address[1]
        assert _set(api, bank, f"http://rebind.example:{port}/hook", "r").status_code == 200  # type: ignore[attr-defined]
        answers["rebind.example"] = ["127.0.0.1"]  # the name now points inside
        p = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], "1")))
        api.ok(owner["api"].post(f"/v1/pledges/{p['id']}/confirm"))
        deadline = time.monotonic() + 10
        d: list[dict] = []
        while time.monotonic() < deadline:
            d = api.ok(bank["api"].get("/v1/pledges/webhook"))["deliveries"]
            if d and d[0]["last_error"]:
                break
            time.sleep(0.1)
        assert d and d[0]["last_error"] == "destination_refused", d
        assert rx.hits == 0


def test_delivery_connects_to_the_address_it_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sender pins the connection to the resolved, checked address and keeps the URL's host in the
    Host header (for an allowed name resolving to the local receiver)."""
    import asyncio

    async def fake_resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == "hooks.internal" else []

    monkeypatch.setattr(webhooks, "resolve", fake_resolve)
    with Receiver() as rx:
        port = rx.server.server_address[1]
        send = webhooks.http_sender(["hooks.internal"])
        status = asyncio.run(send(f"http://hooks.internal:{port}/envx-hooks", b"{}", {"X-Envx-Event-Type": "t"}))
        assert status == 204 and rx.received[0][0]["Host"] == f"hooks.internal:{port}"
        refused = webhooks.http_sender([])
        with pytest.raises(webhooks.DeliveryFailed) as e:
            asyncio.run(refused(f"http://hooks.internal:{port}/envx-hooks", b"{}", {}))
        assert e.value.reason == "destination_refused" and len(rx.received) == 1
