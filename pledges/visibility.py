"""Who may see what of a pledge registration: the rules, pure (no I/O, no clock).

Roles, decided per caller and registration:

- PARTY: the pledgee bank, the pledgor, oversight (operators, auditors): the whole registration.
- JUNIOR: a creditor whose ranked claim on the lot the pledgor has *confirmed* (registered, or paid
  out in an enforcement). A lender doing due diligence needs to know the lot is encumbered, by whom,
  at which rank, which quantity and serials, its term and its status; not the senior's loan contract,
  secured amount, valuation, thresholds, enforcement terms or anybody else's claims. It sees the lot
  (`LOT_FIELDS`) and its own claims, and of the history the lot's changes and its own claims' events.
- BUYER: the buyer a negotiated enforcement sale is offered to: the lot and the sale terms it accepts
  (method, price, proceeds), nothing of the loans or the distribution.
- None: everyone else, including a bank whose claim is only *filed*: an unconfirmed filing proves
  nothing and grants no visibility. The answer to filing a claim is the claim alone; its later fate
  (registered, lapsed, moved, promoted) is told to its claimant as events about the claim.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

PARTY, JUNIOR, BUYER = "party", "junior", "buyer"
OVERSIGHT = frozenset({"operator", "auditor"})
# Claim statuses that let their claimant see the senior lot.
SEEING_CLAIMS = frozenset({"registered", "paid"})

LOT_FIELDS = (
    "id", "number", "status", "pledgee", "pledgor", "instrument", "quantity", "serials", "blocks",
    "registration_no", "registered_at", "priority", "term_start", "term_end", "expires_at", "references",
    "promoted_from_claim", "created_at", "updated_at",
)
SALE_FIELDS = ("method", "price", "proceeds", "buyer_id", "declared_at", "completed_at")

# Events that change the lot itself (what a junior creditor's security rests on).
LOT_EVENTS = frozenset({
    "confirmed", "promoted", "extended", "topped_up", "partially_released", "released", "expired", "enforced",
    "exchange_sale_started", "sale_proposed", "sale_cancelled", "freeze_noticed", "freeze_lifted",
    "sale_listed", "sale_ended", "units_returned", "exchange_sale_cancelled", "proceeds_distributed",
})
# Events whose details list the payouts: a junior sees its own lines only.
PAYOUT_EVENTS = frozenset({"enforced", "proceeds_distributed"})
# Details of a lot event a junior or buyer may see (the market's terms of a sale, what came back).
LOT_DETAILS = frozenset({"market_id", "order_id", "kind", "price", "quantity", "serials", "trade_id", "filled",
                         "unsold", "returned", "to"})
# The lot fields those events may change; everything else in an event is the parties' business.
LOT_CHANGES = frozenset({"quantity", "serials", "term_end", "expires_at", "registration_no", "registered_at"})
CLAIM_EVENTS = frozenset({"claim_filed", "claim_registered", "claim_released"})
# Event details that list claim ids: a claimant sees its own among them.
CLAIM_LISTS = ("claims_lapsed", "claims_moved")


class Lot(Protocol):
    """What the rules read of a registration (exchange.pledging.models.Pledge has it)."""

    @property
    def pledgee_id(self) -> int: ...
    @property
    def pledgor_id(self) -> int: ...
    @property
    def enforcement(self) -> Mapping[str, Any] | None: ...


class RankedClaim(Protocol):
    """What the rules read of a junior claim (exchange.pledging.models.Claim has it)."""

    @property
    def claimant_id(self) -> int: ...
    @property
    def status(self) -> str: ...


def role(viewer_id: int, viewer_kind: str, pledge: Lot, viewer_claims: Iterable[RankedClaim]) -> str | None:
    """The viewer's role on `pledge`; `viewer_claims` are the viewer's own claims on its lot."""
    if viewer_kind in OVERSIGHT or viewer_id in (pledge.pledgee_id, pledge.pledgor_id):
        return PARTY
    if any(cl.status in SEEING_CLAIMS for cl in viewer_claims):
        return JUNIOR
    if (pledge.enforcement or {}).get("buyer_id") == viewer_id:
        return BUYER
    return None


def claim_visible(viewer_id: int, viewer_kind: str, pledge: Lot, claim: RankedClaim) -> bool:
    """A claim is its claimant's, and the business of the lot's pledgee and pledgor (and oversight)."""
    return viewer_id == claim.claimant_id or role(viewer_id, viewer_kind, pledge, ()) == PARTY


def pledge_view(full: Mapping[str, Any], who: str, own_claims: set[int]) -> dict[str, Any]:
    """What a viewer with role `who` sees of the full view of a registration (exchange.pledging.views.view_of)."""
    if who == PARTY:
        return dict(full)
    out = {k: full[k] for k in LOT_FIELDS if k in full}
    enforcement = full.get("enforcement") or None
    if who == JUNIOR:
        out["claims"] = [cl for cl in full.get("claims", []) if cl["id"] in own_claims]
        if enforcement is not None:
            out["enforcement"] = {"method": enforcement.get("method"), "completed_at": enforcement.get("completed_at"),
                                  "distribution": own_lines(enforcement, out["claims"])}
        else:
            out["enforcement"] = None
    else:  # BUYER
        out["claims"] = []
        out["enforcement"] = None if enforcement is None else {k: enforcement.get(k) for k in SALE_FIELDS}
    return out


def own_lines(enforcement: Mapping[str, Any], own: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A junior's own lines of an enforcement's distribution (`own`: its claims as the answer shows them). A
    sale on the exchange pays out trade by trade (each `proceeds_distributed` event has its lines) and keeps
    what each payee was paid in all in `paid`: the junior's line is its claim's total there."""
    mine = {f"claim:{cl['id']}": cl for cl in own}
    if enforcement.get("method") != "exchange":
        return [dict(d) for d in enforcement.get("distribution") or [] if d.get("party") in mine]
    paid = enforcement.get("paid") or {}
    return [{"party": party, "role": "junior", "component": None, "participant_id": cl["claimant_id"],
             "claimed": cl["amount"], "paid": paid[party]} for party, cl in mine.items() if party in paid]


def event_view(ev: Mapping[str, Any], who: str | None, own_claims: set[int]) -> dict[str, Any] | None:
    """What a viewer sees of one event (repository.event_view shape), or None for nothing at all."""
    if who == PARTY:
        return dict(ev)
    details = ev.get("details") or {}
    if ev["type"] in CLAIM_EVENTS:
        return dict(ev) if details.get("claim") in own_claims else None
    lists = {k: [c for c in details.get(k, []) if c in own_claims] for k in CLAIM_LISTS}
    mine: dict[str, Any] = {k: v for k, v in lists.items() if v}
    if details.get("promoted_claim") in own_claims:
        mine.update(promoted_claim=details["promoted_claim"], promoted_to=details.get("promoted_to"))
    seen_lot = who in (JUNIOR, BUYER) and ev["type"] in LOT_EVENTS
    if not seen_lot and not mine:
        return None
    changes = {k: v for k, v in (ev.get("changes") or {}).items() if k in LOT_CHANGES} if seen_lot else {}
    if seen_lot:
        mine.update({k: v for k, v in details.items() if k in LOT_DETAILS})
    if ev["type"] in PAYOUT_EVENTS and who == JUNIOR:
        own = {f"claim:{c}" for c in own_claims}
        paid = [d for d in details.get("distribution") or [] if d.get("party") in own]
        if paid:
            mine["distribution"] = paid
    return {**{k: ev[k] for k in ("id", "pledge_id", "pledge_number", "type", "instrument", "at") if k in ev},
            "changes": changes, "details": mine, "ledger_seqs": [], "actor": None}
