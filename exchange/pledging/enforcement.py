"""Default and enforcement: the declared default, transfer to the bank (折价), a negotiated sale the
buyer accepts (DvP), the exchange sale's start and withdrawal, and the waterfall of the proceeds.

Enforcement needs a default (`pledges.lifecycle.default_ground`) and claims what the secured scope covers
(`pledges.scope`); it pays in the order of `pledges/waterfall.py`: fees, pledgee (its secured
components), junior claimants, courts that froze part of the lot (their share of the surplus), owner.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Forbidden, Invalid
from exchange.core.idempotency import fingerprint
from exchange.core.ledger_events import created_holds, event_requests
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.units import CNY_DECIMALS, to_base, to_text
from exchange.pledging import realisation
from exchange.pledging import repository as repo
from exchange.pledging.accounts import account_of, escrow_account, yours
from exchange.pledging.frozen_lots import (
    after_handover,
    court_record,
    courts_on_lot,
    courts_paid,
    handover,
    handover_meta,
    return_units,
)
from exchange.pledging.models import Claim, Pledge, jsonable_deep
from exchange.pledging.recording import (
    cut_pieces,
    ledger_id,
    ledger_meta,
    mutate,
    record_event,
    require_pledgee,
    require_unexpired,
)
from exchange.pledging.refusals import translate_refusals
from exchange.pledging.valuation import years_of
from exchange.pledging.values import (
    cny,
    now,
    ranges_of,
    today,
)
from exchange.pledging.views import PledgeView
from exchange.registry import participants
from exchange.trading.pricing import notional
from ledger import commands as c
from pledges import lifecycle
from pledges import ranges as rg
from pledges import realisation as rl
from pledges import scope as sc
from pledges import waterfall as wf

BUYER_KINDS = frozenset({"enterprise", "issuer", "operator", "bank"})

# ----------------------------------------------------------------------------------- defaults and claims


async def _declare(conn: AsyncConnection, p: Pledge, who: Principal, notice: dict[str, Any], *,
                   client_id: str | None = None, fp: bytes | None = None) -> Pledge:
    """Record the bank's declaration of the loan's default; the pledgor hears of it (event, webhook)."""
    notice_date = notice["notice_date"]
    if notice_date > today():
        raise Invalid("invalid_notice_date", f"a default notice dated {notice_date} is in the future")
    overdue = notice.get("overdue_amount")
    record = {"reference": notice["reference"], "notice_date": notice_date.isoformat(),
              "overdue_amount": to_base(overdue, CNY_DECIMALS, field="overdue_amount") if overdue else None,
              "declared_at": now().isoformat(), "declared_by": who.actor}
    return await record_event(conn, p, "default_declared", {"declared_default": record},
                              info={"note": notice.get("note")}, actor=who.actor, client_id=client_id, fp=fp,
                              notify=(p.pledgor_id,))


@translate_refusals
async def declare_default(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, reference: str,
                          notice_date: date, overdue_amount: str | None, note: str | None) -> PledgeView:
    """The bank declares the secured loan in default (违约通知: its number and date): a ground for enforcement."""
    notice = {"reference": reference, "notice_date": notice_date, "overdue_amount": overdue_amount, "note": note}
    fp = fingerprint({"op": "declare_default", "pledge": pledge_id, **notice, "notice_date": notice_date.isoformat()})

    async def body(conn: AsyncConnection, p: Pledge) -> None:
        require_pledgee(who, p)
        lifecycle.require(p.status, "declare_default")
        require_unexpired(p)
        await _declare(conn, p, who, notice, client_id=client_id, fp=fp)

    return await mutate(rt, who, client_id, pledge_id, fp, body)


def _claim_parts(p: Pledge, claim: dict[str, str] | None, outstanding: str | None) -> list[dict[str, Any]]:
    """What the bank claims now, by component, and what of it the secured scope covers (pledges.scope)."""
    if claim and outstanding is not None:
        raise Invalid("ambiguous_claim", "name the principal either in claim or as outstanding, not both")
    owed = {k: to_base(v, CNY_DECIMALS, field=f"claim.{k}", allow_zero=True) for k, v in (claim or {}).items()}
    if outstanding is not None:
        owed[sc.PRINCIPAL] = to_base(outstanding, CNY_DECIMALS, field="outstanding")
    scope = sc.Scope.of(p.secured_scope)
    if not owed:
        if scope.type == sc.MAXIMUM:
            raise Invalid("claim_required", "a maximum-amount pledge secures what is owed up to its maximum: "
                          "name the claim by component")
        owed = {sc.PRINCIPAL: p.secured_amount}
    return [{"component": x.component, "claimed": x.claimed, "secured": x.secured, "unsecured": x.unsecured}
            for x in sc.secure(scope, p.secured_amount, owed)]


def pledgee_parts(e: dict[str, Any]) -> list[wf.Claim]:
    return [wf.Claim("pledgee", x["secured"], component=x["component"]) for x in e["claim"] if x["secured"]]


def juniors(claims: list[Claim]) -> list[wf.Claim]:
    return [wf.Claim(f"claim:{cl.id}", cl.amount, cl.registration_no, cl.id) for cl in claims]


def claims_paid(e: dict[str, Any], claims: list[Claim]) -> bool:
    """Whether the proceeds so far paid every secured claim on the lot (costs, pledgee, juniors)."""
    need = {f"pledgee/{x['component']}": x["secured"] for x in e["claim"] if x["secured"]}
    if e.get("fee"):
        need["fee"] = e["fee"]
    need.update({f"claim:{cl.id}": cl.amount for cl in claims})
    return all(e.get("paid", {}).get(k, 0) >= v for k, v in need.items())


# ----------------------------------------------------------------------------------- enforcement


async def payee_accounts(conn: AsyncConnection, rt: Runtime, p: Pledge, claims: list[Claim],
                          courts: list[dict[str, Any]] | None = None) -> dict[str, int]:
    accounts = {"fee": rt.system["fees"], "pledgee": await account_of(conn, rt, p.pledgee_id, "cash"),
                "owner": await account_of(conn, rt, p.pledgor_id, "cash")}
    for cl in claims:
        accounts[f"claim:{cl.id}"] = await account_of(conn, rt, cl.claimant_id, "cash")
    for ct in courts or []:
        accounts[f"court:{ct['freeze']}"] = ct["account"]
    return accounts


def payout_view(payouts: list[wf.Payout], p: Pledge, claims: list[Claim],
                 courts: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The distribution, line by line (stored in base units; answers show decimal strings)."""
    who = {"pledgee": p.pledgee_id, "owner": p.pledgor_id, "fee": None}
    who.update({f"claim:{cl.id}": cl.claimant_id for cl in claims})
    who.update({f"court:{ct['freeze']}": ct["court_id"] for ct in courts or []})
    return [{"party": x.party, "role": x.role, "component": x.component, "participant_id": who.get(x.party),
             "claimed": x.claimed, "paid": x.paid} for x in payouts]


def lot_notional(price_fen: int, quantity: int, p: Pledge) -> int:
    """What the pledged lot (or part of it) fetches at `price_fen`: price × quantity × term years, in fen."""
    try:
        return notional(price_fen, quantity, p.decimals, years_of(p))
    except ValueError:
        raise Invalid("price_not_whole_fen", "price × quantity × term years is not a whole number of fen") from None


async def settle_claims(conn: AsyncConnection, pledge_id: int, payouts: list[wf.Payout]) -> None:
    for x in payouts:
        if x.role == "junior":
            await repo.update_claim(conn, int(x.party.split(":")[1]), status="paid", paid=x.paid)
    # Claims the pledgor never confirmed were never registered: they lapse with the lot.
    for cl in await repo.claims_of(conn, pledge_id, ("filed",)):
        await repo.update_claim(conn, cl.id, status="lapsed")


async def distribute_once(conn: AsyncConnection, rt: Runtime, p: Pledge, e: dict[str, Any],
                           proceeds: int, courts: list[dict[str, Any]]
                           ) -> tuple[list[wf.Payout], dict[str, int], list[Claim]]:
    """Payouts of the whole proceeds of a sale or appropriation, and the cash account of each payee."""
    claims = await repo.claims_of(conn, p.id, ("registered",))
    payouts = wf.distribute(proceeds, fee=e["fee"], pledgee=pledgee_parts(e), juniors=juniors(claims),
                            owner="owner", fee_party="fee", courts=[(f"court:{ct['freeze']}", ct["units"])
                                                                    for ct in courts], lot=p.quantity)
    return payouts, await payee_accounts(conn, rt, p, claims, courts), claims


@translate_refusals
async def enforce(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, method: str, reason: str,
                  outstanding: str | None, price: str | None, buyer_id: int | None,
                  claim: dict[str, str] | None = None, default_notice: dict[str, Any] | None = None
                  ) -> PledgeView:
    """On a default (pledges.lifecycle.default_ground; `default_notice` declares one in the same step):
    `transfer` (折价: units to the bank at no less than the last mark, the bank pays out any surplus),
    `sale` (a negotiated sale the buyer accepts: DvP), or `exchange` (units to the bank's escrow, sold
    by listings or auctions on the market: `start_sale`). `claim` names what is owed by component
    (pledges.scope; `outstanding` is the principal alone). A court freeze on the lot does not stop it.
    A declared default waits for its notice period unless the pledgor consented; a negotiated price is at
    least the floor of pledges.realisation; the bank sets no fee (an exchange sale pays the market's)."""
    fp = fingerprint({"op": "enforce", "pledge": pledge_id, "method": method, "reason": reason,
                      "outstanding": outstanding, "price": price, "buyer": buyer_id, "claim": claim,
                      "default": {k: str(v) for k, v in (default_notice or {}).items()}})

    async def body(conn: AsyncConnection, p: Pledge) -> None:
        require_pledgee(who, p)
        lifecycle.require(p.status, "enforce")
        require_unexpired(p)
        if method not in ("transfer", "sale", "exchange"):
            raise Invalid("invalid_method", "method is transfer, sale or exchange")
        parts = _claim_parts(p, claim, outstanding)
        if default_notice:
            p = await _declare(conn, p, who, default_notice)
        ground = lifecycle.default_ground(p.state(), now())
        realisation.require_notice_served(rt, p, ground)
        base = {"method": method, "reason": reason, "ground": jsonable_deep(ground), "claim": parts,
                "fee": 0, "declared_at": now().isoformat(), "declared_by": who.actor}
        if method == "sale":
            await _propose_sale(conn, rt, who, p, base, price, buyer_id, client_id, fp)
        elif method == "transfer":
            await _appropriate(conn, rt, who, p, base, price, client_id, fp)
        else:
            courts = await courts_on_lot(conn, rt, p)
            legs, plan = await handover(conn, rt, p, courts)
            legs.append(c.PostHold(p.hold))  # the lot to the bank's escrow, for the sale
            entries = await rt.submit_linked(event_requests(
                who.actor, "enforcement", legs, ledger_id(p, "enforce-exchange"),
                ledger_meta(p, "enforce-exchange", reason=reason, **handover_meta(plan))),
                own=yours(who, await escrow_account(conn, rt, p.pledgee_id)))
            await after_handover(conn, p, plan, entries, who.actor, method)
            enforcement = {**base, "escrow_account": await escrow_account(conn, rt, p.pledgee_id),
                           "lot": p.serials, "lot_quantity": p.quantity, "sold": 0, "received": 0, "paid": {},
                           "courts": court_record(courts), "sales": []}
            await record_event(conn, p, "exchange_sale_started", {"enforcement": enforcement},
                          info={"serials": p.serials, "quantity": p.quantity, "ground": base["ground"]},
                          actor=who.actor, seqs=[x.seq for x in entries], client_id=client_id, fp=fp,
                          notify=(p.pledgor_id,))

    return await mutate(rt, who, client_id, pledge_id, fp, body)


async def _propose_sale(conn: AsyncConnection, rt: Runtime, who: Principal, p: Pledge, base: dict[str, Any],
                        price: str | None, buyer_id: int | None, client_id: str, fp: bytes) -> None:
    if price is None or buyer_id is None:
        raise Invalid("sale_terms_required", "a negotiated sale names the buyer and the price")
    if buyer_id in (p.pledgor_id, p.pledgee_id):
        raise Invalid("invalid_buyer", "the buyer must be a third party (the bank itself takes the units with "
                      "method transfer)")
    await participants.party(conn, who, buyer_id, kinds=BUYER_KINDS)
    price_fen = to_base(price, CNY_DECIMALS, field="price")
    await realisation.check_price(conn, p, "sale", price_fen)
    proceeds = lot_notional(price_fen, p.quantity, p)
    courts = await courts_on_lot(conn, rt, p)
    payouts, _, claims = await distribute_once(conn, rt, p, base, proceeds, courts)
    enforcement = {**base, "buyer_id": buyer_id, "price": price_fen, "proceeds": proceeds,
                   "expected": payout_view(payouts, p, claims, courts)}
    await record_event(conn, p, "sale_proposed", {"enforcement": enforcement}, info={"buyer_id": buyer_id},
                  actor=who.actor, client_id=client_id, fp=fp, notify=(p.pledgor_id,))


async def _appropriate(conn: AsyncConnection, rt: Runtime, who: Principal, p: Pledge, base: dict[str, Any],
                       price: str | None, client_id: str, fp: bytes) -> None:
    """折价: the bank takes the units at an agreed price no lower than the reference price (the latest mark)
    and pays the surplus; with no mark there is nothing to refer to (pledges.realisation)."""
    if not p.transfer_on_default:
        raise DomainError("transfer_not_agreed", "the pledge contract does not let the bank take the units; sell them")
    reference = await realisation.reference_price(conn, p.instrument)
    price_fen = to_base(price, CNY_DECIMALS, field="price") if price is not None else reference or 0
    rl.check_price("transfer", price_fen, reference)
    if reference is not None and price_fen < reference:
        raise DomainError("price_below_mark", f"the price is below the last mark {cny(reference)}")
    proceeds = lot_notional(price_fen, p.quantity, p)
    courts = await courts_on_lot(conn, rt, p)
    payouts, accounts, claims = await distribute_once(conn, rt, p, base, proceeds, courts)
    escrow = await escrow_account(conn, rt, p.pledgee_id)
    bank_holding = await account_of(conn, rt, p.pledgee_id, "holding")
    legs, plan = await handover(conn, rt, p, courts)
    legs += await _deliver(conn, p, escrow, bank_holding)
    # The bank's own share is paid in kind; the rest of the value it pays from its cash.
    paying = [x for x in payouts if x.paid and x.party != "pledgee"]
    legs += [c.Transfer(accounts["pledgee"], accounts[x.party], "CNY", x.paid) for x in paying]
    entries = await rt.submit_linked(event_requests(
        who.actor, "enforcement", legs, ledger_id(p, "enforce-transfer"),
        ledger_meta(p, "enforce-transfer", **handover_meta(plan)), blinded=True),
        own=yours(who, escrow))
    await after_handover(conn, p, plan, entries, who.actor, "transfer")
    await settle_claims(conn, p.id, payouts)
    await courts_paid(conn, p, payouts, [x.seq for x in entries], who.actor)
    view = payout_view(payouts, p, claims, courts)
    enforcement = {**base, "price": price_fen, "proceeds": proceeds, "distribution": view,
                   "courts": court_record(courts), "completed_at": now().isoformat()}
    await record_event(conn, p, "enforced", {"enforcement": enforcement}, info={"distribution": view}, actor=who.actor,
                  seqs=[e.seq for e in entries], client_id=client_id, fp=fp,
                  notify=(p.pledgor_id, *(cl.claimant_id for cl in claims)))


async def _deliver(conn: AsyncConnection, p: Pledge, escrow: int, to_holding: int) -> list[c.Leg]:
    """The lock posted to the escrow and the lot delivered from it to `to_holding` (the bank's or the buyer's)."""
    return [c.PostHold(p.hold),
            c.Transfer(escrow, to_holding, p.instrument, p.quantity,
                       await cut_pieces(conn, p.instrument, ranges_of(p.serials)))]


@translate_refusals
async def accept_sale(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, price: str) -> PledgeView:
    """The buyer accepts the bank's sale: units against cash as one ledger event (DvP, one entry)."""
    fp = fingerprint({"op": "accept_sale", "pledge": pledge_id, "price": price})

    async def body(conn: AsyncConnection, p: Pledge) -> None:
        e = p.enforcement or {}
        if who.participant_id != e.get("buyer_id"):  # the party first, then the state
            raise Forbidden("only the named buyer accepts the sale")
        lifecycle.require(p.status, "accept_sale")
        if e.get("method") != "sale":
            raise DomainError("no_sale_proposed", "the registration is not offered for a negotiated sale")
        if to_base(price, CNY_DECIMALS, field="price") != e["price"]:
            raise DomainError("price_mismatch", f"the sale is offered at {cny(e['price'])} per unit")
        require_unexpired(p)
        # The floor as it stands now: a close or mark since the offer moves it (price_below_floor names it).
        await realisation.check_price(conn, p, "sale", e["price"])
        courts = await courts_on_lot(conn, rt, p)  # as they stand now, not when the sale was offered
        payouts, accounts, claims = await distribute_once(conn, rt, p, e, e["proceeds"], courts)
        escrow = await escrow_account(conn, rt, p.pledgee_id)
        buyer_holding = await account_of(conn, rt, who.participant_id, "holding")
        buyer_cash = await account_of(conn, rt, who.participant_id, "cash")
        legs, plan = await handover(conn, rt, p, courts)
        legs += await _deliver(conn, p, escrow, buyer_holding)
        paying = [x for x in payouts if x.paid]
        # Delivery versus payment, one event: the buyer pays the price into the bank's escrow and the escrow pays
        # every line of the waterfall, or nothing moves. The buyer is not a creditor: the event is blinded
        # (version 4) and the buyer's receipt opens its own legs only -- the price it paid, the units it got --,
        # never a line of the waterfall (the secured loan's principal, interest, a junior's claim), nor, in the
        # metadata, which lines there are.
        legs.append(c.Transfer(buyer_cash, escrow, "CNY", sum(x.paid for x in paying)))
        legs += [c.Transfer(escrow, accounts[x.party], "CNY", x.paid) for x in paying]
        entries = await rt.submit_linked(event_requests(
            who.actor, "enforcement", legs, ledger_id(p, "enforce-sale"),
            ledger_meta(p, "enforce-sale", **handover_meta(plan)), blinded=True),
            own=yours(who))  # the buyer: its cash, not the bank's escrow
        await after_handover(conn, p, plan, entries, who.actor, "sale")
        await settle_claims(conn, p.id, payouts)
        await courts_paid(conn, p, payouts, [x.seq for x in entries], who.actor)
        view = payout_view(payouts, p, claims, courts)
        enforcement = {**e, "distribution": view, "courts": court_record(courts), "completed_at": now().isoformat()}
        await record_event(conn, p, "enforced", {"enforcement": enforcement}, info={"distribution": view,
                                                                               "buyer_id": who.participant_id},
                      actor=who.actor, seqs=[x.seq for x in entries], client_id=client_id, fp=fp,
                      notify=(p.pledgor_id, *(cl.claimant_id for cl in claims)))

    return await mutate(rt, who, client_id, pledge_id, fp, body)


@translate_refusals
async def cancel_sale(rt: Runtime, who: Principal, client_id: str, pledge_id: int, note: str | None) -> PledgeView:
    """Withdraw the enforcement: a negotiated sale not accepted, or an exchange sale before anything of
    the lot was sold and while no listing or auction of it runs (the lot is locked again, frozen units
    frozen again). After a partial sale the lot's rest stays in escrow for another sale; it ends when
    sold out, when every secured claim is paid (the rest goes back to the pledgor) or at expiry."""
    fp = fingerprint({"op": "cancel_sale", "pledge": pledge_id, "note": note})

    async def body(conn: AsyncConnection, p: Pledge) -> None:
        require_pledgee(who, p)
        lifecycle.require(p.status, "cancel_sale")
        e = p.enforcement or {}
        if e.get("method") == "sale":
            await record_event(conn, p, "sale_cancelled", {"enforcement": None}, info={"note": note}, actor=who.actor,
                          client_id=client_id, fp=fp, notify=(p.pledgor_id,))
            return
        live = [o for o in await repo.sale_orders(conn, p.id) if o.status == "open"]
        if live:
            running = ", ".join(f"{o.market_id}/{o.id}" for o in live)
            raise DomainError("sale_live", f"{len(live)} listing(s) or auction(s) of the lot are still running "
                              f"(orders {running}): withdraw the listing or cancel the auction first")
        if e.get("sold") or e.get("received") or await repo.sale_trades(conn, p.id):
            raise DomainError("sale_partly_done", f"{to_text(e['sold'], p.decimals)} units were sold and their "
                              "proceeds paid out; the rest stays in escrow for another sale (it goes back to the "
                              "pledgor once every secured claim is paid, or at expiry)")
        require_unexpired(p)
        entries = await return_units(conn, rt, p, ranges_of(e["lot"]), relock=True, actor=who.actor)
        lock = created_holds(entries)[0]  # the relock is the first hold the return creates
        await record_event(conn, p, "exchange_sale_cancelled", {"enforcement": None, "hold_id": lock},
                      info={"note": note, "returned": e["lot"], "quantity": rg.total(ranges_of(e["lot"]))},
                      actor=who.actor, seqs=[x.seq for x in entries], client_id=client_id, fp=fp,
                      notify=(p.pledgor_id,))

    return await mutate(rt, who, client_id, pledge_id, fp, body)


