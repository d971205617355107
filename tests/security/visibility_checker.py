"""Object-level authorization, generated from the OpenAPI document: every operation that names an
object by id is called with the key of every participant that is not a party to that object -- another
bank, another court, another enterprise, another issuer -- after those participants made objects of
their own and filed claims, quotes, registrations and bids that grant them no visibility. The answer
must be the one an id that does not exist gets, for the same caller and operation:

- 403 or 404 (never 2xx, never a business refusal 409 or a validation 422 that looked at the object);
- the same status, code and body (the id named in it aside), so nothing tells the object exists, nor
  its state, nor any of its fields;
- and afterwards every object is as it was.

Objects whose existence is public by design (markets, instruments, auctions, listings, certificates)
and PUBLIC operations are left to tests/security/test_public_answers.py. Oversight (operators,
auditors) sees everything and is no non-party. tests/security/authz_checker.py checks the role matrix.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from api.authz import MATRIX, PUBLIC
from api.security.signatures import generate_key
from tests.helpers import Api, fresh_uscc, ticket
from tests.security import authz_checker as az

UNKNOWN = 987_654
INSTRUMENT = "FCT-VZ"
CONT, LIST, BLOCK, AUCT = (f"{INSTRUMENT}.{m}" for m in ("continuous", "listing", "block", "auction"))

# (path pattern, object kind): the most specific first. The object's id is the last path parameter.
OBJECTS: list[tuple[str, str]] = [
    (r"^/v1/pledges/claims/\{claim_id\}", "claim"),
    (r"^/v1/pledges/\{pledge_id\}", "pledge"),
    (r"^/v1/freezes/\{freeze_id\}", "freeze"),
    (r"^/v1/markets/\{market_id\}/orders/\{order_id\}", "order"),
    (r"^/v1/markets/\{market_id\}/block-quotes/\{quote_id\}", "quote"),
    (r"^/v1/markets/\{market_id\}/deals/\{deal_id\}", "deal"),
    (r"^/v1/markets/\{market_id\}/auctions/\{auction_id\}/bids/\{bid_id\}", "bid"),
    (r"^/v1/restoration-orders/\{order_id\}", "restoration"),
    (r"^/v1/ledger/entries/\{seq\}", "entry"),
    (r"^/v1/accounts/\{account_id\}", "account"),
    (r"^/v1/issuances/\{request_id\}", "issuance"),
    (r"^/v1/participants/\{participant_id\}/keys/\{key_id\}", "key"),
    (r"^/v1/participants/\{participant_id\}/signing-keys/\{key_id\}", "signing_key"),
    (r"^/v1/participants/\{participant_id\}", "participant"),
    (r"^/v1/operator-actions/\{action_id\}", "action"),
]
# Path parameters that name public things (kept as they are in both calls).
PUBLIC_PARAMS = frozenset({"market_id", "code", "instrument", "auction_id", "listing_id"})
# Bodies that pass validation, so the answer is about the object (the schema sample otherwise).
BODIES: dict[str, dict[str, Any]] = {
    "topUpPledge": {"quantity": "1"},
    "partiallyReleasePledge": {"quantity": "1"},
    "enforcePledge": {"method": "exchange", "reason": "违约"},
    "acceptPledgeSale": {"price": "1.00"},
    "declarePledgeDefault": {"reference": "违约-旁观", "notice_date": date.today().isoformat()},
    "startPledgeSale": {"market_id": LIST, "price": "1.00"},
    "amendPledge": {"haircut_bps": 100},
    "filePledgeClaim": {"loan_contract": "旁观-探查", "amount": "0.01",
                        "term_end": (date.today() + timedelta(days=30)).isoformat()},
    "renewFreeze": {"term_end": (date.today() + timedelta(days=400)).isoformat(), "notice_number": "N-旁观"},
    "deductFreeze": {},
    "reduceOrder": {"quantity": "1"},
    "respondBlockQuote": {"price": "100.00", "quantity": "1"},
    "counterDeal": {"price": "100.00", "quantity": "1"},
    "purchaseForRestoration": {"market_id": CONT, "price": "60.00", "quantity": "1"},
    "takeForRestoration": {"market_id": LIST, "listing_id": 1, "quantity": "1"},
    "createKey": {"label": "旁观"},
    "registerSigningKey": {"public_key": generate_key()[1]},
}


@dataclass
class Obj:
    kind: str
    id: int
    parties: frozenset[str]           # world names of the participants who may see it
    parent: dict[str, Any] = field(default_factory=dict)  # other path parameters (market, participant ...)
    markers: tuple[str, ...] = ()     # field values of the object that no refusal may carry
    # Operations anyone may do on it by a published rule (a bank files a junior claim on a lot in the
    # public register): they succeed, and their answer still names none of the markers.
    open_to_all: frozenset[str] = frozenset()


@dataclass
class World:
    api: Api
    people: dict[str, dict[str, Any]]
    objects: dict[str, list[Obj]] = field(default_factory=dict)

    def add(self, o: Obj) -> None:
        self.objects.setdefault(o.kind, []).append(o)


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    checked: int = 0          # calls compared with the unknown id
    object_level: int = 0     # of those, answered past the role guard (the services' own checks)
    operations: set[str] = field(default_factory=set)


def object_of(path: str) -> str | None:
    return next((kind for pattern, kind in OBJECTS if re.match(pattern, path)), None)


def _normalise(body: str, *ids: int) -> str:
    for i in ids:
        body = re.sub(rf"(?<![\w.]){i}(?![\w.])", "<id>", body)
    return body


def _body(resp: Any) -> tuple[str, str | None]:
    try:
        data = resp.json()
    except ValueError:
        return resp.text, None
    return json.dumps(data, ensure_ascii=False, sort_keys=True), data.get("code") if isinstance(data, dict) else None


def check(world: World, spec: dict[str, Any], only: set[str] | None = None) -> Verdict:
    v = Verdict()
    sample_world = az.World({}, {"enterprise": world.people["E"]["id"]}, {})
    client = world.api.client
    for op in az.operations(spec):
        kind = object_of(op.path)
        if kind is None or MATRIX.get(op.operation_id) is PUBLIC or (only and op.operation_id not in only):
            continue
        obj_param = next(p for p in reversed(op.path_params) if p not in PUBLIC_PARAMS)
        for obj in world.objects.get(kind, []):
            for name, person in world.people.items():
                if name in obj.parties:
                    continue
                answers = []
                for ident in (obj.id, UNKNOWN):
                    path = op.path
                    for p in op.path_params:
                        value = ident if p == obj_param else obj.parent[p]
                        path = path.replace("{" + p + "}", str(value))
                    kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {person['token']}",
                                                          "Idempotency-Key": f"vis-{op.operation_id}-{name}-{ident}"}}
                    if op.method in ("POST", "PUT", "PATCH"):
                        kwargs["json"] = BODIES.get(op.operation_id) if op.operation_id in BODIES else (
                            az.sample(op.body_schema, spec, sample_world) if op.body_schema else {})
                    answers.append(client.request(op.method, path, **kwargs))
                real, unknown = answers
                v.checked += 1
                v.operations.add(op.operation_id)
                cell = f"{op.operation_id} on {obj.kind} {obj.id} as {name} ({person['kind']})"
                (rb, rc), (ub, uc) = _body(real), _body(unknown)
                if rc != "role_forbidden":
                    v.object_level += 1
                if op.operation_id in obj.open_to_all and person["kind"] in MATRIX[op.operation_id]:
                    if not 200 <= real.status_code < 300:
                        v.violations.append(f"{cell}: {real.status_code} {rc} (open to all) {rb[:300]}")
                elif real.status_code not in (403, 404):
                    v.violations.append(f"{cell}: {real.status_code} {rc} (expected 403/404) {rb[:300]}")
                elif (real.status_code, rc) != (unknown.status_code, uc):
                    v.violations.append(f"{cell}: {real.status_code} {rc}, an unknown id gets "
                                        f"{unknown.status_code} {uc}")
                elif _normalise(rb, obj.id, UNKNOWN) != _normalise(ub, obj.id, UNKNOWN):
                    v.violations.append(f"{cell}: the body differs from an unknown id's: {rb[:200]} / {ub[:200]}")
                leaked = [m for m in obj.markers if m in rb]
                if leaked:
                    v.violations.append(f"{cell}: the answer names {leaked}")
    return v


# --- the world ------------------------------------------------------------------------------------------


def _ok(api: Api, resp: Any) -> Any:
    return api.ok(resp)


def build(api: Api) -> World:
    """Parties and objects, and non-parties who made claims, quotes, registrations and bids of their own."""
    today = date.today()
    people = {
        "E": api.participant("可见性企业甲", "enterprise", uscc="91350000MA8PQ00019"),
        "E3": api.participant("可见性企业丙", "enterprise"),
        "P": api.participant("可见性被告人", "enterprise", uscc=fresh_uscc()),
        "B": api.participant("可见性银行甲", "bank"),
        "BJ": api.participant("可见性银行乙", "bank"),
        "C": api.participant("可见性法院甲", "court"),
        "I": api.participant("可见性林业局", "issuer"),
        # Non-parties to everything above (each makes objects of its own below).
        "B2": api.participant("旁观银行一", "bank"),
        "B3": api.participant("旁观银行二", "bank"),
        "E2": api.participant("旁观企业一", "enterprise", uscc=fresh_uscc()),
        "C2": api.participant("旁观法院", "court"),
        "I2": api.participant("旁观发行人", "issuer"),
    }
    w = World(api, people)
    a = {k: p["api"] for k, p in people.items()}
    ids = {k: p["id"] for k, p in people.items()}
    api.instrument(INSTRUMENT)
    api.authorise_issuer(INSTRUMENT, ids["I"])
    for holder, n, qty in (("E", 1, "100000"), ("E2", 2, "100"), ("I", 3, "100")):
        req = _ok(api, a["I"].post("/v1/issuances", {"instrument": INSTRUMENT, "holder_id": ids[holder],
                                                     "quantity": qty, "attributes": ticket(n)}))
        _ok(api, api.post(f"/v1/issuances/{req['id']}/approve", {}))
    pending = _ok(api, a["I"].post("/v1/issuances", {"instrument": INSTRUMENT, "holder_id": ids["E"],
                                                     "quantity": "5", "attributes": ticket(97319)}))
    w.add(Obj("issuance", pending["id"], frozenset({"I", "E"}), markers=("0097319",)))
    for k in ("E", "E2", "E3", "P", "B", "BJ", "B2"):
        _ok(api, api.post("/v1/cash/deposits", {"participant_id": ids[k], "amount": "10000000.00",
                                                "bank_reference": f"vis-{k}"}))
    for mode, extra in (("continuous", {}), ("listing", {}), ("block", {"min_units": 1, "reference_price_fen": 10000}),
                        ("auction", {})):
        _ok(api, api.post("/v1/markets", {"instrument": INSTRUMENT, "mode": mode,
                                          "settings": {"sessions": [], "t_plus_1": False, **extra}}))
        _ok(api, api.post(f"/v1/markets/{INSTRUMENT}.{mode}/session", {"action": "open"}))

    # Pledges: one active with a confirmed junior (BJ) and a rival's unconfirmed filing (B2); one filed.
    def pledge(qty: str, contract: str, ref: str) -> dict[str, Any]:
        return _ok(api, a["B"].post("/v1/pledges", {
            "pledgor_id": ids["E"], "pledgor_identifier": people["E"]["uscc"], "instrument": INSTRUMENT,
            "quantity": qty, "loan_contract": contract,
            "secured_amount": "98765.43", "term_start": today.isoformat(),
            "term_end": (today + timedelta(days=365)).isoformat(),
            "references": [{"source": "中登网", "reference": ref}]}))

    active = pledge("300", "VIS-LOAN-8812", "VIS-REF-1")
    _ok(api, a["E"].post(f"/v1/pledges/{active['id']}/confirm"))
    claim = _ok(api, a["BJ"].post(f"/v1/pledges/{active['id']}/claims", {
        "loan_contract": "VIS-JUNIOR-LOAN", "amount": "4321.09",
        "term_end": (today + timedelta(days=200)).isoformat()}))
    _ok(api, a["E"].post(f"/v1/pledges/claims/{claim['id']}/confirm"))
    _ok(api, a["B2"].post(f"/v1/pledges/{active['id']}/claims", {   # grants B2 nothing
        "loan_contract": "旁观-claim", "amount": "0.01", "term_end": (today + timedelta(days=30)).isoformat()}))
    filed = pledge("10", "VIS-LOAN-7723", "VIS-REF-2")
    secrets = ("VIS-LOAN-8812", "VIS-LOAN-7723", "98765.43", "VIS-JUNIOR-LOAN", "4321.09")
    w.add(Obj("pledge", active["id"], frozenset({"B", "E", "BJ"}), markers=secrets,
              open_to_all=frozenset({"filePledgeClaim"})))
    w.add(Obj("pledge", filed["id"], frozenset({"B", "E"}), markers=secrets))
    w.add(Obj("claim", claim["id"], frozenset({"BJ", "E", "B"}), markers=secrets))

    # Freezes: C freezes E's units; C2 freezes E2's (its own, granting nothing on C's).
    def freeze(court: str, holder: str, case: str, notice: str) -> dict[str, Any]:
        return _ok(api, a[court].post("/v1/freezes", {
            "holder_id": ids[holder], "holder_identifier": people[holder]["uscc"], "instrument": INSTRUMENT,
            "quantity": "7", "case_number": case,
            "notice_number": notice, "term_start": today.isoformat(),
            "term_end": (today + timedelta(days=90)).isoformat()}))

    f = freeze("C", "E", "(2025)闽0402执VIS号", "N-VIS-1")
    freeze("C2", "E2", "(2025)旁观执1号", "N-旁观-1")
    w.add(Obj("freeze", f["id"], frozenset({"C", "E"}), markers=("(2025)闽0402执VIS号", "N-VIS-1")))

    # Orders: E rests a sell; E2 has its own.
    order = _ok(api, a["E"].post(f"/v1/markets/{CONT}/orders", {"side": "sell", "price": "51.37", "quantity": "11"}))
    _ok(api, a["E2"].post(f"/v1/markets/{CONT}/orders", {"side": "sell", "price": "52.00", "quantity": "1"}))
    w.add(Obj("order", order["order"]["id"], frozenset({"E"}), {"market_id": CONT}, markers=("51.37",)))

    # Block: E's quote directed to E3, and the deal E3 opened on it; E2 quotes publicly itself.
    q = _ok(api, a["E"].post(f"/v1/markets/{BLOCK}/block-quotes", {
        "side": "sell", "price": "97.31", "quantity": "50", "audience": "directed", "counterparties": [ids["E3"]]}))
    _ok(api, a["E2"].post(f"/v1/markets/{BLOCK}/block-quotes", {"side": "sell", "price": "99.00", "quantity": "5"}))
    deal = _ok(api, a["E3"].post(f"/v1/markets/{BLOCK}/block-quotes/{q['seq']}/respond",
                                 {"price": "96.55", "quantity": "40"}))
    w.add(Obj("quote", q["seq"], frozenset({"E", "E3"}), {"market_id": BLOCK}, markers=("97.31",)))
    w.add(Obj("deal", deal["seq"], frozenset({"E", "E3"}), {"market_id": BLOCK}, markers=("96.55", "97.31")))

    # Auction: I sells a lot; E3 and E2 register and bid; E3's bid is the object.
    lot = _ok(api, a["I"].post(f"/v1/markets/{AUCT}/auctions", {
        "quantity": "10", "min_price": "20.00", "increment": "1.00", "deposit": "100.00", "irrevocable": False,
        "max_bids_per_bidder": 3}))
    aid = lot["order"]["id"]
    _ok(api, a["I"].post(f"/v1/markets/{AUCT}/auctions/{aid}/step", {"action": "registration"}))
    for k in ("E3", "E2"):
        _ok(api, a[k].post(f"/v1/markets/{AUCT}/auctions/{aid}/register", {}))
    _ok(api, a["I"].post(f"/v1/markets/{AUCT}/auctions/{aid}/step", {"action": "bidding", "duration_seconds": 3600}))
    bid = _ok(api, a["E3"].post(f"/v1/markets/{AUCT}/auctions/{aid}/bids", {"price": "23.00", "quantity": "4"}))
    _ok(api, a["E2"].post(f"/v1/markets/{AUCT}/auctions/{aid}/bids", {"price": "22.00", "quantity": "2"}))
    w.add(Obj("bid", bid["order"]["id"], frozenset({"E3"}), {"market_id": AUCT, "auction_id": aid}))

    # A restoration order of C, paid by P, half fulfilled from E's listing (so it has a retirement).
    listing = _ok(api, a["E"].post(f"/v1/markets/{LIST}/listings", {"side": "sell", "price": "60.00",
                                                                    "quantity": "3"}))["order"]["id"]
    BODIES["takeForRestoration"] = {"market_id": LIST, "listing_id": listing, "quantity": "1"}
    r = _ok(api, a["C"].post("/v1/restoration-orders", {
        "case_number": "(2025)闽VIS刑初1号", "case_type": "刑事附带民事公益诉讼",
        "defendants": [{"name": "被告人VIS", "id_number": "35062719880715VIS1"}], "payer_id": ids["P"],
        "payer_identifier": people["P"]["uscc"], "required_quantity": "2", "eligible_kinds": ["forest_ticket"],
        "deadline": (today + timedelta(days=60)).isoformat()}))
    _ok(api, a["P"].post(f"/v1/restoration-orders/{r['id']}/takes",
                         {"market_id": LIST, "listing_id": listing, "quantity": "1"}))
    w.add(Obj("restoration", r["id"], frozenset({"C", "P"}), markers=("(2025)闽VIS刑初1号", "被告人VIS",
                                                                       "35062719880715VIS1")))

    # Ledger entries: E's own retirement (E only), and the judicial retirement (P and C).
    own = _ok(api, a["E"].post("/v1/retirements", {"instrument": INSTRUMENT, "quantity": "2", "purpose": "voluntary",
                                                   "beneficiary": "VIS-受益人"}))
    w.add(Obj("entry", own["entry_seq"], frozenset({"E"}), markers=("VIS-受益人",)))
    judicial = _ok(api, api.get("/v1/public/retirements", name="可见性被告人"))["certificate"]["results"]
    w.add(Obj("entry", judicial[0]["entry_seq"], frozenset({"P", "C"}), markers=("(2025)闽VIS刑初1号",)))

    # E's account, participant record, API key and signing key.
    w.add(Obj("account", people["E"]["holding_account"], frozenset({"E"})))
    w.add(Obj("participant", ids["E"], frozenset({"E"}), markers=("91350000MA8PQ00019",)))
    spare = _ok(api, a["E"].post(f"/v1/participants/{ids['E']}/keys", {"label": "VIS-spare-key"}))
    w.add(Obj("key", spare["id"], frozenset({"E"}), {"participant_id": ids["E"]}, markers=("VIS-spare-key",)))
    sk = _ok(api, a["E"].post(f"/v1/participants/{ids['E']}/signing-keys", {"public_key": generate_key()[1],
                                                                             "label": "VIS-signing"}))
    w.add(Obj("signing_key", sk["id"], frozenset({"E"}), {"participant_id": ids["E"]}))
    action = api.propose("/v1/cash/deposits", {"participant_id": ids["E"], "amount": "1.00",
                                               "bank_reference": "VIS-pending"})
    if action.status_code == 202:
        w.add(Obj("action", action.json()["id"], frozenset(), markers=("VIS-pending",)))
    time.sleep(0.05)
    return w


def state(world: World) -> dict[str, Any]:
    """What each object looks like to a party (compared before and after the calls)."""
    a = {k: p["api"] for k, p in world.people.items()}
    out: dict[str, Any] = {}
    for o in world.objects.get("pledge", []):
        p = a["B"].get(f"/v1/pledges/{o.id}").json()
        # Its terms and registered claims (non-parties may add filings to an active lot: a published rule).
        out[f"pledge {o.id}"] = ({k: p[k] for k in ("status", "quantity", "serials", "secured_amount", "loan_contract",
                                                    "term_end", "haircut_bps", "thresholds", "enforcement")},
                                 [(c["id"], c["status"]) for c in p["claims"] if c["status"] != "filed"])
    for o in world.objects.get("freeze", []):
        f = a["C"].get(f"/v1/freezes/{o.id}").json()
        out[f"freeze {o.id}"] = (f["status"], len(f["events"]))
    for o in world.objects.get("order", []):
        x = a["E"].get(f"/v1/markets/{CONT}/orders/{o.id}").json()
        out[f"order {o.id}"] = (x["status"], x["open_quantity"])
    out["deal"] = a["E"].get(f"/v1/markets/{BLOCK}/deals/{world.objects['deal'][0].id}").json()
    out["quotes"] = a["E"].get(f"/v1/markets/{BLOCK}/block-quotes").json()
    out["restoration"] = a["C"].get(f"/v1/restoration-orders/{world.objects['restoration'][0].id}").json()
    out["keys"] = a["E"].get(f"/v1/participants/{world.people['E']['id']}/keys").json()
    out["signing keys"] = a["E"].get(f"/v1/participants/{world.people['E']['id']}/signing-keys").json()
    out["holdings"] = a["E"].get("/v1/holdings").json()
    out["bids"] = a["E3"].get(f"/v1/markets/{AUCT}/orders").json()
    return out
