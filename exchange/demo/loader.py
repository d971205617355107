"""Demo data: the public cases of exchange/demo/demo_data.json loaded through the same services users call.

Idempotent: every step carries a fixed client id, so loading twice changes nothing. API keys for each
demo participant are written once to `<data dir>/demo-keys.json`: made server-side under the system actor
(`system:demo`), like `envx admin create-key` — the trusted bootstrap of a demo registry, outside the
four-eyes rule (participants admitted through the API enroll themselves with a split enrollment code).
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.registry import cash, instruments, issuance, participants, transfers
from exchange.registry.models import Participant
from exchange.security import keys
from exchange.trading import markets, orders, sessions

log = logging.getLogger("envx.demo")
DEMO_ACTOR = "system:demo"


def demo_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resources.files("exchange.demo").joinpath("demo_data.json").read_text("utf-8"))
    return data


def _principal(p: Participant) -> Principal:
    return Principal(p.id, p.kind, p.name, 0, p.holding_account, p.cash_account)


async def load(rt: Runtime, keys_path: Path | None) -> dict[str, Participant]:
    data = demo_data()
    people: dict[str, Participant] = {}
    for p in data["participants"]:
        people[p["key"]] = await participants.admit(rt, DEMO_ACTOR, f"demo:participant:{p['key']}",
                                                    name=p["name"], kind=p["kind"], uscc=p.get("uscc"))
    op = _principal(people["operator"])
    for i in data["instruments"]:
        await instruments.define_instrument(rt, op.actor, f"demo:instrument:{i['code']}", code=i["code"],
                                            name=i["name"], kind=i["kind"], decimals=i["decimals"], unit=None,
                                            attributes=i["attributes"])
    checker = _principal(people["operator2"])
    for n, iss in enumerate(data["issuances"]):
        req = await issuance.request(rt, _principal(people[iss["issuer"]]), f"demo:issuance:{n}",
                                     instrument=iss["instrument"], holder_id=people[iss["holder"]].id,
                                     quantity=iss["quantity"], attributes=iss["attributes"])
        await issuance.approve(rt, checker, req.id, "demo")
    for n, t in enumerate(data["transfers"]):
        await transfers.transfer(rt, _principal(people[t["from"]]), f"demo:transfer:{n}",
                                 to_participant=people[t["to"]].id, instrument=t["instrument"],
                                 quantity=t["quantity"], serials=None, memo=t.get("memo"))
    await _markets(rt, data, people, op)
    if keys_path is not None:
        await _write_keys(rt, people, keys_path)
    return people


async def _markets(rt: Runtime, data: dict[str, Any], people: dict[str, Participant], op: Principal) -> None:
    """Markets open for trying, the two public Sanming sales done through listing and take."""
    for mk in data.get("markets", []):
        m = await markets.define(rt, op.actor, f"demo:market:{mk['instrument']}:{mk['mode']}",
                                 instrument=mk["instrument"], mode=mk["mode"], settings=mk["settings"])
        await sessions.open_session(rt, m["id"])
    for n, d in enumerate(data.get("deposits", [])):
        await cash.record(rt, op, f"demo:deposit:{n}", direction="deposit",
                          participant_id=people[d["participant"]].id,
                          amount=d["amount"], bank_reference=f"DEMO-{n}", note="demo deposit")
    for n, t in enumerate(data.get("trades", [])):
        listed = await orders.post_listing(rt, _principal(people[t["seller"]]), t["market"], f"demo:listing:{n}",
                                           side="sell", price=t["price"], quantity=t["quantity"])
        if listed["order"]["status"] == "open":
            await orders.take_listing(rt, _principal(people[t["buyer"]]), t["market"], listed["order"]["id"],
                                      f"demo:take:{n}", quantity=t["quantity"])


async def _write_keys(rt: Runtime, people: dict[str, Participant], path: Path) -> None:
    if path.exists():
        existing = json.loads(path.read_text("utf-8"))
        async with rt.read() as conn:
            still_valid = [await keys.authenticate(conn, rt.key_cache, v["api_key"]) for v in existing.values()]
        if existing.keys() == people.keys() and all(still_valid):
            return
    out: dict[str, Any] = {}
    assert rt.credentials is not None
    async with rt.tx() as conn:
        for key, p in people.items():
            k = await keys.create_key(conn, rt.credentials, p.id, "demo", created_by=DEMO_ACTOR)
            out[key] = {"participant_id": p.id, "name": p.name, "kind": p.kind, "api_key": k.token,
                        "holding_account": p.holding_account, "cash_account": p.cash_account}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, ensure_ascii=False, indent=2), "utf-8")
    path.chmod(0o600)
