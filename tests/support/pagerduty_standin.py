"""A PagerDuty Events API v2 stand-in that answers as PagerDuty documents.

``POST /v2/enqueue`` with ``routing_key``, ``event_action`` (trigger, acknowledge, resolve),
``dedup_key`` and, for a trigger, ``payload`` with ``summary``, ``severity`` (critical, error,
warning, info) and ``source``: 202 ``{"status": "success", "message": "Event processed",
"dedup_key": ...}``. An invalid event: 400 ``{"status": "invalid event", "message": "Event
object is invalid", "errors": [...]}``. 429 when throttled, 5xx on a fault. Like PagerDuty, it
keeps one alert per ``dedup_key``: a repeated trigger updates it, a resolve closes it.
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.http_standin import Reply, Request, StandinServer

SEVERITIES = {"critical", "error", "warning", "info"}
ACTIONS = {"trigger", "acknowledge", "resolve"}


def event_errors(event: Any, routing_key: str) -> list[str]:
    """What PagerDuty would say is wrong with ``event`` (empty when valid)."""
    if not isinstance(event, dict):
        return ["Event object is not a JSON object"]
    errors = []
    if event.get("routing_key") != routing_key:
        errors.append("'routing_key' is invalid")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is missing or invalid")
    dedup = event.get("dedup_key")
    if action != "trigger" and not dedup:
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return errors + ["'payload' is missing"]
        if not payload.get("summary") or len(str(payload["summary"])) > 1024:
            errors.append("'payload.summary' is missing or longer than 1024")
        if payload.get("severity") not in SEVERITIES:
            errors.append("'payload.severity' is missing or invalid")
        if not payload.get("source"):
            errors.append("'payload.source' is missing")
    return errors


class PagerDutyStandin(StandinServer):
    def __init__(self, routing_key: str = "R0RCASTANDINROUTINGKEY000000001", script: list[Reply] | None = None) -> None:
        self.routing_key = routing_key
        self.script = list(script or [])
        self.events: list[dict[str, Any]] = []
        self.alerts: dict[str, str] = {}  # dedup_key -> triggered | resolved
        super().__init__(self._handle)

    @property
    def events_url(self) -> str:
        return self.url + "/v2/enqueue"

    def _handle(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/v2/enqueue":
            return Reply(404, {"status": "not found", "message": "Not Found"})
        if self.script:
            return self.script.pop(0)
        try:
            event = json.loads(request.body)
        except ValueError:
            return Reply(400, {"status": "invalid event", "message": "Event object is invalid",
                               "errors": ["body is not JSON"]})
        errors = event_errors(event, self.routing_key)
        if errors:
            return Reply(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})
        self.events.append(event)
        dedup = event["dedup_key"]
        self.alerts[dedup] = "resolved" if event["event_action"] == "resolve" else "triggered"
        return Reply(202, {"status": "success", "message": "Event processed", "dedup_key": dedup})
