"""Court restoration orders (替代性生态修复, 认购碳汇): a court orders a defendant to buy and retire credits.

A court registers the order (case, defendants, the assessed loss, method and multiplier, the required
quantity, eligible instrument kinds, deadline). The payer fulfils it by buying on the exchange — a buy
order or a take flagged for the order — whose fills are retired at once with purpose
`judicial_restoration` and the case data, so the units never become tradable. Fulfilment is read from
the settled trades; quantities are kept in kg of CO2e so instruments of any precision add up.

An order is spoken in tCO2e at one precision for all its quantities (required, retired, remaining): the
finest of the instruments that can fulfil it (those of its eligible kinds, at most kg: 3 decimals), or of
its required quantity if the court wrote that finer. An order that only whole-tonne credits can fill
reads "96", one that CDCER kept in kg can fill reads "96.000". The assessed loss is shown with as many
decimals as it has, at least the order's ("47.07").
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text

from exchange.core.errors import DomainError, Forbidden, Invalid, NotFound
from exchange.core.idempotency import check_replay, fingerprint, replay_on_refusal
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.units import CARBON_UNIT, cny, to_base, to_text
from exchange.registry import participants
from exchange.trading import orders

KG_DECIMALS = 3  # quantities of an order are kept in kg of CO2e; shown in t at the order's precision
ELIGIBLE = frozenset({"ccer", "cdcer", "forest_ticket", "cea"})
_COLUMNS = """r.id, r.court_id, c.name AS court, r.case_number, r.case_type, r.judgment_reference, r.defendants,
    r.payer_id, p.name AS payer, r.assessed_loss_kg, r.assessment_method, r.assessing_body, r.multiplier,
    r.required_kg, r.eligible_kinds, r.designated_seller_id, r.deadline, r.status, r.note, r.created_at"""
_FROM = "restoration_orders r JOIN participants c ON c.id = r.court_id JOIN participants p ON p.id = r.payer_id"


async def create(rt: Runtime, who: Principal, client_id: str, data: dict[str, Any]) -> dict[str, Any]:
    if who.kind != "court":
        raise Forbidden("only a court registers restoration orders")
    kinds = list(data["eligible_kinds"])
    if not kinds or set(kinds) - ELIGIBLE:
        raise Invalid("invalid_eligible_kinds", f"eligible kinds are among {', '.join(sorted(ELIGIBLE))}")
    required = to_base(data["required_quantity"], KG_DECIMALS, field="required_quantity")
    loss = (to_base(data["assessed_loss"], KG_DECIMALS, field="assessed_loss")
            if data.get("assessed_loss") else None)
    # The payer buys on the exchange; the court names it by id and registered identifier (the order's
    # answer shows its name). Anything else about it is the same 404 (participants.counterparty).
    payer = await participants.counterparty(rt, who, data["payer_id"], kinds=participants.HOLDER_KINDS,
                                            identifier=data.get("payer_identifier"), identified=True)
    if data.get("designated_seller_id"):
        await participants.counterparty(rt, who, data["designated_seller_id"], kinds=participants.HOLDER_KINDS)
    if data["deadline"] < datetime.now(UTC).date():
        raise Invalid("invalid_deadline", "the deadline has passed")
    fp = fingerprint({k: (v.isoformat() if isinstance(v, date) else v) for k, v in data.items()
                      if k != "payer_identifier"})  # how the payer was named is not what was ordered

    async def replay() -> dict[str, Any] | None:
        async with rt.read() as conn:
            row = (await conn.execute(text(
                "SELECT id, fingerprint FROM restoration_orders WHERE created_by = :a AND client_id = :c"),
                {"a": who.actor, "c": client_id})).first()
        if row is None:
            return None
        check_replay(row.fingerprint, fp)
        return await get(rt, who, row.id)

    async def register() -> dict[str, Any]:
        async with rt.tx() as conn:
            dup = (await conn.execute(text(
                "SELECT id FROM restoration_orders WHERE court_id = :c AND case_number = :n AND payer_id = :p"),
                {"c": who.participant_id, "n": data["case_number"], "p": payer["id"]})).first()
            if dup is not None:
                raise DomainError("duplicate_order",
                                  f"case {data['case_number']} already has order {dup.id} for this payer")
            new_id = (await conn.execute(text(
                """INSERT INTO restoration_orders (court_id, case_number, case_type, judgment_reference,
                       defendants, payer_id, assessed_loss_kg, assessment_method, assessing_body, multiplier,
                       required_kg, eligible_kinds, designated_seller_id, deadline, note, created_by, client_id,
                       fingerprint)
                   VALUES (:court, :case, :type, :judgment, CAST(:defendants AS jsonb), :payer, :loss, :method,
                           :body, :mult, :required, CAST(:kinds AS jsonb), :seller, :deadline, :note, :a, :cid, :fp)
                   RETURNING id"""),
                {"court": who.participant_id, "case": data["case_number"], "type": data["case_type"],
                 "judgment": data.get("judgment_reference"),
                 "defendants": json.dumps(data["defendants"], ensure_ascii=False),
                 "payer": payer["id"], "loss": loss, "method": data.get("assessment_method"),
                 "body": data.get("assessing_body"), "mult": data.get("multiplier"), "required": required,
                 "kinds": json.dumps(kinds), "seller": data.get("designated_seller_id"),
                 "deadline": data["deadline"], "note": data.get("note"), "a": who.actor, "cid": client_id,
                 "fp": fp})).scalar()
        return await get(rt, who, int(new_id))

    # A concurrent twin (same court key and client id) that commits first: its order, not duplicate_order
    # or a unique-index error (the insert waits for the twin's commit, then fails on the client id).
    prior = await replay()
    return prior if prior is not None else await replay_on_refusal(register, replay)


async def _row(rt: Runtime, order_id: int) -> dict[str, Any]:
    async with rt.read() as conn:
        row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM {_FROM} WHERE r.id = :i"), {"i": order_id})).first()
    if row is None:
        raise NotFound("restoration order", order_id)
    return dict(row._mapping)


OVERSIGHT = frozenset({"operator", "auditor"})


def _may_see(who: Principal | None, r: dict[str, Any]) -> None:
    """The ordering court, the payer and the designated seller see an order (and oversight); anyone
    else is told what an unknown id is told: 404."""
    if who is None or who.kind in OVERSIGHT:
        return
    if who.participant_id not in (r["court_id"], r["payer_id"], r["designated_seller_id"]):
        raise NotFound("restoration order", r["id"])


def defendants_for(who: Principal | None, defendants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A defendant's name is in the judgment; an ID number is personal data: only the court that
    entered it and oversight see it (never the payer's counterparties, never the public)."""
    if who is not None and (who.kind in OVERSIGHT or who.kind == "court"):
        return defendants
    return public_defendants(defendants)


def public_defendants(defendants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a public document (the certificate) names of the defendants: their names only."""
    return [{"name": d["name"]} for d in defendants]


async def fills(rt: Runtime, order_id: int) -> list[dict[str, Any]]:
    """Every settled trade of a buy order flagged for this restoration order, with its retirement entry."""
    async with rt.read() as conn:
        rows = await conn.execute(text(
            """SELECT t.market_id, t.trade_id, t.instrument, t.price, t.qty, t.notional, t.buyer_fee, t.ts,
                      i.decimals, e.seq AS retire_seq, e.meta AS retire_meta
               FROM trades t
               JOIN orders o ON o.market_id = t.market_id AND o.id = t.buy_order
               JOIN instruments i ON i.code = t.instrument
               LEFT JOIN ledger_entries e ON e.actor = 'exchange:' || t.market_id
                    AND e.client_id = t.market_id || :trade || t.trade_id || :retire
               WHERE (o.purpose->>'restoration_order')::bigint = :id ORDER BY t.ts, t.trade_id"""),
            # The retirement is request 1 of the trade's settlement group (see exchange.trading.sequencer._settle).
            {"id": order_id, "trade": ":trade:", "retire": ":1"})
        return [dict(r._mapping) for r in rows]


async def retirements_paid_by(rt: Runtime, participant_id: int) -> list[int]:
    """The judicial retirement entries a participant paid for (as payer of restoration orders): their
    units pass through the clearing account straight to retirement, so no account of the payer's shows
    them; the payer's holdings list them all the same."""
    async with rt.read() as conn:
        rows = await conn.execute(text(
            """SELECT e.seq FROM restoration_orders r
               JOIN orders o ON (o.purpose->>'restoration_order')::bigint = r.id
               JOIN trades t ON t.market_id = o.market_id AND t.buy_order = o.id
               JOIN ledger_entries e ON e.actor = 'exchange:' || t.market_id
                    AND e.client_id = t.market_id || :trade || t.trade_id || :retire
               WHERE r.payer_id = :p ORDER BY e.seq"""),
            {"p": participant_id, "trade": ":trade:", "retire": ":1"})  # as in `fills`
        return [r.seq for r in rows]


def to_kg(qty: int, decimals: int) -> int:
    return qty * 10 ** (KG_DECIMALS - decimals) if decimals <= KG_DECIMALS else qty // 10 ** (decimals - KG_DECIMALS)


def _needed(kg: int | None) -> int:
    """How many decimals (of t) a quantity in kg needs: 96000 -> 0, 47070 -> 2."""
    if not kg:
        return 0
    places = KG_DECIMALS
    while places and kg % 10 ** (KG_DECIMALS - places + 1) == 0:
        places -= 1
    return places


async def precision(rt: Runtime, r: dict[str, Any]) -> int:
    """The order's decimals (see the module docstring)."""
    async with rt.read() as conn:
        finest = (await conn.execute(text("SELECT max(decimals) FROM instruments WHERE kind = ANY(:k)"),
                                     {"k": list(r["eligible_kinds"])})).scalar()
    return min(KG_DECIMALS, max(finest or 0, _needed(r["required_kg"])))


def in_t(kg: int, places: int) -> str:
    """kg of CO2e as t with `places` decimals (exact: the order's precision covers what fills it)."""
    return to_text(kg // 10 ** (KG_DECIMALS - places), places)


async def get(rt: Runtime, who: Principal | None, order_id: int) -> dict[str, Any]:
    """The order as `who` may see it; `who=None` is the registry itself (reminders, certificates)."""
    r = await _row(rt, order_id)
    _may_see(who, r)
    done = await fills(rt, order_id)
    retired = sum(to_kg(f["qty"], f["decimals"]) for f in done)
    value, fees = sum(f["notional"] for f in done), sum(f["buyer_fee"] for f in done)
    places = await precision(rt, r)
    loss = r["assessed_loss_kg"]
    today = datetime.now(UTC).date()
    status = r["status"]
    if status == "open" and retired >= r["required_kg"]:
        status = "fulfilled"
    return {
        "id": r["id"], "court_id": r["court_id"], "court": r["court"], "case_number": r["case_number"],
        "case_type": r["case_type"], "judgment_reference": r["judgment_reference"],
        "defendants": r["defendants"] if who is None else defendants_for(who, r["defendants"]),
        "payer_id": r["payer_id"], "payer": r["payer"],
        "assessed_loss": None if loss is None else in_t(loss, max(places, _needed(loss))),
        "assessment_method": r["assessment_method"], "assessing_body": r["assessing_body"],
        "multiplier": r["multiplier"], "required_quantity": in_t(r["required_kg"], places),
        "retired_quantity": in_t(retired, places),
        "remaining_quantity": in_t(max(0, r["required_kg"] - retired), places),
        # What the payer paid: the value of the fills (price x quantity) and the exchange's fees on them.
        "unit": CARBON_UNIT, "value": cny(value), "fees": cny(fees), "paid": cny(value + fees),
        "eligible_kinds": r["eligible_kinds"],
        "designated_seller_id": r["designated_seller_id"], "deadline": r["deadline"],
        "days_left": (r["deadline"] - today).days, "overdue": status == "open" and today > r["deadline"],
        "status": status, "note": r["note"], "fills": len(done),
    }


async def listing(rt: Runtime, who: Principal) -> list[dict[str, Any]]:
    sql = f"SELECT r.id FROM {_FROM}"
    params: dict[str, Any] = {}
    if who.kind not in ("operator", "auditor"):
        sql += " WHERE r.court_id = :me OR r.payer_id = :me OR r.designated_seller_id = :me"
        params["me"] = who.participant_id
    async with rt.read() as conn:
        ids = [r.id for r in await conn.execute(text(sql + " ORDER BY r.id"), params)]
    return [await get(rt, who, i) for i in ids]


async def _purpose(rt: Runtime, who: Principal, order_id: int, market_id: str, quantity: str) -> dict[str, Any]:
    r = await _row(rt, order_id)
    _may_see(who, r)  # visibility, then the party, then the state
    if who.participant_id != r["payer_id"]:
        raise Forbidden("only the payer named in the order buys for it")
    state = await get(rt, who, order_id)
    if state["status"] != "open":
        raise DomainError("order_fulfilled", f"restoration order {order_id} is {state['status']}")
    seq = rt.exchange.get(market_id)
    async with rt.read() as conn:
        kind = (await conn.execute(text("SELECT kind FROM instruments WHERE code = :c"),
                                   {"c": seq.market.instrument})).scalar()
    if kind not in r["eligible_kinds"]:
        raise DomainError("instrument_not_eligible", f"{seq.market.instrument} ({kind}) is not eligible for this order")
    wanted = to_kg(to_base(quantity, seq.market.decimals), seq.market.decimals)
    remaining = r["required_kg"] - sum(to_kg(f["qty"], f["decimals"]) for f in await fills(rt, order_id))
    if wanted > remaining:
        raise DomainError("exceeds_requirement", f"{quantity} {CARBON_UNIT} is more than the "
                          f"{state['remaining_quantity']} {CARBON_UNIT} still required")
    return {"retire": True, "restoration_order": order_id, "case_number": r["case_number"],
            "court": r["court"], "beneficiary": f"{r['court']} {r['case_number']} 替代性生态修复"}


async def purchase(rt: Runtime, who: Principal, order_id: int, client_id: str, *, market_id: str, type_: str,
                   tif: str, price: str | None, quantity: str) -> dict[str, Any]:
    purpose = await _purpose(rt, who, order_id, market_id, quantity)
    return await orders.place_order(rt, who, market_id, client_id, side="buy", type_=type_, tif=tif, price=price,
                                    quantity=quantity, stp=None, purpose=purpose)


async def take(rt: Runtime, who: Principal, order_id: int, client_id: str, *, market_id: str, listing_id: int,
               quantity: str) -> dict[str, Any]:
    purpose = await _purpose(rt, who, order_id, market_id, quantity)
    return await orders.take_listing(rt, who, market_id, listing_id, client_id, quantity=quantity, purpose=purpose)


async def reminders(rt: Runtime, today: date | None = None) -> int:
    """Daily: one reminder per open order due within 7 days, and one once overdue (idempotent per day)."""
    today = today or datetime.now(UTC).date()
    async with rt.read() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(text(
            "SELECT id, case_number, deadline FROM restoration_orders WHERE status = 'open'"))]
    made = 0
    for r in rows:
        state = await get(rt, None, r["id"])
        if state["status"] != "open":
            continue
        left = (r["deadline"] - today).days
        kind = "overdue" if left < 0 else ("due_soon" if left <= 7 else None)
        if kind is None:
            continue
        msg = (f"case {r['case_number']}: {state['remaining_quantity']} {CARBON_UNIT} still to retire, "
               + (f"{-left} days overdue" if left < 0 else f"deadline in {left} days"))
        async with rt.tx() as conn:
            res = await conn.execute(text(
                """INSERT INTO restoration_reminders (order_id, kind, day, message) VALUES (:o, :k, :d, :m)
                   ON CONFLICT DO NOTHING"""), {"o": r["id"], "k": kind, "d": today, "m": msg})
            made += res.rowcount
    return made


async def reminders_of(rt: Runtime, who: Principal, order_id: int) -> list[dict[str, Any]]:
    _may_see(who, await _row(rt, order_id))
    async with rt.read() as conn:
        rows = await conn.execute(text(
            "SELECT kind, day, message, created_at FROM restoration_reminders WHERE order_id = :o ORDER BY day"),
            {"o": order_id})
        return [dict(r._mapping) for r in rows]
