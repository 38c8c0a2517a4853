"""PagerDuty Events API v2: ``trigger`` when an incident is analyzed, ``resolve`` when Alertmanager resolves it.

The ``dedup_key`` is the incident's id, so a retried trigger (an answer lost in transit, a
worker restarted mid-send) updates the same PagerDuty alert instead of paging twice, and the
resolve closes it. PagerDuty answers 202 ``{status, message, dedup_key}``; 400 is an invalid
event (not retried), 429 is throttling and 5xx a fault on its side (both retried).
"""

from __future__ import annotations

import json
from typing import Any

from pipelines.notify.channels import OutgoingRequest
from pipelines.notify.message import Notification

SUMMARY_MAX = 1024  # PagerDuty truncates payload.summary at 1024 characters
#: our alert severities -> PagerDuty's (critical, error, warning, info)
SEVERITIES = {"critical": "critical", "warning": "warning", "info": "info"}


def event(n: Notification, routing_key: str) -> dict[str, Any]:
    """The Events API v2 body for ``n``."""
    if n.event == "resolve":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": n.incident_id}
    summary = f"{n.alert_name}: {n.top_cause}"
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": n.incident_id,
        "payload": {
            "summary": summary if len(summary) <= SUMMARY_MAX else summary[: SUMMARY_MAX - 1] + "…",
            "severity": SEVERITIES.get(n.severity, "error"),
            "source": n.service or n.alert_name,
            "component": n.top_service or n.service or n.alert_name,
            "class": n.category,
            "timestamp": n.started_at.isoformat(),
            "custom_details": n.model_dump(mode="json", exclude={"event", "resolved_at"}),
        },
        "client": "rca",
    }
    if n.link:
        body["client_url"] = n.link
        body["links"] = [{"href": n.link, "text": "Root-cause analysis"}]
    return body


class PagerDutyChannel:
    name = "pagerduty"

    def __init__(self, events_url: str, routing_key: str) -> None:
        self._url = events_url
        self._key = routing_key

    def request(self, notification: Notification, delivery_id: int) -> OutgoingRequest:
        body = json.dumps(event(notification, self._key)).encode()
        return OutgoingRequest(self._url, body, {"Content-Type": "application/json"})

    def accepted(self, status: int, body: str) -> bool:
        return status == 202

    def secrets(self) -> list[str]:
        return [self._key]
