"""The dead-letter publisher: a poison message goes to ``rca.dlq`` unchanged, with why, and is counted.

Built on :class:`~pipelines.streaming.producer.Publisher` (idempotent, ``acks=all``, a fresh
producer after a failure), so there is one producer implementation. A dead letter is retried
until the broker has it: the consumer that found it commits past it only afterwards, so a
broker outage delays dead letters but never loses one.

Headers say why: ``rca-dlq-reason`` (a short label, also the metric's label),
``rca-dlq-detail`` (at most 1,000 bytes), ``rca-dlq-source`` (``topic/partition/offset``) and
``rca-dlq-time``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Protocol

from pipelines import metrics
from pipelines.streaming.producer import Publisher
from pipelines.streaming.retry import backoff_seconds
from pipelines.streaming.topics import KafkaUnavailable

logger = logging.getLogger(__name__)

MAX_DETAIL_BYTES = 1000


class SourceRecord(Protocol):
    """What a dead letter needs of the consumed record (aiokafka's ``ConsumerRecord`` has it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def dead_letter_headers(record: SourceRecord, reason: str, detail: str) -> list[tuple[str, bytes]]:
    """The headers that say why ``record`` is a dead letter and where it came from."""
    return [
        ("rca-dlq-reason", reason.encode()),
        ("rca-dlq-detail", detail.encode("utf-8", "replace")[:MAX_DETAIL_BYTES]),
        ("rca-dlq-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ("rca-dlq-time", datetime.now(timezone.utc).isoformat().encode()),
    ]


class DeadLetters:
    """Sends poison messages to the dead-letter topic and counts them by reason."""

    def __init__(self, publisher: Publisher, topic: str) -> None:
        self._publisher = publisher
        self.topic = topic
        self.counts: dict[str, int] = {}
        self.last_error: str | None = None

    async def send(self, record: SourceRecord, reason: str, detail: str) -> None:
        """Write ``record`` unchanged to the DLQ with ``reason``; returns once the broker has it."""
        headers = dead_letter_headers(record, reason, detail)
        attempt = 0
        while True:
            try:
                await self._publisher.publish_records(self.topic, [(record.key, record.value)], headers=headers)
                break
            except KafkaUnavailable as error:
                self.last_error = f"DLQ: {error}"
                await asyncio.sleep(backoff_seconds(attempt))
                attempt += 1
        self.counts[reason] = self.counts.get(reason, 0) + 1
        metrics.count_dlq(reason)
        logger.warning("message %s/%d/%d sent to %s: %s: %s", record.topic, record.partition, record.offset,
                       self.topic, reason, detail[:200])

    async def stop(self) -> None:
        await self._publisher.stop()
