"""A ledger refusal as a caller hears it (exchange/core/refusal_text.py): its own account in its units, anyone
else's never named nor its figures (issue #14: "account 83 has 6625000 available of CNY, needs 10500000")."""

from __future__ import annotations

from exchange.core.refusal_text import OVERSIGHT, refused
from ledger.state import Rejection


def _short(account: int = 83, instrument: str = "CNY", decimals: int = 2, **more: object) -> Rejection:
    return Rejection("insufficient_available", f"account {account} has 6625000 available of {instrument}, "
                     "needs 10500000", account=account, instrument=instrument, decimals=decimals,
                     available=6_625_000, needed=10_500_000, **more)


def test_the_callers_own_account_in_its_units() -> None:
    e = refused(_short(), own=(83,))
    assert (e.code, e.status, e.message) == (
        "insufficient_available", 409, "your account has 66250.00 CNY available, needs 105000.00 CNY")
    e = refused(_short(instrument="PW-NOX-NX", decimals=3), own=(83,))
    assert e.message == "your account has 6625.000 PW-NOX-NX available, needs 10500.000 PW-NOX-NX"


def test_another_participants_account_is_never_named_nor_its_figures() -> None:
    for rej, kw in ((_short(), {}), (_short(), {"counterparty": True}),
                    (_short(instrument="FCT-SM", decimals=0), {"counterparty": True}),
                    (_short(freeze=True), {}),
                    (Rejection("serials_not_available", "serials 5-9 of FCT-SM are not free in account 83",
                               account=83, instrument="FCT-SM", serials=(5, 9)), {})):
        e = refused(rej, own=(12, 13), **kw)
        for leak in ("83", "6625", "10500", "66250", "105000", "5-9"):
            assert leak not in e.message, (e.message, leak)
    assert refused(_short(), own=(12,), counterparty=True).code == "counterparty_unfunded"
    assert refused(_short(), own=(12,), counterparty=True).message == "the counterparty cannot fund this deal now"
    assert refused(_short(instrument="FCT-SM", decimals=0), own=(), counterparty=True).message == \
        "the counterparty cannot deliver these units now"
    assert refused(_short(), own=()).code == "insufficient_available"  # no deal: the code stays the ledger's


def test_oversight_hears_the_account_in_units_and_refusals_without_accounts_pass() -> None:
    assert refused(_short(), own=OVERSIGHT).message == "account 83 has 66250.00 CNY available, needs 105000.00 CNY"
    e = refused(Rejection("hold_already_resolved", "hold 7 is already posted"))
    assert (e.code, e.status, e.message) == ("hold_already_resolved", 409, "hold 7 is already posted")
    assert refused(Rejection("invalid_amount", "amount must be positive")).status == 422
