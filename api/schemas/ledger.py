"""Answers of the ledger log and the verifiable ledger: entries, the head, checkpoints, keys, proofs, receipts."""

from __future__ import annotations

import base64
import json
from typing import Any

from pydantic import BaseModel, Field

from exchange.core.units import iso
from exchange.verifiable.proofs import ConsistencyProof, InclusionProof, LogKey
from ledger.checkpoints import Published

B64 = "base64"


class LedgerEntryOut(BaseModel):
    seq: int
    ts: int = Field(description="UTC microseconds since the epoch, as in the entry's canonical bytes")
    type: str
    actor: str
    client_id: str | None
    hash: str = Field(description="hex SHA-256 of the chain up to this entry")
    entry: dict[str, Any] = Field(description="the decoded canonical entry")
    leaf_b64: str = Field(description="the entry's canonical bytes (the Merkle leaf), base64")
    meta: dict[str, Any] = Field(description="the committed metadata (its SHA-256 is the entry's meta field)")

    @classmethod
    def of(cls, e: dict[str, Any]) -> LedgerEntryOut:
        """From ledger.queries' entry."""
        return cls(seq=e["seq"], ts=e["ts"], type=e["type"], actor=e["actor"], client_id=e["client_id"],
                   hash=e["hash"], entry=e["entry"], leaf_b64=base64.b64encode(e["leaf"]).decode(),
                   meta=json.loads(e["meta"]))


class LedgerHeadOut(BaseModel):
    seq: int
    hash: str = Field(description="hex")
    ts: str = Field(description="ISO 8601, UTC, microseconds, Z (stored as microseconds since the epoch)")

    @classmethod
    def of(cls, h: dict[str, Any]) -> LedgerHeadOut:
        return cls(seq=h["seq"], hash=h["hash"], ts=iso(h["ts"]))


class CheckpointOut(BaseModel):
    tree_size: int
    root: str = Field(description=B64)
    key_id: str
    created_at: str | None = Field(description="ISO 8601, UTC, microseconds, Z")
    checkpoint: str = Field(description="the signed note (C2SP tlog-checkpoint)")

    @classmethod
    def of(cls, p: Published) -> CheckpointOut:
        return cls(tree_size=p.size, root=base64.b64encode(p.root).decode(), key_id=p.key_id,
                   created_at=None if p.created_at is None else iso(p.created_at), checkpoint=p.note)


class LogKeyOut(BaseModel):
    seq: int = Field(description="the tree size from which the key signs")
    name: str
    key_id: str
    verifier_key: str = Field(description="C2SP verifier key")
    current: bool

    @classmethod
    def of(cls, k: LogKey) -> LogKeyOut:
        return cls(seq=k.seq, name=k.name, key_id=k.key_id, verifier_key=k.verifier_key, current=k.current)


class InclusionProofOut(BaseModel):
    index: int
    seq: int
    tree_size: int
    leaf_hash: str = Field(description=B64)
    inclusion_path: list[str] = Field(description="RFC 9162 audit path, base64")
    root: str = Field(description=B64)
    checkpoint: str | None = Field(description="the signed checkpoint of this tree size, if one was published")

    @classmethod
    def of(cls, p: InclusionProof) -> InclusionProofOut:
        return cls(index=p.index, seq=p.seq, tree_size=p.tree_size, leaf_hash=p.leaf_hash,
                   inclusion_path=p.inclusion_path, root=p.root, checkpoint=p.checkpoint)


class ConsistencyProofOut(BaseModel):
    first: int
    second: int
    first_root: str = Field(description=B64)
    second_root: str = Field(description=B64)
    proof: list[str] = Field(description="RFC 9162 consistency proof, base64")
    checkpoint: str | None

    @classmethod
    def of(cls, p: ConsistencyProof) -> ConsistencyProofOut:
        return cls(first=p.first, second=p.second, first_root=p.first_root, second_root=p.second_root,
                   proof=p.proof, checkpoint=p.checkpoint)


class OpeningOut(BaseModel):
    """One field of a blinded entry opened for the caller (ledger/blinding.py): its commitment in the entry
    bytes is SHA-256(tag || salt || value)."""

    leg: int
    field: str = Field(description="debit, credit or hold; in a version-4 entry also amount, released, remaining "
                       "or keep")
    salt: str = Field(description="32 bytes, hex")
    value: int = Field(description="the account or hold id, or the amount in the entry's base units, the "
                       "commitment stands for")


class ReceiptOut(BaseModel):
    """An offline-verifiable receipt (format in ledger.receipt): verify it with `envx verify-receipt`."""

    format: str
    entry: str = Field(description="the entry's canonical bytes, base64")
    index: int
    tree_size: int
    inclusion_path: list[str]
    checkpoint: str
    metadata: dict[str, Any] = Field(description="seq, type, key_id and the committed metadata (meta)")
    openings: list[OpeningOut] = Field(
        default_factory=list, description="of a blinded entry (version 3, 4): the caller's own fields opened, each "
        "checked against its commitment by `envx verify-receipt`; the other side's stay commitments")

    @classmethod
    def of(cls, r: dict[str, Any]) -> ReceiptOut:
        return cls(format=r["format"], entry=r["entry"], index=r["index"], tree_size=r["tree_size"],
                   inclusion_path=r["inclusion_path"], checkpoint=r["checkpoint"], metadata=r["metadata"],
                   openings=[OpeningOut(**o) for o in r.get("openings") or ()])


class WitnessOut(BaseModel):
    witness: str = Field(description="the witness's verifier key name")
    url: str
    last_cosigned_size: int = Field(description="the largest tree size it cosigned")
    state: str = Field(description="pending, ok, unreachable, rollback_refused, fork_refused or refused")
    detail: str


class WitnessesOut(BaseModel):
    """The witness policy's quorum and each configured witness's state (none configured: quorum 0, no witnesses)."""

    quorum: int
    witnesses: list[WitnessOut]

    @classmethod
    def of(cls, quorum: int, statuses: list[dict[str, Any]]) -> WitnessesOut:  # exchange.verifiable.witnessing
        return cls(quorum=quorum, witnesses=[WitnessOut.model_validate(s, strict=False) for s in statuses])
