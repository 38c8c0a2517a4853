"""The store against a real PostgreSQL: idempotent intake, grouping, resolve, filters, stats."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from pipelines.schemas import Alert, Analysis, Category, Classification, Hypothesis, RemediationStep, Severity
from pipelines.store import IncidentNotFound, Store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def _alert(service: str, name: str = "HighErrorRate", at: datetime = T0, **kw) -> Alert:
    return Alert(name=name, severity=kw.pop("severity", "critical"), timestamp=at, labels={"service": service, **kw})


def _analysis(incident_id: str, category: Category = Category.database, seconds: float = 1.5) -> Analysis:
    return Analysis(
        incident_id=incident_id,
        summary="pool exhausted",
        classification=Classification(category=category, confidence=0.8),
        hypotheses=[
            Hypothesis(cause="pool exhausted", confidence=0.7, evidence=["x"], category=category, service="db"),
            Hypothesis(cause="slow queries", confidence=0.2, evidence=["y"], category=category, service="api"),
        ],
        remediation=[RemediationStep(step=1, action="look", expected_outcome="seen", risk_level="low")],
        reasoner="evidence",
        timings={"total": seconds},
    )


async def test_same_alert_twice_is_one_incident(store: Store) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    first, created = await store.record_alert(_alert(service))
    again, created_again = await store.record_alert(_alert(service))
    assert created and not created_again
    assert again.id == first.id


async def test_a_retried_delivery_is_answered_as_the_first_time_and_not_counted_as_a_repeat(store: Store) -> None:
    """The reader retries when the reply was lost although the alert was stored."""
    service = f"svc-{uuid.uuid4().hex[:8]}"
    alert = _alert(service)
    first, created = await store.record_alert(alert, delivery=f"rca.alerts:0:{service}")
    retried, created_retry = await store.record_alert(alert, delivery=f"rca.alerts:0:{service}")
    assert created and created_retry and retried.id == first.id  # the retry learns what its first try did

    async def repeats() -> int:
        async with store._pool.acquire() as conn:
            return await conn.fetchval("SELECT repeats FROM alerts WHERE incident_id = $1 AND status = 'firing'", first.id)

    assert await repeats() == 1
    repeat, created_repeat = await store.record_alert(alert, delivery=f"rca.alerts:1:{service}")  # Alertmanager resent it
    assert repeat.id == first.id and not created_repeat and await repeats() == 2
    again, created_again = await store.record_alert(alert, delivery=f"rca.alerts:1:{service}")
    assert again.id == first.id and not created_again and await repeats() == 2


async def test_alerts_of_one_service_within_window_join_one_incident(store: Store) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    first, _ = await store.record_alert(_alert(service, "HighErrorRate"))
    second, created = await store.record_alert(_alert(service, "SlowResponseTime", T0 + timedelta(minutes=3)))
    later, created_later = await store.record_alert(_alert(service, "HighErrorRate", T0 + timedelta(hours=2)))
    assert second.id == first.id and not created
    assert later.id != first.id and created_later


async def test_resolved_alert_closes_incident_with_time_to_resolve(store: Store) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    alert = _alert(service)
    incident, _ = await store.record_alert(alert)
    ends = T0 + timedelta(minutes=17)
    closed = await store.resolve(alert.model_copy(update={"status": "resolved", "ends_at": ends}))
    assert closed is not None and closed.id == incident.id
    assert closed.status == "resolved" and closed.resolved_at == ends
    assert await store.resolve(_alert("never-seen").model_copy(update={"status": "resolved"})) is None


async def test_analysis_is_stored_and_listed_with_filters(store: Store) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    incident, _ = await store.record_alert(_alert(service, severity="warning"))
    await store.save_analysis(incident.id, _analysis(incident.id))
    got = await store.get_incident(incident.id)
    assert got.analysis is not None and got.category == Category.database
    page = await store.list_incidents(service=service, category=Category.database, severity=Severity.warning)
    assert [i.id for i in page.items] == [incident.id] and page.total == 1
    assert (await store.list_incidents(service=service, category=Category.network)).total == 0
    stats = await store.stats()
    assert stats.by_category.get("database", 0) >= 1 and stats.latency_p50_seconds is not None


async def test_unknown_or_malformed_id_is_not_found(store: Store) -> None:
    for bad in (str(uuid.uuid4()), "not-a-uuid", "'; DROP TABLE incidents; --"):
        with pytest.raises(IncidentNotFound):
            await store.get_incident(bad)


@pytest.mark.parametrize("evil", ["' OR '1'='1", "x'; DROP TABLE incidents; --", "\\", "%", "$1"])
async def test_filters_are_parameterized(store: Store, evil: str) -> None:
    page = await store.list_incidents(service=evil)
    assert page.total == 0
    assert (await store.stats()).incidents >= 0  # the table is still there


async def test_data_survives_reconnect(store: Store, database_url: str) -> None:
    incident, _ = await store.record_alert(_alert(f"svc-{uuid.uuid4().hex[:8]}"))
    other = await Store.connect(database_url)
    try:
        assert (await other.get_incident(incident.id)).id == incident.id
    finally:
        await other.close()
