"""The log at the C2SP tlog-tiles paths: /checkpoint, /tile/<L>/<N>[.p/<W>], /tile/entries/<N>[.p/<W>].

Tiles and bundles are immutable resources (a partial tile of width W never changes either: a wider one
has another path), so they are cached for a year; the checkpoint changes with every publication and is
not cached. Hash tiles and the checkpoint are public; entry bundles are for operators and auditors unless
ENVX_TLOG_ENTRIES_PUBLIC (exchange/verifiable/tlog_serving.py).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from api.controllers.ledger_proofs import PENDING, order_party_of
from api.deps import Id
from api.schemas.ledger import WitnessesOut
from exchange.core.errors import NotFound
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.verifiable import tlog_serving

IMMUTABLE = "public, max-age=31536000, immutable"
PRIVATE_IMMUTABLE = "private, max-age=31536000, immutable"
CHECKPOINT_CACHE = "no-cache"


def _caller(request: Request[Any, Any, Any]) -> Principal | None:
    user = request.scope.get("user")
    return user if isinstance(user, Principal) else None


@get("/checkpoint", operation_id="getTlogCheckpoint", tags=["transparency"], exception_handlers=PENDING,
     media_type="text/plain",
     summary="The latest signed checkpoint with its witness cosignatures (C2SP tlog-tiles)")
async def tlog_checkpoint(rt: Runtime) -> Response[bytes]:
    text = await tlog_serving.checkpoint(rt)
    return Response(text.encode("utf-8"), media_type="text/plain",
                    headers={"Cache-Control": CHECKPOINT_CACHE})


@get("/tile/{tile_path:path}", operation_id="getTlogTile", tags=["transparency"],
     media_type="application/octet-stream",
     summary="A hash tile or an entry bundle of the latest checkpoint's tree (C2SP tlog-tiles); bundles "
             "are served to operators and auditors unless ENVX_TLOG_ENTRIES_PUBLIC")
async def tlog_tile(rt: Runtime, request: Request[Any, Any, Any], tile_path: str) -> Response[bytes]:
    path = "tile" + tile_path if tile_path.startswith("/") else "tile/" + tile_path
    # One URL per immutable object: the path as sent, not as the router normalised it (no percent-escapes,
    # doubled or trailing slashes), or mirrors and caches would keep several names for it.
    raw = request.scope.get("raw_path") or b""
    if bytes(raw).split(b"?", 1)[0] != b"/" + path.encode("utf-8"):
        raise NotFound("tile", tile_path[:100])
    res = await tlog_serving.tile(rt, _caller(request), path)
    private = path.startswith("tile/entries/") and not rt.settings.tlog_entries_public
    return Response(res.body, media_type="application/octet-stream",
                    headers={"Cache-Control": PRIVATE_IMMUTABLE if private else IMMUTABLE})


@get("/v1/ledger/entries/{seq:int}/tlog-proof", operation_id="getEntryTlogProof", tags=["ledger"],
     exception_handlers=PENDING, media_type="text/plain",
     summary="The entry's receipt as a C2SP tlog-proof (.tlog-proof): entry bytes, index, inclusion path, "
             "checkpoint with witness cosignatures; under the witness policy's checkpoint when one is configured")
async def tlog_proof(rt: Runtime, principal: Principal, seq: Id) -> Response[bytes]:
    text = await tlog_serving.tlog_proof(rt, principal, seq, order_party_of(rt))  # as for the JSON receipt
    return Response(text.encode("utf-8"), media_type="text/plain",
                    headers={"Content-Disposition": f'attachment; filename="entry-{seq}.tlog-proof"'})


@get("/v1/ledger/witnesses", operation_id="listWitnesses", tags=["ledger"],
     summary="The configured witnesses, the policy, and each witness's last cosigned size and state "
             "(ok, unreachable, rollback_refused, fork_refused, refused)")
async def witnesses(request: Request[Any, Any, Any]) -> WitnessesOut:
    w = getattr(request.app.state, "witnessing", None)
    return WitnessesOut.of(w.policy.quorum if w else 0, w.status() if w else [])


ROUTES = [tlog_checkpoint, tlog_tile, tlog_proof, witnesses]
