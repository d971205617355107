"""The first operators of a registry: created with database access, outside the four-eyes rule by design."""

from __future__ import annotations

from typing import Any

from exchange.core.errors import DomainError
from exchange.core.runtime import Runtime
from exchange.registry import participants
from exchange.security import keys
from exchange.security import repository as repo

BOOTSTRAP_ACTOR = "system:admin"


async def operator_key(rt: Runtime, *, name: str | None = None, participant_id: int | None = None,
                       label: str = "bootstrap") -> dict[str, Any]:
    """An operator (found by name, or created under the system actor) and a new root API key for it.

    This is the one way to the first operators of a registry, and it is outside the four-eyes rule by
    design: whoever runs it has the database. Through the API every later participant is admitted by two
    operators and enrolls itself. Only operators are served here: any other participant gets an
    enrollment code (two operators), so the bootstrap never hands out keys that act as someone else.
    """
    assert rt.credentials is not None
    async with rt.read() as conn:
        found = participant_id if participant_id is not None else await repo.operator_named(conn, name)
        p = None if found is None else await participants.find(conn, found)
    if p is None:
        p = await participants.admit(rt, BOOTSTRAP_ACTOR, f"admin:operator:{name}", name=name or "", kind="operator")
    if p.kind != "operator":
        raise DomainError("not_an_operator", f"participant {p.id} is a {p.kind}: it enrolls with an "
                                             "enrollment code (POST /v1/participants/{id}/enrollment-codes)")
    if not p.active:
        raise DomainError("participant_suspended", f"participant {p.id} is suspended")
    async with rt.tx() as conn:
        k = await keys.create_key(conn, rt.credentials, p.id, label, created_by=BOOTSTRAP_ACTOR)
    # What the CLI prints (envx admin create-key): JSON for the person who runs it.
    return {"participant_id": p.id, "name": p.name, "kind": p.kind, "key_id": k.id, "api_key": k.token}
