"""Feedback and similar incidents on the real PostgreSQL, with the real pipeline in-process:
feedback on incident A makes the analysis of a like incident B cite it, ranking, validation,
the audit row, accuracy in the stats, and signing analyses stored before signatures existed."""

from __future__ import annotations

import functools
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from pipelines.feedback import FeedbackError, recall
from pipelines.incidents import IncidentService
from pipelines.schemas import AnalyzeRequest, FeedbackCreate
from pipelines.simulate import simulate
from pipelines.store import IncidentNotFound, Store
from tests.support.local_pipeline import local_pipeline


def _service(store: Store) -> IncidentService:
    return IncidentService(store, local_pipeline(), context_window_seconds=300,
                           recall=functools.partial(recall, store))


async def _analyze(service: IncidentService, scenario: str, at: datetime, seed: int = 3, rename: dict | None = None):
    """Analyze a simulated incident; ``rename`` gives its services other names (a signature no other test has)."""
    text = json.dumps(simulate(scenario, seed=seed, alert_time=at).request_body())
    for old, new in (rename or {}).items():
        text = text.replace(old, new)
    return await service.analyze_request(AnalyzeRequest.model_validate_json(text))


def _now() -> datetime:
    """On whole minutes, so like incidents fall into like time buckets."""
    return datetime.now(timezone.utc).replace(second=0, microsecond=0)


async def test_feedback_on_a_makes_the_analysis_of_a_like_incident_b_cite_and_raise_it(store: Store) -> None:
    service = _service(store)
    orders = f"orders-{uuid.uuid4().hex[:8]}"
    rename = {"orders-service": orders}
    a = await _analyze(service, "db_pool_exhaustion", _now() - timedelta(hours=2), rename=rename)
    second = a.hypotheses[1]
    assert second.service == orders, "the scenario's second hypothesis (its top is orders-db)"
    given = await store.add_feedback(a.incident_id, FeedbackCreate(rank=2, notes="raised the pool of orders-service"))
    assert (given.confirmed_rank, given.service, given.cause) == (2, orders, second.cause)

    b = await _analyze(service, "db_pool_exhaustion", _now(), rename=rename)
    assert b.incident_id != a.incident_id
    raised = next(h for h in b.hypotheses if h.service == orders)
    line = raised.evidence[-1]
    assert line.startswith("[history] ") and f"incident {a.incident_id}" in line
    assert f"were {orders} (database)" in line and "raised the pool of orders-service" in line
    assert raised.confidence > second.confidence and f"raised from {second.confidence:.2f}" in line
    stored = await store.get_incident(b.incident_id)
    assert stored.analysis is not None and stored.analysis.hypotheses == b.hypotheses, "the citation is stored"

    similar = await store.similar(b.incident_id, limit=5)
    assert similar[0].incident_id == a.incident_id and similar[0].similarity >= 0.9
    assert similar[0].feedback is not None and similar[0].feedback.notes == "raised the pool of orders-service"
    assert "orders-db" in similar[0].shared_services and similar[0].same_category


async def test_without_feedback_nothing_is_cited(store: Store) -> None:
    service = _service(store)
    rename = {"checkout-service": f"checkout-{uuid.uuid4().hex[:8]}"}
    first = await _analyze(service, "memory_leak", _now() - timedelta(hours=1), rename=rename)
    again = await _analyze(service, "memory_leak", _now(), rename=rename)
    assert not any(e.startswith("[history]") for h in again.hypotheses for e in h.evidence)
    ranked = await store.similar(again.incident_id)
    assert ranked[0].incident_id == first.incident_id and ranked[0].similarity >= 0.9 and ranked[0].feedback is None
    assert all(r.incident_id != again.incident_id for r in ranked)
    assert [r.similarity for r in ranked] == sorted((r.similarity for r in ranked), reverse=True)


async def test_bad_feedback_is_refused_naming_what_was_wrong(store: Store) -> None:
    with pytest.raises(IncidentNotFound):
        await store.add_feedback(str(uuid.uuid4()), FeedbackCreate(rank=1))
    with pytest.raises(IncidentNotFound):
        await store.list_feedback("not-a-uuid")
    service = _service(store)
    analysis = await _analyze(service, "credential_stuffing", _now())
    out_of_range = len(analysis.hypotheses) + 1
    with pytest.raises(FeedbackError, match=f"rank: {out_of_range} is out of range"):
        await store.add_feedback(analysis.incident_id, FeedbackCreate(rank=out_of_range))
    assert await store.list_feedback(analysis.incident_id) == [], "nothing stored"


async def test_every_feedback_is_kept_audited_and_the_latest_is_in_force(store: Store) -> None:
    service = _service(store)
    analysis = await _analyze(service, "third_party_outage", _now())
    first = await store.add_feedback(analysis.incident_id, FeedbackCreate(rank=1, notes="restarted; db password=Hunter2-Secret-99"))
    latest = await store.add_feedback(analysis.incident_id, FeedbackCreate(category="network", service="egress-proxy"))
    kept = await store.list_feedback(analysis.incident_id)
    assert [f.id for f in kept] == [latest.id, first.id]
    assert latest.confirmed_rank is None, "no hypothesis named egress-proxy"
    assert "Hunter2-Secret-99" not in first.notes and "restarted" in first.notes, "notes are redacted before they are stored"
    audit = await store.list_audit(incident_id=analysis.incident_id, action="feedback.add")
    assert audit.total == 2 and {r.detail["service"] for r in audit.items} == {"egress-proxy", first.service}


async def test_stats_count_top1_and_top3_from_the_feedback_in_force(store: Store) -> None:
    service = _service(store)
    before = (await store.stats()).accuracy
    assert before is not None
    one = await _analyze(service, "dns_failure", _now() - timedelta(minutes=30))
    two = await _analyze(service, "dns_failure", _now() - timedelta(minutes=15), seed=4)
    three = await _analyze(service, "cpu_saturation", _now())
    await store.add_feedback(one.incident_id, FeedbackCreate(rank=2))  # replaced below: only the latest counts
    await store.add_feedback(one.incident_id, FeedbackCreate(rank=1))
    await store.add_feedback(two.incident_id, FeedbackCreate(rank=2))
    await store.add_feedback(three.incident_id, FeedbackCreate(category="security", service="nowhere"))
    after = (await store.stats()).accuracy
    assert after is not None
    assert (after.feedback - before.feedback, after.top1 - before.top1, after.top3 - before.top3) == (3, 1, 2)
    assert after.top1_rate == pytest.approx(after.top1 / after.feedback, abs=1e-4)
    security = after.by_category["security"]
    old = before.by_category.get("security")
    assert security.feedback - (old.feedback if old else 0) == 1
    assert security.top3 - (old.top3 if old else 0) == 0


async def test_analyses_stored_before_signatures_are_signed_at_start(store: Store, database_url: str) -> None:
    service = _service(store)
    analysis = await _analyze(service, "cpu_saturation", _now(), seed=9)
    async with store._pool.acquire() as conn:
        await conn.execute("UPDATE analyses SET signature = NULL WHERE incident_id = $1", uuid.UUID(analysis.incident_id))
    again = await Store.connect(database_url)
    try:
        async with again._pool.acquire() as conn:
            signature = await conn.fetchval("SELECT signature FROM analyses WHERE incident_id = $1",
                                            uuid.UUID(analysis.incident_id))
    finally:
        await again.close()
    assert signature is not None and "orders-service" in signature["services"]
