"""The life of a pledge registration: its events, which state each may follow, and the projection.

A registration's current state is a fold over its events (`project`); the `pledges` row is that fold
kept up to date in the same transaction as each event, and `project(history)` must reproduce it.
Every event carries in `data["set"]` the fields it changes, so the fold needs no other input.

    filed ──confirm──> active ──release──> released            (terminal)
      │                  │ ├──expire───> expired               (terminal; also from a sale not accepted)
      ├─decline─> declined │ ├──amend / extend / top_up / partially_release / revalue ──> active
      └─withdraw─> withdrawn └──propose sale / start exchange sale──> enforcing
                                        enforcing ──cancel──> active
                                        enforcing ──accept sale / last proceeds──> enforced (terminal)
    (a ranked claim promoted on release of the senior pledge starts life as `promoted` -> active)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pledges.errors import PledgeError

FILED, ACTIVE, ENFORCING = "filed", "active", "enforcing"
ENFORCED, RELEASED, EXPIRED, DECLINED, WITHDRAWN = "enforced", "released", "expired", "declined", "withdrawn"
STATUSES = (FILED, ACTIVE, ENFORCING, ENFORCED, RELEASED, EXPIRED, DECLINED, WITHDRAWN)
TERMINAL = frozenset({ENFORCED, RELEASED, EXPIRED, DECLINED, WITHDRAWN})
LOCKED = frozenset({ACTIVE, ENFORCING})  # a ledger hold (or escrowed units) stands behind the registration
PUBLIC = LOCKED  # what the public inquiry shows as an encumbrance

_LIVE = frozenset({FILED, ACTIVE, ENFORCING})

# event type -> (statuses it may follow, status it leads to; None keeps the status)
TRANSITIONS: dict[str, tuple[frozenset[str], str | None]] = {
    "filed": (frozenset({""}), FILED),
    "promoted": (frozenset({""}), ACTIVE),
    "confirmed": (frozenset({FILED}), ACTIVE),
    "declined": (frozenset({FILED}), DECLINED),
    "withdrawn": (frozenset({FILED}), WITHDRAWN),
    "amended": (frozenset({FILED, ACTIVE}), None),
    "extended": (frozenset({ACTIVE}), None),
    "topped_up": (frozenset({ACTIVE}), None),
    "partially_released": (frozenset({ACTIVE}), None),
    "released": (frozenset({ACTIVE}), RELEASED),
    "expired": (frozenset({ACTIVE, ENFORCING}), EXPIRED),
    "revalued": (frozenset({ACTIVE, ENFORCING}), None),
    "warning": (frozenset({ACTIVE, ENFORCING}), None),
    "margin_call": (frozenset({ACTIVE, ENFORCING}), None),
    "liquidation_call": (frozenset({ACTIVE, ENFORCING}), None),
    "cured": (frozenset({ACTIVE, ENFORCING}), None),
    "deadline_warning": (frozenset({ACTIVE, ENFORCING}), None),
    "freeze_noticed": (_LIVE, None),
    "freeze_lifted": (_LIVE, None),
    "claim_filed": (frozenset({ACTIVE}), None),
    "claim_registered": (frozenset({ACTIVE, ENFORCING}), None),
    "claim_released": (_LIVE, None),
    "sale_proposed": (frozenset({ACTIVE}), ENFORCING),
    "sale_cancelled": (frozenset({ENFORCING}), ACTIVE),
    "exchange_sale_started": (frozenset({ACTIVE}), ENFORCING),
    "proceeds_distributed": (frozenset({ENFORCING}), None),
    "enforced": (frozenset({ACTIVE, ENFORCING}), ENFORCED),
}

# The events a bank hears about by webhook (the stream carries all of them).
NOTIFY = frozenset({
    "confirmed", "declined", "extended", "topped_up", "partially_released", "released", "expired", "promoted",
    "warning", "margin_call", "liquidation_call", "cured", "deadline_warning", "freeze_noticed", "freeze_lifted",
    "claim_filed", "claim_registered", "claim_released", "sale_cancelled", "enforced", "proceeds_distributed",
})

# Actions callers ask for, and the statuses in which each is allowed (refusal codes below).
ACTIONS: dict[str, frozenset[str]] = {
    "confirm": frozenset({FILED}),
    "decline": frozenset({FILED}),
    "withdraw": frozenset({FILED}),
    "amend": frozenset({FILED, ACTIVE}),
    "extend": frozenset({ACTIVE}),
    "top_up": frozenset({ACTIVE}),
    "partial_release": frozenset({ACTIVE}),
    "release": frozenset({ACTIVE}),
    "enforce": frozenset({ACTIVE}),
    "accept_sale": frozenset({ENFORCING}),
    "cancel_sale": frozenset({ENFORCING}),
    "proceeds": frozenset({ENFORCING}),
    "file_claim": frozenset({ACTIVE}),
    "expire": frozenset({ACTIVE}),
}


def require(status: str, action: str) -> None:
    """Refuse `action` on a registration in `status`, saying why in terms of the registration."""
    if status in ACTIONS[action]:
        return
    if status == EXPIRED:
        raise PledgeError("pledge_expired", f"the registration has expired; it cannot be {_verb(action)}")
    if status in TERMINAL:
        raise PledgeError("pledge_closed", f"the registration is {status}; it cannot be {_verb(action)}")
    if status == FILED:
        raise PledgeError("pledge_not_confirmed",
                          f"the pledgor has not confirmed the registration yet; it cannot be {_verb(action)}")
    if status == ENFORCING:
        raise PledgeError("pledge_in_enforcement",
                          f"the registration is being enforced; it cannot be {_verb(action)}")
    raise PledgeError("pledge_not_filed" if action in ("confirm", "decline", "withdraw") else "invalid_state",
                      f"the registration is {status}; it cannot be {_verb(action)}")


def _verb(action: str) -> str:
    return {"confirm": "confirmed", "decline": "declined", "withdraw": "withdrawn", "amend": "amended",
            "extend": "extended", "top_up": "topped up", "partial_release": "partially released",
            "release": "released", "enforce": "enforced", "accept_sale": "sold", "cancel_sale": "cancelled",
            "proceeds": "paid out", "file_claim": "given a junior claim", "expire": "expired"}[action]


def apply(state: dict[str, Any], event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """The state after one event; refuses an event that may not follow the current status."""
    rule = TRANSITIONS.get(event_type)
    if rule is None:
        raise PledgeError("unknown_event", f"unknown pledge event {event_type!r}", 500)
    allowed, to = rule
    status = state.get("status", "")
    if status not in allowed:
        raise PledgeError("invalid_transition", f"{event_type} cannot follow {status or 'nothing'}", 409)
    new = {**state, **data.get("set", {})}
    if to is not None:
        new["status"] = to
    return new


def project(events: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Fold (type, data) events, oldest first, into the registration's current state."""
    state: dict[str, Any] = {}
    for event_type, data in events:
        state = apply(state, event_type, data)
    return state
