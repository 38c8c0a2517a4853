"""The streaming spine through the real application: webhook -> rca.alerts -> reader actor -> stored incident.

A second Serve application (``rca-kafka``, route ``/kafka-test``) with Kafka enabled runs in
the session's Ray cluster next to the session app (which has no Kafka). It uses a broker of
this module alone (``private_broker``: own port and data folder), so restarting it disturbs
nobody and its topics start empty. Its Ingress starts the reader actor itself
(``ensure_reader``), exactly as in production.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from pipelines.streaming.producer import LogPublisher, Publisher
from pipelines.streaming.topics import TopicNames
from tests.integration.kafka_support import (  # noqa: F401 - fixtures
    Broker,
    am_alert,
    answers,
    isolated_settings,
    private_broker,
    read_topic,
)

pytestmark = [pytest.mark.kafka, pytest.mark.serve]

APP = "rca-kafka"
ROUTE = "/kafka-test"


@pytest.fixture(scope="module")
def kafka_app(serve_app: str, database_url: str, private_broker: Broker) -> Iterator[dict[str, Any]]:
    from ray import serve

    from pipelines.app import build_app
    from pipelines.streaming.reader import stop_reader

    # The default topic names (the broker is this module's own): the test holds whether or not the
    # ingress takes the names from its settings (AlertPublisher.from_settings).
    settings = isolated_settings(private_broker.bootstrap, database_url=database_url, summarizer_replicas=1,
                                 context_wait_seconds=1.0, kafka_alerts_topic="rca.alerts",
                                 kafka_logs_topic="rca.logs", kafka_dlq_topic="rca.dlq",
                                 kafka_group_id="rca-test-kafka-app")
    serve.run(build_app(settings), name=APP, route_prefix=ROUTE,
              logging_config={"enable_access_log": False, "log_level": "WARNING"})
    try:
        yield {"url": serve_app + ROUTE, "settings": settings, "broker": private_broker,
               "bootstrap": private_broker.bootstrap}
    finally:
        stop_reader(APP)
        serve.delete(APP)


def webhook(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "receiver": "rca", "groupLabels": {}, "alerts": alerts}


def incidents_of(client: httpx.Client, service: str) -> list[dict[str, Any]]:
    response = client.get("/api/incidents", params={"service": service, "page_size": 10})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def wait_for_one_incident_each(client: httpx.Client, services: list[str], within: float = 240) -> dict[str, Any]:
    found: dict[str, Any] = {}
    deadline = time.monotonic() + within
    while len(found) < len(services) and time.monotonic() < deadline:
        for service in services:
            if service not in found:
                items = incidents_of(client, service)
                if items:
                    found[service] = items
        time.sleep(0.5)
    missing = sorted(set(services) - set(found))
    assert not missing, f"{len(missing)} alert(s) never became incidents, e.g. {missing[:3]}"
    return {service: incidents_of(client, service) for service in services}


def test_webhook_alerts_become_one_analyzed_incident_each_with_kafka_logs(kafka_app: dict[str, Any]) -> None:
    tag = uuid.uuid4().hex[:6]
    now = datetime.now(timezone.utc)
    topics = TopicNames.from_settings(kafka_app["settings"])

    async def publish_logs() -> None:
        publisher = LogPublisher(kafka_app["bootstrap"], topics=topics)
        try:
            await publisher.publish([
                {"message": f"ERROR connection refused to db request={i}", "service": f"{tag}-svc-000",
                 "level": "ERROR", "timestamp": now.isoformat()} for i in range(40)
            ])
        finally:
            await publisher.stop()

    asyncio.run(publish_logs())
    alerts = [am_alert(tag, i, now.isoformat()) for i in range(12)]
    with httpx.Client(base_url=kafka_app["url"], timeout=60) as client:
        for _ in range(2):  # Alertmanager repeats a group: the second delivery must not add incidents
            response = client.post("/webhook/alertmanager", json=webhook(alerts))
            assert response.status_code == 202, response.text
            assert response.json()["via"] == "kafka"
        services = [a["labels"]["service"] for a in alerts]
        found = wait_for_one_incident_each(client, services)
        assert all(len(items) == 1 for items in found.values()), {s: len(i) for s, i in found.items() if len(i) != 1}
        first = found[f"{tag}-svc-000"][0]
        detail = client.get(f"/api/incidents/{first['id']}").json()
    assert detail["analysis"] is not None
    assert detail["analysis"]["stats"]["lines_in"] >= 40  # the lines from rca.logs were its context


def test_poison_on_the_alert_topic_goes_to_the_dlq_and_the_next_alert_is_stored(kafka_app: dict[str, Any]) -> None:
    tag = uuid.uuid4().hex[:6]
    topics = TopicNames.from_settings(kafka_app["settings"])
    good = am_alert(tag, 0, datetime.now(timezone.utc).isoformat())
    from pipelines.schemas import AlertmanagerAlert

    good_value = AlertmanagerAlert.model_validate(good).to_alert().model_dump_json().encode()

    async def publish() -> None:
        publisher = Publisher(kafka_app["bootstrap"], topics=topics)
        try:
            await publisher.publish_records(topics.alerts, [(b"x", f"poison {tag}".encode()), (b"x", good_value)])
        finally:
            await publisher.stop()

    asyncio.run(publish())
    with httpx.Client(base_url=kafka_app["url"], timeout=60) as client:
        found = wait_for_one_incident_each(client, [good["labels"]["service"]])
    assert len(found[good["labels"]["service"]]) == 1
    dead = asyncio.run(read_topic(kafka_app["bootstrap"], topics.dlq, expected=1))
    poison = [r for r in dead if r.value == f"poison {tag}".encode()]
    assert len(poison) == 1 and dict(poison[0].headers)["rca-dlq-reason"] == b"undecodable"


def test_broker_restart_while_alerts_flow_ends_with_exactly_one_incident_per_alert(kafka_app: dict[str, Any]) -> None:
    """The app's broker is stopped and started again: webhook calls get 503 meanwhile and are retried."""
    tag = uuid.uuid4().hex[:6]
    now = datetime.now(timezone.utc).isoformat()
    alerts = [am_alert(tag, i, now) for i in range(40)]
    unavailable = 0
    failures: list[str] = []
    halfway, broker_down = threading.Event(), threading.Event()

    def alertmanager() -> None:
        """Posts 2 alerts per call; after half of them it waits until the broker is down, then goes on."""
        nonlocal unavailable
        with httpx.Client(base_url=kafka_app["url"], timeout=60) as client:
            for offset in range(0, len(alerts), 2):
                if offset == len(alerts) // 2:
                    halfway.set()
                    broker_down.wait(timeout=120)
                for _ in range(600):
                    try:
                        response = client.post("/webhook/alertmanager", json=webhook(alerts[offset : offset + 2]))
                    except httpx.HTTPError:
                        response = None
                    if response is not None and response.status_code == 202:
                        break
                    if response is not None and response.status_code != 503:
                        failures.append(f"{response.status_code}: {response.text[:200]}")
                        return
                    unavailable += 1
                    time.sleep(0.5)
                time.sleep(0.1)

    sender = threading.Thread(target=alertmanager)
    sender.start()
    assert halfway.wait(timeout=300), failures
    broker: Broker = kafka_app["broker"]
    broker.stop()
    broker_down.set()  # the second half is sent while the broker is away
    time.sleep(2.0)
    broker.start()
    sender.join(timeout=400)
    assert not sender.is_alive() and not failures, failures
    assert answers(kafka_app["bootstrap"])
    with httpx.Client(base_url=kafka_app["url"], timeout=60) as client:
        found = wait_for_one_incident_each(client, [a["labels"]["service"] for a in alerts], within=300)
    assert all(len(items) == 1 for items in found.values()), {s: len(i) for s, i in found.items() if len(i) != 1}
