"""Publishing to the analyzer's topics: alerts keyed by fingerprint, log events and spans keyed by service.

Why ``publish`` returns only after the broker acknowledged
    ``POST /webhook/alertmanager`` answers 202 when :meth:`AlertPublisher.publish` returns,
    and Alertmanager forgets an alert once it got a 2xx. So the producer is idempotent with
    ``acks=all``, and ``publish`` waits for every record's acknowledgement; any failure or a
    timeout raises :class:`KafkaUnavailable`, the ingress answers 503 and Alertmanager sends
    the alert again. A record that was in fact written before the timeout is then written
    twice; the reader's incidents are idempotent by fingerprint and start time, so that
    duplicate never becomes a second incident (at-least-once, never lost).

The producer connects lazily: an ingress that starts while the broker is down comes up
anyway and answers 503 until the broker is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pipelines.streaming.topics import KafkaUnavailable, TopicNames, ensure_topics
from pipelines.schemas import Alert, LogEvent, Span
from pipelines.settings import Settings
from pipelines.tls import kafka_client_options

__all__ = ["AlertPublisher", "KafkaUnavailable", "LogPublisher", "Publisher", "SpanPublisher", "alert_record",
           "log_record", "span_record"]

logger = logging.getLogger(__name__)

Record = tuple[bytes | None, bytes | None]
"""(key, value) of one Kafka record."""

Headers = list[tuple[str, bytes]]

_JSON_HEADERS = [("content-type", b"application/json")]


def alert_record(alert: Alert) -> Record:
    """An alert as it travels on ``rca.alerts``: the Alert model's JSON, keyed by its identity."""
    return alert.identity().encode(), alert.model_dump_json(exclude_none=True).encode()


def log_record(event: LogEvent | dict[str, Any]) -> Record:
    """A log event as it travels on ``rca.logs``: LogEvent JSON, keyed by service (one partition per service)."""
    model = event if isinstance(event, LogEvent) else LogEvent.model_validate(event)
    key = model.service.encode() if model.service else None
    return key, model.model_dump_json(exclude_none=True).encode()


def span_record(span: Span) -> Record:
    """A span as this project's own producers send it on ``rca.spans``: Span JSON, keyed by service, so
    it lands on the partition number of its service's lines (the topics are co-partitioned)."""
    return span.service.encode(), span.model_dump_json().encode()


class Publisher:
    """An idempotent ``acks=all`` producer that writes records and waits until the broker has them all."""

    def __init__(
        self,
        bootstrap: str,
        *,
        partitions: int | None = 3,
        topics: TopicNames = TopicNames(),
        timeout_seconds: float = 10.0,
        linger_ms: int = 5,
        max_batch_bytes: int = 256 * 1024,
        compression: str | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``partitions``: create missing topics with that many on start (None: do not create topics).
        ``client_options``: aiokafka's security arguments (:func:`pipelines.tls.kafka_client_options`)."""
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.topics = topics
        self.timeout_seconds = timeout_seconds
        self._options: dict[str, Any] = {
            "linger_ms": linger_ms,
            "max_batch_size": max_batch_bytes,
            "compression_type": compression,
        }
        self.client_options: dict[str, Any] = dict(client_options or {})
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self.published = 0

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> "Publisher":
        if not settings.kafka_bootstrap:
            raise ValueError("RCA_KAFKA_BOOTSTRAP is not set: there is no Kafka broker to publish to")
        return cls(
            settings.kafka_bootstrap,
            partitions=settings.kafka_partitions,
            topics=TopicNames.from_settings(settings),
            client_options=kafka_client_options(settings),
            **options,
        )

    async def start(self) -> None:
        """Connect (and create missing topics); raise :class:`KafkaUnavailable` when the broker does not answer."""
        async with self._lock:
            if self._producer is not None:
                return
            try:
                await asyncio.wait_for(self._connect(), self.timeout_seconds)
            except asyncio.TimeoutError as error:
                raise KafkaUnavailable(
                    f"the Kafka broker at {self.bootstrap} did not answer within {self.timeout_seconds:g}s"
                ) from error

    async def _connect(self) -> None:
        if self.partitions is not None:
            await ensure_topics(self.bootstrap, self.partitions, self.topics, self.timeout_seconds, self.client_options)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=int(self.timeout_seconds * 1000),
            **self._options,
            **self.client_options,
        )
        try:
            await producer.start()
        except (KafkaError, OSError) as error:
            await producer.stop()
            raise KafkaUnavailable(
                f"cannot connect a producer to the Kafka broker at {self.bootstrap} ({type(error).__name__}: {error})"
            ) from error
        self._producer = producer

    async def stop(self) -> None:
        """Flush what is pending and disconnect; safe to call twice or before start."""
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), self.timeout_seconds)
            except (asyncio.TimeoutError, KafkaError) as error:
                logger.warning("Kafka producer did not stop cleanly: %s", error)

    async def publish_records(self, topic: str, records: Iterable[Record], headers: Headers | None = None) -> int:
        """Write ``records`` to ``topic`` and return once the broker acknowledged every one of them.

        ``headers`` go on every record (default: ``content-type: application/json``).

        Raises :class:`KafkaUnavailable` (naming the broker, the topic and the cause) on any
        failure or when ``timeout_seconds`` pass; some records may then have been written.
        """
        records = list(records)
        if not records:
            return 0
        if self._producer is None:
            await self.start()
        producer = self._producer
        assert producer is not None
        try:
            await asyncio.wait_for(
                self._send_all(producer, topic, records, _JSON_HEADERS if headers is None else headers),
                self.timeout_seconds,
            )
        except asyncio.TimeoutError as error:
            await self._discard(producer)
            raise KafkaUnavailable(
                f"the Kafka broker at {self.bootstrap} did not acknowledge {len(records)} record(s) on {topic} "
                f"within {self.timeout_seconds:g}s"
            ) from error
        except KafkaError as error:
            await self._discard(producer)
            raise KafkaUnavailable(
                f"publishing {len(records)} record(s) to {topic} at {self.bootstrap} failed: "
                f"{type(error).__name__}: {error}"
            ) from error
        self.published += len(records)
        return len(records)

    async def _discard(self, producer: AIOKafkaProducer) -> None:
        """Drop a producer after a failure, so the next call starts a fresh one.

        After a broker restart aiokafka's idempotent producer can keep failing with
        OutOfOrderSequenceNumber until it gets a new producer id; a new producer has one.
        """
        async with self._lock:
            if self._producer is producer:
                self._producer = None
        try:
            await asyncio.wait_for(producer.stop(), 2.0)
        except (asyncio.TimeoutError, KafkaError, OSError) as error:
            logger.debug("discarded Kafka producer did not stop cleanly: %s", error)

    @staticmethod
    async def _send_all(producer: AIOKafkaProducer, topic: str, records: Sequence[Record], headers: Headers) -> None:
        acknowledgements = [
            await producer.send(topic, value=value, key=key, headers=headers) for key, value in records
        ]
        await asyncio.gather(*acknowledgements)


class AlertPublisher(Publisher):
    """What the ingress uses: each alert onto ``rca.alerts``, keyed by its fingerprint."""

    async def publish(self, alerts: Sequence[Alert]) -> None:
        """Return only when the broker acknowledged every alert; else raise :class:`KafkaUnavailable`."""
        await self.publish_records(self.topics.alerts, (alert_record(alert) for alert in alerts))


class LogPublisher(Publisher):
    """Log events onto ``rca.logs`` keyed by service (tests, the benchmark, ``rca demo``)."""

    async def publish(self, events: Sequence[LogEvent | dict[str, Any]]) -> None:
        await self.publish_records(self.topics.logs, (log_record(event) for event in events))


class SpanPublisher(Publisher):
    """Spans onto ``rca.spans``, one a record, keyed by service (tests, the benchmark). An OpenTelemetry
    Collector sends OTLP/JSON batches instead, keyed as its exporter can (see the README's Kafka section)."""

    async def publish(self, spans: Sequence[Span]) -> None:
        await self.publish_records(self.topics.spans, (span_record(span) for span in spans))
