"""Domain errors with machine codes; the API renders them as RFC 9457 problem details.

A code is a member of the closed set `exchange.core.refusals.Refusal`, which also gives its HTTP
status; a code outside it, or a status at a raise site that is not the code's, raises `UnknownRefusal`
(a bug, never answered as a refusal: see the policy in exchange/core/refusals.py).
"""

from __future__ import annotations

from exchange.core.refusals import Refusal, UnknownRefusal

__all__ = ["DomainError", "Forbidden", "Invalid", "NotFound", "Refusal", "UnknownRefusal"]

# Ledger refusals become domain errors in one place, in the caller's units: exchange/core/refusal_text.py.


class DomainError(Exception):
    def __init__(self, code: Refusal | str, message: str, status: int | None = None, **extra: object) -> None:
        # `status` only restates the code's (raise sites written before the closed set); it must agree.
        refusal = Refusal.of(code, status)
        super().__init__(message)
        self.code = refusal
        self.message = message
        self.status = refusal.status
        self.extra = extra


class NotFound(DomainError):
    def __init__(self, what: str, ident: object) -> None:
        super().__init__(Refusal.NOT_FOUND, f"{what} {ident} not found")


class Forbidden(DomainError):
    def __init__(self, message: str = "your role may not do this") -> None:
        super().__init__(Refusal.FORBIDDEN, message)


class Invalid(DomainError):
    """A malformed request: the code must be one answered 422."""

    def __init__(self, code: Refusal | str, message: str, **extra: object) -> None:
        super().__init__(code, message, 422, **extra)
