"""Naming another participant by id tells the caller nothing it did not know (issue #13): a filing, transfer,
freeze, restoration order, block quote or issuance naming an id that does not exist, a participant of a kind
that cannot take that part (an auditor holds no units, a court pledges nothing), a suspended one, or one
named with the wrong registered identifier, gets one and the same answer -- 404, word for word as for an
unknown id. Where the answer shows who the participant is (a pledge's pledgor, a freeze's holder, a
restoration order's payer) the caller names it by id and its USCC or identity document number."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from exchange.core.settings import Settings
from tests.helpers import Api, checker_token, fresh_uscc, person, resident_id, ticket
from tests.pledges.helpers import OWNER_USCC, days, pledge_body, world
from tests.security.helpers import sql

UNKNOWN = 987_654


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # These probes name every participant with a wrong identifier: the daily limit on such misses
    # (ENVX_IDENTIFIER_MISMATCHES_PER_DAY, tests/pledges/test_round4_identifier.py) is raised out of the way.
    return Settings(data_dir=tmp_path, database_url=None, scheduler=False, identifier_mismatches_per_day=1000)


def _same_404(answers: dict[int, Any]) -> None:
    """Every answer is 404 `not_found`, and the bodies differ only by the id they name."""
    shapes = set()
    for pid, r in answers.items():
        assert r.status_code == 404, (pid, r.text)
        body = r.json()
        shapes.add((body["code"], body["title"], body["detail"].replace(str(pid), "N")))
    assert len(shapes) == 1 and next(iter(shapes))[0] == "not_found", shapes


def _cast(api: Api) -> dict[str, Any]:
    w = world(api, "100")
    auditor = api.participant("审计署驻三明特派办", "auditor", uscc=fresh_uscc())
    person_id = resident_id("35040219800101001")
    natural = api.participant("林某某", "enterprise", **person(person_id))
    gone = api.participant("已暂停企业", "enterprise", uscc=fresh_uscc())
    api.ok(api.post(f"/v1/participants/{gone['id']}/suspend", {"reason": "test"}))
    return {**w, "auditor": auditor, "person": natural, "person_id": person_id, "gone": gone}


def test_a_bank_learns_nothing_by_filing_pledges(api: Api, client: TestClient) -> None:
    c = _cast(api)
    bank = c["bank"]["api"]
    everyone = [r[0] for r in sql(client, "SELECT id FROM participants ORDER BY id")]
    # By id alone, with any identifier but the right one: whoever it is, the same 404 -- an operator, a
    # court, an auditor, a natural person, another bank, a suspended holder, an id that does not exist.
    wrong = "91350000MA00000000"
    probes = {pid: bank.post("/v1/pledges", pledge_body(pid, "1", references=[], pledgor_identifier=wrong))
              for pid in [*everyone, UNKNOWN] if pid != c["bank"]["id"]}
    _same_404(probes)
    # Even named by their real identifier: an auditor or a suspended holder cannot pledge.
    for who in ("auditor", "gone"):
        r = bank.post("/v1/pledges", pledge_body(c[who]["id"], "1", references=[], pledgor_identifier=c[who]["uscc"]))
        _same_404({c[who]["id"]: r, UNKNOWN: probes[UNKNOWN]})
    assert bank.get(f"/v1/participants/{c['owner']['id']}").status_code == 403
    assert sql(client, "SELECT count(*) FROM pledges")[0][0] == 0  # none of it was filed
    # Its own client, named as in the loan contract: filed (and only now does the bank see its name).
    p = api.ok(bank.post("/v1/pledges", pledge_body(c["owner"]["id"], "1", references=[])))
    assert p["status"] == "filed" and p["pledgor"]["name"] == "三明市沙县林业合作社"
    # A natural person is named by its identity document number.
    r = bank.post("/v1/pledges", pledge_body(c["person"]["id"], "1", references=[], pledgor_identifier=c["person_id"]))
    assert r.status_code == 201, r.text
    # (An operator files no pledges: the role matrix refuses it before anything is looked up.)
    assert api.post("/v1/pledges", pledge_body(c["court"]["id"], "1")).status_code == 403


def test_transfers_and_other_operations_naming_a_participant_refuse_alike(api: Api, client: TestClient) -> None:
    c = _cast(api)
    owner = c["owner"]["api"]
    api.issue(c["issuer"]["api"], c["person"]["id"], "FCT-SM", "5", ticket(7))

    def transfer(to: int) -> Any:
        return owner.post("/v1/transfers", {"to_participant": to, "instrument": "FCT-SM", "quantity": "1"})

    # Units to an auditor (who only looks: they would be stuck), to a suspended holder, to no one.
    _same_404({pid: transfer(pid) for pid in (c["auditor"]["id"], c["gone"]["id"], UNKNOWN)})
    assert sql(client, "SELECT count(*) FROM ledger_entries WHERE type = 'transfer'")[0][0] == 0
    assert transfer(c["buyer"]["id"]).status_code == 201
    # An operator (who sees every participant) is told why.
    # Approved by the other operator: who approves an issuance may not be its holder.
    Api(api.client, checker_token(api.client)).issue(c["issuer"]["api"], api.get("/v1/whoami").json()["participant_id"],
                                                     "FCT-SM", "1", ticket(8))
    r = api.post("/v1/transfers", {"to_participant": c["auditor"]["id"], "instrument": "FCT-SM", "quantity": "1"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_counterparty")

    # A court's freeze and restoration order name the holder / payer by id and identifier.
    court = c["court"]["api"]

    def freeze(holder: int, identifier: str) -> Any:
        return court.post("/v1/freezes", {
            "holder_id": holder, "holder_identifier": identifier, "instrument": "FCT-SM", "quantity": "1",
            "case_number": "(2025)闽04执1号", "notice_number": f"N-{holder}-{identifier}", "term_start": days(0),
            "term_end": days(30)})

    _same_404({c["owner"]["id"]: freeze(c["owner"]["id"], "91350000MA00000000"),
               c["auditor"]["id"]: freeze(c["auditor"]["id"], c["auditor"]["uscc"]),
               c["gone"]["id"]: freeze(c["gone"]["id"], c["gone"]["uscc"]), UNKNOWN: freeze(UNKNOWN, OWNER_USCC)})
    assert freeze(c["owner"]["id"], OWNER_USCC).status_code == 201

    def restoration(payer: int, identifier: str) -> Any:
        return court.post("/v1/restoration-orders", {
            "case_number": f"(2025)闽0627刑初{payer}号", "case_type": "刑事附带民事公益诉讼",
            "defendants": [{"name": "林某某"}], "payer_id": payer, "payer_identifier": identifier,
            "required_quantity": "1", "eligible_kinds": ["forest_ticket"], "deadline": days(30)})

    _same_404({c["person"]["id"]: restoration(c["person"]["id"], resident_id("35040219800101002")),
               c["auditor"]["id"]: restoration(c["auditor"]["id"], c["auditor"]["uscc"]),
               UNKNOWN: restoration(UNKNOWN, c["person_id"])})
    r = restoration(c["person"]["id"], c["person_id"])
    assert r.status_code == 201 and r.json()["payer"] == "林某某"

    # A block quote's audience and an issuance's holder: traders and holders only, the rest as unknown.
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "block",
                                    "settings": {"sessions": [], "min_units": 1, "reference_price_fen": 10000}}))
    api.ok(api.post("/v1/markets/FCT-SM.block/session", {"action": "open"}))

    def quote(to: int) -> Any:
        return owner.post("/v1/markets/FCT-SM.block/block-quotes", {
            "side": "sell", "price": "100.00", "quantity": "1", "audience": "directed", "counterparties": [to]})

    _same_404({pid: quote(pid) for pid in (c["auditor"]["id"], c["gone"]["id"], UNKNOWN)})
    issuer = c["issuer"]["api"]

    def issue(to: int) -> Any:
        return issuer.post("/v1/issuances", {"instrument": "FCT-SM", "holder_id": to, "quantity": "1",
                                             "attributes": ticket(900 + to % 1000)})

    _same_404({pid: issue(pid) for pid in (c["court"]["id"], c["bank"]["id"], c["auditor"]["id"], UNKNOWN)})


def test_a_filing_the_pledgor_never_confirms_lapses(api: Api, client: TestClient) -> None:
    """A junk filing locks nothing and is seen by the bank and the pledgor only; the pledgor may decline
    it at once, and if it does nothing the filing lapses after ENVX_PLEDGE_CONFIRM_DAYS (30)."""
    w = world(api, "100")
    bank, owner = w["bank"]["api"], w["owner"]["api"]
    junk = api.ok(bank.post("/v1/pledges", pledge_body(w["owner"]["id"], "100", references=[])))
    other = api.ok(bank.post("/v1/pledges", pledge_body(w["owner"]["id"], "100", references=[])))
    assert api.ok(owner.post(f"/v1/pledges/{other['id']}/decline", {}))["status"] == "declined"
    assert w["buyer"]["api"].get(f"/v1/pledges/{junk['id']}").status_code == 404
    assert api.client.get("/v1/public/pledges", params={"uscc": OWNER_USCC}).json()["certificate"]["results"] == []
    # Thirty days later, unconfirmed:
    sql(client, "UPDATE pledges SET created_at = created_at - interval '30 days 1 second' WHERE id = :i",
        {"i": junk["id"]}, write=True)
    r = owner.post(f"/v1/pledges/{junk['id']}/confirm")
    assert (r.status_code, r.json()["code"]) == (409, "pledge_expired")
    swept = api.ok(api.post("/v1/pledges/expiry-sweeps", {}))
    # This sweep lapses it, unless the pledge worker's own sweep (every fraction of a second here) came first.
    assert swept["pledges_expired"] in ([junk["id"]], [])
    p = api.ok(bank.get(f"/v1/pledges/{junk['id']}"))
    assert p["status"] == "expired"
    events = api.ok(bank.get(f"/v1/pledges/{junk['id']}/events"))
    assert events[-1]["type"] == "expired" and events[-1]["details"]["lapsed"] == "not_confirmed"
    assert api.ok(owner.get("/v1/holdings"))["balances"][0]["available"] == "100"  # nothing was ever locked
