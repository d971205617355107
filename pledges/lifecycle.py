"""The life of a pledge registration: its events, which state each may follow, and the projection.

A registration's current state is a fold over its events (`project`); the `pledges` row is that fold
kept up to date in the same transaction as each event, and `project(history)` must reproduce it.
Every event carries in `data["set"]` the fields it changes, so the fold needs no other input.

    filed ──confirm──> active ──release──> released            (terminal)
      │                  │ ├──expire───> expired               (terminal; also from enforcing, see below)
      ├─decline─> declined │ ├──amend / extend / top_up / partially_release / revalue / declare default ──> active
      ├─withdraw─> withdrawn └──(on a default) propose sale / transfer / start exchange sale──> enforcing
      └─expire (not confirmed in time: it lapses, nothing was locked)─> expired
                                        enforcing ──cancel──> active     (nothing sold yet: the lot is locked again)
                                        enforcing ──accept sale / lot sold out / claims paid──> enforced (terminal)
                                        enforcing ──expire──> expired    (no sale running: unsold units go back)
    (a ranked claim promoted on release of the senior pledge starts life as `promoted` -> active)

An exchange sale (method `exchange`) holds the lot in the pledgee's escrow: `sale_listed` opens a
listing or auction of (part of) it on the market, `proceeds_distributed` pays each settlement by
the waterfall, `sale_ended` notes a listing or auction that ended, `units_returned` gives unsold
units back (to the pledgor, or under the lock again on cancel).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
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
    "expired": (frozenset({FILED, ACTIVE, ENFORCING}), EXPIRED),
    "default_declared": (frozenset({ACTIVE}), None),
    "enforcement_consented": (frozenset({ACTIVE}), None),
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
    "sale_listed": (frozenset({ENFORCING, ENFORCED, EXPIRED}), None),  # recorded late after a crash, too
    "proceeds_distributed": (frozenset({ENFORCING}), None),
    "sale_ended": (frozenset({ENFORCING, ENFORCED, EXPIRED}), None),
    "units_returned": (frozenset({ENFORCING}), None),
    "exchange_sale_cancelled": (frozenset({ENFORCING}), ACTIVE),
    "enforced": (frozenset({ACTIVE, ENFORCING}), ENFORCED),
}

# The events a bank hears about by webhook (the stream carries all of them).
NOTIFY = frozenset({
    "confirmed", "declined", "extended", "topped_up", "partially_released", "released", "expired", "promoted",
    "warning", "margin_call", "liquidation_call", "cured", "deadline_warning", "freeze_noticed", "freeze_lifted",
    "claim_filed", "claim_registered", "claim_released", "sale_cancelled", "enforced", "proceeds_distributed",
    "default_declared", "enforcement_consented", "exchange_sale_started", "sale_proposed", "sale_listed",
    "sale_ended", "units_returned",
    "exchange_sale_cancelled",
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
    "declare_default": frozenset({ACTIVE}),
    "consent": frozenset({ACTIVE}),
    "start_sale": frozenset({ENFORCING}),
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
            "proceeds": "paid out", "file_claim": "given a junior claim", "expire": "expired",
            "declare_default": "declared in default", "consent": "consented to enforcement",
            "start_sale": "put up for sale"}[action]


def apply(state: dict[str, Any], event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """The state after one event; refuses an event that may not follow the current status."""
    rule = TRANSITIONS.get(event_type)
    if rule is None:
        # Events are written by this package's own rules: an unknown one is a bug, not a refusal.
        raise AssertionError(f"unknown pledge event {event_type!r}")
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


def default_ground(state: dict[str, Any], at: datetime) -> dict[str, Any]:
    """What entitles the pledgee to enforce (民法典 §436: the debtor fails to pay a due debt, or an agreed
    event occurs); refuses when nothing does. In order of strength:

    - `declared_default`: the bank declared the loan in default, naming its notice (违约通知) and date;
    - `liquidation`: the last valuation put the collateral below the liquidation line (agreed event), and
      the cure it gave (until the next open, DESIGN: "a cure before the next open") has passed;
    - `cure_deadline_missed`: a margin call's cure deadline, set by envx, passed without a cure.

    A margin call or a liquidation level whose cure deadline is still ahead, a warning or an ok level is no
    default.
    """
    declared = state.get("declared_default")
    if declared:
        return {"type": "declared_default", **declared}
    level = state.get("margin_level") or "ok"
    deadline = state.get("cure_deadline")
    if level == "liquidation" and not (deadline and at < _instant(deadline)):
        return {"type": "liquidation", "ratio_bps": state.get("last_ratio_bps"),
                "valued_on": state.get("last_valued_on")}
    if level in ("margin_call", "liquidation") and deadline:
        due = _instant(deadline)
        if at >= due:
            return {"type": "cure_deadline_missed", "cure_deadline": due.isoformat()}
        # The deadline as a marked time (UTC microseconds): the application writes it in its time convention.
        marked = (due - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        what = level.replace("_", " ")
        raise PledgeError("cure_period_running", f"the {what}'s cure deadline {{ts:{marked}}} has not passed; "
                          "the pledgor may still cure it, so there is no default to enforce yet")
    raise PledgeError("no_default", f"no default is on record (margin level {level}, no declared default): "
                      "enforcement needs a liquidation level, a missed cure deadline or the bank's declaration "
                      "of the loan's default (POST .../default with the notice's reference and date)")


def _instant(value: datetime | str) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value
