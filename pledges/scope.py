"""The secured scope of a pledge (担保范围) as its contract states it, and what of a claim it secures.

民法典 §389: a security covers the principal claim and its interest, penalty (违约金, including penalty
interest 罚息), damages (损害赔偿金) and the costs of keeping the collateral and of realising the
security -- unless the parties agreed otherwise. A contract therefore states:

- `type`: `ordinary` -- the principal is capped at the secured amount, every covered component is
  secured as claimed unless the contract caps it; or `maximum` (最高额质押, §439 with §420-424) --
  everything claimed, principal included, is secured up to the secured amount in total;
- `covers`: the components besides the principal that the pledge secures (default: all of them);
- `caps`: optional caps (fen) per covered component.

A claim at enforcement names what is owed now, per component. `secure` says, per component, how much
of it the pledge secures and how much is unsecured (an ordinary claim against the debtor, paid from
nothing here). The secured parts are paid in the order of §561: the costs of realising the claim
first, then interest (penalty interest and damages after the contractual interest), then the
principal.

Pure: integers in fen, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pledges.errors import PledgeError

PRINCIPAL = "principal"
# Payment order within the pledgee's claim (民法典 §561: costs, interest, principal).
COMPONENTS = ("realisation_costs", "custody_costs", "interest", "penalty", "damages", PRINCIPAL)
ACCESSORY = tuple(c for c in COMPONENTS if c != PRINCIPAL)
ORDINARY, MAXIMUM = "ordinary", "maximum"


@dataclass(frozen=True, slots=True)
class Scope:
    type: str = ORDINARY
    covers: frozenset[str] = frozenset(ACCESSORY)
    caps: tuple[tuple[str, int], ...] = ()

    @staticmethod
    def of(data: Mapping[str, Any] | None) -> Scope:
        """From the stored (or requested) JSON; None is the statutory default of §389."""
        if not data:
            return Scope()
        kind = data.get("type", ORDINARY)
        if kind not in (ORDINARY, MAXIMUM):
            raise PledgeError("invalid_scope", f"the scope type is {ORDINARY} or {MAXIMUM}", 422)
        covers = data.get("covers")
        covered = frozenset(ACCESSORY if covers is None else covers)
        unknown = covered - set(ACCESSORY)
        if unknown:
            raise PledgeError("invalid_scope", f"unknown scope components {sorted(unknown)}; the principal is "
                              f"always secured, the others are {', '.join(ACCESSORY)}", 422)
        caps = {str(k): int(v) for k, v in (data.get("caps") or {}).items()}
        for k, v in caps.items():
            if k not in covered:
                raise PledgeError("invalid_scope", f"a cap on {k}, which the scope does not cover", 422)
            if v <= 0:
                raise PledgeError("invalid_scope", f"the cap on {k} must be positive", 422)
        return Scope(kind, covered, tuple(sorted(caps.items())))

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "covers": [c for c in ACCESSORY if c in self.covers], "caps": dict(self.caps)}


@dataclass(frozen=True, slots=True)
class Part:
    component: str
    claimed: int
    secured: int

    @property
    def unsecured(self) -> int:
        return self.claimed - self.secured


def secure(scope: Scope, secured_amount: int, claim: Mapping[str, int]) -> list[Part]:
    """Each claimed component, in payment order, with the part the pledge secures."""
    unknown = set(claim) - set(COMPONENTS)
    if unknown:
        raise PledgeError("invalid_claim", f"unknown claim components {sorted(unknown)}", 422)
    if any(v < 0 for v in claim.values()) or not any(claim.values()):
        raise PledgeError("invalid_claim", "a claim names a positive amount owed", 422)
    caps = dict(scope.caps)
    room = secured_amount  # what a maximum-amount pledge has left to secure
    parts = []
    for comp in COMPONENTS:
        owed = claim.get(comp, 0)
        if not owed:
            continue
        if comp != PRINCIPAL and comp not in scope.covers:
            secured = 0
        else:
            secured = min(owed, caps.get(comp, owed))
            if scope.type == MAXIMUM:
                secured = min(secured, room)
                room -= secured
            elif comp == PRINCIPAL:
                secured = min(secured, secured_amount)
        parts.append(Part(comp, owed, secured))
    return parts
