"""Refusals of the pledge rules, with the machine code and HTTP status the API shows."""

from __future__ import annotations


class PledgeError(Exception):
    """A request the pledge or freeze rules refuse. `exchange` turns it into a DomainError."""

    def __init__(self, code: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
