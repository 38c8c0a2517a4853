"""The Kafka reader against a real broker, with a plain idempotent callback in place of the app.

What is checked: alerts become incidents with the merged digests of the log lines and the spans of
their window and of the window before; poison messages go
to the DLQ with their reason and the next good message is processed; the reader records its
lag and dropped lines as metrics on its own; a slow pipeline pauses consumption instead of
buffering; a failing pipeline is retried and nothing is committed past an unstored alert; a
broker restart while alerts flow ends with exactly one incident per alert.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from anomaly.digest import Digest
from pipelines.schemas import Alert, IncidentContext, Telemetry
from pipelines.streaming.producer import AlertPublisher, KafkaUnavailable, LogPublisher, Publisher
from pipelines.streaming.reader import KafkaReader
from pipelines.streaming.topics import TopicNames
from tests.integration.kafka_support import (  # noqa: F401 - fixtures
    Broker,
    eventually,
    isolated_settings,
    kafka_bootstrap,
    private_broker,
    read_topic,
)
from tests.support.metrics_recorder import recording
from tests.support.otlp import otlp_batch

pytestmark = pytest.mark.kafka


class IncidentBook:
    """Stands in for the app: incidents idempotent by fingerprint and start time, like the store."""

    def __init__(self) -> None:
        self.incidents: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls = 0
        self.fail_next = 0
        self.gate: asyncio.Event | None = None
        self.running = 0
        self.max_running = 0

    async def process(self, alert: dict[str, Any], context: IncidentContext, delivery: str) -> dict[str, Any]:
        self.calls += 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail_next > 0:
                self.fail_next -= 1
                raise ConnectionError("database unavailable")
            key = (alert["fingerprint"], alert["timestamp"])
            created = key not in self.incidents
            if created:
                baseline = context.baseline or Telemetry()
                self.incidents[key] = {"alert": alert, "logs": context.window_digest,
                                       "spans": [s.model_dump() for s in context.window.spans],
                                       "baseline": {"logs": context.baseline_digest,
                                                    "spans": [s.model_dump() for s in baseline.spans]},
                                       "degraded_reasons": context.degraded_reasons, "id": f"inc-{len(self.incidents)}"}
            return {"incident_id": self.incidents[key]["id"], "created": created, "analyzed": created, "status": "open"}
        finally:
            self.running -= 1

    def fingerprints(self) -> set[str]:
        return {fingerprint for fingerprint, _ in self.incidents}


def lines_of(digest: Digest) -> list[str]:
    """The exemplar lines a digest kept, sorted (every line, when each is its own template)."""
    return sorted(sample for template in digest.templates.values() for sample in template.samples)


def alert(index: int, at: datetime | None = None, service: str = "checkout") -> Alert:
    return Alert(
        name="HighErrorRate",
        severity="critical",
        timestamp=at or datetime.now(timezone.utc),
        labels={"service": service, "alertname": "HighErrorRate"},
        fingerprint=f"fp-{index:05d}",
    )


async def test_alerts_become_incidents_with_the_logs_of_their_window_and_the_window_before(kafka_bootstrap: str) -> None:
    settings = isolated_settings(kafka_bootstrap, context_window_seconds=60, context_wait_seconds=1.0)
    topics = TopicNames.from_settings(settings)
    book = IncidentBook()
    reader = KafkaReader(settings, process=book.process)
    logs, alerts = LogPublisher(kafka_bootstrap, topics=topics), AlertPublisher(kafka_bootstrap, topics=topics)
    await reader.start()
    try:
        fired = datetime.now(timezone.utc)
        await logs.publish(
            [{"message": "db pool exhausted", "service": "db", "level": "ERROR",
              "timestamp": (fired - timedelta(seconds=10)).isoformat()},
             {"message": "GET /cart 500", "service": "checkout", "timestamp": (fired - timedelta(seconds=5)).isoformat()},
             {"message": "the window before", "service": "db", "timestamp": (fired - timedelta(seconds=90)).isoformat()},
             {"message": "too old to matter", "service": "db", "timestamp": (fired - timedelta(seconds=600)).isoformat()}]
        )
        await alerts.publish([alert(1, fired)])
        await eventually(lambda: len(book.incidents) == 1, "the alert stored as an incident")
        (incident,) = book.incidents.values()
        assert incident["alert"]["name"] == "HighErrorRate"
        assert lines_of(incident["logs"]) == ["GET /cart 500", "db pool exhausted"]
        assert incident["logs"].services == {"checkout": 1, "db": 1}
        assert lines_of(incident["baseline"]["logs"]) == ["the window before"]
        assert incident["degraded_reasons"] == []
        await eventually(lambda: reader.counts["alerts_processed"] == 1, "processed counted")
        # read from Kafka (the reader starts two windows back) but older than any context it can serve
        assert (await reader.stats())["dropped"] == {"older_than_retention": 1}
    finally:
        await reader.stop()
        await logs.stop()
        await alerts.stop()


async def test_a_reader_started_with_alerts_waiting_takes_their_context_only_once_the_lines_are_read(
        kafka_bootstrap: str) -> None:
    """A restarted reader finds alerts already in rca.alerts: it reads them at once, while its log
    member is still joining the group and re-reading the backlog. The context waits for the lines
    written before the alert instead of being taken empty."""
    settings = isolated_settings(kafka_bootstrap, context_window_seconds=60, context_wait_seconds=0.0)
    topics = TopicNames.from_settings(settings)
    book = IncidentBook()
    logs, alerts = LogPublisher(kafka_bootstrap, topics=topics), AlertPublisher(kafka_bootstrap, topics=topics)
    fired = datetime.now(timezone.utc)
    count = 50_000
    try:
        await logs.publish([{"message": f"GET /cart/{i} 502 upstream reset", "service": f"svc-{i % 7}",
                             "timestamp": (fired - timedelta(seconds=20 - i / count * 19)).isoformat()}
                            for i in range(count)])
        await alerts.publish([alert(1, fired)])
    finally:
        await logs.stop()
        await alerts.stop()
    reader = KafkaReader(settings, process=book.process)
    await reader.start()
    try:
        await eventually(lambda: len(book.incidents) == 1, "the waiting alert stored as an incident", within=90)
        (incident,) = book.incidents.values()
        assert incident["logs"].lines == count
        assert incident["degraded_reasons"] == []
    finally:
        await reader.stop()


async def test_alerts_get_the_spans_of_their_window_from_otlp_batches(kafka_bootstrap: str) -> None:
    """An OpenTelemetry Collector's Kafka exporter (otlp_json) writes batches to rca.spans; the alert's
    context holds the spans of its window, its baseline those of the window before; a batch with no
    usable span goes to the DLQ."""
    settings = isolated_settings(kafka_bootstrap, context_window_seconds=60, context_wait_seconds=1.0)
    topics = TopicNames.from_settings(settings)
    book = IncidentBook()
    reader = KafkaReader(settings, process=book.process)
    raw, alerts = Publisher(kafka_bootstrap, topics=topics), AlertPublisher(kafka_bootstrap, topics=topics)
    await reader.start()
    try:
        fired = datetime.now(timezone.utc)
        t = fired.timestamp()
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        batch = otlp_batch({
            "gateway": [{"trace": trace, "span": "00f067aa0ba902b7", "name": "GET /cart", "start": t - 5, "ms": 40.0}],
            "cart": [{"trace": trace, "span": "00f067aa0ba902b8", "parent": "00f067aa0ba902b7", "name": "CartController.get",
                      "start": t - 5, "ms": 35.0, "error": True},
                     {"trace": "ab" * 16, "span": "cd" * 8, "name": "the window before", "start": t - 90, "ms": 1.0},
                     {"trace": "ab" * 16, "span": "ce" * 8, "name": "too old to matter", "start": t - 600, "ms": 1.0}],
        })
        await raw.publish_records(topics.spans, [(b"gateway", batch), (b"x", b'{"resourceSpans": []}')])
        await alerts.publish([alert(1, fired)])
        await eventually(lambda: len(book.incidents) == 1, "the alert stored as an incident")
        (incident,) = book.incidents.values()
        got = {(s["service"], s["operation"], s["parent_id"], s["error"]) for s in incident["spans"]}
        assert got == {("gateway", "GET /cart", None, False), ("cart", "CartController.get", "00f067aa0ba902b7", True)}
        assert [s["operation"] for s in incident["baseline"]["spans"]] == ["the window before"]
        dead = await read_topic(kafka_bootstrap, topics.dlq, expected=1)
        assert dict(dead[0].headers)["rca-dlq-reason"] == b"invalid" and dead[0].value == b'{"resourceSpans": []}'
        stats = await reader.stats()
        # the span older than the history an alert can ask for is counted, not held
        assert stats["spans_consumed"] == 2 and stats["spans_held"] == 3 and stats["dlq"] == {"invalid": 1}
        assert stats["spans_dropped"] == {"older_than_retention": 1}
        assert f"{topics.spans}/0" in stats["lag"]
    finally:
        await reader.stop()
        await raw.stop()
        await alerts.stop()


async def test_poison_messages_go_to_the_dlq_and_the_next_good_message_is_processed(kafka_bootstrap: str) -> None:
    settings = isolated_settings(kafka_bootstrap, context_wait_seconds=0.0)
    topics = TopicNames.from_settings(settings)
    book = IncidentBook()
    reader = KafkaReader(settings, process=book.process)
    raw = Publisher(kafka_bootstrap, topics=topics)
    await reader.start()
    try:
        await raw.publish_records(topics.alerts, [(b"same", b"\xff\x00 not json"), (b"same", b'{"name": "no time"}')])
        await raw.publish_records(topics.alerts, [(b"same", alert(7).model_dump_json().encode())])
        await raw.publish_records(topics.logs, [(b"svc", b"[1, 2, 3]"), (b"svc", b'{"message": "fine", "service": "svc"}')])
        await eventually(lambda: book.fingerprints() == {"fp-00007"}, "the good alert after the poison ones")
        dead = await read_topic(kafka_bootstrap, topics.dlq, expected=3)
        reasons = sorted(dict(record.headers)["rca-dlq-reason"].decode() for record in dead)
        assert reasons == ["invalid", "invalid", "undecodable"]
        assert {record.value for record in dead} == {b"\xff\x00 not json", b'{"name": "no time"}', b"[1, 2, 3]"}
        assert all(dict(record.headers)["rca-dlq-detail"] for record in dead)
        await eventually(lambda: reader.digests.stats().lines == 1, "the good log event mined")
        stats = await reader.stats()
        assert stats["dlq"] == {"undecodable": 1, "invalid": 2}
        assert stats["state"] == "running"
    finally:
        await reader.stop()
        await raw.stop()


async def test_the_reader_records_its_lag_and_buffer_drops_without_being_asked(kafka_bootstrap: str) -> None:
    """Nobody calls stats() (no /health): the lag gauge and the dropped-lines and dropped-spans counters
    are recorded anyway, each drop once."""
    settings = isolated_settings(kafka_bootstrap, max_line_bytes=1024)
    topics = TopicNames.from_settings(settings)
    raw = Publisher(kafka_bootstrap, topics=topics)
    with recording() as calls:
        reader = KafkaReader(settings, process=IncidentBook().process)
        await reader.start()
        try:
            oversized = json.dumps({"message": "x" * 2000, "service": "svc"}).encode()
            await raw.publish_records(topics.logs, [(b"svc", oversized), (b"svc", b'{"message": "fine", "service": "svc"}')])
            last_week = datetime.now(timezone.utc).timestamp() - 7 * 86_400
            stale = otlp_batch({"svc": [{"trace": "ab" * 16, "span": "cd" * 8, "name": "GET /", "start": last_week, "ms": 1.0}]})
            await raw.publish_records(topics.spans, [(b"svc", stale)])
            dropped = ("rca_log_lines_dropped_total", "inc", 1.0, {"reason": "oversized"})
            spans_dropped = ("rca_spans_dropped_total", "inc", 1.0, {"reason": "older_than_retention"})
            await eventually(lambda: dropped in calls, "the oversized event counted as dropped", within=90)
            await eventually(lambda: spans_dropped in calls, "the span older than retention counted", within=90)

            def caught_up() -> set[str]:
                return {tags["partition"] for name, _, value, tags in calls
                        if name == "rca_kafka_consumer_lag_messages" and tags["topic"] == topics.logs and value == 0}

            await eventually(lambda: caught_up() == {"0", "1", "2"}, "every log partition's lag recorded as 0", within=90)
            reader.record_metrics()  # a drop is counted once, not again at every report
            assert [c for c in calls if c[0] == "rca_log_lines_dropped_total"] == [dropped]
            assert [c for c in calls if c[0] == "rca_spans_dropped_total"] == [spans_dropped]
        finally:
            await reader.stop()
            await raw.stop()


async def test_a_slow_pipeline_pauses_consumption_instead_of_buffering(kafka_bootstrap: str) -> None:
    settings = isolated_settings(kafka_bootstrap, context_wait_seconds=0.0, max_inflight_analyses=2)
    topics = TopicNames.from_settings(settings)
    book = IncidentBook()
    book.gate = asyncio.Event()
    reader = KafkaReader(settings, process=book.process, max_pending=5)
    alerts = AlertPublisher(kafka_bootstrap, topics=topics)
    await reader.start()
    try:
        await alerts.publish([alert(i) for i in range(40)])
        await eventually(lambda: reader.state == "paused", "consumption paused")
        stats = await reader.stats()
        assert stats["in_flight"] == 5
        assert stats["alerts_consumed"] == 5
        await eventually(lambda: book.running == 2, "two analyses running (max_inflight_analyses)")
        assert reader.counts["alerts_consumed"] == 5
        book.gate.set()
        await eventually(lambda: len(book.incidents) == 40, "every alert stored once the pipeline catches up")
        assert book.max_running <= 2
        assert reader.counts["pauses"] >= 1
    finally:
        await reader.stop()
        await alerts.stop()


async def test_failures_are_retried_and_uncommitted_alerts_are_redelivered(kafka_bootstrap: str) -> None:
    settings = isolated_settings(kafka_bootstrap, context_wait_seconds=0.0)
    topics = TopicNames.from_settings(settings)
    book = IncidentBook()
    book.fail_next = 2
    alerts = AlertPublisher(kafka_bootstrap, topics=topics)
    first = KafkaReader(settings, process=book.process)
    await first.start()
    try:
        await alerts.publish([alert(1)])
        await eventually(lambda: len(book.incidents) == 1, "stored after the database came back")
        assert first.counts["process_retries"] == 2
        book.gate = asyncio.Event()  # the next alerts hang: the reader dies before storing them
        await alerts.publish([alert(i) for i in range(2, 12)])
        await eventually(lambda: first.counts["alerts_consumed"] == 11, "the hanging alerts taken")
    finally:
        await first.stop()
    book.gate = None
    second = KafkaReader(settings, process=book.process)
    await second.start()
    try:
        await eventually(lambda: len(book.incidents) == 11, "the unstored alerts redelivered to the next reader")
        assert book.fingerprints() == {f"fp-{i:05d}" for i in range(1, 12)}
    finally:
        await second.stop()
        await alerts.stop()


async def test_broker_restart_while_alerts_flow_ends_with_one_incident_per_alert(private_broker: Broker) -> None:
    bootstrap = private_broker.bootstrap
    settings = isolated_settings(bootstrap, context_wait_seconds=0.0)
    topics = TopicNames.from_settings(settings)
    book = IncidentBook()
    reader = KafkaReader(settings, process=book.process)
    publisher = AlertPublisher(bootstrap, topics=topics, timeout_seconds=3.0)
    total = 300
    refused = 0
    fired = [alert(index) for index in range(total)]

    async def alertmanager() -> None:
        """Sends each alert until it is accepted, as Alertmanager retries a webhook that got a 503."""
        nonlocal refused
        for index in range(total):
            while True:
                try:
                    await publisher.publish([fired[index]])
                    break
                except KafkaUnavailable:
                    refused += 1
                    await asyncio.sleep(0.5)
            await asyncio.sleep(0.01)

    await reader.start()
    try:
        sending = asyncio.create_task(alertmanager())
        await eventually(lambda: len(book.incidents) >= 50, "alerts flowing before the restart")
        await asyncio.to_thread(private_broker.stop)
        await asyncio.sleep(2)
        await asyncio.to_thread(private_broker.start)
        await asyncio.wait_for(sending, 300)
        await eventually(lambda: len(book.incidents) == total, "every alert stored after the restart", within=180)
        assert book.fingerprints() == {f"fp-{i:05d}" for i in range(total)}
        assert len(book.incidents) == total  # redeliveries found their incident: none twice
    finally:
        await reader.stop()
        await publisher.stop()
