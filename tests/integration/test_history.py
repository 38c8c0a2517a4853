"""History that stays fast, against a real PostgreSQL: migration 006 keeps every row of a database
filled by the previous schema, monthly partitions are made ahead and pick up waiting rows, and
archival moves old resolved incidents out of the list (not out of reach) and never touches the
audit log. Each test has a database of its own (``fresh_database_url``)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pipelines import history
from pipelines.schemas import Alert, Analysis, Category, Classification, Hypothesis, RemediationStep
from pipelines.similarity import signature_of
from pipelines.store import MIGRATIONS_DIR, Store

NOW = datetime.now(timezone.utc).replace(microsecond=0)
REPO = Path(__file__).resolve().parents[2]


def _analysis(incident_id: str, cause: str, category: Category = Category.database) -> Analysis:
    return Analysis(
        incident_id=incident_id,
        summary=f"{cause} on db",
        classification=Classification(category=category, confidence=0.8),
        hypotheses=[
            Hypothesis(cause=cause, confidence=0.7, evidence=["pool wait 30s"], category=category, service="db"),
            Hypothesis(cause="slow queries", confidence=0.2, evidence=["p99 4s"], category=category, service="api"),
        ],
        remediation=[RemediationStep(step=1, action="raise the pool", expected_outcome="waits end", risk_level="low")],
        reasoner="evidence",
        timings={"total": 1.25},
    )


def _alert(service: str, at: datetime, ends_at: datetime | None = None) -> Alert:
    return Alert(name="HighErrorRate", severity="critical", timestamp=at, ends_at=ends_at,
                 labels={"service": service, "alertname": "HighErrorRate"})


async def _apply_before_006(url: str) -> None:
    """The database as the previous release left it: migrations 001-005, recorded as Store.migrate does."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now())")
        for path in sorted(MIGRATIONS_DIR.glob("00[1-5]_*.sql")):
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
    finally:
        await conn.close()


async def _fill_before_006(url: str) -> dict[str, uuid.UUID]:
    """Incidents of three months (two resolved, one open) with their alerts, analyses (one unsigned, as
    before 005), feedback, outbox rows and attempts, deliveries and audit rows, written with the
    previous release's SQL."""
    ids = {"old": uuid.uuid4(), "last_month": uuid.uuid4(), "now": uuid.uuid4()}
    starts = {"old": NOW - timedelta(days=400), "last_month": NOW - timedelta(days=35), "now": NOW - timedelta(hours=1)}
    conn = await asyncpg.connect(url)
    try:
        for name, key in ids.items():
            alert = _alert(f"svc-{name}", starts[name])
            payload = json.dumps(alert.model_dump(mode="json"))
            resolved = starts[name] + timedelta(hours=2) if name != "now" else None
            await conn.execute(
                "INSERT INTO incidents (id, fingerprint, alert_name, service, severity, status, category, started_at,"
                " resolved_at, alert) VALUES ($1, $2, 'HighErrorRate', $3, 'critical', $4, 'database', $5, $6, $7::jsonb)",
                key, alert.identity(), f"svc-{name}", "resolved" if resolved else "open", starts[name], resolved, payload)
            await conn.execute(
                "INSERT INTO alerts (incident_id, fingerprint, starts_at, status, repeats, payload)"
                " VALUES ($1, $2, $3, 'firing', 3, $4::jsonb)", key, alert.identity(), starts[name], payload)
            if resolved:
                await conn.execute(
                    "INSERT INTO alerts (incident_id, fingerprint, starts_at, status, payload)"
                    " VALUES ($1, $2, $3, 'resolved', $4::jsonb)", key, alert.identity(), starts[name], payload)
            for n, cause in enumerate(("pool exhausted", f"pool exhausted again ({name})")):
                analysis = _analysis(str(key), cause)
                body = analysis.model_dump(mode="json")
                signature = json.dumps(signature_of(analysis).model_dump(mode="json")) if name != "old" else None
                await conn.execute(
                    "INSERT INTO analyses (incident_id, created_at, reasoner, category, confidence, degraded,"
                    " duration_seconds, top_service, top_cause, summary, hypotheses, remediation, body, signature)"
                    " VALUES ($1, $2, 'evidence', 'database', 0.8, false, 1.25, 'db', $3, $4, $5::jsonb, $6::jsonb,"
                    " $7::jsonb, $8::jsonb)",
                    key, starts[name] + timedelta(minutes=1 + n), cause, body["summary"],
                    json.dumps(body["hypotheses"]), json.dumps(body["remediation"]), json.dumps(body), signature)
            analysis_id = await conn.fetchval("SELECT max(id) FROM analyses WHERE incident_id = $1", key)
            await conn.execute(
                "INSERT INTO feedback (incident_id, analysis_id, actor, rank, confirmed_rank, category, service, cause)"
                " VALUES ($1, $2, 'alice', 1, 1, 'database', 'db', 'pool exhausted')", key, analysis_id)
            outbox = await conn.fetchval(
                "INSERT INTO notification_outbox (incident_id, channel, event, message, status, attempts)"
                " VALUES ($1, 'slack', 'trigger', '{\"text\": \"db\"}'::jsonb, 'delivered', 1) RETURNING id", key)
            await conn.execute(
                "INSERT INTO notification_attempts (outbox_id, attempt, outcome, http_status, reason)"
                " VALUES ($1, 1, 'delivered', 200, 'ok')", outbox)
            await conn.execute("INSERT INTO alert_deliveries (id, incident_id, created) VALUES ($1, $2, true)",
                               f"rca.alerts:0:{name}", key)
            await conn.execute(
                "INSERT INTO audit_log (actor, actor_kind, action, incident_id, detail)"
                " VALUES ('system', 'system', 'incident.open', $1, '{}'::jsonb)", key)
    finally:
        await conn.close()
    return ids


_TABLES = ("incidents", "alerts", "analyses", "feedback", "notification_outbox", "notification_attempts",
           "alert_deliveries", "audit_log")


async def _rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every history table, in id order, without the columns 006 adds or fills."""
    conn = await asyncpg.connect(url)
    try:
        tables = {}
        for table in _TABLES:
            rows = [dict(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY id")]
            tables[table] = [{k: v for k, v in r.items() if k not in ("incident_started_at", "signature")} for r in rows]
        return tables
    finally:
        await conn.close()


async def test_migration_006_keeps_every_row_and_every_read_of_a_database_of_the_previous_schema(
        fresh_database_url: str) -> None:
    await _apply_before_006(fresh_database_url)
    ids = await _fill_before_006(fresh_database_url)
    before = await _rows(fresh_database_url)

    store = await Store.connect(fresh_database_url)  # applies 006, signs the unsigned analyses
    try:
        after = await _rows(fresh_database_url)
        assert after == before  # every row, every column, the same ids
        async with store._pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM analyses WHERE signature IS NULL") == 0
            placed = {r["id"]: r["part"] for r in await conn.fetch(
                "SELECT id, tableoid::regclass::text AS part FROM incidents")}
            misplaced = await conn.fetchval(
                "SELECT count(*) FROM alerts a JOIN incident_keys k ON k.id = a.incident_id"
                " WHERE a.incident_started_at <> k.started_at")
            assert misplaced == 0
            for name, key in ids.items():
                start = await conn.fetchval("SELECT started_at FROM incidents WHERE id = $1", key)
                assert placed[key] == f"incidents_y{start:%Y}m{start:%m}"  # in its month, not the default
            for table in ("incidents", "alerts", "analyses"):  # the months ahead exist
                for month in history.month_starts(NOW):
                    assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{table}_y{month:%Y}m{month:%m}")

        for name, key in ids.items():
            incident = await store.get_incident(str(key))
            row = next(r for r in before["incidents"] if r["id"] == key)
            assert (incident.service, incident.status, incident.started_at, incident.resolved_at) == (
                row["service"], row["status"], row["started_at"], row["resolved_at"])
            assert incident.analysis is not None
            assert incident.analysis.hypotheses[0].cause == f"pool exhausted again ({name})"  # the latest one
            feedback = await store.list_feedback(str(key))
            assert [f.actor for f in feedback] == ["alice"]
            deliveries = await store.notifications(str(key))
            assert [d.channel for d in deliveries] == ["slack"]
        page = await store.list_incidents()
        assert [i.id for i in page.items] == [str(ids["now"]), str(ids["last_month"]), str(ids["old"])]
        assert page.total == 3
        similar = await store.similar(str(ids["now"]))
        assert {s.incident_id for s in similar} == {str(ids["old"]), str(ids["last_month"])}

        # the store of this release writes on: new ids continue the old sequences
        incident, created = await store.record_alert(_alert("svc-new", NOW))
        await store.save_analysis(incident.id, _analysis(incident.id, "pool exhausted"))
        assert created
        async with store._pool.acquire() as conn:
            assert await conn.fetchval("SELECT min(id) FROM alerts WHERE incident_id = $1", uuid.UUID(incident.id)) > max(
                r["id"] for r in before["alerts"])
        assert (await store.get_incident(incident.id)).analysis is not None
    finally:
        await store.close()


async def test_a_month_without_partition_waits_in_the_default_and_moves_in_when_its_partition_is_made(
        fresh_database_url: str) -> None:
    store = await Store.connect(fresh_database_url)
    try:
        later = NOW.replace(day=1) + timedelta(days=31 * 8)  # beyond the months made ahead
        incident, _ = await store.record_alert(_alert("svc-future", later))
        await store.save_analysis(incident.id, _analysis(incident.id, "pool exhausted"))
        key = uuid.UUID(incident.id)

        async def where() -> list[str]:
            async with store._pool.acquire() as conn:
                return [await conn.fetchval(f"SELECT tableoid::regclass::text FROM {t} WHERE {c} = $1 LIMIT 1", key)
                        for t, c in (("incidents", "id"), ("alerts", "incident_id"), ("analyses", "incident_id"))]

        assert await where() == ["incidents_default", "alerts_default", "analyses_default"]
        async with store._pool.acquire() as conn:
            made = await history.ensure_partitions(conn, now=later, months_ahead=0)
        assert made == 3
        month = f"y{later:%Y}m{later:%m}"
        assert await where() == [f"incidents_{month}", f"alerts_{month}", f"analyses_{month}"]
        again = await store.get_incident(incident.id)
        assert again.analysis is not None and again.started_at == later
        async with store._pool.acquire() as conn:
            assert await history.ensure_partitions(conn, now=later, months_ahead=0) == 0  # idempotent
    finally:
        await store.close()


async def _audit_rows(store: Store) -> list[dict[str, Any]]:
    async with store._pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch("SELECT * FROM audit_log ORDER BY id")]


async def _history_of_three(store: Store) -> dict[str, str]:
    """An incident resolved 200 days ago (with analysis and feedback), one resolved yesterday, one open
    since 200 days."""
    old_start = NOW - timedelta(days=200)
    ids = {}
    for name, start, ends in (("old", old_start, old_start + timedelta(hours=1)),
                              ("recent", NOW - timedelta(days=2), NOW - timedelta(days=1)),
                              ("open", old_start, None)):
        incident, _ = await store.record_alert(_alert(f"svc-{name}", start))
        await store.save_analysis(incident.id, _analysis(incident.id, f"cause of {name}"))
        if ends is not None:
            await store.resolve(_alert(f"svc-{name}", start, ends_at=ends))
        ids[name] = incident.id
    from pipelines.schemas import FeedbackCreate

    await store.add_feedback(ids["old"], FeedbackCreate(rank=1, notes="right"))
    return ids


async def test_archival_moves_old_resolved_incidents_out_of_the_list_but_not_out_of_reach(
        fresh_database_url: str) -> None:
    store = await Store.connect(fresh_database_url)
    try:
        ids = await _history_of_three(store)
        audit_before = await _audit_rows(store)

        dry = await store.archive(90, dry_run=True)
        assert (dry.due, dry.moved, dry.dry_run) == (1, 0, True)
        assert (await store.list_incidents()).total == 3

        seen: list[history.ArchiveProgress] = []
        done = await store.archive(90, progress=seen.append)
        assert (done.due, done.moved) == (1, 1)
        assert seen[-1].moved == 1

        live = await store.list_incidents()
        assert {i.id for i in live.items} == {ids["recent"], ids["open"]} and live.total == 2
        every = await store.list_incidents(include_archived=True)
        assert {i.id for i in every.items} == set(ids.values()) and every.total == 3
        archived_in_list = next(i for i in every.items if i.id == ids["old"])
        assert archived_in_list.analysis is not None and archived_in_list.analysis.hypotheses[0].cause == "cause of old"
        only_archived = await store.list_incidents(include_archived=True, service="svc-old")
        assert [i.id for i in only_archived.items] == [ids["old"]]

        detail = await store.get_incident(ids["old"])  # the detail still finds it
        assert detail.status == "resolved" and detail.analysis is not None
        assert detail.analysis.hypotheses[0].cause == "cause of old"
        assert [f.notes for f in await store.list_feedback(ids["old"])] == ["right"]
        assert (await store.stats()).incidents == 2  # the stats read live history

        async with store._pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM alerts WHERE incident_id = $1", uuid.UUID(ids["old"])) == 0
            assert await conn.fetchval("SELECT count(*) FROM alerts_archive WHERE incident_id = $1",
                                       uuid.UUID(ids["old"])) == 2
            assert await conn.fetchval("SELECT archived_at IS NOT NULL FROM incident_keys WHERE id = $1",
                                       uuid.UUID(ids["old"]))

        # the audit log: every earlier row as it was, plus one row that says what the run archived
        audit_after = await _audit_rows(store)
        assert audit_after[:len(audit_before)] == audit_before
        added = audit_after[len(audit_before):]
        assert [r["action"] for r in added] == ["history.archive"]
        assert added[0]["detail"]["moved"] == 1 and added[0]["detail"]["retention_days"] == 90

        again = await store.archive(90)  # nothing left to archive: nothing moved, nothing audited
        assert (again.due, again.moved) == (0, 0)
        assert len(await _audit_rows(store)) == len(audit_after)
    finally:
        await store.close()


async def test_archival_cannot_change_the_audit_log_even_when_asked_directly(fresh_database_url: str) -> None:
    store = await Store.connect(fresh_database_url)
    try:
        ids = await _history_of_three(store)
        await store.archive(90)
        async with store._pool.acquire() as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute("DELETE FROM audit_log WHERE incident_id = $1", uuid.UUID(ids["old"]))
            kept = await conn.fetch("SELECT action FROM audit_log WHERE incident_id = $1 ORDER BY id",
                                    uuid.UUID(ids["old"]))
        assert [r["action"] for r in kept] == ["incident.open", "analysis.save", "incident.resolve", "feedback.add"]
    finally:
        await store.close()


def _rca(*args: str, database_url: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCA_")}
    env["RCA_DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


async def test_rca_db_archive_dry_run_counts_and_the_run_archives(fresh_database_url: str) -> None:
    store = await Store.connect(fresh_database_url)
    try:
        ids = await _history_of_three(store)
    finally:
        await store.close()
    dry = _rca("db", "archive", "--dry-run", "--json", database_url=fresh_database_url)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {"dry_run": True, "due": 1, "moved": 0, "retention_days": 90}
    run = _rca("db", "archive", "--retention-days", "30", database_url=fresh_database_url)
    assert run.returncode == 0, run.stderr
    assert "1 incidents resolved more than 30 days ago archived" in run.stdout
    bad = _rca("db", "archive", "--retention-days", "0", database_url=fresh_database_url)
    assert bad.returncode == 2 and "retention_days" in bad.stderr
    store = await Store.connect(fresh_database_url)
    try:
        assert {i.id for i in (await store.list_incidents()).items} == {ids["recent"], ids["open"]}
    finally:
        await store.close()


async def test_the_list_counts_up_to_its_limit_and_says_when_more_match(
        fresh_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.store as store_module

    monkeypatch.setattr(store_module, "LIST_COUNT_LIMIT", 2)
    store = await Store.connect(fresh_database_url)
    try:
        ids = await _history_of_three(store)
        capped = await store.list_incidents(page_size=1)
        assert (capped.total, capped.total_capped, len(capped.items)) == (2, True, 1)
        exact = await store.list_incidents(service="svc-open")
        assert (exact.total, exact.total_capped, [i.id for i in exact.items]) == (1, False, [ids["open"]])
        assert (await store.list_incidents(page=3, page_size=1)).items  # paging goes on past the count
    finally:
        await store.close()


async def test_the_history_job_archives_on_its_period_and_a_failed_pass_does_not_stop_it(
        fresh_database_url: str) -> None:
    store = await Store.connect(fresh_database_url)
    passes: list[str] = []
    archived = asyncio.Event()

    async def run_once() -> None:  # what the Ingress' pass does: partitions ahead, then archival
        if not passes:
            passes.append("failed")
            raise ConnectionError("database down for this pass")
        await store.ensure_partitions()
        done = await store.archive(90)
        passes.append(f"moved {done.moved}")
        archived.set()

    job = history.HistoryJob(run_once, period_seconds=0.05)
    try:
        ids = await _history_of_three(store)
        job.start()
        await asyncio.wait_for(archived.wait(), timeout=60)
        assert passes[:2] == ["failed", "moved 1"]
        assert {i.id for i in (await store.list_incidents()).items} == {ids["recent"], ids["open"]}
    finally:
        job.cancel()
        await store.close()
