"""The digesters' consumer group against the real broker: partitions shared, moved and rebuilt, each line counted once.

Two members join one group on a topic of three partitions (lines keyed by service): together
their ranges count every line once; when one leaves, the other is given its partitions,
rebuilds them from Kafka, and alone counts every line once again. Every wait is a deadline on
an outcome; no assertion is about time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pipelines.streaming.digester_group import DigesterMember, merge_ranges
from pipelines.streaming.producer import LogPublisher
from pipelines.streaming.topics import TopicNames
from tests.integration.kafka_support import eventually, isolated_settings, kafka_bootstrap  # noqa: F401 - fixture

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
