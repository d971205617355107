"""Domain errors with machine codes; the API renders them as RFC 9457 problem details."""

from __future__ import annotations

# Ledger refusals become domain errors in one place, in the caller's units: exchange/refusals.py.


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

