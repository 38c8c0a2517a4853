"""Streaming digests against a real broker: what the reader counts is what Kafka holds, once.

* A reader stopped while lines flow (as a killed actor stops) and a new one started: the new one
  rebuilds its digests from Kafka (two windows back by record time) and the next alert's
  context counts every line of the window exactly once.
* A broker restart while lines flow (a broker of this module alone, never the shared one): the
  alert's context counts exactly the records the topic holds, none lost, none twice.

The process callback stands in for the app (what it receives is the reader's ``IncidentContext``).
Every wait is a deadline on an outcome; no assertion is about time.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipelines.schemas import Alert, IncidentContext
from pipelines.settings import Settings
from pipelines.streaming.producer import AlertPublisher, KafkaUnavailable, LogPublisher
from pipelines.streaming.reader import KafkaReader
from pipelines.streaming.topics import TopicNames, ensure_topics
from tests.integration.kafka_support import (  # noqa: F401 - fixtures
    Broker,
    eventually,
    isolated_settings,
    kafka_bootstrap,
    private_broker,
)

pytestmark = pytest.mark.kafka


class Contexts:
    """Keeps the context of each alert the reader hands over."""

    def __init__(self) -> None:
        self.got: dict[str, IncidentContext] = {}

    async def process(self, alert: dict[str, Any], context: IncidentContext, delivery: str) -> dict[str, Any]:
        created = alert["fingerprint"] not in self.got
        self.got.setdefault(alert["fingerprint"], context)
        return {"incident_id": alert["fingerprint"], "created": created, "analyzed": created, "status": "open"}


def line(index: int, at: datetime) -> dict[str, Any]:
    service = f"svc-{index % 5}"
    level = "ERROR" if index % 10 == 0 else "INFO"
    return {"message": f"request {index} to {service} took {index % 97} ms", "service": service,
            "level": level, "timestamp": at.isoformat()}


async def records_in(bootstrap: str, topics: TopicNames) -> int:
    """How many records the log topic holds (every partition starts at offset 0 here)."""
    found = await ensure_topics(bootstrap, 3, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topics.logs, p) for p in range(found.partitions[topics.logs])]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def alert_context(settings: Settings, contexts: Contexts, fired: datetime, fingerprint: str) -> IncidentContext:
    alerts = AlertPublisher(settings.kafka_bootstrap or "", topics=TopicNames.from_settings(settings))
    try:
        await alerts.publish([Alert(name="HighErrorRate", severity="critical", timestamp=fired,
                                    labels={"service": "svc-0"}, fingerprint=fingerprint)])
    finally:
        await alerts.stop()
    await eventually(lambda: fingerprint in contexts.got, "the alert's context handed over", within=90)
    return contexts.got[fingerprint]


async def test_a_reader_stopped_while_lines_flow_is_rebuilt_from_kafka_and_counts_each_line_once(
    kafka_bootstrap: str,
) -> None:
    settings = isolated_settings(kafka_bootstrap, context_window_seconds=300, context_wait_seconds=1.0)
    topics = TopicNames.from_settings(settings)
    contexts = Contexts()
    logs = LogPublisher(kafka_bootstrap, topics=topics)
    start = datetime.now(timezone.utc) - timedelta(seconds=60)
    total = 3000
    first = KafkaReader(settings, process=contexts.process)
    await first.start()
    second = KafkaReader(settings, process=contexts.process)
    try:
        for batch in range(0, total, 250):
            await logs.publish([line(i, start + timedelta(seconds=i * 50 / total)) for i in range(batch, batch + 250)])
            if batch == 1000:
                await eventually(lambda: first.digests.consumed > 0, "the first reader consuming")
                await first.stop()  # gone mid-stream, as a killed actor; its digests with it
                await second.start()
        await eventually(lambda: second.digests.consumed == total, "the new reader read every line again")
        context = await alert_context(settings, contexts, datetime.now(timezone.utc), "fp-rebuilt")
        assert context.window_digest is not None
        assert context.window_digest.lines == total
        assert context.window_digest.services == {f"svc-{s}": total // 5 for s in range(5)}
        assert context.degraded_reasons == []
    finally:
        await first.stop()
        await second.stop()
        await logs.stop()


async def test_broker_restart_while_lines_flow_counts_every_record_once(private_broker: Broker) -> None:
    bootstrap = private_broker.bootstrap
    settings = isolated_settings(bootstrap, context_window_seconds=600, context_wait_seconds=1.0)
    topics = TopicNames.from_settings(settings)
    contexts = Contexts()
    reader = KafkaReader(settings, process=contexts.process)
    logs = LogPublisher(bootstrap, topics=topics, timeout_seconds=3.0)
    sent = 0
    refused = 0

    async def ship() -> None:
        """A shipper that retries a batch the broker did not acknowledge (so a batch may land twice)."""
        nonlocal sent, refused
        for batch in range(60):
            events = [line(batch * 50 + i, datetime.now(timezone.utc)) for i in range(50)]
            while True:
                try:
                    await logs.publish(events)
                    break
                except KafkaUnavailable:
                    refused += 1
                    await asyncio.sleep(0.5)
            sent += len(events)
            await asyncio.sleep(0.1)

    await reader.start()
    try:
        shipping = asyncio.create_task(ship())
        await eventually(lambda: reader.digests.consumed >= 500, "lines flowing before the restart")
        await asyncio.to_thread(private_broker.stop)
        await asyncio.sleep(2)
        await asyncio.to_thread(private_broker.start)
        await asyncio.wait_for(shipping, 300)
        held = await records_in(bootstrap, topics)
        assert refused > 0, "the broker restarted after the lines stopped flowing: nothing was tested"
        assert held >= sent == 3000  # a retried batch may be written twice; none is missing
        await eventually(lambda: reader.digests.consumed == held, "the reader caught up after the restart",
                         within=120)
        context = await alert_context(settings, contexts, datetime.now(timezone.utc), "fp-restart")
        assert context.window_digest is not None and context.window_digest.lines == held
        assert reader.digests.dropped() == {}
    finally:
        await reader.stop()
        await logs.stop()
