"""A digester killed while lines flow, against the real broker: its partitions move, nothing is lost or counted twice.

The victim is a real :class:`DigesterMember` in a process of its own (this file run as a script,
``--member``), killed with SIGKILL while a shipper keeps publishing: it never leaves the group,
so the broker moves its partitions only when its session times out. The survivor, in the test's
process, is then given them, rebuilds them from Kafka, and its context of the window counts
every line shipped exactly once, per service. Every wait is a deadline on an outcome; no
assertion is about time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pipelines.settings import Settings
from pipelines.streaming.digester_group import DigesterMember
from pipelines.streaming.producer import LogPublisher
from pipelines.streaming.topics import TopicNames
from tests.integration.kafka_support import eventually, isolated_settings, kafka_bootstrap  # noqa: F401 - fixture

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
SERVICES = 10
BATCHES = 80
BATCH = 50
KILL_AFTER = 20
SHARED = ("kafka_bootstrap", "kafka_logs_topic", "kafka_alerts_topic", "kafka_spans_topic", "kafka_dlq_topic",
          "kafka_group_id", "kafka_partitions", "context_window_seconds", "context_wait_seconds")


async def _run_member(fields: dict[str, Any]) -> None:
    """The victim: join the group and mine until killed (it never leaves on its own)."""
    member = DigesterMember(Settings(**fields), client_id="victim")
    await member.run()


def line(index: int, at: datetime) -> dict[str, Any]:
    return {"message": f"payment {index} settled in {index % 53} ms", "service": f"svc-{index % SERVICES}",
            "level": "ERROR" if index % 7 == 0 else "INFO", "timestamp": at.isoformat()}


async def test_a_digester_killed_while_lines_flow_hands_its_partitions_over_and_nothing_is_lost_or_doubled(
    kafka_bootstrap: str,
) -> None:
    settings = isolated_settings(kafka_bootstrap, context_window_seconds=300, context_wait_seconds=1.0)
    fields = {name: getattr(settings, name) for name in SHARED}
    publisher = LogPublisher(kafka_bootstrap, topics=TopicNames.from_settings(settings))
    survivor = DigesterMember(settings, client_id="survivor")
    victim = subprocess.Popen([sys.executable, __file__, "--member", json.dumps(fields)], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    shipped = 0
    try:
        await survivor.start()
        await eventually(lambda: 0 < len(survivor.digesters) < 3 and survivor.caught_up(),
                         "the partitions shared between the survivor and the victim", within=90)
        before = survivor.rebuilds
        for batch in range(BATCHES):
            base = datetime.now(timezone.utc) - timedelta(seconds=30)
            await publisher.publish([line(shipped + i, base) for i in range(BATCH)])
            shipped += BATCH
            if batch == KILL_AFTER:
                assert victim.poll() is None, "the victim died before it was killed"
                victim.send_signal(signal.SIGKILL)  # no goodbye to the group: its session has to time out
            await asyncio.sleep(0.1)
        victim.wait(timeout=30)
        await eventually(lambda: len(survivor.digesters) == 3 and survivor.caught_up(),
                         "the killed member's partitions moved to the survivor and read", within=120)
        assert survivor.rebuilds > before
        now = datetime.now(timezone.utc).timestamp()
        context = survivor.between(now - 300, now + 60, through_end=True)
        assert context.cut_lines == 0
        assert context.digest.lines == shipped == BATCHES * BATCH
        assert context.digest.services == {f"svc-{s}": shipped // SERVICES for s in range(SERVICES)}
        assert survivor.dropped() == {}
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(timeout=30)
        await survivor.stop()
        await publisher.stop()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--member":
        asyncio.run(_run_member(json.loads(sys.argv[2])))
    else:
        sys.exit(f"usage: {sys.argv[0]} --member SETTINGS_JSON")
