"""Every cell of the authorization matrix, generated from the OpenAPI operations; and proof that the
check fails when a guard is missing (tests/security/authz_checker.py explains the verdicts)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.testing import TestClient

import api.app as app_module
from api.authz import MATRIX, PUBLIC, operation_of
from exchange.core.errors import DomainError
from exchange.core.principal import Principal
from exchange.core.settings import Settings
from tests.helpers import Api, bootstrap_operator
from tests.security import authz_checker as az


def test_every_operation_and_role_against_the_matrix(api: Api, client: TestClient) -> None:
    spec = client.get("/schema/openapi.json").json()
    assert az.coverage_problems(spec, client.app) == []
    world = az.build_world(api)
    verdict = az.check(client, world, spec)
    ops = az.operations(spec)
    assert verdict.calls == len(ops) * (len(az.ROLES) + 1)
    assert verdict.violations == [], "\n".join(verdict.violations)
    assert verdict.server_errors == [], "\n".join(verdict.server_errors)


def test_the_spec_and_the_matrix_must_list_the_same_operations(client: TestClient,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    spec = client.get("/schema/openapi.json").json()
    monkeypatch.delitem(MATRIX, "getDepth")
    monkeypatch.setitem(MATRIX, "noSuchOperation", PUBLIC)
    assert az.coverage_problems(spec, client.app) == [
        "getDepth: in the OpenAPI document but not in MATRIX (refused to everyone)",
        "noSuchOperation: in MATRIX but no such operation"]


async def _authenticate_only(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """A broken guard: it checks for a key but forgot the matrix."""
    if MATRIX.get(operation_of(handler) or "") is PUBLIC or connection.scope["path"].startswith("/schema"):
        return
    if not isinstance(connection.scope.get("user"), Principal):
        raise DomainError("unauthenticated", "send a key", 401)


@pytest.fixture
def unguarded(db_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(app_module, "authorize", _authenticate_only)
    app = app_module.create_app(settings, db_url)
    with TestClient(app, raise_server_exceptions=False, timeout=60) as c:
        yield c


def test_the_check_fails_when_the_role_guard_is_removed(unguarded: TestClient) -> None:
    api = Api(unguarded, bootstrap_operator(unguarded))
    spec = unguarded.get("/schema/openapi.json").json()
    me = api.get("/v1/whoami").json()
    world = az.World({"operator": api.token}, {"operator": me["participant_id"]},
                     {"operator": me["holding_account"]})
    for role in az.ROLES[1:]:
        p = api.participant(f"unguarded {role}", role)
        world.tokens[role], world.ids[role], world.accounts[role] = p["token"], p["id"], p["holding_account"]
    sample = {"defineInstrument", "listAuditEvents", "createFreeze", "filePledge", "approveOperatorAction",
              "listLedgerEntries"}
    verdict = az.check(unguarded, world, spec, only=sample)
    flagged = {v.split(" as ")[0] for v in verdict.violations}
    assert flagged == sample, verdict.violations
    # e.g. an enterprise defining an instrument is no longer refused by the guard:
    assert any(v.startswith("defineInstrument as enterprise") for v in verdict.violations)


def test_guard_refusals_are_told_apart_from_object_level_ones(api: Api) -> None:
    seller = api.participant("seller", "enterprise")
    buyer = api.participant("buyer", "enterprise")
    r = seller["api"].post("/v1/instruments", {"code": "X", "name": "x", "kind": "ccer", "decimals": 0})
    assert (r.status_code, r.json()["code"]) == (403, "role_forbidden")
    r = seller["api"].get(f"/v1/participants/{buyer['id']}")
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = api.client.get("/v1/whoami")
    assert (r.status_code, r.json()["code"]) == (401, "unauthenticated")
    assert r.headers["www-authenticate"] == "Bearer"


def test_object_level_rules_bank_pledges_enterprise_accounts_court_freezes(api: Api) -> None:
    """Beyond the matrix: a bank sees its pledges only, an enterprise its accounts, a court its freezes."""
    world = az.build_world(api)
    other_bank = api.participant("另一家银行", "bank")
    other_court = api.participant("另一家法院", "court")
    other_ent = api.participant("另一家企业", "enterprise")
    if "pledge_id" in world.objects:
        r = other_bank["api"].get(f"/v1/pledges/{world.objects['pledge_id']}")
        assert r.status_code in (403, 404) and r.json()["code"] in ("forbidden", "not_found"), r.text
        assert all(p["id"] != world.objects["pledge_id"] for p in other_bank["api"].get("/v1/pledges").json())
    if "freeze_id" in world.objects:
        r = other_court["api"].get(f"/v1/freezes/{world.objects['freeze_id']}")
        assert r.status_code in (403, 404) and r.json()["code"] in ("forbidden", "not_found"), r.text
        r = other_court["api"].post(f"/v1/freezes/{world.objects['freeze_id']}/unfreeze", {})
        assert r.status_code in (403, 404), r.text
    r = other_ent["api"].get(f"/v1/accounts/{world.accounts['enterprise']}")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    assert other_ent["api"].get(f"/v1/accounts/{other_ent['holding_account']}").status_code == 200




def test_the_public_market_stream_passes_the_guard(api: Api, client: TestClient) -> None:
    """streamMarket is PUBLIC; the guard must find its operation id (websocket handlers keep it in opt)."""
    api.instrument("FCT-WS")
    api.ok(api.post("/v1/markets", {"instrument": "FCT-WS", "mode": "continuous", "settings": {"sessions": []}}))
    with client.websocket_connect("/v1/markets/FCT-WS.continuous/stream") as ws:
        assert ws.receive_json()["type"] == "snapshot"
