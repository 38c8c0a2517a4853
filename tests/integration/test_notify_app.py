"""An incident analyzed through the webhook path reaches Slack, PagerDuty and a signed webhook, and resolves on all.

A second Serve application (``rca-notify``, route ``/notify-test``) of the same ``build_app``
runs in the session's Ray cluster next to the session app, configured as in production: the
Slack webhook URL and the HMAC key from the environment's settings, the PagerDuty routing key
from a file (``RCA_PAGERDUTY_ROUTING_KEY_FILE``). Its ingress runs the delivery worker; the
receivers are the local stand-ins (Slack's and PagerDuty's documented APIs) and a receiver
that checks the webhook's signature as ``pipelines.notify.webhook.verify`` says to.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from pipelines.notify.webhook import verify
from tests.conftest import AUTH_SETTINGS, WEBHOOK_TOKEN
from tests.support.http_standin import Reply, Request, StandinServer
from tests.support.pagerduty_standin import PagerDutyStandin
from tests.support.slack_standin import SlackStandin, unavailable

pytestmark = [pytest.mark.serve]

APP = "rca-notify"
ROUTE = "/notify-test"
ROUTING_KEY = "R0RCANOTIFYAPPROUTINGKEY0000001"
HMAC_KEY = "notify-test-hmac-key-" + uuid.uuid4().hex
T = TypeVar("T")


class SignedReceiver(StandinServer):
    """A generic webhook receiver: 401 unless the signature and timestamp verify; keeps what it accepted."""

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.refused: list[str] = []
        super().__init__(self._handle)

    def _handle(self, request: Request) -> Reply:
        try:
            verify(HMAC_KEY, request.headers, request.body)
        except ValueError as exc:
            self.refused.append(str(exc))
            return Reply(401, {"error": str(exc)})
        self.accepted.append(request.json() | {"delivery": request.headers["x-rca-delivery"]})
        return Reply(204)


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[SlackStandin, PagerDutyStandin, SignedReceiver]]:
    # Slack is unavailable for its first answer: the worker retries and nothing is lost.
    with SlackStandin(script=[unavailable()]) as slack, PagerDutyStandin(ROUTING_KEY) as pagerduty, \
            SignedReceiver() as hook:
        yield slack, pagerduty, hook


@pytest.fixture(scope="module")
def notify_app(serve_app: str, database_url: str, data_dir: Path, tmp_path_factory: pytest.TempPathFactory,
               receivers: tuple[SlackStandin, PagerDutyStandin, SignedReceiver]) -> Iterator[str]:
    from ray import serve

    from pipelines.app import build_app
    from pipelines.settings import Settings

    slack, pagerduty, hook = receivers
    key_file = tmp_path_factory.mktemp("notify-secrets") / "pagerduty-routing-key"
    key_file.write_text(ROUTING_KEY + "\n")
    settings = Settings(
        database_url=database_url, data_dir=data_dir, summarizer_replicas=1, context_wait_seconds=0.0,
        public_url="https://rca.example.test",
        slack_webhook_url=slack.webhook_url, pagerduty_routing_key_file=key_file,
        pagerduty_events_url=pagerduty.events_url, notify_webhook_url=hook.url + "/hooks/rca",
        notify_webhook_secret=HMAC_KEY, notify_backoff_seconds=0.2, notify_poll_seconds=0.2,
        **AUTH_SETTINGS,
    )
    serve.run(build_app(settings), name=APP, route_prefix=ROUTE,
              logging_config={"enable_access_log": False, "log_level": "WARNING"})
    try:
        yield serve_app + ROUTE
    finally:
        serve.delete(APP)


def wait_for(what: str, probe: Callable[[], T | None], within: float = 120.0) -> T:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"never happened: {what}")


def _webhook(service: str, fingerprint: str, status: str) -> dict[str, Any]:
    alert = {"status": status, "labels": {"alertname": "HighErrorRate", "service": service, "severity": "critical"},
             "annotations": {"description": "5xx ratio over 5%"}, "startsAt": "2025-05-01T10:00:00Z",
             "endsAt": "2025-05-01T10:12:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
             "fingerprint": fingerprint}
    return {"version": "4", "status": status, "receiver": "rca", "groupKey": "{}", "alerts": [alert]}


def test_a_webhook_incident_reaches_slack_pagerduty_and_the_signed_webhook_and_resolves_on_all(
    notify_app: str, receivers: tuple[SlackStandin, PagerDutyStandin, SignedReceiver], auth_headers: Callable[..., dict]
) -> None:
    slack, pagerduty, hook = receivers
    service, fingerprint = f"svc-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:16]
    alertmanager = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    with httpx.Client(base_url=notify_app, timeout=60) as client:
        answer = client.post("/webhook/alertmanager", json=_webhook(service, fingerprint, "firing"), headers=alertmanager)
        assert answer.status_code == 202, answer.text

        def analyzed() -> dict | None:
            items = client.get("/api/incidents", params={"service": service}, headers=auth_headers("viewer")).json()["items"]
            return items[0] if items and items[0]["analysis"] else None

        incident = wait_for("the incident analyzed", analyzed)
        incident_id = incident["id"]
        triggered = wait_for("the trigger on PagerDuty", lambda: pagerduty.alerts.get(incident_id) == "triggered")
        assert triggered
        wait_for("the Slack message", lambda: [m for m in slack.messages if incident_id in json.dumps(m)])
        wait_for("the signed webhook", lambda: [m for m in hook.accepted if m["notification"]["incident_id"] == incident_id])

        answer = client.post("/webhook/alertmanager", json=_webhook(service, fingerprint, "resolved"), headers=alertmanager)
        assert answer.status_code == 202, answer.text
        wait_for("the resolve on PagerDuty", lambda: pagerduty.alerts.get(incident_id) == "resolved")
        wait_for("the resolve on Slack", lambda: len([m for m in slack.messages if incident_id in json.dumps(m)]) == 2)
        wait_for("the resolve on the webhook",
                 lambda: [m for m in hook.accepted if m["notification"]["incident_id"] == incident_id
                          and m["event"] == "resolve"])

    trigger = next(e for e in pagerduty.events if e["dedup_key"] == incident_id and e["event_action"] == "trigger")
    analysis = incident["analysis"]
    assert trigger["payload"]["summary"].startswith("HighErrorRate: ") and trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["source"] == service
    assert trigger["payload"]["custom_details"]["top_cause"] == analysis["hypotheses"][0]["cause"][:500]
    assert trigger["links"][0]["href"] == f"https://rca.example.test/ui/incidents/{incident_id}"
    assert [e["event_action"] for e in pagerduty.events if e["dedup_key"] == incident_id] == ["trigger", "resolve"]

    messages = [m for m in slack.messages if incident_id in json.dumps(m)]
    assert [m["blocks"][0]["text"]["text"].split(":")[0] for m in messages] == ["Critical", "Resolved"]
    assert f"*Category:* {analysis['classification']['category']}" in json.dumps(messages[0])
    ours = [m for m in hook.accepted if m["notification"]["incident_id"] == incident_id]
    assert [m["event"] for m in ours] == ["trigger", "resolve"] and not hook.refused
    # Slack's first answer was a 503: one retry, and still one message per incident state.
    assert len([r for r in slack.requests if incident_id in r.body.decode()]) == 3
    # What was told where, and every attempt, through the API; the secrets never appear in what it returns.
    with httpx.Client(base_url=notify_app, timeout=30, headers=auth_headers("viewer")) as client:
        told = client.get(f"/api/incidents/{incident_id}/notifications")
        assert told.status_code == 200, told.text
        by = {(d["channel"], d["event"]): d for d in told.json()}
        assert sorted(by) == sorted((c, e) for c in ("slack", "pagerduty", "webhook") for e in ("trigger", "resolve"))
        assert all(d["status"] == "delivered" for d in by.values())
        first_slack = by[("slack", "trigger")]["attempts"]
        assert [(a["outcome"], a["http_status"]) for a in first_slack] == [("retry", 503), ("delivered", 200)]
        assert client.get(f"/api/incidents/{uuid.uuid4()}/notifications").status_code == 404
        shown = told.text + client.get(f"/api/incidents/{incident_id}").text + client.get("/health").text
    assert ROUTING_KEY not in shown and HMAC_KEY not in shown and slack.webhook_url not in shown
