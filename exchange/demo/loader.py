"""Demo data: the public cases of exchange/demo/demo_data.json loaded through the same services users call.

Idempotent: every step carries a fixed client id, so loading twice changes nothing. API keys for each
demo participant are written once to `<data dir>/demo-keys.json`: made server-side under the system actor
(`system:demo`), like `envx admin create-key` — the trusted bootstrap of a demo registry, outside the
four-eyes rule (participants admitted through the API enroll themselves with a split enrollment code).
"""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from exchange.core.calendar import SHANGHAI
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.courts import restoration
from exchange.pledging import filing
from exchange.registry import cash, instruments, issuance, issuers, participants, transfers
from exchange.registry.models import Participant
from exchange.registry.subjects import subject_of
from exchange.security import keys
from exchange.trading import markets, orders, sessions
from exchange.trading.calendars import cn
from exchange.trading.calendars import editing as calendars

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
        subject = subject_of(p["kind"], p.get("subject", "organisation"), p.get("uscc"), p.get("id_document"))
        people[p["key"]] = await participants.admit(rt, DEMO_ACTOR, f"demo:participant:{p['key']}",
                                                    name=p["name"], kind=p["kind"], subject=subject)
    op = _principal(people["operator"])
    # China's 2026 holidays and make-up days (the State Council's notice); markets follow it by default
    # (ENVX_DEFAULT_CALENDAR). 2027 is not published yet: not invented here.
    await calendars.install(rt, cn.CALENDAR_ID, cn.NAME, cn.NOTE, cn.days_2026(), DEMO_ACTOR, "demo:calendar:CN:2026")
    for i in data["instruments"]:
        await instruments.define_instrument(rt, op.actor, f"demo:instrument:{i['code']}", code=i["code"],
                                            name=i["name"], kind=i["kind"], decimals=i["decimals"], unit=None,
                                            attributes=i["attributes"])
        for key in i.get("issuers", []):  # each instrument's issuing authority; the others have none here
            await issuers.authorise(rt, op, instrument=i["code"], participant_id=people[key].id)
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
    # Terms and deadlines run from the day the demo was first loaded (its operator's admission), so that a
    # restart on a later day sends the same requests again and is answered as before.
    await _cases(rt, data, people, op, people["operator"].created_at.astimezone(SHANGHAI).date())
    if keys_path is not None:
        await _write_keys(rt, people, keys_path)
    return people


async def _markets(rt: Runtime, data: dict[str, Any], people: dict[str, Participant], op: Principal) -> None:
    """Markets open for trying, the two public Sanming sales done through listing and take."""
    for mk in data.get("markets", []):
        m = await markets.define(rt, op.actor, f"demo:market:{mk['instrument']}:{mk['mode']}",
                                 instrument=mk["instrument"], mode=mk["mode"], settings=mk["settings"])
        await sessions.open_session(rt, m.id)
    for n, d in enumerate(data.get("deposits", [])):
        await cash.record(rt, op, f"demo:deposit:{n}", direction="deposit",
                          participant_id=people[d["participant"]].id,
                          amount=d["amount"], bank_reference=f"DEMO-{n}", note="demo deposit")
    for n, t in enumerate(data.get("trades", [])):
        listed = (await orders.new_listing(rt, _principal(people[t["seller"]]), t["market"], f"demo:listing:{n}",
                                           side="sell", price=t["price"], quantity=t["quantity"])).order.row
        if listed.status == "open":
            await orders.take_listing(rt, _principal(people[t["buyer"]]), t["market"], listed.id,
                                      f"demo:take:{n}", quantity=t["quantity"])


async def _cases(rt: Runtime, data: dict[str, Any], people: dict[str, Participant], op: Principal,
                 start: date) -> None:
    """The public register's cases with a `load` part: the Sanming pledge (filed by the bank, confirmed by the
    holder) and the Nanjing restoration order (registered by the court, fulfilled by the payer's purchase of
    forest tickets, which are retired for it), so the public inquiry and the certificates have something real."""
    for n, pl in enumerate(p for p in data.get("pledges", []) if "load" in p):
        ld, owner, bank = pl["load"], people[pl["load"]["pledgor"]], _principal(people[pl["pledgee"]])
        filed = await filing.file(
            rt, bank, f"demo:pledge:{n}", pledgor_id=owner.id, pledgor_identifier=owner.uscc,
            instrument=pl["instrument"], quantity=ld["quantity"], serials=None, loan_contract=ld["loan_contract"],
            secured_amount=ld["secured_amount"], term_start=start, term_end=start + timedelta(days=ld["term_days"]),
            grace_days=0, references=[(r["source"], r["reference"]) for r in ld["references"]], haircut_bps=None,
            warning_bps=None, margin_call_bps=None, liquidation_bps=None, transfer_on_default=False)
        await filing.confirm(rt, _principal(owner), f"demo:pledge:{n}:confirm", filed.pledge.id)
    for n, o in enumerate(r for r in data.get("restoration_orders", []) if "load" in r):
        ld, payer = o["load"], people[o["load"]["payer"]]
        court, seller = _principal(people[o["court"]]), _principal(people[ld["seller"]])
        await cash.record(rt, op, f"demo:restoration:{n}:deposit", direction="deposit", participant_id=payer.id,
                          amount=ld["deposit"], bank_reference=f"DEMO-R{n}", note="demo deposit")
        order = await restoration.create(rt, court, f"demo:restoration:{n}", {
            "case_number": ld["case_number"], "case_type": ld["case_type"],
            "judgment_reference": ld["judgment_reference"], "defendants": [{"name": d} for d in ld["defendants"]],
            "payer_id": payer.id, "payer_identifier": payer.id_document_number,
            "assessed_loss": o["assessed_loss_t"], "assessment_method": ld["assessment_method"],
            "assessing_body": ld["assessing_body"], "multiplier": str(o["multiplier"]),
            "required_quantity": str(o["quantity"]), "eligible_kinds": ld["eligible_kinds"],
            "designated_seller_id": None, "deadline": start + timedelta(days=ld["deadline_days"]), "note": None})
        if order.status != "open":
            continue  # fulfilled when the demo was loaded before
        listed = (await orders.new_listing(rt, seller, ld["market"], f"demo:restoration:{n}:listing", side="sell",
                                           price=ld["price"], quantity=str(o["quantity"]))).order.row
        await restoration.take(rt, _principal(payer), order.order.id, f"demo:restoration:{n}:take",
                               market_id=ld["market"], listing_id=listed.id, quantity=str(o["quantity"]))


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
