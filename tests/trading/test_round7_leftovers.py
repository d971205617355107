"""Leftovers of the red teams' rounds 5 and 6 on trading: an ended block negotiation stays readable by its
parties (and says how it ended); an Idempotency-Key is kept per caller and operation, as the README says."""

from __future__ import annotations

from decimal import Decimal

from tests.helpers import Api
from tests.trading.test_block_settlement import M, _desk
from tests.trading.test_continuous import bal, world


def _negotiation(api: Api, seller: dict, buyer: dict, qty: str = "120000") -> tuple[int, int]:
    q = api.ok(seller["api"].post(f"/v1/markets/{M}/block-quotes",
                                  {"side": "sell", "price": "100.00", "quantity": "250000"}))["seq"]
    deal = api.ok(buyer["api"].post(f"/v1/markets/{M}/block-quotes/{q}/respond",
                                    {"price": "100.00", "quantity": qty}))["seq"]
    return q, deal


def test_a_declined_or_withdrawn_negotiation_is_still_its_parties_to_read(api: Api) -> None:
    seller, buyer = _desk(api)
    stranger = api.participant("控排企业丙", "enterprise")
    q, deal = _negotiation(api, seller, buyer)
    api.ok(seller["api"].post(f"/v1/markets/{M}/deals/{deal}/counter", {"price": "101.00", "quantity": "120000"}))
    shown = api.ok(buyer["api"].get(f"/v1/markets/{M}/deals/{deal}"))
    assert (shown["status"], shown["price"], shown["confirmed"]) == ("open", "101.00", [seller["id"]])
    api.ok(buyer["api"].post(f"/v1/markets/{M}/deals/{deal}/decline", {}))
    for party in (seller, buyer):
        ended = api.ok(party["api"].get(f"/v1/markets/{M}/deals/{deal}"))
        assert (ended["deal_id"], ended["quote_id"], ended["responder"], ended["status"], ended["price"],
                ended["quantity"], ended["confirmed"]) == (deal, q, buyer["id"], "declined", "101.00", "120000",
                                                           [seller["id"]]), ended
        again = party["api"].post(f"/v1/markets/{M}/deals/{deal}/confirm", {})
        assert (again.status_code, again.json()["code"], again.json()["deal_status"]) == (409, "deal_not_open",
                                                                                          "declined"), again.text
    assert api.ok(api.get(f"/v1/markets/{M}/deals/{deal}"))["status"] == "declined"  # oversight
    # A non-party gets the 404 of a deal that does not exist, for reading and for acting alike.
    unknown = stranger["api"].get(f"/v1/markets/{M}/deals/987654")
    for r in (stranger["api"].get(f"/v1/markets/{M}/deals/{deal}"),
              stranger["api"].post(f"/v1/markets/{M}/deals/{deal}/confirm", {})):
        assert (r.status_code, r.json()["code"]) == (404, unknown.json()["code"]), r.text
    # The quote withdrawn: its open negotiations end with it, and say so.
    _, other = _negotiation(api, seller, buyer, "110000")
    q2 = api.ok(buyer["api"].get(f"/v1/markets/{M}/deals/{other}"))["quote_id"]
    api.ok(seller["api"].post(f"/v1/markets/{M}/block-quotes/{q2}/withdraw", {}))
    assert api.ok(buyer["api"].get(f"/v1/markets/{M}/deals/{other}"))["status"] == "quote_withdrawn"
    # The day's end closes the rest.
    _, late = _negotiation(api, seller, buyer)
    api.ok(api.post(f"/v1/markets/{M}/session", {"action": "close"}))
    assert api.ok(seller["api"].get(f"/v1/markets/{M}/deals/{late}"))["status"] == "end_of_day"


def test_a_traded_negotiation_reads_as_traded(api: Api) -> None:
    seller, buyer = _desk(api)
    _, deal = _negotiation(api, seller, buyer)
    api.ok(seller["api"].post(f"/v1/markets/{M}/deals/{deal}/confirm", {}))
    done = api.ok(buyer["api"].get(f"/v1/markets/{M}/deals/{deal}"))
    assert (done["status"], sorted(done["confirmed"])) == ("traded", sorted([seller["id"], buyer["id"]]))


def test_an_idempotency_key_is_the_callers_per_operation(api: Api) -> None:
    """Red team round 6 (nit): one key ran a transfer and then an order (201, 201). That is the rule the
    README states: a key names one request of one operation; the same key on the same operation with
    another body is a conflict."""
    w = world(api)
    s, m = w["s"]["api"], w["m"]
    before = bal(api, w["s"], "CDCER")["available"]
    moved = s.post("/v1/transfers", {"to_participant": w["b"]["id"], "instrument": "CDCER", "quantity": "1"},
                   key="one-key")
    placed = s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "290.00", "quantity": "1"}, key="one-key")
    assert (moved.status_code, placed.status_code) == (201, 201), (moved.text, placed.text)
    other = s.post("/v1/transfers", {"to_participant": w["b"]["id"], "instrument": "CDCER", "quantity": "2"},
                   key="one-key")
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_conflict")
    # Held: the order's 1 and the transfer's 1 moved; the conflicting transfer moved nothing.
    assert Decimal(bal(api, w["s"], "CDCER")["available"]) == Decimal(before) - 2
