"""Red team round 3, finding 4: a party confirming a block deal that already traded hears so (409
`deal_not_open`, with the trade), concurrently or not -- not `counterparty_unfunded`, which blamed a buyer
that was funded, nor the 404 of a deal it is not a party to."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.helpers import Api
from tests.trading.test_block_settlement import M, _desk, bal


def test_concurrent_and_late_confirmations_of_a_traded_deal_say_it_traded(api: Api) -> None:
    seller, buyer = _desk(api, cash="13000000.00")  # funds this deal once, not twice
    q = api.ok(seller["api"].post(f"/v1/markets/{M}/block-quotes",
                                  {"side": "sell", "price": "100.00", "quantity": "250000"}))["seq"]
    deal = api.ok(buyer["api"].post(f"/v1/markets/{M}/block-quotes/{q}/respond",
                                    {"price": "100.00", "quantity": "120000"}))["seq"]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda n: seller["api"].post(f"/v1/markets/{M}/deals/{deal}/confirm", {},
                                                             key=f"confirm-{n}"), range(4)))
    codes = sorted((r.status_code, r.json().get("code")) for r in answers)
    assert codes == [(200, None)] + [(409, "deal_not_open")] * 3, [r.text for r in answers]
    late = seller["api"].post(f"/v1/markets/{M}/deals/{deal}/confirm", {}, key="late")
    assert (late.status_code, late.json()["code"], late.json()["deal_status"]) == (409, "deal_not_open", "traded")
    [trade] = api.ok(api.client.get(f"/v1/markets/{M}/trades"))
    assert late.json()["trade_id"] == trade["trade_id"] and trade["quantity"] == "120000"
    # The other party too, and its decline or counter; anyone else still gets the 404 of an unknown deal.
    for path, body in (("confirm", {}), ("decline", {}), ("counter", {"price": "99.00", "quantity": "120000"})):
        r = buyer["api"].post(f"/v1/markets/{M}/deals/{deal}/{path}", body)
        assert (r.status_code, r.json()["code"]) == (409, "deal_not_open"), (path, r.text)
    stranger = api.participant("控排企业丙", "enterprise")
    r = stranger["api"].post(f"/v1/markets/{M}/deals/{deal}/confirm", {})
    assert r.status_code == 404, r.text
    assert r.json()["code"] == api.post(f"/v1/markets/{M}/deals/987654/confirm", {}).json()["code"]
    # It traded once: the buyer paid once and nothing stays held.
    assert bal(api, buyer, "CNY") == {**bal(api, buyer, "CNY"), "posted": "1000000.00", "pending": "0.00"}
    assert bal(api, seller, "CEA25")["pending"] == "0"
