"""The pure rules: waterfall, priority, valuation, serial ranges, lifecycle, webhook and certificate signing."""

from __future__ import annotations

import itertools
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.pledging import webhooks
from ledger.note import Signer
from pledges import certificate, lifecycle, priority
from pledges import ranges as rg
from pledges import valuation as val
from pledges import waterfall as wf
from pledges.errors import PledgeError

amounts = st.integers(min_value=1, max_value=10**12)


def test_sanming_waterfall_to_the_fen() -> None:
    out = wf.distribute(551_692_158, fee=0, pledgee=wf.Claim("pledgee", 500_000_000),
                        juniors=[wf.Claim("claim:1", 40_000_000, 7)], owner="owner")
    assert [(p.role, p.paid) for p in out] == [("pledgee", 500_000_000), ("junior", 40_000_000),
                                               ("owner", 11_692_158)]


def test_registered_juniors_by_number_then_unregistered_pro_rata() -> None:
    juniors = [wf.Claim("late", 100, registration_no=9), wf.Claim("early", 100, registration_no=3),
               wf.Claim("u1", 100, None, filed_no=1), wf.Claim("u2", 200, None, filed_no=2)]
    out = wf.distribute(1_000 + 150 + 100, fee=50, pledgee=wf.Claim("pledgee", 1_000), juniors=juniors,
                        owner="owner")
    paid = {p.party: p.paid for p in out}
    # fee 50, pledgee 1000, early 100 (registered first), late 100, nothing left for the unregistered.
    assert paid == {"fees": 50, "pledgee": 1000, "early": 100, "late": 100, "u1": 0, "u2": 0, "owner": 0}
    out = wf.distribute(1_000 + 200 + 100, fee=0, pledgee=wf.Claim("pledgee", 1_000), juniors=juniors,
                        owner="owner")
    paid = {p.party: p.paid for p in out}
    # 100 left for the unregistered 100 : 200 -> 33 and 67 (the odd fen by largest remainder).
    assert (paid["u1"], paid["u2"], paid["owner"]) == (33, 67, 0)


@settings(max_examples=300, deadline=None)
@given(proceeds=st.integers(0, 10**13), fee=st.integers(0, 10**9), owed=amounts,
       juniors=st.lists(st.tuples(amounts, st.booleans()), max_size=6))
def test_waterfall_adds_up_and_respects_priority(proceeds: int, fee: int, owed: int,
                                                  juniors: list[tuple[int, bool]]) -> None:
    claims = [wf.Claim(f"c{i}", a, i + 1 if reg else None, i) for i, (a, reg) in enumerate(juniors)]
    out = wf.distribute(proceeds, fee=fee, pledgee=wf.Claim("pledgee", owed), juniors=claims, owner="owner")
    assert sum(p.paid for p in out) == proceeds
    assert all(0 <= p.paid <= p.claimed for p in out)
    # Nobody below is paid while someone above is short (the pro-rata tier shares one level).
    tiers = [p for p in out if p.role != "owner"]
    registered = [p for p in tiers if p.role in ("fee", "pledgee") or any(
        c.party == p.party and c.registration_no is not None for c in claims)]
    for hi, lo in itertools.pairwise(registered):
        assert hi.paid == hi.claimed or lo.paid == 0
    if out[-1].paid:
        assert all(p.paid == p.claimed for p in tiers)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.integers(0, 10**7), min_size=1, max_size=6), owed=amounts,
       juniors=st.lists(st.tuples(st.integers(1, 10**6), st.booleans()), max_size=4))
def test_proceeds_in_parts_never_claw_back_and_add_up(parts: list[int], owed: int,
                                                       juniors: list[tuple[int, bool]]) -> None:
    claims = [wf.Claim(f"c{i}", a, i + 1 if reg else None, i) for i, (a, reg) in enumerate(juniors)]
    paid: dict[str, int] = {}
    total = 0
    for part in parts:
        total += part
        step = wf.increment(paid, total, fee=0, pledgee=wf.Claim("pledgee", owed), juniors=claims, owner="owner")
        assert all(p.paid >= 0 for p in step) and sum(p.paid for p in step) == part
        for p in step:
            paid[p.party] = paid.get(p.party, 0) + p.paid
    once = {p.party: p.paid for p in wf.distribute(total, fee=0, pledgee=wf.Claim("pledgee", owed), juniors=claims,
                                                   owner="owner")}
    assert sum(paid.values()) == total
    # Only the pro-rata rounding may differ from paying all at once, by fewer fen than claimants.
    assert sum(abs(paid.get(k, 0) - v) for k, v in once.items()) <= 2 * len(claims)


def test_priority_order_is_total() -> None:
    items = [wf.Claim("u", 1, None, 5), wf.Claim("r2", 1, 20, 1), wf.Claim("r1", 1, 10, 9)]
    assert [c.party for c in priority.order(items)] == ["r1", "r2", "u"]
    assert priority.ranks([{"id": 1, "registration_no": 30}, {"id": 2, "registration_no": 10},
                           {"id": 3, "registration_no": None}]) == {2: 1, 1: 2}


def test_valuation_and_levels_are_exact_at_the_boundaries() -> None:
    th = val.Thresholds()
    value = val.collateral_value(18_294, 0, 36_000, 2_000)
    assert value == 526_867_200 and val.ratio_bps(value, 500_000_000) == 10_537
    assert val.level(650_000_000, 500_000_000, th) == "ok"  # exactly 130 %
    assert val.level(649_999_999, 500_000_000, th) == "warning"
    assert val.level(549_999_999, 500_000_000, th) == "margin_call"
    assert val.level(499_999_999, 500_000_000, th) == "liquidation"
    assert val.collateral_value(12_500, 3, 1_999, 0) == 24_987  # 12.5 t x 19.99: rounded down
    with pytest.raises(PledgeError):
        val.Thresholds(10_000, 11_000, 9_000).check()
    assert val.usable_deadline("emission_right", {}, {"valid_until": "2030-12-31"}) == date(2030, 12, 31)
    assert val.usable_deadline("cea", {"compliance_year": 2024}, {}) == date(2025, 12, 31)
    assert val.usable_deadline("forest_ticket", {}, {}) is None


def test_serial_ranges() -> None:
    assert rg.subtract([(1, 100)], [(10, 19), (50, 50)]) == [(1, 9), (20, 49), (51, 100)]
    assert rg.take_highest([(1, 10), (21, 30)], 15) == [(6, 10), (21, 30)]
    assert rg.take_lowest([(1, 10), (21, 30)], 15) == [(1, 10), (21, 25)]
    assert rg.split_at([(1, 60)], [(1, 40), (41, 100)]) == [(1, 40), (41, 60)]
    assert rg.union([(1, 5)], [(6, 9)]) == [(1, 9)]
    with pytest.raises(PledgeError) as e:
        rg.subtract([(1, 10)], [(11, 12)])
    assert e.value.code == "serials_not_pledged"
    with pytest.raises(PledgeError):
        rg.normalise([(5, 9), (9, 12)])


def test_lifecycle_projection_and_refusals() -> None:
    events = [("filed", {"set": {"quantity": 10, "serials": []}}),
              ("confirmed", {"set": {"hold_id": 7, "serials": [[1, 10]]}}),
              ("margin_call", {"set": {"margin_level": "margin_call"}}),
              ("partially_released", {"set": {"quantity": 6, "serials": [[1, 6]], "hold_id": 9}}),
              ("released", {"set": {}})]
    state = lifecycle.project(events)
    assert (state["status"], state["quantity"], state["hold_id"], state["margin_level"]) == ("released", 6, 9,
                                                                                             "margin_call")
    with pytest.raises(PledgeError):
        lifecycle.project([*events, ("enforced", {"set": {}})])
    with pytest.raises(PledgeError) as e:
        lifecycle.require("expired", "release")
    assert e.value.code == "pledge_expired"
    with pytest.raises(PledgeError) as e:
        lifecycle.require("filed", "enforce")
    assert e.value.code == "pledge_not_confirmed"
    # Every event the service writes has a transition rule.
    assert set(lifecycle.TRANSITIONS) >= lifecycle.NOTIFY


def test_webhook_signature_and_backoff() -> None:
    body = b'{"type":"margin_call"}'
    h = webhooks.headers(b"whsec_x", 1_700_000_000, body, 5, "margin_call")
    assert webhooks.verify(b"whsec_x", h["X-Envx-Timestamp"], h["X-Envx-Signature"], body, now=1_700_000_010)
    assert not webhooks.verify(b"whsec_x", h["X-Envx-Timestamp"], h["X-Envx-Signature"], body, now=1_700_001_000)
    assert not webhooks.verify(b"whsec_x", "1700000001", h["X-Envx-Signature"], body, now=1_700_000_010)
    assert [webhooks.backoff(n) for n in (1, 2, 3, 20)] == [1.0, 2.0, 4.0, 3600.0]


def test_certificate_signature() -> None:
    signer = Signer.from_seed("envx.example/registry", bytes(range(32)))
    answer = certificate.sign({"type": certificate.TYPE, "query": {"name": "三明"}, "results": []}, signer)
    assert certificate.verify(answer, signer.verifier_key_string())
    other = Signer.from_seed("envx.example/registry", bytes(32))
    assert not certificate.verify(answer, other.verifier_key_string())
    assert answer["signature"]["note"].startswith(certificate.HEADER + "\n")


def test_inquiry_signer_without_a_publisher(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from exchange.core.settings import Settings
    from exchange.pledging import public as pledging
    from exchange.verifiable import signing
    from ledger.note import generate_signer_key

    # No publisher and no registry key configured: a dedicated key, made once, private to the owner (the runtime
    # keeps the signers it read, by key file).
    bare = SimpleNamespace(settings=Settings(data_dir=tmp_path / "a"), verifiable=None, inquiry_signers={})
    first = pledging.get_signer(bare)  # type: ignore[arg-type]
    assert pledging.get_signer(bare) is first  # type: ignore[arg-type]
    assert (tmp_path / "a" / "inquiry.key").stat().st_mode & 0o777 == 0o600
    # A read replica configured with the registry key signs with it.
    s = Settings(data_dir=tmp_path / "b")
    signing.write_key_file(signing.key_path(s), generate_signer_key(s.origin)[0])
    replica = SimpleNamespace(settings=s, verifiable=None, inquiry_signers={})
    assert pledging.get_signer(replica).verifier_key_string() == signing.load_signer(s).verifier_key_string()  # type: ignore[arg-type]
