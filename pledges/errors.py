"""Refusals of the pledge rules, with the machine code and HTTP status the API shows."""

from __future__ import annotations

# The pledge rules' closed set of refusal codes: every `PledgeError` carries one (tests/test_refusals.py
# walks the source). The exchange's enum (exchange/core/refusals.py) has each, and decides its status.
CODES = frozenset({
    "invalid_scope", "invalid_claim", "invalid_amount", "invalid_thresholds", "invalid_haircut", "invalid_serials",
    "serials_not_pledged", "quantity_exceeds_pledge", "insufficient_available", "pledge_expired", "pledge_closed",
    "pledge_not_confirmed", "pledge_in_enforcement", "pledge_not_filed", "invalid_state", "invalid_transition",
    "cure_period_running", "no_default", "valuation_out_of_range", "price_below_floor", "auction_required",
    "notice_period_running", "mark_reason_required", "mark_reason_meaningless", "reserve_below_floor",
    "deposit_above_cap",
})


class PledgeError(Exception):
    """A request the pledge or freeze rules refuse. `exchange` turns it into a DomainError, which checks
    `code` against the closed set and `status` (a restatement) against the code's."""

    def __init__(self, code: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
