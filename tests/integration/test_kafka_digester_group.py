"""The digesters' consumer group against the real broker: partitions shared, moved and rebuilt, each line
and each span counted once.

Two members join one group on topics of three partitions (lines and spans keyed by service):
together their ranges count every line (every span) once; when one leaves, the other is given
its partitions, rebuilds them from Kafka, and alone counts every line (every span) once again. Every wait is a deadline on
an outcome; no assertion is about time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pipelines.schemas import Span
from pipelines.streaming.digester_group import DigesterMember, merge_ranges
from pipelines.streaming.producer import LogPublisher, Publisher, SpanPublisher
from pipelines.streaming.topics import TopicNames
from tests.integration.kafka_support import eventually, isolated_settings, kafka_bootstrap  # noqa: F401 - fixture
from tests.support.otlp import otlp_batch

pytestmark = pytest.mark.kafka

SERVICES = 15
TOTAL = 3000


def lines(start: datetime) -> list[dict[str, Any]]:
    return [{"message": f"request {i} took {i % 97} ms", "service": f"svc-{i % SERVICES:02d}", "level": "INFO",
             "timestamp": (start + timedelta(seconds=i * 50 / TOTAL)).isoformat()} for i in range(TOTAL)]


async def test_members_share_partitions_and_a_moved_partition_is_rebuilt_once(kafka_bootstrap: str) -> None:
    settings = isolated_settings(kafka_bootstrap, context_window_seconds=300, context_wait_seconds=1.0)
    publisher = LogPublisher(kafka_bootstrap, topics=TopicNames.from_settings(settings))
    now = datetime.now(timezone.utc)
    first, second = DigesterMember(settings, client_id="first"), DigesterMember(settings, client_id="second")
    window = (now.timestamp() - 300, now.timestamp() + 60)
    everyone = {f"svc-{s:02d}": TOTAL // SERVICES for s in range(SERVICES)}
    try:
        await publisher.publish(lines(now - timedelta(seconds=55)))
        await first.start()
        await eventually(lambda: first.caught_up() and len(first.digesters) == 3, "the first member holds all three")
        assert first.between(*window).digest.services == everyone

        await second.start()
        await eventually(lambda: first.caught_up() and second.caught_up()
                         and len(first.digesters) + len(second.digesters) == 3, "the partitions shared and read")
        assert first.digesters and second.digesters
        shared = merge_ranges([first.between(*window), second.between(*window)])
        assert shared.digest.lines == TOTAL and shared.digest.services == everyone and shared.cut_lines == 0
        assert not set(first.between(*window).digest.services) & set(second.between(*window).digest.services)

        rebuilt_before = second.rebuilds
        await first.stop()  # its partitions move to the second member, which reads them again from Kafka
        await eventually(lambda: len(second.digesters) == 3 and second.caught_up(), "the moved partitions rebuilt")
        assert second.rebuilds > rebuilt_before
        alone = second.between(*window)
        assert alone.digest.lines == TOTAL and alone.digest.services == everyone
    finally:
        await first.stop()
        await second.stop()
        await publisher.stop()


async def test_a_member_given_span_partitions_after_a_rebalance_rebuilds_them_each_span_once(kafka_bootstrap: str) -> None:
    """Spans keyed by service (our publishers) and an OTLP batch keyed by trace id (as the Collector
    keys them, whatever partition that is): two members share the span partitions; when one stops,
    the other rebuilds the partitions it is given from Kafka and answers every span once."""
    settings = isolated_settings(kafka_bootstrap, context_window_seconds=300, context_wait_seconds=1.0)
    topics = TopicNames.from_settings(settings)
    spans_out, raw = SpanPublisher(kafka_bootstrap, topics=topics), Publisher(kafka_bootstrap, topics=topics)
    now = datetime.now(timezone.utc).timestamp()
    first, second = DigesterMember(settings, client_id="first"), DigesterMember(settings, client_id="second")
    window = (now - 300, now + 60)
    keyed = [Span(trace_id=f"{i:032x}", span_id=f"{i:016x}", service=f"svc-{i % SERVICES:02d}", operation="GET /",
                  start=now - 60 + i * 0.01, duration_ms=2.0) for i in range(300)]
    trace = "ab" * 16
    batch = otlp_batch({f"svc-{s:02d}": [{"trace": trace, "span": f"{1000 + s:016x}", "name": "batch", "start": now - 30,
                                           "ms": 1.0}] for s in range(3)})
    every = {s.span_id for s in keyed} | {f"{1000 + s:016x}" for s in range(3)}
    try:
        await spans_out.publish(keyed)
        await raw.publish_records(topics.spans, [(trace.encode(), batch)])
        await first.start()
        await second.start()
        await eventually(lambda: first.caught_up() and second.caught_up()
                         and len(first.span_stores) + len(second.span_stores) == 3, "the span partitions shared and read")
        assert first.span_stores and second.span_stores
        # partition i of both topics to one member: the spans of a service sit beside its lines
        for member in (first, second):
            assert {tp.partition for tp in member.span_stores} == {tp.partition for tp in member.digesters}
            assert {f"{topics.spans}/{tp.partition}" for tp in member.span_stores} <= set(member.read_positions() or {})
        shared = merge_ranges([first.between(*window), second.between(*window)])
        assert sorted(s.span_id for s in shared.spans.spans) == sorted(every)

        rebuilt_before = second.rebuilds
        await first.stop()
        await eventually(lambda: len(second.span_stores) == 3 and second.caught_up(), "the moved span partitions rebuilt")
        assert second.rebuilds > rebuilt_before
        alone = second.between(*window).spans
        assert sorted(s.span_id for s in alone.spans) == sorted(every) and alone.cut_spans == 0
        assert second.stats().spans.spans == len(every)
    finally:
        await first.stop()
        await second.stop()
        await spans_out.stop()
        await raw.stop()
