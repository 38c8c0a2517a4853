"""Request limits enforced before any work is done: body size and requests per client per minute.

Body size is checked twice: the declared Content-Length up front, and the bytes actually
received (chunked bodies declare none), so a client cannot exhaust the ingress's memory.

Requests per client per minute are a token bucket per client address (the peer, or the
first ``X-Forwarded-For`` hop when the peer is a trusted proxy): a full bucket allows a burst
of one minute's worth, then refills steadily. Over the limit is a 429 with ``Retry-After``
before the body is read, counted as ``rca_requests_rejected_total{reason="rate_limited"}``.
The buckets live in the ingress replica: with N replicas a client gets up to N times the
limit (the Ingress runs one replica by default).
"""

from __future__ import annotations

import ipaddress
import json
import math
import threading
import time
from collections import OrderedDict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipelines import metrics

MAX_TRACKED_CLIENTS = 100_000
UNLIMITED_PATHS = frozenset({"/health"})


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes (RCA_MAX_BODY_BYTES)")


class BodySizeLimit:
    """ASGI middleware; ``limit`` is set by the ingress from the settings at start-up."""

    limit: int = 64 * 1024 * 1024

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = BodySizeLimit.limit
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _reject(send, limit)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send)


async def _reject(send: Send, limit: int) -> None:
    metrics.count_rejected("body_too_large")
    body = f'{{"detail": "request body larger than {limit} bytes (RCA_MAX_BODY_BYTES)"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------- client address


def parse_networks(entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``RCA_TRUSTED_PROXIES`` as networks; a bad entry names itself."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"RCA_TRUSTED_PROXIES: {entry!r} is not an address or network ({exc})") from None
    return networks


def client_address(scope: Scope, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """The calling client: the peer, or the last untrusted hop of X-Forwarded-For when the peer is a trusted proxy."""
    peer = (scope.get("client") or ("unknown", 0))[0]
    if not trusted or not _in(peer, trusted):
        return str(peer)[:100]
    forwarded = ""
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            forwarded = value.decode("latin-1")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):  # the rightmost hop not added by our own proxies
        if not _in(hop, trusted):
            return _valid_ip(hop) or str(peer)[:100]
    return str(peer)[:100]


def _valid_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _in(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


# ---------------------------------------------------------------- requests per client per minute


class RateLimiter:
    """Token buckets per key: ``per_minute`` burst, refilled at ``per_minute / 60`` per second."""

    def __init__(self, per_minute: int, *, clock=time.monotonic, max_clients: int = MAX_TRACKED_CLIENTS) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float | None:
        """None when allowed; otherwise the seconds to wait before the next request is."""
        if self.per_minute <= 0:
            return None
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - at) * self._rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = None
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self._rate
            while len(self._buckets) > self._max_clients:  # forget the least recently seen
                self._buckets.popitem(last=False)
        return wait


class RateLimit:
    """ASGI middleware; ``limiter`` and ``trusted`` are set by the ingress from the settings at start-up."""

    limiter: RateLimiter = RateLimiter(0)
    trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        client = client_address(scope, RateLimit.trusted)
        scope.setdefault("state", {})["client"] = client
        wait = RateLimit.limiter.acquire(client)
        if wait is None:
            await self.app(scope, receive, send)
            return
        metrics.count_rejected("rate_limited")
        retry_after = max(1, math.ceil(wait))
        body = json.dumps({"detail": f"more than {RateLimit.limiter.per_minute} requests per minute from {client}"
                                     f" (RCA_RATE_LIMIT_PER_MINUTE); retry after {retry_after} s"}).encode()
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry_after).encode())]})
        await send({"type": "http.response.body", "body": body})
