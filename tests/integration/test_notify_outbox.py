"""The notification outbox against a real PostgreSQL and receivers that follow Slack's and PagerDuty's APIs.

A worker pass is ``DeliveryWorker.run_once``; the tests call it until the outbox says the rows
are finished (generous deadlines, no assertion about time). Backoff is shortened by settings
(``backoff_seconds``), never by skipping the schedule: a ``Retry-After`` is honoured as given.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pipelines.notify import outbox
from pipelines.notify.outbox import Outbox
from pipelines.notify.pagerduty import PagerDutyChannel
from pipelines.notify.slack import SlackChannel
from pipelines.notify.worker import DeliveryWorker
from pipelines.schemas import Alert, Analysis, Category, Classification, Hypothesis, RemediationStep
from pipelines.store import Store
from tests.support.http_standin import Reply, closed_port_url
from tests.support.pagerduty_standin import PagerDutyStandin
from tests.support.slack_standin import SlackStandin, rate_limited, unavailable

ROUTING_KEY = "R0RCASTANDINROUTINGKEY000000001"
BOTH = {"slack", "pagerduty"}


def _alert(service: str, *, status: str = "firing", at: datetime | None = None) -> Alert:
    at = at or datetime.now(timezone.utc) - timedelta(minutes=5)
    return Alert(name="HighErrorRate", severity="critical", timestamp=at, labels={"service": service}, status=status,
                 ends_at=datetime.now(timezone.utc) if status == "resolved" else None)


def _analysis(incident_id: str, service: str) -> Analysis:
    return Analysis(
        incident_id=incident_id,
        summary=f"{service} connection pool exhausted",
        classification=Classification(category=Category.database, confidence=0.8),
        hypotheses=[
            Hypothesis(cause="connection pool exhausted", confidence=0.7, category=Category.database, service=service,
                       evidence=["HikariPool-1 - Connection is not available, request timed out after 30000ms"]),
            Hypothesis(cause="slow queries", confidence=0.2, evidence=["y"], category=Category.database, service="db"),
        ],
        remediation=[RemediationStep(step=1, action="Raise the pool size", command=f"kubectl rollout restart deploy/{service}",
                                     expected_outcome="requests succeed", risk_level="low")],
        reasoner="evidence",
    )


@pytest.fixture()
async def notify_store(database_url: str) -> AsyncIterator[Store]:
    s = await Store.connect(database_url, outbox=Outbox(BOTH, [], "https://rca.example.test"))
    yield s
    await s.close()


async def _open(store: Store, *, resolve: bool = False) -> str:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    alert = _alert(service)
    incident, _ = await store.record_alert(alert)
    await store.save_analysis(incident.id, _analysis(incident.id, service))
    if resolve:
        await store.resolve(alert.model_copy(update={"status": "resolved", "ends_at": datetime.now(timezone.utc)}))
    return incident.id


def _worker(database_url: str, slack_url: str, pagerduty_url: str, **options: Any) -> DeliveryWorker:
    channels = {"slack": SlackChannel(slack_url), "pagerduty": PagerDutyChannel(pagerduty_url, ROUTING_KEY)}
    return DeliveryWorker(database_url, channels, **{"backoff_seconds": 0.05, "backoff_max_seconds": 0.2, **options})


async def _rows(store: Store, incident_ids: list[str]) -> list[dict[str, Any]]:
    async with store._pool.acquire() as conn:
        return [row | {"incident_id": i} for i in incident_ids for row in await outbox.deliveries(conn, i)]


async def _drain(worker: DeliveryWorker, done: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await done():
        assert time.monotonic() < deadline, "the outbox did not finish its rows"
        await worker.run_once()
        await asyncio.sleep(0.05)


def _finished(store: Store, ids: list[str]) -> Callable[[], Awaitable[bool]]:
    async def done() -> bool:
        return all(r["status"] != "pending" for r in await _rows(store, ids))
    return done


async def test_receivers_down_then_up_get_every_incident_state_exactly_once(notify_store: Store, database_url: str) -> None:
    ids = [await _open(notify_store, resolve=True), await _open(notify_store, resolve=True), await _open(notify_store)]
    rows = await _rows(notify_store, ids)
    assert sorted((r["channel"], r["event"]) for r in rows) == sorted(
        [("slack", "trigger"), ("pagerduty", "trigger")] * 3 + [("slack", "resolve"), ("pagerduty", "resolve")] * 2)

    # Down: nothing listens. Every pass records a failed attempt; nothing is lost or finished.
    down = _worker(database_url, closed_port_url() + "/services/x", closed_port_url() + "/v2/enqueue")
    try:
        for _ in range(3):
            await down.run_once()
            await asyncio.sleep(0.25)
    finally:
        await down.stop()
    rows = await _rows(notify_store, ids)
    assert all(r["status"] == "pending" for r in rows)
    tried = [r for r in rows if r["event"] == "trigger"]
    assert all(r["attempts"] >= 1 and r["tries"][0]["outcome"] == "retry" and "Connect" in r["tries"][0]["reason"]
               for r in tried)
    assert all(r["attempts"] == 0 for r in rows if r["event"] == "resolve"), "a resolve went out before its trigger"

    # Up again, through an overloaded start: a 503 and a 429 with Retry-After first.
    with SlackStandin(script=[unavailable(), rate_limited("1")]) as slack, \
            PagerDutyStandin(ROUTING_KEY, script=[Reply(500, {"status": "error"}), Reply(429, "")]) as pagerduty:
        up = _worker(database_url, slack.webhook_url, pagerduty.events_url)
        try:
            await _drain(up, _finished(notify_store, ids))
        finally:
            await up.stop()
        rows = await _rows(notify_store, ids)
        assert all(r["status"] == "delivered" for r in rows), [(r["channel"], r["status"], r["last_error"]) for r in rows]

        for incident_id, resolved in zip(ids, (True, True, False)):
            said = [m["blocks"][0]["text"]["text"] for m in slack.messages if incident_id in str(m["blocks"][-1])]
            assert len(said) == (2 if resolved else 1), said
            assert said[0].startswith("Critical: HighErrorRate") and (not resolved or said[1].startswith("Resolved:"))
            events = [e["event_action"] for e in pagerduty.events if e["dedup_key"] == incident_id]
            assert events == (["trigger", "resolve"] if resolved else ["trigger"])
            assert pagerduty.alerts[incident_id] == ("resolved" if resolved else "triggered")

    limited = [t for r in rows for t in r["tries"] if t["http_status"] == 429 and t["retry_after_seconds"]]
    assert limited, "the 429 with Retry-After was not recorded"
    for t in limited:  # the next try was scheduled no sooner than the receiver asked
        at, then = datetime.fromisoformat(t["at"]), datetime.fromisoformat(t["next_attempt_at"])
        assert (then - at).total_seconds() >= t["retry_after_seconds"] - 0.05


async def test_a_payload_refused_with_400_is_not_retried_and_the_reason_is_kept(notify_store: Store, database_url: str) -> None:
    incident_id = await _open(notify_store)
    with SlackStandin(script=[Reply(400, "invalid_payload")]) as slack, \
            PagerDutyStandin("another-services-routing-key") as pagerduty:
        worker = _worker(database_url, slack.webhook_url, pagerduty.events_url)
        try:
            await _drain(worker, _finished(notify_store, [incident_id]))
            for _ in range(5):  # more passes: nothing is sent again
                await worker.run_once()
        finally:
            await worker.stop()
        ours = [r for r in pagerduty.requests if incident_id in r.body.decode()]
        assert len(slack.requests) == 1 and len(ours) == 1
    rows = {r["channel"]: r for r in await _rows(notify_store, [incident_id])}
    assert rows["slack"]["status"] == "rejected" and "invalid_payload" in rows["slack"]["last_error"]
    assert rows["pagerduty"]["status"] == "rejected" and "routing_key" in rows["pagerduty"]["last_error"]
    assert ROUTING_KEY not in rows["pagerduty"]["last_error"]
    assert [t["outcome"] for r in rows.values() for t in r["tries"]] == ["rejected", "rejected"]


async def test_the_outbox_survives_a_restart_and_a_worker_that_died_mid_send(database_url: str) -> None:
    first = await Store.connect(database_url, outbox=Outbox(BOTH, [], None))
    ids = [await _open(first), await _open(first)]
    async with first._pool.acquire() as conn:  # a worker leases two rows, then its process dies
        leased = await outbox.claim(conn, ["slack", "pagerduty"], 2, lease_seconds=1.0)
    await first.close()
    assert {r.incident_id for r in leased} <= set(ids)

    second = await Store.connect(database_url, outbox=Outbox(BOTH, [], None))
    try:
        with SlackStandin() as slack, PagerDutyStandin(ROUTING_KEY) as pagerduty:
            worker = _worker(database_url, slack.webhook_url, pagerduty.events_url)
            try:
                await _drain(worker, _finished(second, ids))
            finally:
                await worker.stop()
            assert sorted(e["dedup_key"] for e in pagerduty.events if e["dedup_key"] in ids) == sorted(ids)
            assert sum(1 for m in slack.messages for i in ids if i in str(m["blocks"][-1])) == 2
    finally:
        await second.close()


async def test_an_incident_resolved_before_its_analysis_is_stored_gets_trigger_then_resolve(
    notify_store: Store, database_url: str
) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    alert = _alert(service)
    incident, _ = await notify_store.record_alert(alert)
    await notify_store.resolve(alert.model_copy(update={"status": "resolved", "ends_at": datetime.now(timezone.utc)}))
    assert await _rows(notify_store, [incident.id]) == []  # nothing was told, so there is nothing to resolve yet
    await notify_store.save_analysis(incident.id, _analysis(incident.id, service))
    with SlackStandin() as slack, PagerDutyStandin(ROUTING_KEY) as pagerduty:
        worker = _worker(database_url, slack.webhook_url, pagerduty.events_url)
        try:
            await _drain(worker, _finished(notify_store, [incident.id]))
        finally:
            await worker.stop()
        assert [e["event_action"] for e in pagerduty.events if e["dedup_key"] == incident.id] == ["trigger", "resolve"]


async def test_a_receiver_down_longer_than_the_give_up_time_is_recorded_as_expired(
    notify_store: Store, database_url: str
) -> None:
    incident_id = await _open(notify_store)
    worker = _worker(database_url, closed_port_url() + "/s", closed_port_url() + "/v2/enqueue", give_up_seconds=0.01)
    try:
        await _drain(worker, _finished(notify_store, [incident_id]))
    finally:
        await worker.stop()
    rows = await _rows(notify_store, [incident_id])
    assert {r["status"] for r in rows} == {"expired"}
    assert all(r["tries"][-1]["outcome"] == "expired" and r["last_error"] for r in rows)
