"""A ledger refusal as the caller hears it: in the caller's units, naming the caller's own accounts only.

The ledger (ledger/state.py) refuses in its own language -- "account 83 has 6625000 available of CNY,
needs 10500000" -- and keeps the numbers as facts beside its message. This is the one place that turns a
`Rejection` into a problem for a caller (its status is its code's, exchange/core/refusals.py):

- the machine code stays the ledger's, except that a counterparty's shortfall in a deal is
  `counterparty_unfunded`;
- an account the caller owns (`own`) is "your account", with its figures in the instrument's unit or CNY;
- an account of anyone else is never named, nor its balance, serials or figures: the refusal only says
  what failed ("the counterparty cannot fund this deal now");
- oversight (`own=OVERSIGHT`: operators, auditors -- they read every balance anyway) hears the account id
  and its figures, in units too.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from exchange.core.errors import DomainError
from exchange.core.refusals import Refusal
from exchange.core.units import CNY_DECIMALS, quantity
from ledger.state import Rejection

OVERSIGHT = None  # `own=OVERSIGHT`: every account may be named, with its figures


def _amount(facts: dict[str, Any], key: str) -> str:
    instrument = facts["instrument"]
    decimals = CNY_DECIMALS if instrument == "CNY" else facts["decimals"]
    return f"{quantity(facts[key], decimals)} {instrument}"


def _told(code: str, facts: dict[str, Any], whose: str, message: str) -> str:
    """The refusal about an account the caller may hear about, in units."""
    if code == "insufficient_available" and facts.get("freeze"):
        return f"{whose} has {_amount(facts, 'available')} that can be frozen, needs {_amount(facts, 'needed')}"
    if code == "insufficient_available":
        return f"{whose} has {_amount(facts, 'available')} available, needs {_amount(facts, 'needed')}"
    if code == "serials_not_available":
        s, e = facts["serials"]
        return f"serials {s}-{e} of {facts['instrument']} are not free in {whose}"
    if code == "account_instrument_mismatch":
        return f"{whose} cannot hold {facts['instrument']}"
    if code == "amount_exceeds_hold":
        return f"the hold has {_amount(facts, 'available')} pending, not {_amount(facts, 'needed')}"
    if code == "pledged":
        asked, free = facts["needed"], facts["available"]
        short = {**facts, "short": asked - free}
        return (f"{_amount(short, 'short')} of the units asked are pledged: at most {_amount(facts, 'available')} "
                "can be deducted before the pledge is released or enforced")
    return message


# What anyone else is told about another participant's account: what failed, no id, no figures.
_UNNAMED = {
    "insufficient_available": "the other party's account does not have that much available now",
    "serials_not_available": "those serials are not free in the other party's account",
    "account_instrument_mismatch": "the other party's account cannot hold this instrument",
    "amount_exceeds_hold": "the hold does not cover that much",
    "pledged": "some of those units are pledged: they cannot be deducted before the pledge is released or enforced",
    "unknown_account": "the account does not exist",
}
_COUNTERPARTY = {
    "CNY": "the counterparty cannot fund this deal now",
    None: "the counterparty cannot deliver these units now",
}


def refused(rej: Rejection, own: Collection[int] | None = (), *, counterparty: bool = False) -> DomainError:
    """The problem a caller gets for `rej`. `own`: the caller's accounts (OVERSIGHT: all of them);
    `counterparty`: the other accounts are the other side of the caller's deal."""
    facts = rej.facts
    account = facts.get("account")
    if account is None:  # nothing of anyone's: the ledger's message says no account and no base units
        return DomainError(rej.code, rej.message)
    if own is OVERSIGHT or account in own:
        whose = "your account" if own is not OVERSIGHT and account in own else f"account {account}"
        return DomainError(rej.code, _told(rej.code, facts, whose, rej.message))
    if counterparty and rej.code in ("insufficient_available", "serials_not_available"):
        cash = facts.get("instrument") == "CNY"
        return DomainError(Refusal.COUNTERPARTY_UNFUNDED, _COUNTERPARTY["CNY" if cash else None])
    if rej.code == "insufficient_available" and facts.get("freeze"):  # a court freezing a holder's units
        return DomainError(rej.code, "the holder does not have that many units that can be frozen")
    return DomainError(rej.code, _UNNAMED.get(rej.code, "the ledger refused this for another party's account"))
