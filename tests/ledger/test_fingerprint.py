"""Request fingerprints are stored with the entries and compared on every retry, so they must never change.

The digests below were recorded with the writer before it was optimised (issue #16): a request retried after an
upgrade must still be recognised as the same request, not refused as a reused client id.
"""

from __future__ import annotations

import pytest

from ledger import commands as c
from ledger.writer import fingerprint

VECTORS = [
    (c.Request("participant:1", c.Transfer(5, 7, "CNY", 17), "t-1", {"memo": "bench"}),
     "215cc132ed427f6388fd4af409bc9a6b93b7366d406e1e5a8e82a7654386afde"),
    (c.Request("participant:1", c.Transfer(5, 7, "FCT", 3, ((10, 12),)), "t-2"),
     "483f2c78f9c0a0b09682b93466bf9a264e31e69fef16bd636e7b2b7bb8859e7d"),
    (c.Request("op", c.DefineInstrument("CNY", "currency", 2), "d-1"),
     "7378d0653d411e4cdbd999c7f0f1b82d28be25d5b8f2400525d48060007abc25"),
    (c.Request("op", c.OpenAccount("participant:9", "cash"), "o-1", {"note": "\u4e2d\u6587"}),
     "f17c9f1f2d71a404cc70e3b32411b1ccf64c37ef47b2b566542b9df3ce799cd5"),
    (c.Request("op", c.IssueBatch(3, 4, "FCT", 1000, "ref-1"), "i-1"),
     "158e7872d675be02f56930623c26b4c33b8b68295c61b65e1651038f13ae944f"),
    (c.Request("p", c.CreateHold("order", 4, 9, "FCT", 10, ((1, 10),), 1_800_000_000_000_000), "h-1"),
     "dcac5462043e3697617ae82a716f86f58cfb21b9cd531cd4f96c8acf88c524df"),
    (c.Request("p", c.PostHold(11, 5, True), "p-1"),
     "607d5efab1fa5a40025157f2abe70898a3413f99fad5c7eeacb87830f7328bc1"),
    (c.Request("p", c.PostHold(11), "p-2"),
     "426c2f5736e0060714d70381224652c5b1ca8fb7fd29be6b0ae654ea19d7b63f"),
    (c.Request("p", c.TrimHold(11, 3), "tr-1"),
     "5fa0b9dc20478ba8afec2d877ed7e4138cd4925a64ba70685dbfa2c77c24de2e"),
    (c.Request("p", c.AmendHold(11, None), "a-1"),
     "17c7d0d229bb1c496b58d6cca692ea2d408feb918994ded91fb2dfc80a124af2"),
    (c.Request("p", c.VoidHold(11), "v-1"),
     "44008fe000258db0ae3c497f008f6fae1d0a5fd3d7fbe3a069d5a90e8b83f8a4"),
    (c.Request("p", c.ExpireHold(11), "e-1"),
     "081c1600889326599fa65e10a7bb00258f0f2a67b2d94b5c6219c2563210ece2"),
    (c.Request("p", c.Retire(4, 2, "FCT", 5, "voluntary", "Acme \"Ltd\"", ((20, 24),)), "r-1"),
     "1b07a061ac02c4126461da55f708f70e3f1c28c19df3b8346f3f35dd8f1106ca"),
    (c.Request("op", c.RegisterSigningKey("example.com/log+abcd1234+AQ=="), "k-1"),
     "22ae7cf4506996e8ede9f5a8b79cafb1441c4d03aa1509f69b97db312d864ce4"),
    (c.Request("p", c.Event("trade", (c.PostHold(11, 2, True), c.Transfer(8, 9, "CNY", 200), c.TrimHold(12, 0))),
               "ev-1", {"order": 12, "signed_instruction": {"nonce": "n-1"}, "operator_action": "x"}),
     "cc643ca88d7cdccc8f1a2360cb2d7eb428927fc6a36872a4f4b0da62e8475d7d"),
    (c.Request("p", c.Transfer(5, 7, "CNY", 17), "t-1", {"memo": "bench", "signed_instruction": {"nonce": "n-2"}}),
     "215cc132ed427f6388fd4af409bc9a6b93b7366d406e1e5a8e82a7654386afde"),
]


@pytest.mark.parametrize(("request_", "digest"), VECTORS, ids=[f"{i}-{type(r.command).__name__}" for i, (r, _) in
                                                               enumerate(VECTORS)])
def test_fingerprint_is_unchanged(request_: c.Request, digest: str) -> None:
    assert fingerprint(request_).hex() == digest


def test_provenance_is_not_part_of_the_fingerprint() -> None:
    plain = c.Request("p", c.Transfer(5, 7, "CNY", 17), "t-1", {"memo": "bench"})
    signed = c.Request("p", c.Transfer(5, 7, "CNY", 17), "t-1", {"memo": "bench", "signed_instruction": {"n": 1}})
    assert fingerprint(plain) == fingerprint(signed)
    assert fingerprint(plain) != fingerprint(c.Request("p", c.Transfer(5, 7, "CNY", 18), "t-1", {"memo": "bench"}))
