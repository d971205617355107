"""Which changes of a registration's terms the pledgee may make alone, and which need the pledgor's consent.

Before the pledgor confirms, the bank files and amends what it likes: the pledgor confirms or declines the
terms as they then stand. Once confirmed, the pledgor agreed to those terms, and the bank alone may change
them only in the pledgor's favour (red team round 7, F2): a lower secured amount, a lower haircut, lower
warning / margin-call / liquidation levels, dropping transfer on default. A change that makes the pledgor's
position worse -- more secured, a higher haircut (the same units worth less), a level the collateral must
stay above raised (a margin call or liquidation sooner: an enforcement ground), transfer on default where
the pledge had none -- or whose effect cannot be told (another loan contract) needs a new registration the
pledgor confirms (409 `requires_pledgor_consent`). Unchanged values need nothing.

A registration's period is bounded as 中登网 bounds it (《动产和权利担保统一登记办法》: the registrant chooses the
period of a registration, and of each extension (展期) of it, up to 30 years): a term that ends more than 30
years after it starts, or an extension that ends more than 30 years after the term it extends, is refused
(422 `term_too_long`, latest_end).

Pure: the caller gives the terms in force (the haircut as it applies now: the registration's own, else the
instrument's default) and the changes asked for, in base units and basis points.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

# Terms whose higher value is worse for the pledgor.
WORSE_WHEN_HIGHER = ("secured_amount", "haircut_bps", "warning_bps", "margin_call_bps", "liquidation_bps")
# Terms whose effect on the pledgor cannot be ordered: any change needs consent.
NEEDS_CONSENT_TO_CHANGE = ("loan_contract",)
# Booleans that are worse for the pledgor when they become true.
WORSE_WHEN_SET = ("transfer_on_default",)

TERMS = (*WORSE_WHEN_HIGHER, *NEEDS_CONSENT_TO_CHANGE, *WORSE_WHEN_SET)


def needing_consent(in_force: Mapping[str, Any], changes: Mapping[str, Any]) -> list[str]:
    """The terms among `changes` that the pledgee may not change alone on a confirmed registration, in
    TERMS order (empty: it may make them all)."""
    assert set(changes) <= set(TERMS), set(changes) - set(TERMS)
    out = []
    for key in TERMS:
        if key not in changes or changes[key] == in_force[key]:
            continue
        new, old = changes[key], in_force[key]
        if key in NEEDS_CONSENT_TO_CHANGE or (key in WORSE_WHEN_SET and new) or (
                key in WORSE_WHEN_HIGHER and new > old):
            out.append(key)
    return out


MAX_PERIOD_YEARS = 30


def latest_end(start: date) -> date:
    """The last day a period starting on `start` may end (MAX_PERIOD_YEARS later; 29 February as 28)."""
    year = start.year + MAX_PERIOD_YEARS
    return start.replace(year=year, day=28) if (start.month, start.day) == (2, 29) else start.replace(year=year)
