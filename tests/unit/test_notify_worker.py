"""The worker's parts that need no database: its metrics, the schedule it picks, and no secret in httpx's logs."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from pipelines import metrics
from pipelines.notify.delivery import Attempt
from pipelines.notify.outbox import OutboxRow
from pipelines.notify.slack import SlackChannel
from pipelines.notify.worker import DeliveryWorker, _ScrubSecrets
from tests.support.http_standin import Reply, StandinServer
from tests.support.metrics_recorder import recording
from tests.unit.test_notify_messages import _message


def test_deliveries_and_backlog_are_recorded_by_channel_and_outcome() -> None:
    with recording() as calls:
        metrics.count_notification("slack", "delivered")
        metrics.count_notification("pagerduty", "rejected")
        metrics.set_outbox_backlog("slack", 0)
        metrics.set_outbox_backlog("webhook", 12)
        metrics.set_outbox_backlog("webhook", -1)  # nonsense: ignored
    assert calls == [
        ("rca_notifications_total", "inc", 1.0, {"channel": "slack", "outcome": "delivered"}),
        ("rca_notifications_total", "inc", 1.0, {"channel": "pagerduty", "outcome": "rejected"}),
        ("rca_notify_outbox_backlog", "set", 0.0, {"channel": "slack"}),
        ("rca_notify_outbox_backlog", "set", 12.0, {"channel": "webhook"}),
    ]


def _row(attempts: int, age: timedelta) -> OutboxRow:
    return OutboxRow(id=1, incident_id="i", channel="slack", event="trigger", message=_message(), attempts=attempts,
                     created_at=datetime.now(timezone.utc) - age)


@pytest.fixture
def worker() -> DeliveryWorker:
    return DeliveryWorker("postgresql://unused", {"slack": SlackChannel("https://hooks.slack.test/s")},
                          backoff_seconds=1.0, backoff_max_seconds=60.0, give_up_seconds=3600.0, rng=random.Random(3))


def test_a_retry_waits_the_backoff_or_the_receivers_retry_after_whichever_is_longer(worker: DeliveryWorker) -> None:
    status, wait = worker._next(_row(0, timedelta(seconds=1)), Attempt("retry", 503, "HTTP 503"))
    assert status == "pending" and 0.5 <= wait <= 1.0
    status, wait = worker._next(_row(0, timedelta(seconds=1)), Attempt("retry", 429, "HTTP 429", 45.0))
    assert status == "pending" and wait == 45.0
    status, wait = worker._next(_row(8, timedelta(seconds=1)), Attempt("retry", 429, "HTTP 429", 2.0))
    assert status == "pending" and 2.0 <= wait <= 60.0


def test_final_outcomes_and_giving_up(worker: DeliveryWorker) -> None:
    assert worker._next(_row(0, timedelta(0)), Attempt("delivered", 200, "ok")) == ("delivered", None)
    assert worker._next(_row(0, timedelta(0)), Attempt("rejected", 400, "HTTP 400")) == ("rejected", None)
    assert worker._next(_row(40, timedelta(hours=2)), Attempt("retry", None, "ConnectError")) == ("expired", None)


def test_httpx_request_logs_never_show_a_webhook_url(caplog: pytest.LogCaptureFixture) -> None:
    secret_path = "/services/T0/B0/topsecrettoken"
    with StandinServer(lambda r: Reply(200, "ok")) as server:
        url = server.url + secret_path
        scrubber = _ScrubSecrets([url])
        logger = logging.getLogger("httpx")
        logger.addFilter(scrubber)
        try:
            with caplog.at_level(logging.INFO, logger="httpx"):
                httpx.post(url, content=b"{}")
        finally:
            logger.removeFilter(scrubber)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "httpx")
    assert "HTTP Request: POST" in logged  # httpx did log the request ...
    assert "topsecrettoken" not in logged and "***" in logged  # ... without the secret
