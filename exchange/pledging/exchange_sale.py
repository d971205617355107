"""The exchange sale of an escrowed lot: listings and auctions on the market on the pledgee's behalf,
each settlement paid out by the waterfall (the sequencer's settlement hook), reconciled by the worker."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Invalid
from exchange.core.idempotency import fingerprint, internal
from exchange.core.ledger_events import event_requests
from exchange.core.principal import SYSTEM_ACTOR, Principal
from exchange.core.runtime import Runtime
from exchange.core.units import CNY_DECIMALS, to_base, to_text
from exchange.pledging import realisation
from exchange.pledging import repository as repo
from exchange.pledging.enforcement import (
    claims_paid,
    juniors,
    payee_accounts,
    payout_view,
    pledgee_parts,
)
from exchange.pledging.frozen_lots import (
    courts_in_force,
    courts_paid,
    return_units,
)
from exchange.pledging.models import Claim, Pledge
from exchange.pledging.recording import (
    kick,
    ledger_id,
    ledger_meta,
    record_event,
    require_pledgee,
    require_unexpired,
    run,
)
from exchange.pledging.refusals import translate_refusals
from exchange.pledging.values import (
    now,
    ranges_of,
)
from exchange.pledging.views import (
    PledgeView,
    get,
)
from exchange.trading import auctions, orders, running
from ledger import commands as c
from ledger import queries as ledger
from ledger.state import Entry
from pledges import lifecycle
from pledges import ranges as rg
from pledges import waterfall as wf

log = logging.getLogger("envx.pledges")

# ----------------------------------------------------------------------------------- the exchange sale


async def _unlisted(conn: AsyncConnection, e: dict[str, Any], instrument: str) -> list[tuple[int, int]]:
    """Unsold serials of the lot in escrow that no listing or auction holds."""
    blocks = await ledger.blocks_within(conn, e["escrow_account"], instrument, e["lot"])
    return rg.normalise((b.start_serial, b.end_serial) for b in blocks if b.hold is None)


@dataclass(frozen=True, slots=True)
class SaleStarted:
    """A listing or auction of the escrowed lot placed: the registration now, and the order as GET shows it."""

    pledge: PledgeView
    order: dict[str, Any]


@translate_refusals
async def start_sale(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, market_id: str,
                     quantity: str | None, price: str | None, auction: dict[str, Any] | None) -> SaleStarted:
    """List (挂牌) or auction (单向竞价) unsold units of an escrowed lot on the market, on the pledgee's
    behalf: the order sells the named serials from the escrow, is paid into it, and is marked as the
    enforcement sale of the registration. Each settlement pays out by the waterfall (the sequencer's
    settlement hook, `sale_settled`). The pledge row is never locked while the market is waited for."""
    fp = fingerprint({"op": "start_sale", "pledge": pledge_id, "market": market_id, "quantity": quantity,
                      "price": price, "auction": auction})
    plan: dict[str, Any] = {}

    async def check(conn: AsyncConnection, p: Pledge) -> None:
        require_pledgee(who, p)
        lifecycle.require(p.status, "start_sale")
        e = p.enforcement or {}
        if e.get("method") != "exchange":
            raise DomainError("not_exchange_sale", "the lot is not in escrow for an exchange sale (method exchange)")
        require_unexpired(p)
        seq = running.sequencer(rt, market_id)
        if seq.market.instrument != p.instrument:
            raise Invalid("wrong_instrument", f"market {market_id} trades {seq.market.instrument}, not "
                          f"{p.instrument}")
        mode = seq.market.mode
        if mode not in ("listing", "auction") or (mode == "listing") != (price is not None) or \
                (mode == "auction") != (auction is not None):
            raise Invalid("wrong_mode", f"market {market_id} trades by {mode}: an enforcement sale is a listing "
                          "(with a price) on a listing market or an auction (with its terms) on an auction market")
        if mode == "listing" and price is not None:  # a listing is a negotiated price: pledges.realisation
            await realisation.check_price(conn, p, "listing", to_base(price, CNY_DECIMALS, field="price"))
        if claims_paid(e, await repo.claims_of(conn, p.id, ("registered", "paid"))):
            raise DomainError("claims_paid", "every secured claim on the lot is paid: the rest belongs to the pledgor")
        free = await _unlisted(conn, e, p.instrument)
        qty = to_base(quantity, p.decimals) if quantity is not None else rg.total(free)
        if not free:
            raise DomainError("lot_on_sale", "every unsold unit of the lot is already listed or auctioned")
        if qty > rg.total(free):
            raise DomainError("quantity_exceeds_lot", f"only {to_text(rg.total(free), p.decimals)} unsold units of "
                              "the lot are not on sale yet")
        if mode == "auction" and auction is not None:  # the pledgee's terms: pledges.realisation
            await realisation.check_auction(conn, p, seq.market, qty, auction)
        plan.update(serials=tuple(rg.take_lowest(free, qty)), qty=qty, number=p.number,
                    escrow=e["escrow_account"], decimals=p.decimals, mode=mode)

    order_cid = internal("enforcement", pledge_id, client_id)  # the market's own idempotency covers a retry
    async with rt.read() as conn:
        placed_before = await repo.order_by_client(conn, who.participant_id, order_cid)
    if placed_before is None:
        await run(rt, who, client_id, pledge_id, fp, check)
    else:  # a retry after the order was placed: record it if that did not happen, and answer
        if ((placed_before.purpose or {}).get("enforcement") or {}).get("pledge_id") != pledge_id:
            raise DomainError("idempotency_conflict", "this client id was already used for a different request")
        order = await orders.get_order(rt, who, placed_before.market_id, placed_before.id)
        if order["status"] == "rejected" and order["kind"] == "auction":
            # A refused lot is a 409 problem, at first and on every retry alike (exchange.trading.auctions).
            refused = await orders.stored_refusal(rt, placed_before.market_id, placed_before.id)
            if refused is not None:
                raise refused
        plan.update(qty=placed_before.qty, serials=(), retry=True)
    if not plan:  # a retry of a sale already listed: its answer again
        async with rt.read() as conn:
            done = await repo.event_by_client(conn, who.actor, client_id)
        assert done is not None and done.type == "sale_listed"
        order = await orders.get_order(rt, who, done.data["market_id"], int(done.data["order_id"]))
        return SaleStarted(await get(rt, who, pledge_id), order)
    if not plan.get("retry"):
        escrow = orders.EscrowSale(plan["escrow"], plan["serials"], pledge_id, plan["number"])
        qty_text = to_text(plan["qty"], plan["decimals"])
        if plan["mode"] == "listing":
            assert price is not None
            placed = await orders.post_listing(rt, who, market_id, order_cid, side="sell", price=price,
                                               quantity=qty_text, escrow=escrow)
        else:
            assert auction is not None
            placed = await auctions.announce(rt, who, market_id, order_cid, quantity=qty_text, escrow=escrow,
                                             **auction)
        order = placed["order"]

    async def listed(conn: AsyncConnection, p: Pledge) -> None:
        e = dict(p.enforcement or {})
        sale = {"market_id": order["market_id"], "order_id": order["id"], "kind": order["kind"],
                "price": to_base(order["price"], CNY_DECIMALS, field="price") if order["price"] else None,
                "quantity": plan["qty"]}
        e["sales"] = [*e.get("sales", []), sale]
        await record_event(conn, p, "sale_listed", {"enforcement": e},
                      info={**sale, "serials": [list(r) for r in plan["serials"]]}, actor=who.actor,
                      client_id=client_id, fp=fp, notify=(p.pledgor_id,))

    if order["status"] != "rejected":
        await run(rt, who, client_id, pledge_id, fp, listed)
    return SaleStarted(await get(rt, who, pledge_id), order)


def settlement_hook(rt: Runtime) -> Callable[[str, list[dict[str, Any]]], Awaitable[None]]:
    """What a market sequencer awaits after settling trades of enforcement sales, or ending one."""

    async def hook(market_id: str, items: list[dict[str, Any]]) -> None:
        for it in items:
            try:
                if "trade_id" in it:
                    await sale_settled(rt, it["pledge_id"], market_id, it["trade_id"])
                else:
                    await sale_ended(rt, it["pledge_id"], market_id, it["order_id"])
            except DomainError as exc:  # the worker's reconciliation retries it
                log.warning("pledge %s: sale on %s not booked yet: %s %s", it["pledge_id"], market_id, exc.code,
                            exc.message)
        kick(rt)

    return hook


async def _conclude(conn: AsyncConnection, rt: Runtime, p: Pledge, actor: str) -> None:
    """After a settlement or the end of a listing/auction: the lot sold out -> enforced; nothing on sale
    and every secured claim paid -> the unsold rest back to the pledgor, enforced; else it waits in
    escrow for another sale (or the expiry, which returns it)."""
    e = dict(p.running)
    if any(o.status == "open" for o in await repo.sale_orders(conn, p.id)):
        return
    claims = await repo.claims_of(conn, p.id, ("registered", "paid"))
    lot = ranges_of(e["lot"])
    seqs: list[int] = []
    if lot:
        if not claims_paid(e, claims):
            return
        entries = await return_units(conn, rt, p, lot, relock=False, actor=actor)
        seqs = [x.seq for x in entries]
        e.update(lot=[], returned=[list(r) for r in lot])
        p = await record_event(conn, p, "units_returned", {"enforcement": e},
                      info={"returned": [list(r) for r in lot], "quantity": rg.total(lot), "to": "pledgor",
                            "why": "every secured claim is paid: the unsold rest belongs to the pledgor"},
                      actor=actor, seqs=seqs, notify=(p.pledgor_id,))
    for cl in await repo.claims_of(conn, p.id, ("filed",)):
        await repo.update_claim(conn, cl.id, status="lapsed")
    e = {**p.running, "completed_at": now().isoformat()}
    await record_event(conn, p, "enforced", {"enforcement": e},
                  info={"received": e["received"], "paid": e["paid"], "sold": e["sold"]}, actor=actor,
                  notify=(p.pledgor_id, *(cl.claimant_id for cl in claims)))


async def _proceeds_arrived(conn: AsyncConnection, rt: Runtime, p: Pledge, e: dict[str, Any], amount: int,
                            actor: str) -> tuple[list[dict[str, Any]], list[Entry], list[Claim]]:
    """Cash from selling part of the escrowed lot is in the escrow: pay this part by the waterfall
    (cumulative: earlier parts count, nothing is clawed back), as one ledger event. Updates `e`."""
    claims = await repo.claims_of(conn, p.id, ("registered", "paid"))
    courts = await courts_in_force(conn, e)
    total = e["received"] + amount
    payouts = wf.increment(e["paid"], total, fee=e["fee"], pledgee=pledgee_parts(e), juniors=juniors(claims),
                           owner="owner", fee_party="fee", courts=courts, lot=e["lot_quantity"])
    accounts = await payee_accounts(conn, rt, p, claims, e.get("courts"))
    paying = [x for x in payouts if x.paid]
    # Blinded (version 4): each payee's receipt opens its own line, and the metadata names none (README
    # "Visibility"); who got what is the pledge's own record (`proceeds_distributed`).
    entries = await rt.submit_linked(event_requests(
        actor, "payout", [c.Transfer(e["escrow_account"], accounts[x.party], "CNY", x.paid) for x in paying],
        ledger_id(p, "proceeds"), ledger_meta(p, "proceeds"), blinded=True)) if paying else []
    paid = dict(e["paid"])
    for x in payouts:
        if x.paid:
            paid[x.key] = paid.get(x.key, 0) + x.paid
    e.update(received=total, paid=paid)
    for cl in claims:
        await repo.update_claim(conn, cl.id, status="paid", paid=paid.get(f"claim:{cl.id}", 0))
    await courts_paid(conn, p, payouts, [x.seq for x in entries], actor)
    return payout_view(payouts, p, claims, e.get("courts")), entries, claims


@translate_refusals
async def sale_settled(rt: Runtime, pledge_id: int, market_id: str, trade_id: int) -> None:
    """A trade of an enforcement sale settled: its net proceeds (after the exchange's fee) are in the
    escrow; pay them out and take the sold serials off the lot. Idempotent per trade."""
    async with rt.read() as conn:
        trade = await repo.trade(conn, market_id, trade_id)
        sold = await ledger.entry_serials(conn, f"exchange:{market_id}", f"{market_id}:trade:{trade_id}:0")
    if trade is None or sold is None:
        raise DomainError("trade_not_settled", f"trade {market_id}/{trade_id} is not settled yet")
    client = f"sale:{market_id}:trade:{trade_id}"
    fp = fingerprint({"op": "sale_settled", "market": market_id, "trade": trade_id})

    async def body(conn: AsyncConnection, p: Pledge) -> None:
        e = dict(p.enforcement or {})
        if p.status != lifecycle.ENFORCING or e.get("method") != "exchange":
            raise DomainError("not_exchange_sale", f"registration {p.number} is {p.status}, not on sale")
        net = trade.notional - trade.seller_fee
        view, entries, claims = await _proceeds_arrived(conn, rt, p, e, net, SYSTEM_ACTOR)
        e.update(lot=[list(r) for r in rg.minus(ranges_of(e["lot"]), ranges_of(sold))], sold=e["sold"] + trade.qty)
        p = await record_event(conn, p, "proceeds_distributed", {"enforcement": e},
                      info={"market_id": market_id, "trade_id": trade_id, "price": trade.price,
                            "quantity": trade.qty, "amount": net, "seller_fee": trade.seller_fee,
                            "serials": sold, "distribution": view},
                      actor=SYSTEM_ACTOR, seqs=[x.seq for x in entries], client_id=client, fp=fp,
                      notify=(p.pledgor_id, *(cl.claimant_id for cl in claims)))
        await _conclude(conn, rt, p, SYSTEM_ACTOR)

    await run(rt, None, client, pledge_id, fp, body)


@translate_refusals
async def sale_ended(rt: Runtime, pledge_id: int, market_id: str, order_id: int) -> None:
    """A listing or auction of the lot ended (filled, withdrawn, expired at the close, allocated,
    cancelled): unsold units are free in escrow again; the registration may conclude."""
    client = f"sale:{market_id}:ended:{order_id}"
    fp = fingerprint({"op": "sale_ended", "market": market_id, "order": order_id})

    async def body(conn: AsyncConnection, p: Pledge) -> None:
        o = next((x for x in await repo.sale_orders(conn, p.id) if (x.market_id, x.id) == (market_id,
                                                                                                   order_id)), None)
        if o is None or o.status == "open" or p.status not in (lifecycle.ENFORCING, lifecycle.ENFORCED,
                                                                     lifecycle.EXPIRED):
            return
        p = await record_event(conn, p, "sale_ended", {}, info={
            "market_id": market_id, "order_id": order_id, "kind": o.kind, "filled": o.filled_qty,
            "unsold": o.qty - o.filled_qty, "status": o.status, "reason": o.reason},
            actor=SYSTEM_ACTOR, client_id=client, fp=fp, notify=(p.pledgor_id,))
        if p.status == lifecycle.ENFORCING:
            await _conclude(conn, rt, p, SYSTEM_ACTOR)

    await run(rt, None, client, pledge_id, fp, body)


async def unbooked(conn: AsyncConnection, pledge_id: int) -> bool:
    """Whether a settled trade or an ended listing/auction of the lot is not paid out or noted yet."""
    done = await repo.event_client_ids(conn, pledge_id, "sale:")
    trades = await repo.sale_trades(conn, pledge_id)
    return any(f"sale:{t.market_id}:trade:{t.trade_id}" not in done for t in trades)


async def reconcile_sales(rt: Runtime) -> int:
    """Book every settled trade and ended order of running exchange sales the hook missed (a crash, a
    restart): both are idempotent, so this only catches up. Returns how many it booked."""
    booked = 0
    async with rt.read() as conn:
        ids = await repo.exchange_sales(conn)
    for pledge_id in ids:
        async with rt.read() as conn:
            done = await repo.event_client_ids(conn, pledge_id, "sale:")
            trades = await repo.sale_trades(conn, pledge_id)
            ended = [o for o in await repo.sale_orders(conn, pledge_id) if o.status != "open"]
        try:
            for t in trades:
                if f"sale:{t.market_id}:trade:{t.trade_id}" not in done:
                    await sale_settled(rt, pledge_id, t.market_id, t.trade_id)
                    booked += 1
            for o in ended:
                if f"sale:{o.market_id}:ended:{o.id}" not in done:
                    await sale_ended(rt, pledge_id, o.market_id, o.id)
                    booked += 1
        except DomainError as exc:
            log.warning("pledge %s: sale reconciliation stopped: %s %s", pledge_id, exc.code, exc.message)
    return booked


