"""Small helpers to drive the HTTP API in tests."""

from __future__ import annotations

import itertools
import secrets
import weakref
from typing import Any

from litestar.testing import TestClient

from exchange.core.runtime import Runtime
from exchange.registry.subjects import resident_id_check_character, uscc_check_character
from exchange.security.bootstrap import operator_key

_ids = itertools.count(1)


def bootstrap_operator(client: TestClient, name: str = "测试交易所 operator") -> str:
    """What `envx admin create-key` does: an operator participant and its key, created server-side."""
    rt: Runtime = client.app.state.rt

    async def make() -> str:
        return str((await operator_key(rt, name=name, label="test"))["api_key"])

    return client.blocking_portal.call(make)  # the app's own event loop


_checkers: weakref.WeakKeyDictionary[TestClient, str] = weakref.WeakKeyDictionary()


def checker_token(client: TestClient) -> str:
    """A second operator's key (one per app), for maker-checker approvals."""
    if client not in _checkers:
        _checkers[client] = bootstrap_operator(client, "测试交易所 checker")
    return _checkers[client]


class Approved:
    """The approval of a proposal, shaped like the direct answer: 201 and the executed result."""

    def __init__(self, resp: Any) -> None:
        self.raw = resp
        self.ok = resp.status_code == 200
        self.status_code = 201 if self.ok else resp.status_code
        self.headers = resp.headers
        self.text = resp.text

    def json(self) -> Any:
        return self.raw.json()["result"] if self.ok else self.raw.json()


class Api:
    """One authenticated caller; `as_(token)` gives another."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.token = token

    def as_(self, token: str) -> Api:
        return Api(self.client, token)

    def _h(self, key: str | None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}"}
        if key:
            h["Idempotency-Key"] = key
        return h

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params=params or None, headers=self._h(None))

    def post(self, path: str, body: dict[str, Any] | None = None, key: str | None = "auto") -> Any:
        """POST; a maker-checker proposal (202) is approved at once by a second operator, so tests that
        are not about maker-checker read as before. Use `propose` to keep the proposal pending."""
        resp = self.propose(path, body, key)
        if resp.status_code == 202 and isinstance(self.client, TestClient):
            return self.approve(resp)
        return resp

    def new_key(self) -> str:
        """An automatic idempotency key."""
        return f"k{next(_ids)}"

    def propose(self, path: str, body: dict[str, Any] | None = None, key: str | None = "auto") -> Any:
        if key == "auto":
            key = self.new_key()
        return self.client.post(path, json=body if body is not None else {}, headers=self._h(key))

    def approve(self, proposal: Any) -> Any:
        """Approve a pending operator action as the checker operator; looks like the direct call's answer."""
        action = proposal.json()
        checker = Api(self.client, checker_token(self.client))
        return Approved(checker.client.post(f"/v1/operator-actions/{action['id']}/approve", json={},
                                            headers=checker._h(None)))

    def ok(self, resp: Any, status: int = 200) -> Any:
        assert resp.status_code in (status, 201) if status == 200 else resp.status_code == status, resp.text
        return resp.json()

    # Domain shortcuts ------------------------------------------------------------------

    def participant(self, name: str, kind: str, uscc: str | None = None, **subject: Any) -> dict[str, Any]:
        """Admitted the way the registry admits anyone: proposed by this operator (first half of the
        enrollment code), approved by the checker operator (second half), enrolled by the participant with
        both halves (its own first key). `subject` passes e.g. subject="person", id_document={...}."""
        resp = self.propose("/v1/participants", {"name": name, "kind": kind, "uscc": uscc, **subject})
        if resp.status_code == 202:
            first = resp.json()["enrollment"]["first_half"]
            approved = self.approve(resp)
            p = self.ok(approved)
            second = approved.raw.json()["enrollment"]["second_half"]
        else:  # maker-checker off: one operator, both halves
            p = self.ok(resp, 201)
            first, second = p["enrollment"]["first_half"], p["enrollment"]["second_half"]
        token = self.ok(self.enroll(first, second), 201)["key"]["token"]
        return {**p, "token": token, "api": self.as_(token)}

    def enroll(self, first_half: str, second_half: str, key: str | None = "auto", **extra: Any) -> Any:
        """POST /v1/enrollments, without any API key (the code is the credential)."""
        if key == "auto":
            key = self.new_key()
        return self.client.post("/v1/enrollments", json={"first_half": first_half, "second_half": second_half,
                                                         **extra}, headers={"Idempotency-Key": key} if key else {})

    def instrument(self, code: str, kind: str = "forest_ticket", decimals: int = 0,
                   attributes: dict[str, Any] | None = None) -> dict[str, Any]:
        made: dict[str, Any] = self.ok(self.post("/v1/instruments", {
            "code": code, "name": code, "kind": kind, "decimals": decimals, "attributes": attributes or {}}))
        return made

    def authorise_issuer(self, instrument: str, issuer_id: int) -> dict[str, Any]:
        """Make `issuer_id` an issuing authority of `instrument` (this operator proposes, the checker approves)."""
        granted: dict[str, Any] = self.ok(self.post(f"/v1/instruments/{instrument}/issuers",
                                                    {"participant_id": issuer_id}))
        return granted

    def issue(self, issuer: Api, holder_id: int, instrument: str, quantity: str,
              attributes: dict[str, Any] | None = None) -> dict[str, Any]:
        """Issued the way the registry issues: requested by an issuing authority of the instrument (made one
        first, through four eyes, if it is not yet), approved by this operator."""
        body = {"instrument": instrument, "holder_id": holder_id, "quantity": quantity, "attributes": attributes or {}}
        resp = issuer.post("/v1/issuances", body)
        if resp.status_code == 403 and resp.json().get("code") == "issuer_not_authorised":
            me = issuer.ok(issuer.get("/v1/participants"))[0]["id"]  # a participant lists only itself
            self.authorise_issuer(instrument, me)
            resp = issuer.post("/v1/issuances", body)
        req = self.ok(resp)
        approved: dict[str, Any] = self.ok(self.post(f"/v1/issuances/{req['id']}/approve", {}))
        return approved


def uscc(first17: str) -> str:
    """A unified social credit code with its GB 32100 check character."""
    return first17 + uscc_check_character(first17)


def fresh_uscc() -> str:
    """A unified social credit code no other test participant has (random organisation code)."""
    return uscc(f"913504{secrets.randbelow(10**11):011d}")


def resident_id(first17: str) -> str:
    """A 居民身份证 number with its GB 11643 check character."""
    return first17 + resident_id_check_character(first17)


def person(number: str) -> dict[str, Any]:
    """What `Api.participant(..., **person(number))` needs to admit a natural person."""
    return {"subject": "person", "id_document": {"type": "resident_id_card", "number": number}}


def ticket(n: int) -> dict[str, Any]:
    """Sanming forest ticket number n, over its own parcel (so tickets of one test never overlap)."""
    return {"region": "sanming", "ticket_number": f"{n:07d}", "issuing_bureau": "三明市林业局",
            "parcels": [f"三明-测试林班-{n}"], "monitoring_period": {"start": "2016-01-01", "end": "2020-12-31"}}


def project_batch(project_id: str, year: int = 2021, methodology: str = "CCER-14-001-V01",
                  **extra: Any) -> dict[str, Any]:
    """CCER/CDCER batch attributes: a project's reductions over one calendar year."""
    return {"project_id": project_id, "methodology": methodology,
            "monitoring_period": {"start": f"{year}-01-01", "end": f"{year}-12-31"}, **extra}
