"""A bank's webhook endpoint: its URL and signing secret, and the recent deliveries to it."""

from __future__ import annotations

import secrets
from dataclasses import replace
from urllib.parse import urlsplit

from exchange.core.errors import Invalid, NotFound
from exchange.core.idempotency import check_replay, fingerprint
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.pledging import repository as repo
from exchange.pledging import webhooks
from exchange.pledging.models import WebhookEndpoint, WebhookStatus
from exchange.pledging.refusals import translate_refusals


@translate_refusals
async def set_webhook(rt: Runtime, who: Principal, client_id: str, *, url: str) -> WebhookEndpoint:
    """Set the bank's webhook URL; the answer (api.schemas.pledges.WebhookOut) shows its signing secret."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port (or one beyond 65535)
    except ValueError:
        raise Invalid("invalid_webhook_url", "the webhook URL is malformed") from None
    if port == 0:  # no service listens on port 0: nothing could ever be delivered there
        raise Invalid("invalid_webhook_url", "the webhook URL names port 0; ports are 1 to 65535")
    allowed = ("https", "http") if rt.settings.pledge_webhook_allow_http else ("https",)
    if parts.scheme not in allowed or not parts.hostname or "@" in parts.netloc or parts.fragment:
        raise Invalid("invalid_webhook_url", f"the webhook URL must be an absolute {' or '.join(allowed)} URL "
                      "without user info or fragment")
    try:  # again at every delivery (exchange.pledging.webhooks): a name may resolve elsewhere later
        await webhooks.checked_addresses(url, rt.settings.webhook_allowed_host_list)
    except webhooks.DeliveryFailed:
        raise Invalid("webhook_destination_refused", "webhooks go to public Internet addresses only: the host "
                      "must resolve, and not to a loopback, private, link-local, multicast or unspecified "
                      "address") from None
    fp = fingerprint({"url": url})
    async with rt.tx() as conn:
        row = await repo.webhook_of(conn, who.participant_id)
        if row is not None and row.client_id == client_id and row.updated_by == who.actor:
            check_replay(row.fingerprint, fp)
        else:
            # The secret is an HMAC key, so it is kept readable; it is shown to the bank only here.
            secret = ("whsec_" + secrets.token_hex(32)).encode()
            await repo.set_webhook(conn, who.participant_id, url, secret, who.actor, client_id, fp)
        row = await repo.webhook_of(conn, who.participant_id)
    assert row is not None  # written just above, in this transaction
    return row


async def webhook_status(rt: Runtime, who: Principal) -> WebhookStatus:
    async with rt.read() as conn:
        row = await repo.webhook_of(conn, who.participant_id)
        deliveries = await repo.outbox_of(conn, who.participant_id)
    if row is None:
        raise NotFound("webhook endpoint of participant", who.participant_id)
    return WebhookStatus(row, [replace(d, last_error=webhooks.public_reason(d.last_error)) for d in deliveries])


