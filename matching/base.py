"""What every engine shares: the sequence guard, the id counter, halt/resume and the reference band.

Each rule lives here once; the continuous book reads the same fields directly on its hot path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from . import reasons as R
from .commands import Halt, Refused, Resume, SetReference, SetRules, command_ref
from .events import HALTED, REFERENCE_SET, REJECTED, RESUMED, RULES_SET, Event
from .rules import MarketRules
from .state import canonical_hash


class Engine(ABC):
    """Base of all engines. Subclasses implement `_apply(seq, ts, command)` and the snapshot body."""

    kind: ClassVar[str] = ""
    __slots__ = ("_band", "_halt_reason", "_halted", "_last_id", "_reference", "_seq", "rules")

    def __init__(self, rules: MarketRules | None = None, reference: int | None = None) -> None:
        self.rules = rules if rules is not None else MarketRules()
        self._seq = 0
        self._last_id = 0
        self._halted = False
        self._halt_reason = ""
        self._set_reference(reference)

    # --- the core ------------------------------------------------------------------------------

    def process(self, seq: int, ts: int, command: Any) -> list[Event]:
        if seq <= self._seq:
            return [stale(seq, self._seq, command)]
        self._seq = seq
        admin = self._admin(command)
        if admin is not None:
            return admin
        return self._apply(seq, ts, command)

    @abstractmethod
    def _apply(self, seq: int, ts: int, command: Any) -> list[Event]:
        """The engine's own commands (everything but Halt, Resume and SetReference)."""

    def _admin(self, command: Any) -> list[Event] | None:
        """Halt, Resume, SetReference and SetRules; None for any other command."""
        cls = command.__class__
        if cls is Halt:
            if self._halted:
                return [(REJECTED, None, R.MARKET_HALTED, "the market is already halted")]
            self._halted = True
            self._halt_reason = command.reason
            return [(HALTED, command.reason)]
        if cls is Resume:
            if not self._halted:
                return [(REJECTED, None, R.NOT_HALTED, "the market is not halted")]
            self._halted = False
            self._halt_reason = ""
            return [(RESUMED,)]
        if cls is SetReference:
            ref = command.price
            if ref is not None and (type(ref) is not int or ref <= 0):
                return [
                    (REJECTED, None, R.INVALID_PRICE,
                     f"reference price {R.price(ref) if type(ref) is int else repr(ref)} is not positive")
                ]
            self._set_reference(ref)
            return [(REFERENCE_SET, ref, self._band[0], self._band[1])]
        if cls is Refused:
            return [(REJECTED, command.ref, command.code, command.message)]
        if cls is SetRules:
            try:
                rules = MarketRules.from_dict(command.rules)
            except (TypeError, ValueError) as exc:
                return [(REJECTED, None, R.INVALID_RULES, str(exc))]
            self.rules = rules
            self._set_reference(self._reference)
            return [(RULES_SET, rules.to_dict(), self._band[0], self._band[1]), *self._off_grid()]
        return None

    def _off_grid(self) -> list[Event]:
        """After new rules: cancel what rests off the new tick or lot (events say so). Engines whose resting
        items keep the terms they were accepted with (auction lots) keep the default: nothing."""
        return []

    def _on_grid(self, price: int | None, qty: int) -> bool:
        return (price is None or price % self.rules.tick == 0) and qty % self.rules.lot == 0

    def _set_reference(self, reference: int | None) -> None:
        self._reference = reference
        self._band = self.rules.band(reference)

    # --- shared checks -------------------------------------------------------------------------

    def _halted_reject(self, ref: Any) -> Event | None:
        if self._halted:
            return (REJECTED, ref, R.MARKET_HALTED, f"the market is halted: {self._halt_reason}")
        return None

    def _id_reject(self, new_id: int, live: bool) -> Event | None:
        """Ids increase across everything the engine creates; `live` says whether the id is in use."""
        if new_id <= self._last_id:
            if live:
                return (REJECTED, new_id, R.DUPLICATE_ORDER_ID, f"id {new_id} is live")
            return (REJECTED, new_id, R.ORDER_ID_NOT_INCREASING, f"id {new_id} is not above {self._last_id}")
        return None

    @staticmethod
    def _owner_reject(ref: Any, owner: Any, account: Any) -> Event | None:
        """A command naming an account may only touch that account's orders, listings or quotes."""
        if account is not None and account != owner:
            return (REJECTED, ref, R.NOT_ORDER_OWNER, f"{ref} belongs to another account")
        return None

    def _reduce_reject(self, ref: Any, old: int, new: int) -> Event | None:
        """A reduction lowers the open quantity to a positive multiple of the lot."""
        if not 0 < new < old:
            return (REJECTED, ref, R.REDUCE_NOT_LOWER,
                    f"new quantity {R.qty(new)} is not above 0 and below the open {R.qty(old)}")
        if new % self.rules.lot:
            return (REJECTED, ref, R.OFF_LOT,
                    f"quantity {R.qty(new)} is not a multiple of the lot {R.qty(self.rules.lot)}")
        return None

    # --- read-only -----------------------------------------------------------------------------

    @property
    def halted(self) -> bool:
        return self._halted

    @property
    def reference(self) -> int | None:
        return self._reference

    @property
    def band(self) -> tuple[int, int]:
        return self._band

    @property
    def last_seq(self) -> int:
        return self._seq

    # --- snapshot ------------------------------------------------------------------------------

    @abstractmethod
    def _snapshot_body(self) -> dict[str, Any]:
        """The engine's own state for the snapshot (keys other than the shared ones)."""

    @abstractmethod
    def _restore_body(self, snap: dict[str, Any]) -> None:
        """Rebuilds the engine's own state from `_snapshot_body`'s output."""

    def snapshot(self) -> dict[str, Any]:
        """Everything the engine's future depends on, JSON-serialisable, in a canonical order."""
        snap = {
            "engine": self.kind,
            "version": 1,
            "rules": self.rules.to_dict(),
            "seq": self._seq,
            "last_id": self._last_id,
            "halted": self._halted,
            "halt_reason": self._halt_reason,
            "reference": self._reference,
        }
        snap.update(self._snapshot_body())
        return snap

    @classmethod
    def restore(cls, snap: dict[str, Any]) -> Any:
        if snap.get("engine") != cls.kind or snap.get("version") != 1:
            raise ValueError(f"not a version-1 {cls.kind} snapshot")
        engine = cls(MarketRules.from_dict(snap["rules"]), snap["reference"])
        engine._seq = snap["seq"]
        engine._last_id = snap["last_id"]
        engine._halted = snap["halted"]
        engine._halt_reason = snap["halt_reason"]
        engine._restore_body(snap)
        return engine

    def state_hash(self) -> bytes:
        """SHA-256 over the canonical snapshot: covers queue order and every counter."""
        return canonical_hash(self.snapshot())


def stale(seq: int, last: int, command: Any) -> Event:
    return (REJECTED, command_ref(command), R.STALE_SEQUENCE, f"sequence {seq} is not above {last}")
