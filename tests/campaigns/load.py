"""Mixed load through HTTP: transfers, retirements, orders, cancels, listings and takes, pledges.

Each worker thread keeps its own small state (its open orders, its pledge in progress) and records
every request in one of three books: acknowledged (2xx: it must survive anything), refused (a 4xx
with its code: it must have changed nothing) and in doubt (no answer, or 503: the server died or
lost its database mid-request). In-doubt requests are retried after recovery with the same
idempotency key, as a real client would; that must converge, never fail with a 5xx.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.campaigns.common import BOOK, INSTRUMENT, LISTING, World, pledge_body

# Weights of the operations; pledges only when the world has a bank.
WEIGHTS = {"transfer": 30, "retire": 6, "order": 30, "cancel": 8, "listing": 6, "take": 8, "pledge": 12}
# How far a registration has got: an acknowledged step must be at least this far after recovery.
PLEDGE_RANK = {"filed": 0, "active": 1, "released": 2}


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any]
    token: str
    key: str
    kind: str


@dataclass
class Ack:
    call: Call
    status: int
    result: dict[str, Any]
    t: float  # monotonic time of the answer
    t_sent: float  # and of the request


@dataclass
class Book:
    acked: list[Ack] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    in_doubt: list[Call] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # 5xx other than 503, 422: bugs
    lock: threading.Lock = field(default_factory=threading.Lock)

    def counts(self) -> Counter[str]:
        return Counter(a.call.kind for a in self.acked)


def send(client: httpx.Client, call: Call) -> httpx.Response:
    headers = {"Authorization": f"Bearer {call.token}", "Idempotency-Key": call.key}
    return client.request(call.method, call.path, json=call.body, headers=headers)


class MixedLoad:
    """`workers` threads sending a weighted mix until `stop()` or until the server stops answering."""

    def __init__(self, base_url: str, world: World, *, seed: int, workers: int = 6, tag: str = "r",
                 weights: dict[str, int] | None = None, stop_on_error: bool = True) -> None:
        self.base_url = base_url
        self.world = world
        self.seed = seed
        self.workers = workers
        self.tag = tag
        self.weights = dict(weights or WEIGHTS)
        if world.bank is None:
            self.weights.pop("pledge", None)
        if LISTING not in world.markets:
            self.weights.pop("listing", None)
            self.weights.pop("take", None)
        if BOOK not in world.markets:
            self.weights.pop("order", None)
            self.weights.pop("cancel", None)
        # A worker that loses its connection stops (the server died); with stop_on_error=False it
        # pauses and goes on (the server comes back: a database failover).
        self.stop_on_error = stop_on_error
        self.book = Book()
        self.listings: list[int] = []  # open sell listings anyone may take
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for w in range(self.workers):
            t = threading.Thread(target=self._worker, args=(w,), name=f"load-{w}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    def acked_count(self) -> int:
        return len(self.book.acked)

    # ------------------------------------------------------------------ the worker

    def _worker(self, w: int) -> None:
        rng = random.Random(self.seed * 1000 + w)
        kinds, weights = zip(*self.weights.items(), strict=True)
        mine: list[tuple[str, int]] = []  # (token, order id) of this worker's open orders
        pledge: dict[str, Any] | None = None  # this worker's registration in progress
        n = 0
        with httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(30, connect=5)) as client:
            while not self._stop.is_set():
                n += 1
                key = f"{self.tag}-w{w}-{n}"
                kind = rng.choices(kinds, weights)[0]
                call, on_ok = self._make(kind, key, rng, mine, pledge)
                if call is None:
                    continue
                t_sent = time.monotonic()
                try:
                    resp = send(client, call)
                except httpx.HTTPError:
                    with self.book.lock:
                        self.book.in_doubt.append(call)
                    if self.stop_on_error:
                        return
                    time.sleep(0.05)
                    continue
                body = _json(resp)
                if resp.status_code in (200, 201):
                    with self.book.lock:
                        self.book.acked.append(Ack(call, resp.status_code, body, time.monotonic(), t_sent))
                    pledge = on_ok(body) if on_ok else pledge
                elif resp.status_code == 503:
                    with self.book.lock:
                        self.book.in_doubt.append(call)
                        self.book.refused[f"503 {body.get('code')}"] += 1
                    time.sleep(0.05)
                elif resp.status_code in (404, 409):
                    with self.book.lock:
                        self.book.refused[f"{resp.status_code} {body.get('code')}"] += 1
                    if kind == "pledge" and pledge is not None:
                        pledge = None  # refused step (e.g. units taken meanwhile): start a new one
                else:
                    with self.book.lock:
                        self.book.errors.append(f"{call.kind} {call.path} -> {resp.status_code} {resp.text[:300]}")
                        if resp.status_code >= 500:  # in doubt too: it may have been applied
                            self.book.in_doubt.append(call)
                    time.sleep(0.05)

    def _make(self, kind: str, key: str, rng: random.Random, mine: list[tuple[str, int]],
              pledge: dict[str, Any] | None) -> tuple[Call | None, Any]:
        w = self.world
        a, b = rng.sample(w.traders, 2)
        if kind == "transfer":
            return Call("POST", "/v1/transfers", {"to_participant": b.id, "instrument": INSTRUMENT,
                                                  "quantity": str(rng.randint(1, 3))}, a.token, key, kind), None
        if kind == "retire":
            return Call("POST", "/v1/retirements", {"instrument": INSTRUMENT, "quantity": "1",
                                                    "purpose": "voluntary", "beneficiary": "可靠性测试"},
                        a.token, key, kind), None
        if kind == "order":
            tif = rng.choice(["day", "day", "day", "ioc"])
            body = {"side": rng.choice(["buy", "sell"]), "price": f"{rng.randint(95, 105)}.00",
                    "quantity": str(rng.randint(1, 20)), "tif": tif}

            def opened(res: dict[str, Any]) -> Any:
                if res["order"]["status"] == "open":
                    mine.append((a.token, res["order"]["id"]))
                return pledge
            return Call("POST", f"/v1/markets/{BOOK}/orders", body, a.token, key, kind), opened
        if kind == "cancel":
            if not mine:
                return None, None
            token, oid = mine.pop(rng.randrange(len(mine)))
            return Call("POST", f"/v1/markets/{BOOK}/orders/{oid}/cancel", {}, token, key, kind), None
        if kind == "listing":
            body = {"side": "sell", "price": f"{rng.randint(98, 102)}.00", "quantity": str(rng.randint(5, 30))}

            def listed(res: dict[str, Any]) -> Any:
                if res["order"]["status"] == "open":
                    with self.book.lock:
                        self.listings.append(res["order"]["id"])
                return pledge
            return Call("POST", f"/v1/markets/{LISTING}/listings", body, a.token, key, kind), listed
        if kind == "take":
            with self.book.lock:
                if not self.listings:
                    return None, None
                lid = rng.choice(self.listings[-20:])
            return Call("POST", f"/v1/markets/{LISTING}/listings/{lid}/take", {"quantity": str(rng.randint(1, 5))},
                        b.token, key, kind), None
        if kind == "pledge":
            assert w.bank is not None
            if pledge is None:  # the bank files
                pledgor = a
                call = Call("POST", "/v1/pledges", pledge_body(pledgor, rng.randint(5, 40), key),
                            w.bank.token, key, "pledge_file")
                return call, lambda res: {"id": res["id"], "pledgor": pledgor.token, "status": res["status"]}
            if pledge["status"] == "filed":  # the pledgor consents: the units are locked
                return (Call("POST", f"/v1/pledges/{pledge['id']}/confirm", {}, pledge["pledgor"], key,
                             "pledge_confirm"), lambda res: {**pledge, "status": res["status"]})
            # the loan is repaid: the bank releases; the next pledge starts afresh
            return (Call("POST", f"/v1/pledges/{pledge['id']}/release", {}, w.bank.token, key, "pledge_release"),
                    lambda res: None)
        raise AssertionError(kind)


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {"items": body}
