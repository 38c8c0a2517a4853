"""PostgreSQL storage of incidents, alerts and analyses (asyncpg).

Every statement is parameterized, and no session state is kept between statements
(advisory locks are transaction-scoped, prepared statements are not cached), so the
store works behind PgBouncer in transaction mode.

Every write takes the audit context of who makes it (default: the actor bound to the running
request, see ``pipelines/audit.py``) and appends its audit row in the same transaction. What
is stored passes the redaction (``pipelines/reasoning/redaction.py``) first: alert payloads
here, analyses in the pipeline.

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
from typing import Any, Callable
from urllib.parse import urlsplit

import asyncpg
from pydantic import TypeAdapter

from pipelines import audit as audit_trail
from pipelines import feedback as feedback_rules
from pipelines import history
from pipelines.audit import AuditContext, AuditEntry, AuditPage, AuditRecord
from pipelines.auth import ApiKey, Role, StoredKey
from pipelines.notify.outbox import NotificationDelivery, Outbox, incident_deliveries
from pipelines.database import DatabaseUnavailable
from pipelines.reasoning.redaction import redact_value
from pipelines.schemas import Alert, Analysis, Category, Incident, IncidentPage, Severity, Stats
from pipelines.schemas import Accuracy, AccuracyCounts, Feedback, FeedbackCreate, Hypothesis, Signature, SimilarIncident
from pipelines.similarity import Likeness, rank_similar, signature_of
from pipelines.tls import describe_tls_error

log = logging.getLogger(__name__)

DEFAULT_GROUP_WINDOW = timedelta(minutes=10)
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class ApiKeyNotFound(LookupError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"API key {key_id!r} not found")
        self.key_id = key_id


class IncidentNotFound(LookupError):
    def __init__(self, incident_id: str) -> None:
        super().__init__(f"incident {incident_id!r} not found")
        self.incident_id = incident_id


def _parse_uuid(incident_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(incident_id)
    except (ValueError, AttributeError, TypeError):
        raise IncidentNotFound(incident_id) from None


def _uuid_or_none(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except (ValueError, AttributeError, TypeError):
        return None


def pg_safe(value: Any) -> Any:
    """``value`` as PostgreSQL can store it: text has no NUL and no lone surrogate (both are refused)."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {pg_safe(k): pg_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [pg_safe(v) for v in value]
    return value


def _payload(alert: Alert) -> dict[str, Any]:
    """The alert as stored: secrets in labels or annotations redacted."""
    payload, _ = redact_value(alert.model_dump(mode="json"))
    return pg_safe(payload)


#: deliveries are remembered this long: far beyond any Kafka retry of an unanswered alert
DELIVERY_MEMORY = timedelta(days=7)


async def _remember_delivery(conn: asyncpg.Connection, delivery: str | None, incident_id: Any, *, created: bool) -> None:
    """Note that this delivery was recorded (see ``record_alert``), forgetting week-old ones."""
    if not delivery:
        return
    await conn.execute(
        "INSERT INTO alert_deliveries (id, incident_id, created) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        pg_safe(delivery), incident_id, created,
    )
    if created:  # once per new incident is often enough to keep the table small
        await conn.execute("DELETE FROM alert_deliveries WHERE received_at < now() - $1::interval", DELIVERY_MEMORY)


async def _append(conn: asyncpg.Connection, entry: AuditEntry) -> None:
    """Append one audit row on ``conn`` (inside the caller's transaction when it has one)."""
    c = AuditContext.model_validate(pg_safe(entry.context.model_dump()))
    await conn.execute(
        "INSERT INTO audit_log (request_id, actor, actor_kind, key_id, role, client, method, route, action,"
        " incident_id, status, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        _uuid_or_none(c.request_id),
        c.actor,
        c.actor_kind,
        c.key_id,
        c.role,
        c.client,
        c.method,
        c.route,
        entry.action,
        _uuid_or_none(entry.incident_id),
        entry.status,
        pg_safe(entry.detail),
    )


def _migrations() -> list[tuple[str, str]]:
    files = sorted(MIGRATIONS_DIR.glob("*.sql"))
    return [(p.name, p.read_text()) for p in files]


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _pool(database_url: str, setting: str, min_size: int, max_size: int) -> asyncpg.Pool:
    """A connection pool without session state (PgBouncer-friendly); a refused certificate says so."""
    try:
        return await asyncpg.create_pool(
            database_url,
            min_size=min_size,
            max_size=max_size,
            statement_cache_size=0,
            init=_init_connection,
            timeout=10,
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # sslmode=verify-full&sslrootcert=<CA file> in the URL: a refused certificate says so, by hop
        parts = urlsplit(database_url)
        refused = describe_tls_error("PostgreSQL", f"{parts.hostname}:{parts.port or 5432}", exc)
        if refused:
            raise DatabaseUnavailable(f"{refused} (sslrootcert= in {setting} names the CA)") from exc
        raise


class Store:
    """The one place that reads and writes the database."""

    def __init__(
        self, pool: asyncpg.Pool, group_window: timedelta = DEFAULT_GROUP_WINDOW, outbox: Outbox | None = None,
        read_pool: asyncpg.Pool | None = None,
    ) -> None:
        self._pool = pool
        # list, detail, stats and similar reads (RCA_DATABASE_READ_URL, a replica); writes stay on the primary
        self._read_pool = read_pool or pool
        self._group_window = group_window
        self._outbox = outbox  # notifications queued in the analysis' and the resolve's transactions

    @classmethod
    async def connect(
        cls, database_url: str, *, min_size: int = 1, max_size: int = 5, group_window: timedelta = DEFAULT_GROUP_WINDOW,
        outbox: Outbox | None = None, read_url: str | None = None,
    ) -> "Store":
        """Connect, apply pending migrations, and return a ready store.

        ``read_url`` (RCA_DATABASE_READ_URL): a read replica for the list, detail, stats and
        similar reads; never migrated or written through.
        """
        pool = await _pool(database_url, "RCA_DATABASE_URL", min_size, max_size)
        read_pool = await _pool(read_url, "RCA_DATABASE_READ_URL", min_size, max_size) if read_url else None
        store = cls(pool, group_window, outbox, read_pool)
        await store.migrate()
        return store

    async def close(self) -> None:
        if self._read_pool is not self._pool:
            await self._read_pool.close()
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
            await sign_unsigned_analyses(conn)
            await history.ensure_partitions(conn)

    async def ping(self) -> bool:
        async with self._pool.acquire() as conn:
            return await conn.fetchval("SELECT 1") == 1

    # ------------------------------------------------------------ alerts -> incidents

    async def record_alert(
        self, alert: Alert, audit: AuditContext | None = None, delivery: str | None = None
    ) -> tuple[Incident, bool]:
        """Attach a firing alert to its incident, creating one when needed.

        Returns the incident and whether it was created by this call. ``delivery`` names one
        delivery of the alert (Kafka's topic:partition:offset): the same delivery again is a
        retry, answered as the first time and not counted as a repeat.
        """
        fingerprint = pg_safe(alert.identity())
        service = pg_safe(alert.service)
        payload = _payload(alert)
        who = audit or audit_trail.current()
        detail = {"alert": alert.name, "fingerprint": fingerprint}
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", service or fingerprint)
            if delivery:
                seen = await conn.fetchrow("SELECT incident_id, created FROM alert_deliveries WHERE id = $1", delivery)
                if seen is not None:
                    return await self._get(conn, seen["incident_id"]), seen["created"]
            existing = await conn.fetchval(
                "UPDATE alerts SET repeats = repeats + 1 WHERE fingerprint = $1 AND starts_at = $2 AND status = 'firing'"
                " RETURNING incident_id",
                fingerprint,
                alert.timestamp,
            )
            if existing is not None:
                await conn.execute("UPDATE incidents SET updated_at = now() WHERE id = $1", existing)
                await _append(conn, audit_trail.entry("incident.repeat", context=who, incident_id=str(existing), detail=detail))
                await _remember_delivery(conn, delivery, existing, created=False)
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
                await conn.execute("INSERT INTO incident_keys (id, started_at) VALUES ($1, $2)", incident_id,
                                   alert.timestamp)
                await conn.execute(
                    "INSERT INTO incidents (id, fingerprint, alert_name, service, severity, started_at, alert)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    incident_id,
                    fingerprint,
                    pg_safe(alert.name),
                    service,
                    alert.severity.value,
                    alert.timestamp,
                    payload,
                )
            await conn.execute(
                "INSERT INTO alerts (incident_id, incident_started_at, fingerprint, starts_at, status, payload)"
                f" VALUES ($1, {_STARTED_OF_1}, $2, $3, 'firing', $4)",
                incident_id,
                fingerprint,
                alert.timestamp,
                payload,
            )
            action = "incident.open" if created else "incident.join"
            await _append(conn, audit_trail.entry(action, context=who, incident_id=str(incident_id), detail=detail))
            await _remember_delivery(conn, delivery, incident_id, created=created)
            return await self._get(conn, incident_id), created

    async def resolve(self, alert: Alert, audit: AuditContext | None = None) -> Incident | None:
        """Close the incident of a resolved alert and record when; None if no incident knows it."""
        fingerprint = pg_safe(alert.identity())
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
                "INSERT INTO alerts (incident_id, incident_started_at, fingerprint, starts_at, status, payload)"
                f" VALUES ($1, {_STARTED_OF_1}, $2, $3, 'resolved', $4)"
                " ON CONFLICT (fingerprint, starts_at, status, incident_started_at) DO NOTHING",
                incident_id,
                fingerprint,
                alert.timestamp,
                _payload(alert),
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
                if self._outbox is not None:
                    await self._outbox.on_resolve(conn, incident_id, resolved_at)
            await _append(conn, audit_trail.entry(
                "incident.resolve" if still_firing == 0 else "alert.resolve", context=audit or audit_trail.current(),
                incident_id=str(incident_id), detail={"alert": alert.name, "fingerprint": fingerprint}))
            return await self._get(conn, incident_id)

    async def save_analysis(self, incident_id: str, analysis: Analysis, audit: AuditContext | None = None) -> None:
        body = pg_safe(analysis.model_dump(mode="json"))
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO analyses (incident_id, incident_started_at, reasoner, category, confidence, degraded,"
                " duration_seconds, top_service, top_cause, summary, hypotheses, remediation, body, signature)"
                f" VALUES ($1, {_STARTED_OF_1}, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                _parse_uuid(incident_id),
                analysis.reasoner,
                analysis.classification.category.value,
                analysis.classification.confidence,
                analysis.degraded,
                analysis.timings.get("total"),
                body["hypotheses"][0]["service"],
                body["hypotheses"][0]["cause"],
                body["summary"],
                body["hypotheses"],
                body["remediation"],
                body,
                pg_safe(signature_of(analysis).model_dump(mode="json")),
            )
            await conn.execute(
                "UPDATE incidents SET category = $2, updated_at = now() WHERE id = $1",
                _parse_uuid(incident_id),
                analysis.classification.category.value,
            )
            if self._outbox is not None:
                await self._outbox.on_analysis(conn, _parse_uuid(incident_id), analysis)
            await _append(conn, audit_trail.entry("analysis.save", context=audit or audit_trail.current(),
                                                  incident_id=incident_id, detail=audit_trail.analysis_detail(analysis)))

    # ------------------------------------------------------------ API keys

    async def create_api_key(
        self, key_id: str, name: str, role: Role, secret_hash: str, audit: AuditContext | None = None
    ) -> ApiKey:
        """Store a new key (its hash only) with its audit row."""
        who = audit or audit_trail.current()
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO api_keys (key_id, name, role, secret_hash, created_by) VALUES ($1, $2, $3, $4, $5)"
                " RETURNING *",
                key_id,
                pg_safe(name),
                role.value,
                secret_hash,
                pg_safe(who.actor),
            )
            await _append(conn, audit_trail.entry("api_key.create", context=who,
                                                  detail={"key_id": key_id, "name": name, "role": role.value}))
        return _api_key(row)

    async def revoke_api_key(self, key_id: str, audit: AuditContext | None = None) -> ApiKey:
        """Revoke a key (idempotent: revoking twice keeps the first time); ApiKeyNotFound if unknown."""
        who = audit or audit_trail.current()
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()), revoked_by = COALESCE(revoked_by, $2)"
                " WHERE key_id = $1 RETURNING *",
                pg_safe(key_id),
                pg_safe(who.actor),
            )
            if row is None:
                raise ApiKeyNotFound(key_id)
            await _append(conn, audit_trail.entry("api_key.revoke", context=who, detail={"key_id": key_id}))
        return _api_key(row)

    async def list_api_keys(self, *, include_revoked: bool = True) -> list[ApiKey]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM api_keys WHERE ($1 OR revoked_at IS NULL) ORDER BY created_at, key_id", include_revoked
            )
        return [_api_key(r) for r in rows]

    async def find_api_key(self, key_id: str) -> StoredKey | None:
        """What verification needs of a key, or None."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT key_id, role, secret_hash, revoked_at FROM api_keys WHERE key_id = $1", pg_safe(key_id)
            )
        if row is None:
            return None
        return StoredKey(key_id=row["key_id"], role=Role(row["role"]), secret_hash=row["secret_hash"],
                         revoked=row["revoked_at"] is not None)

    # ------------------------------------------------------------ audit

    async def append_audit(self, entry: AuditEntry) -> None:
        """Append a row that describes no change (an API call and its answer)."""
        async with self._pool.acquire() as conn:
            await _append(conn, entry)

    async def list_audit(
        self,
        *,
        page: int = 1,
        page_size: int = 50,
        actor: str | None = None,
        action: str | None = None,
        route: str | None = None,
        incident_id: str | None = None,
        status: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> AuditPage:
        """Newest first; every filter is a bound parameter."""
        where: list[str] = []
        args: list[Any] = []
        if incident_id is not None:
            parsed = _uuid_or_none(incident_id)
            if parsed is None:
                return AuditPage(items=[], page=page, page_size=page_size, total=0)
            args.append(parsed)
            where.append(f"incident_id = ${len(args)}")
        for column, value in (("actor", pg_safe(actor)), ("action", pg_safe(action)), ("route", pg_safe(route)),
                              ("status", status)):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        if since is not None:
            args.append(since)
            where.append(f"at >= ${len(args)}")
        if until is not None:
            args.append(until)
            where.append(f"at < ${len(args)}")
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        async with self._pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM audit_log {clause}", *args)
            rows = await conn.fetch(
                f"SELECT * FROM audit_log {clause} ORDER BY at DESC, id DESC LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
                *args,
                page_size,
                (page - 1) * page_size,
            )
        return AuditPage(items=[_audit_record(r) for r in rows], page=page, page_size=page_size, total=total)

    # ------------------------------------------------------------ reads

    async def get_incident(self, incident_id: str) -> Incident:
        """The incident, live or archived, read from the replica when there is one.

        Read-your-write: an incident the replica does not have yet (replay behind) is read from
        the primary, so whoever just created it finds it.
        """
        key = _parse_uuid(incident_id)
        async with self._read_pool.acquire() as conn:
            try:
                return await self._get(conn, key)
            except IncidentNotFound:
                if self._read_pool is self._pool:
                    raise
        async with self._pool.acquire() as conn:
            return await self._get(conn, key)

    async def notifications(self, incident_id: str) -> list[NotificationDelivery]:
        """What the incident's states were told to each channel, with every attempt (pipelines/notify/)."""
        key = _parse_uuid(incident_id)
        async with self._pool.acquire() as conn:
            await self._get(conn, key)  # IncidentNotFound when there is no such incident
            return await incident_deliveries(conn, str(key))

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
        include_archived: bool = False,
    ) -> IncidentPage:
        """Newest first, from the replica when there is one; archived incidents only if ``include_archived``."""
        where, args = [], []
        for column, value in (
            ("category", category.value if category else None),
            ("service", pg_safe(service)),
            ("severity", severity.value if severity else None),
            ("status", pg_safe(status)),
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
        source = _ALL_INCIDENTS if include_archived else "incidents"
        select = _EVERY_INCIDENT_SELECT if include_archived else _INCIDENT_SELECT
        async with self._read_pool.acquire() as conn:
            # counted up to LIST_COUNT_LIMIT: an exact count of a year of history costs more than the page
            total = await conn.fetchval(
                f"SELECT count(*) FROM (SELECT 1 FROM {source} i {clause} LIMIT {LIST_COUNT_LIMIT + 1}) c", *args)
            rows = await conn.fetch(
                f"{select} {clause} ORDER BY i.started_at DESC, i.id"
                f" LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
                *args,
                page_size,
                (page - 1) * page_size,
            )
        return IncidentPage(items=[_incident(r) for r in rows], page=page, page_size=page_size,
                            total=min(total, LIST_COUNT_LIMIT), total_capped=total > LIST_COUNT_LIMIT)

    async def stats(self, since: datetime | None = None) -> Stats:
        """Counts and analysis latency of the live incidents started since ``since`` (all when None)."""
        # the start bound is on the partition key of incidents and analyses: only those months are read
        started = "started_at >= $1" if since is not None else "$1::timestamptz IS NULL"
        analyses_started = "incident_started_at >= $1" if since is not None else "$1::timestamptz IS NULL"
        async with self._read_pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM incidents WHERE {started}", since)
            by_category = await conn.fetch(
                f"SELECT COALESCE(category, 'unclassified') AS k, count(*) AS n FROM incidents WHERE {started} GROUP BY 1",
                since,
            )
            by_severity = await conn.fetch(
                f"SELECT severity AS k, count(*) AS n FROM incidents WHERE {started} GROUP BY 1", since)
            latency = await conn.fetchrow(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_seconds) AS p50,"
                " percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_seconds) AS p95 FROM analyses"
                f" WHERE {analyses_started}", since,
            )
            accuracy = await conn.fetch(_ACCURACY)
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
            accuracy=_accuracy(accuracy),
        )

    # ------------------------------------------------------------ feedback and similar incidents

    async def add_feedback(self, incident_id: str, body: FeedbackCreate, audit: AuditContext | None = None) -> Feedback:
        """Record an operator's verdict on the incident's latest analysis, with its audit row.

        IncidentNotFound for an unknown incident; FeedbackError (naming the field) when the
        rank points at no hypothesis. Notes are redacted before they are stored.
        """
        key = _parse_uuid(incident_id)
        who = audit or audit_trail.current()
        notes, _ = redact_value(body.notes)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM incident_keys WHERE id = $1)", key):
                raise IncidentNotFound(incident_id)
            latest = await conn.fetchrow(
                "SELECT id, hypotheses FROM analyses WHERE incident_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1", key)
            hypotheses = _HYPOTHESES.validate_python(latest["hypotheses"]) if latest else None
            confirmed = feedback_rules.confirm(body, hypotheses, str(key))
            row = await conn.fetchrow(
                "INSERT INTO feedback (incident_id, analysis_id, actor, rank, confirmed_rank, category, service, cause, notes)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
                key, latest["id"] if latest else None, pg_safe(who.actor), confirmed.rank, confirmed.confirmed_rank,
                confirmed.category.value, pg_safe(confirmed.service), pg_safe(confirmed.cause), pg_safe(notes),
            )
            await _append(conn, audit_trail.entry("feedback.add", context=who, incident_id=str(key), detail={
                "rank": confirmed.rank, "confirmed_rank": confirmed.confirmed_rank, "category": confirmed.category.value,
                "service": confirmed.service, "notes_chars": len(body.notes)}))
        return _feedback(row)

    async def list_feedback(self, incident_id: str) -> list[Feedback]:
        """Every verdict on the incident, newest (the one in force) first; IncidentNotFound if unknown."""
        key = _parse_uuid(incident_id)
        async with self._pool.acquire() as conn:
            await self._get(conn, key)
            rows = await conn.fetch("SELECT * FROM feedback WHERE incident_id = $1 ORDER BY created_at DESC, id DESC", key)
        return [_feedback(r) for r in rows]

    async def similar(self, incident_id: str, *, limit: int = 10) -> list[SimilarIncident]:
        """Other incidents ranked by the similarity of their latest analysis' signature to this one's.

        IncidentNotFound for an unknown incident; an incident without an analysis has none.
        """
        key = _parse_uuid(incident_id)
        async with self._read_pool.acquire() as conn:
            await self._get(conn, key)
            signature = await conn.fetchval(
                "SELECT signature FROM analyses WHERE incident_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1", key)
        if signature is None:
            return []
        return await self._ranked(Signature.model_validate(signature), exclude=key, minimum=0.0, limit=limit,
                                  confirmed_only=False)

    async def confirmed_similar(self, signature: Signature, *, exclude: str, minimum: float,
                                limit: int) -> list[SimilarIncident]:
        """Incidents with feedback most like ``signature`` (at least ``minimum``), most alike first."""
        return await self._ranked(signature, exclude=_uuid_or_none(exclude), minimum=minimum, limit=limit,
                                  confirmed_only=True)

    async def _ranked(self, signature: Signature, *, exclude: uuid.UUID | None, minimum: float, limit: int,
                      confirmed_only: bool) -> list[SimilarIncident]:
        """Rank the latest :data:`SIMILAR_CANDIDATES` signed incidents (most recent first on ties)."""
        async with self._read_pool.acquire() as conn:
            rows = await conn.fetch(_SIMILAR_CANDIDATES, exclude, confirmed_only, SIMILAR_CANDIDATES)
        by_id = {r["id"]: r for r in rows}
        ranked = rank_similar(signature, [(r["id"], Signature.model_validate(r["signature"])) for r in rows],
                              limit=limit, minimum=minimum)
        return [_similar(by_id[key], like) for key, like in ranked]

    async def _get(self, conn: asyncpg.Connection, incident_id: uuid.UUID) -> Incident:
        """The incident by id: live, else archived (the detail still finds an archived incident)."""
        row = await conn.fetchrow(f"{_INCIDENT_SELECT} WHERE i.id = $1", incident_id)
        if row is None:
            row = await conn.fetchrow(f"{_ARCHIVED_SELECT} WHERE i.id = $1", incident_id)
        if row is None:
            raise IncidentNotFound(str(incident_id))
        return _incident(row)

    # ------------------------------------------------------------ history (pipelines/history.py)

    async def ensure_partitions(self) -> int:
        """Create the coming months' partitions; how many tables were made."""
        async with self._pool.acquire() as conn:
            return await history.ensure_partitions(conn)

    async def archive(
        self, retention_days: int, *, dry_run: bool = False, batch: int = history.ARCHIVE_BATCH,
        progress: Callable[[history.ArchiveProgress], None] | None = None, audit: AuditContext | None = None,
    ) -> history.ArchiveProgress:
        """Move incidents resolved more than ``retention_days`` ago to the archive, batch by batch.

        ``dry_run`` only counts them. A run that moved any appends one audit row (``history.archive``);
        the audit log itself is never moved or changed.
        """
        cutoff = history.retention_cutoff(retention_days)
        async with self._pool.acquire() as conn:
            due = await history.count_due(conn, cutoff)
        state = history.ArchiveProgress(moved=0, due=due, dry_run=dry_run)
        if progress:
            progress(state)
        while not dry_run:
            async with self._pool.acquire() as conn, conn.transaction():
                moved = await history.archive_batch(conn, cutoff, batch)
            if moved == 0:
                break
            state = history.ArchiveProgress(moved=state.moved + moved, due=max(due, state.moved + moved), dry_run=False)
            if progress:
                progress(state)
        if state.moved:
            await self.append_audit(audit_trail.entry("history.archive", context=audit or audit_trail.current(), detail={
                "moved": state.moved, "retention_days": retention_days, "resolved_before": cutoff.isoformat()}))
        return state


#: the list's total counts matching incidents up to this many (then says it is capped), bench/history.py
LIST_COUNT_LIMIT = 10_000
#: how many of the latest analyzed incidents a similarity search compares, in Python (bench/similarity.py)
SIMILAR_CANDIDATES = 5000
_HYPOTHESES = TypeAdapter(list[Hypothesis])
_SIMILAR_CANDIDATES = (
    "SELECT i.id, i.alert_name, i.service, i.started_at, i.status, a.category, a.top_cause, a.signature,"
    " to_jsonb(f.*) AS feedback"
    " FROM incidents i"
    " JOIN LATERAL (SELECT category, top_cause, signature FROM analyses WHERE incident_id = i.id"
    "  AND incident_started_at = i.started_at"
    "  ORDER BY created_at DESC, id DESC LIMIT 1) a ON a.signature IS NOT NULL"
    " LEFT JOIN LATERAL (SELECT * FROM feedback WHERE incident_id = i.id ORDER BY created_at DESC, id DESC LIMIT 1) f"
    " ON true WHERE i.id IS DISTINCT FROM $1 AND (NOT $2 OR f.id IS NOT NULL)"
    " ORDER BY i.started_at DESC, i.id LIMIT $3"
)
#: the feedback in force (the latest of each incident), counted by the confirmed category
_ACCURACY = (
    "SELECT category, count(*) AS n, count(*) FILTER (WHERE confirmed_rank = 1) AS top1,"
    " count(*) FILTER (WHERE confirmed_rank <= 3) AS top3 FROM"
    " (SELECT DISTINCT ON (incident_id) category, confirmed_rank FROM feedback"
    "  ORDER BY incident_id, created_at DESC, id DESC) latest GROUP BY category"
)
#: analyses signed per batch when older ones are signed at start-up
SIGN_BATCH = 500


async def sign_unsigned_analyses(conn: asyncpg.Connection) -> int:
    """Sign the analyses stored before signatures existed (migration 005), from their body; how many.

    Runs with the migrations; once all are signed it is one index probe.
    """
    signed = 0
    while True:
        rows = await conn.fetch("SELECT id, body FROM analyses WHERE signature IS NULL ORDER BY id LIMIT $1", SIGN_BATCH)
        for row in rows:
            signature = signature_of(Analysis.model_validate(row["body"])).model_dump(mode="json")
            await conn.execute("UPDATE analyses SET signature = $2 WHERE id = $1", row["id"], pg_safe(signature))
        signed += len(rows)
        if len(rows) < SIGN_BATCH:
            return signed


def _counts(n: int, top1: int, top3: int) -> dict[str, Any]:
    return {"feedback": n, "top1": top1, "top3": top3, "top1_rate": round(top1 / n, 4) if n else None,
            "top3_rate": round(top3 / n, 4) if n else None}


def _accuracy(rows: list[Any]) -> Accuracy:
    total = [sum(r[k] for r in rows) for k in ("n", "top1", "top3")]
    return Accuracy(**_counts(*total),
                    by_category={r["category"]: AccuracyCounts(**_counts(r["n"], r["top1"], r["top3"])) for r in rows})


def _feedback(row: Any) -> Feedback:
    return Feedback.model_validate({**dict(row), "incident_id": str(row["incident_id"])})


def _similar(row: Any, like: Likeness) -> SimilarIncident:
    feedback = Feedback.model_validate(row["feedback"]) if row["feedback"] else None
    return SimilarIncident(
        incident_id=str(row["id"]), alert_name=row["alert_name"], service=row["service"], started_at=row["started_at"],
        status=row["status"], category=row["category"], top_cause=row["top_cause"], similarity=like.score,
        shared_services=like.services, shared_templates=like.templates, shared_evidence_kinds=like.evidence_kinds,
        same_category=like.same_category, feedback=feedback)


#: the partition key of a new alert or analysis: its incident's start ($1 is the incident id)
_STARTED_OF_1 = "(SELECT started_at FROM incident_keys WHERE id = $1)"
#: an incident with its latest analysis; the start bound reads only the incident's month of analyses
_INCIDENT_SELECT = (
    "SELECT i.*, a.body AS analysis FROM incidents i LEFT JOIN LATERAL"
    " (SELECT body FROM analyses WHERE incident_id = i.id AND incident_started_at = i.started_at"
    " ORDER BY created_at DESC, id DESC LIMIT 1) a ON true"
)
_ARCHIVED_SELECT = (
    "SELECT i.*, a.body AS analysis FROM incidents_archive i LEFT JOIN LATERAL"
    " (SELECT body FROM analyses_archive WHERE incident_id = i.id ORDER BY created_at DESC, id DESC LIMIT 1) a ON true"
)
_ALL_INCIDENTS = "(SELECT * FROM incidents UNION ALL SELECT * FROM incidents_archive)"
_EVERY_INCIDENT_SELECT = (
    f"SELECT i.*, a.body AS analysis FROM {_ALL_INCIDENTS} i LEFT JOIN LATERAL"
    " (SELECT body, created_at, id FROM analyses WHERE incident_id = i.id AND incident_started_at = i.started_at"
    "  UNION ALL SELECT body, created_at, id FROM analyses_archive WHERE incident_id = i.id"
    "  ORDER BY created_at DESC, id DESC LIMIT 1) a ON true"
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


def _api_key(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        name=row["name"],
        role=Role(row["role"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
    )


def _audit_record(row: Any) -> AuditRecord:
    return AuditRecord(
        id=row["id"],
        at=row["at"],
        request_id=str(row["request_id"]) if row["request_id"] else None,
        actor=row["actor"],
        actor_kind=row["actor_kind"],
        key_id=row["key_id"],
        role=row["role"],
        client=row["client"],
        method=row["method"],
        route=row["route"],
        action=row["action"],
        incident_id=str(row["incident_id"]) if row["incident_id"] else None,
        status=row["status"],
        detail=row["detail"] or {},
    )
