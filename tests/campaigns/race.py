"""Race campaign: hundreds of concurrent clients on one hot account, one listing, one cash balance,
one pledge and one order; every round checks the exact outcome, the refusal codes and the ledger.

Scenarios per round (all requests of a scenario are released together through one gate):
- hot account: U units, far more 1-unit transfers and retirements than U: exactly U succeed, every
  refusal is 409 `insufficient_available`, nothing is overdrawn;
- one key: many identical transfers with the same idempotency key: one entry, every answer names it;
- hot listing: takes of one listing by many buyers: never more than listed, cash and units agree;
- hot cash: buy listings against one cash balance: exactly as many as it funds;
- pledge: confirmations racing transfers of the same units (exactly one wins), then many releases
  (exactly one releases, the lock is voided once), and many cancels of one order (one void);
- freeze: a court freeze racing transfers of the same units: never more moved and frozen than held.
After each round: the holds re-derived from the log are spent at most once, double entry balances,
no account is overdrawn, trades are fully settled, and the full audit (`verify_database`) is clean.

    python -m tests.campaigns.race --rounds 10 --clients 300
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from exchange.core.database import asyncpg_dsn
from tests.campaigns import checks
from tests.campaigns.common import (
    INSTRUMENT,
    LISTING,
    CampaignApi,
    EnvxServer,
    Party,
    build_world,
    days,
    http,
    local_cluster,
    operator_action,
    pledge_body,
)
from tests.helpers import fresh_uscc, ticket

_tickets = itertools.count(1000)
# Codes a refusal may carry in these scenarios; anything else (or a refusal without a code) is a finding.
EXPECTED_CODES = {"insufficient_available", "unknown_listing", "pledge_closed", "pledge_not_filed",
                  "order_not_open", "frozen", "pledged", "insufficient_units",
                  # a cancel racing another cancel of the same order finds it gone (sequentially: 200)
                  "unknown_order"}


@dataclass
class RaceSummary:
    rounds: int = 0
    scenarios: int = 0
    requests: int = 0
    max_concurrency: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    holds_checked: int = 0
    verify_clean: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and self.verify_clean == self.rounds


@dataclass
class Req:
    path: str
    body: dict[str, Any]
    token: str
    key: str = field(default_factory=lambda: f"race-{uuid.uuid4().hex}")
    tag: str = ""


@dataclass
class Res:
    req: Req
    status: int
    body: dict[str, Any]


async def storm(base_url: str, reqs: list[Req]) -> list[Res]:
    """Send all `reqs` at once: each on its own connection, released together by one gate."""
    gate = asyncio.Event()
    limits = httpx.Limits(max_connections=len(reqs) + 8, max_keepalive_connections=len(reqs) + 8)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        async def one(r: Req) -> Res:
            await gate.wait()
            resp = await client.post(r.path, json=r.body, headers={"Authorization": f"Bearer {r.token}",
                                                                   "Idempotency-Key": r.key})
            try:
                body = resp.json()
            except ValueError:
                body = {"text": resp.text[:200]}
            return Res(r, resp.status_code, body if isinstance(body, dict) else {"items": body})

        tasks = [asyncio.create_task(one(r)) for r in reqs]
        await asyncio.sleep(0.05)
        gate.set()
        return list(await asyncio.gather(*tasks))


class Round:
    def __init__(self, base_url: str, op: CampaignApi, world: Any, clients: int, rng: random.Random) -> None:
        self.base_url = base_url
        self.op = op
        self.world = world
        self.clients = clients
        self.rng = rng
        self.problems: list[str] = []
        self.outcomes: Counter[str] = Counter()
        self.requests = 0
        self.scenarios = 0

    # ---------------------------------------------------------------- helpers

    def holder(self, units: int, cash: str | None = None) -> Party:
        p = self.op.participant(f"热点企业{uuid.uuid4().hex[:8]}", "enterprise", uscc=fresh_uscc())
        party = Party(p["id"], p["token"], p["name"], p["uscc"])
        if units:
            issuer = self.op.as_(self.world.issuer.token)
            self.op.issue(issuer, party.id, INSTRUMENT, str(units), ticket(next(_tickets)))
        if cash:
            operator_action(self.op, "/v1/cash/deposits", {"participant_id": party.id, "amount": cash,
                                                           "bank_reference": f"race-{uuid.uuid4().hex[:12]}"})
        return party

    def balance(self, who: Party, instrument: str = INSTRUMENT) -> dict[str, int]:
        b = self.op.ok(self.op.as_(who.token).get("/v1/holdings"))["balances"]
        x = next((x for x in b if x["instrument"] == instrument), None)
        if x is None:
            return {"posted": 0, "available": 0}
        conv = (lambda s: int(s.replace(".", ""))) if instrument == "CNY" else (lambda s: int(s.split(".")[0]))
        return {"posted": conv(x["posted"]), "available": conv(x["available"])}

    def fire(self, name: str, reqs: list[Req], allowed: set[int]) -> list[Res]:
        self.scenarios += 1
        self.requests += len(reqs)
        out = asyncio.run(storm(self.base_url, reqs))
        for r in out:
            code = r.body.get("code", "") if r.status >= 400 else r.body.get("order", {}).get("status", "")
            self.outcomes[f"{name}: {r.status} {code}".strip()] += 1
            if r.status not in allowed:
                self.problems.append(f"{name}: {r.req.tag} -> {r.status} {r.body}")
            elif r.status >= 400 and (not r.body.get("code") or not r.body.get("detail")):
                self.problems.append(f"{name}: refusal without a code: {r.status} {r.body}")
            elif r.status >= 400 and r.body["code"] not in EXPECTED_CODES:
                self.problems.append(f"{name}: unexpected refusal code {r.body['code']}: {r.body.get('detail')}")
        return out

    def expect(self, name: str, cond: bool, what: str) -> None:
        if not cond:
            self.problems.append(f"{name}: {what}")

    # ---------------------------------------------------------------- scenarios

    def hot_account(self) -> None:
        units = max(10, self.clients // 3)
        src = self.holder(units)
        sinks = [self.holder(0) for _ in range(10)]
        reqs = []
        for i in range(self.clients):
            if i % 5 == 4:
                reqs.append(Req("/v1/retirements", {"instrument": INSTRUMENT, "quantity": "1", "purpose": "voluntary",
                                                    "beneficiary": "竞争测试"}, src.token, tag="retire"))
            else:
                to = self.rng.choice(sinks).id
                reqs.append(Req("/v1/transfers", {"to_participant": to, "instrument": INSTRUMENT, "quantity": "1"},
                                src.token, tag="transfer"))
        out = self.fire("hot account", reqs, {201, 409})
        won = sum(1 for r in out if r.status == 201)
        self.expect("hot account", won == units, f"{won} of {len(reqs)} one-unit moves succeeded from {units} units")
        self.expect("hot account", all(r.body.get("code") == "insufficient_available" for r in out if r.status == 409),
                    "a refusal was not insufficient_available")
        self.expect("hot account", self.balance(src) == {"posted": 0, "available": 0}, "source not empty")
        moved = sum(self.balance(s)["posted"] for s in sinks)
        retired = sum(1 for r in out if r.status == 201 and r.req.tag == "retire")
        self.expect("hot account", moved + retired == units, f"moved {moved} + retired {retired} != {units}")

    def one_key(self) -> None:
        src = self.holder(50)
        dst = self.holder(0)
        key = f"race-same-{uuid.uuid4().hex}"
        body = {"to_participant": dst.id, "instrument": INSTRUMENT, "quantity": "7"}
        n = max(10, self.clients // 3)
        out = self.fire("one key", [Req("/v1/transfers", body, src.token, key, "same") for _ in range(n)], {201})
        seqs = {r.body.get("entry_seq") for r in out if r.status == 201}
        self.expect("one key", len(seqs) == 1, f"one idempotency key produced entries {seqs}")
        self.expect("one key", self.balance(dst)["posted"] == 7, "the transfer was applied more than once")

    def hot_listing(self) -> None:
        listed = 100
        seller = self.holder(listed)
        takers = [self.holder(0, "100000.00") for _ in range(max(5, self.clients // 10))]
        li = self.op.ok(self.op.as_(seller.token).post(f"/v1/markets/{LISTING}/listings",
                                                       {"side": "sell", "price": "100.00", "quantity": str(listed)}))
        lid = li["order"]["id"]
        reqs = [Req(f"/v1/markets/{LISTING}/listings/{lid}/take", {"quantity": str(self.rng.randint(1, 3))},
                    self.rng.choice(takers).token, tag="take") for _ in range(self.clients)]
        out = self.fire("hot listing", reqs, {201, 404, 409})
        filled = sum(int(r.body["order"]["filled_quantity"]) for r in out if r.status == 201)
        demand = sum(int(r.body["quantity"]) for r in reqs)
        self.expect("hot listing", filled <= listed, f"{filled} taken of a {listed} listing")
        self.expect("hot listing", filled >= min(listed, demand) - 2, f"only {filled} of {listed} taken")
        self.expect("hot listing", self.balance(seller)["posted"] == listed - filled, "seller's units disagree")
        self.expect("hot listing", self.balance(seller, "CNY")["posted"] == filled * 100_00, "seller's cash disagrees")
        paid = sum(100_000_00 - self.balance(t, "CNY")["posted"] for t in takers)
        got = sum(self.balance(t)["posted"] for t in takers)
        self.expect("hot listing", (paid, got) == (filled * 100_00, filled), f"takers paid {paid} for {got} units")
        for t in takers:
            b = self.balance(t, "CNY")
            self.expect("hot listing", b["posted"] == b["available"], "a refused take kept its cash hold")

    def hot_cash(self) -> None:
        funds = 5
        buyer = self.holder(0, f"{funds * 2000}.00")
        reqs = [Req(f"/v1/markets/{LISTING}/listings", {"side": "buy", "price": "100.00", "quantity": "20"},
                    buyer.token, tag="bid") for _ in range(self.clients)]
        out = self.fire("hot cash", reqs, {201, 409})
        won = sum(1 for r in out if r.status == 201)
        self.expect("hot cash", won == funds, f"{won} buy listings on cash for {funds}")
        self.expect("hot cash", self.balance(buyer, "CNY")["available"] == 0, "cash left over or overdrawn")

    def pledge_and_cancel(self) -> None:
        bank = self.world.bank
        owner = self.holder(100)
        other = self.holder(0)
        p = self.op.ok(self.op.as_(bank.token).post("/v1/pledges", pledge_body(owner, 60, uuid.uuid4().hex[:8])))
        half = self.clients // 2
        reqs = [Req(f"/v1/pledges/{p['id']}/confirm", {}, owner.token, tag="confirm") for _ in range(half)]
        reqs += [Req("/v1/transfers", {"to_participant": other.id, "instrument": INSTRUMENT, "quantity": "60"},
                     owner.token, tag="transfer") for _ in range(half)]
        self.rng.shuffle(reqs)
        out = self.fire("pledge vs transfer", reqs, {200, 201, 409})
        confirmed = sum(1 for r in out if r.req.tag == "confirm" and r.status == 200)
        moved = sum(1 for r in out if r.req.tag == "transfer" and r.status == 201)
        self.expect("pledge vs transfer", confirmed + moved == 1, f"{confirmed} confirmations and {moved} transfers "
                    "of the same 60 of 100 units succeeded")
        # A confirmed pledge, released by many requests at once: one release, the lock voided once.
        owner2 = self.holder(100)
        p2 = self.op.ok(self.op.as_(bank.token).post("/v1/pledges", pledge_body(owner2, 60, uuid.uuid4().hex[:8])))
        p2 = self.op.ok(self.op.as_(owner2.token).post(f"/v1/pledges/{p2['id']}/confirm", {}))
        reqs = [Req(f"/v1/pledges/{p2['id']}/release", {}, bank.token, tag="release") for _ in range(half)]
        out = self.fire("double release", reqs, {200, 409})
        ok = [r for r in out if r.status == 200]
        self.expect("double release", len(ok) == 1, f"{len(ok)} releases of one pledge succeeded")
        self.expect("double release", self.balance(owner2)["available"] == 100, "the lock was not released")
        self._void_count("double release", p2["hold_id"])
        # Many cancels of one resting order: one cancellation, its hold voided once.
        o = self.op.ok(self.op.as_(owner.token).post(f"/v1/markets/{LISTING}/listings",
                                                     {"side": "sell", "price": "101.00", "quantity": "10"}))["order"]
        reqs = [Req(f"/v1/markets/{LISTING}/orders/{o['id']}/cancel", {}, owner.token, tag="cancel")
                for _ in range(half)]
        out = self.fire("many cancels", reqs, {200, 409})
        self.expect("many cancels", all(r.body.get("status") == "cancelled" for r in out if r.status == 200),
                    "a cancel answered another status")
        left = 100 - 60 * (moved + confirmed)  # a confirmed pledge holds its 60 as a transfer moves them
        self.expect("many cancels", self.balance(owner)["available"] == left, "the order's hold was not voided")
        self._void_count("many cancels", o["hold_id"])

    def _void_count(self, name: str, hold: int) -> None:
        async def count() -> int:
            conn = await asyncpg.connect(asyncpg_dsn(self.world.db_url))
            try:
                return int(await conn.fetchval("SELECT count(*) FROM ledger_hold_resolutions WHERE hold = $1", hold))
            finally:
                await conn.close()
        self.expect(name, asyncio.run(count()) == 1, f"hold {hold} resolved other than once")

    def freeze_vs_transfer(self) -> None:
        court = self.world.court
        owner = self.holder(100)
        other = self.holder(0)
        reqs = [Req("/v1/freezes", {"holder_id": owner.id, "holder_identifier": owner.uscc, "instrument": INSTRUMENT,
                                    "quantity": "80",
                                    "case_number": f"(2025)闽04执{uuid.uuid4().hex[:6]}号",
                                    "notice_number": f"XZ-{uuid.uuid4().hex[:6]}", "term_start": days(0),
                                    "term_end": days(30)}, court.token, tag="freeze")]
        reqs += [Req("/v1/transfers", {"to_participant": other.id, "instrument": INSTRUMENT, "quantity": "10"},
                     owner.token, tag="transfer") for _ in range(max(10, self.clients // 6))]
        self.rng.shuffle(reqs)
        out = self.fire("freeze vs transfer", reqs, {200, 201, 409})
        frozen = 80 if any(r.req.tag == "freeze" and r.status in (200, 201) for r in out) else 0
        moved = 10 * sum(1 for r in out if r.req.tag == "transfer" and r.status == 201)
        self.expect("freeze vs transfer", frozen + moved <= 100, f"{frozen} frozen and {moved} moved of 100 units")
        self.expect("freeze vs transfer", self.balance(other)["posted"] == moved, "moved units disagree")

    def run(self) -> None:
        for scenario in (self.hot_account, self.one_key, self.hot_listing, self.hot_cash, self.pledge_and_cancel,
                         self.freeze_vs_transfer):
            scenario()


def run_campaign(url: str, data_dir: Path, *, rounds: int, clients: int, seed: int = 1,
                 log: Any = print) -> RaceSummary:
    s = RaceSummary(max_concurrency=clients)
    t0 = time.monotonic()
    rng = random.Random(seed)
    # Hundreds of connections at once: uvicorn's default backlog and keep-alive are enough; a larger
    # database pool lets the requests that read (look-ups, projections) actually run side by side.
    srv = EnvxServer(url, data_dir, db_pool_size=20)
    op_key, checker = srv.operators()
    srv.start()
    outcomes: Counter[str] = Counter()
    try:
        with http(srv.url, op_key, timeout=120, checker=checker) as op:
            world = build_world(op, traders=2, markets=("listing",), court=True)
            world.db_url = url  # type: ignore[attr-defined]
            for n in range(rounds):
                r = Round(srv.url, op, world, clients, rng)
                r.run()
                holds, hold_problems = asyncio.run(checks.holds_spent_once(asyncpg_dsn(url)))
                problems = r.problems + hold_problems + asyncio.run(checks.exchange_consistency(asyncpg_dsn(url)))
                ok, report = asyncio.run(checks.verify(url))
                s.verify_clean += ok
                if not ok:
                    problems.append(f"verify: {report}")
                s.problems += [f"round {n}: {p}" for p in problems]
                s.rounds += 1
                s.scenarios += r.scenarios
                s.requests += r.requests
                s.holds_checked = holds
                outcomes.update(r.outcomes)
                log(f"round {n + 1}/{rounds}: {r.scenarios} races, {r.requests} requests, {holds} holds checked, "
                    f"problems {len(problems)}")
    finally:
        srv.stop()
    s.outcomes = dict(sorted(outcomes.items()))
    s.seconds = round(time.monotonic() - t0, 1)
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.campaigns.race", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--clients", type=int, default=300, help="concurrent clients per race")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="envx-race-"))
    cluster, url = local_cluster(root)
    try:
        s = run_campaign(url, root / "data", rounds=args.rounds, clients=args.clients, seed=args.seed)
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(asdict(s), ensure_ascii=False, indent=2))
    print(f"race campaign: {s.rounds} rounds, {s.scenarios} races, {s.requests} requests (up to {s.max_concurrency} "
          f"at once), {s.holds_checked} holds re-derived, verify clean {s.verify_clean}/{s.rounds}, "
          f"{len(s.problems)} problems, {s.seconds}s: {'PASS' if s.ok else 'FAIL'}")
    return 0 if s.ok else 1


if __name__ == "__main__":
    sys.exit(main())
