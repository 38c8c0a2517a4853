"""What every channel is: something that turns a ``Notification`` into one HTTP request.

A channel renders; it does not send. ``delivery.py`` sends the request and reads the answer
the same way for all of them, so retries, ``Retry-After`` and the 4xx rule live in one place.
Adding a channel is one module with a class of this shape and one line in ``build_channels``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pipelines.notify.message import Notification
from pipelines.settings import Settings, secret_value


@dataclass(frozen=True)
class OutgoingRequest:
    """A POST to make: the URL may be a secret (Slack's webhook URL) and is never logged."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Channel(Protocol):
    name: str

    def request(self, notification: Notification, delivery_id: int) -> OutgoingRequest:
        """The request that tells ``notification``; ``delivery_id`` names the outbox row (for receivers' dedup)."""
        ...

    def accepted(self, status: int, body: str) -> bool:
        """Whether a 2xx answer means the receiver took the message."""
        ...

    def secrets(self) -> list[str]:
        """Values to scrub from any error text recorded about this channel."""
        ...


def build_channels(settings: Settings) -> dict[str, Channel]:
    """The channels whose secrets are configured, by name; a ``*_FILE`` that cannot be read raises ValueError."""
    from pipelines.notify.pagerduty import PagerDutyChannel
    from pipelines.notify.slack import SlackChannel
    from pipelines.notify.webhook import WebhookChannel

    channels: dict[str, Channel] = {}
    slack = secret_value(settings.slack_webhook_url, settings.slack_webhook_url_file, "RCA_SLACK_WEBHOOK_URL")
    if slack:
        channels["slack"] = SlackChannel(slack)
    key = secret_value(settings.pagerduty_routing_key, settings.pagerduty_routing_key_file, "RCA_PAGERDUTY_ROUTING_KEY")
    if key:
        channels["pagerduty"] = PagerDutyChannel(settings.pagerduty_events_url, key)
    url = secret_value(settings.notify_webhook_url, settings.notify_webhook_url_file, "RCA_NOTIFY_WEBHOOK_URL")
    if url:
        hmac_key = secret_value(settings.notify_webhook_secret, settings.notify_webhook_secret_file,
                                "RCA_NOTIFY_WEBHOOK_SECRET")
        if not hmac_key:
            raise ValueError("RCA_NOTIFY_WEBHOOK_URL is set but RCA_NOTIFY_WEBHOOK_SECRET(_FILE) is not: "
                             "the outgoing webhook is always signed; give it an HMAC key")
        channels["webhook"] = WebhookChannel(url, hmac_key)
    unknown = {r.channel for r in settings.notify_routes} - set(channels)
    if unknown:
        raise ValueError(f"RCA_NOTIFY_ROUTES routes to {', '.join(sorted(unknown))}, which is not configured "
                         "(set its URL or routing key, or remove the route)")
    return channels
