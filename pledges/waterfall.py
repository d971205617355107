"""Payout of enforcement proceeds, in fen, in priority order. Every fen goes to exactly one party.

Order (民法典 §§ 389, 414, 436–438, 561 applied to one pledged lot):
1. enforcement costs (`fee`), if any;
2. the pledgee (the lock holder) for what the secured scope covers (`pledges.scope`), component by
   component in the order given (realisation costs, custody costs, interest, penalty, damages,
   principal: §561); the unsecured rest of its claim is paid from nothing here;
3. registered junior claimants on the same lot, one after another by registration number, each up
   to its claim;
4. unregistered claimants after all registered ones, pro rata to their claims (§414 (3)); shares are
   rounded down and the leftover fen go one by one in filing order (largest-remainder method), so
   the sum is exact;
5. the pledgor's surplus: where a court froze part of the lot after the pledge (its freeze ranks
   behind the pledge, 民诉法解释 §157), the freeze extends to the surplus that replaces the frozen
   units -- each court takes the share of its frozen units in the lot (`courts`, `lot`), the owner
   the rest (largest remainder again, so the sum is exact).

Proceeds may arrive in parts (an exchange sale filled over several trades): `increment` pays the
difference between the waterfall of the new total and that of the previous total. The waterfall is
monotone in the proceeds except for rounding of the pro-rata tiers, so each increment is
non-negative (a fen ahead is kept, never clawed back) and the parts sum to the whole.
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
    component: str | None = None  # a part of the pledgee's claim (pledges.scope), e.g. "interest"


@dataclass(frozen=True, slots=True)
class Payout:
    party: str
    role: str  # fee | pledgee | junior | court | owner
    claimed: int
    paid: int
    component: str | None = None

    @property
    def key(self) -> str:
        """What `increment` keeps paid amounts by: the party, and the component if any."""
        return self.party if self.component is None else f"{self.party}/{self.component}"


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights`, rounded down, the leftover units one by one to the
    largest remainders (earlier entries first on ties): exact and deterministic."""
    if total < 0 or any(w < 0 for w in weights):
        raise PledgeError("invalid_amount", "amounts and weights are non-negative", 422)
    whole = sum(weights)
    if whole == 0:
        return [0 for _ in weights]
    shares = [total * w // whole for w in weights]
    rest = total - sum(shares)
    for i in sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))[:rest]:
        shares[i] += 1
    return shares


def distribute(proceeds: int, *, fee: int, pledgee: Claim | Sequence[Claim], juniors: Sequence[Claim], owner: str,
               fee_party: str = "fees", courts: Sequence[tuple[str, int]] = (), lot: int = 0) -> list[Payout]:
    """`pledgee` is one claim or its components in payment order; `courts` are (party, frozen units
    of the lot) and `lot` the lot's units (see the module text)."""
    parts = [pledgee] if isinstance(pledgee, Claim) else list(pledgee)
    if (proceeds < 0 or fee < 0 or any(x.amount < 0 for x in parts) or any(j.amount <= 0 for j in juniors)
            or any(u < 0 for _, u in courts) or sum(u for _, u in courts) > lot):
        raise PledgeError("invalid_amount", "proceeds and claims are non-negative amounts in fen", 422)
    left = proceeds
    out: list[Payout] = []

    def pay(party: str, role: str, claimed: int, component: str | None = None) -> None:
        nonlocal left
        paid = min(claimed, left)
        left -= paid
        out.append(Payout(party, role, claimed, paid, component))

    if fee:
        pay(fee_party, "fee", fee)
    for x in parts:
        pay(x.party, "pledgee", x.amount, x.component)
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
            # Largest remainder first, then filing order: deterministic to the fen.
            for j, share in zip(unregistered, apportion(left, [j.amount for j in unregistered]), strict=True):
                out.append(Payout(j.party, "junior", j.amount, share))
            left = 0
    if courts:
        *court_shares, left = apportion(left, [u for _, u in courts] + [lot - sum(u for _, u in courts)])
        for (party, _), share in zip(courts, court_shares, strict=True):
            out.append(Payout(party, "court", share, share))
    out.append(Payout(owner, "owner", left, left))
    if sum(p.paid for p in out) != proceeds:
        raise AssertionError("waterfall does not add up")  # a bug, never a client error
    return out


def increment(already_paid: dict[str, int], new_total: int, *, fee: int, pledgee: Claim | Sequence[Claim],
              juniors: Sequence[Claim], owner: str, fee_party: str = "fees", courts: Sequence[tuple[str, int]] = (),
              lot: int = 0) -> list[Payout]:
    """What to pay now when the proceeds received so far grow to `new_total`.

    `already_paid` is what each payout key (`Payout.key`) got from earlier parts. Normally each part
    pays the waterfall of the new total minus what was paid. Rounding of the pro-rata tiers is not
    monotone (the Alabama paradox), and a court whose freeze ends mid-sale leaves its share to the
    owner, so a party may be ahead of its new target: it keeps it, and the same fen are withheld from
    the lowest-ranking parties of this part (owner first). Parts never claw back.
    """
    target = distribute(new_total, fee=fee, pledgee=pledgee, juniors=juniors, owner=owner, fee_party=fee_party,
                        courts=courts, lot=lot)
    paid_before = sum(already_paid.values())
    if new_total < paid_before:
        raise PledgeError("invalid_amount", "proceeds only grow", 422)
    deltas = [t.paid - already_paid.get(t.key, 0) for t in target]
    excess = -sum(d for d in deltas if d < 0)
    deltas = [max(d, 0) for d in deltas]
    for i in reversed(range(len(deltas))):
        if not excess:
            break
        cut = min(excess, deltas[i])
        deltas[i] -= cut
        excess -= cut
    out = [Payout(t.party, t.role, t.claimed, d, t.component) for t, d in zip(target, deltas, strict=True)]
    if sum(p.paid for p in out) != new_total - paid_before:
        raise AssertionError("increment does not add up")
    return out
