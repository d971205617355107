"""Domain errors with machine codes; the API renders them as RFC 9457 problem details."""

from __future__ import annotations

from ledger.state import Rejection

# Ledger refusal codes that mean "your input is malformed" rather than "the state says no".
VALIDATION_CODES = frozenset({
    "invalid_amount", "invalid_serials", "serials_amount_mismatch", "invalid_purpose", "invalid_hold_kind",
    "invalid_instrument_code", "invalid_instrument_kind", "invalid_decimals", "invalid_expiry",
    "serials_not_applicable", "same_account",
})
NOT_FOUND_CODES = frozenset({"unknown_account", "unknown_instrument", "unknown_hold"})


class DomainError(Exception):
    def __init__(self, code: str, message: str, status: int = 409, **extra: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.extra = extra


class NotFound(DomainError):
    def __init__(self, what: str, ident: object) -> None:
        super().__init__("not_found", f"{what} {ident} not found", 404)


class Forbidden(DomainError):
    def __init__(self, message: str = "your role may not do this") -> None:
        super().__init__("forbidden", message, 403)


class Invalid(DomainError):
    def __init__(self, code: str, message: str, **extra: object) -> None:
        super().__init__(code, message, 422, **extra)


def from_rejection(rej: Rejection) -> DomainError:
    if rej.code in VALIDATION_CODES:
        return DomainError(rej.code, rej.message, 422)
    if rej.code in NOT_FOUND_CODES:
        return DomainError(rej.code, rej.message, 404)
    return DomainError(rej.code, rej.message, 409)
