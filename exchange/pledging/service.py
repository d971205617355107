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
- Enforcement needs a default (`pledges.lifecycle.default_ground`) and claims what the secured scope
  covers (`pledges.scope`); it pays in the order of `pledges/waterfall.py`: fees, pledgee (its secured
  components), junior claimants, courts that froze part of the lot (their share of the surplus),
  owner. A negotiated sale settles delivery-versus-payment in one linked group; an exchange sale is
  listed or auctioned from the escrow and each settlement is paid out by the sequencer's settlement
  hook (`sale_settled`), reconciled by the worker.

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
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Forbidden, Invalid, NotFound
from exchange.core.idempotency import check_replay, fingerprint, internal
from exchange.core.principal import SYSTEM_ACTOR, Principal
from exchange.core.runtime import Runtime
from exchange.core.units import CNY_DECIMALS, iso, speak, stored_times, to_base, to_text
from exchange.pledging import repository as repo
from exchange.pledging import webhooks
from exchange.registry import encumbrances, expiry, instruments, participants
from exchange.registry.kinds import term_years
from exchange.trading import auctions, orders
from exchange.trading.pricing import notional
from ledger import commands as c
from ledger.note import Signer, generate_signer_key
from ledger.state import Entry
from pledges import certificate, lifecycle
from pledges import ranges as rg
from pledges import scope as sc
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


def _taken(take: Callable[[list[tuple[int, int]], int], list[tuple[int, int]]], ranges: list[tuple[int, int]],
           n: int, decimals: int) -> list[tuple[int, int]]:
    """`take` (pledges.ranges) of `n` base units, its refusal in the instrument's unit."""
    try:
        return take(ranges, n)
    except PledgeError as exc:
        raise DomainError(exc.code, speak(exc.message, decimals), exc.status) from None


def translate_refusals(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Refusals of the pure rules become domain errors (problem details) at the service boundary."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except PledgeError as exc:  # the pure rules mark times ({ts:...}); quantities are spoken by _taken
            raise DomainError(exc.code, speak(exc.message, 0), exc.status) from None

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


def _yours(who: Principal, *extra: int | None) -> tuple[int, ...]:
    """The accounts a ledger refusal may name to `who` (exchange/core/refusal_text.py): its own, and the escrow it
    holds as a pledgee; never the other party's."""
    return tuple(a for a in (who.cash_account, who.holding_account, *extra) if a is not None)


def _ranges(v: Any) -> list[tuple[int, int]]:
    return [(int(s), int(e)) for s, e in (v or [])]


# Keys whose integers are money (fen) or quantities (base units) in stored events and enforcement
# states; every answer, event and webhook shows them as decimal strings in CNY or the instrument's unit.
MONEY_KEYS = frozenset({
    "secured_amount", "last_price", "last_value", "price", "value", "amount", "outstanding", "fee", "proceeds",
    "received", "claimed", "paid", "secured", "unsecured", "overdue_amount", "net", "seller_fee", "caps", "total",
})
QUANTITY_KEYS = frozenset({"quantity", "units", "lot_quantity", "sold", "unsold", "filled", "still_frozen",
                           "unfrozen"})


def present(value: Any, decimals: int, unit: str | None = None) -> Any:
    """Stored integers in decimal strings, by key: money in CNY, quantities in the instrument's unit."""
    if isinstance(value, dict):
        return {k: present(v, decimals, "money" if k in MONEY_KEYS else "quantity" if k in QUANTITY_KEYS else unit)
                for k, v in value.items()}
    if isinstance(value, list):
        return [present(v, decimals, unit) for v in value]
    if unit is not None and isinstance(value, int) and not isinstance(value, bool):
        return to_text(value, CNY_DECIMALS if unit == "money" else decimals)
    return value


def _shown(view: dict[str, Any], decimals: int) -> dict[str, Any]:
    """An event view (repo.event_view) as callers and webhooks receive it: amounts and quantities in
    decimal strings, the times the registry stored in ISO 8601 (exchange/core/units.py)."""
    return stored_times({**view, "changes": present(view["changes"], decimals),
                         "details": present(view["details"], decimals)})


def _ledger_id(p: dict[str, Any], op: str) -> str:
    # Derived from the row version: a retry of the same step replays, the next step gets a new id. In the
    # registry's own namespace: no key of the caller's (whose actor it runs under) can pre-empt it.
    return internal("pledge", p["id"], f"v{p['version'] + 1}", op)


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
    """Background task: delivers the webhook outbox after commits, sweeps expired pledges and freezes,
    books enforcement-sale settlements the market's hook missed.

    Both jobs claim their rows in the database (leases, row locks, ledger client ids), so several
    processes may run the worker at once without double deliveries or double expiries.
    """

    def __init__(self, rt: Runtime, sender: webhooks.Sender | None = None,
                 sweeps: Sequence[Callable[[Runtime], Awaitable[object]]] = ()) -> None:
        self.rt = rt
        # Sweeps of other packages run on the same beat (judicial freezes' expiry, from the composition root).
        self.sweeps = tuple(sweeps)
        self.sender = sender or webhooks.http_sender(rt.settings.webhook_allowed_host_list)
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_sweep = 0.0
        self._hook: Callable[[str, list[dict[str, Any]]], Awaitable[None]] | None = None

    async def start(self) -> None:
        _workers[id(self.rt)] = self
        self._hook = settlement_hook(self.rt)  # enforcement sales pay out as the market settles them
        self.rt.settlement_hooks.append(self._hook)
        self.rt.close_hooks.append(self._revalue)  # valuations follow each close
        self._task = asyncio.create_task(self._run(), name="envx-pledge-worker")

    async def stop(self) -> None:
        _workers.pop(id(self.rt), None)
        with contextlib.suppress(ValueError):
            self.rt.settlement_hooks.remove(self._hook)
        with contextlib.suppress(ValueError):
            self.rt.close_hooks.remove(self._revalue)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _revalue(self, instrument: str, price: int, day: date) -> None:
        await revalue(self.rt, instrument, price, day)

    async def _run(self) -> None:
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
                    await reconcile_sales(self.rt)
                    await expire_due(self.rt)
                    for sweep in self.sweeps:
                        await sweep(self.rt)
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
    try:  # again at every delivery (exchange.pledging.webhooks): a name may resolve elsewhere later
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
        "secured_scope": present(sc.Scope.of(p["secured_scope"]).to_json(), dec),
        "declared_default": present(p["declared_default"], dec),
        "claims": [_claim_view(cl, claim_rank.get(cl["id"])) for cl in claims],
        "enforcement": present(_enforcement_view(enforcement), dec), "promoted_from_claim": p["promoted_from_claim"],
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
        return [_shown(repo.event_view(e), e["decimals"]) for e in events]
    roles: dict[int, tuple[str | None, set[int]]] = {}
    out = []
    for e in events:
        pid = e["pledge_id"]
        if pid not in roles:
            p = await repo.get_pledge(conn, pid)
            own = _own_claims(await repo.claims_of(conn, pid), who)
            roles[pid] = (vis.role(who.participant_id, who.kind, p, own) if p else None, {cl["id"] for cl in own})
        seen = vis.event_view(_shown(repo.event_view(e), e["decimals"]), *roles[pid])
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
    full = _shown(repo.event_view(ev, p["number"], p["instrument"]), p["decimals"])
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
        raise DomainError("pledge_expired", f"the registration expired at {iso(_dt(p['expires_at']))}")


async def _require_unfrozen(conn: AsyncConnection, p: dict[str, Any], verb: str) -> None:
    """Refuse a change of the lock while a court freeze sits on it, naming the court and case (the
    parties of a pledge know the freezes on its units; freezes are in the public register)."""
    frozen = [b for b in await repo.hold_blocks(conn, p["hold_id"]) if b["frozen_by"] is not None]
    if frozen:
        n = sum(b["end_serial"] - b["start_serial"] + 1 for b in frozen)
        cases = []
        for hold in sorted({b["frozen_by"] for b in frozen}):
            f = await repo.freeze_of_hold(conn, hold)
            cases.append(f"{f['court_name']}, case {f['case_number']}" if f else f"freeze hold {hold}")
        raise DomainError("frozen", f"{to_text(n, p['decimals'])} pledged units are frozen ({'; '.join(cases)}); the "
                          f"registration cannot be {verb} until the freeze is lifted")


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
    ], own=_yours(who))


# ----------------------------------------------------------------------------------- filing and consent


@translate_refusals
async def file(rt: Runtime, who: Principal, client_id: str, *, pledgor_id: int, pledgor_identifier: str | None,
               instrument: str, quantity: str,
               serials: list[tuple[int, int]] | None, loan_contract: str, secured_amount: str, term_start: date,
               term_end: date, grace_days: int, references: list[tuple[str, str]], haircut_bps: int | None,
               warning_bps: int | None, margin_call_bps: int | None, liquidation_bps: int | None,
               transfer_on_default: bool, secured_scope: dict[str, Any] | None = None) -> dict[str, Any]:
    """The bank files; nothing is locked until the pledgor confirms. `secured_scope` is the contract's
    担保范围 (pledges.scope; None: everything §389 covers), its caps in CNY decimal strings.

    The bank names its client by id *and* registered identifier (USCC, or a person's identity document
    number), as in the loan contract: an unknown id, a wrong identifier, a participant that cannot pledge
    or is suspended are all the same 404 (participants.counterparty), so filing tells a bank nothing about
    a participant it did not already know. A filing locks nothing, is seen by the bank and the pledgor only,
    and lapses unless the pledgor confirms it within ENVX_PLEDGE_CONFIRM_DAYS (it may decline it at once)."""
    if who.kind != "bank":
        raise Forbidden("only a bank files pledge registrations")
    if pledgor_id == who.participant_id:
        raise Invalid("invalid_pledgor", "a bank does not pledge units to itself")
    await participants.counterparty(rt, who, pledgor_id, kinds=PLEDGOR_KINDS, identifier=pledgor_identifier,
                                    identified=True)
    inst = await instruments.get(rt, instrument)
    if inst["kind"] == "currency":
        raise Invalid("not_pledgeable", "cash is not pledged in this registry; pledge credits or allowances")
    qty = to_base(quantity, inst["decimals"])
    named = rg.normalise(serials) if serials else None
    if named is not None and rg.total(named) != qty:
        raise Invalid("serials_amount_mismatch", "the named serial ranges do not add up to the quantity")
    if named is not None:
        async with rt.read() as conn:
            retired = await repo.retired_serials(conn, instrument, named)
        if retired:  # retirement is final and public: say so now, not at the pledgor's confirmation
            spans = ", ".join(f"{r['start_serial']}-{r['end_serial']} (entry {r['retired_seq']})" for r in retired)
            raise DomainError("serials_retired", f"serials {spans} of {instrument} are retired; retired units can "
                              "never be pledged", retired=[{"start": r["start_serial"], "end": r["end_serial"],
                                                            "entry_seq": r["retired_seq"]} for r in retired])
    scope = _scope_in(secured_scope)
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
        raise Invalid("reference_named_twice", "the same external reference is named twice")
    expires = val.end_of_day(term_end + timedelta(days=grace_days))
    changes = {"pledgee_id": who.participant_id, "pledgor_id": pledgor_id, "instrument": instrument,
               "quantity": qty, "requested_serials": [list(r) for r in named] if named else None, "serials": [],
               "loan_contract": loan_contract, "secured_amount": fen, "term_start": term_start.isoformat(),
               "term_end": term_end.isoformat(), "grace_days": grace_days, "expires_at": expires.isoformat(),
               "haircut_bps": haircut_bps, "warning_bps": th.warning_bps, "margin_call_bps": th.margin_call_bps,
               "liquidation_bps": th.liquidation_bps, "transfer_on_default": transfer_on_default,
               "margin_level": "ok", "secured_scope": scope}
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
        if now() >= _confirm_by(rt, p):
            raise DomainError("pledge_expired", f"the filing lapsed at {iso(_confirm_by(rt, p))}: the pledgor "
                              f"did not confirm it within {rt.settings.pledge_confirm_days} days; the bank files again")
        escrow = await escrow_account(rt, p["pledgee_id"])
        holding = await _account(rt, p["pledgor_id"], "holding")
        serials = await _pieces(conn, p["instrument"], _ranges(p["requested_serials"]), holding)
        await expiry.refuse_ended(rt, holding, p["instrument"], serials)  # a right whose term ended is no collateral
        try:
            entry = await rt.submit(c.Request(
                who.actor,
                c.CreateHold("pledge", holding, escrow, p["instrument"], p["quantity"], serials,
                             micros(_dt(p["expires_at"]))),
                _ledger_id(p, "lock"), _meta(p, "lock", loan_contract=p["loan_contract"],
                                             references=[r["reference"] for r in p["refs"]])), own=_yours(who))
        except DomainError as exc:  # the pledgor holds the units: tell it what stands on them
            raise await encumbrances.naming(conn, exc, account=holding, instrument=p["instrument"],
                                            serials=serials) from None
        reg = await repo.next_registration_no(conn)
        await _record(conn, p, "confirmed", {"hold_id": entry.seq, "serials": _serials_of(entry),
                                             "registration_no": reg, "registered_at": now()},
                      actor=who.actor, seqs=[entry.seq], client_id=client_id, fp=fp)

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


def _confirm_by(rt: Runtime, p: dict[str, Any]) -> datetime:
    """When a filing lapses unless confirmed: ENVX_PLEDGE_CONFIRM_DAYS after it was filed."""
    return _dt(p["created_at"]) + timedelta(days=rt.settings.pledge_confirm_days)


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
            extra = _taken(rg.take_lowest, [(b["start_serial"], b["end_serial"]) for b in free], add, p["decimals"])
        await _require_unfrozen(conn, p, "topped up")
        await expiry.refuse_ended(rt, holding, p["instrument"], extra)
        new = rg.union(_ranges(p["serials"]), extra)
        try:
            entries = await _relock(conn, rt, who, p, serials=new, quantity=p["quantity"] + add,
                                    expires_at=_dt(p["expires_at"]), op="top-up")
        except DomainError as exc:
            raise await encumbrances.naming(conn, exc, account=holding, instrument=p["instrument"],
                                            serials=extra if serials else ()) from None
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
            released = _taken(rg.take_highest, current, to_base(quantity, p["decimals"]), p["decimals"])
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
    await repo.enqueue_webhook(conn, ev["id"], ev["type"], {
        first["claimant_id"]: _shown(repo.event_view(ev, number, p["instrument"]), p["decimals"])})
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
        # A charge the holder sets on frozen property cannot be asserted against the court's creditor
        # (查扣冻规定): no new registration on a lot while a court freeze sits on it.
        await _require_unfrozen(conn, p, "given a new registered claim")
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
                        "secured_amount": p["secured_amount"], "cure_deadline": repo.jsonable(cure),
                        "price": p["last_price"], "quantity": p["quantity"]},
                  actor=actor, notify=(p["pledgor_id"],))  # the pledgor is the one who must cure


async def _reassess(conn: AsyncConnection, p: dict[str, Any], *, actor: str) -> None:
    """After a change of quantity or terms, judge the margin again at the last mark (if there is one)."""
    if p["last_price"] is None or p["status"] not in lifecycle.LOCKED:
        return
    haircut = p["haircut_bps"] if p["haircut_bps"] is not None else p["effective_haircut_bps"]
    value = val.collateral_value(p["quantity"], p["decimals"], p["last_price"], haircut, _years(p))
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
    and each valuation are keyed by day); a different price for a day already marked is refused
    (`mark_conflict`: a mark is never corrected in place). `as_of` may be neither after the registry's
    today (Asia/Shanghai, the runtime's clock: `valuation_date_in_future`) nor before the instrument's
    latest mark (`valuation_date_stale`): an old or a future price never replaces the current valuation.
    The cure deadline of a margin call is the next open unless the caller (who knows the calendar) says.

    One transaction: the mark and every pledge's valuation and events commit together or not at all. The
    pledges are locked in id order (as every other path locks one of them); each is valued before anything
    is written, and a price that would value one beyond pledges.valuation.MAX_VALUE is refused whole.
    """
    if price_fen <= 0:
        raise Invalid("invalid_price", "the price must be positive")
    await instruments.get(rt, instrument)
    fp = fingerprint({"op": "revalue", "instrument": instrument, "price": price_fen, "as_of": as_of.isoformat()})
    deadline = cure_deadline or val.next_open(as_of)
    horizon = rt.settings.pledge_deadline_warning_days
    results = []
    async with rt.tx() as conn:
        if client_id is not None:
            prior = await repo.mark_by_client(conn, actor, client_id)
            if prior is not None:
                check_replay(prior.fingerprint, fp)
        if as_of > expiry.today_of(rt):
            raise DomainError("valuation_date_in_future", f"{as_of} is after the registry's today "
                              f"({expiry.today_of(rt)}): no close exists for it yet")
        last = await repo.last_mark_day(conn, instrument)
        if last is not None and as_of < last:
            raise DomainError("valuation_date_stale", f"{instrument} is already marked for {last}: "
                              f"a close of {as_of} is older and may not replace it")
        existing = await repo.mark(conn, instrument, as_of)
        if existing is not None and existing.price != price_fen:
            raise DomainError("mark_conflict", f"{instrument} is already marked at {_cny(existing.price)} for {as_of}")
        marked = []
        for pledge_id in await repo.live_pledges_of_instrument(conn, instrument):
            p = await repo.lock_pledge(conn, pledge_id)
            if p is None or p["status"] not in lifecycle.LOCKED:
                continue
            if (p["enforcement"] or {}).get("method") == "exchange":
                continue  # the units already left the pledgor: nothing to mark any more
            haircut = p["effective_haircut_bps"]
            value = val.check_value(val.collateral_value(p["quantity"], p["decimals"], price_fen, haircut, _years(p)),
                                    f"the collateral of pledge {p['number']}")
            marked.append((p, haircut, value))
        if existing is None:
            await repo.insert_mark(conn, instrument, as_of, price_fen, actor, client_id, fp)
        for p, haircut, value in marked:
            ratio = val.ratio_bps(value, p["secured_amount"])
            th = val.Thresholds(p["warning_bps"], p["margin_call_bps"], p["liquidation_bps"])
            level = val.level(value, p["secured_amount"], th)
            if not await repo.insert_valuation(conn, p["id"], as_of, price_fen, p["quantity"], haircut, value, ratio,
                                               level):
                results.append({"pledge_id": p["id"], "level": p["margin_level"], "already_valued": True})
                continue
            await _record(conn, p, "revalued", {"last_price": price_fen, "last_value": value, "last_ratio_bps": ratio,
                                                "last_valued_on": as_of},
                          info={"price": price_fen, "quantity": p["quantity"], "value": value, "ratio_bps": ratio,
                                "haircut_bps": haircut, "level": level, "secured_amount": p["secured_amount"]},
                          actor=actor)
            await _margin_event(conn, p, level, value, ratio, deadline, actor)
            await _deadline_check(conn, p, as_of, horizon, actor)
            results.append({"pledge_id": p["id"], "number": p["number"], "value": _cny(value), "ratio_bps": ratio,
                            "level": level, "cure_deadline": p["cure_deadline"]})
    kick(rt)
    return {"instrument": instrument, "as_of": as_of, "price": _cny(price_fen), "pledges": results}


# ----------------------------------------------------------------------------------- defaults and claims


def _scope_in(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The contract's secured scope as stored (caps in fen); None keeps §389's default."""
    if data is None:
        return None
    caps = {k: to_base(v, CNY_DECIMALS, field=f"secured_scope.caps.{k}") for k, v in (data.get("caps") or {}).items()}
    return sc.Scope.of({**data, "caps": caps}).to_json()


async def _declare(conn: AsyncConnection, p: dict[str, Any], who: Principal, notice: dict[str, Any], *,
                   client_id: str | None = None, fp: bytes | None = None) -> None:
    """Record the bank's declaration of the loan's default; the pledgor hears of it (event, webhook)."""
    notice_date = notice["notice_date"]
    if notice_date > today():
        raise Invalid("invalid_notice_date", f"a default notice dated {notice_date} is in the future")
    overdue = notice.get("overdue_amount")
    record = {"reference": notice["reference"], "notice_date": notice_date.isoformat(),
              "overdue_amount": to_base(overdue, CNY_DECIMALS, field="overdue_amount") if overdue else None,
              "declared_at": now().isoformat(), "declared_by": who.actor}
    await _record(conn, p, "default_declared", {"declared_default": record}, info={"note": notice.get("note")},
                  actor=who.actor, client_id=client_id, fp=fp, notify=(p["pledgor_id"],))


@translate_refusals
async def declare_default(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, reference: str,
                          notice_date: date, overdue_amount: str | None, note: str | None) -> dict[str, Any]:
    """The bank declares the secured loan in default (违约通知: its number and date): a ground for enforcement."""
    notice = {"reference": reference, "notice_date": notice_date, "overdue_amount": overdue_amount, "note": note}
    fp = fingerprint({"op": "declare_default", "pledge": pledge_id, **notice, "notice_date": notice_date.isoformat()})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        _require_pledgee(who, p)
        lifecycle.require(p["status"], "declare_default")
        _require_unexpired(p)
        await _declare(conn, p, who, notice, client_id=client_id, fp=fp)

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


def _claim_parts(p: dict[str, Any], claim: dict[str, str] | None, outstanding: str | None) -> list[dict[str, Any]]:
    """What the bank claims now, by component, and what of it the secured scope covers (pledges.scope)."""
    if claim and outstanding is not None:
        raise Invalid("ambiguous_claim", "name the principal either in claim or as outstanding, not both")
    owed = {k: to_base(v, CNY_DECIMALS, field=f"claim.{k}", allow_zero=True) for k, v in (claim or {}).items()}
    if outstanding is not None:
        owed[sc.PRINCIPAL] = to_base(outstanding, CNY_DECIMALS, field="outstanding")
    scope = sc.Scope.of(p["secured_scope"])
    if not owed:
        if scope.type == sc.MAXIMUM:
            raise Invalid("claim_required", "a maximum-amount pledge secures what is owed up to its maximum: "
                          "name the claim by component")
        owed = {sc.PRINCIPAL: p["secured_amount"]}
    return [{"component": x.component, "claimed": x.claimed, "secured": x.secured, "unsecured": x.unsecured}
            for x in sc.secure(scope, p["secured_amount"], owed)]


def _pledgee_parts(e: dict[str, Any]) -> list[wf.Claim]:
    return [wf.Claim("pledgee", x["secured"], component=x["component"]) for x in e["claim"] if x["secured"]]


def _juniors(claims: list[dict[str, Any]]) -> list[wf.Claim]:
    return [wf.Claim(f"claim:{cl['id']}", cl["amount"], cl["registration_no"], cl["id"]) for cl in claims]


def _claims_paid(e: dict[str, Any], claims: list[dict[str, Any]]) -> bool:
    """Whether the proceeds so far paid every secured claim on the lot (costs, pledgee, juniors)."""
    need = {f"pledgee/{x['component']}": x["secured"] for x in e["claim"] if x["secured"]}
    if e.get("fee"):
        need["fee"] = e["fee"]
    need.update({f"claim:{cl['id']}": cl["amount"] for cl in claims})
    return all(e.get("paid", {}).get(k, 0) >= v for k, v in need.items())


# ----------------------------------------------------------------------------------- courts behind the pledge
#
# A freeze on pledged units is always later than the pledge (the ledger never pledges frozen units),
# so the pledgee's priority survives it (民诉法解释 §157: preservation of pledged property does not affect
# the pledgee's priority): enforcement goes ahead under the freeze. The lot's units leave the freeze
# for the sale (void, and the freeze's other units frozen again, in the sale's linked group); the
# freeze extends to what replaces them (查扣冻规定: the freeze reaches the substitute of frozen
# property), so the surplus that would go to the pledgor is paid, for the frozen share of the lot, to
# the court's designated account (the cash account of its deduct_to participant, else its own), and
# unsold units that go back to the pledgor are frozen again in the same share.


async def _courts_on_lot(conn: AsyncConnection, rt: Runtime, p: dict[str, Any]) -> list[dict[str, Any]]:
    """The active freezes on the lot's units (locked, pledge row first): who, how many, where to pay."""
    by: dict[int, list[tuple[int, int]]] = {}
    for b in await repo.hold_blocks(conn, p["hold_id"]):
        if b["frozen_by"] is not None:
            by.setdefault(b["frozen_by"], []).append((b["start_serial"], b["end_serial"]))
    out = []
    for hold, spans in sorted(by.items()):
        f = await repo.freeze_of_hold(conn, hold, lock=True)
        if f is None:  # a court renewed, lifted or deducted it while we waited for its row
            raise DomainError("freeze_changed", "a court changed a freeze on the lot just now; retry with the "
                              "same Idempotency-Key")
        out.append({"freeze": f["root_id"] or f["id"], "freeze_id": f["id"], "court_id": f["court_id"],
                    "case_number": f["case_number"], "units": rg.total(spans),
                    "serials": [list(r) for r in rg.normalise(spans)],
                    "account": await _account(rt, f["deduct_to_id"] or f["court_id"], "cash"), "_row": f})
    return out


def _court_record(courts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in ct.items() if not k.startswith("_")} for ct in courts]


async def _courts_in_force(conn: AsyncConnection, e: dict[str, Any]) -> list[tuple[str, int]]:
    """(party, frozen units) of the courts whose freeze still stands (not lifted, not expired)."""
    out = []
    for ct in e.get("courts") or []:
        head = await repo.freeze_chain_head(conn, ct["freeze"])
        if head is not None and head["status"] in ("active", "deducted"):
            out.append((f"court:{ct['freeze']}", ct["units"]))
    return out


async def _handover(conn: AsyncConnection, rt: Runtime, who: str, p: dict[str, Any], courts: list[dict[str, Any]]
                    ) -> tuple[list[c.Request], list[dict[str, Any]]]:
    """Ledger requests, to go in front of the pledge's post in its linked group, that take the lot's
    units out of the freezes on them and freeze the rest of each freeze's units again."""
    lot = _ranges(p["serials"])
    holding = await _account(rt, p["pledgor_id"], "holding")
    reqs: list[c.Request] = []
    plan = []
    for ct in courts:
        f = ct["_row"]
        frozen = [(b["start_serial"], b["end_serial"]) for b in await repo.frozen_blocks(conn, f["hold_id"])]
        rest = rg.minus(frozen, lot)
        court_holding = (await participants.lookup(rt, f["court_id"]))["holding_account"]
        meta = _meta(p, "freeze-handover", freeze=f["id"], case_number=f["case_number"])
        reqs.append(c.Request(who, c.VoidHold(f["hold_id"]), _ledger_id(p, f"handover-{f['id']}"), meta))
        if rest:
            reqs.append(c.Request(who, c.CreateHold("freeze", holding, court_holding, p["instrument"], rg.total(rest),
                                                    tuple(rest), micros(f["expires_at"])),
                                  _ledger_id(p, f"handover-{f['id']}-rest"), meta))
        plan.append({"freeze": f, "rest": rest, "units": ct["units"]})
    return reqs, plan


async def _after_handover(conn: AsyncConnection, p: dict[str, Any], plan: list[dict[str, Any]],
                          entries: list[Entry], actor: str, method: str) -> None:
    i = 0
    for item in plan:
        f, rest = item["freeze"], item["rest"]
        seqs = [entries[i].seq]
        i += 1
        hold = None
        if rest:
            hold = entries[i].seq
            seqs.append(hold)
            i += 1
        await repo.update_freeze(conn, f["id"], hold_id=hold, quantity=rg.total(rest), serials=[list(r) for r in rest])
        await repo.add_freeze_event(conn, f["id"], "released_to_pledgee", {
            "pledge": p["id"], "pledge_number": p["number"], "method": method, "units": item["units"],
            "serials": [list(r) for r in rg.intersect(_ranges(p["serials"]), f["serials"] or [])],
            "still_frozen": rg.total(rest),
            "why": "the pledge ranks before the freeze; the freeze extends to the surplus of the sale"},
            seqs, actor, None, None)


async def _courts_paid(conn: AsyncConnection, p: dict[str, Any], payouts: list[wf.Payout], seqs: list[int],
                       actor: str) -> None:
    """The court sees what the enforcement paid it, on its freeze."""
    for x in payouts:
        if x.role == "court" and x.paid:
            head = await repo.freeze_chain_head(conn, int(x.party.split(":")[1]))
            if head is None:
                continue
            await repo.add_freeze_proceeds(conn, head["id"], x.paid)
            await repo.add_freeze_event(conn, head["id"], "proceeds_received", {
                "pledge": p["id"], "pledge_number": p["number"], "amount": x.paid,
                "total": head["proceeds_received"] + x.paid}, seqs, actor, None, None)


async def _return_units(conn: AsyncConnection, rt: Runtime, p: dict[str, Any], serials: list[tuple[int, int]], *,
                        relock: bool, actor: str) -> list[Entry]:
    """Unsold units from the escrow back to the pledgor -- under the lock again (`relock`), or free --
    and the courts' share of them frozen again (preferring the serials each court froze)."""
    e = p["enforcement"]
    holding = await _account(rt, p["pledgor_id"], "holding")
    qty = rg.total(serials)
    meta = _meta(p, "return")
    reqs = [c.Request(actor, c.Transfer(e["escrow_account"], holding, p["instrument"], qty, tuple(serials)),
                      _ledger_id(p, "return"), meta)]
    if relock:
        reqs.append(c.Request(actor, c.CreateHold("pledge", holding, e["escrow_account"], p["instrument"], qty,
                                                  tuple(serials), micros(_dt(p["expires_at"]))),
                              _ledger_id(p, "relock"), meta))
    standing = []
    for ct in e.get("courts") or []:
        head = await repo.freeze_chain_head(conn, ct["freeze"])
        head = await repo.lock_freeze(conn, head["id"]) if head is not None else None
        if head is not None and head["status"] == "active":
            standing.append((ct, head))
    # Each standing freeze takes its share of the lot in what comes back; the pledgor the rest.
    shares = wf.apportion(qty, [ct["units"] for ct, _ in standing]
                          + [e["lot_quantity"] - sum(ct["units"] for ct, _ in standing)])
    plan = []
    taken: list[tuple[int, int]] = []
    for (ct, head), n in zip(standing, shares, strict=False):
        if not n:
            continue
        mine = rg.pick(rg.minus(serials, taken), n, prefer=ct["serials"])
        taken = rg.union(taken, mine)
        frozen = rg.union(_ranges(head["serials"]), mine)
        court_holding = (await participants.lookup(rt, head["court_id"]))["holding_account"]
        fmeta = _meta(p, "return-frozen", freeze=head["id"], case_number=head["case_number"])
        if head["hold_id"] is not None:
            reqs.append(c.Request(actor, c.VoidHold(head["hold_id"]), _ledger_id(p, f"refreeze-{head['id']}-void"),
                                  fmeta))
        reqs.append(c.Request(actor, c.CreateHold("freeze", holding, court_holding, p["instrument"], rg.total(frozen),
                                                  tuple(frozen), micros(head["expires_at"])),
                              _ledger_id(p, f"refreeze-{head['id']}"), fmeta))
        plan.append((head, frozen, mine))
    entries = await rt.submit_linked(reqs)
    for head, frozen, mine in plan:
        hold = next(x.seq for x in entries if x.type == "hold.create" and x.body.get("kind") == "freeze"
                    and x.client_id == _ledger_id(p, f"refreeze-{head['id']}"))
        await repo.update_freeze(conn, head["id"], hold_id=hold, quantity=rg.total(frozen),
                                 serials=[list(r) for r in frozen])
        await repo.add_freeze_event(conn, head["id"], "frozen_again", {
            "pledge": p["id"], "pledge_number": p["number"], "units": rg.total(mine),
            "serials": [list(r) for r in mine], "why": "unsold units of the pledged lot went back to the holder"},
            [x.seq for x in entries], actor, None, None)
    return entries


# ----------------------------------------------------------------------------------- enforcement


async def _payee_accounts(rt: Runtime, p: dict[str, Any], claims: list[dict[str, Any]],
                          courts: list[dict[str, Any]] | None = None) -> dict[str, int]:
    accounts = {"fee": rt.system["fees"], "pledgee": await _account(rt, p["pledgee_id"], "cash"),
                "owner": await _account(rt, p["pledgor_id"], "cash")}
    for cl in claims:
        accounts[f"claim:{cl['id']}"] = await _account(rt, cl["claimant_id"], "cash")
    for ct in courts or []:
        accounts[f"court:{ct['freeze']}"] = ct["account"]
    return accounts


def _payout_view(payouts: list[wf.Payout], p: dict[str, Any], claims: list[dict[str, Any]],
                 courts: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The distribution, line by line (stored in base units; answers show decimal strings)."""
    who = {"pledgee": p["pledgee_id"], "owner": p["pledgor_id"], "fee": None}
    who.update({f"claim:{cl['id']}": cl["claimant_id"] for cl in claims})
    who.update({f"court:{ct['freeze']}": ct["court_id"] for ct in courts or []})
    return [{"party": x.party, "role": x.role, "component": x.component, "participant_id": who.get(x.party),
             "claimed": x.claimed, "paid": x.paid} for x in payouts]


def _enforcement_view(e: dict[str, Any] | None) -> dict[str, Any] | None:
    if e is None:
        return None
    out = dict(e)
    if "lot" in out:
        out["unsold"] = rg.total(_ranges(out["lot"]))
    return out


def _years(p: dict[str, Any]) -> int:
    """The term of the pledged instrument in years: an emission right's price is per unit and year, so its
    money is price × quantity × validity_years, as on the market (exchange/trading/pricing.py); 1 for the rest."""
    return term_years(p["instrument_kind"], p["instrument_attributes"] or {})


def _notional(price_fen: int, quantity: int, p: dict[str, Any]) -> int:
    """What the pledged lot (or part of it) fetches at `price_fen`: price × quantity × term years, in fen."""
    try:
        return notional(price_fen, quantity, p["decimals"], _years(p))
    except ValueError:
        raise Invalid("price_not_whole_fen", "price × quantity × term years is not a whole number of fen") from None


async def _settle_claims(conn: AsyncConnection, pledge_id: int, payouts: list[wf.Payout]) -> None:
    for x in payouts:
        if x.role == "junior":
            await repo.update_claim(conn, int(x.party.split(":")[1]), status="paid", paid=x.paid)
    # Claims the pledgor never confirmed were never registered: they lapse with the lot.
    for cl in await repo.claims_of(conn, pledge_id, ("filed",)):
        await repo.update_claim(conn, cl["id"], status="lapsed")


async def _distribute_once(conn: AsyncConnection, rt: Runtime, p: dict[str, Any], e: dict[str, Any],
                           proceeds: int, courts: list[dict[str, Any]]
                           ) -> tuple[list[wf.Payout], dict[str, int], list[dict[str, Any]]]:
    """Payouts of the whole proceeds of a sale or appropriation, and the cash account of each payee."""
    claims = await repo.claims_of(conn, p["id"], ("registered",))
    payouts = wf.distribute(proceeds, fee=e["fee"], pledgee=_pledgee_parts(e), juniors=_juniors(claims),
                            owner="owner", fee_party="fee", courts=[(f"court:{ct['freeze']}", ct["units"])
                                                                    for ct in courts], lot=p["quantity"])
    return payouts, await _payee_accounts(rt, p, claims, courts), claims


@translate_refusals
async def enforce(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, method: str, reason: str,
                  outstanding: str | None, price: str | None, buyer_id: int | None, fee: str | None,
                  claim: dict[str, str] | None = None, default_notice: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """On a default (pledges.lifecycle.default_ground; `default_notice` declares one in the same step):
    `transfer` (折价: units to the bank at no less than the last mark, the bank pays out any surplus),
    `sale` (a negotiated sale the buyer accepts: DvP), or `exchange` (units to the bank's escrow, sold
    by listings or auctions on the market: `start_sale`). `claim` names what is owed by component
    (pledges.scope; `outstanding` is the principal alone). A court freeze on the lot does not stop it."""
    fp = fingerprint({"op": "enforce", "pledge": pledge_id, "method": method, "reason": reason,
                      "outstanding": outstanding, "price": price, "buyer": buyer_id, "fee": fee, "claim": claim,
                      "default": {k: str(v) for k, v in (default_notice or {}).items()}})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        _require_pledgee(who, p)
        lifecycle.require(p["status"], "enforce")
        _require_unexpired(p)
        if method not in ("transfer", "sale", "exchange"):
            raise Invalid("invalid_method", "method is transfer, sale or exchange")
        parts = _claim_parts(p, claim, outstanding)
        fee_fen = to_base(fee, CNY_DECIMALS, field="fee", allow_zero=True) if fee else 0
        if default_notice:
            await _declare(conn, p, who, default_notice)
        ground = lifecycle.default_ground(p, now())
        base = {"method": method, "reason": reason, "ground": repo.jsonable_deep(ground), "claim": parts,
                "fee": fee_fen, "declared_at": now().isoformat(), "declared_by": who.actor}
        if method == "sale":
            await _propose_sale(conn, rt, who, p, base, price, buyer_id, client_id, fp)
        elif method == "transfer":
            await _appropriate(conn, rt, who, p, base, price, client_id, fp)
        else:
            courts = await _courts_on_lot(conn, rt, p)
            reqs, plan = await _handover(conn, rt, who.actor, p, courts)
            reqs.append(c.Request(who.actor, c.PostHold(p["hold_id"]), _ledger_id(p, "post-to-escrow"),
                                  _meta(p, "enforce-exchange", reason=reason)))
            entries = await rt.submit_linked(reqs, own=_yours(who, await escrow_account(rt, p["pledgee_id"])))
            await _after_handover(conn, p, plan, entries, who.actor, method)
            enforcement = {**base, "escrow_account": await escrow_account(rt, p["pledgee_id"]),
                           "lot": p["serials"], "lot_quantity": p["quantity"], "sold": 0, "received": 0, "paid": {},
                           "courts": _court_record(courts), "sales": []}
            await _record(conn, p, "exchange_sale_started", {"enforcement": enforcement},
                          info={"serials": p["serials"], "quantity": p["quantity"], "ground": base["ground"]},
                          actor=who.actor, seqs=[x.seq for x in entries], client_id=client_id, fp=fp,
                          notify=(p["pledgor_id"],))

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


async def _propose_sale(conn: AsyncConnection, rt: Runtime, who: Principal, p: dict[str, Any], base: dict[str, Any],
                        price: str | None, buyer_id: int | None, client_id: str, fp: bytes) -> None:
    if price is None or buyer_id is None:
        raise Invalid("sale_terms_required", "a negotiated sale names the buyer and the price")
    if buyer_id in (p["pledgor_id"], p["pledgee_id"]):
        raise Invalid("invalid_buyer", "the buyer must be a third party (the bank itself takes the units with "
                      "method transfer)")
    await participants.counterparty(rt, who, buyer_id, kinds=BUYER_KINDS)
    price_fen = to_base(price, CNY_DECIMALS, field="price")
    proceeds = _notional(price_fen, p["quantity"], p)
    courts = await _courts_on_lot(conn, rt, p)
    payouts, _, claims = await _distribute_once(conn, rt, p, base, proceeds, courts)
    enforcement = {**base, "buyer_id": buyer_id, "price": price_fen, "proceeds": proceeds,
                   "expected": _payout_view(payouts, p, claims, courts)}
    await _record(conn, p, "sale_proposed", {"enforcement": enforcement}, info={"buyer_id": buyer_id},
                  actor=who.actor, client_id=client_id, fp=fp, notify=(p["pledgor_id"],))


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
    proceeds = _notional(price_fen, p["quantity"], p)
    courts = await _courts_on_lot(conn, rt, p)
    payouts, accounts, claims = await _distribute_once(conn, rt, p, base, proceeds, courts)
    escrow = await escrow_account(rt, p["pledgee_id"])
    bank_holding = await _account(rt, p["pledgee_id"], "holding")
    reqs, plan = await _handover(conn, rt, who.actor, p, courts)
    reqs += [
        c.Request(who.actor, c.PostHold(p["hold_id"]), _ledger_id(p, "post"), _meta(p, "enforce-transfer")),
        c.Request(who.actor, c.Transfer(escrow, bank_holding, p["instrument"], p["quantity"],
                                        await _pieces(conn, p["instrument"], _ranges(p["serials"]))),
                  _ledger_id(p, "deliver"),
                  _meta(p, "enforce-transfer")),
    ]
    # The bank's own share is paid in kind; the rest of the value it pays from its cash.
    reqs += [c.Request(who.actor, c.Transfer(accounts["pledgee"], accounts[x.party], "CNY", x.paid),
                       _ledger_id(p, f"pay-{x.key}"), _meta(p, "enforce-transfer", role=x.role))
             for x in payouts if x.paid and x.party != "pledgee"]
    entries = await rt.submit_linked(reqs, own=_yours(who, escrow))
    await _after_handover(conn, p, plan, entries, who.actor, "transfer")
    await _settle_claims(conn, p["id"], payouts)
    await _courts_paid(conn, p, payouts, [x.seq for x in entries], who.actor)
    view = _payout_view(payouts, p, claims, courts)
    enforcement = {**base, "price": price_fen, "proceeds": proceeds, "distribution": view,
                   "courts": _court_record(courts), "completed_at": now().isoformat()}
    await _record(conn, p, "enforced", {"enforcement": enforcement}, info={"distribution": view}, actor=who.actor,
                  seqs=[e.seq for e in entries], client_id=client_id, fp=fp,
                  notify=(p["pledgor_id"], *(cl["claimant_id"] for cl in claims)))


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
        courts = await _courts_on_lot(conn, rt, p)  # as they stand now, not when the sale was offered
        payouts, accounts, claims = await _distribute_once(conn, rt, p, e, e["proceeds"], courts)
        escrow = await escrow_account(rt, p["pledgee_id"])
        buyer_holding = await _account(rt, who.participant_id, "holding")
        buyer_cash = await _account(rt, who.participant_id, "cash")
        reqs, plan = await _handover(conn, rt, who.actor, p, courts)
        reqs += [
            c.Request(who.actor, c.PostHold(p["hold_id"]), _ledger_id(p, "post"), _meta(p, "enforce-sale")),
            c.Request(who.actor, c.Transfer(escrow, buyer_holding, p["instrument"], p["quantity"],
                                            await _pieces(conn, p["instrument"], _ranges(p["serials"]))),
                      _ledger_id(p, "deliver"),
                      _meta(p, "enforce-sale", buyer=who.participant_id)),
        ]
        reqs += [c.Request(who.actor, c.Transfer(buyer_cash, accounts[x.party], "CNY", x.paid),
                           _ledger_id(p, f"pay-{x.key}"), _meta(p, "enforce-sale", role=x.role))
                 for x in payouts if x.paid]
        entries = await rt.submit_linked(reqs, own=_yours(who))  # the buyer: its cash, not the bank's escrow
        await _after_handover(conn, p, plan, entries, who.actor, "sale")
        await _settle_claims(conn, p["id"], payouts)
        await _courts_paid(conn, p, payouts, [x.seq for x in entries], who.actor)
        view = _payout_view(payouts, p, claims, courts)
        enforcement = {**e, "distribution": view, "courts": _court_record(courts), "completed_at": now().isoformat()}
        await _record(conn, p, "enforced", {"enforcement": enforcement}, info={"distribution": view,
                                                                               "buyer_id": who.participant_id},
                      actor=who.actor, seqs=[x.seq for x in entries], client_id=client_id, fp=fp,
                      notify=(p["pledgor_id"], *(cl["claimant_id"] for cl in claims)))

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


@translate_refusals
async def cancel_sale(rt: Runtime, who: Principal, client_id: str, pledge_id: int, note: str | None) -> dict[str, Any]:
    """Withdraw the enforcement: a negotiated sale not accepted, or an exchange sale before anything of
    the lot was sold and while no listing or auction of it runs (the lot is locked again, frozen units
    frozen again). After a partial sale the lot's rest stays in escrow for another sale; it ends when
    sold out, when every secured claim is paid (the rest goes back to the pledgor) or at expiry."""
    fp = fingerprint({"op": "cancel_sale", "pledge": pledge_id, "note": note})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        _require_pledgee(who, p)
        lifecycle.require(p["status"], "cancel_sale")
        e = p["enforcement"] or {}
        if e.get("method") == "sale":
            await _record(conn, p, "sale_cancelled", {"enforcement": None}, info={"note": note}, actor=who.actor,
                          client_id=client_id, fp=fp, notify=(p["pledgor_id"],))
            return
        live = [o for o in await repo.sale_orders(conn, p["id"]) if o["status"] == "open"]
        if live:
            running = ", ".join(f"{o['market_id']}/{o['id']}" for o in live)
            raise DomainError("sale_live", f"{len(live)} listing(s) or auction(s) of the lot are still running "
                              f"(orders {running}): withdraw the listing or cancel the auction first")
        if e.get("sold") or e.get("received") or await repo.sale_trades(conn, p["id"]):
            raise DomainError("sale_partly_done", f"{to_text(e['sold'], p['decimals'])} units were sold and their "
                              "proceeds paid out; the rest stays in escrow for another sale (it goes back to the "
                              "pledgor once every secured claim is paid, or at expiry)")
        _require_unexpired(p)
        entries = await _return_units(conn, rt, p, _ranges(e["lot"]), relock=True, actor=who.actor)
        lock = next(x for x in entries if x.type == "hold.create" and x.body.get("kind") == "pledge")
        await _record(conn, p, "exchange_sale_cancelled", {"enforcement": None, "hold_id": lock.seq},
                      info={"note": note, "returned": e["lot"], "quantity": rg.total(_ranges(e["lot"]))},
                      actor=who.actor, seqs=[x.seq for x in entries], client_id=client_id, fp=fp,
                      notify=(p["pledgor_id"],))

    return await _mutate(rt, who, client_id, pledge_id, fp, body)


# ----------------------------------------------------------------------------------- the exchange sale


async def _unlisted(conn: AsyncConnection, e: dict[str, Any], instrument: str) -> list[tuple[int, int]]:
    """Unsold serials of the lot in escrow that no listing or auction holds."""
    blocks = await repo.blocks_within(conn, e["escrow_account"], instrument, e["lot"])
    return rg.normalise((b["start_serial"], b["end_serial"]) for b in blocks if b["hold"] is None)


@translate_refusals
async def start_sale(rt: Runtime, who: Principal, client_id: str, pledge_id: int, *, market_id: str,
                     quantity: str | None, price: str | None, auction: dict[str, Any] | None) -> dict[str, Any]:
    """List (挂牌) or auction (单向竞价) unsold units of an escrowed lot on the market, on the pledgee's
    behalf: the order sells the named serials from the escrow, is paid into it, and is marked as the
    enforcement sale of the registration. Each settlement pays out by the waterfall (the sequencer's
    settlement hook, `sale_settled`). The pledge row is never locked while the market is waited for."""
    fp = fingerprint({"op": "start_sale", "pledge": pledge_id, "market": market_id, "quantity": quantity,
                      "price": price, "auction": auction})
    plan: dict[str, Any] = {}

    async def check(conn: AsyncConnection, p: dict[str, Any]) -> None:
        _require_pledgee(who, p)
        lifecycle.require(p["status"], "start_sale")
        e = p["enforcement"] or {}
        if e.get("method") != "exchange":
            raise DomainError("not_exchange_sale", "the lot is not in escrow for an exchange sale (method exchange)")
        _require_unexpired(p)
        seq = rt.exchange.get(market_id)
        if seq.market.instrument != p["instrument"]:
            raise Invalid("wrong_instrument", f"market {market_id} trades {seq.market.instrument}, not "
                          f"{p['instrument']}")
        mode = seq.market.mode
        if mode not in ("listing", "auction") or (mode == "listing") != (price is not None) or \
                (mode == "auction") != (auction is not None):
            raise Invalid("wrong_mode", f"market {market_id} trades by {mode}: an enforcement sale is a listing "
                          "(with a price) on a listing market or an auction (with its terms) on an auction market")
        if _claims_paid(e, await repo.claims_of(conn, p["id"], ("registered", "paid"))):
            raise DomainError("claims_paid", "every secured claim on the lot is paid: the rest belongs to the pledgor")
        free = await _unlisted(conn, e, p["instrument"])
        qty = to_base(quantity, p["decimals"]) if quantity is not None else rg.total(free)
        if not free:
            raise DomainError("lot_on_sale", "every unsold unit of the lot is already listed or auctioned")
        if qty > rg.total(free):
            raise DomainError("quantity_exceeds_lot", f"only {to_text(rg.total(free), p['decimals'])} unsold units of "
                              "the lot are not on sale yet")
        plan.update(serials=tuple(rg.take_lowest(free, qty)), qty=qty, number=p["number"],
                    escrow=e["escrow_account"], decimals=p["decimals"], mode=mode)

    order_cid = internal("enforcement", pledge_id, client_id)  # the market's own idempotency covers a retry
    async with rt.read() as conn:
        placed_before = await repo.order_by_client(conn, who.participant_id, order_cid)
    if placed_before is None:
        await _mutate(rt, who, client_id, pledge_id, fp, check, answer=False)
    else:  # a retry after the order was placed: record it if that did not happen, and answer
        if ((placed_before["purpose"] or {}).get("enforcement") or {}).get("pledge_id") != pledge_id:
            raise DomainError("idempotency_conflict", "this client id was already used for a different request")
        order = await orders.get_order(rt, who, placed_before["market_id"], placed_before["id"])
        if order["status"] == "rejected" and order["kind"] == "auction":
            # A refused lot is a 409 problem, at first and on every retry alike (exchange.trading.auctions).
            refused = await orders.stored_refusal(rt, placed_before["market_id"], placed_before["id"])
            if refused is not None:
                raise refused
        plan.update(qty=placed_before["qty"], serials=(), retry=True)
    if not plan:  # a retry of a sale already listed: its answer again
        async with rt.read() as conn:
            done = await repo.event_by_client(conn, who.actor, client_id)
        assert done is not None and done.type == "sale_listed"
        order = await orders.get_order(rt, who, done.data["market_id"], int(done.data["order_id"]))
        return {"pledge": await get(rt, who, pledge_id), "order": order}
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

    async def listed(conn: AsyncConnection, p: dict[str, Any]) -> None:
        e = dict(p["enforcement"] or {})
        sale = {"market_id": order["market_id"], "order_id": order["id"], "kind": order["kind"],
                "price": to_base(order["price"], CNY_DECIMALS, field="price") if order["price"] else None,
                "quantity": plan["qty"]}
        e["sales"] = [*e.get("sales", []), sale]
        await _record(conn, p, "sale_listed", {"enforcement": e},
                      info={**sale, "serials": [list(r) for r in plan["serials"]]}, actor=who.actor,
                      client_id=client_id, fp=fp, notify=(p["pledgor_id"],))

    if order["status"] != "rejected":
        await _mutate(rt, who, client_id, pledge_id, fp, listed, answer=False)
    return {"pledge": await get(rt, who, pledge_id), "order": order}


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


async def _conclude(conn: AsyncConnection, rt: Runtime, p: dict[str, Any], actor: str) -> None:
    """After a settlement or the end of a listing/auction: the lot sold out -> enforced; nothing on sale
    and every secured claim paid -> the unsold rest back to the pledgor, enforced; else it waits in
    escrow for another sale (or the expiry, which returns it)."""
    e = dict(p["enforcement"])
    if any(o["status"] == "open" for o in await repo.sale_orders(conn, p["id"])):
        return
    claims = await repo.claims_of(conn, p["id"], ("registered", "paid"))
    lot = _ranges(e["lot"])
    seqs: list[int] = []
    if lot:
        if not _claims_paid(e, claims):
            return
        entries = await _return_units(conn, rt, p, lot, relock=False, actor=actor)
        seqs = [x.seq for x in entries]
        e.update(lot=[], returned=[list(r) for r in lot])
        await _record(conn, p, "units_returned", {"enforcement": e},
                      info={"returned": [list(r) for r in lot], "quantity": rg.total(lot), "to": "pledgor",
                            "why": "every secured claim is paid: the unsold rest belongs to the pledgor"},
                      actor=actor, seqs=seqs, notify=(p["pledgor_id"],))
    for cl in await repo.claims_of(conn, p["id"], ("filed",)):
        await repo.update_claim(conn, cl["id"], status="lapsed")
    e = {**p["enforcement"], "completed_at": now().isoformat()}
    await _record(conn, p, "enforced", {"enforcement": e},
                  info={"received": e["received"], "paid": e["paid"], "sold": e["sold"]}, actor=actor,
                  notify=(p["pledgor_id"], *(cl["claimant_id"] for cl in claims)))


async def _proceeds_arrived(conn: AsyncConnection, rt: Runtime, p: dict[str, Any], e: dict[str, Any], amount: int,
                            actor: str) -> tuple[list[dict[str, Any]], list[Entry], list[dict[str, Any]]]:
    """Cash from selling part of the escrowed lot is in the escrow: pay this part by the waterfall
    (cumulative: earlier parts count, nothing is clawed back), in one linked group. Updates `e`."""
    claims = await repo.claims_of(conn, p["id"], ("registered", "paid"))
    courts = await _courts_in_force(conn, e)
    total = e["received"] + amount
    payouts = wf.increment(e["paid"], total, fee=e["fee"], pledgee=_pledgee_parts(e), juniors=_juniors(claims),
                           owner="owner", fee_party="fee", courts=courts, lot=e["lot_quantity"])
    accounts = await _payee_accounts(rt, p, claims, e.get("courts"))
    reqs = [c.Request(actor, c.Transfer(e["escrow_account"], accounts[x.party], "CNY", x.paid),
                      _ledger_id(p, f"proceeds-{x.key}"), _meta(p, "proceeds", role=x.role))
            for x in payouts if x.paid]
    entries = await rt.submit_linked(reqs) if reqs else []
    paid = dict(e["paid"])
    for x in payouts:
        if x.paid:
            paid[x.key] = paid.get(x.key, 0) + x.paid
    e.update(received=total, paid=paid)
    for cl in claims:
        await repo.update_claim(conn, cl["id"], status="paid", paid=paid.get(f"claim:{cl['id']}", 0))
    await _courts_paid(conn, p, payouts, [x.seq for x in entries], actor)
    return _payout_view(payouts, p, claims, e.get("courts")), entries, claims


@translate_refusals
async def sale_settled(rt: Runtime, pledge_id: int, market_id: str, trade_id: int) -> None:
    """A trade of an enforcement sale settled: its net proceeds (after the exchange's fee) are in the
    escrow; pay them out and take the sold serials off the lot. Idempotent per trade."""
    async with rt.read() as conn:
        trade = await repo.trade(conn, market_id, trade_id)
        sold = await repo.entry_serials(conn, f"exchange:{market_id}", f"{market_id}:trade:{trade_id}:0")
    if trade is None or sold is None:
        raise DomainError("trade_not_settled", f"trade {market_id}/{trade_id} is not settled yet")
    client = f"sale:{market_id}:trade:{trade_id}"
    fp = fingerprint({"op": "sale_settled", "market": market_id, "trade": trade_id})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        e = dict(p["enforcement"] or {})
        if p["status"] != lifecycle.ENFORCING or e.get("method") != "exchange":
            raise DomainError("not_exchange_sale", f"registration {p['number']} is {p['status']}, not on sale")
        net = trade["notional"] - trade["seller_fee"]
        view, entries, claims = await _proceeds_arrived(conn, rt, p, e, net, SYSTEM_ACTOR)
        e.update(lot=[list(r) for r in rg.minus(_ranges(e["lot"]), _ranges(sold))], sold=e["sold"] + trade["qty"])
        await _record(conn, p, "proceeds_distributed", {"enforcement": e},
                      info={"market_id": market_id, "trade_id": trade_id, "price": trade["price"],
                            "quantity": trade["qty"], "amount": net, "seller_fee": trade["seller_fee"],
                            "serials": sold, "distribution": view},
                      actor=SYSTEM_ACTOR, seqs=[x.seq for x in entries], client_id=client, fp=fp,
                      notify=(p["pledgor_id"], *(cl["claimant_id"] for cl in claims)))
        await _conclude(conn, rt, p, SYSTEM_ACTOR)

    await _mutate(rt, None, client, pledge_id, fp, body)


@translate_refusals
async def sale_ended(rt: Runtime, pledge_id: int, market_id: str, order_id: int) -> None:
    """A listing or auction of the lot ended (filled, withdrawn, expired at the close, allocated,
    cancelled): unsold units are free in escrow again; the registration may conclude."""
    client = f"sale:{market_id}:ended:{order_id}"
    fp = fingerprint({"op": "sale_ended", "market": market_id, "order": order_id})

    async def body(conn: AsyncConnection, p: dict[str, Any]) -> None:
        o = next((x for x in await repo.sale_orders(conn, p["id"]) if (x["market_id"], x["id"]) == (market_id,
                                                                                                   order_id)), None)
        if o is None or o["status"] == "open" or p["status"] not in (lifecycle.ENFORCING, lifecycle.ENFORCED,
                                                                     lifecycle.EXPIRED):
            return
        await _record(conn, p, "sale_ended", {}, info={
            "market_id": market_id, "order_id": order_id, "kind": o["kind"], "filled": o["filled_qty"],
            "unsold": o["qty"] - o["filled_qty"], "status": o["status"], "reason": o["reason"]},
            actor=SYSTEM_ACTOR, client_id=client, fp=fp, notify=(p["pledgor_id"],))
        if p["status"] == lifecycle.ENFORCING:
            await _conclude(conn, rt, p, SYSTEM_ACTOR)

    await _mutate(rt, None, client, pledge_id, fp, body)


async def _unbooked(conn: AsyncConnection, pledge_id: int) -> bool:
    """Whether a settled trade or an ended listing/auction of the lot is not paid out or noted yet."""
    done = await repo.event_client_ids(conn, pledge_id, "sale:")
    trades = await repo.sale_trades(conn, pledge_id)
    return any(f"sale:{t['market_id']}:trade:{t['trade_id']}" not in done for t in trades)


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
            ended = [o for o in await repo.sale_orders(conn, pledge_id) if o["status"] != "open"]
        try:
            for t in trades:
                if f"sale:{t['market_id']}:trade:{t['trade_id']}" not in done:
                    await sale_settled(rt, pledge_id, t["market_id"], t["trade_id"])
                    booked += 1
            for o in ended:
                if f"sale:{o['market_id']}:ended:{o['id']}" not in done:
                    await sale_ended(rt, pledge_id, o["market_id"], o["id"])
                    booked += 1
        except DomainError as exc:
            log.warning("pledge %s: sale reconciliation stopped: %s %s", pledge_id, exc.code, exc.message)
    return booked


# ----------------------------------------------------------------------------------- expiry and freezes


@translate_refusals
async def expire_due(rt: Runtime, at: datetime | None = None) -> list[int]:
    """Expire registrations past their term (+ grace). Idempotent; safe in several processes at once.

    An exchange sale running at the expiry ends first (listings at the close, auctions when allocated or
    cancelled); then the unsold units go back to the pledgor (the courts' share frozen again) and the
    pledgee's unpaid rest is an unsecured claim (民法典 §438)."""
    at = at or now()
    async with rt.read() as conn:
        ids = await repo.due_pledges(conn, at)
        filings = await repo.lapsed_filings(conn, at, rt.settings.pledge_confirm_days)
    done = await _lapse(rt, filings, at)
    for pledge_id in ids:
        try:
            async with rt.tx() as conn:
                p = await repo.lock_pledge(conn, pledge_id)
                if p is None or _dt(p["expires_at"]) > at or p["status"] not in lifecycle.LOCKED:
                    continue
                method = (p["enforcement"] or {}).get("method")
                claims = await repo.claims_of(conn, p["id"], ("filed", "registered"))
                info: dict[str, Any] = {}
                changes: dict[str, Any] = {}
                if method == "exchange":
                    if any(o["status"] == "open" for o in await repo.sale_orders(conn, p["id"])) or \
                            await _unbooked(conn, p["id"]):
                        continue  # the sale ends, and every settlement of it is paid out, first
                    e = dict(p["enforcement"])
                    lot = _ranges(e["lot"])
                    entries = await _return_units(conn, rt, p, lot, relock=False, actor=SYSTEM_ACTOR) if lot else []
                    e.update(lot=[], returned=[list(r) for r in lot])
                    changes = {"enforcement": e}
                    info = {"returned": [list(r) for r in lot], "quantity": rg.total(lot)}
                else:
                    entries = [await rt.submit(c.Request(SYSTEM_ACTOR, c.ExpireHold(p["hold_id"]),
                                                         _ledger_id(p, "expire"), _meta(p, "expire")))]
                for cl in claims:
                    await repo.update_claim(conn, cl["id"], status="lapsed")
                await _record(conn, p, "expired", changes, info={**info, "claims_lapsed": [cl["id"] for cl in claims]},
                              actor=SYSTEM_ACTOR, seqs=[x.seq for x in entries],
                              notify=(p["pledgor_id"], *(cl["claimant_id"] for cl in claims)))
                done.append(pledge_id)
        except DomainError as exc:  # e.g. the ledger clock is a hair behind ours: next sweep
            log.warning("pledge %s not expired: %s %s", pledge_id, exc.code, exc.message)
    if done:
        kick(rt)
    return done


async def _lapse(rt: Runtime, ids: list[int], at: datetime) -> list[int]:
    """Filings not confirmed in time expire: nothing was locked, so nothing is released; the bank and the
    pledgor hear of it."""
    done = []
    for pledge_id in ids:
        async with rt.tx() as conn:
            p = await repo.lock_pledge(conn, pledge_id)
            if p is None or p["status"] != lifecycle.FILED or min(_confirm_by(rt, p), _dt(p["expires_at"])) > at:
                continue
            await _record(conn, p, "expired", {}, info={"lapsed": "not_confirmed", "filed_at": p["created_at"]},
                          actor=SYSTEM_ACTOR, notify=(p["pledgor_id"],))
            done.append(pledge_id)
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
    from exchange.verifiable import signing

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
