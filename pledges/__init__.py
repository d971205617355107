"""Pledge registrations (质押登记) and judicial freezes (司法冻结): the pure rules and their tables.

Pure modules (no I/O, no clock): `lifecycle` (states, the projection of a registration's events, the
default that enforcement needs), `priority` (total order of registrations), `ranges` (serial-range
arithmetic), `scope` (the secured scope and what of a claim it secures), `valuation` (value,
collateral ratio, margin levels, usable deadlines), `waterfall` (payout of enforcement proceeds, courts'
share of the surplus), `visibility` (who sees what), `certificate` (signed public-inquiry
certificates) and the signing half of `webhooks`.
`repository` holds the SQL on our tables; `webhooks.deliver_due` the outbox delivery.

Imports point down only: `pledges -> ledger`. Orchestration with the runtime lives in
`exchange.pledging` and `exchange.courts.freezes`.
"""
