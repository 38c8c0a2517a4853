"""An OpenAI-compatible stand-in: ``POST /v1/chat/completions`` as documented, scripted per test.

https://platform.openai.com/docs/api-reference/chat/create: the request carries ``model``,
``messages`` and ``response_format``; the answer is a ``chat.completion`` object with
``choices[0].message.content``, ``finish_reason`` and ``usage``; errors are
``{"error": {"message", "type", "code"}}`` with the HTTP status (429 with ``Retry-After``).
Each request takes the next step of ``script`` (then ``default``), so a test can say
"429, then a good answer", "slow", "malformed twice", or answer from the request itself.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any, Callable

from tests.support.http_standin import Reply, Request, StandinServer

Step = Callable[[dict[str, Any]], Reply]
_ids = itertools.count(1)


def answer(content: str | dict[str, Any], *, prompt_tokens: int = 120, completion_tokens: int = 80,
           finish_reason: str = "stop", delay: float = 0.0) -> Step:
    """A completed chat answer; a dict is sent as its JSON text."""
    text = content if isinstance(content, str) else json.dumps(content)

    def step(body: dict[str, Any]) -> Reply:
        return Reply(200, completion(body.get("model", "?"), text, prompt_tokens, completion_tokens, finish_reason),
                     delay=delay)

    return step


def respond_with(build: Callable[[dict[str, Any]], str | dict[str, Any]]) -> Step:
    """An answer computed from the request (a model that reads what it was sent)."""

    def step(body: dict[str, Any]) -> Reply:
        content = build(body)
        return answer(content)(body)

    return step


def error(status: int, message: str = "error", *, headers: dict[str, str] | None = None) -> Step:
    kind = {429: "rate_limit_exceeded", 400: "invalid_request_error"}.get(status, "server_error")

    def step(body: dict[str, Any]) -> Reply:
        return Reply(status, {"error": {"message": message, "type": kind, "code": kind}}, headers=dict(headers or {}))

    return step


def slow(delay: float) -> Step:
    """No answer before ``delay`` seconds (longer than the client's timeout in tests)."""
    return answer("{}", delay=delay)


def completion(model: str, content: str, prompt_tokens: int, completion_tokens: int, finish_reason: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-standin-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason,
             "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class OpenAIStandin(StandinServer):
    def __init__(self, script: list[Step] | None = None, *, default: Step | None = None) -> None:
        self.script = list(script or [])
        self.default = default or error(500, "no scripted answer left")
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        super().__init__(self._handle)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat requests received, in order."""
        return [r.json() for r in self.requests if r.path == "/v1/chat/completions"]

    def _handle(self, request: Request) -> Reply:
        if request.path != "/v1/chat/completions" or request.method != "POST":
            return Reply(404, {"error": {"message": f"no route {request.method} {request.path}", "type": "not_found"}})
        try:
            body = request.json()
        except ValueError:
            return error(400, "body is not JSON")({})
        if not isinstance(body, dict) or not body.get("messages") or not body.get("model"):
            return error(400, "model and messages are required")({})
        with self._lock:
            step = self.script.pop(0) if self.script else self.default
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            reply = step(body)
            if reply.delay:
                # hold the request open here, so in-flight counting sees the overlap
                self._stop.wait(reply.delay)
                reply.delay = 0.0
            return reply
        finally:
            with self._lock:
                self.in_flight -= 1


def quoting_model(body: dict[str, Any]) -> dict[str, Any]:
    """A 'model' that answers from the data block it was sent: the evidence reasoner's candidates,
    each quoting an anomaly's evidence line of its service, as a grounded model would."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    nonce = user.split("<<<INCIDENT DATA ")[1].split(">>>")[0]
    opening = f"\n<<<INCIDENT DATA {nonce}>>>\n"
    data = json.loads(user[user.index(opening) + len(opening): user.index(f"\n<<<END OF INCIDENT DATA {nonce}>>>")])
    candidates = data["candidate_causes"]
    hypotheses = []
    for h in candidates["hypotheses"][:3]:
        quoted = [a["evidence"][0] for a in data.get("anomalies", []) if a.get("service") == h["service"] and a["evidence"]]
        hypotheses.append({"cause": h["cause"], "confidence": h["confidence"], "evidence": quoted[:1] or h["evidence"][:1],
                           "category": h["category"], "service": h["service"], "fault_type": h["fault_type"]})
    return {"category": candidates["category"], "category_confidence": 0.8, "hypotheses": hypotheses,
            "remediation": [{"action": "Restart the failing service", "command": None,
                             "expected_outcome": "errors stop", "risk_level": "low"}]}
