"""Payout of enforcement proceeds, in fen, in priority order. Every fen goes to exactly one party.

Order (民法典 §§ 414, 436–438 applied to one pledged lot):
1. enforcement costs (`fee`), if any;
2. the pledgee (the lock holder) up to what it is owed, capped at the secured amount;
3. registered junior claimants on the same lot, one after another by registration number, each up
   to its claim;
4. unregistered claimants after all registered ones, pro rata to their claims (§414 (3)); shares are
   rounded down and the leftover fen go one by one in filing order (largest-remainder method), so
   the sum is exact;
5. the owner (pledgor) takes the rest.

Proceeds may arrive in parts (an exchange sale filled over several trades): `increment` pays the
difference between the waterfall of the new total and that of the previous total. The waterfall is
monotone in the proceeds, so each increment is non-negative and the parts sum to the whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pledges.errors import PledgeError
from pledges.priority import order


@dataclass(frozen=True, slots=True)
class Claim:
    party: str  # a stable key for the payee, e.g. "claim:7" or "participant:3"
    amount: int  # what it is owed, fen
    registration_no: int | None = None  # None: unregistered
    filed_no: int = 0  # filing order, the tie-break among unregistered claims


@dataclass(frozen=True, slots=True)
class Payout:
    party: str
    role: str  # fee | pledgee | junior | owner
    claimed: int
    paid: int


def distribute(proceeds: int, *, fee: int, pledgee: Claim, juniors: Sequence[Claim], owner: str,
               fee_party: str = "fees") -> list[Payout]:
    if proceeds < 0 or fee < 0 or pledgee.amount < 0 or any(j.amount <= 0 for j in juniors):
        raise PledgeError("invalid_amount", "proceeds and claims are non-negative amounts in fen", 422)
    left = proceeds
    out: list[Payout] = []

    def pay(party: str, role: str, claimed: int) -> None:
        nonlocal left
        paid = min(claimed, left)
        left -= paid
        out.append(Payout(party, role, claimed, paid))

    if fee:
        pay(fee_party, "fee", fee)
    pay(pledgee.party, "pledgee", pledgee.amount)
    ranked = order(juniors)
    registered = [j for j in ranked if j.registration_no is not None]
    unregistered = [j for j in ranked if j.registration_no is None]
    for j in registered:
        pay(j.party, "junior", j.amount)
    if unregistered:
        owed = sum(j.amount for j in unregistered)
        if left >= owed:
            for j in unregistered:
                pay(j.party, "junior", j.amount)
        else:
            pool = left
            shares = [pool * j.amount // owed for j in unregistered]
            rest = pool - sum(shares)
            # Largest remainder first, then filing order: deterministic to the fen.
            by_remainder = sorted(range(len(unregistered)),
                                  key=lambda i: (-(pool * unregistered[i].amount % owed), i))
            for i in by_remainder[:rest]:
                shares[i] += 1
            for j, share in zip(unregistered, shares, strict=True):
                out.append(Payout(j.party, "junior", j.amount, share))
            left = 0
    out.append(Payout(owner, "owner", left, left))
    if sum(p.paid for p in out) != proceeds:
        raise AssertionError("waterfall does not add up")  # a bug, never a client error
    return out


def increment(already_paid: dict[str, int], new_total: int, *, fee: int, pledgee: Claim,
              juniors: Sequence[Claim], owner: str, fee_party: str = "fees") -> list[Payout]:
    """What to pay now when the proceeds received so far grow to `new_total`.

    `already_paid` is what each party got from earlier parts. Normally each part pays the waterfall
    of the new total minus what was paid. Rounding of the pro-rata tier is not monotone (the Alabama
    paradox), so a party may be a fen ahead of its new target: it keeps it, and the same fen are
    withheld from the lowest-ranking parties of this part (owner first). Parts never claw back.
    """
    target = distribute(new_total, fee=fee, pledgee=pledgee, juniors=juniors, owner=owner, fee_party=fee_party)
    paid_before = sum(already_paid.values())
    if new_total < paid_before:
        raise PledgeError("invalid_amount", "proceeds only grow", 422)
    deltas = [t.paid - already_paid.get(t.party, 0) for t in target]
    excess = -sum(d for d in deltas if d < 0)
    deltas = [max(d, 0) for d in deltas]
    for i in reversed(range(len(deltas))):
        if not excess:
            break
        cut = min(excess, deltas[i])
        deltas[i] -= cut
        excess -= cut
    out = [Payout(t.party, t.role, t.claimed, d) for t, d in zip(target, deltas, strict=True)]
    if sum(p.paid for p in out) != new_total - paid_before:
        raise AssertionError("increment does not add up")
    return out
