"""A tiny local webhook receiver and the Sanming world, shared by the pledge tests."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers import Api, ticket

TODAY = date.today()
OWNER_USCC = "91350427MA2XY8123J"  # the world's pledgor (三明市沙县林业合作社)


def days(n: int) -> str:
    return (TODAY + timedelta(days=n)).isoformat()


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST (headers, body); `fail` first N requests."""

    def __init__(self, fail: int = 0) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail = fail
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.hits += 1
                if outer.fail > 0:
                    outer.fail -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.received.append(({k: v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/envx-hooks"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, event_type: str, timeout: float = 10.0) -> tuple[dict[str, str], bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for h, b in self.received:
                if h.get("X-Envx-Event-Type") == event_type:
                    return h, b
            time.sleep(0.05)
        raise AssertionError(f"no {event_type} webhook within {timeout}s; got "
                             f"{[h.get('X-Envx-Event-Type') for h, _ in self.received]}")


def open_bidding(seller: Api, market_id: str, auction_id: int, duration_seconds: int, timeout: float = 30.0) -> Any:
    """Open the bidding of an enforcement auction once its registration period (tests: 1 s) has run."""
    deadline = time.monotonic() + timeout
    while True:
        r = seller.post(f"/v1/markets/{market_id}/auctions/{auction_id}/step",
                        {"action": "bidding", "duration_seconds": duration_seconds})
        if r.status_code != 409 or r.json().get("code") != "registration_period_running" or \
                time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def world(api: Api, quantity: str = "29715") -> dict[str, Any]:
    """三明: a forestry bureau issues tickets to a holder; two banks, a buyer and a court take part."""
    api.instrument("FCT-SM")
    w = {
        "issuer": api.participant("三明市林业局", "issuer"),
        "owner": api.participant("三明市沙县林业合作社", "enterprise", uscc=OWNER_USCC),
        "bank": api.participant("兴业银行三明分行", "bank"),
        "junior": api.participant("三明农村商业银行", "bank"),
        "buyer": api.participant("成都市绿色低碳发展协会", "enterprise"),
        "court": api.participant("三明市中级人民法院", "court"),
    }
    api.issue(w["issuer"]["api"], w["owner"]["id"], "FCT-SM", quantity, ticket(1))
    return w


def pledge_body(pledgor: int, quantity: str = "18294", **extra: Any) -> dict[str, Any]:
    """A filing naming `pledgor` by id and, unless `pledgor_identifier` says otherwise, the world owner's USCC
    (a bank names its client by id and registered identifier)."""
    body = {"pledgor_id": pledgor, "pledgor_identifier": OWNER_USCC, "instrument": "FCT-SM", "quantity": quantity,
            "loan_contract": "兴银三明授字(2021)第0518号", "secured_amount": "5000000.00",
            "term_start": days(0), "term_end": days(365),
            "references": [{"source": "中登网", "reference": "07783201000291234567"}]}
    body.update(extra)
    return body
