"""The ledger's state machine: pure transitions and the invariants they keep.

Every rule about how value moves lives here, once: the writer applies it to a view loaded from
PostgreSQL, the verifier replays it over the whole log, and tests drive it directly. No I/O, no
clock (the writer passes `ts`), no randomness.

Model (after TigerBeetle, with serial blocks after UNDP's registry):
- a balance per (account, instrument): `posted`, `pending_out` (holds debiting it) and `pending_in`;
  `available = posted - pending_out` must stay >= 0 except on issuance/settlement accounts;
- serialised instruments also keep *blocks*: inclusive serial ranges of one batch, owned by one
  account, optionally encumbered by one hold, or retired. The blocks of an account always sum to its
  posted balance; ranges of one instrument are disjoint;
- a hold (pending transfer) is resolved at most once: posted (fully or partly), voided or expired;
- a freeze is a hold of kind "freeze" that, on serialised units, locks blocks in place (`frozen_by`)
  instead of reserving them, so it can sit on top of a pledge; posting it deducts (扣划) the units to
  the court's account -- only units no pledge holds, lowest first, the rest staying frozen when the
  post keeps its remainder --, voiding it unfreezes. Frozen units cannot move, retire or be newly encumbered,
  and a hold over frozen units cannot be posted. For serialised units `pending_out` is the number of
  encumbered units (held or frozen, counted once), kept in step with the blocks;
- credits to the `retired` sink are final: the sink is never debited.

Ids are the sequence number of the entry that created the object (account, batch, hold), so replay
reproduces them with no counters.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import operator
from collections import deque
from collections.abc import Iterable, MutableSequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ledger import blinding
from ledger import commands as c
from ledger.encoding import (
    ZERO_HASH,
    canonical_json,
    encode_leaf,
    encode_leaf_v2,
    encode_leaf_v3,
    encode_leaf_v4,
    entry_hash,
)
from ledger.note import NoteError, Verifier

# Account kinds. Holder-like kinds can never be overdrawn.
HOLDER_KINDS = frozenset({"holding", "cash", "escrow", "fees"})
NEGATIVE_ALLOWED = frozenset({"issuance", "settlement"})
SINK_KINDS = frozenset({"retired"})
ACCOUNT_KINDS = HOLDER_KINDS | NEGATIVE_ALLOWED | SINK_KINDS

INSTRUMENT_KINDS = frozenset({"currency", "cea", "ccer", "cdcer", "forest_ticket", "emission_right"})
HOLD_KINDS = frozenset({"order", "pledge", "freeze", "retirement", "transfer", "deposit", "t1"})
RETIREMENT_PURPOSES = frozenset({"compliance", "voluntary", "judicial_restoration", "cancellation", "expiry"})

HOLD_PENDING = "pending"
HOLD_POSTED = "posted"
HOLD_VOIDED = "voided"
HOLD_EXPIRED = "expired"

MAX_AMOUNT = 2**53 - 1
# An event (one version-2 entry): its kind is a short ASCII word, its legs at most this many.
MAX_LEGS = 64
EVENT_LEGS = (c.Transfer, c.CreateHold, c.PostHold, c.TrimHold, c.AmendHold, c.VoidHold, c.ExpireHold)


class Rejection(Exception):
    """A command the ledger refuses; `code` is the machine code shown to API clients.

    `message` speaks the ledger's own language (account ids, base units); `facts` hold the same numbers
    by name -- `account`, `instrument`, `decimals`, `available`, `needed`, ... -- so that the application
    can say it to a caller in their units and name an account only to its owner (exchange/core/refusal_text.py).
    """

    def __init__(self, code: str, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.facts = facts


# The ledger's closed set of refusal codes: every `Rejection` of the state machine and the writer carries
# one (tests/test_refusals.py walks the source). The exchange's enum (exchange/core/refusals.py) has each,
# with its HTTP status and meaning.
REFUSAL_CODES = frozenset({
    "unknown_account", "unknown_instrument", "unknown_hold", "unknown_command",
    "invalid_amount", "invalid_serials", "serials_amount_mismatch", "serials_not_applicable", "invalid_purpose",
    "invalid_hold_kind", "invalid_expiry", "same_account", "invalid_instrument_code", "invalid_instrument_kind",
    "invalid_decimals", "invalid_account_kind", "invalid_source", "invalid_sink", "invalid_holder",
    "account_instrument_mismatch", "not_issuable", "not_retirable", "use_retire", "retired_final",
    "instrument_exists", "serial_space_exhausted", "insufficient_available", "serials_not_available",
    "amount_exceeds_hold", "hold_already_resolved", "hold_expired", "hold_not_expired", "frozen", "pledged",
    "invalid_signing_key", "signing_key_exists", "idempotency_conflict", "invalid_event", "blinding_unavailable",
})


class InvariantViolation(AssertionError):
    """The state broke one of its own invariants: a bug, never a client error. The writer stops on it
    (ledger/writer.py); it is never answered as a refusal."""


@dataclass(frozen=True, slots=True)
class Instrument:
    code: str
    kind: str
    decimals: int
    next_serial: int = 1

    @property
    def serialised(self) -> bool:
        return self.kind != "currency"


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    owner: str
    kind: str


@dataclass(slots=True)
class Balance:
    """Mutable: the state machine changes a balance in place and journals its old numbers (`_restore_balance`)."""

    posted: int = 0
    pending_out: int = 0
    pending_in: int = 0

    @property
    def available(self) -> int:
        return self.posted - self.pending_out


class Block(NamedTuple):
    """Immutable (a tuple: the writer's block cache shares block objects between batches and the flush diffs
    by identity); built once per cut, so it must be cheap to build (a frozen dataclass was the state machine's
    largest cost on serial-block transfers)."""

    instrument: str
    start: int
    end: int
    batch: int
    account: int
    hold: int | None = None
    retired_seq: int | None = None
    # A judicial freeze locks units in place; it may sit on top of a pledge hold on the same units.
    frozen_by: int | None = None

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    @property
    def encumbered(self) -> bool:
        return self.hold is not None or self.frozen_by is not None

    @property
    def state(self) -> str:
        if self.retired_seq is not None:
            return "retired"
        if self.frozen_by is not None:
            return "frozen"
        return "held" if self.hold is None else "encumbered"


@dataclass(frozen=True, slots=True)
class Batch:
    id: int
    instrument: str
    start: int
    end: int
    account: int
    reference: str


@dataclass(slots=True)
class Hold:
    """Mutable in `state`, `posted_amount`, `resolved_seq` and `expires_at`, changed in place and journalled
    (`_restore_hold`), and in `amount`, which a trim lowers to what it keeps (`_restore_amount`); the rest
    never changes."""

    id: int
    kind: str
    debit: int
    credit: int
    instrument: str
    amount: int
    expires_at: int | None
    state: str = HOLD_PENDING
    posted_amount: int = 0  # cumulative: a hold may be posted in parts (keep_remainder)
    resolved_seq: int | None = None

    @property
    def pending(self) -> int:
        return self.amount - self.posted_amount if self.state == HOLD_PENDING else 0


class Entry(NamedTuple):
    """One appended entry: its canonical leaf bytes plus what the store indexes it by. Immutable; a tuple,
    because one is built for every entry the writer appends."""

    seq: int
    ts: int
    type: str
    actor: str
    client_id: str | None
    leaf: bytes
    hash: bytes
    meta: bytes
    body: dict[str, Any]
    # A blinded event's openings (ledger/blinding.py): kept privately beside the entry, never in its bytes.
    openings: blinding.Openings | None = None


class Head(NamedTuple):
    """The chain head: immutable, rebuilt after every entry."""

    seq: int = 0
    hash: bytes = ZERO_HASH
    ts: int = 0


BalanceKey = tuple[int, str]
_MISSING = object()
# Stands for the head in the journal. Not the state itself: a journal naming its own state would make every
# view a reference cycle, left for the cyclic GC (whose passes over a batch's garbage cost the writer ~20 %).
_HEAD = object()
# The journal of a state that keeps no undo (`LedgerState(undo=False)`): it drops what is appended to it (in C).
_NO_UNDO: deque[tuple[Any, Any, Any]] = deque(maxlen=0)


def _restore_balance(b: Balance, old: tuple[int, int, int]) -> None:
    b.posted, b.pending_out, b.pending_in = old


def _restore_hold(h: Hold, old: tuple[str, int, int | None, int | None]) -> None:
    h.state, h.posted_amount, h.resolved_seq, h.expires_at = old


def _restore_amount(h: Hold, old: int) -> None:
    h.amount = old


# Bisection keys (C-level getters: the block lists are short and bisected on every move).
_start = operator.attrgetter("start")
_end = operator.attrgetter("end")


def _cut(b: Block, start: int, end: int) -> Block:
    """The part [start, end] of block `b`, every other attribute kept."""
    return Block(b.instrument, start, end, b.batch, b.account, b.hold, b.retired_seq, b.frozen_by)


def _joins(a: Block, b: Block) -> bool:
    """`b` continues `a` exactly: neighbours that differ only in their range are one block."""
    return (a.end + 1 == b.start and a.batch == b.batch and a.hold == b.hold and a.retired_seq == b.retired_seq
            and a.account == b.account and a.frozen_by == b.frozen_by)


class LedgerState:
    """A view of the ledger: the whole of it (verifier) or the part a batch touches (writer).

    Whatever is absent from the view is taken not to exist, so the writer must load every row a
    command could touch (see `ledger.store`). Mutations are journalled so a failing request, or a
    failing member of a linked group, leaves no trace.

    ``undo=False`` (the audit's replay, `ledger.verify`): the same rules decide, but nothing is journalled, so a
    refused request may leave part of its changes behind. Such a state is for a replay that stops at the first
    entry that does not apply (``undone`` is then False); it must never decide anything after a refusal.
    """

    def __init__(self, head: Head | None = None, *, undo: bool = True) -> None:
        self.head = head or Head()
        self.instruments: dict[str, Instrument] = {}
        self.accounts: dict[int, Account] = {}
        self.balances: dict[BalanceKey, Balance] = {}
        self.blocks: dict[BalanceKey, list[Block]] = {}
        self.holds: dict[int, Hold] = {}
        self.batches: dict[int, Batch] = {}
        # Checkpoint signing keys published in the log: verifier key string -> seq of its key.register.
        self.signing_keys: dict[str, int] = {}
        self._journal: MutableSequence[tuple[Any, Any, Any]] = [] if undo else _NO_UNDO
        self.undone = True  # False once a refusal could not be undone (undo=False)
        # What changed since the last flush, for the store.
        self.dirty_balances: set[BalanceKey] = set()
        self.dirty_blocks: set[BalanceKey] = set()
        self.dirty_holds: set[int] = set()
        self.new_accounts: list[int] = []
        self.new_batches: list[int] = []
        self.dirty_instruments: set[str] = set()
        self.new_signing_keys: list[str] = []
        # Salts of blinded events (ledger/blinding.py): the writer's from its key, a replay's from the openings.
        self.salts: blinding.Salts | None = None

    # ----------------------------------------------------------------- journalled setters

    def _set(self, table: Any, key: Any, value: Any) -> None:
        self._journal.append((table, key, table.get(key, _MISSING)))
        table[key] = value

    def mark(self) -> int:
        return len(self._journal)

    def rollback(self, mark: int) -> None:
        journal = self._journal
        if journal is _NO_UNDO:
            self.undone = False
            return
        while len(journal) > mark:
            table, key, old = journal.pop()
            if table is _HEAD:
                self.head = old
            elif type(table) is not dict:
                key(table, old)  # an object changed in place: `key` restores its old fields
            elif old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old

    def forget_journal(self) -> None:
        self._journal.clear()

    def clear_dirty(self) -> None:
        self.dirty_balances.clear()
        self.dirty_blocks.clear()
        self.dirty_holds.clear()
        self.new_accounts.clear()
        self.new_batches.clear()
        self.dirty_instruments.clear()
        self.new_signing_keys.clear()

    # ----------------------------------------------------------------- lookups

    def balance(self, account: int, instrument: str) -> Balance:
        return self.balances.get((account, instrument)) or Balance()

    def account(self, account_id: int) -> Account:
        acc = self.accounts.get(account_id)
        if acc is None:
            raise Rejection("unknown_account", f"account {account_id} does not exist", account=account_id)
        return acc

    def instrument(self, code: str) -> Instrument:
        inst = self.instruments.get(code)
        if inst is None:
            raise Rejection("unknown_instrument", f"instrument {code!r} does not exist")
        return inst

    def hold(self, hold_id: int) -> Hold:
        h = self.holds.get(hold_id)
        if h is None:
            raise Rejection("unknown_hold", f"hold {hold_id} does not exist")
        return h

    def account_blocks(self, account: int, instrument: str) -> list[Block]:
        return self.blocks.get((account, instrument), [])

    # ----------------------------------------------------------------- apply

    def apply(self, request: c.Request, ts: int) -> Entry:
        """Apply one request at time `ts`; raise `Rejection` and leave no trace if it is refused."""
        mark = self.mark()
        try:
            return self._apply(request, ts)
        except Rejection:
            self.rollback(mark)
            raise
        except Exception:
            self.rollback(mark)
            raise

    def apply_linked(self, requests: list[c.Request], ts: int) -> list[Entry]:
        """All or nothing: the first refusal undoes the whole group and is re-raised."""
        mark = self.mark()
        try:
            return [self._apply(r, ts) for r in requests]
        except BaseException:
            self.rollback(mark)
            raise

    def _apply(self, request: c.Request, ts: int) -> Entry:
        head = self.head
        seq = head.seq + 1
        if ts < head.ts:
            ts = head.ts  # entry time never runs backwards
        handler = _HANDLERS.get(type(request.command))
        if handler is None:
            raise Rejection("unknown_command", f"unsupported command {type(request.command).__name__}")
        type_, body, derived = handler(self, request.command, seq, ts)
        meta_obj = request.meta
        if derived or type(meta_obj) is not dict:
            meta_obj = {**meta_obj, **derived}
        meta = canonical_json(meta_obj)
        actor, client_id = request.actor, request.client_id
        openings = None
        cmd = request.command
        if type(cmd) is c.Event and (cmd.blinded or cmd.blind_amounts):
            # The clear command is applied; only the bytes name its accounts and holds (version 3), and its
            # amounts too (version 4), by commitment.
            if self.salts is None:
                raise Rejection("blinding_unavailable", "a blinded event needs the ledger's blinding salts")
            v4 = cmd.blind_amounts
            body, openings = blinding.blind(body, self.salts, seq, blinding.FIELDS[4 if v4 else 3])
            encode = encode_leaf_v4 if v4 else encode_leaf_v3
        else:
            encode = encode_leaf_v2 if type_ == "event" else encode_leaf
        leaf = encode(seq, head.hash, ts, type_, actor, client_id, body, meta)
        h = entry_hash(leaf)
        self._journal.append((_HEAD, None, head))
        self.head = Head(seq, h, ts)
        return Entry(seq, ts, type_, actor, client_id, leaf, h, meta, body, openings)

    # ----------------------------------------------------------------- balance primitives

    def _tracks_blocks(self, account: int, instrument: str) -> bool:
        """Serialised holdings of holder accounts: their pending_out follows their blocks."""
        return self.accounts[account].kind in HOLDER_KINDS and self.instruments[instrument].serialised

    def _add_balance(self, account: int, instrument: str, d_posted: int = 0, d_out: int = 0,
                     d_in: int = 0) -> None:
        key = (account, instrument)
        if d_out and self._tracks_blocks(account, instrument):
            d_out = 0  # already counted from the blocks by _store_blocks
        b = self.balances.get(key)
        posted, out, in_ = (b.posted, b.pending_out, b.pending_in) if b is not None else (0, 0, 0)
        new_posted, new_out, new_in = posted + d_posted, out + d_out, in_ + d_in
        if new_out < 0 or new_in < 0:
            raise InvariantViolation(f"negative pending on {key}")
        if new_posted - new_out < 0 and self.accounts[account].kind not in NEGATIVE_ALLOWED:
            raise InvariantViolation(f"overdraft on {key}")
        if b is None:
            self._journal.append((self.balances, key, _MISSING))
            self.balances[key] = Balance(new_posted, new_out, new_in)
        elif d_posted or d_out or d_in:
            self._journal.append((b, _restore_balance, (posted, out, in_)))
            b.posted, b.pending_out, b.pending_in = new_posted, new_out, new_in
        self.dirty_balances.add(key)

    def _update_hold(self, hold: Hold, state: str, posted_amount: int, resolved_seq: int | None,
                     expires_at: int | None) -> None:
        self._journal.append((hold, _restore_hold, (hold.state, hold.posted_amount, hold.resolved_seq,
                                                    hold.expires_at)))
        hold.state, hold.posted_amount, hold.resolved_seq, hold.expires_at = (state, posted_amount, resolved_seq,
                                                                              expires_at)
        self.dirty_holds.add(hold.id)

    def _require_available(self, account: Account, instrument: str, amount: int) -> None:
        if account.kind in SINK_KINDS:
            raise Rejection("retired_final", "retired units can never move")
        if account.kind in NEGATIVE_ALLOWED:
            return
        b = self.balances.get((account.id, instrument))
        available = b.posted - b.pending_out if b is not None else 0
        if available < amount:
            raise Rejection(
                "insufficient_available",
                f"account {account.id} has {available} available of {instrument}, needs {amount}",
                account=account.id, instrument=instrument, decimals=self.instruments[instrument].decimals,
                available=available, needed=amount,
            )

    # ----------------------------------------------------------------- block primitives

    def _store_blocks(self, key: BalanceKey, blocks: list[Block], d_encumbered: int) -> None:
        """Replace a pair's block list (kept sorted by start and merged: no two neighbours differ only in
        their range). `d_encumbered` is how many more units of it are held or frozen than before; for a
        holder's serialised units `pending_out` follows it."""
        self._set(self.blocks, key, blocks)
        self.dirty_blocks.add(key)
        if d_encumbered and self._tracks_blocks(*key):
            b = self.balances.get(key)
            if b is None:
                self._journal.append((self.balances, key, _MISSING))
                self.balances[key] = Balance(0, d_encumbered, 0)
            else:
                self._journal.append((b, _restore_balance, (b.posted, b.pending_out, b.pending_in)))
                b.pending_out += d_encumbered
            self.dirty_balances.add(key)

    def _select_free(self, account: int, instrument: str, amount: int,
                     serials: tuple[c.Range, ...], hold: int | None = None,
                     freeze: int | None = None, freezable: bool = False,
                     unpledged: bool = False) -> list[c.Range]:
        """Choose which serials move: the named ranges, or the lowest free serials first.

        `hold` selects among the blocks encumbered by that hold, `freeze` among those frozen by that
        freeze (with `unpledged`, only those no pledge holds: what a deduction may take), `freezable`
        among free and pledged (unfrozen) blocks, free ones first.
        """
        blocks = self.blocks.get((account, instrument), ())
        if not serials and freeze is None and not freezable:
            # The common case, lowest first: walk the sorted blocks and stop as soon as there is enough.
            picked: list[c.Range] = []
            need = amount
            for b in blocks:
                # free blocks (hold None: neither held nor frozen), or the blocks of `hold` (frozen or not)
                if b.hold == hold and (hold is not None or b.frozen_by is None) and b.retired_seq is None:
                    size = b.end - b.start + 1
                    if size >= need:
                        picked.append((b.start, b.start + need - 1))
                        need = 0
                        break
                    picked.append((b.start, b.end))
                    need -= size
            if need:
                raise InvariantViolation(f"blocks of {account}/{instrument} disagree with its balance")
            return picked
        blocks = [b for b in blocks if b.retired_seq is None]
        if freeze is not None:
            candidates = [b for b in blocks if b.frozen_by == freeze and not (unpledged and b.hold is not None)]
        elif freezable:
            candidates = [b for b in blocks if b.frozen_by is None and b.hold is None] + [
                b for b in blocks if b.frozen_by is None and b.hold is not None
                and self.holds.get(b.hold) is not None and self.holds[b.hold].kind == "pledge"]
        elif hold is not None:
            candidates = [b for b in blocks if b.hold == hold]
        else:
            candidates = [b for b in blocks if b.hold is None and b.frozen_by is None]
        if serials:
            ranges = _normalise_ranges(serials)
            if sum(e - s + 1 for s, e in ranges) != amount:
                raise Rejection("serials_amount_mismatch", "named serial ranges do not add up to the amount")
            # A named range may span neighbouring blocks (another batch, or a free/pledged edge): it is
            # split at block edges, and every unit of it must lie in a candidate block.
            pieces: list[c.Range] = []
            ordered = sorted(candidates, key=_start)
            for s, e in ranges:
                cursor = s
                # Disjoint blocks sorted by start are sorted by end too: skip those that end before s.
                for b in itertools.islice(ordered, bisect.bisect_left(ordered, s, key=_end), None):
                    if b.end < cursor or b.start > e:
                        continue
                    if b.start > cursor:
                        break
                    top = min(e, b.end)
                    pieces.append((cursor, top))
                    cursor = top + 1
                    if cursor > e:
                        break
                if cursor <= e:
                    raise Rejection(
                        "serials_not_available",
                        f"serials {s}-{e} of {instrument} are not free in account {account}",
                        account=account, instrument=instrument, serials=(s, e),
                    )
            return pieces
        picked = []
        need = amount
        for b in candidates:
            if need == 0:
                break
            take = min(need, b.size)
            picked.append((b.start, b.start + take - 1))
            need -= take
        if need:
            raise InvariantViolation(f"blocks of {account}/{instrument} disagree with its balance")
        # Ascending, whatever order the candidates were tried in (free before pledged for a freeze):
        # the entry records them this way and replay names them back in the same order.
        return sorted(picked)

    def _carve(self, account: int, instrument: str, ranges: list[c.Range]) -> list[Block]:
        """Cut `ranges` (each inside one block) out of the account's blocks; return the cut pieces
        (attributes kept). The list stays sorted: blocks before, between and after the cuts are kept as
        they are (the same objects), found by bisection."""
        key = (account, instrument)
        blocks = self.blocks.get(key, [])
        out: list[Block] = []
        pieces: list[Block] = []
        copied = 0  # blocks[:copied] are settled
        cur: Block | None = None  # the block being cut, from `cursor` on not yet placed
        cursor = 0
        d_encumbered = 0
        for s, e in sorted(ranges):
            if cur is None or s > cur.end:
                if cur is not None and cursor <= cur.end:
                    out.append(_cut(cur, cursor, cur.end))
                i = bisect.bisect_right(blocks, s, copied, len(blocks), key=_start) - 1
                if i < copied or blocks[i].end < e:
                    raise InvariantViolation("carved pieces do not match the requested ranges")
                out.extend(blocks[copied:i])
                copied = i + 1
                cur = blocks[i]
                cursor = cur.start
            elif s < cursor or e > cur.end:
                raise InvariantViolation("carved pieces do not match the requested ranges")
            if s > cursor:
                out.append(_cut(cur, cursor, s - 1))
            pieces.append(cur if s == cur.start and e == cur.end else _cut(cur, s, e))
            if cur.hold is not None or cur.frozen_by is not None:
                d_encumbered -= e - s + 1
            cursor = e + 1
        if cur is not None and cursor <= cur.end:
            out.append(_cut(cur, cursor, cur.end))
        out.extend(blocks[copied:])
        self._store_blocks(key, out, d_encumbered)
        return pieces

    def _place(self, account: int, instrument: str, pieces: Iterable[Block]) -> None:
        """Put `pieces` (disjoint from the account's blocks) in their sorted places, joining neighbours
        that differ only in their range."""
        key = (account, instrument)
        out = list(self.blocks.get(key, ()))
        d_encumbered = 0
        for p in pieces:
            if p.hold is not None or p.frozen_by is not None:
                d_encumbered += p.end - p.start + 1
            lo = hi = bisect.bisect_left(out, p.start, key=_start)
            if lo > 0 and _joins(out[lo - 1], p):
                lo -= 1
                p = _cut(out[lo], out[lo].start, p.end)
            if hi < len(out) and _joins(p, out[hi]):
                p = _cut(p, p.start, out[hi].end)
                hi += 1
            out[lo:hi] = (p,)
        self._store_blocks(key, out, d_encumbered)

    def _move_units(self, src: int, dst: int, instrument: str, ranges: list[c.Range],
                    retired_seq: int | None) -> None:
        pieces = self._carve(src, instrument, ranges)
        self._place(dst, instrument, [Block(p.instrument, p.start, p.end, p.batch, dst, None, retired_seq, None)
                                      for p in pieces])

    def _encumber(self, account: int, instrument: str, ranges: list[c.Range], hold: int | None) -> None:
        pieces = self._carve(account, instrument, ranges)
        self._place(account, instrument, [Block(p.instrument, p.start, p.end, p.batch, p.account, hold,
                                                p.retired_seq, p.frozen_by) for p in pieces])

    def _lock(self, account: int, instrument: str, ranges: list[c.Range], freeze: int | None) -> None:
        pieces = self._carve(account, instrument, ranges)
        self._place(account, instrument, [Block(p.instrument, p.start, p.end, p.batch, p.account, p.hold,
                                                p.retired_seq, freeze) for p in pieces])

    # ----------------------------------------------------------------- common checks

    def _check_amount(self, amount: int) -> None:
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0 or amount > MAX_AMOUNT:
            raise Rejection("invalid_amount", "amount must be a positive integer in base units")

    def _check_pair(self, debit: Account, credit: Account, inst: Instrument) -> None:
        if debit.id == credit.id:
            raise Rejection("same_account", "debit and credit accounts must differ")
        for acc in (debit, credit):
            if acc.kind == "cash" and inst.serialised:
                raise Rejection("account_instrument_mismatch", f"cash account {acc.id} cannot hold {inst.code}",
                                account=acc.id, instrument=inst.code)
            if acc.kind == "holding" and not inst.serialised:
                raise Rejection(
                    "account_instrument_mismatch", f"holding account {acc.id} cannot hold {inst.code}",
                    account=acc.id, instrument=inst.code,
                )

    def _movement(self, debit: Account, credit: Account, inst: Instrument, amount: int,
                  serials: tuple[c.Range, ...], seq: int) -> dict[str, Any]:
        """Move posted value now; returns derived metadata (serial ranges moved)."""
        code = inst.code
        self._require_available(debit, code, amount)
        derived: dict[str, Any] = {}
        if inst.kind != "currency":  # serialised
            ranges = self._select_free(debit.id, code, amount, serials)
            self._move_units(debit.id, credit.id, code, ranges, seq if credit.kind in SINK_KINDS else None)
            derived["serials"] = ranges  # (start, end) pairs: JSON arrays in the metadata
        elif serials:
            raise Rejection("serials_not_applicable", f"{code} has no serial numbers")
        self._add_balance(debit.id, code, -amount)
        self._add_balance(credit.id, code, amount)
        return derived

    # ----------------------------------------------------------------- handlers

    def _define_instrument(self, cmd: c.DefineInstrument, seq: int, ts: int) -> tuple[str, dict, dict]:
        if cmd.code in self.instruments:
            raise Rejection("instrument_exists", f"instrument {cmd.code!r} already exists")
        if not cmd.code or len(cmd.code) > 32 or not cmd.code.isascii():
            raise Rejection("invalid_instrument_code", "instrument codes are 1-32 ASCII characters")
        if cmd.kind not in INSTRUMENT_KINDS:
            raise Rejection("invalid_instrument_kind", f"unknown instrument kind {cmd.kind!r}")
        if not 0 <= cmd.decimals <= 6:
            raise Rejection("invalid_decimals", "decimals must be between 0 and 6")
        self._set(self.instruments, cmd.code, Instrument(cmd.code, cmd.kind, cmd.decimals))
        self.dirty_instruments.add(cmd.code)
        return "instrument.define", {"code": cmd.code, "kind": cmd.kind, "decimals": cmd.decimals}, {}

    def _open_account(self, cmd: c.OpenAccount, seq: int, ts: int) -> tuple[str, dict, dict]:
        if cmd.kind not in ACCOUNT_KINDS:
            raise Rejection("invalid_account_kind", f"unknown account kind {cmd.kind!r}")
        self._set(self.accounts, seq, Account(seq, cmd.owner, cmd.kind))
        self.new_accounts.append(seq)
        return "account.open", {"account": seq, "owner": cmd.owner, "kind": cmd.kind}, {}

    def _issue_batch(self, cmd: c.IssueBatch, seq: int, ts: int) -> tuple[str, dict, dict]:
        self._check_amount(cmd.quantity)
        inst = self.instrument(cmd.instrument)
        if not inst.serialised:
            raise Rejection("not_issuable", f"{inst.code} is a currency: deposit it, do not issue it")
        source = self.account(cmd.source)
        holder = self.account(cmd.account)
        if source.kind != "issuance":
            raise Rejection("invalid_source", "batches are issued from the issuance account")
        self._check_pair(source, holder, inst)
        if holder.kind not in HOLDER_KINDS:
            raise Rejection("invalid_holder", "a batch must be credited to a holder account")
        start = inst.next_serial
        end = start + cmd.quantity - 1
        if end > MAX_AMOUNT:
            raise Rejection("serial_space_exhausted", f"serial space of {inst.code} is exhausted")
        self._set(self.instruments, inst.code, dataclasses.replace(inst, next_serial=end + 1))
        self.dirty_instruments.add(inst.code)
        self._set(self.batches, seq, Batch(seq, inst.code, start, end, holder.id, cmd.reference))
        self.new_batches.append(seq)
        self._place(holder.id, inst.code, [Block(inst.code, start, end, seq, holder.id)])
        self._add_balance(source.id, inst.code, d_posted=-cmd.quantity)
        self._add_balance(holder.id, inst.code, d_posted=cmd.quantity)
        body = {"batch": seq, "instrument": inst.code, "source": source.id, "account": holder.id,
                "quantity": cmd.quantity, "start": start, "end": end, "reference": cmd.reference}
        return "batch.issue", body, {}

    def _transfer(self, cmd: c.Transfer, seq: int, ts: int) -> tuple[str, dict, dict]:
        self._check_amount(cmd.amount)
        inst = self.instrument(cmd.instrument)
        debit, credit = self.account(cmd.debit), self.account(cmd.credit)
        self._check_pair(debit, credit, inst)
        if credit.kind in SINK_KINDS:
            raise Rejection("use_retire", "units reach the retired sink only by retirement")
        if debit.kind == "issuance" or credit.kind == "issuance":
            raise Rejection("invalid_account_kind", "the issuance account moves only by batch issuance")
        derived = self._movement(debit, credit, inst, cmd.amount, cmd.serials, seq)
        body = {"debit": debit.id, "credit": credit.id, "instrument": inst.code, "amount": cmd.amount}
        return "transfer", body, derived

    def _retire(self, cmd: c.Retire, seq: int, ts: int) -> tuple[str, dict, dict]:
        self._check_amount(cmd.amount)
        inst = self.instrument(cmd.instrument)
        if not inst.serialised:
            raise Rejection("not_retirable", f"{inst.code} cannot be retired")
        if cmd.purpose not in RETIREMENT_PURPOSES:
            raise Rejection("invalid_purpose", f"unknown retirement purpose {cmd.purpose!r}")
        account, sink = self.account(cmd.account), self.account(cmd.sink)
        if sink.kind not in SINK_KINDS:
            raise Rejection("invalid_sink", "retirement goes to the retired sink account")
        if account.kind not in HOLDER_KINDS:
            raise Rejection("invalid_account_kind", "only holder accounts retire units")
        self._check_pair(account, sink, inst)
        derived = self._movement(account, sink, inst, cmd.amount, cmd.serials, seq)
        body = {"account": account.id, "sink": sink.id, "instrument": inst.code, "amount": cmd.amount,
                "purpose": cmd.purpose, "beneficiary": cmd.beneficiary}
        return "retire", body, derived

    def _create_hold(self, cmd: c.CreateHold, seq: int, ts: int) -> tuple[str, dict, dict]:
        self._check_amount(cmd.amount)
        if cmd.kind not in HOLD_KINDS:
            raise Rejection("invalid_hold_kind", f"unknown hold kind {cmd.kind!r}")
        if cmd.expires_at is not None and cmd.expires_at <= ts:
            raise Rejection("invalid_expiry", "a hold must expire in the future")
        inst = self.instrument(cmd.instrument)
        debit, credit = self.account(cmd.debit), self.account(cmd.credit)
        self._check_pair(debit, credit, inst)
        if debit.kind == "issuance" or credit.kind == "issuance":
            raise Rejection("invalid_account_kind", "the issuance account moves only by batch issuance")
        derived: dict[str, Any] = {}
        if inst.serialised and cmd.kind == "freeze":
            if debit.kind not in HOLDER_KINDS:
                raise Rejection("invalid_account_kind", "only holder accounts can be frozen")
            self._hold_in_view(debit.id, inst.code)
            freezable = sum(b.size for b in self.account_blocks(debit.id, inst.code)
                            if b.retired_seq is None and b.frozen_by is None
                            and (b.hold is None or self.holds[b.hold].kind == "pledge"))
            if freezable < cmd.amount:
                raise Rejection("insufficient_available",
                                f"account {debit.id} has {freezable} of {inst.code} that can be frozen, "
                                f"needs {cmd.amount}", account=debit.id, instrument=inst.code,
                                decimals=inst.decimals, available=freezable, needed=cmd.amount, freeze=True)
            ranges = self._select_free(debit.id, inst.code, cmd.amount, cmd.serials, freezable=True)
            self._lock(debit.id, inst.code, ranges, seq)
            derived["serials"] = ranges  # (start, end) pairs: JSON arrays in the metadata
        elif inst.serialised:
            self._require_available(debit, inst.code, cmd.amount)
            ranges = self._select_free(debit.id, inst.code, cmd.amount, cmd.serials)
            self._encumber(debit.id, inst.code, ranges, seq)
            derived["serials"] = ranges  # (start, end) pairs: JSON arrays in the metadata
        else:
            if cmd.serials:
                raise Rejection("serials_not_applicable", f"{inst.code} has no serial numbers")
            self._require_available(debit, inst.code, cmd.amount)
        hold = Hold(seq, cmd.kind, debit.id, credit.id, inst.code, cmd.amount, cmd.expires_at)
        self._set(self.holds, seq, hold)
        self.dirty_holds.add(seq)
        self._add_balance(debit.id, inst.code, d_out=cmd.amount)
        self._add_balance(credit.id, inst.code, d_in=cmd.amount)
        body = {"hold": seq, "kind": cmd.kind, "debit": debit.id, "credit": credit.id,
                "instrument": inst.code, "amount": cmd.amount, "expires_at": cmd.expires_at}
        return "hold.create", body, derived

    def _pending(self, hold_id: int) -> Hold:
        hold = self.hold(hold_id)
        if hold.state != HOLD_PENDING:
            raise Rejection("hold_already_resolved", f"hold {hold_id} is already {hold.state}")
        return hold

    def _hold_in_view(self, account: int, instrument: str) -> None:
        """Every hold named by a block must be in the view (the writer loads them with the blocks)."""
        for b in self.account_blocks(account, instrument):
            for ref in (b.hold, b.frozen_by):
                if ref is not None and ref not in self.holds:
                    raise InvariantViolation(f"hold {ref} of a block of {account}/{instrument} is not loaded")

    def _release(self, hold: Hold, amount: int) -> None:
        """Give back `amount` of a hold (unencumber) or of a freeze (unfreeze)."""
        inst = self.instruments[hold.instrument]
        if inst.serialised and amount:
            if hold.kind == "freeze":
                ranges = self._select_free(hold.debit, inst.code, amount, (), freeze=hold.id)
                self._lock(hold.debit, inst.code, ranges, None)
            else:
                ranges = self._select_free(hold.debit, inst.code, amount, (), hold=hold.id)
                self._encumber(hold.debit, inst.code, ranges, None)

    def _resolve(self, hold: Hold, state: str, posted: int, seq: int) -> None:
        self._add_balance(hold.debit, hold.instrument, d_out=-hold.pending)
        self._add_balance(hold.credit, hold.instrument, d_in=-hold.pending)
        self._update_hold(hold, state, posted, seq, hold.expires_at)

    def _post_hold(self, cmd: c.PostHold, seq: int, ts: int) -> tuple[str, dict, dict]:
        hold = self._pending(cmd.hold)
        amount = hold.pending if cmd.amount is None else cmd.amount
        self._check_amount(amount)
        if amount > hold.pending:
            raise Rejection("amount_exceeds_hold", f"hold {hold.id} has {hold.pending} pending, not {amount}",
                            account=hold.debit, instrument=hold.instrument,
                            decimals=self.instrument(hold.instrument).decimals, available=hold.pending,
                            needed=amount)
        partial = cmd.keep_remainder and amount < hold.pending
        if hold.expires_at is not None and ts >= hold.expires_at:
            raise Rejection("hold_expired", f"hold {hold.id} expired")
        credit = self.account(hold.credit)
        derived: dict[str, Any] = {}
        inst = self.instrument(hold.instrument)
        if inst.serialised:
            mine = [b for b in self.account_blocks(hold.debit, inst.code)
                    if (b.frozen_by if hold.kind == "freeze" else b.hold) == hold.id]
            # A deduction (扣划) takes frozen units no pledge holds; the pledged ones stay frozen behind
            # the pledgee's priority until it releases or enforces.
            deductible = sum(b.size for b in mine if b.hold is None)
            if hold.kind == "freeze" and amount > deductible:
                raise Rejection("pledged", f"{amount - deductible} of the units asked from freeze {hold.id} are "
                                f"pledged: at most {deductible} can be deducted before the pledge is released or "
                                "enforced", account=hold.debit, instrument=inst.code, decimals=inst.decimals,
                                available=deductible, needed=amount)
            if hold.kind != "freeze" and any(b.frozen_by is not None for b in mine):
                raise Rejection("frozen", f"units of hold {hold.id} are frozen by a court")
        remaining = hold.pending - amount
        if partial:
            # The hold stays pending for the rest: only the posted part stops counting.
            self._add_balance(hold.debit, hold.instrument, d_out=-amount)
            self._add_balance(hold.credit, hold.instrument, d_in=-amount)
            self._update_hold(hold, hold.state, hold.posted_amount + amount, hold.resolved_seq, hold.expires_at)
        else:
            # Resolve first so the pending amount stops counting, then move the posted part.
            self._resolve(hold, HOLD_POSTED, hold.posted_amount + amount, seq)
        if inst.serialised:
            if hold.kind == "freeze":
                ranges = self._select_free(hold.debit, inst.code, amount, (), freeze=hold.id, unpledged=True)
            else:
                ranges = self._select_free(hold.debit, inst.code, amount, (), hold=hold.id)
            self._move_units(hold.debit, credit.id, inst.code, ranges,
                             seq if credit.kind in SINK_KINDS else None)
            if not partial:
                self._release(hold, remaining)
            derived["serials"] = ranges  # (start, end) pairs: JSON arrays in the metadata
        self._add_balance(hold.debit, inst.code, d_posted=-amount)
        self._add_balance(credit.id, inst.code, d_posted=amount)
        body = {"hold": hold.id, "amount": amount, "released": 0 if partial else remaining,
                "remaining": remaining if partial else 0, "debit": hold.debit, "credit": hold.credit,
                "instrument": inst.code}
        return "hold.post", body, derived

    def _trim_hold(self, cmd: c.TrimHold, seq: int, ts: int) -> tuple[str, dict, dict]:
        """Release what a hold holds above `keep`; the rest stays pending (its `amount` shrinks by what is
        released). Trimmed to nothing, it is voided."""
        hold = self._pending(cmd.hold)
        keep = cmd.keep
        if type(keep) is not int or not 0 <= keep <= MAX_AMOUNT:
            raise Rejection("invalid_amount", "keep must be a non-negative integer in base units")
        if hold.kind == "freeze":
            raise Rejection("invalid_hold_kind", "a freeze is released whole or deducted, never trimmed")
        released = max(hold.pending - keep, 0)
        if released and released == hold.pending:
            self._resolve(hold, HOLD_VOIDED, hold.posted_amount, seq)
        elif released:
            self._add_balance(hold.debit, hold.instrument, d_out=-released)
            self._add_balance(hold.credit, hold.instrument, d_in=-released)
            self._journal.append((hold, _restore_amount, hold.amount))
            hold.amount -= released
            self.dirty_holds.add(hold.id)
        self._release(hold, released)
        return "hold.trim", {"hold": hold.id, "keep": keep, "released": released, "remaining": hold.pending}, {}

    def _event(self, cmd: c.Event, seq: int, ts: int) -> tuple[str, dict, dict]:
        """One business event: its legs in order, all or none (the caller's `apply` rolls back a refused
        leg with everything before it), recorded as one entry."""
        kind, legs = cmd.kind, cmd.legs
        if type(kind) is not str or not 0 < len(kind) <= 32 or not kind.isascii() or not kind.isprintable():
            raise Rejection("invalid_event", "an event's kind is 1-32 printable ASCII characters")
        if type(legs) is not tuple or not 0 < len(legs) <= MAX_LEGS:
            raise Rejection("invalid_event", f"an event has 1 to {MAX_LEGS} legs")
        if not all(type(leg) in EVENT_LEGS for leg in legs):
            raise Rejection("invalid_event", "an event's legs are transfers and hold changes; accounts, "
                            "instruments, batches, keys and retirements are entries of their own")
        if sum(type(leg) is c.CreateHold for leg in legs) > 1:
            raise Rejection("invalid_event", "at most one leg of an event creates a hold (its id is the entry's seq)")
        out: list[dict[str, Any]] = []
        derived: list[dict[str, Any]] = []
        for leg in legs:
            type_, body, more = _HANDLERS[type(leg)](self, leg, seq, ts)
            out.append({"type": type_, "body": body})
            derived.append(more)
        return "event", {"kind": kind, "legs": out}, {"legs": derived}

    def _amend_hold(self, cmd: c.AmendHold, seq: int, ts: int) -> tuple[str, dict, dict]:
        hold = self._pending(cmd.hold)
        if cmd.expires_at is not None and cmd.expires_at <= ts:
            raise Rejection("invalid_expiry", "a hold must expire in the future")
        if hold.expires_at is not None and ts >= hold.expires_at:
            raise Rejection("hold_expired", f"hold {hold.id} expired")
        previous = hold.expires_at
        self._update_hold(hold, hold.state, hold.posted_amount, hold.resolved_seq, cmd.expires_at)
        return "hold.amend", {"hold": hold.id, "expires_at": cmd.expires_at, "previous_expires_at": previous}, {}

    def _void_hold(self, cmd: c.VoidHold, seq: int, ts: int) -> tuple[str, dict, dict]:
        hold = self._pending(cmd.hold)
        released = hold.pending
        self._resolve(hold, HOLD_VOIDED, hold.posted_amount, seq)
        self._release(hold, released)
        return "hold.void", {"hold": hold.id, "released": released}, {}

    def _expire_hold(self, cmd: c.ExpireHold, seq: int, ts: int) -> tuple[str, dict, dict]:
        hold = self._pending(cmd.hold)
        if hold.expires_at is None or ts < hold.expires_at:
            raise Rejection("hold_not_expired", f"hold {hold.id} has not reached its expiry")
        released = hold.pending
        self._resolve(hold, HOLD_EXPIRED, hold.posted_amount, seq)
        self._release(hold, released)
        return "hold.expire", {"hold": hold.id, "released": released}, {}

    def _register_signing_key(self, cmd: c.RegisterSigningKey, seq: int, ts: int) -> tuple[str, dict, dict]:
        # Key rotation is an event of the log, so every checkpoint key ever used is provable from it.
        try:
            key = Verifier.from_key_string(cmd.verifier_key)
        except NoteError as exc:
            raise Rejection("invalid_signing_key", f"not a C2SP Ed25519 verifier key: {exc}") from None
        if key.key_string() != cmd.verifier_key:
            raise Rejection("invalid_signing_key", "verifier key must be given in its canonical spelling")
        for known in self.signing_keys:
            old = Verifier.from_key_string(known)
            if (old.name, old.key_id) == (key.name, key.key_id):
                raise Rejection("signing_key_exists", f"key {key.name}+{key.key_id.hex()} is already registered")
        self._set(self.signing_keys, cmd.verifier_key, seq)
        self.new_signing_keys.append(cmd.verifier_key)
        return "key.register", {"key": cmd.verifier_key, "key_id": key.key_id.hex(), "name": key.name}, {}

    # ----------------------------------------------------------------- invariants

    def check_invariants(self) -> list[str]:
        """Every invariant that can be checked on the view; returns the violations found."""
        problems: list[str] = []
        for (acc, inst), bal in self.balances.items():
            kind = self.accounts[acc].kind if acc in self.accounts else None
            if kind is None:
                problems.append(f"balance of unknown account {acc}")
                continue
            if kind not in NEGATIVE_ALLOWED and bal.available < 0:
                problems.append(f"overdraft on account {acc} {inst}: {bal}")
            if bal.pending_out < 0 or bal.pending_in < 0:
                problems.append(f"negative pending on account {acc} {inst}")
            instrument = self.instruments.get(inst)
            if instrument and instrument.serialised:
                blocks = self.account_blocks(acc, inst)
                if sum(b.size for b in blocks) != max(bal.posted, 0) and kind not in NEGATIVE_ALLOWED:
                    problems.append(f"blocks of account {acc} {inst} do not sum to its posted balance")
                held = sum(b.size for b in blocks if b.encumbered)
                if held != bal.pending_out:
                    problems.append(f"encumbered blocks of {acc} {inst} differ from pending_out")
                for b in blocks:
                    for ref, is_freeze in ((b.hold, False), (b.frozen_by, True)):
                        h = self.holds.get(ref) if ref is not None else None
                        if ref is not None and (h is None or h.state != HOLD_PENDING or h.debit != acc
                                                or (h.kind == "freeze") != is_freeze):
                            problems.append(f"block {inst} {b.start}-{b.end} names hold {ref} which does not "
                                            "encumber it")
        pending_out: dict[BalanceKey, int] = {}
        pending_in: dict[BalanceKey, int] = {}
        for h in self.holds.values():
            if h.state == HOLD_PENDING:
                pending_out[(h.debit, h.instrument)] = pending_out.get((h.debit, h.instrument), 0) + h.pending
                pending_in[(h.credit, h.instrument)] = pending_in.get((h.credit, h.instrument), 0) + h.pending
        for key, bal in self.balances.items():
            inst_obj = self.instruments.get(key[1])
            by_blocks = inst_obj is not None and inst_obj.serialised and key[0] in self.accounts and \
                self.accounts[key[0]].kind in HOLDER_KINDS
            if (not by_blocks and pending_out.get(key, 0) != bal.pending_out) or \
                    pending_in.get(key, 0) != bal.pending_in:
                problems.append(f"pending totals of {key} differ from its open holds")
        # Every open hold on serialised units is backed by exactly its amount of blocks.
        backing: dict[int, int] = {}
        for bl in self.blocks.values():
            for b in bl:
                for ref in (b.hold, b.frozen_by):
                    if ref is not None:
                        backing[ref] = backing.get(ref, 0) + b.size
        for h in self.holds.values():
            inst_obj = self.instruments.get(h.instrument)
            if (h.state == HOLD_PENDING and inst_obj is not None and inst_obj.serialised
                    and backing.get(h.id, 0) != h.pending):
                problems.append(f"hold {h.id} pending {h.pending} is backed by {backing.get(h.id, 0)} units")
        # Serial ranges of one instrument are disjoint and exactly cover the issued batches.
        by_inst: dict[str, list[Block]] = {}
        for blocks in self.blocks.values():
            for b in blocks:
                by_inst.setdefault(b.instrument, []).append(b)
        for inst, blocks in by_inst.items():
            blocks.sort(key=lambda b: b.start)
            for a, b in itertools.pairwise(blocks):
                if b.start <= a.end:
                    problems.append(f"overlapping blocks in {inst}: {a.start}-{a.end} and {b.start}-{b.end}")
            for b in blocks:
                batch = self.batches.get(b.batch)
                if batch is None or not batch.start <= b.start <= b.end <= batch.end:
                    problems.append(f"block {inst} {b.start}-{b.end} lies outside its batch {b.batch}")
        # Conservation: per instrument, every account's posted sums to zero.
        totals: dict[str, int] = {}
        for (_, inst), bal in self.balances.items():
            totals[inst] = totals.get(inst, 0) + bal.posted
        for inst, total in totals.items():
            if total != 0:
                problems.append(f"instrument {inst} does not conserve: sum of posted = {total}")
        return problems


def _normalise_ranges(ranges: Iterable[c.Range]) -> list[c.Range]:
    out = sorted((int(s), int(e)) for s, e in ranges)
    for s, e in out:
        if s <= 0 or e < s:
            raise Rejection("invalid_serials", f"invalid serial range {s}-{e}")
    for (_, e1), (s2, _) in itertools.pairwise(out):
        if s2 <= e1:
            raise Rejection("invalid_serials", "named serial ranges overlap")
    return out


_HANDLERS: dict[type, Any] = {
    c.DefineInstrument: LedgerState._define_instrument,
    c.OpenAccount: LedgerState._open_account,
    c.IssueBatch: LedgerState._issue_batch,
    c.Transfer: LedgerState._transfer,
    c.Retire: LedgerState._retire,
    c.CreateHold: LedgerState._create_hold,
    c.PostHold: LedgerState._post_hold,
    c.TrimHold: LedgerState._trim_hold,
    c.Event: LedgerState._event,
    c.AmendHold: LedgerState._amend_hold,
    c.VoidHold: LedgerState._void_hold,
    c.ExpireHold: LedgerState._expire_hold,
    c.RegisterSigningKey: LedgerState._register_signing_key,
}
