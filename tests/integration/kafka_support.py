"""Fixtures and helpers for tests against a real Apache Kafka broker (scripts/kafka).

* ``kafka_bootstrap``: the shared broker of the machine (127.0.0.1:9092, what CI starts with
  ``scripts/kafka start``); tests skip with the command to run when it does not answer.
* ``private_broker``: a broker of this test module alone (own port and data folder, the jars
  cached by ``scripts/kafka``), for tests that stop and restart it without disturbing anyone.
* ``isolated_settings``: Settings with topic and group names no other test uses.

Import the fixtures into a test module: ``from tests.integration.kafka_support import *``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from pipelines.streaming.topics import TopicNames
from pipelines.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "kafka"
SHARED_BOOTSTRAP = "127.0.0.1:9092"
KAFKA_HOME = Path(os.environ.get("RCA_KAFKA_HOME", REPO / ".cache" / "kafka"))

__all__ = [
    "Broker",
    "am_alert",
    "eventually",
    "isolated_settings",
    "kafka_bootstrap",
    "private_broker",
    "read_topic",
    "started_broker",
]


def answers(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def free_port_pair() -> int:
    """A port whose successor is free too (scripts/kafka puts the controller on port+1)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    if not answers(SHARED_BOOTSTRAP):
        pytest.skip(f"no Kafka broker answers on {SHARED_BOOTSTRAP}: run `scripts/kafka start` first")
    return SHARED_BOOTSTRAP


@dataclass
class Broker:
    """A broker started by scripts/kafka on its own port and data folder."""

    port: int
    state: Path
    env: dict[str, str] = field(default_factory=dict)
    """More of scripts/kafka's variables (TLS listeners: RCA_KAFKA_TLS_PORT, RCA_KAFKA_SASL_SSL_PORT...)."""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, command: str) -> None:
        env = {**os.environ, "RCA_KAFKA_PORT": str(self.port), "RCA_KAFKA_STATE": str(self.state),
               "RCA_KAFKA_HOME": str(KAFKA_HOME), "RCA_KAFKA_HEAP": "-Xms128m -Xmx512m", **self.env}
        result = subprocess.run([str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=180)
        if result.returncode != 0:
            raise RuntimeError(f"scripts/kafka {command} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")


@contextmanager
def started_broker(**env: str) -> Iterator[Broker]:
    """A broker of its own (port, data folder), started with more of scripts/kafka's variables; stopped on exit."""
    if not any(KAFKA_HOME.glob("libs-*/.complete")):
        pytest.skip(f"no Kafka jars cached in {KAFKA_HOME}: run `scripts/kafka start` once (it fetches them)")
    with tempfile.TemporaryDirectory(prefix="rca-kafka-test-") as folder:
        broker = Broker(port=free_port_pair(), state=Path(folder), env=env)
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@pytest.fixture(scope="module")
def private_broker() -> Iterator[Broker]:
    with started_broker() as broker:
        yield broker


def isolated_settings(bootstrap: str, **overrides: Any) -> Settings:
    """Settings whose topics and consumer group belong to one test only."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "kafka_alerts_topic": f"test.{tag}.alerts",
        "kafka_logs_topic": f"test.{tag}.logs",
        "kafka_dlq_topic": f"test.{tag}.dlq",
        "kafka_spans_topic": f"test.{tag}.spans",
        "kafka_group_id": f"test-{tag}",
        "kafka_partitions": 3,
        "context_wait_seconds": 0.5,
    }
    values.update(overrides)
    return Settings(**values)


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, within: float = 60.0, every: float = 0.1
) -> None:
    """Wait until ``condition`` holds; fail naming ``what`` if it never does (a deadline, not a timing check)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(every)
    pytest.fail(f"{what}: not reached within {within:g}s")


async def read_topic(bootstrap: str, topic: str, expected: int, within: float = 30.0) -> list[Any]:
    """Every record of ``topic`` from the beginning, once at least ``expected`` are there."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + within
        while len(records) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def topic_names(settings: Settings) -> TopicNames:
    return TopicNames.from_settings(settings)


def am_alert(tag: str, index: int, starts_at: str) -> dict[str, Any]:
    """One firing alert as Alertmanager sends it, for service ``<tag>-svc-<index>``; its fingerprint is unique per (tag, index)."""
    service = f"{tag}-svc-{index:03d}"
    return {
        "status": "firing",
        "labels": {"alertname": "HighErrorRate", "severity": "critical", "service": service},
        "annotations": {"summary": f"5xx on {service}"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": f"{tag}-{index:03d}",
    }
