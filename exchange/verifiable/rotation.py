"""Rotating the checkpoint signing key while the registry serves (an operator action with maker-checker:
`rotateSigningKey` in exchange/security/operator_actions.py; offline: `envx admin rotate-key`).

The approved action runs `rotate` under its execution client id: the running process makes a new key, installs
it, registers it in the log through its own writer (exchange.verifiable.publisher.VerifiableLedger.rotate), and
signs with it from the tree that includes the registration on. Old keys stay published (GET /v1/ledger/keys:
every key the log registers), so receipts under older checkpoints verify with the key that signed them. Run
again under the same client id (a crash between the approval's steps), it answers the rotation done, once.
"""

from __future__ import annotations

from typing import Any

from exchange.core.errors import DomainError
from exchange.core.runtime import Runtime
from ledger import queries


def check(rt: Runtime, payload: dict[str, Any] | None = None) -> None:
    if rt.verifiable is None:
        raise DomainError("rotation_unavailable", "this process signs no checkpoints")
    if rt.settings.signing_key is not None:
        raise DomainError("rotation_unavailable", "the signing key comes from ENVX_SIGNING_KEY: rotate by setting "
                                                  "a new one there and restarting (the start registers it)")


async def check_action(rt: Runtime, payload: dict[str, Any]) -> None:
    check(rt, payload)


async def rotate(rt: Runtime, client_id: str) -> dict[str, Any]:
    """The rotation done under `client_id`, or a new one now."""
    async with rt.read() as conn:
        keys = await queries.key_registrations(conn)
    for i, (seq, key, cid) in enumerate(keys):
        if cid == client_id:  # done before: the same answer
            return {"old_key": keys[i - 1][1] if i else None, "new_key": key, "registered_at_seq": seq}
    check(rt)
    assert rt.verifiable is not None
    done = await rt.verifiable.rotate(rt.writer, client_id)
    return {"old_key": done.old_key, "new_key": done.new_key, "registered_at_seq": done.registered_at_seq}
