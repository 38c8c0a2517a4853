"""A slow digester against the real broker: the backlog waits in Kafka, then is caught up, each line once.

A member whose mining is slowed (``mine_delay_seconds``, the constructor's knob for a loaded
node, not a mock) and whose fetches are small (``fetch_records``) is given lines faster than it
mines them. Kafka is pulled, not pushed: the member asks for at most ``fetch_records`` at a time,
so what it has not mined yet stays in the broker (its lag grows) while what it holds stays
within its bounds (pending lines within a batch, digests within ``RCA_DIGEST_MAX_BYTES``, nothing
cut). Once it is fast again it catches up, and its digests count every line exactly once.
Every wait is a deadline on an outcome; no assertion is about time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pipelines.streaming.digester import BATCH_EVENTS
from pipelines.streaming.digester_group import DigesterMember
from pipelines.streaming.producer import LogPublisher
from pipelines.streaming.topics import TopicNames
from tests.integration.kafka_support import eventually, isolated_settings, kafka_bootstrap  # noqa: F401 - fixture

pytestmark = pytest.mark.kafka

SERVICES = 12
TOTAL = 6000
FETCH = 100


def lines(start: datetime, first: int, count: int) -> list[dict[str, Any]]:
    return [{"message": f"GET /orders/{i} took {i % 89} ms", "service": f"svc-{i % SERVICES:02d}", "level": "INFO",
             "timestamp": (start + timedelta(seconds=i * 40 / TOTAL)).isoformat()} for i in range(first, first + count)]


async def test_a_slow_digester_leaves_the_backlog_in_kafka_and_catches_up_counting_each_line_once(
    kafka_bootstrap: str,
) -> None:
    settings = isolated_settings(kafka_bootstrap, context_window_seconds=300, context_wait_seconds=1.0)
    publisher = LogPublisher(kafka_bootstrap, topics=TopicNames.from_settings(settings))
    member = DigesterMember(settings, client_id="slow", fetch_records=FETCH, mine_delay_seconds=0.25)
    now = datetime.now(timezone.utc)
    start = now - timedelta(seconds=50)
    window = (now.timestamp() - 300, now.timestamp() + 60)
    peak_pending = peak_bytes = 0

    def backlog_in_kafka() -> bool:
        nonlocal peak_pending, peak_bytes
        stats = member.stats()
        peak_pending, peak_bytes = max(peak_pending, stats.pending), max(peak_bytes, stats.bytes)
        return sum(member.lag().values()) >= TOTAL // 2

    try:
        await member.start()
        await publisher.publish(lines(start, 0, 300))
        await eventually(lambda: member.consumed > 0 and len(member.digesters) == 3, "the slow member consuming")
        await publisher.publish(lines(start, 300, TOTAL - 300))  # far faster than it mines
        await eventually(backlog_in_kafka, "a backlog of half the lines left in the broker by the slow member")
        assert member.consumed < TOTAL // 2
        assert peak_pending <= BATCH_EVENTS and peak_bytes <= settings.digest_max_bytes
        assert member.stats().cut_lines == 0

        member.mine_delay_seconds = 0.0  # the node is idle again
        await eventually(lambda: member.consumed == TOTAL and member.caught_up(), "the slow member caught up",
                         within=120)
        assert member.lag() == {f"{topic}/{p}": 0 for topic in (settings.kafka_logs_topic, settings.kafka_spans_topic)
                                for p in range(3)}
        held = member.between(*window)
        assert held.digest.lines == TOTAL and held.cut_lines == 0
        assert held.digest.services == {f"svc-{s:02d}": TOTAL // SERVICES for s in range(SERVICES)}
        assert member.dropped() == {}
    finally:
        await member.stop()
        await publisher.stop()


def test_a_member_refuses_bounds_that_make_no_sense() -> None:
    settings = isolated_settings("127.0.0.1:1")
    with pytest.raises(ValueError, match="fetch_records must be at least 1, got 0"):
        DigesterMember(settings, fetch_records=0)
    with pytest.raises(ValueError, match="mine_delay_seconds must be 0 or more, got -1"):
        DigesterMember(settings, mine_delay_seconds=-1.0)
