"""Digesters as Ray actors, against the real broker, in the session's Ray cluster.

Two digester actors (``RCA_DIGESTERS_PER_NODE=2`` on the session's one node) join one consumer
group and share the three partitions of ``rca.logs`` and of ``rca.spans`` (partition *i* of both to one actor); the alert path's gather
(:class:`DigesterActors`) asks both and merges their answers, which count every line once.
Then one actor is killed by Ray while lines flow: Ray restarts it, it rejoins the group, the
partitions are rebuilt from Kafka, and the merged context again counts every line once.
Every wait is a deadline on an outcome; no assertion is about time.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pipelines.streaming.digester_actors import DigesterActors, digester_handles, stop_digesters
from pipelines.streaming.producer import LogPublisher
from pipelines.streaming.topics import TopicNames
from tests.integration.kafka_support import eventually, isolated_settings, kafka_bootstrap  # noqa: F401 - fixture

pytestmark = [pytest.mark.kafka, pytest.mark.serve]

SERVICES = 9
BATCH = 90


def lines(first: int, count: int) -> list[dict[str, Any]]:
    at = (datetime.now(timezone.utc) - timedelta(seconds=20)).isoformat()
    return [{"message": f"user {i} logged in from 10.0.{i % 250}.{i % 7}", "service": f"svc-{i % SERVICES}",
             "level": "INFO", "timestamp": at} for i in range(first, first + count)]


async def test_digester_actors_share_the_partitions_and_a_killed_one_rejoins_counting_each_line_once(
    serve_app: str, kafka_bootstrap: str,
) -> None:
    import ray

    app = f"digesters-{uuid.uuid4().hex[:6]}"
    settings = isolated_settings(kafka_bootstrap, context_window_seconds=300, context_wait_seconds=1.0,
                                 digesters_per_node=2, digester_num_cpus=0.01)
    publisher = LogPublisher(kafka_bootstrap, topics=TopicNames.from_settings(settings))
    actors = DigesterActors(settings, app)
    shipped = 0

    async def held() -> tuple[int, list[int]]:
        """Lines in the merged context of the last minutes, and the partitions (of both topics) each actor holds."""
        now = datetime.now(timezone.utc).timestamp()
        context = await actors.between(now - 300, now + 60, through_end=True)
        shares = [len(p) for p in await asyncio.gather(*(h.partitions.remote() for h in actors.handles))]
        return context.digest.lines, shares

    async def complete() -> bool:
        actors.keep()  # as the reader does every 30 s: a restarted actor is started again
        if not await actors.caught_up():  # False while an actor restarts, rather than an error
            return False
        lines_held, shares = await held()
        return sum(shares) == 6 and lines_held == shipped

    try:
        actors.keep()
        assert len(actors.handles) == 2 and len(digester_handles(app)) == 2
        for _ in range(5):
            await publisher.publish(lines(shipped, BATCH))
            shipped += BATCH
        await eventually(complete, "both actors joined, the partitions shared and every line mined", within=120)
        _, shares = await held()
        assert sorted(shares) == [2, 4]  # one and two partitions of each topic

        victim = actors.handles[0]
        for batch in range(10):
            await publisher.publish(lines(shipped, BATCH))
            shipped += BATCH
            if batch == 3:
                ray.kill(victim, no_restart=False)  # Ray restarts it; it rejoins when next asked
            await asyncio.sleep(0.2)
        await eventually(complete, "the killed actor restarted, rejoined, and every line counted", within=180)
        now = datetime.now(timezone.utc).timestamp()
        context = await actors.between(now - 300, now + 60, through_end=True)
        assert context.cut_lines == 0
        assert context.digest.services == {f"svc-{s}": shipped // SERVICES for s in range(SERVICES)}
        assert (await actors.stats()).dropped == {}
    finally:
        await asyncio.to_thread(stop_digesters, app)
        await publisher.stop()
    assert digester_handles(app) == []
