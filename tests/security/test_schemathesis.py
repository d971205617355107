"""Schemathesis against the whole OpenAPI document, on a real server on 127.0.0.1.

For every operation, a bounded number of generated requests (schema-valid and schema-violating), sent
with a key of a role the matrix allows (none for public operations). Checked on every response:
no 5xx; the status code is one the document declares; the content type and body match what it
declares for that status (problem details for failures); schema-violating requests are refused.
Not checked: that schema-valid requests succeed (`positive_data_acceptance`): business rules
(balances, states, object ownership) refuse most random but well-formed requests, by design.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.authz import MATRIX, PUBLIC
from exchange.database import with_database
from tests.conftest import _admin_execute
from tests.security.authz_checker import ROLES
from tests.system.server import Server

EXAMPLES = int(os.environ.get("ENVX_SCHEMATHESIS_EXAMPLES", "12"))  # per operation and mode
BRAKES = frozenset({"suspendParticipant", "revokeKey"})
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]


class _Server(Server):
    @property
    def env(self) -> dict[str, str]:  # the production defaults: maker-checker on
        return {**super().env, "ENVX_MAKER_CHECKER": "true", "ENVX_SCHEDULER": "false"}


@pytest.fixture(scope="module")
def server(pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, dict[str, str]]]:
    name = f"envx_st_{os.getpid()}"
    _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}"')
    _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    srv = _Server(with_database(pg_admin_url, name), Path(tmp_path_factory.mktemp("schemathesis")))
    tokens = {"operator": srv.operator_key()}
    checker = json.loads(srv.cli("admin", "create-key", "--name", "fuzz checker"))["api_key"]
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            for role in ROLES[1:]:  # admitted by two operators, enrolled with both halves of the code
                proposal = c.post("/v1/participants", json={"name": f"fuzz {role}", "kind": role}, headers={
                    "Authorization": f"Bearer {tokens['operator']}", "Idempotency-Key": f"p-{role}"}).json()
                approval = c.post(proposal["approve"], json={}, headers={"Authorization": f"Bearer {checker}"}).json()
                key = c.post("/v1/enrollments", json={"first_half": proposal["enrollment"]["first_half"],
                                                      "second_half": approval["enrollment"]["second_half"]},
                             headers={"Idempotency-Key": f"e-{role}"}).json()
                tokens[role] = key["key"]["token"]
        yield srv.url, tokens
    finally:
        srv.stop()
        _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _caller(operation_id: str, tokens: dict[str, str]) -> dict[str, str]:
    allowed = MATRIX.get(operation_id, frozenset())
    if allowed is PUBLIC:
        return {}
    role = "operator" if "operator" in allowed else next(r for r in ROLES if r in allowed)
    return {"Authorization": f"Bearer {tokens[role]}"}


def _run(operation: Any, mode: GenerationMode, base_url: str, headers: dict[str, str],
         session: requests.Session, sent: list[int]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        try:
            response = case.call(base_url=base_url, session=session, headers=headers)
        except (requests.exceptions.InvalidHeader, UnicodeError, ValueError):
            reject()  # a request the HTTP client itself cannot send (e.g. a header outside latin-1)
        sent.append(response.status_code)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


def test_the_api_conforms_to_its_openapi_document(server: tuple[str, dict[str, str]]) -> None:
    base_url, tokens = server
    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")
    failures: list[str] = []
    counted = 0
    sent: list[int] = []
    started = time.monotonic()
    with requests.Session() as session:
        # The brakes last: a generated id may name a fuzz participant or key, which would then answer 401
        # to the operations after it (still checked, but no longer exercised).
        ops = sorted((r.ok() for r in schema.get_all_operations()),
                     key=lambda o: o.definition.raw["operationId"] in BRAKES)
        for operation in ops:
            counted += 1
            headers = _caller(operation.definition.raw["operationId"], tokens)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    _run(operation, mode, base_url, headers, session, sent)
                except Unsatisfiable:
                    pass  # nothing to negate (no inputs, or free-form strings only)
                except (Exception, BaseExceptionGroup) as exc:  # one report per operation and mode
                    failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:1500]}")
    assert counted >= 100 and len(sent) >= counted * EXAMPLES  # it really sent requests
    assert time.monotonic() - started < 240, "keep the fuzzing bounded: lower ENVX_SCHEMATHESIS_EXAMPLES"
    assert failures == [], "\n\n".join(failures)
