"""Who acts: a participant through one of its keys, or the registry itself (the system actor)."""

from __future__ import annotations

from dataclasses import dataclass

# The actor of what the registry does on its own (bootstrap, scheduled jobs, sweeps).
SYSTEM_ACTOR = "system"

@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: one participant, acting through one key."""

    participant_id: int
    kind: str
    name: str
    key_id: int
    holding_account: int | None
    cash_account: int | None

    @property
    def actor(self) -> str:
        return f"participant:{self.participant_id}"
