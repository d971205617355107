"""Ledger commands: what callers ask the writer to do. Pure data, validated by `ledger.state`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# An inclusive serial range [start, end] inside one instrument's serial space.
Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class DefineInstrument:
    code: str
    kind: str
    decimals: int


@dataclass(frozen=True, slots=True)
class OpenAccount:
    owner: str
    kind: str


@dataclass(frozen=True, slots=True)
class IssueBatch:
    """Create a batch's serial range and credit it to `account`, debiting the `source` issuance account."""

    source: int
    account: int
    instrument: str
    quantity: int
    reference: str


@dataclass(frozen=True, slots=True)
class Transfer:
    debit: int
    credit: int
    instrument: str
    amount: int
    serials: tuple[Range, ...] = ()


@dataclass(frozen=True, slots=True)
class CreateHold:
    """A pending transfer: counts against the debit account's available balance at once."""

    kind: str
    debit: int
    credit: int
    instrument: str
    amount: int
    serials: tuple[Range, ...] = ()
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class PostHold:
    """Move `amount` of a hold (None: all that is pending). The rest is released, unless
    `keep_remainder`: then the hold stays pending for the rest (partial fills of a resting order)."""

    hold: int
    amount: int | None = None
    keep_remainder: bool = False


@dataclass(frozen=True, slots=True)
class AmendHold:
    """Change a pending hold's expiry (a pledge extended) without releasing it: the units stay
    encumbered throughout, even under a freeze that would refuse a new hold."""

    hold: int
    expires_at: int | None


@dataclass(frozen=True, slots=True)
class TrimHold:
    """Release what a pending hold holds above `keep` and leave `keep` pending (an order that needs less than
    it holds: filled at a better price, or reduced). Nothing is released if it holds `keep` or less; trimmed
    to nothing, the hold is resolved as voided."""

    hold: int
    keep: int


@dataclass(frozen=True, slots=True)
class VoidHold:
    hold: int


@dataclass(frozen=True, slots=True)
class ExpireHold:
    hold: int


@dataclass(frozen=True, slots=True)
class Retire:
    account: int
    sink: int
    instrument: str
    amount: int
    purpose: str
    beneficiary: str
    serials: tuple[Range, ...] = ()


@dataclass(frozen=True, slots=True)
class RegisterSigningKey:
    """Publish a checkpoint signing key in the log (first key and every rotation); C2SP verifier key string."""

    verifier_key: str


# What a leg of an `Event` may be: movements of value. Creating accounts, instruments, batches or keys, and
# retirements (listed and certified by their own entries), are entries of their own.
Leg = Transfer | CreateHold | PostHold | TrimHold | AmendHold | VoidHold | ExpireHold


@dataclass(frozen=True, slots=True)
class Event:
    """One business event (a trade's delivery versus payment, a pledge relock): its legs apply in order, all
    or none, as ONE ledger entry (encoding version 2), like the lines of one journal entry. At most one leg
    creates a hold; its id is the entry's seq."""

    kind: str
    legs: tuple[Leg, ...]
    # Written as a version-3 entry: its accounts and holds appear as commitments (ledger/blinding.py), so a
    # party's receipt does not name the other side of an anonymous trade. Not in the repr, so not in the
    # request's fingerprint (ledger.writer.fingerprint): an event's fingerprint stays what it was before
    # blinding existed, and a trade settled unblinded before an upgrade and re-settled after it is the same
    # request (its stored entry answers), not a conflict that would stop the market.
    blinded: bool = field(default=False, repr=False)
    # Written as a version-4 entry (implies `blinded`), whose legs' amounts are commitments too (a buy's hold rest and
    # release tell its limit and size). Not in the repr either, for the same reason.
    blind_amounts: bool = field(default=False, repr=False)


Command = (
    DefineInstrument
    | OpenAccount
    | IssueBatch
    | Transfer
    | CreateHold
    | PostHold
    | TrimHold
    | AmendHold
    | VoidHold
    | ExpireHold
    | Retire
    | RegisterSigningKey
    | Event
)


# Meta keys that record how a request arrived (exchange/core/provenance.py), not what it asks: the writer's
# idempotency fingerprint leaves them out, so a retry re-signed with a fresh nonce is still a retry.
PROVENANCE_META = ("signed_instruction", "operator_action")


@dataclass(frozen=True, slots=True)
class Request:
    """A command with who asked, the idempotency key and free metadata committed by hash."""

    actor: str
    command: Command
    client_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # Several requests sharing a `link` group commit or fail together (delivery-versus-payment).
    link: int | None = None
