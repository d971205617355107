"""Issuance checks through HTTP against a real PostgreSQL (issue #14): double issuance as it really
happens, flagged approvals with a recorded override, regional allowances and forest tickets numbered
per region, each kind's attributes named all at once in a 422 and documented in the OpenAPI."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.helpers import Api, project_batch, ticket

SHAXIAN = "沙县-高砂镇-林班12"  # one forest parcel, spelt as a forestry bureau and a CCER developer spell it


def _forest(n: int, parcel: str, start: str, end: str, region: str = "sanming", number: str | None = None,
            **extra: Any) -> dict[str, Any]:
    return {**ticket(n), "region": region, "ticket_number": number or f"{n:07d}", "parcels": [parcel],
            "monitoring_period": {"start": start, "end": end}, **extra}


def _ccer(project_id: str, start: str, end: str, parcels: list[str] | None = None) -> dict[str, Any]:
    attrs = {**project_batch(project_id), "monitoring_period": {"start": start, "end": end}}
    return {**attrs, "parcels": parcels} if parcels else attrs


def _world(api: Api) -> dict[str, Any]:
    api.instrument("FCT-SM")
    api.instrument("CCER", kind="ccer")
    forestry, mee = api.participant("三明市林业局", "issuer"), api.participant("生态环境部 (CCER)", "issuer")
    api.authorise_issuer("FCT-SM", forestry["id"])  # each the issuing authority of its own instrument
    api.authorise_issuer("CCER", mee["id"])
    return {"forestry": forestry["api"], "mee": mee["api"], "owner": api.participant("沙县林业合作社", "enterprise")}


def _request(issuer: Api, instrument: str, holder: dict[str, Any], attrs: dict[str, Any], quantity: str = "100",
             **origin: Any) -> Any:
    return issuer.post("/v1/issuances", {"instrument": instrument, "holder_id": holder["id"], "quantity": quantity,
                                         "attributes": attrs, **origin})


def test_one_parcel_over_overlapping_periods_as_ccer_and_forest_ticket_is_flagged(api: Api) -> None:
    w = _world(api)
    ft = api.ok(_request(w["forestry"], "FCT-SM", w["owner"], _forest(1, SHAXIAN, "2016-01-01", "2020-12-31")))
    assert ft["flags"] == [] and ft["kind"] == "forest_ticket"
    # The CCER project names the same parcel, spelt with spaces and full-width digits: 2019-2023 overlaps.
    parcels = ["沙县 高砂镇 林班１２", "沙县-林班-13"]
    ccer = api.ok(_request(w["mee"], "CCER", w["owner"], _ccer("CCER-14-2024-0007", "2019-01-01", "2023-12-31",
                                                              parcels)))
    [flag] = ccer["flags"]
    assert flag["code"] == "possible_double_issuance" and flag["request"] == ft["id"]
    assert flag["kind"] == "forest_ticket" and flag["subjects"] == [f"parcel {SHAXIAN.lower()}"]
    assert flag["period"] == {"start": "2016-01-01", "end": "2020-12-31"}
    # Periods that only touch on one day overlap; the day after does not; another parcel does not.
    touch = api.ok(_request(w["mee"], "CCER", w["owner"], _ccer("CCER-P2", "2020-12-31", "2021-06-30", [SHAXIAN])))
    assert [f["request"] for f in touch["flags"]] == [ft["id"], ccer["id"]]
    later = api.ok(_request(w["mee"], "CCER", w["owner"], _ccer("CCER-P3", "2024-01-01", "2024-12-31", [SHAXIAN])))
    assert later["flags"] == []
    other = api.ok(_request(w["mee"], "CCER", w["owner"], _ccer("CCER-P4", "2019-01-01", "2023-12-31", ["将乐-林班1"])))
    assert other["flags"] == []


def test_same_kind_same_parcel_or_project_same_period_is_flagged(api: Api) -> None:
    w = _world(api)
    first = api.ok(_request(w["forestry"], "FCT-SM", w["owner"], _forest(1, SHAXIAN, "2016-01-01", "2020-12-31")))
    second = api.ok(_request(w["forestry"], "FCT-SM", w["owner"], _forest(2, SHAXIAN, "2016-01-01", "2020-12-31")))
    assert [f["request"] for f in second["flags"]] == [first["id"]]
    assert second["flags"][0]["kind"] == "forest_ticket"
    # A CCER project issued twice for one monitoring period is flagged; for the next period it is not.
    a = api.ok(_request(w["mee"], "CCER", w["owner"], _ccer("CCER-14-2024-0001", "2021-01-01", "2021-12-31")))
    b = api.ok(_request(w["mee"], "CCER", w["owner"], _ccer("ccer 14 2024 0001", "2021-01-01", "2021-12-31")))
    c = api.ok(_request(w["mee"], "CCER", w["owner"], _ccer("CCER-14-2024-0001", "2022-01-01", "2022-12-31")))
    assert a["flags"] == [] and c["flags"] == []
    assert [(f["request"], f["subjects"]) for f in b["flags"]] == [(a["id"], ["ccer project ccer-14-2024-0001"])]


def test_ticket_number_is_unique_per_region(api: Api) -> None:
    w = _world(api)
    first = api.ok(_request(w["forestry"], "FCT-SM", w["owner"], _forest(1, "三明-林班-1", "2016-01-01", "2020-12-31")))
    again = _request(w["forestry"], "FCT-SM", w["owner"], _forest(1, "三明-林班-2", "2016-01-01", "2020-12-31"))
    assert again.status_code == 409 and again.json()["code"] == "ticket_number_taken", again.text
    assert again.json()["existing_request"] == first["id"]
    # The same number issued by another region's bureau is another ticket.
    longyan_bureau = api.participant("龙岩市林业局", "issuer")
    api.authorise_issuer("FCT-SM", longyan_bureau["id"])
    longyan = longyan_bureau["api"]
    api.ok(_request(longyan, "FCT-SM", w["owner"], _forest(1, "龙岩-林班-1", "2016-01-01", "2020-12-31",
                                                          region="longyan", issuing_bureau="龙岩市林业局")))
    # Region-free numbers are compared case-insensitively; a rejected request frees its number.
    lower = api.ok(_request(longyan, "FCT-SM", w["owner"], _forest(3, "龙岩-林班-3", "2016-01-01", "2020-12-31",
                                                                  region="longyan", number="ly-2023-015")))
    upper = _request(longyan, "FCT-SM", w["owner"], _forest(4, "龙岩-林班-4", "2016-01-01", "2020-12-31",
                                                           region="longyan", number="LY-2023-015"))
    assert upper.status_code == 409 and upper.json()["code"] == "ticket_number_taken"
    api.ok(api.post(f"/v1/issuances/{lower['id']}/reject", {"note": "wrong parcel"}))
    api.ok(_request(longyan, "FCT-SM", w["owner"], _forest(4, "龙岩-林班-4", "2016-01-01", "2020-12-31",
                                                          region="longyan", number="LY-2023-015")))


def test_a_retry_gets_the_original_request_and_another_body_is_refused(api: Api) -> None:
    w = _world(api)
    body = {"instrument": "FCT-SM", "holder_id": w["owner"]["id"], "quantity": "29715",
            "attributes": _forest(1, SHAXIAN, "2016-01-01", "2020-12-31")}
    first = w["forestry"].post("/v1/issuances", body, key="sm-0000001")
    again = w["forestry"].post("/v1/issuances", body, key="sm-0000001")
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    other = w["forestry"].post("/v1/issuances", {**body, "quantity": "29716"}, key="sm-0000001")
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"


def test_concurrent_requests_for_one_ticket_number_issue_it_once(api: Api) -> None:
    w = _world(api)

    def ask(i: int) -> tuple[int, str]:
        r = _request(w["forestry"], "FCT-SM", w["owner"], _forest(7, f"三明-林班-{i}", "2016-01-01", "2020-12-31"))
        return r.status_code, r.json().get("code", "")

    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(ask, range(8)))
    assert sorted(out)[0][0] == 201 and sorted(out)[1:] == [(409, "ticket_number_taken")] * 7, out


def test_forest_tickets_of_another_region_have_their_own_numbering(api: Api) -> None:
    w = _world(api)
    longyan_bureau = api.participant("龙岩市林业局", "issuer")
    api.authorise_issuer("FCT-SM", longyan_bureau["id"])
    longyan = longyan_bureau["api"]
    attrs = _forest(1, "新罗区-林班-8", "2018-01-01", "2022-12-31", region="longyan", number="LY-2023-0015",
                    issuing_bureau="龙岩市林业局")
    done = api.ok(api.post(f"/v1/issuances/{api.ok(_request(longyan, 'FCT-SM', w['owner'], attrs))['id']}/approve"))
    assert done["status"] == "approved" and done["attributes"]["region"] == "longyan"
    assert done["attributes"]["ticket_number"] == "LY-2023-0015"
    # Sanming numbers its tickets with 7 digits: neither that number nor six digits is a Sanming ticket.
    for number in ("LY-2023-0015", "123456"):
        r = _request(w["forestry"], "FCT-SM", w["owner"], _forest(2, "三明-林班-2", "2016-01-01", "2020-12-31",
                                                                 number=number))
        assert r.status_code == 422 and r.json()["errors"] == [
            {"attribute": "ticket_number", "type": "ticket_number_format",
             "message": "sanming tickets are numbered 7 digits, e.g. 0000001 (三明市林业局)"}], r.text
    # An instrument of one region takes tickets of that region only.
    api.instrument("FCT-LY", attributes={"region": "longyan"})
    r = _request(w["forestry"], "FCT-LY", w["owner"], _forest(3, "三明-林班-3", "2016-01-01", "2020-12-31"))
    assert r.status_code == 422 and r.json()["errors"][0]["type"] == "region_mismatch"


def test_origin_serial_ranges_are_compared_as_numbers(api: Api) -> None:
    w = _world(api)

    def imp(registry: str, start: int, end: int, project: str) -> Any:
        return _request(w["mee"], "CCER", w["owner"], project_batch(project), quantity=str(end - start + 1),
                        origin_registry=registry, origin_serials={"start": start, "end": end},
                        origin_reference=f"{start}-{end}-VCS-VCU-1529")

    first = api.ok(imp("Verra", 100, 200, "p1"))
    assert first["origin"] == {"registry": "Verra", "serials": {"start": 100, "end": 200},
                               "reference": "100-200-VCS-VCU-1529"}
    exact = imp("VERRA", 100, 200, "p2")  # the registry's name compared case-insensitively
    assert exact.status_code == 409 and exact.json()["code"] == "duplicate_import", exact.text
    overlap = imp("Verra", 150, 300, "p3")
    assert overlap.status_code == 409 and overlap.json()["code"] == "overlapping_import", overlap.text
    assert overlap.json()["existing_requests"] == [first["id"]]
    assert api.ok(imp("Gold Standard", 150, 300, "p4"))["origin"]["registry"] == "Gold Standard"
    # One shared unit is an overlap; 1-9 and 10-20 are disjoint although "10" < "9" as text.
    api.ok(imp("CDM", 99, 100, "p5"))
    touching = imp("CDM", 100, 101, "p6")
    assert touching.status_code == 409 and touching.json()["code"] == "overlapping_import"
    api.ok(imp("CDM", 1, 9, "p7"))
    api.ok(imp("CDM", 10, 20, "p8"))
    # A rejected import frees its range; a range needs both ends in order and a registry.
    api.ok(api.post(f"/v1/issuances/{first['id']}/reject", {"note": "retired at Verra first"}))
    api.ok(imp("Verra", 150, 300, "p9"))
    for origin, code in (({"origin_serials": {"start": 5, "end": 4}, "origin_registry": "X"}, "invalid_origin"),
                         ({"origin_serials": {"start": 5, "end": 6}}, "invalid_origin"),
                         ({"origin_registry": "X"}, "invalid_origin")):
        r = _request(w["mee"], "CCER", w["owner"], project_batch("p10"), **origin)
        assert (r.status_code, r.json()["code"]) == (422, code), r.text


def test_the_database_itself_refuses_an_overlapping_import_and_a_reused_ticket_number(api: Api, client: Any) -> None:
    w = _world(api)
    imp = api.ok(_request(w["mee"], "CCER", w["owner"], project_batch("p1"), quantity="101", origin_registry="Verra",
                          origin_serials={"start": 100, "end": 200}))
    ft = api.ok(_request(w["forestry"], "FCT-SM", w["owner"], _forest(1, SHAXIAN, "2016-01-01", "2020-12-31")))
    rt = client.app.state.rt

    async def copy_of(request_id: int, changes: str) -> str:
        # What a bug in the service would write: a copy of a request with one claim changed.
        try:
            async with rt.tx() as conn:
                await conn.execute(text(f"""
                    INSERT INTO issuance_requests (instrument, issuer_id, holder_id, quantity, attributes, period,
                        ticket_region, ticket_number, origin_registry, origin_key, origin_serials, requested_by)
                    SELECT instrument, issuer_id, holder_id, quantity, attributes, period, ticket_region,
                           ticket_number, origin_registry, origin_key, {changes}, 'bug'
                    FROM issuance_requests WHERE id = :i"""), {"i": request_id})
        except DBAPIError as exc:
            return exc.orig.pgcode  # type: ignore[union-attr]
        return "inserted"

    def run(request_id: int, changes: str) -> str:
        return client.blocking_portal.call(copy_of, request_id, changes)

    assert run(imp["id"], "int8range(150, 300, '[]')") == "23P01"  # exclusion_violation (trigger)
    assert run(imp["id"], "int8range(100, 200, '[]')") == "23P01"  # the same range (the unique index is behind it)
    assert run(imp["id"], "int8range(201, 300, '[]')") == "inserted"
    assert run(ft["id"], "NULL") == "23505"  # the same ticket number of the same region


def test_flagged_request_needs_an_explicit_override_with_a_reason(api: Api) -> None:
    w = _world(api)
    ft = api.ok(_request(w["forestry"], "FCT-SM", w["owner"], _forest(1, SHAXIAN, "2016-01-01", "2020-12-31"),
                         quantity="29715"))
    ccer = api.ok(_request(w["mee"], "CCER", w["owner"], _ccer("CCER-14-2024-0007", "2019-01-01", "2023-12-31",
                                                              [SHAXIAN]), quantity="500"))
    assert ccer["flags"]
    # The earlier request is approved as any other; the later one is refused without an override.
    assert api.ok(api.post(f"/v1/issuances/{ft['id']}/approve", {}))["override"] is None
    refused = api.post(f"/v1/issuances/{ccer['id']}/approve", {"note": "ok"})
    body = refused.json()
    assert refused.status_code == 409 and body["code"] == "flagged_double_issuance", refused.text
    assert [(f["request"], f["status"]) for f in body["flags"]] == [(ft["id"], "approved")]
    for bad, code in (({"override_flags": True}, "override_reason_required"),
                      ({"override_flags": True, "reason": "   "}, "override_reason_required"),
                      ({"reason": "checked"}, "reason_without_override")):
        r = api.post(f"/v1/issuances/{ccer['id']}/approve", bad)
        assert (r.status_code, r.json()["code"]) == (422, code), r.text
    assert api.post(f"/v1/issuances/{ccer['id']}/approve", {"override_flags": 1, "reason": "x"}).status_code == 422
    assert api.ok(api.get(f"/v1/issuances/{ccer['id']}"))["status"] == "requested"
    assert [b["instrument"] for b in api.ok(w["owner"]["api"].get("/v1/holdings"))["balances"]] == ["FCT-SM"]

    reason = "林业局 2024-03-01 函: 碳票 0000001 covers the 2016-2020 increment only; CCER credits 2021-2023"
    done = api.ok(api.post(f"/v1/issuances/{ccer['id']}/approve", {"override_flags": True, "reason": reason}))
    assert done["status"] == "approved" and done["batch_id"] is not None
    assert done["override"]["reason"] == reason and done["override"]["flags"][0]["request"] == ft["id"]
    assert api.ok(api.get(f"/v1/issuances/{ccer['id']}"))["override"] == done["override"]
    entry = api.ok(api.get(f"/v1/ledger/entries/{done['issue_entry_seq']}"))
    assert entry["type"] == "batch.issue" and entry["meta"]["request"] == ccer["id"]
    assert entry["meta"]["override"] == done["override"]
    # Approving again changes nothing and needs nothing.
    assert api.ok(api.post(f"/v1/issuances/{ccer['id']}/approve", {}))["batch_id"] == done["batch_id"]


def test_a_flag_whose_other_request_was_rejected_needs_no_override(api: Api) -> None:
    w = _world(api)
    ft = api.ok(_request(w["forestry"], "FCT-SM", w["owner"], _forest(1, SHAXIAN, "2016-01-01", "2020-12-31")))
    ccer = api.ok(_request(w["mee"], "CCER", w["owner"], _ccer("CCER-P", "2019-01-01", "2023-12-31", [SHAXIAN])))
    api.ok(api.post(f"/v1/issuances/{ft['id']}/reject", {"note": "parcel goes to CCER"}))
    done = api.ok(api.post(f"/v1/issuances/{ccer['id']}/approve", {}))
    assert done["status"] == "approved" and done["override"] is None
    assert [f["request"] for f in done["flags"]] == [ft["id"]]  # what the check found when it was requested


def test_guangdong_allowance_carries_its_region(api: Api) -> None:
    gd = api.instrument("GDEA24", kind="cea",
                        attributes={"compliance_year": 2024, "scheme": "pilot", "region": "guangdong"})
    assert gd["attributes"] == {"compliance_year": 2024, "scheme": "pilot", "region": "guangdong"}
    national = api.instrument("CEA24", kind="cea", attributes={"compliance_year": 2024})
    assert national["attributes"] == {"compliance_year": 2024, "scheme": "national"}
    assert api.ok(api.get("/v1/instruments/GDEA24"))["attributes"]["region"] == "guangdong"
    issuer = api.participant("广东省生态环境厅", "issuer")
    emitter = api.participant("广东某控排企业", "enterprise")
    done = api.issue(issuer["api"], emitter["id"], "GDEA24", "120000", {"allocation": "free"})
    assert (done["start_serial"], done["end_serial"]) == (1, 120000)
    for attrs, problems in (
            ({"compliance_year": 2024, "scheme": "pilot"}, [("region", "missing")]),
            ({"compliance_year": 2024, "region": "guangdong"}, [("region", "region_not_applicable")]),
            ({"compliance_year": 2024, "scheme": "pilot", "region": "sichuan"}, [("region", "unknown_pilot_market")]),
            ({"compliance_year": "2024", "scheme": "regional"}, [("compliance_year", "int_type"),
                                                                 ("scheme", "literal_error")])):
        r = api.post("/v1/instruments", {"code": "X1", "name": "x", "kind": "cea", "decimals": 0, "attributes": attrs})
        assert r.status_code == 422 and r.json()["code"] == "invalid_attributes", r.text
        assert [(e["attribute"], e["type"]) for e in r.json()["errors"]] == problems


def test_422_names_every_missing_attribute_at_once(api: Api) -> None:
    w = _world(api)
    r = _request(w["mee"], "CCER", w["owner"], {"project": "福建林业碳汇"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_attributes", r.text
    assert [(e["attribute"], e["type"]) for e in r.json()["errors"]] == [
        ("project_id", "missing"), ("methodology", "missing"), ("monitoring_period", "missing")]
    assert all(a in r.json()["detail"] for a in ("project_id", "methodology", "monitoring_period"))
    r = _request(w["forestry"], "FCT-SM", w["owner"], {"ticket_number": 1, "parcels": [],
                                                       "monitoring_period": {"start": "2016-01-01T00:00:00Z",
                                                                             "end": "2015-12-31"}})
    assert {(e["attribute"], e["type"]) for e in r.json()["errors"]} == {
        ("region", "missing"), ("ticket_number", "string_type"), ("issuing_bureau", "missing"),
        ("parcels", "too_short"), ("monitoring_period.start", "date_parsing")}, r.text


def test_openapi_documents_each_kind_and_region(client: Any) -> None:
    spec = client.get("/schema/openapi.json").json()
    schemas = spec["components"]["schemas"]
    attrs = schemas["IssuanceIn"]["properties"]["attributes"]
    assert {a["$ref"].rsplit("/", 1)[1] for a in attrs["anyOf"]} == {
        "CeaBatch", "ProjectBatch", "ForestTicketBatch", "EmissionRightBatch"}
    assert "`forest_ticket`: ForestTicketBatch" in attrs["description"]
    ft = schemas["ForestTicketBatch"]
    assert set(ft["required"]) == {"region", "ticket_number", "issuing_bureau", "parcels", "monitoring_period"}
    assert "sanming: 7 digits" in ft["properties"]["ticket_number"]["description"]
    assert set(schemas["ProjectBatch"]["required"]) == {"project_id", "methodology", "monitoring_period"}
    inst = schemas["InstrumentIn"]["properties"]["attributes"]
    assert {a["$ref"].rsplit("/", 1)[1] for a in inst["anyOf"]} == {
        "CeaInstrument", "NoAttributes", "ForestTicketInstrument", "EmissionRightInstrument"}
    assert "guangdong: 广东 GDEA" in schemas["CeaInstrument"]["properties"]["region"]["description"]
    assert {"origin_registry", "origin_serials", "origin_reference"} <= set(schemas["IssuanceIn"]["properties"])
    assert {"override_flags", "reason"} <= set(schemas["ApprovalIn"]["properties"])
