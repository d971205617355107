"""What every campaign shares: a real `envx serve` process, an HTTP caller, the trading world.

Setup goes through `tests.helpers.Api` (over httpx instead of Litestar's test client: the same calls),
so when operator actions become maker-checker the change made there reaches the campaigns too;
operator-only steps that `Api` has no shortcut for go through `operator_action`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.campaigns.pg import Cluster
from tests.helpers import Api, fresh_uscc, ticket
from tests.system.server import Server

INSTRUMENT = "FCT-SM"
BOOK = f"{INSTRUMENT}.continuous"
LISTING = f"{INSTRUMENT}.listing"


class EnvxServer(Server):
    """`envx serve` as a child process (tests/system/server.py) with extra ENVX_ settings."""

    def __init__(self, db_url: str, data_dir: Path, **settings: object) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(db_url, data_dir)
        # Checkpoints often, so that "the last published checkpoint" moves during a campaign; no
        # calendar jobs (markets here are always open).
        self.settings = {"checkpoint_interval_seconds": 0.2, "scheduler": "false", **settings}

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, **{f"ENVX_{k.upper()}": str(v) for k, v in self.settings.items()}}

    def operators(self) -> tuple[str, str]:
        """Keys of two different operators: maker and checker (`envx admin create-key` twice)."""
        maker = self.operator_key()
        checker = json.loads(self.cli("admin", "create-key", "--name", "second operator (checker)"))["api_key"]
        return maker, checker

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        """Start the process without waiting for it (to kill it while it recovers)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)], env=self.env,
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError("server did not become healthy")

    def start(self) -> None:
        self.spawn()
        self.wait_healthy()


class _Approved:
    """A maker-checker proposal approved by the second operator, answering like the direct call."""

    def __init__(self, resp: httpx.Response) -> None:
        self.resp = self.raw = resp  # `raw` as tests.helpers.Approved: the approval's own answer
        self.ok = resp.status_code == 200
        self.status_code = 201 if resp.status_code == 200 else resp.status_code
        self.text = resp.text

    def json(self) -> Any:
        body = self.resp.json()
        return body.get("result", body) if self.resp.status_code == 200 else body


class CampaignApi(Api):
    """`Api` over a real HTTP connection; automatic idempotency keys are unique across processes.

    Maker-checker (exchange/security/operator_actions.py): an operator action answered 202 with a pending
    proposal is approved at once with the `checker` operator's key, so setup reads as direct calls."""

    def __init__(self, client: Any, token: str, checker: str | None = None) -> None:
        super().__init__(client, token)
        self.checker = checker

    def new_key(self) -> str:
        return f"setup-{uuid.uuid4().hex}"

    def post(self, path: str, body: dict[str, Any] | None = None, key: str | None = "auto") -> Any:
        resp = self.propose(path, body, key)
        if resp.status_code == 202 and self.checker:
            return self.approve(resp)
        return resp

    def approve(self, proposal: Any) -> Any:
        body = proposal.json()
        return _Approved(self.client.post(body["approve"], json={}, headers={
            "Authorization": f"Bearer {self.checker}", "Idempotency-Key": f"approve-{body['id']}"}))

    def as_(self, token: str) -> CampaignApi:
        return CampaignApi(self.client, token, self.checker)


@contextlib.contextmanager
def http(base_url: str, token: str, timeout: float = 30, checker: str | None = None) -> Iterator[CampaignApi]:
    with httpx.Client(base_url=base_url, timeout=timeout) as c:
        yield CampaignApi(c, token, checker)  # httpx.Client has the calls Api makes


def operator_action(op: Api, path: str, body: dict[str, Any]) -> Any:
    """One operator action (deposit, market definition, session); under maker-checker the proposal is
    approved by the second operator (CampaignApi.post)."""
    return op.ok(op.post(path, body))


def days(n: int) -> str:
    return (date.today() + timedelta(days=n)).isoformat()


@dataclass
class Party:
    id: int
    token: str
    name: str
    uscc: str | None = None  # how a bank or court names it (its registered identifier)


@dataclass
class World:
    issuer: Party
    traders: list[Party]
    bank: Party | None
    court: Party | None
    units_each: int
    cash_each_fen: int
    markets: list[str] = field(default_factory=list)


def build_world(op: Api, *, traders: int = 6, units: int = 5000, cash: str = "1000000.00",
                markets: tuple[str, ...] = ("continuous", "listing"), bank: bool = True,
                court: bool = False) -> World:
    """An issuer, `traders` enterprises each holding `units` forest tickets and `cash`, a bank and a
    court, and always-open markets (no T+1, so bought units trade again at once)."""
    op.instrument(INSTRUMENT, attributes={})
    def mk(name: str, kind: str) -> Party:
        p = op.participant(name, kind, uscc=fresh_uscc())
        return Party(p["id"], p["token"], name, p["uscc"])

    issuer = mk("三明市林业局", "issuer")
    ts = [mk(f"林业合作社{i:03d}", "enterprise") for i in range(traders)]
    for i, t in enumerate(ts):
        op.issue(op.as_(issuer.token), t.id, INSTRUMENT, str(units), ticket(i + 1))
        operator_action(op, "/v1/cash/deposits", {"participant_id": t.id, "amount": cash,
                                                  "bank_reference": f"campaign-{uuid.uuid4().hex[:12]}"})
    w = World(issuer, ts, mk("兴业银行三明分行", "bank") if bank else None,
              mk("三明市中级人民法院", "court") if court else None, units, int(cash.replace(".", "")))
    for mode in markets:
        operator_action(op, "/v1/markets", {"instrument": INSTRUMENT, "mode": mode,
                                            "settings": {"sessions": [], "t_plus_1": False}})
        market_id = f"{INSTRUMENT}.{mode}"
        operator_action(op, f"/v1/markets/{market_id}/session", {"action": "open"})
        w.markets.append(market_id)
    return w


def pledge_body(pledgor: Party, quantity: int, tag: str) -> dict[str, Any]:
    return {"pledgor_id": pledgor.id, "pledgor_identifier": pledgor.uscc, "instrument": INSTRUMENT,
            "quantity": str(quantity),
            "loan_contract": f"兴银三明授字(2025)第{tag}号", "secured_amount": "50000.00",
            "term_start": days(0), "term_end": days(365), "references": []}


def local_cluster(root: Path, database: str = "envx") -> tuple[Cluster, str]:
    """A throwaway PostgreSQL on loopback for a standalone campaign run, or ENVX_CAMPAIGN_DATABASE_URL's."""
    given = os.environ.get("ENVX_CAMPAIGN_DATABASE_URL")
    cluster = Cluster(root, "pg")
    if given:
        return cluster, given
    cluster.init()
    cluster.start()
    return cluster, cluster.create_database(database)


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0
