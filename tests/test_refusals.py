"""The closed set of refusals (exchange/core/refusals.py).

- every code the source gives (static: tests/refusal_sites.py walks exchange/, api/, pledges/, ledger/,
  matching/) is a member, with the status the site restates; each dynamic site is listed below with why
  it only passes members;
- at run time a code outside the set, or another status, is a bug (UnknownRefusal), never an answer;
- the lower packages' own codes are members; REFUSALS.md is the enum's table; no member is unused.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from api import problems
from api.security.middleware import send_problem
from exchange.core.errors import DomainError, Forbidden, Invalid, NotFound
from exchange.core.refusal_text import refused
from exchange.core.refusals import Refusal, UnknownRefusal, table
from ledger.state import REFUSAL_CODES as LEDGER_CODES
from ledger.state import Rejection
from matching import commands as mc
from matching import reasons
from pledges.errors import CODES as PLEDGE_CODES
from pledges.errors import PledgeError
from tests.refusal_sites import ROOT, Site, files, scan

STATUSES = {400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 503}

# Sites whose code is an expression, not a literal: (path, function, taker, expression) -> why it can only be a
# member. A new dynamic site fails test_every_dynamic_site_is_accounted_for until it is listed here.
_ENGINE = "an engine's REJECTED event or rule check: codes are matching.reasons constants (CODES, all members)"
DYNAMIC = {
    ("api/edge.py", "_problem", "problem document", "code"):
        "the value of a Refusal member, the parameter's type (the /metrics gate's refusals)",
    ("exchange/core/refusal_text.py", "refused", "DomainError", "rej.code"):
        "a ledger Rejection: its codes are ledger.state.REFUSAL_CODES (all members, test below)",
    ("exchange/pledging/refusals.py", "translate_refusals.wrapper", "DomainError", "exc.code"):
        "a PledgeError: its codes are pledges.errors.CODES (all members, test below)",
    ("exchange/pledging/refusals.py", "take_units", "DomainError", "exc.code"):
        "a PledgeError of pledges.ranges, spoken in the instrument's unit: pledges.errors.CODES (test below)",
    ("exchange/registry/encumbrances.py", "naming", "DomainError", "exc.code"):
        "the code of a DomainError already built (checked when it was)",
    ("exchange/security/operator_actions.py", "_execute", "problem document", "failure.code"):
        "a failed execution's DomainError, stored with its code (checked when it was built)",
    ("exchange/security/operator_actions.py", "_execute", "DomainError", "failure.code"):
        "the same DomainError raised again for the approver",
    ("exchange/trading/auctions.py", "_answer", "_reason_error", "order.reason"):
        "a rejected order's reason, set from the engine's REJECTED event (settlement.Book.stage); " + _ENGINE,
    ("exchange/trading/negotiation.py", "submit_plain.run", "_reason_error", "rejected[0][2]"): _ENGINE,
    ("exchange/trading/orders.py", "_submit_new", "_reason_error", "*problem"): "matching.rules check: " + _ENGINE,
    ("exchange/trading/orders.py", "stored_refusal", "_reason_error", "*row"):
        "market_refusals rows (code, detail) are written from the engine's REJECTED events (settlement.Book.stage); "
        + _ENGINE,
    ("exchange/trading/orders.py", "cancel", "_reason_error", "rejected[2]"): _ENGINE,
    ("exchange/trading/orders.py", "reduce", "_reason_error", "rejected[2]"): _ENGINE,
    ("api/controllers/ledger_proofs.py", "_pending", "problem", "exc.code"): "a CheckpointPending (a DomainError)",
    ("api/problems.py", "domain_error", "problem", "exc.code"): "a DomainError (checked when it was built)",
    ("exchange/trading/batches.py", "_check", "_reason_error", "*problem"): "matching.rules check: " + _ENGINE,
    ("api/controllers/order_batches.py", "_slot_bytes", "problem", "e.code"):
        "a batch slot's DomainError (checked when it was built)",
    ("api/problems.py", "http_error", "problem", "code"): "_HTTP_CODES values are Refusal members (test below)",
    ("api/security/middleware.py", "SecurityMiddleware._respond", "refusal tuple", "*bad_input"):
        "what _input_refusal / _integer_refusal return: literal codes, checked as sites (422)",
    ("api/security/middleware.py", "SecurityMiddleware._respond", "refusal tuple", "*bad_header"):
        "what _header_refusal returns: literal codes, checked as sites (422)",
    ("api/security/middleware.py", "SecurityMiddleware._respond", "refusal tuple", "exc.code"):
        "a json_body.BodyRefused: its literal codes are checked as sites (422)",
    ("api/security/middleware.py", "SecurityMiddleware._respond", "refusal tuple",
     "(exc.status, exc.code, exc.message)"):
        "a SignatureError (a DomainError, checked when it was built)",
}


def _key(site: Site) -> tuple[str, str, str, str]:
    return (site.path, site.function, site.taker, site.expr)


@pytest.fixture(scope="module")
def sites() -> list[Site]:
    return scan().sites


# ----------------------------------------------------------------------------------- static


def test_every_literal_code_is_a_member_with_the_status_its_site_restates(sites: list[Site]) -> None:
    wrong = []
    for site in sites:
        for code in site.codes or ():
            if code not in Refusal.__members__.values():
                wrong.append(f"{site.where()}: {code!r} is not in exchange/core/refusals.py")
            elif site.status is not None and Refusal(code).status != site.status:
                wrong.append(f"{site.where()}: {code!r} is answered {Refusal(code).status}, the site says "
                             f"{site.status}")
    assert not wrong, "\n".join(wrong)
    assert len([s for s in sites if s.codes]) > 300  # the walk does find the raise sites


def test_every_dynamic_site_is_accounted_for(sites: list[Site]) -> None:
    dynamic = {_key(s): s for s in sites if s.codes is None and not s.passthrough}
    unlisted = [s.where() for k, s in dynamic.items() if k not in DYNAMIC]
    assert not unlisted, ("codes passed through expressions the walk cannot resolve; make them literals (or "
                          "Refusal.X), or list them in DYNAMIC with why they are members:\n" + "\n".join(unlisted))
    assert not set(DYNAMIC) - set(dynamic), f"DYNAMIC lists sites that are gone: {set(DYNAMIC) - set(dynamic)}"


def _engine_code_ok(code: ast.expr, fn: ast.FunctionDef | None) -> bool:
    """`R.X`; `bad[0]` of `bad = <rules>.check(...)` (whose returns are checked below); or, in the
    `events.rejected(ref, code, message)` helper, its own parameter (its callers are REJECTED events too)."""
    if isinstance(code, ast.Attribute) and isinstance(code.value, ast.Name) and code.value.id == "R":
        return getattr(reasons, code.attr, None) in reasons.CODES
    if isinstance(code, ast.Attribute) and isinstance(code.value, ast.Name) and (code.value.id, code.attr) == (
            "command", "code"):
        return True  # a journaled Refused command's code: Refused admits reason codes only (test below)
    if fn is None:
        return False
    if isinstance(code, ast.Subscript) and isinstance(code.value, ast.Name):
        calls = [n.value for n in ast.walk(fn) if isinstance(n, ast.Assign) and len(n.targets) == 1
                 and isinstance(n.targets[0], ast.Name) and n.targets[0].id == code.value.id]
        return bool(calls) and all(isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute)
                                   and v.func.attr == "check" for v in calls)
    return isinstance(code, ast.Name) and fn.name == "rejected" and code.id in {a.arg for a in fn.args.args}


def test_the_engines_reject_with_reason_constants_only() -> None:
    """The dynamic engine sites above rely on this: a REJECTED event's code is always a matching.reasons code."""
    found = []
    for path in files(("matching",)):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            for node in ast.walk(fn):
                if (isinstance(node, ast.Tuple) and len(node.elts) >= 3 and isinstance(node.elts[0], ast.Name)
                        and node.elts[0].id == "REJECTED" and not isinstance(node.elts[2], ast.Starred)
                        and not _engine_code_ok(node.elts[2], fn)):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node.elts[2])}")
                if (fn.name == "check" and path.name == "rules.py" and isinstance(node, ast.Return)
                        and node.value is not None and not (isinstance(node.value, ast.Constant))
                        and not _engine_code_ok(node.value.elts[0], None)):  # type: ignore[attr-defined]
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node.value)}")
    assert not found, found


def test_a_refused_command_carries_an_engine_reason_only() -> None:
    """matching.base answers a journaled `Refused` with its code (the auction's own rule, asked before funding)."""
    assert mc.Refused(1, reasons.SELLER_CANNOT_BID, "x").code == "seller_cannot_bid"
    with pytest.raises(ValueError, match=r"matching\.reasons code"):
        mc.Refused(1, "insufficient_available", "a ledger code is not an engine's refusal")


def test_the_lower_packages_codes_are_members_and_exactly_those_they_raise(sites: list[Site]) -> None:
    members = {r.value for r in Refusal}
    assert members >= LEDGER_CODES, LEDGER_CODES - members
    assert members >= PLEDGE_CODES, PLEDGE_CODES - members
    assert members >= reasons.CODES, reasons.CODES - members

    def raised(package: str, taker: str) -> set[str]:
        return {c for s in sites if s.path.startswith(package + "/") and s.taker == taker for c in s.codes or ()}

    assert raised("ledger", "Rejection") == LEDGER_CODES
    assert raised("pledges", "PledgeError") == PLEDGE_CODES
    constants = {v for k, v in vars(reasons).items() if k.isupper() and isinstance(v, str)}
    assert constants == reasons.CODES  # every reason constant is described


def test_no_member_is_unused() -> None:
    """A code nobody raises is not part of the documented set any more: remove it (or raise it)."""
    found = scan()
    used = {c for s in found.sites for c in s.codes or ()} | {a.lower() for a in found.refusal_attrs}
    used |= {getattr(reasons, a) for a in found.reason_attrs if isinstance(getattr(reasons, a, None), str)}
    assert not {r.value for r in Refusal} - used, {r.value for r in Refusal} - used


def test_the_enum_reads_as_a_table() -> None:
    for r in Refusal:
        assert r.name == r.value.upper(), r
        assert r.status in STATUSES, r
        assert r.meaning and "\n" not in r.meaning and "|" not in r.meaning, r
    assert len({r.value for r in Refusal}) == len(Refusal)  # no alias hides a second meaning
    for status, code in problems._HTTP_CODES.items():
        assert isinstance(code, Refusal) and code.status == status, (status, code)


def test_refusals_md_is_the_enum_rendered() -> None:
    written = (ROOT / "REFUSALS.md").read_text(encoding="utf-8")
    assert written == table(), "REFUSALS.md is stale: python -m exchange.core.refusals > REFUSALS.md"
    for r in Refusal:
        assert f"| `{r.value}` | {r.status} | {r.meaning} |" in written
    assert "REFUSALS.md" in (ROOT / "README.md").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------------- run time


def test_an_unknown_code_or_another_status_is_a_bug_not_a_refusal() -> None:
    with pytest.raises(UnknownRefusal, match="'no_such_refusal' is not in the closed set"):
        DomainError("no_such_refusal", "planted")
    with pytest.raises(UnknownRefusal, match=r"answered 409 .* not 422"):
        DomainError("insufficient_available", "planted", 422)
    with pytest.raises(UnknownRefusal):
        Invalid("insufficient_available", "a 409 code is not a validation error")
    with pytest.raises(UnknownRefusal):  # a pure package's refusal is checked where it becomes an answer
        refused(Rejection("no_such_refusal", "planted"))
    with pytest.raises(UnknownRefusal):
        problems.problem(409, "no_such_refusal", "planted")
    with pytest.raises(UnknownRefusal):
        problems.problem(422, "insufficient_available", "planted")
    assert not issubclass(UnknownRefusal, DomainError) and issubclass(UnknownRefusal, AssertionError)
    _ = PledgeError  # its codes reach the API through DomainError (exchange/pledging/refusals.py)


def test_the_status_comes_from_the_code() -> None:
    assert DomainError("insufficient_available", "x").status == 409
    assert DomainError(Refusal.OFF_TICK, "x").status == 422
    assert refused(Rejection("unknown_hold", "x")).status == 404
    assert refused(Rejection("invalid_serials", "x")).status == 422
    assert NotFound("pledge", 1).code == "not_found" and NotFound("pledge", 1).status == 404
    assert Forbidden().status == 403
    e = DomainError("market_stopped", "x", 503, reason="why")
    assert (e.code, e.status, e.extra) == (Refusal.MARKET_STOPPED, 503, {"reason": "why"})
    assert e.code == "market_stopped" and isinstance(e.code, str)


def test_the_edge_refuses_to_send_an_unknown_code() -> None:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(send_problem({"path": "/x"}, send, 429, "rate_limited", "slow down"))  # type: ignore[arg-type]
    assert sent[0]["status"] == 429
    with pytest.raises(UnknownRefusal):
        asyncio.run(send_problem({"path": "/x"}, send, 422, "rate_limited", "planted"))  # type: ignore[arg-type]
    with pytest.raises(UnknownRefusal):
        asyncio.run(send_problem({"path": "/x"}, send, 422, "no_such_refusal", "planted"))  # type: ignore[arg-type]


def test_the_docs_say_where_the_policy_is() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "### Refusals and bugs" in readme and "ledger_stopped" in readme and "market_stopped" in readme
    assert Path(ROOT / "exchange/core/refusals.py").read_text(encoding="utf-8").count("broken invariant is a bug") == 1
