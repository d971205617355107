"""Request bodies for signing keys and the signature policy."""

from __future__ import annotations

from pydantic import Field

from api.schemas.common import Strict


class SigningKeyIn(Strict):
    public_key: str = Field(min_length=43, max_length=64,
                            description="The raw 32-byte Ed25519 public key, base64 (standard or URL-safe)")
    label: str = Field(default="", max_length=200)


class SignaturePolicyIn(Strict):
    require_signatures: bool = Field(description="Refuse this participant's unsigned mutations (401)")
