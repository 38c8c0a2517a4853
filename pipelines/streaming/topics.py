"""The analyzer's Kafka topics, created once with the partition count the settings ask for.

Why the topics are created explicitly
    A broker may auto-create a topic on first use, but with *its* default partition count
    and retention. The partition count bounds how many reader replicas can share the work,
    so it is a setting of ours (``RCA_KAFKA_PARTITIONS``), and the producer and the reader
    both call :func:`ensure_topics` before they start: whoever comes first creates them.

``python -m pipelines.streaming.topics --bootstrap 127.0.0.1:9092`` (what ``scripts/kafka
topics`` runs) does the same from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from pipelines.settings import Settings
from pipelines.tls import kafka_client_options, kafka_connect_problem

logger = logging.getLogger(__name__)

# rca.dlq keeps poison messages for a week so someone can look at them; the others a day.
_RETENTION_MS = {"alerts": 7 * 86_400_000, "logs": 86_400_000, "spans": 86_400_000, "dlq": 7 * 86_400_000}


class KafkaUnavailable(RuntimeError):
    """The broker could not be reached or did not acknowledge in time; the message says which and where."""


@dataclass(frozen=True)
class TopicNames:
    """The topic names, from the settings (one place, so producer and reader agree)."""

    alerts: str = "rca.alerts"
    logs: str = "rca.logs"
    dlq: str = "rca.dlq"
    spans: str = "rca.spans"

    @classmethod
    def from_settings(cls, settings: Settings) -> "TopicNames":
        return cls(settings.kafka_alerts_topic, settings.kafka_logs_topic, settings.kafka_dlq_topic, settings.kafka_spans_topic)

    def all(self) -> tuple[str, ...]:
        return (self.alerts, self.logs, self.dlq, self.spans)


@dataclass(frozen=True)
class TopicsResult:
    """What :func:`ensure_topics` did: which topics it created and which already existed."""

    created: tuple[str, ...]
    partitions: dict[str, int]
    """topic -> its partition count (an existing topic is never altered, so it may differ)."""


async def ensure_topics(
    bootstrap: str,
    partitions: int,
    names: TopicNames = TopicNames(),
    timeout_seconds: float = 15.0,
    client_options: Mapping[str, Any] | None = None,
) -> TopicsResult:
    """Create the missing topics with ``partitions`` partitions (replication factor 1 on one broker).

    An existing topic is left as it is (its partition count is reported); raises
    :class:`KafkaUnavailable` when the broker cannot be reached within ``timeout_seconds``; over TLS
    its message says which broker refused the handshake or the SASL login, and why.
    ``client_options``: aiokafka's security arguments (:func:`pipelines.tls.kafka_client_options`).
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    options = dict(client_options or {})
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_seconds * 1000), **options)
    try:
        try:
            await asyncio.wait_for(admin.start(), timeout_seconds)
        except (asyncio.TimeoutError, KafkaConnectionError, OSError) as error:
            problem = await kafka_connect_problem(bootstrap, options) if options.get("ssl_context") else None
            raise KafkaUnavailable(
                problem or f"cannot reach the Kafka broker at {bootstrap} ({type(error).__name__}: {error}); "
                "is it running? (scripts/kafka start)"
            ) from error
        return await _create_missing(admin, partitions, names, timeout_seconds)
    finally:
        await admin.close()


async def _create_missing(
    admin: AIOKafkaAdminClient, partitions: int, names: TopicNames, timeout_seconds: float
) -> TopicsResult:
    existing = set(await admin.list_topics())
    wanted = {names.alerts: "alerts", names.logs: "logs", names.dlq: "dlq", names.spans: "spans"}
    missing = [
        NewTopic(
            name=topic,
            num_partitions=partitions,
            replication_factor=1,
            topic_configs={"retention.ms": str(_RETENTION_MS[kind])},
        )
        for topic, kind in wanted.items()
        if topic not in existing
    ]
    created: list[str] = []
    if missing:
        try:
            response = await admin.create_topics(missing, timeout_ms=int(timeout_seconds * 1000))
        except TopicAlreadyExistsError:  # another process won the race
            response = None
        for entry in getattr(response, "topic_errors", []) or []:
            topic, code = entry[0], entry[1]
            if code == 0:
                created.append(topic)
            elif code != TopicAlreadyExistsError.errno:
                raise KafkaError(f"creating topic {topic} failed with Kafka error code {code}: {entry[2:]}")
        if created:
            logger.info("created Kafka topics %s with %d partitions", created, partitions)
    counts: dict[str, int] = {topic: partitions for topic in created}
    for description in await admin.describe_topics([t for t in wanted if t not in created]):
        counts[description["topic"]] = len(description.get("partitions", []))
    return TopicsResult(created=tuple(created), partitions=counts)


def main(argv: list[str] | None = None) -> int:
    """Command line: create the topics on a running broker and say what was done."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.streaming.topics", description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="host:port of the broker (default: RCA_KAFKA_BOOTSTRAP or 127.0.0.1:9092)")
    parser.add_argument("--partitions", type=int, help="partitions of new topics (default: RCA_KAFKA_PARTITIONS)")
    args = parser.parse_args(argv)
    settings = Settings()
    bootstrap = args.bootstrap or settings.kafka_bootstrap or "127.0.0.1:9092"
    partitions = args.partitions or settings.kafka_partitions
    try:
        result = asyncio.run(ensure_topics(bootstrap, partitions, TopicNames.from_settings(settings),
                                           client_options=kafka_client_options(settings)))
    except (KafkaUnavailable, KafkaError, ValueError) as error:
        sys.stderr.write(f"kafka topics: error: {error}\n")
        return 1
    for topic, count in sorted(result.partitions.items()):
        verb = "created" if topic in result.created else "exists "
        sys.stdout.write(f"{verb} {topic} ({count} partitions)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
