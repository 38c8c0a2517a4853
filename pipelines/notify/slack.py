"""Slack incoming webhook, Block Kit: one message per analyzed incident, one when it resolves.

Incoming webhooks cannot edit a message they posted (that needs ``chat.update`` and a bot
token), so the resolve is a second message of the same shape, headed "Resolved". Slack
answers 200 ``ok``; errors are 400 ``invalid_payload``, 403 ``action_prohibited``, 404
``no_service`` / ``channel_not_found``, 410 ``channel_is_archived``, 429 with ``Retry-After``
and 5xx ``rollup_error``.
"""

from __future__ import annotations

import json
from typing import Any

from pipelines.notify.channels import OutgoingRequest
from pipelines.notify.message import Notification

HEADER_MAX = 150  # Block Kit: a header's plain_text
SECTION_MAX = 3000  # Block Kit: a section's text


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: str) -> str:
    """Slack's mrkdwn control characters, so log text cannot mention @channel or fake a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def blocks(n: Notification) -> list[dict[str, Any]]:
    """The Block Kit message: state, category, top cause with confidence and first evidence, first step, link."""
    state = "Resolved" if n.event == "resolve" else n.severity.capitalize()
    title = f"{state}: {n.alert_name}" + (f" on {n.service}" if n.service else "")
    cause = f"*Top cause* ({n.top_confidence:.0%}): {_escape(n.top_cause)}"
    if n.top_service:
        cause += f"\n*Service:* {_escape(n.top_service)}"
    if n.first_evidence:
        cause += f"\n*Evidence:* {_escape(n.first_evidence)}"
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(title, HEADER_MAX)}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Category:* {n.category} ({n.category_confidence:.0%})"},
            {"type": "mrkdwn", "text": f"*Severity:* {n.severity}"},
        ]},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(cause, SECTION_MAX)}},
    ]
    if n.first_step:
        step = f"*First step:* {_escape(n.first_step)}"
        if n.first_command:
            step += f"\n`{_escape(n.first_command)}`"
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(step, SECTION_MAX)}})
    context = f"Incident {n.incident_id} · started {n.started_at.isoformat()}"
    if n.resolved_at:
        context += f" · resolved {n.resolved_at.isoformat()}"
    if n.link:
        context += f" · <{n.link}|Open the analysis>"
    out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return out


class SlackChannel:
    name = "slack"

    def __init__(self, webhook_url: str) -> None:
        self._url = webhook_url

    def request(self, notification: Notification, delivery_id: int) -> OutgoingRequest:
        n = notification
        state = "Resolved" if n.event == "resolve" else n.severity
        text = _escape(f"[{state}] {n.alert_name}: {n.top_cause} ({n.top_confidence:.0%})")
        body = {"text": _cut(text, SECTION_MAX), "blocks": blocks(n)}
        return OutgoingRequest(self._url, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def accepted(self, status: int, body: str) -> bool:
        return status == 200 and body.strip() == "ok"

    def secrets(self) -> list[str]:
        return [self._url]
