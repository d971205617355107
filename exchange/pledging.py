"""Pledge registrations (质押登记): filing, confirmation and lock, amendments, claims, valuation, enforcement.

The pure rules live in `pledges/` (lifecycle, priority, valuation, waterfall, ranges); this module
orchestrates them with the ledger, the participants and our tables.

Model (see DESIGN §7 and `pledges/priority.py`):
- The bank files; the pledgor confirms; only the confirmation locks units: a ledger hold of kind
  "pledge" debiting the pledgor's holding account and crediting the bank's pledge escrow account,
  expiring at the end of the term (+ grace). Each unit carries at most one pledge lock.
- Amend / extend / top up / partial release / release / enforce / expire are events of the
  registration (`pledge_events`); the `pledges` row is their projection, written in the same
  transaction. Changes of the lock are `void + new hold` in one linked ledger group, naming the exact
  serials, so no other claim can slip in between.
- Priority: every registration (a lock, or a ranked claim of another creditor on a locked lot) draws
  a number from one sequence when it takes effect. On one lot the lock holder is senior; ranked
  claims follow by registration number. Releasing the senior pledge promotes the first live junior
  claim into the lock (void + new hold to the junior's escrow, linked), keeping its number.
- Enforcement pays in the order of `pledges/waterfall.py`: fees, pledgee (up to the secured amount),
  junior claimants, owner. A negotiated sale settles delivery-versus-payment in one linked group.

Each mutation runs in one transaction holding the pledge row lock; ledger requests use client ids
derived from the row's version, so a retry after a crash between the ledger and our commit replays
the same ledger entries instead of doing the work twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange import instruments, participants
from exchange.bootstrap import SYSTEM_ACTOR
from exchange.errors import DomainError, Forbidden, Invalid, NotFound
from exchange.idempotency import check_replay, fingerprint
from exchange.keys import Principal
from exchange.runtime import Runtime
from exchange.units import CNY_DECIMALS, to_base, to_text
from ledger import commands as c
from ledger.note import Signer, generate_signer_key
from ledger.state import Entry
from pledges import certificate, lifecycle, webhooks
from pledges import ranges as rg
from pledges import repository as repo
from pledges import valuation as val
from pledges import visibility as vis
from pledges import waterfall as wf
from pledges.errors import PledgeError

log = logging.getLogger("envx.pledges")

SEES_ALL = frozenset({"operator", "auditor"})
PLEDGOR_KINDS = frozenset({"enterprise", "issuer", "operator"})
BUYER_KINDS = frozenset({"enterprise", "issuer", "operator", "bank"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
P = ParamSpec("P")
R = TypeVar("R")


def translate_refusals(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Refusals of the pure rules become domain errors (problem details) at the service boundary."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except PledgeError as exc:
            raise DomainError(exc.code, exc.message, exc.status) from None

    return wrapper


# ----------------------------------------------------------------------------------- small helpers


def now() -> datetime:
    return datetime.now(UTC)


def today() -> date:
    return now().astimezone(val.SHANGHAI).date()


def micros(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def _dt(v: Any) -> datetime:
    return datetime.fromisoformat(v) if isinstance(v, str) else v


def _d(v: Any) -> date:
    return date.fromisoformat(v) if isinstance(v, str) else v


def _cny(fen: int | None) -> str | None:
    return None if fen is None else to_text(fen, CNY_DECIMALS)


def _ranges(v: Any) -> list[tuple[int, int]]:
    return [(int(s), int(e)) for s, e in (v or [])]


def _ledger_id(p: dict[str, Any], op: str) -> str:
    # Derived from the row version: a retry of the same step replays, the next step gets a new id.
    return f"pledge:{p['id']}:v{p['version'] + 1}:{op}"


def _meta(p: dict[str, Any], op: str, **extra: Any) -> dict[str, Any]:
    return {"pledge": p["id"], "pledge_number": p["number"], "op": op, "pledgee": p["pledgee_id"],
            "pledgor": p["pledgor_id"], **extra}


def _serials_of(entry: Entry) -> list[list[int]]:
    return [list(r) for r in rg.normalise(json.loads(entry.meta).get("serials", []))]


async def _pieces(conn: AsyncConnection, instrument: str, serials: list[tuple[int, int]],
                  account: int | None = None) -> tuple[tuple[int, int], ...]:
    """Named serials cut at block edges, as the ledger takes them (see pledges.ranges.split_at)."""
    if not serials:
        return ()
    return tuple(rg.split_at(serials, await repo.block_bounds(conn, instrument, account)))


async def _account(rt: Runtime, participant_id: int, kind: str) -> int:
    p = await participants.lookup(rt, participant_id)
    acc = p["holding_account" if kind == "holding" else "cash_account"]
    if acc is None:
        raise DomainError("no_account", f"participant {participant_id} has no {kind} account")
    return int(acc)


async def escrow_account(rt: Runtime, bank_id: int) -> int:
    """The bank's pledge escrow account, opened on first use (idempotent by its ledger client id)."""
    async with rt.read() as conn:
        acc = await repo.escrow_of(conn, bank_id)
    if acc is not None:
        return int(acc)
    entry = await rt.submit(c.Request(SYSTEM_ACTOR, c.OpenAccount(f"participant:{bank_id}:pledge-escrow", "escrow"),
                                      f"pledge-escrow:{bank_id}", {"bank": bank_id}))
    async with rt.tx() as conn:
        await repo.save_escrow(conn, bank_id, entry.body["account"])
    return int(entry.body["account"])


# ----------------------------------------------------------------------------------- worker / webhooks

_workers: dict[int, PledgeWorker] = {}


def kick(rt: Runtime) -> None:
    """Wake the delivery task after a commit that wrote outbox rows (no-op when none runs)."""
    w = _workers.get(id(rt))
    if w is not None:
        w.wake.set()


class PledgeWorker:
    """Background task: delivers the webhook outbox after commits, sweeps expired pledges and freezes.

    Both jobs claim their rows in the database (leases, row locks, ledger client ids), so several
    processes may run the worker at once without double deliveries or double expiries.
    """

    def __init__(self, rt: Runtime, sender: webhooks.Sender | None = None) -> None:
        self.rt = rt
        self.sender = sender or webhooks.http_sender(rt.settings.webhook_allowed_host_list)
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_sweep = 0.0

    async def start(self) -> None:
        _workers[id(self.rt)] = self
        self._task = asyncio.create_task(self._run(), name="envx-pledge-worker")

    async def stop(self) -> None:
        _workers.pop(id(self.rt), None)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        from exchange import freezing  # freezing imports this module

        settings = self.rt.settings
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=settings.pledge_worker_interval_seconds)
            self.wake.clear()
            try:
                while await webhooks.deliver_due(self.rt.engine, self.sender) > 0:
                    pass
                if loop.time() - self._last_sweep >= settings.pledge_sweep_interval_seconds:
                    self._last_sweep = loop.time()
                    await expire_due(self.rt)
                    await freezing.expire_due(self.rt)
            except asyncio.CancelledError:
                raise
            except Exception:  # the worker outlives any one failure; rows stay due and are retried
                log.exception("pledge worker pass failed")


@translate_refusals
async def set_webhook(rt: Runtime, who: Principal, client_id: str, *, url: str) -> dict[str, Any]:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises on a malformed port
    except ValueError:
        raise Invalid("invalid_webhook_url", "the webhook URL is malformed") from None
    allowed = ("https", "http") if rt.settings.pledge_webhook_allow_http else ("https",)
    if parts.scheme not in allowed or not parts.hostname or "@" in parts.netloc or parts.fragment:
        raise Invalid("invalid_webhook_url", f"the webhook URL must be an absolute {' or '.join(allowed)} URL "
                      "without user info or fragment")
    try:  # again at every delivery (pledges.webhooks): a name may resolve elsewhere later
        await webhooks.checked_addresses(url, rt.settings.webhook_allowed_host_list)
    except webhooks.DeliveryFailed:
        raise Invalid("webhook_destination_refused", "webhooks go to public Internet addresses only: the host "
                      "must resolve, and not to a loopback, private, link-local, multicast or unspecified "
                      "address") from None
    fp = fingerprint({"url": url})
    async with rt.tx() as conn:
        row = await repo.webhook_of(conn, who.participant_id)
        if row is not None and row.client_id == client_id and row.updated_by == who.actor:
            check_replay(row.fingerprint, fp)
        else:
            # The secret is an HMAC key, so it is kept readable; it is shown to the bank only here.
            secret = ("whsec_" + secrets.token_hex(32)).encode()
            await repo.set_webhook(conn, who.participant_id, url, secret, who.actor, client_id, fp)
        row = await repo.webhook_of(conn, who.participant_id)
    return {"url": row.url, "secret": bytes(row.secret).decode(), "updated_at": row.updated_at,
            "signature": {"header": webhooks.SIGNATURE_HEADER, "timestamp_header": webhooks.TIMESTAMP_HEADER,
                          "scheme": "sha256=hex(HMAC-SHA256(secret, timestamp + '.' + body))"}}


async def webhook_status(rt: Runtime, who: Principal) -> dict[str, Any]:
    async with rt.read() as conn:
        row = await repo.webhook_of(conn, who.participant_id)
        deliveries = await repo.outbox_of(conn, who.participant_id)
    if row is None:
        raise NotFound("webhook endpoint of participant", who.participant_id)
    for d in deliveries:
        d["last_error"] = webhooks.public_reason(d["last_error"])
    return {"url": row.url, "updated_at": row.updated_at, "deliveries": deliveries}


@translate_refusals
async def set_haircut(rt: Runtime, who: Principal, instrument: str, haircut_bps: int) -> dict[str, Any]:
    await instruments.get(rt, instrument)
    val.check_haircut(haircut_bps)
    async with rt.tx() as conn:
        await repo.set_haircut(conn, instrument, haircut_bps, who.actor)
    return {"instrument": instrument, "haircut_bps": haircut_bps}


# ----------------------------------------------------------------------------------- reads


def _own_claims(claims: list[dict[str, Any]], who: Principal) -> list[dict[str, Any]]:
    return [cl for cl in claims if cl["claimant_id"] == who.participant_id]


async def _role(conn: AsyncConnection, who: Principal, p: dict[str, Any]) -> str | None:
    """The caller's role on the registration (pledges.visibility): None means it may not see it."""
    claims = await repo.claims_of(conn, p["id"]) if who.kind not in vis.OVERSIGHT else []
    return vis.role(who.participant_id, who.kind, p, _own_claims(claims, who))


async def _visible(conn: AsyncConnection, who: Principal, pledge_id: int) -> tuple[dict[str, Any], str]:
    """The registration and the caller's role; 404 -- as for an id that does not exist -- if it may not
    see it, before anything about its state is looked at."""
    p = await repo.get_pledge(conn, pledge_id)
    who_role = None if p is None else await _role(conn, who, p)
    if p is None or who_role is None:
        raise NotFound("pledge", pledge_id)
    return p, who_role


def _claim_view(cl: dict[str, Any], rank: int | None) -> dict[str, Any]:
    return {"id": cl["id"], "claimant_id": cl["claimant_id"], "claimant_name": cl["claimant_name"],
            "loan_contract": cl["loan_contract"], "amount": _cny(cl["amount"]), "term_end": cl["term_end"],
            "reference": cl["reference"], "status": cl["status"], "registration_no": cl["registration_no"],
            "registered_at": cl["registered_at"], "rank": rank, "paid": _cny(cl["paid"])}


async def _view(conn: AsyncConnection, p: dict[str, Any], who: Principal) -> dict[str, Any]:
    """The registration as the caller may see it (pledges.visibility.pledge_view)."""
    dec = p["decimals"]
    locked = p["status"] in lifecycle.LOCKED and p["hold_id"] is not None
    blocks = await repo.hold_blocks(conn, p["hold_id"]) if locked else []
    claims = await repo.claims_of(conn, p["id"])
    own = _own_claims(claims, who)
    who_role = vis.role(who.participant_id, who.kind, p, own)
    if who_role is None:
        raise NotFound("pledge", p["id"])
    # On its lot the lock holder is rank 1; registered claims follow by registration number.
    live = [cl for cl in claims if cl["status"] == "registered"]
    claim_rank = {cl["id"]: i for i, cl in enumerate(sorted(live, key=lambda x: x["registration_no"]), start=2)}
    rank = (await repo.priority_rank(conn, p["pledgor_id"], p["instrument"], p["registration_no"])
            if locked and p["registration_no"] else None)
    enforcement = p["enforcement"]
    full = {
        "id": p["id"], "number": p["number"], "status": p["status"],
        "pledgee": {"id": p["pledgee_id"], "name": p["pledgee_name"]},
        "pledgor": {"id": p["pledgor_id"], "name": p["pledgor_name"], "uscc": p["pledgor_uscc"]},
        "instrument": p["instrument"], "quantity": to_text(p["quantity"], dec),
        "requested_serials": [{"start": s, "end": e} for s, e in _ranges(p["requested_serials"])],
        "serials": [{"start": s, "end": e} for s, e in _ranges(p["serials"])],
        "blocks": [{"start": b["start_serial"], "end": b["end_serial"], "batch": b["batch"],
                    "quantity": to_text(b["end_serial"] - b["start_serial"] + 1, dec),
                    "serial": f"{b['instrument']}-{b['batch']}-{b['start_serial']}-{b['end_serial']}",
                    "frozen_by": b["frozen_by"]} for b in blocks],
        "hold_id": p["hold_id"], "hold_url": f"/v1/ledger/entries/{p['hold_id']}" if p["hold_id"] else None,
        "registration_no": p["registration_no"], "registered_at": p["registered_at"],
        "priority": {"rank_on_lot": 1 if locked else None, "rank_among_pledgor_registrations": rank},
        "loan_contract": p["loan_contract"], "secured_amount": _cny(p["secured_amount"]),
        "term_start": p["term_start"], "term_end": p["term_end"], "grace_days": p["grace_days"],
        "expires_at": p["expires_at"], "references": p["refs"],
        "haircut_bps": p["effective_haircut_bps"], "haircut_own": p["haircut_bps"] is not None,
        "thresholds": {"warning_bps": p["warning_bps"], "margin_call_bps": p["margin_call_bps"],
                       "liquidation_bps": p["liquidation_bps"]},
        "margin": {"level": p["margin_level"], "cure_deadline": p["cure_deadline"],
                   "price": _cny(p["last_price"]), "value": _cny(p["last_value"]),
                   "ratio_bps": p["last_ratio_bps"], "as_of": p["last_valued_on"]},
        "transfer_on_default": p["transfer_on_default"],
        "claims": [_claim_view(cl, claim_rank.get(cl["id"])) for cl in claims],
        "enforcement": enforcement, "promoted_from_claim": p["promoted_from_claim"],
        "created_at": p["created_at"], "updated_at": p["updated_at"], "version": p["version"],
    }
    return vis.pledge_view(full, who_role, {cl["id"] for cl in own})


async def get(rt: Runtime, who: Principal, pledge_id: int) -> dict[str, Any]:
    async with rt.read() as conn:
        p, _ = await _visible(conn, who, pledge_id)
        return await _view(conn, p, who)


async def listing(rt: Runtime, who: Principal, *, status: str | None, role: str | None, after: int,
                  limit: int) -> list[dict[str, Any]]:
    viewer = None if who.kind in SEES_ALL else who.participant_id
    async with rt.read() as conn:
        rows = await repo.list_pledges(conn, viewer=viewer, status=status, role=role, after=after, limit=limit)
        return [await _view(conn, p, who) for p in rows]


async def _events_as_seen(conn: AsyncConnection, who: Principal, events: list[dict[str, Any]]
                          ) -> list[dict[str, Any]]:
    """Each event as the caller may see it (pledges.visibility.event_view); unseen ones left out."""
    if who.kind in SEES_ALL:
        return [repo.event_view(e) for e in events]
    roles: dict[int, tuple[str | None, set[int]]] = {}
    out = []
    for e in events:
        pid = e["pledge_id"]
        if pid not in roles:
            p = await repo.get_pledge(conn, pid)
            own = _own_claims(await repo.claims_of(conn, pid), who)
            roles[pid] = (vis.role(who.participant_id, who.kind, p, own) if p else None, {cl["id"] for cl in own})
        seen = vis.event_view(repo.event_view(e), *roles[pid])
        if seen is not None:
            out.append(seen)
    return out


async def history(rt: Runtime, who: Principal, pledge_id: int) -> list[dict[str, Any]]:
    async with rt.read() as conn:
        await _visible(conn, who, pledge_id)
        return await _events_as_seen(conn, who, await repo.events_of(conn, pledge_id))


async def projection_check(rt: Runtime, pledge_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state folded from the events, state in the row): equal unless something bypassed the events."""
    async with rt.read() as conn:
        events = await repo.events_of(conn, pledge_id)
        row = await repo.get_pledge(conn, pledge_id)
    folded = lifecycle.project((e["type"], e["data"]) for e in events)
    return {k: folded.get(k) for k in repo.PROJECTED}, repo.state_of(row)


async def event_stream(rt: Runtime, who: Principal, *, after: int, limit: int,
                       types: list[str] | None) -> list[dict[str, Any]]:
    viewer = None if who.kind in SEES_ALL else who.participant_id
    out: list[dict[str, Any]] = []
    async with rt.read() as conn:
        # Pages are cut after the caller's view is applied, so a page of events it may not see does
        # not end the stream early.
        while len(out) < limit:
            rows = await repo.event_stream(conn, viewer, after, limit, types)
            out += await _events_as_seen(conn, who, rows)
            if len(rows) < limit:
                break
            after = rows[-1]["id"]
    return out[:limit]


# ----------------------------------------------------------------------------------- recording


async def _record(conn: AsyncConnection, p: dict[str, Any], event_type: str, changes: dict[str, Any], *,
                  actor: str, info: dict[str, Any] | None = None, seqs: list[int] | tuple[int, ...] = (),
                  client_id: str | None = None, fp: bytes | None = None, notify: tuple[int, ...] = ()
                  ) -> dict[str, Any]:
    """Append one event, update the projection from it, queue the webhooks: one transaction."""
    changes = repo.jsonable_deep(changes)
    state = lifecycle.apply(repo.state_of(p), event_type, {"set": changes})
    await repo.write_state(conn, p["id"], state)
    ev = await repo.add_event(conn, p["id"], event_type, {"set": changes, **repo.jsonable_deep(info or {})},
                              list(seqs), actor, client_id, fp)
    p.update(state)
    p["version"] += 1
    if event_type in lifecycle.NOTIFY:
        await _notify(conn, p, ev, [p["pledgee_id"], *notify])
    return ev


async def _notify(conn: AsyncConnection, p: dict[str, Any], ev: dict[str, Any], recipients: list[int]) -> None:
    """Queue the event's webhooks, each recipient getting the event as it may see it (a junior
    creditor the lot's changes and its own claims, a claimant whose claim is only filed that claim)."""
    claims = await repo.claims_of(conn, p["id"])
    full = repo.event_view(ev, p["number"])
    views = {}
    for pid in dict.fromkeys(recipients):
        own = [cl for cl in claims if cl["claimant_id"] == pid]
        # A webhook recipient is a bank (or the pledgor), never oversight: its kind does not matter here.
        seen = vis.event_view(full, vis.role(pid, "", p, own), {cl["id"] for cl in own})
        if seen is not None:
            views[pid] = seen
    await repo.enqueue_webhook(conn, ev["id"], ev["type"], views)


_slots: dict[int, asyncio.Semaphore] = {}


def _mutation_slots(rt: Runtime) -> asyncio.Semaphore:
    """A mutation holds one pooled connection (the row lock) while its body borrows another; letting
    at most half the pool's capacity (size + overflow) in at once means the second is always there,
    so a burst of confirmations cannot deadlock the pool (found by the race campaign)."""
    sem = _slots.get(id(rt))
    if sem is None:
        sem = _slots[id(rt)] = asyncio.Semaphore(max(1, rt.settings.db_pool_size))
    return sem


Visibility = Callable[[AsyncConnection, dict[str, Any]], Awaitable[bool]]


async def _mutate(rt: Runtime, who: Principal | None, client_id: str, pledge_id: int, fp: bytes,
                  body: Callable[[AsyncConnection, dict[str, Any]], Awaitable[None]], *,
                  actor: str | None = None, visible: Visibility | None = None,
                  answer: bool = True) -> dict[str, Any]:
    """Run `body` under the pledge's row lock unless this client id already did (then replay).

    A caller who may not see the registration (by default: has no role on it, pledges.visibility) gets
    404, as for an id that does not exist, before any replay or state check. The event `body` records
    with the client id must use the same actor as the look-up here."""
    actor = actor or (who.actor if who else SYSTEM_ACTOR)
    async with _mutation_slots(rt), rt.tx() as conn:
        p = await repo.lock_pledge(conn, pledge_id)
        if p is not None and who is not None:
            seen = await visible(conn, p) if visible is not None else await _role(conn, who, p) is not None
            p = p if seen else None
        if p is None:
            raise NotFound("pledge", pledge_id)
        prior = await repo.event_by_client(conn, actor, client_id)
        if prior is not None:
            check_replay(prior.fingerprint, fp)
        else:
            await body(conn, p)
    kick(rt)
    return await get(rt, who, pledge_id) if who and answer else {}


def _require_pledgee(who: Principal, p: dict[str, Any]) -> None:
    if who.participant_id != p["pledgee_id"]:
        raise Forbidden("only the pledgee bank may do this to the registration")


def _require_pledgor(who: Principal, p: dict[str, Any]) -> None:
    if who.participant_id != p["pledgor_id"]:
        raise Forbidden("only the pledgor may do this to the registration")


def _require_unexpired(p: dict[str, Any]) -> None:
    if now() >= _dt(p["expires_at"]):
        raise DomainError("pledge_expired", f"the registration expired at {_dt(p['expires_at']).isoformat()}")


async def _require_unfrozen(conn: AsyncConnection, p: dict[str, Any], verb: str) -> None:
    frozen = [b for b in await repo.hold_blocks(conn, p["hold_id"]) if b["frozen_by"] is not None]
    if frozen:
        n = sum(b["end_serial"] - b["start_serial"] + 1 for b in frozen)
        by = sorted({b["frozen_by"] for b in frozen})
        raise DomainError("frozen", f"{n} pledged units are frozen by a court (freeze hold {by}); the registration "
                          f"cannot be {verb} until the freeze is lifted")


async def _relock(conn: AsyncConnection, rt: Runtime, who: Principal, p: dict[str, Any], *,
                  serials: list[tuple[int, int]], quantity: int, expires_at: datetime, op: str) -> list[Entry]:
    """Void the lock and lock `serials` again, atomically (one linked ledger group)."""
    escrow = await escrow_account(rt, p["pledgee_id"])
    holding = await _account(rt, p["pledgor_id"], "holding")
    pieces = await _pieces(conn, p["instrument"], serials, holding)
    return await rt.submit_linked([
        c.Request(who.actor, c.VoidHold(p["hold_id"]), _ledger_id(p, f"{op}-void"), _meta(p, op)),
        c.Request(who.actor, c.CreateHold("pledge", holding, escrow, p["instrument"], quantity, pieces,
                                          micros(expires_at)), _ledger_id(p, f"{op}-lock"), _meta(p, op)),
    ])


# ----------------------------------------------------------------------------------- filing and consent


@translate_refusals
async def file(rt: Runtime, who: Principal, client_id: str, *, pledgor_id: int, instrument: str, quantity: str,
               serials: list[tuple[int, int]] | None, loan_contract: str, secured_amount: str, term_start: date,
               term_end: date, grace_days: int, references: list[tuple[str, str]], haircut_bps: int | None,
               warning_bps: int | None, margin_call_bps: int | None, liquidation_bps: int | None,
               transfer_on_default: bool) -> dict[str, Any]:
    if who.kind != "bank":
        raise Forbidden("only a bank files pledge registrations")
    inst = await instruments.get(rt, instrument)
    if inst["kind"] == "currency":
        raise Invalid("not_pledgeable", "cash is not pledged in this registry; pledge credits or allowances")
    qty = to_base(quantity, inst["decimals"])
    named = rg.normalise(serials) if serials else None
    if named is not None and rg.total(named) != qty:
        raise Invalid("serials_amount_mismatch", "the named serial ranges do not add up to the quantity")
    pledgor = await participants.lookup(rt, pledgor_id)
    if pledgor["kind"] not in PLEDGOR_KINDS or pledgor_id == who.participant_id:
        raise Invalid("invalid_pledgor", f"participant {pledgor_id} ({pledgor['kind']}) cannot pledge units to you")
    if pledgor["status"] != "active":
        raise DomainError("participant_suspended", f"participant {pledgor_id} is suspended")
    fen = to_base(secured_amount, CNY_DECIMALS, field="secured_amount")
    if term_end < term_start:
        raise Invalid("invalid_term", "the term must end on or after its start")
    if term_end < today():
        raise Invalid("term_ended", f"the term ended on {term_end}; an expired registration cannot be filed")
    th = val.Thresholds(warning_bps or val.DEFAULT_WARNING_BPS, margin_call_bps or val.DEFAULT_MARGIN_CALL_BPS,
                        liquidation_bps or val.DEFAULT_LIQUIDATION_BPS).check()
    if haircut_bps is not None:
        val.check_haircut(haircut_bps)
    refs = sorted({(s.strip(), r.strip()) for s, r in references})
    if len(refs) != len(references):
        raise Invalid("duplicate_reference", "the same external reference is named twice")
    expires = val.end_of_day(term_end + timedelta(days=grace_days))
    changes = {"pledgee_id": who.participant_id, "pledgor_id": pledgor_id, "instrument": instrument,
               "quantity": qty, "requested_serials": [list(r) for r in named] if named else None, "serials": [],
               "loan_contract": loan_contract, "secured_amount": fen, "term_start": term_start.isoformat(),
               "term_end": term_end.isoformat(), "grace_days": grace_days, "expires_at": expires.isoformat(),
               "haircut_bps": haircut_bps, "warning_bps": th.warning_bps, "margin_call_bps": th.margin_call_bps,
               "liquidation_bps": th.liquidation_bps, "transfer_on_default": transfer_on_default,
               "margin_level": "ok"}
    fp = fingerprint({"op": "file", **{k: v for k, v in changes.items() if k != "expires_at"},
                      "references": [list(r) for r in refs]})
    try:
        async with rt.tx() as conn:
            prior = await repo.event_by_client(conn, who.actor, client_id)
            if prior is not None:
                check_replay(prior.fingerprint, fp)
                pledge_id = int(prior.pledge_id)
            else:
                taken = await repo.reference_taken(conn, refs)
                if taken:
                    raise DomainError("duplicate_reference", f"{taken['source']} {taken['reference']} is already "
                                      f"registered (pledge {taken['pledge_id']})")
                pledge_id = await repo.next_pledge_id(conn)
                number = f"ENVX-ZY-{pledge_id:08d}"
                state = lifecycle.apply({}, "filed", {"set": changes})
                await repo.insert_pledge(conn, pledge_id, number, state)
                await repo.add_references(conn, pledge_id, refs)
                await repo.add_event(conn, pledge_id, "filed",
                                     {"set": changes, "references": [{"source": s, "reference": r} for s, r in refs]},
                                     [], who.actor, client_id, fp)
    except IntegrityError:
        # A concurrent twin took the client id or the reference first: replay it or refuse.
        async with rt.read() as conn:
            prior = await repo.event_by_client(conn, who.actor, client_id)
            if prior is None:
                taken = await repo.reference_taken(conn, refs)
                raise DomainError("duplicate_reference", "an external reference of this filing was registered "
                                  f"concurrently (pledge {taken['pledge_id'] if taken else '?'})") from None
            check_replay(prior.fingerprint, fp)
            pledge_id = int(prior.pledge_id)
    return await get(rt, who, pledge_id)


@translate_refusals
async def confirm(rt: Runtime, who: Principal, client_id: str, pledge_id: int) -> dict[str, Any]:
    """The pledgor's consent: only now are the units locked (the registration takes effect)."""
    fp = fingerprint({"op": "confirm", "pledge": pledge_id})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        _require_pledgor(who, p)
        lifecycle.require(p["status"], "confirm")
        if now() >= _dt(p["expires_at"]):
            raise DomainError("pledge_expired", "the registration's term ended before the pledgor confirmed it")
        escrow = await escrow_account(rt, p["pledgee_id"])
        holding = await _account(rt, p["pledgor_id"], "holding")
        serials = await _pieces(conn, p["instrument"], _ranges(p["requested_serials"]), holding)
        entry = await rt.submit(c.Request(
            who.actor,
            c.CreateHold("pledge", holding, escrow, p["instrument"], p["quantity"], serials,
                         micros(_dt(p["expires_at"]))),
            _ledger_id(p, "lock"), _meta(p, "lock", loan_contract=p["loan_contract"],
                                         references=[r["reference"] for r in p["refs"]])))
        reg = await repo.next_registration_no(conn)
        await _record(conn, p, "confirmed", {"hold_id": entry.seq, "serials": _serials_of(entry),
                                             "registration_no": reg, "registered_at": now()},
                      actor=who.actor, seqs=[entry.seq], client_id=client_id, fp=fp)

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


@translate_refusals
async def decline(rt: Runtime, who: Principal, client_id: str, pledge_id: int, note: str | None) -> dict[str, Any]:
    fp = fingerprint({"op": "decline", "pledge": pledge_id, "note": note})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        _require_pledgor(who, p)
        lifecycle.require(p["status"], "decline")
        await _record(conn, p, "declined", {}, info={"note": note}, actor=who.actor, client_id=client_id, fp=fp)

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


@translate_refusals
async def withdraw(rt: Runtime, who: Principal, client_id: str, pledge_id: int, note: str | None) -> dict[str, Any]:
    fp = fingerprint({"op": "withdraw", "pledge": pledge_id, "note": note})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        _require_pledgee(who, p)
        lifecycle.require(p["status"], "withdraw")
        await _record(conn, p, "withdrawn", {}, info={"note": note}, actor=who.actor, client_id=client_id, fp=fp)

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


# ----------------------------------------------------------------------------------- changes of terms and lock


@translate_refusals
async def amend(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, secured_amount: str | None,
                loan_contract: str | None, haircut_bps: int | None, warning_bps: int | None,
                margin_call_bps: int | None, liquidation_bps: int | None, transfer_on_default: bool | None,
                add_references: list[tuple[str, str]], note: str | None) -> dict[str, Any]:
    """Terms the bank may change alone: anything before confirmation; after it, only what favours the
    pledgor or is the bank's own risk setting (a lower secured amount, haircut, thresholds, references)."""
    fp = fingerprint({"op": "amend", "pledge": pledge_id, "secured": secured_amount, "contract": loan_contract,
                      "haircut": haircut_bps, "th": [warning_bps, margin_call_bps, liquidation_bps],
                      "tod": transfer_on_default, "refs": [list(r) for r in add_references], "note": note})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        _require_pledgee(who, p)
        lifecycle.require(p["status"], "amend")
        filed = p["status"] == lifecycle.FILED
        changes: dict[str, Any] = {}
        if secured_amount is not None:
            fen = to_base(secured_amount, CNY_DECIMALS, field="secured_amount")
            if fen > p["secured_amount"] and not filed:
                raise DomainError("requires_pledgor_consent", "raising the secured amount of a confirmed pledge needs "
                                  "a new registration the pledgor confirms")
            changes["secured_amount"] = fen
        for key, value in (("loan_contract", loan_contract), ("transfer_on_default", transfer_on_default)):
            if value is not None:
                if not filed:
                    raise DomainError("requires_pledgor_consent", f"{key} of a confirmed pledge cannot be changed "
                                      "by the bank alone")
                changes[key] = value
        if haircut_bps is not None:
            changes["haircut_bps"] = val.check_haircut(haircut_bps)
        if any(x is not None for x in (warning_bps, margin_call_bps, liquidation_bps)):
            th = val.Thresholds(warning_bps or p["warning_bps"], margin_call_bps or p["margin_call_bps"],
                                liquidation_bps or p["liquidation_bps"]).check()
            changes.update(warning_bps=th.warning_bps, margin_call_bps=th.margin_call_bps,
                           liquidation_bps=th.liquidation_bps)
        refs = sorted({(s.strip(), r.strip()) for s, r in add_references})
        if refs:
            taken = await repo.reference_taken(conn, refs)
            if taken:
                raise DomainError("duplicate_reference", f"{taken['source']} {taken['reference']} is already "
                                  f"registered (pledge {taken['pledge_id']})")
            await repo.add_references(conn, p["id"], refs)
        if not changes and not refs:
            raise Invalid("nothing_to_amend", "the amendment changes nothing")
        await _record(conn, p, "amended", changes,
                      info={"note": note, "references_added": [{"source": s, "reference": r} for s, r in refs]},
                      actor=who.actor, client_id=client_id, fp=fp)
        if "secured_amount" in changes or "haircut_bps" in changes or "warning_bps" in changes:
            await _reassess(conn, p, actor=who.actor)

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


@translate_refusals
async def extend(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, term_end: date,
                 grace_days: int | None, note: str | None) -> dict[str, Any]:
    """展期: the bank records the extension (as 中登网 lets the registrant do); the lock gets the new expiry."""
    fp = fingerprint({"op": "extend", "pledge": pledge_id, "term_end": term_end.isoformat(), "grace": grace_days,
                      "note": note})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        _require_pledgee(who, p)
        lifecycle.require(p["status"], "extend")
        _require_unexpired(p)
        if term_end <= _d(p["term_end"]):
            raise Invalid("invalid_term", f"an extension must end after the current term end {p['term_end']}")
        grace = p["grace_days"] if grace_days is None else grace_days
        expires = val.end_of_day(term_end + timedelta(days=grace))
        # The same lock, a later expiry (ledger AmendHold): the units never leave the pledge, so an
        # extension also works while a court freeze sits on them.
        entry = await rt.submit(c.Request(who.actor, c.AmendHold(p["hold_id"], micros(expires)),
                                          _ledger_id(p, "extend"), _meta(p, "extend")))
        await _record(conn, p, "extended", {"term_end": term_end, "grace_days": grace, "expires_at": expires,
                                            "hold_id": p["hold_id"]},
                      info={"note": note, "previous_hold": p["hold_id"]}, actor=who.actor,
                      seqs=[entry.seq], client_id=client_id, fp=fp)

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


@translate_refusals
async def top_up(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, quantity: str,
                 serials: list[tuple[int, int]] | None) -> dict[str, Any]:
    """The pledgor adds units to the lock (the usual cure of a margin call)."""
    fp = fingerprint({"op": "top_up", "pledge": pledge_id, "quantity": quantity, "serials": serials})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        _require_pledgor(who, p)
        lifecycle.require(p["status"], "top_up")
        _require_unexpired(p)
        add = to_base(quantity, p["decimals"])
        holding = await _account(rt, p["pledgor_id"], "holding")
        if serials:
            extra = rg.normalise(serials)
            if rg.total(extra) != add:
                raise Invalid("serials_amount_mismatch", "the named serial ranges do not add up to the quantity")
        else:
            free = await repo.free_blocks(conn, holding, p["instrument"])
            extra = rg.take_lowest([(b["start_serial"], b["end_serial"]) for b in free], add)
        await _require_unfrozen(conn, p, "topped up")
        new = rg.union(_ranges(p["serials"]), extra)
        entries = await _relock(conn, rt, who, p, serials=new, quantity=p["quantity"] + add,
                                expires_at=_dt(p["expires_at"]), op="top-up")
        await _record(conn, p, "topped_up", {"quantity": p["quantity"] + add, "serials": [list(r) for r in new],
                                             "hold_id": entries[1].seq},
                      info={"added": [list(r) for r in extra], "previous_hold": p["hold_id"]}, actor=who.actor,
                      seqs=[e.seq for e in entries], client_id=client_id, fp=fp)
        await _reassess(conn, p, actor=who.actor)

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


@translate_refusals
async def partial_release(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, quantity: str | None,
                          serials: list[tuple[int, int]] | None, note: str | None) -> dict[str, Any]:
    """Give back part of the lock: named serials, or the highest ones. The rest stays locked, same priority."""
    fp = fingerprint({"op": "partial_release", "pledge": pledge_id, "quantity": quantity, "serials": serials,
                      "note": note})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        _require_pledgee(who, p)
        lifecycle.require(p["status"], "partial_release")
        _require_unexpired(p)
        current = _ranges(p["serials"])
        if serials:
            released = rg.normalise(serials)
            if quantity is not None and rg.total(released) != to_base(quantity, p["decimals"]):
                raise Invalid("serials_amount_mismatch", "the named serial ranges do not add up to the quantity")
        elif quantity is not None:
            released = rg.take_highest(current, to_base(quantity, p["decimals"]))
        else:
            raise Invalid("quantity_required", "name the quantity or the serial ranges to release")
        remaining = rg.subtract(current, released)
        if not remaining:
            raise Invalid("use_release", "releasing every unit is a full release: POST .../release")
        await _require_unfrozen(conn, p, "partially released")
        left = rg.total(remaining)
        entries = await _relock(conn, rt, who, p, serials=remaining, quantity=left, expires_at=_dt(p["expires_at"]),
                                op="partial-release")
        await _record(conn, p, "partially_released", {"quantity": left, "serials": [list(r) for r in remaining],
                                                      "hold_id": entries[1].seq},
                      info={"released": [list(r) for r in released], "note": note, "previous_hold": p["hold_id"]},
                      actor=who.actor, seqs=[e.seq for e in entries], client_id=client_id, fp=fp)
        await _reassess(conn, p, actor=who.actor)

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


@translate_refusals
async def release(rt: Runtime, who: Principal, client_id: str, pledge_id: int, note: str | None) -> dict[str, Any]:
    """解押. With registered junior claims on the lot, the first live one is promoted into the lock."""
    fp = fingerprint({"op": "release", "pledge": pledge_id, "note": note})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        _require_pledgee(who, p)
        lifecycle.require(p["status"], "release")
        claims = await repo.claims_of(conn, p["id"], ("registered", "filed"))
        registered = sorted((cl for cl in claims if cl["status"] == "registered"), key=lambda x: x["registration_no"])
        live = [cl for cl in registered if cl["term_end"] >= today()]
        lapsed = [cl for cl in claims if cl not in live]
        if not live:
            entry = await rt.submit(c.Request(who.actor, c.VoidHold(p["hold_id"]), _ledger_id(p, "release"),
                                              _meta(p, "release")))
            for cl in lapsed:
                await repo.update_claim(conn, cl["id"], status="lapsed")
            await _record(conn, p, "released", {}, info={"note": note, "claims_lapsed": [cl["id"] for cl in lapsed]},
                          actor=who.actor, seqs=[entry.seq], client_id=client_id, fp=fp)
            return
        await _promote(conn, rt, who, p, live, lapsed, note, client_id, fp)

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


async def _promote(conn: AsyncConnection, rt: Runtime, who: Principal, p: dict[str, Any],
                   live: list[dict[str, Any]], lapsed: list[dict[str, Any]], note: str | None, client_id: str,
                   fp: bytes) -> None:
    """Release the senior lock and hand the same units to the first junior, in one linked group."""
    await _require_unfrozen(conn, p, "released while junior claims wait to be promoted")
    first, rest = live[0], live[1:]
    escrow = await escrow_account(rt, first["claimant_id"])
    holding = await _account(rt, p["pledgor_id"], "holding")
    expires = val.end_of_day(first["term_end"])
    void, lock = await rt.submit_linked([
        c.Request(who.actor, c.VoidHold(p["hold_id"]), _ledger_id(p, "release"), _meta(p, "release")),
        c.Request(SYSTEM_ACTOR, c.CreateHold("pledge", holding, escrow, p["instrument"], p["quantity"],
                                             await _pieces(conn, p["instrument"], _ranges(p["serials"]), holding),
                                             micros(expires)),
                  _ledger_id(p, f"promote-claim-{first['id']}"),
                  _meta(p, "promote", claim=first["id"], new_pledgee=first["claimant_id"])),
    ])
    new_id = await repo.next_pledge_id(conn)
    number = f"ENVX-ZY-{new_id:08d}"
    changes = {"pledgee_id": first["claimant_id"], "pledgor_id": p["pledgor_id"], "instrument": p["instrument"],
               "quantity": p["quantity"], "requested_serials": None, "serials": p["serials"],
               "loan_contract": first["loan_contract"], "secured_amount": first["amount"],
               "term_start": today().isoformat(), "term_end": first["term_end"].isoformat(), "grace_days": 0,
               "expires_at": expires.isoformat(), "haircut_bps": None, "warning_bps": val.DEFAULT_WARNING_BPS,
               "margin_call_bps": val.DEFAULT_MARGIN_CALL_BPS, "liquidation_bps": val.DEFAULT_LIQUIDATION_BPS,
               "transfer_on_default": False, "margin_level": "ok", "hold_id": lock.seq,
               # Priority is kept: the claim's own registration number and time.
               "registration_no": first["registration_no"], "registered_at": repo.jsonable(first["registered_at"]),
               "promoted_from_claim": first["id"]}
    state = lifecycle.apply({}, "promoted", {"set": changes})
    await repo.insert_pledge(conn, new_id, number, state)
    if first["reference"]:
        await repo.add_references(conn, new_id, [("claim", f"{first['reference']}#{first['id']}")])
    ev = await repo.add_event(conn, new_id, "promoted", {"set": changes, "from_pledge": p["id"],
                                                         "claim": first["id"]}, [void.seq, lock.seq],
                              who.actor, None, None)
    await repo.enqueue_webhook(conn, ev["id"], ev["type"], {first["claimant_id"]: repo.event_view(ev, number)})
    await repo.update_claim(conn, first["id"], status="promoted")
    await repo.move_claims(conn, [cl["id"] for cl in rest], new_id)
    for cl in lapsed:
        await repo.update_claim(conn, cl["id"], status="lapsed")
    await _record(conn, p, "released", {}, info={"note": note, "promoted_claim": first["id"], "promoted_to": new_id,
                                                 "claims_moved": [cl["id"] for cl in rest],
                                                 "claims_lapsed": [cl["id"] for cl in lapsed]},
                  actor=who.actor, seqs=[void.seq, lock.seq], client_id=client_id, fp=fp)


# ----------------------------------------------------------------------------------- ranked claims


@translate_refusals
async def file_claim(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, loan_contract: str,
                     amount: str, term_end: date, reference: str | None) -> dict[str, Any]:
    """A second-ranking creditor records its claim on a pledged lot; it counts once the pledgor confirms.

    A lot in the public register (active or being enforced) may be claimed on by any bank; anything
    else is 404 unless the caller may see it. The answer is the claim alone: a filing grants no
    visibility of the senior registration (pledges.visibility)."""
    fen = to_base(amount, CNY_DECIMALS, field="amount")
    if term_end < today():
        raise Invalid("term_ended", f"the claim's term ended on {term_end}")
    fp = fingerprint({"op": "file_claim", "pledge": pledge_id, "contract": loan_contract, "amount": fen,
                      "term_end": term_end.isoformat(), "reference": reference})

    async def visible(conn: AsyncConnection, p: dict[str, Any]) -> bool:
        if p["status"] in lifecycle.PUBLIC or await _role(conn, who, p) is not None:
            return True
        prior = await repo.event_by_client(conn, who.actor, client_id)  # a retry gets its first answer
        return prior is not None and prior.pledge_id == p["id"]

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        if who.kind != "bank":
            raise Forbidden("only a bank files a ranked claim")
        lifecycle.require(p["status"], "file_claim")
        claim_id = await repo.insert_claim(conn, p["id"], who.participant_id, loan_contract, fen, term_end, reference)
        await _record(conn, p, "claim_filed", {}, info={"claim": claim_id, "claimant": who.participant_id,
                                                        "amount": fen, "term_end": term_end.isoformat()},
                      actor=who.actor, client_id=client_id, fp=fp, notify=(who.participant_id,))

    await _mutate(rt, who, client_id, pledge_id, fp, body, visible=visible, answer=False)
    async with rt.read() as conn:
        event = await repo.event_by_client(conn, who.actor, client_id)
        assert event is not None and event.type == "claim_filed"
        return await _claim_answer(conn, int(event.data["claim"]))


async def _claim_answer(conn: AsyncConnection, claim_id: int) -> dict[str, Any]:
    """One claim as its claimant sees it: its own terms, status and rank, and which lot it is on."""
    cl = await repo.get_claim(conn, claim_id)
    assert cl is not None
    rank = None
    if cl["status"] == "registered":
        live = await repo.claims_of(conn, cl["pledge_id"], ("registered",))
        rank = 2 + sorted(x["registration_no"] for x in live).index(cl["registration_no"])
    number = (await repo.get_pledge(conn, cl["pledge_id"]) or {}).get("number")
    return {**_claim_view(cl, rank), "pledge_id": cl["pledge_id"], "pledge_number": number}


async def _claim_mutation(rt: Runtime, who: Principal, client_id: str, claim_id: int, op: str,
                          body: Callable[[AsyncConnection, dict[str, Any], dict[str, Any], bytes], Awaitable[None]],
                          *, answer_pledge: bool = True) -> dict[str, Any]:
    """Claim changes run under the lot's pledge row lock (pledge first, then claim: one lock order).

    A claim is seen by its claimant and by the lot's parties; anyone else gets 404 as for no claim."""
    async with rt.read() as conn:
        claim = await repo.get_claim(conn, claim_id)
        lot = await repo.get_pledge(conn, claim["pledge_id"]) if claim is not None else None
    if claim is None or lot is None or not vis.claim_visible(who.participant_id, who.kind, lot, claim):
        raise NotFound("claim", claim_id)
    fp = fingerprint({"op": op, "claim": claim_id})

    async def seen(conn: AsyncConnection, p: dict[str, Any]) -> bool:
        return True  # the claim's visibility decides, checked above and again under the lock below

    async def wrapped(conn: AsyncConnection, p: dict[str, Any]) -> None:
        cl = await repo.lock_claim(conn, claim_id)
        if cl is None or not vis.claim_visible(who.participant_id, who.kind, p, cl):
            raise NotFound("claim", claim_id)
        if cl["pledge_id"] != p["id"]:
            raise DomainError("claim_moved", "the claim moved to another pledge (its senior was released); retry")
        await body(conn, p, cl, fp)

    out = await _mutate(rt, who, client_id, int(claim["pledge_id"]), fp, wrapped, visible=seen,
                        answer=answer_pledge)
    if answer_pledge:
        return out
    async with rt.read() as conn:
        return await _claim_answer(conn, claim_id)


@translate_refusals
async def confirm_claim(rt: Runtime, who: Principal, client_id: str, claim_id: int) -> dict[str, Any]:
    async def body(conn: AsyncConnection, p: dict[str, Any], cl: dict[str, Any], fp: bytes) -> None:
        _require_pledgor(who, p)
        if cl["status"] != "filed":
            raise DomainError("claim_not_filed", f"claim {claim_id} is {cl['status']}")
        lifecycle.require(p["status"], "file_claim")
        reg = await repo.next_registration_no(conn)
        await repo.update_claim(conn, claim_id, status="registered", registration_no=reg, registered_at=now())
        await _record(conn, p, "claim_registered", {}, info={"claim": claim_id, "registration_no": reg},
                      actor=who.actor, client_id=client_id, fp=fp, notify=(cl["claimant_id"],))

    return await _claim_mutation(rt, who, client_id, claim_id, "confirm_claim", body)


@translate_refusals
async def release_claim(rt: Runtime, who: Principal, client_id: str, claim_id: int) -> dict[str, Any]:
    """The claimant gives up its claim; the answer is the claim (it sees the lot no longer)."""
    async def body(conn: AsyncConnection, p: dict[str, Any], cl: dict[str, Any], fp: bytes) -> None:
        if who.participant_id != cl["claimant_id"]:
            raise Forbidden("only the claimant releases its claim")
        if cl["status"] not in ("filed", "registered"):
            raise DomainError("claim_closed", f"claim {claim_id} is {cl['status']}")
        await repo.update_claim(conn, claim_id, status="released")
        await _record(conn, p, "claim_released", {}, info={"claim": claim_id}, actor=who.actor, client_id=client_id,
                      fp=fp, notify=(cl["claimant_id"],))

    return await _claim_mutation(rt, who, client_id, claim_id, "release_claim", body, answer_pledge=False)


# ----------------------------------------------------------------------------------- valuation and margin

_CALL_EVENT = {"warning": "warning", "margin_call": "margin_call", "liquidation": "liquidation_call"}


async def _margin_event(conn: AsyncConnection, p: dict[str, Any], new: str, value: int, ratio: int,
                        deadline: datetime | None, actor: str) -> None:
    """An event when the margin level changes: worse -> warning / call; better -> cured (or a milder call)."""
    old = p["margin_level"]
    if new == old:
        return
    if new == "margin_call":
        # Keep the first deadline of a call that only moved from liquidation back to margin call.
        cure = p["cure_deadline"] if old == "liquidation" and p["cure_deadline"] else deadline
    else:
        cure = None
    kind = _CALL_EVENT[new] if val.worse(new, old) or new == "margin_call" else "cured"
    await _record(conn, p, kind, {"margin_level": new, "cure_deadline": cure},
                  info={"level": new, "previous_level": old, "value": value, "ratio_bps": ratio,
                        "secured_amount": p["secured_amount"], "cure_deadline": repo.jsonable(cure)},
                  actor=actor)


async def _reassess(conn: AsyncConnection, p: dict[str, Any], *, actor: str) -> None:
    """After a change of quantity or terms, judge the margin again at the last mark (if there is one)."""
    if p["last_price"] is None or p["status"] not in lifecycle.LOCKED:
        return
    haircut = p["haircut_bps"] if p["haircut_bps"] is not None else p["effective_haircut_bps"]
    value = val.collateral_value(p["quantity"], p["decimals"], p["last_price"], haircut)
    th = val.Thresholds(p["warning_bps"], p["margin_call_bps"], p["liquidation_bps"])
    level = val.level(value, p["secured_amount"], th)
    as_of = _d(p["last_valued_on"]) if p["last_valued_on"] else today()
    await _margin_event(conn, p, level, value, val.ratio_bps(value, p["secured_amount"]), val.next_open(as_of), actor)


async def _deadline_check(conn: AsyncConnection, p: dict[str, Any], as_of: date, horizon_days: int,
                          actor: str) -> None:
    """Warn once per deadline when pledged units near the end of their usability (validity, compliance year)."""
    deadlines = []
    for a in await repo.usable_attributes(conn, p["instrument"], p["serials"]):
        d = val.usable_deadline(a["kind"], a["instrument_attributes"] or {}, a["batch_attributes"] or {})
        if d is not None:
            deadlines.append(d)
    if not deadlines:
        return
    first = min(deadlines)
    if not val.deadline_near(first, as_of, horizon_days) or p["deadline_warned"] == first.isoformat():
        return
    await _record(conn, p, "deadline_warning", {"deadline_warned": first},
                  info={"deadline": first, "days_left": (first - as_of).days, "term_end": p["term_end"],
                        "before_term_end": first <= _d(p["term_end"])}, actor=actor)


@translate_refusals
async def revalue(rt: Runtime, instrument: str, price_fen: int, as_of: date, *, actor: str = SYSTEM_ACTOR,
                  client_id: str | None = None, cure_deadline: datetime | None = None) -> dict[str, Any]:
    """Value every live pledge of `instrument` at `price_fen` (fen per whole unit) as of the close of `as_of`.

    The exchange's end-of-day close calls this too. Repeating it for the same day is a no-op (the mark
    and each valuation are keyed by day); a different price for a day already marked is refused.
    The cure deadline of a margin call is the next open unless the caller (who knows the calendar) says.
    """
    if price_fen <= 0:
        raise Invalid("invalid_price", "the price must be positive")
    await instruments.get(rt, instrument)
    fp = fingerprint({"op": "revalue", "instrument": instrument, "price": price_fen, "as_of": as_of.isoformat()})
    async with rt.tx() as conn:
        if client_id is not None:
            prior = await repo.mark_by_client(conn, actor, client_id)
            if prior is not None:
                check_replay(prior.fingerprint, fp)
        existing = await repo.mark(conn, instrument, as_of)
        if existing is not None and existing.price != price_fen:
            raise DomainError("mark_conflict", f"{instrument} is already marked at {_cny(existing.price)} for {as_of}")
        if existing is None:
            await repo.insert_mark(conn, instrument, as_of, price_fen, actor, client_id, fp)
        ids = await repo.live_pledges_of_instrument(conn, instrument)
    deadline = cure_deadline or val.next_open(as_of)
    horizon = rt.settings.pledge_deadline_warning_days
    results = []
    for pledge_id in ids:
        async with rt.tx() as conn:
            p = await repo.lock_pledge(conn, pledge_id)
            if p is None or p["status"] not in lifecycle.LOCKED:
                continue
            if (p["enforcement"] or {}).get("method") == "exchange":
                continue  # the units already left the pledgor: nothing to mark any more
            haircut = p["effective_haircut_bps"]
            value = val.collateral_value(p["quantity"], p["decimals"], price_fen, haircut)
            ratio = val.ratio_bps(value, p["secured_amount"])
            th = val.Thresholds(p["warning_bps"], p["margin_call_bps"], p["liquidation_bps"])
            level = val.level(value, p["secured_amount"], th)
            if not await repo.insert_valuation(conn, p["id"], as_of, price_fen, p["quantity"], haircut, value, ratio,
                                               level):
                results.append({"pledge_id": p["id"], "level": p["margin_level"], "already_valued": True})
                continue
            await _record(conn, p, "revalued", {"last_price": price_fen, "last_value": value, "last_ratio_bps": ratio,
                                                "last_valued_on": as_of},
                          info={"price": price_fen, "value": value, "ratio_bps": ratio, "haircut_bps": haircut,
                                "level": level, "secured_amount": p["secured_amount"]}, actor=actor)
            await _margin_event(conn, p, level, value, ratio, deadline, actor)
            await _deadline_check(conn, p, as_of, horizon, actor)
            results.append({"pledge_id": p["id"], "number": p["number"], "value": _cny(value), "ratio_bps": ratio,
                            "level": level, "cure_deadline": p["cure_deadline"]})
    kick(rt)
    return {"instrument": instrument, "as_of": as_of, "price": _cny(price_fen), "pledges": results}


# ----------------------------------------------------------------------------------- enforcement


async def _waterfall(conn: AsyncConnection, rt: Runtime, p: dict[str, Any], proceeds: int, outstanding: int,
                     fee: int) -> tuple[list[wf.Payout], dict[str, int], list[dict[str, Any]]]:
    """Payouts of `proceeds` and the cash account of each payee."""
    claims = await repo.claims_of(conn, p["id"], ("registered",))
    juniors = [wf.Claim(f"claim:{cl['id']}", cl["amount"], cl["registration_no"], cl["id"]) for cl in claims]
    payouts = wf.distribute(proceeds, fee=fee, pledgee=wf.Claim("pledgee", outstanding), juniors=juniors,
                            owner="owner", fee_party="fee")
    return payouts, await _payee_accounts(rt, p, claims), claims


async def _payee_accounts(rt: Runtime, p: dict[str, Any], claims: list[dict[str, Any]]) -> dict[str, int]:
    accounts = {"fee": rt.system["fees"], "pledgee": await _account(rt, p["pledgee_id"], "cash"),
                "owner": await _account(rt, p["pledgor_id"], "cash")}
    for cl in claims:
        accounts[f"claim:{cl['id']}"] = await _account(rt, cl["claimant_id"], "cash")
    return accounts


def _payout_view(payouts: list[wf.Payout], p: dict[str, Any], claims: list[dict[str, Any]]) -> list[dict[str, Any]]:
    who = {"pledgee": p["pledgee_id"], "owner": p["pledgor_id"], "fee": None}
    who.update({f"claim:{cl['id']}": cl["claimant_id"] for cl in claims})
    return [{"party": x.party, "role": x.role, "participant_id": who.get(x.party), "claimed_fen": x.claimed,
             "paid_fen": x.paid, "claimed": _cny(x.claimed), "paid": _cny(x.paid)} for x in payouts]


def _notional(price_fen: int, quantity: int, decimals: int) -> int:
    value, rest = divmod(price_fen * quantity, 10**decimals)
    if rest:
        raise Invalid("price_not_whole_fen", "price × quantity is not a whole number of fen")
    return value


async def _settle_claims(conn: AsyncConnection, pledge_id: int, payouts: list[wf.Payout]) -> None:
    for x in payouts:
        if x.role == "junior":
            await repo.update_claim(conn, int(x.party.split(":")[1]), status="paid", paid=x.paid)
    # Claims the pledgor never confirmed were never registered: they lapse with the lot.
    for cl in await repo.claims_of(conn, pledge_id, ("filed",)):
        await repo.update_claim(conn, cl["id"], status="lapsed")


@translate_refusals
async def enforce(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, method: str, reason: str,
                  outstanding: str | None, price: str | None, buyer_id: int | None, fee: str | None
                  ) -> dict[str, Any]:
    """On default: `transfer` (折价: units to the bank at no less than the last mark, the bank pays out any
    surplus), `sale` (a negotiated sale the buyer accepts: DvP), or `exchange` (units to the bank's escrow
    for sale on the exchange; proceeds arrive through `proceeds_arrived`)."""
    fp = fingerprint({"op": "enforce", "pledge": pledge_id, "method": method, "reason": reason,
                      "outstanding": outstanding, "price": price, "buyer": buyer_id, "fee": fee})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        _require_pledgee(who, p)
        lifecycle.require(p["status"], "enforce")
        _require_unexpired(p)
        await _require_unfrozen(conn, p, "enforced")
        owed = p["secured_amount"] if outstanding is None else to_base(outstanding, CNY_DECIMALS, field="outstanding")
        if owed > p["secured_amount"]:
            raise Invalid("outstanding_exceeds_secured", "the pledge secures at most "
                          f"{_cny(p['secured_amount'])}; the rest of the debt is unsecured")
        fee_fen = to_base(fee, CNY_DECIMALS, field="fee", allow_zero=True) if fee else 0
        base = {"method": method, "reason": reason, "outstanding": owed, "fee": fee_fen, "declared_at": now(),
                "declared_by": who.actor}
        if method == "sale":
            await _propose_sale(conn, rt, who, p, base, price, buyer_id, client_id, fp)
        elif method == "transfer":
            await _appropriate(conn, rt, who, p, base, price, client_id, fp)
        elif method == "exchange":
            entry = await rt.submit(c.Request(who.actor, c.PostHold(p["hold_id"]), _ledger_id(p, "post-to-escrow"),
                                              _meta(p, "enforce-exchange", reason=reason)))
            enforcement = {**base, "escrow_account": await escrow_account(rt, p["pledgee_id"]), "received": 0,
                           "paid": {}, "declared_at": repo.jsonable(base["declared_at"])}
            await _record(conn, p, "exchange_sale_started", {"enforcement": enforcement},
                          info={"serials": p["serials"]}, actor=who.actor, seqs=[entry.seq], client_id=client_id,
                          fp=fp)
        else:
            raise Invalid("invalid_method", "method is transfer, sale or exchange")

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


async def _propose_sale(conn: AsyncConnection, rt: Runtime, who: Principal, p: dict[str, Any], base: dict[str, Any],
                        price: str | None, buyer_id: int | None, client_id: str, fp: bytes) -> None:
    if price is None or buyer_id is None:
        raise Invalid("sale_terms_required", "a negotiated sale names the buyer and the price")
    buyer = await participants.lookup(rt, buyer_id)
    if buyer["kind"] not in BUYER_KINDS or buyer_id in (p["pledgor_id"], p["pledgee_id"]):
        raise Invalid("invalid_buyer", "the buyer must be a third party that can hold units (the bank itself "
                      "takes the units with method transfer)")
    if buyer["status"] != "active":
        raise DomainError("participant_suspended", f"participant {buyer_id} is suspended")
    price_fen = to_base(price, CNY_DECIMALS, field="price")
    proceeds = _notional(price_fen, p["quantity"], p["decimals"])
    payouts, _, claims = await _waterfall(conn, rt, p, proceeds, base["outstanding"], base["fee"])
    enforcement = {**base, "declared_at": repo.jsonable(base["declared_at"]), "buyer_id": buyer_id,
                   "price": price_fen, "proceeds": proceeds, "expected": _payout_view(payouts, p, claims)}
    await _record(conn, p, "sale_proposed", {"enforcement": enforcement}, info={"buyer_id": buyer_id},
                  actor=who.actor, client_id=client_id, fp=fp)


async def _appropriate(conn: AsyncConnection, rt: Runtime, who: Principal, p: dict[str, Any], base: dict[str, Any],
                       price: str | None, client_id: str, fp: bytes) -> None:
    """折价: the bank takes the units at an agreed price no lower than the last mark and pays the surplus."""
    if not p["transfer_on_default"]:
        raise DomainError("transfer_not_agreed", "the pledge contract does not let the bank take the units; sell them")
    if price is None and p["last_price"] is None:
        raise Invalid("price_required", "no mark exists for this instrument yet; name the price")
    price_fen = p["last_price"] if price is None else to_base(price, CNY_DECIMALS, field="price")
    if p["last_price"] is not None and price_fen < p["last_price"]:
        raise DomainError("price_below_mark", f"the price is below the last mark {_cny(p['last_price'])}")
    proceeds = _notional(price_fen, p["quantity"], p["decimals"])
    payouts, accounts, claims = await _waterfall(conn, rt, p, proceeds, base["outstanding"], base["fee"])
    escrow = await escrow_account(rt, p["pledgee_id"])
    bank_holding = await _account(rt, p["pledgee_id"], "holding")
    reqs = [
        c.Request(who.actor, c.PostHold(p["hold_id"]), _ledger_id(p, "post"), _meta(p, "enforce-transfer")),
        c.Request(who.actor, c.Transfer(escrow, bank_holding, p["instrument"], p["quantity"],
                                        await _pieces(conn, p["instrument"], _ranges(p["serials"]))),
                  _ledger_id(p, "deliver"),
                  _meta(p, "enforce-transfer")),
    ]
    # The bank's own share is paid in kind; the rest of the value it pays from its cash.
    reqs += [c.Request(who.actor, c.Transfer(accounts["pledgee"], accounts[x.party], "CNY", x.paid),
                       _ledger_id(p, f"pay-{x.party}"), _meta(p, "enforce-transfer", role=x.role))
             for x in payouts if x.paid and x.party != "pledgee"]
    entries = await rt.submit_linked(reqs)
    await _settle_claims(conn, p["id"], payouts)
    enforcement = {**base, "declared_at": repo.jsonable(base["declared_at"]), "price": price_fen,
                   "proceeds": proceeds, "distribution": _payout_view(payouts, p, claims), "completed_at": now()}
    await _record(conn, p, "enforced", {"enforcement": enforcement},
                  info={"distribution": _payout_view(payouts, p, claims)}, actor=who.actor,
                  seqs=[e.seq for e in entries], client_id=client_id, fp=fp,
                  notify=tuple(cl["claimant_id"] for cl in claims))


@translate_refusals
async def accept_sale(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, price: str) -> dict[str, Any]:
    """The buyer accepts the bank's sale: units against cash in one linked ledger group (DvP)."""
    fp = fingerprint({"op": "accept_sale", "pledge": pledge_id, "price": price})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        e = p["enforcement"] or {}
        if who.participant_id != e.get("buyer_id"):  # the party first, then the state
            raise Forbidden("only the named buyer accepts the sale")
        lifecycle.require(p["status"], "accept_sale")
        if e.get("method") != "sale":
            raise DomainError("no_sale_proposed", "the registration is not offered for a negotiated sale")
        if to_base(price, CNY_DECIMALS, field="price") != e["price"]:
            raise DomainError("price_mismatch", f"the sale is offered at {_cny(e['price'])} per unit")
        _require_unexpired(p)
        await _require_unfrozen(conn, p, "sold")
        payouts, accounts, claims = await _waterfall(conn, rt, p, e["proceeds"], e["outstanding"], e["fee"])
        escrow = await escrow_account(rt, p["pledgee_id"])
        buyer_holding = await _account(rt, who.participant_id, "holding")
        buyer_cash = await _account(rt, who.participant_id, "cash")
        reqs = [
            c.Request(who.actor, c.PostHold(p["hold_id"]), _ledger_id(p, "post"), _meta(p, "enforce-sale")),
            c.Request(who.actor, c.Transfer(escrow, buyer_holding, p["instrument"], p["quantity"],
                                            await _pieces(conn, p["instrument"], _ranges(p["serials"]))),
                      _ledger_id(p, "deliver"),
                      _meta(p, "enforce-sale", buyer=who.participant_id)),
        ]
        reqs += [c.Request(who.actor, c.Transfer(buyer_cash, accounts[x.party], "CNY", x.paid),
                           _ledger_id(p, f"pay-{x.party}"), _meta(p, "enforce-sale", role=x.role))
                 for x in payouts if x.paid]
        entries = await rt.submit_linked(reqs)
        await _settle_claims(conn, p["id"], payouts)
        view = _payout_view(payouts, p, claims)
        enforcement = {**e, "distribution": view, "completed_at": now().isoformat()}
        await _record(conn, p, "enforced", {"enforcement": enforcement}, info={"distribution": view,
                                                                               "buyer_id": who.participant_id},
                      actor=who.actor, seqs=[x.seq for x in entries], client_id=client_id, fp=fp,
                      notify=tuple(cl["claimant_id"] for cl in claims))

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


@translate_refusals
async def cancel_sale(rt: Runtime, who: Principal, client_id: str, pledge_id: int, note: str | None) -> dict[str, Any]:
    fp = fingerprint({"op": "cancel_sale", "pledge": pledge_id, "note": note})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        _require_pledgee(who, p)
        lifecycle.require(p["status"], "cancel_sale")
        if (p["enforcement"] or {}).get("method") != "sale":
            raise DomainError("exchange_sale_in_progress", "units already went to escrow for an exchange sale")
        await _record(conn, p, "sale_cancelled", {"enforcement": None}, info={"note": note}, actor=who.actor,
                      client_id=client_id, fp=fp)

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


@translate_refusals
async def proceeds_arrived(rt: Runtime, pledge_id: int, amount_fen: int, *, source_account: int, client_id: str,
                           actor: str = SYSTEM_ACTOR, final: bool = False) -> dict[str, Any]:
    """For the exchange (market) path: cash from selling an escrowed lot has arrived in `source_account`.

    Pays this part by the same waterfall (cumulative: earlier parts count, nothing is clawed back),
    from `source_account` in one linked group. `final=True` closes the enforcement. The market calls
    this after each settlement of the lot; idempotent per `client_id`.
    """
    fp = fingerprint({"op": "proceeds", "pledge": pledge_id, "amount": amount_fen, "source": source_account,
                      "final": final})
    result: dict[str, Any] = {}

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        lifecycle.require(p["status"], "proceeds")
        e = dict(p["enforcement"] or {})
        if e.get("method") != "exchange":
            raise DomainError("not_exchange_sale", "the registration is not being sold on the exchange")
        claims = await repo.claims_of(conn, p["id"], ("registered", "paid"))
        juniors = [wf.Claim(f"claim:{cl['id']}", cl["amount"], cl["registration_no"], cl["id"]) for cl in claims]
        total = e["received"] + amount_fen
        payouts = wf.increment(e["paid"], total, fee=e["fee"], pledgee=wf.Claim("pledgee", e["outstanding"]),
                               juniors=juniors, owner="owner", fee_party="fee")
        accounts = await _payee_accounts(rt, p, claims)
        reqs = [c.Request(actor, c.Transfer(source_account, accounts[x.party], "CNY", x.paid),
                          _ledger_id(p, f"proceeds-{x.party}"), _meta(p, "proceeds", role=x.role))
                for x in payouts if x.paid]
        entries = await rt.submit_linked(reqs) if reqs else []
        paid = dict(e["paid"])
        for x in payouts:
            paid[x.party] = paid.get(x.party, 0) + x.paid
        e.update(received=total, paid=paid)
        for cl in claims:
            await repo.update_claim(conn, cl["id"], status="paid", paid=paid.get(f"claim:{cl['id']}", 0))
        view = _payout_view(payouts, p, claims)
        await _record(conn, p, "proceeds_distributed", {"enforcement": e}, info={"amount": amount_fen,
                                                                                 "distribution": view},
                      actor=actor, seqs=[x.seq for x in entries], client_id=client_id, fp=fp,
                      notify=tuple(cl["claimant_id"] for cl in claims))
        if final:
            e = {**e, "completed_at": now().isoformat()}
            await _record(conn, p, "enforced", {"enforcement": e}, info={"received": total, "paid": paid},
                          actor=actor, notify=tuple(cl["claimant_id"] for cl in claims))
        result.update(distribution=view)

    await _mutate(rt, None, client_id, pledge_id, fp, body, actor=actor)
    async with rt.read() as conn:
        p = await repo.get_pledge(conn, pledge_id)
    assert p is not None
    return {"pledge": p["number"], "status": p["status"], "enforcement": p["enforcement"], **result}


# ----------------------------------------------------------------------------------- expiry and freezes


@translate_refusals
async def expire_due(rt: Runtime, at: datetime | None = None) -> list[int]:
    """Expire registrations past their term (+ grace). Idempotent; safe in several processes at once."""
    at = at or now()
    async with rt.read() as conn:
        ids = await repo.due_pledges(conn, at)
    done = []
    for pledge_id in ids:
        try:
            async with rt.tx() as conn:
                p = await repo.lock_pledge(conn, pledge_id)
                if p is None or _dt(p["expires_at"]) > at or not (
                        p["status"] == lifecycle.ACTIVE
                        or (p["status"] == lifecycle.ENFORCING and (p["enforcement"] or {}).get("method") == "sale")):
                    continue
                entry = await rt.submit(c.Request(SYSTEM_ACTOR, c.ExpireHold(p["hold_id"]), _ledger_id(p, "expire"),
                                                  _meta(p, "expire")))
                claims = await repo.claims_of(conn, p["id"], ("filed", "registered"))
                for cl in claims:
                    await repo.update_claim(conn, cl["id"], status="lapsed")
                await _record(conn, p, "expired", {}, info={"claims_lapsed": [cl["id"] for cl in claims]},
                              actor=SYSTEM_ACTOR, seqs=[entry.seq],
                              notify=tuple(cl["claimant_id"] for cl in claims))
                done.append(pledge_id)
        except DomainError as exc:  # e.g. the ledger clock is a hair behind ours: next sweep
            log.warning("pledge %s not expired: %s %s", pledge_id, exc.code, exc.message)
    if done:
        kick(rt)
    return done


async def frozen_pledge_units(conn: AsyncConnection, freeze_hold: int) -> dict[int, int]:
    """Pledge hold -> number of its units the freeze covers (read before the freeze is resolved)."""
    units: dict[int, int] = {}
    for b in await repo.frozen_blocks(conn, freeze_hold):
        if b["hold"] is not None:
            units[b["hold"]] = units.get(b["hold"], 0) + b["end_serial"] - b["start_serial"] + 1
    return units


async def note_freeze(conn: AsyncConnection, units: dict[int, int], freeze_hold: int, event_type: str,
                      info: dict[str, Any], actor: str) -> list[int]:
    """Tell the banks whose locked units a court freeze now covers (freeze_noticed) or left (freeze_lifted)."""
    if not units:
        return []
    noted = []
    for pledge_id in await repo.pledges_of_holds(conn, sorted(units)):
        p = await repo.lock_pledge(conn, pledge_id)
        if p is None or p["status"] not in lifecycle.LOCKED:
            continue
        await _record(conn, p, event_type, {}, info={**info, "freeze_hold": freeze_hold,
                                                     "units": units.get(p["hold_id"])}, actor=actor)
        noted.append(pledge_id)
    return noted


# ----------------------------------------------------------------------------------- public inquiry

_inquiry_signers: dict[Path, Signer] = {}
INQUIRY_KEY_FILE = "inquiry.key"


def get_signer(rt: Runtime) -> Signer:
    """The key that signs inquiry certificates.

    1. the registry's checkpoint key when the runtime runs the publisher (its public key is in the log);
    2. on a read replica (no publisher), the same registry key if this process is configured with it
       (ENVX_SIGNING_KEY, or the key file exists) -- never generated here, so a replica mints no key;
    3. else `<data_dir>/inquiry.key`, generated once with mode 0600 (to be unified with 1 later).
    """
    verifiable = getattr(rt, "verifiable", None)
    signer = getattr(verifiable, "signer", None)
    if isinstance(signer, Signer):
        return signer
    from exchange import signing  # the checkpoint key's loader (same settings, same rules)

    settings = rt.settings
    if settings.signing_key is not None or signing.key_path(settings).exists():
        path = signing.key_path(settings)
        if path not in _inquiry_signers:
            _inquiry_signers[path] = signing.load_signer(settings)
        return _inquiry_signers[path]
    path = Path(settings.data_dir) / INQUIRY_KEY_FILE
    cached = _inquiry_signers.get(path)
    if cached is not None:
        return cached
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker made it first
        else:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(generate_signer_key(settings.origin)[0] + "\n")
    signer = Signer.from_key_string(path.read_text(encoding="ascii").strip())
    _inquiry_signers[path] = signer
    return signer


def _public_row(kind: str, r: dict[str, Any]) -> dict[str, Any]:
    """One result of the public inquiry: what the register publishes, nothing else -- no balances, no
    loan contracts or amounts, no notice numbers, no participant ids. A USCC is an organisation's
    public identifier (it is on its business licence) and is shown; a person's ID number never is."""
    dec = r["decimals"]
    serials = [{"start": s, "end": e} for s, e in _ranges(r.get("serials"))]
    if kind == "pledges":
        junior = r["kind"] == "junior_claim"
        return {"type": r["kind"], "registration_number": f"{r['lot_number']}-J{r['claim_id']}" if junior
                else r["lot_number"], "lot_registration_number": r["lot_number"], "rank_on_lot": r["rank_on_lot"],
                "registration_no": r["registration_no"], "status": r["status"],
                "pledgor": r["pledgor_name"], "pledgor_uscc": r["pledgor_uscc"], "pledgee": r["pledgee_name"],
                "instrument": r["instrument"], "quantity": to_text(r["quantity"], dec), "serials": serials,
                "term_start": r["term_start"].isoformat() if r["term_start"] else None,
                "term_end": r["term_end"].isoformat(),
                "registered_at": repo.jsonable(r["registered_at"]), "references": r["refs"]}
    if kind == "freezes":
        return {"freeze_no": r["freeze_no"], "court": r["court_name"], "case_number": r["case_number"],
                "holder": r["holder_name"], "holder_uscc": r["holder_uscc"], "instrument": r["instrument"],
                "quantity": to_text(r["quantity"], dec), "serials": serials,
                "term_start": r["term_start"].isoformat(), "term_end": r["term_end"].isoformat(),
                "frozen_at": repo.jsonable(r["created_at"])}
    # A judicial retirement names the payer (as the judgment does), the court and the case.
    return {"entry_seq": r["seq"], "retired_at": datetime.fromtimestamp(r["ts"] / 1e6, UTC).isoformat(),
            "holder": r["holder_name"], "holder_uscc": r["holder_uscc"], "instrument": r["instrument"],
            "batch": r["batch"], "serial_start": r["start_serial"], "serial_end": r["end_serial"],
            "quantity": to_text(r["end_serial"] - r["start_serial"] + 1, dec),
            "serial": f"{r['instrument']}-{r['batch']}-{r['start_serial']}-{r['end_serial']}",
            "purpose": r["purpose"], "beneficiary": r["beneficiary"] or None,
            "court": r["court_name"], "case_number": r["case_number"]}


async def public_search(rt: Runtime, kind: str, *, name: str | None, uscc: str | None, serial: int | None,
                        instrument: str | None, limit: int) -> dict[str, Any]:
    """公示查询 by the holder's whole registered name, its unified social credit code, or a serial."""
    name = name.strip() or None if name is not None else None
    uscc = uscc.strip().upper() or None if uscc is not None else None
    if not (name or uscc or serial):
        raise Invalid("query_required", "search by holder name, unified social credit code or serial number")
    if name is not None and len(repo.public_name(name) or "") < 2:
        raise Invalid("query_too_short", "a name search needs the holder's whole name (two characters or more)")
    async with rt.read() as conn:
        head = await repo.ledger_head(conn)
        if kind == "pledges":
            rows = await repo.public_pledges(conn, name=name, uscc=uscc, serial=serial, instrument=instrument,
                                             limit=limit, today=today())
        else:
            search = {"freezes": repo.public_freezes, "retirements": repo.public_retirements}[kind]
            rows = await search(conn, name=name, uscc=uscc, serial=serial, instrument=instrument, limit=limit)
    query = {k: v for k, v in (("name", name), ("uscc", uscc), ("serial", serial), ("instrument", instrument))
             if v is not None}
    results = [_public_row(kind, r) for r in rows]
    cert = {"type": certificate.TYPE, "registry": rt.settings.origin, "record": kind, "query": query,
            "results": results, "result_count": len(results), "truncated": len(results) >= limit,
            "issued_at": now().isoformat(timespec="seconds"), "ledger_head": head}
    return certificate.sign(cert, get_signer(rt))
