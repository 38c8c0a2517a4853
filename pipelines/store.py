"""PostgreSQL storage of incidents, alerts and analyses (asyncpg).

Every statement is parameterized, and no session state is kept between statements
(advisory locks are transaction-scoped, prepared statements are not cached), so the
store works behind PgBouncer in transaction mode.

Incidents are idempotent: an alert is identified by (fingerprint, startsAt). A redelivered
or re-sent alert finds its incident instead of creating another; an alert of a service that
already has an open incident started within ``group_window`` joins it.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg

from pipelines.schemas import Alert, Analysis, Category, Incident, IncidentPage, Severity, Stats

log = logging.getLogger(__name__)

DEFAULT_GROUP_WINDOW = timedelta(minutes=10)
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class IncidentNotFound(LookupError):
    def __init__(self, incident_id: str) -> None:
        super().__init__(f"incident {incident_id!r} not found")
        self.incident_id = incident_id


def _parse_uuid(incident_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(incident_id)
    except (ValueError, AttributeError, TypeError):
        raise IncidentNotFound(incident_id) from None


def _migrations() -> list[tuple[str, str]]:
    files = sorted(MIGRATIONS_DIR.glob("*.sql"))
    return [(p.name, p.read_text()) for p in files]


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Store:
    """The one place that reads and writes the database."""

    def __init__(self, pool: asyncpg.Pool, group_window: timedelta = DEFAULT_GROUP_WINDOW) -> None:
        self._pool = pool
        self._group_window = group_window

    @classmethod
    async def connect(
        cls, database_url: str, *, min_size: int = 1, max_size: int = 5, group_window: timedelta = DEFAULT_GROUP_WINDOW
    ) -> "Store":
        """Connect, apply pending migrations, and return a ready store."""
        pool = await asyncpg.create_pool(
            database_url,
            min_size=min_size,
            max_size=max_size,
            statement_cache_size=0,
            init=_init_connection,
            timeout=10,
        )
        store = cls(pool, group_window)
        await store.migrate()
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(7240001)")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for name, sql in _migrations():
                if name not in done:
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                    log.info("applied migration %s", name)

    async def ping(self) -> bool:
        async with self._pool.acquire() as conn:
            return await conn.fetchval("SELECT 1") == 1

    # ------------------------------------------------------------ alerts -> incidents

    async def record_alert(self, alert: Alert) -> tuple[Incident, bool]:
        """Attach a firing alert to its incident, creating one when needed.

        Returns the incident and whether it was created by this call.
        """
        fingerprint = alert.identity()
        service = alert.service
        payload = alert.model_dump(mode="json")
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", service or fingerprint)
            existing = await conn.fetchval(
                "UPDATE alerts SET repeats = repeats + 1 WHERE fingerprint = $1 AND starts_at = $2 AND status = 'firing'"
                " RETURNING incident_id",
                fingerprint,
                alert.timestamp,
            )
            if existing is not None:
                await conn.execute("UPDATE incidents SET updated_at = now() WHERE id = $1", existing)
                return await self._get(conn, existing), False
            joined = None
            if service:
                joined = await conn.fetchval(
                    "SELECT id FROM incidents WHERE status = 'open' AND service = $1"
                    " AND started_at BETWEEN $2 AND $3 ORDER BY started_at DESC LIMIT 1",
                    service,
                    alert.timestamp - self._group_window,
                    alert.timestamp + self._group_window,
                )
            created = joined is None
            incident_id = uuid.uuid4() if created else joined
            if created:
                await conn.execute(
                    "INSERT INTO incidents (id, fingerprint, alert_name, service, severity, started_at, alert)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    incident_id,
                    fingerprint,
                    alert.name,
                    service,
                    alert.severity.value,
                    alert.timestamp,
                    payload,
                )
            await conn.execute(
                "INSERT INTO alerts (incident_id, fingerprint, starts_at, status, payload) VALUES ($1, $2, $3, 'firing', $4)",
                incident_id,
                fingerprint,
                alert.timestamp,
                payload,
            )
            return await self._get(conn, incident_id), created

    async def resolve(self, alert: Alert) -> Incident | None:
        """Close the incident of a resolved alert and record when; None if no incident knows it."""
        fingerprint = alert.identity()
        resolved_at = alert.ends_at or datetime.now(timezone.utc)
        async with self._pool.acquire() as conn, conn.transaction():
            incident_id = await conn.fetchval(
                "SELECT incident_id FROM alerts WHERE fingerprint = $1 AND starts_at = $2 AND status = 'firing'",
                fingerprint,
                alert.timestamp,
            )
            if incident_id is None:
                return None
            await conn.execute(
                "INSERT INTO alerts (incident_id, fingerprint, starts_at, status, payload) VALUES ($1, $2, $3, 'resolved', $4)"
                " ON CONFLICT (fingerprint, starts_at, status) DO NOTHING",
                incident_id,
                fingerprint,
                alert.timestamp,
                alert.model_dump(mode="json"),
            )
            still_firing = await conn.fetchval(
                "SELECT count(*) FROM alerts a WHERE a.incident_id = $1 AND a.status = 'firing' AND NOT EXISTS"
                " (SELECT 1 FROM alerts r WHERE r.incident_id = a.incident_id AND r.fingerprint = a.fingerprint"
                "  AND r.starts_at = a.starts_at AND r.status = 'resolved')",
                incident_id,
            )
            if still_firing == 0:
                await conn.execute(
                    "UPDATE incidents SET status = 'resolved', resolved_at = COALESCE(resolved_at, $2), updated_at = now()"
                    " WHERE id = $1",
                    incident_id,
                    resolved_at,
                )
            return await self._get(conn, incident_id)

    async def save_analysis(self, incident_id: str, analysis: Analysis) -> None:
        top = analysis.hypotheses[0]
        body = analysis.model_dump(mode="json")
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO analyses (incident_id, reasoner, category, confidence, degraded, duration_seconds,"
                " top_service, top_cause, summary, hypotheses, remediation, body)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                _parse_uuid(incident_id),
                analysis.reasoner,
                analysis.classification.category.value,
                analysis.classification.confidence,
                analysis.degraded,
                analysis.timings.get("total"),
                top.service,
                top.cause,
                analysis.summary,
                body["hypotheses"],
                body["remediation"],
                body,
            )
            await conn.execute(
                "UPDATE incidents SET category = $2, updated_at = now() WHERE id = $1",
                _parse_uuid(incident_id),
                analysis.classification.category.value,
            )

    # ------------------------------------------------------------ reads

    async def get_incident(self, incident_id: str) -> Incident:
        key = _parse_uuid(incident_id)
        async with self._pool.acquire() as conn:
            return await self._get(conn, key)

    async def has_analysis(self, incident_id: str) -> bool:
        async with self._pool.acquire() as conn:
            return bool(
                await conn.fetchval("SELECT EXISTS (SELECT 1 FROM analyses WHERE incident_id = $1)", _parse_uuid(incident_id))
            )

    async def list_incidents(
        self,
        *,
        page: int = 1,
        page_size: int = 20,
        category: Category | None = None,
        service: str | None = None,
        severity: Severity | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> IncidentPage:
        where, args = [], []
        for column, value in (
            ("category", category.value if category else None),
            ("service", service),
            ("severity", severity.value if severity else None),
            ("status", status),
        ):
            if value is not None:
                args.append(value)
                where.append(f"i.{column} = ${len(args)}")
        if since is not None:
            args.append(since)
            where.append(f"i.started_at >= ${len(args)}")
        if until is not None:
            args.append(until)
            where.append(f"i.started_at < ${len(args)}")
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        async with self._pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM incidents i {clause}", *args)
            rows = await conn.fetch(
                f"{_INCIDENT_SELECT} {clause} ORDER BY i.started_at DESC, i.id"
                f" LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
                *args,
                page_size,
                (page - 1) * page_size,
            )
        return IncidentPage(items=[_incident(r) for r in rows], page=page, page_size=page_size, total=total)

    async def stats(self) -> Stats:
        async with self._pool.acquire() as conn:
            total = await conn.fetchval("SELECT count(*) FROM incidents")
            by_category = await conn.fetch(
                "SELECT COALESCE(category, 'unclassified') AS k, count(*) AS n FROM incidents GROUP BY 1"
            )
            by_severity = await conn.fetch("SELECT severity AS k, count(*) AS n FROM incidents GROUP BY 1")
            latency = await conn.fetchrow(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_seconds) AS p50,"
                " percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_seconds) AS p95 FROM analyses"
            )
            per_hour = await conn.fetch(
                "SELECT date_trunc('hour', started_at) AS hour, count(*) AS n FROM incidents"
                " WHERE started_at >= now() - interval '24 hours' GROUP BY 1 ORDER BY 1"
            )
        return Stats(
            incidents=total,
            by_category={r["k"]: r["n"] for r in by_category},
            by_severity={r["k"]: r["n"] for r in by_severity},
            latency_p50_seconds=latency["p50"],
            latency_p95_seconds=latency["p95"],
            incidents_per_hour=[{"hour": r["hour"].isoformat(), "incidents": r["n"]} for r in per_hour],
        )

    async def _get(self, conn: asyncpg.Connection, incident_id: uuid.UUID) -> Incident:
        row = await conn.fetchrow(f"{_INCIDENT_SELECT} WHERE i.id = $1", incident_id)
        if row is None:
            raise IncidentNotFound(str(incident_id))
        return _incident(row)


_INCIDENT_SELECT = (
    "SELECT i.*, a.body AS analysis FROM incidents i LEFT JOIN LATERAL"
    " (SELECT body FROM analyses WHERE incident_id = i.id ORDER BY created_at DESC, id DESC LIMIT 1) a ON true"
)


def _incident(row: Any) -> Incident:
    return Incident(
        id=str(row["id"]),
        alert_name=row["alert_name"],
        service=row["service"],
        severity=row["severity"],
        status=row["status"],
        category=row["category"],
        fingerprint=row["fingerprint"],
        started_at=row["started_at"],
        resolved_at=row["resolved_at"],
        created_at=row["created_at"],
        alert=Alert.model_validate(row["alert"]),
        analysis=Analysis.model_validate(row["analysis"]) if row["analysis"] else None,
    )
