"""Generic outgoing webhook, signed: for every receiver that is neither Slack nor PagerDuty.

The body is ``{"event": "trigger"|"resolve", "notification": {...}}``. Headers:
``X-RCA-Timestamp`` (unix seconds), ``X-RCA-Signature: v1=<hex HMAC-SHA256 of
"<timestamp>.<body>">`` with the shared key, and ``X-RCA-Delivery`` (the outbox row: the same
on every retry of one message, so a receiver can drop a duplicate). A receiver recomputes the
signature over the raw body and rejects a timestamp older than a few minutes (a replay);
``verify`` below is that check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from pipelines.notify.channels import OutgoingRequest
from pipelines.notify.message import Notification

SIGNATURE_HEADER = "X-RCA-Signature"
TIMESTAMP_HEADER = "X-RCA-Timestamp"
DELIVERY_HEADER = "X-RCA-Delivery"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(key: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex>``: HMAC-SHA256 of ``"<timestamp>." + body`` with ``key``."""
    digest = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(key: str, headers: dict[str, str], body: bytes, *, now: float | None = None,
           tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS) -> None:
    """What a receiver does; raises ValueError saying why a request is refused (headers in lower case)."""
    try:
        timestamp = int(headers[TIMESTAMP_HEADER.lower()])
        signature = headers[SIGNATURE_HEADER.lower()]
    except KeyError as exc:
        raise ValueError(f"missing header {exc.args[0]}") from None
    except ValueError:
        raise ValueError(f"{TIMESTAMP_HEADER} is not unix seconds") from None
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_seconds:
        raise ValueError(f"{TIMESTAMP_HEADER} is more than {tolerance_seconds} s away from now (a replay?)")
    if not hmac.compare_digest(sign(key, timestamp, body), signature):
        raise ValueError(f"{SIGNATURE_HEADER} does not match the body")


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, key: str) -> None:
        self._url = url
        self._key = key

    def request(self, notification: Notification, delivery_id: int) -> OutgoingRequest:
        body = json.dumps({"event": notification.event, "notification": notification.model_dump(mode="json")}).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._key, timestamp, body),
            DELIVERY_HEADER: str(delivery_id),
        }
        return OutgoingRequest(self._url, body, headers)

    def accepted(self, status: int, body: str) -> bool:
        return 200 <= status < 300

    def secrets(self) -> list[str]:
        return [self._url, self._key]
