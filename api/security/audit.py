"""Which requests are administrative, and what the audit trail records about them (exchange/security/audit.py stores).

Administrative: the operations below (participants, their suspension, enrollment codes and enrollment, keys,
signing keys and policy, instruments, markets and their amendments, sessions and halts, issuance decisions,
cash, operator actions, pledge rule changes), plus any mutation made with an operator's key. Refused attempts
are recorded too (who tried, from where, why refused).

What is kept of the request body: the decoded JSON (api/security/json_body.py) when the guard lets the
request through (a key it accepts, or a public operation such as enrollment), the body decoded and it is
at most 16 kB; otherwise only its SHA-256 and length. Requests without a valid key that are refused, and
rate-limited ones (429), are counted rather than each recorded (exchange/security/audit.py
`record_anonymous`): a flooding client cannot grow the trail faster than one row per address and minute.

Secrets are never recorded: request fields that carry one (the halves of an enrollment code) are replaced
by "<redacted>"; answers are recorded only as the fields listed in `_ANSWER_FIELDS` (tokens and halves are
in none of them), the problem code of a refusal, or the id and summary of a proposal.
"""

from __future__ import annotations

import hashlib
from typing import Any

from api.security import json_body
from exchange.core.idempotency import SECRET_FIELDS
from exchange.core.principal import Principal
from exchange.security.audit import AuditEvent

ADMIN_OPERATIONS = frozenset({
    "createParticipant", "suspendParticipant", "reinstateParticipant", "issueEnrollmentCode", "enroll",
    "createKey", "revokeKey",
    "registerSigningKey", "revokeSigningKey", "setSignaturePolicy",
    "defineInstrument", "defineMarket", "amendMarket", "setSession", "haltMarket", "resumeMarket",
    "approveIssuance", "rejectIssuance",
    "recordDeposit", "recordWithdrawal",
    "approveOperatorAction", "rejectOperatorAction",
    "revaluePledges", "sweepPledgeExpiry", "setPledgeHaircut", "sweepEmissionRightExpiry",
})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_BODY_IN_DETAIL = 16_384  # larger bodies are recorded by digest only
REDACTED = "<redacted>"
# What a successful answer adds to the record, per operation: which key or participant came of it.
_ANSWER_FIELDS: dict[str, tuple[str, ...]] = {
    "enroll": ("participant_id", "key.id"),
    "createKey": ("id", "parent_key_id", "expires_at"),
    "revokeKey": ("revoked_keys",),
    "suspendParticipant": ("id", "participant_id", "status"),
}


def is_administrative(operation: str | None, principal: Principal | None, method: str) -> bool:
    if operation in ADMIN_OPERATIONS:
        return True
    return method not in SAFE_METHODS and isinstance(principal, Principal) and principal.kind == "operator"


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403, 429):
        return "refused"
    return "failed"


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if k in SECRET_FIELDS else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


NOT_DECODED = object()  # the body was not read as JSON (refused before, or by the decoder)


def request_detail(body: bytes, decoded: Any = NOT_DECODED) -> dict[str, Any]:
    """The request as the trail keeps it: its decoded JSON, secrets redacted, if small; else its digest.
    A secret in a body too large (or not JSON) to be redacted field by field is not kept either."""
    if not body:
        return {}
    if decoded is not NOT_DECODED and len(body) <= MAX_BODY_IN_DETAIL:
        return {"request": redact(decoded)}
    return {"request_sha256": hashlib.sha256(body).hexdigest(), "request_bytes": len(body)}


def _answer(response_body: bytes) -> Any:
    try:  # our own answer; still read with the strict decoder, which cannot recurse away
        return json_body.decode(response_body) if response_body else {}
    except json_body.BodyRefused:
        return {}


def _answer_fields(operation: str, response_body: bytes) -> dict[str, Any]:
    wanted = _ANSWER_FIELDS.get(operation)
    if not wanted or not response_body:
        return {}
    resp = _answer(response_body)
    out: dict[str, Any] = {}
    for path in wanted:
        v: Any = resp
        for part in path.split("."):
            v = v.get(part) if isinstance(v, dict) else None
        if v is not None:
            out[path] = v
    return {"answer": out} if out else {}


def _header(scope: Any, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            value: bytes = v
            return value.decode("latin-1")[:200]
    return None


def event(scope: Any, operation: str, principal: Principal | None, status: int, request: dict[str, Any],
          response_body: bytes, signed: dict[str, Any] | None) -> AuditEvent:
    detail: dict[str, Any] = dict(request)
    if scope.get("path_params"):
        detail["path_params"] = {k: str(v) for k, v in scope["path_params"].items()}
    idem = _header(scope, b"idempotency-key")
    if idem:
        detail["idempotency_key"] = idem
    if 200 <= status < 300 and status != 202:
        detail.update(_answer_fields(operation, response_body))
    if status >= 400 or status == 202:
        resp = _answer(response_body)  # the problem's machine code, or the proposed action's id (maker-checker)
        if isinstance(resp, dict):
            for k in ("code", "detail") if status >= 400 else ("id", "summary"):
                if k in resp:
                    detail[("problem_" if status >= 400 else "operator_action_") + k] = resp[k]
    if signed:
        detail["signed_instruction"] = signed["record"]
    client = scope.get("client")
    p = principal if isinstance(principal, Principal) else None
    return AuditEvent(
        operation=operation, method=scope.get("method", ""), path=scope.get("path", "")[:500], status=status,
        outcome=outcome_of(status), actor=p.actor if p else None, participant_kind=p.kind if p else None,
        api_key_id=p.key_id if p else None, client_ip=client[0] if client else None,
        forwarded_for=_header(scope, b"x-forwarded-for"), detail=detail)
