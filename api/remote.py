"""`envx admin ... --server URL`: administration of a running registry through its own API, so nothing needs the
server stopped and nothing steps around the four-eyes rule (exchange/security/operator_actions.py).

The caller's API key comes from the environment (`ENVX_API_KEY`), never from the command line (a process list
shows arguments); enrollment-code halves are read from standard input for the same reason.

- `create-key --server URL --name NAME`: an operator proposes admitting a new operator; the answer shows the
  first half of its enrollment code (to this operator only).
- `approve ACTION --server URL`: a second operator approves (never the proposer); for an admission the answer
  shows the second half, to the approver only.
- `enroll --server URL`: the new operator, given both halves (stdin, one per line), gets its own API key.
- `rotate-key --server URL --reason R`: propose the online rotation of the checkpoint signing key; a second
  operator approves it with `approve`.

With maker-checker off (closed test benches) the first command acts at once and prints both halves.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any

import httpx


class RemoteError(Exception):
    pass


def _client(url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60)


def _token() -> str:
    token = os.environ.get("ENVX_API_KEY")
    if not token:
        raise RemoteError("set ENVX_API_KEY to your operator API key (it is not taken from the command line)")
    return token


def _answer(r: httpx.Response) -> dict[str, Any]:
    try:
        body: dict[str, Any] = r.json()
    except ValueError:
        raise RemoteError(f"{r.status_code}: {r.text[:500]}") from None
    if r.status_code >= 400:
        raise RemoteError(f"{r.status_code} {body.get('code')}: {body.get('detail')}")
    return body


def create_key(url: str, name: str, client_id: str | None) -> dict[str, Any]:
    with _client(url, _token()) as http:
        return _answer(http.post("/v1/participants", json={"name": name, "kind": "operator"},
                                 headers={"Idempotency-Key": client_id or f"cli-create-operator-{uuid.uuid4()}"}))


def approve(url: str, action_id: int, note: str | None) -> dict[str, Any]:
    with _client(url, _token()) as http:
        return _answer(http.post(f"/v1/operator-actions/{action_id}/approve", json={"note": note} if note else {}))


def enroll(url: str, label: str, lines: list[str] | None = None) -> dict[str, Any]:
    halves = [x.strip() for x in (lines if lines is not None else sys.stdin.read().splitlines()) if x.strip()]
    if len(halves) != 2:
        raise RemoteError("give the two halves of the enrollment code on standard input, one per line")
    with _client(url, None) as http:
        return _answer(http.post("/v1/enrollments", json={"first_half": halves[0], "second_half": halves[1],
                                                          "label": label},
                                 headers={"Idempotency-Key": f"cli-enroll-{uuid.uuid4()}"}))


def rotate_key(url: str, reason: str, client_id: str | None) -> dict[str, Any]:
    with _client(url, _token()) as http:
        return _answer(http.post("/v1/ledger/key-rotations", json={"reason": reason},
                                 headers={"Idempotency-Key": client_id or f"cli-rotate-key-{uuid.uuid4()}"}))
