"""Signed webhooks to banks: the signature (pure), the retry schedule (pure), outbox delivery (DB + HTTP).

Each pledge event a bank should hear about is written to `pledge_outbox` in the same transaction as
the event, so an event is never announced unless committed and never lost once committed. A
delivery task sends due rows after commit and retries failures with exponential backoff.

Request: `POST <url>` with the event as JSON and headers

    X-Envx-Event-Id:  <event id>              (receivers dedupe on it: delivery is at least once)
    X-Envx-Event-Type: <type>
    X-Envx-Timestamp: <unix seconds of this attempt>
    X-Envx-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

The timestamp is inside the MAC so a captured request cannot be replayed later under a new time;
receivers should refuse timestamps older than a few minutes (`verify` does, 300 s by default).

Claiming: due rows are leased (next attempt pushed `LEASE` ahead, attempts counted) under
`FOR UPDATE SKIP LOCKED` and committed before any HTTP call, so two workers never send the same row
at the same time and a worker that dies mid-send only delays the row by the lease.

Destinations: a webhook goes to the public Internet only. A URL whose host is, or resolves to, an
address in a block of the IANA special-purpose registries (IPv4: private, shared/CGNAT, loopback,
link-local, IETF protocol assignments, documentation, benchmarking, AS112, AMT, 6to4 relay, multicast,
class E; IPv6: anything outside global unicast 2000::/3 -- unique-local, link-local, site-local, multicast,
the local NAT64 prefix -- and 2001::/23 (Teredo included), documentation, AS112 inside it), or an IPv6 form
of a forbidden IPv4 address (IPv4-mapped, 6to4, NAT64 64:ff9b::/96) is refused when the bank sets it and again
at every delivery (the name is resolved anew, checked, and the connection made to the very address
checked, so a DNS answer that changes in between cannot redirect it), unless an operator lists the host
in ENVX_WEBHOOK_ALLOWED_HOSTS. Redirects are not followed. A failed delivery is recorded with a fixed
reason (`REASONS`), never the transport's error text, so the outbox cannot be used as a port scanner.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.ext.asyncio import AsyncEngine

from exchange.pledging import repository as repo
from exchange.pledging.models import DueDelivery

log = logging.getLogger("envx.pledges.webhooks")

SIGNATURE_HEADER = "X-Envx-Signature"
TIMESTAMP_HEADER = "X-Envx-Timestamp"
EVENT_ID_HEADER = "X-Envx-Event-Id"
EVENT_TYPE_HEADER = "X-Envx-Event-Type"
MAX_ATTEMPTS = 12  # 1 s, 2 s, 4 s ... capped at an hour: about 2.5 hours of trying
BASE_DELAY = 1.0
MAX_DELAY = 3600.0
LEASE = timedelta(seconds=60)
TIMEOUT_SECONDS = 5.0
RESOLVE_TIMEOUT_SECONDS = 5.0

# (url, body, headers) -> HTTP status; raises DeliveryFailed (or anything else: connect_failed) when
# the receiver cannot be reached.
Sender = Callable[[str, bytes, dict[str, str]], Awaitable[int]]

# What a bank is told about a failed delivery: one of these, never the transport's error text.
DESTINATION_REFUSED = "destination_refused"  # the host is (or now resolves to) a non-public address
CONNECT_FAILED = "connect_failed"            # no connection (refused, unreachable, unresolvable, TLS)
TIMEOUT = "timeout"                          # no answer within TIMEOUT_SECONDS
HTTP_STATUS = "http_status"                  # the receiver answered, not 2xx: "http_status:503"
REASONS = frozenset({DESTINATION_REFUSED, CONNECT_FAILED, TIMEOUT})
_HTTP_REASON = re.compile(r"http_status:[1-5][0-9][0-9]")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_6TO4 = ipaddress.IPv6Network("2002::/16")
# IPv6: only global unicast (2000::/3) is ever a destination -- that leaves out unique-local fc00::/7,
# link-local fe80::/10, site-local fec0::/10 (deprecated, but Python's ipaddress calls it global),
# multicast ff00::/8, discard-only 100::/64, the local NAT64 prefix 64:ff9b:1::/48 and everything not yet
# allocated -- plus the forms that carry an IPv4 address, judged by that address: IPv4-mapped and the
# well-known NAT64 prefix (a DNS64 resolver's answer for an IPv4-only host).
_IPV6_GLOBAL = ipaddress.IPv6Network("2000::/3")
# Inside 2000::/3, the IANA IPv6 Special-Purpose Address Registry's blocks (and 6to4, judged by its IPv4).
_IPV6_SPECIAL = tuple(ipaddress.IPv6Network(n) for n in (
    "2001::/23",       # IETF protocol assignments: Teredo 2001::/32, PCP/TURN/DNS-SD anycast 2001:1::1-3,
                       # benchmarking 2001:2::/48, AMT 2001:3::/32, AS112 2001:4:112::/48, ORCHID(v2) 2001:10::/28
                       # and 2001:20::/28, drone remote ID 2001:30::/28
    "2001:db8::/32",   # documentation
    "2620:4f:8000::/48",  # AS112 direct delegation
    "3fff::/20",       # documentation (RFC 9637)
))
# IPv4: the IANA IPv4 Special-Purpose Address Registry, whole blocks (their anycast services too: a
# webhook is for a bank's own server), plus multicast and the old class E.
_IPV4_SPECIAL = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8",        # "this network"
    "10.0.0.0/8",       # private
    "100.64.0.0/10",    # shared address space (CGNAT)
    "127.0.0.0/8",      # loopback
    "169.254.0.0/16",   # link-local (cloud metadata services)
    "172.16.0.0/12",    # private
    "192.0.0.0/24",     # IETF protocol assignments (DS-Lite, PCP and TURN anycast, NAT64 discovery ...)
    "192.0.2.0/24",     # documentation TEST-NET-1
    "192.31.196.0/24",  # AS112
    "192.52.193.0/24",  # AMT
    "192.88.99.0/24",   # deprecated 6to4 relay anycast
    "192.168.0.0/16",   # private
    "192.175.48.0/24",  # AS112 direct delegation
    "198.18.0.0/15",    # benchmarking
    "198.51.100.0/24",  # documentation TEST-NET-2
    "203.0.113.0/24",   # documentation TEST-NET-3
    "224.0.0.0/4",      # multicast
    "240.0.0.0/4",      # reserved (class E), with the limited broadcast 255.255.255.255
))


class DeliveryFailed(Exception):
    """A delivery attempt failed for `reason` (one of REASONS)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def public_reason(recorded: str | None) -> str | None:
    """The reason as a bank may see it; rows written before reasons were fixed become connect_failed."""
    if recorded is None or recorded in REASONS or _HTTP_REASON.fullmatch(recorded):
        return recorded
    legacy = re.fullmatch(r"HTTP ([1-5][0-9][0-9])", recorded)
    return f"{HTTP_STATUS}:{legacy.group(1)}" if legacy else CONNECT_FAILED


def forbidden_address(address: str) -> bool:
    """Whether a webhook may not go to this IP address: an IPv4 address in a special-purpose block
    (`_IPV4_SPECIAL`), an IPv6 address outside global unicast or in a special-purpose block inside it
    (`_IPV6_SPECIAL`), or an IPv6 address that carries a forbidden IPv4 one (IPv4-mapped, 6to4, NAT64).
    Python's own `is_global` is consulted as well, never instead: it calls fec0::/10 global."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a zone index ("fe80::1%eth0") is link-local anyway
    if isinstance(ip, ipaddress.IPv4Address):
        return not ip.is_global or any(ip in n for n in _IPV4_SPECIAL)
    if ip in _IPV4_MAPPED or ip in _NAT64:
        return forbidden_address(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    if ip not in _IPV6_GLOBAL or any(ip in n for n in _IPV6_SPECIAL):
        return True
    if ip in _6TO4:
        return forbidden_address(str(ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)))
    return not ip.is_global


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """An operator's exception (ENVX_WEBHOOK_ALLOWED_HOSTS): host names or IP literals, exact."""
    h = host.lower().rstrip(".")
    return any(h == a.strip().lower().rstrip(".").strip("[]") for a in allowed if a.strip())


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to now (an IP literal resolves to itself)."""
    try:
        infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
                                       RESOLVE_TIMEOUT_SECONDS)
    except (OSError, UnicodeError, TimeoutError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_addresses(url: str, allowed: Iterable[str]) -> tuple[str, int, list[str]]:
    """(host, port, addresses) of a webhook URL, every address public unless the host is allowed;
    raises DeliveryFailed(destination_refused) otherwise, and when the host does not resolve."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise DeliveryFailed(DESTINATION_REFUSED)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolve(host, port)
    if not addresses:
        raise DeliveryFailed(DESTINATION_REFUSED)
    if not host_allowed(host, allowed) and any(forbidden_address(a) for a in addresses):
        raise DeliveryFailed(DESTINATION_REFUSED)
    return host, port, addresses


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def headers(secret: bytes, timestamp: int, body: bytes, event_id: int, event_type: str) -> dict[str, str]:
    return {"Content-Type": "application/json", EVENT_ID_HEADER: str(event_id), EVENT_TYPE_HEADER: event_type,
            TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify(secret: bytes, timestamp: str, sig: str, body: bytes, *, now: float | None = None,
           tolerance: int = 300) -> bool:
    """What a receiver does: constant-time compare, and refuse stale or future timestamps."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, ts, body), sig)


def backoff(attempts: int) -> float:
    """Delay before the next try after `attempts` failed ones."""
    return float(min(BASE_DELAY * 2 ** max(attempts - 1, 0), MAX_DELAY))


def body_of(event: dict[str, object]) -> bytes:
    return json.dumps(event, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str).encode()


def http_sender(allowed_hosts: Iterable[str] = ()) -> Sender:
    """The real sender: checks the destination at delivery time and connects to the address it checked
    (Host header and TLS server name stay the URL's host, so the certificate is verified against it)."""
    allowed = tuple(allowed_hosts)

    async def send(url: str, body: bytes, hdrs: dict[str, str]) -> int:
        import httpx  # a dependency of litestar; imported here so the pure part needs nothing

        host, port, addresses = await checked_addresses(url, allowed)
        parts = urlsplit(url)
        ip = addresses[0]
        netloc = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        default = 443 if parts.scheme == "https" else 80
        name = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets in Host
        headers = {**hdrs, "Host": name if port == default else f"{name}:{port}"}
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False) as client:
                return (await client.post(target, content=body, headers=headers, extensions=extensions)).status_code
        except httpx.TimeoutException:
            raise DeliveryFailed(TIMEOUT) from None
        except (httpx.HTTPError, OSError):
            raise DeliveryFailed(CONNECT_FAILED) from None

    return send


async def deliver_due(engine: AsyncEngine, sender: Sender, *, limit: int = 50) -> int:
    """Send every due outbox row once; returns how many were delivered."""
    async with engine.begin() as conn:
        due = await repo.lease_due_deliveries(conn, LEASE, limit)
    if not due:
        return 0

    async def one(row: DueDelivery) -> tuple[int, int, str | None]:
        hdrs = headers(row.secret, int(time.time()), row.body, row.event_id, row.event_type)
        try:
            status = await sender(row.url, row.body, hdrs)
        except DeliveryFailed as exc:  # retried, never fatal to the worker; the bank sees the reason only
            return row.id, row.attempts, exc.reason
        except Exception as exc:
            log.info("webhook %s: delivery failed: %r", row.id, exc)
            return row.id, row.attempts, CONNECT_FAILED
        if 200 <= status < 300:
            return row.id, row.attempts, None
        return row.id, row.attempts, f"{HTTP_STATUS}:{status}"

    results = await asyncio.gather(*(one(r) for r in due))
    delivered = 0
    async with engine.begin() as conn:
        for row_id, attempts, error in results:
            if error is None:
                delivered += 1
                await repo.delivery_done(conn, row_id)
            elif attempts >= MAX_ATTEMPTS:
                log.warning("webhook %s failed for good after %d attempts: %s", row_id, attempts, error)
                await repo.delivery_failed(conn, row_id, error)
            else:
                await repo.delivery_retry(conn, row_id, error, timedelta(seconds=backoff(attempts)))
    return delivered
