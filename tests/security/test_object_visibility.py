"""Every operation naming an object, called by every participant that is not a party to it, answers as
for an id that does not exist (tests/security/visibility_checker.py explains the verdicts); and the
check fails when an object-level rule is weakened."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from api.authz import MATRIX, PUBLIC
from exchange.trading import orders
from pledges import visibility
from tests.helpers import Api
from tests.security import authz_checker as az
from tests.security import visibility_checker as vc


def test_non_parties_are_told_what_an_unknown_id_is_told(api: Api, client: TestClient) -> None:
    spec = client.get("/schema/openapi.json").json()
    world = vc.build(api)
    before = vc.state(world)
    verdict = vc.check(world, spec)
    assert verdict.violations == [], "\n".join(verdict.violations)
    # Every operation naming a non-public object was exercised, most past the role guard.
    expected = {op.operation_id for op in az.operations(spec)
                if vc.object_of(op.path) and MATRIX.get(op.operation_id) is not PUBLIC}
    assert verdict.operations == expected, expected - verdict.operations
    assert verdict.object_level > 300 and verdict.checked > verdict.object_level
    assert vc.state(world) == before  # nothing any non-party did changed anything


def test_the_check_fails_when_a_filed_claim_grants_visibility(api: Api, client: TestClient,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spec = client.get("/schema/openapi.json").json()
    world = vc.build(api)
    monkeypatch.setattr(visibility, "SEEING_CLAIMS", frozenset({"filed", "registered", "paid"}))
    monkeypatch.setattr(orders, "SEES_ALL", frozenset({"operator", "auditor", "enterprise"}))
    verdict = vc.check(world, spec, only={"getPledge", "listPledgeEvents", "getOrder"})
    flagged = {v.split(":")[0] for v in verdict.violations}
    assert any(f.startswith("getPledge on pledge") and "as B2" in f for f in flagged), flagged
    assert any(f.startswith("listPledgeEvents") and "as B2" in f for f in flagged), flagged
    assert any(f.startswith("getOrder") and "as E2" in f for f in flagged), flagged
    assert not any("as B3" in f and "Pledge" in f for f in flagged)  # B3 filed nothing: still 404
