"""One attempt to deliver one notification, and what it means for the next.

The rules every channel shares:
- accepted (2xx the channel recognises): ``delivered``;
- 408, 429, 5xx, or no answer (refused, reset, timed out): ``retry``, after an exponential
  backoff with full jitter, and never sooner than the receiver's ``Retry-After`` (seconds or
  an HTTP-date);
- any other 4xx: ``rejected``: the receiver said the message itself is wrong, so sending it
  again would only repeat that (no retry storm); the status and the receiver's reason are kept.
Error text recorded here never holds a channel's secret (URL, routing key, HMAC key).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Literal

import httpx

from pipelines.notify.channels import Channel
from pipelines.notify.message import Notification

Outcome = Literal["delivered", "retry", "rejected"]
RETRIED_4XX = (408, 429)
REASON_MAX = 300


@dataclass(frozen=True)
class Attempt:
    """What one attempt got: outcome, HTTP status (None without an answer), why, and the receiver's wait."""

    outcome: Outcome
    status: int | None
    reason: str
    retry_after_seconds: float | None = None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds from now: delta-seconds or an HTTP-date (RFC 9110); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (1-based): uniform in [base/2, min(cap, base·2^(n-1))]."""
    ceiling = min(cap, base * 2 ** min(attempt - 1, 30))
    return (rng or random).uniform(min(base / 2, ceiling), ceiling)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def classify(channel: Channel, status: int, body: str, retry_after: str | None) -> Attempt:
    """The meaning of an HTTP answer (see the module's rules)."""
    said = scrub(body.strip(), channel.secrets())[:REASON_MAX]
    if 200 <= status < 300:
        if channel.accepted(status, body):
            return Attempt("delivered", status, said or "accepted")
        return Attempt("rejected", status, f"HTTP {status} not the answer {channel.name} gives on success: {said!r}")
    wait = parse_retry_after(retry_after)
    if status in RETRIED_4XX or status >= 500:
        return Attempt("retry", status, f"HTTP {status}: {said}", wait)
    return Attempt("rejected", status, f"HTTP {status}: {said} (the receiver refused the message; not retried)")


async def attempt(client: httpx.AsyncClient, channel: Channel, notification: Notification, delivery_id: int) -> Attempt:
    """Send ``notification`` once on ``channel``; never raises for a network failure."""
    request = channel.request(notification, delivery_id)
    try:
        response = await client.post(request.url, content=request.body, headers=request.headers)
    except httpx.HTTPError as exc:
        reason = scrub(f"{type(exc).__name__}: {exc}", channel.secrets())[:REASON_MAX]
        return Attempt("retry", None, reason)
    return classify(channel, response.status_code, response.text, response.headers.get("retry-after"))
