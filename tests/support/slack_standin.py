"""A Slack incoming-webhook stand-in that answers as Slack documents.

``POST /services/<team>/<bot>/<token>`` with a JSON body of ``text`` and/or ``blocks``: 200
``ok``. Errors as Slack gives them, as text bodies: 400 ``invalid_payload`` (not JSON, or
blocks that are not Block Kit), 400 ``no_text`` (neither text nor blocks), 404 ``no_service``
(a webhook URL that does not exist), 429 with ``Retry-After`` (rate limited), 500
``rollup_error``. ``script`` holds replies to give, in order, before answering normally (an
outage, a rate limit); ``messages`` are the payloads Slack would have posted.
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.http_standin import Reply, Request, StandinServer

BLOCK_TYPES = {"header", "section", "context", "divider", "actions", "image", "rich_text"}
HOOK_PATH = "/services/T0RCA0001/B0RCA0001/standinwebhooktoken0001"


def unavailable() -> Reply:
    return Reply(503, "service unavailable")


def rate_limited(retry_after: str = "1") -> Reply:
    return Reply(429, "rate_limited", {"Retry-After": retry_after})


def block_kit_problem(payload: Any) -> str | None:
    """Why ``payload`` is not a message Slack would post (Slack's error code), or None."""
    if not isinstance(payload, dict):
        return "invalid_payload"
    if not payload.get("text") and not payload.get("blocks"):
        return "no_text"
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_payload"
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            return "invalid_payload"
        text = block.get("text")
        if block["type"] == "header" and (not isinstance(text, dict) or text.get("type") != "plain_text"
                                          or len(text.get("text", "")) > 150):
            return "invalid_payload"
        if isinstance(text, dict) and len(text.get("text", "")) > 3000:
            return "invalid_payload"
    return None


class SlackStandin(StandinServer):
    def __init__(self, script: list[Reply] | None = None) -> None:
        self.script = list(script or [])
        self.messages: list[dict[str, Any]] = []
        super().__init__(self._handle)

    @property
    def webhook_url(self) -> str:
        return self.url + HOOK_PATH

    def _handle(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != HOOK_PATH:
            return Reply(404, "no_service")
        if self.script:
            return self.script.pop(0)
        try:
            payload = json.loads(request.body)
        except ValueError:
            return Reply(400, "invalid_payload")
        problem = block_kit_problem(payload)
        if problem:
            return Reply(400, problem)
        self.messages.append(payload)
        return Reply(200, "ok")
