"""A year of incident history, with and without monthly partitions (a benchmark, never a test).

Fills two databases of one embedded PostgreSQL with the same history, at the product spec's
100 incidents an hour for a year (876,000 incidents), each with its alerts (firing, and
resolved when it is) and one analysis of realistic size (the body of a real analysis of the
``db_pool_exhaustion`` demo, made by the real pipeline stages in this process), loaded with
``COPY`` (asyncpg ``copy_records_to_table``):

- ``partitioned``: the schema of the migrations (monthly partitions of incidents, alerts and
  analyses, one per month of the year);
- ``unpartitioned``: the same columns and indexes in plain tables (the migrations' default
  partitions detached and renamed), so only the partitioning differs.

Then times what the API calls, through the store: the first page of ``GET /api/incidents`` with
no filter and with each filter (category, service, severity, status, a one-day time range), the
detail by id, and ``GET /api/stats?days=30``; p50/p95 in ms per schema and their ratios, as JSON.
Targets (issue 16): p95 <= 50 ms for any first page, <= 200 ms for stats over 30 days.

    .venv/bin/python bench/history.py [--incidents 876000] [--repeat 40] [--data-dir DIR] [--reuse]

``--reuse`` keeps an already loaded data folder (same ``--incidents``) and only measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import history  # noqa: E402
from pipelines.database import start_embedded, stop_embedded  # noqa: E402
from pipelines.schemas import Analysis, Category, IncidentContext, Severity, Telemetry  # noqa: E402
from pipelines.similarity import signature_of  # noqa: E402
from pipelines.simulate import simulate  # noqa: E402
from pipelines.store import Store  # noqa: E402

PER_HOUR = 100
BATCH = 5000
SERVICES = [f"service-{i:02d}" for i in range(40)]
SEVERITIES = [Severity.critical, Severity.warning, Severity.info]
CATEGORIES = list(Category)
#: incidents started within this long before the end of the year are still open
OPEN_FOR = timedelta(hours=6)
SCHEMAS = ("unpartitioned", "partitioned")


async def real_analysis() -> Analysis:
    """One analysis of the demo incident by the real stages (summarize, score, reason) in this process."""
    from tests.support.local_pipeline import local_pipeline

    incident = simulate("db_pool_exhaustion")
    context = IncidentContext(alert=incident.alert, window=Telemetry(logs=incident.logs, metrics=incident.metrics),
                              baseline=incident.baseline)
    return await local_pipeline().analyze("bench", context)


class Rows:
    """The rows of one batch of incidents, as COPY takes them (jsonb given as JSON text)."""

    def __init__(self, analysis: Analysis) -> None:
        body = json.dumps(analysis.model_dump(mode="json"))
        marker = json.dumps("bench")
        self._body_head, self._body_tail = body.split(marker, 1)  # the body with each incident's id
        dumped = analysis.model_dump(mode="json")
        self._summary = dumped["summary"]
        self._hypotheses = json.dumps(dumped["hypotheses"])
        self._remediation = json.dumps(dumped["remediation"])
        self._signature = json.dumps(signature_of(analysis).model_dump(mode="json"))
        self._top = dumped["hypotheses"][0]
        self.analysis_bytes = len(body)

    def batch(self, rng: random.Random, first: int, count: int, start: datetime, end: datetime,
              alert_id: int, analysis_id: int) -> dict[str, list[tuple[Any, ...]]]:
        keys, incidents, alerts, analyses = [], [], [], []
        step = timedelta(hours=1) / PER_HOUR
        for n in range(first, first + count):
            key = uuid.UUID(int=rng.getrandbits(128), version=4)
            started = start + n * step
            service, severity, category = rng.choice(SERVICES), rng.choice(SEVERITIES), rng.choice(CATEGORIES)
            resolved_at = started + timedelta(minutes=rng.randint(5, 180)) if started < end - OPEN_FOR else None
            fingerprint = f"HighErrorRate|{service}|{n}"
            payload = json.dumps({"name": "HighErrorRate", "severity": severity.value, "timestamp": started.isoformat(),
                                  "labels": {"alertname": "HighErrorRate", "service": service, "namespace": "shop"},
                                  "annotations": {"summary": f"HighErrorRate on {service}"}, "ends_at": None})
            keys.append((key, started))
            incidents.append((key, fingerprint, "HighErrorRate", service, severity.value,
                              "resolved" if resolved_at else "open", category.value, started, resolved_at, started,
                              resolved_at or started, payload))
            for status in ("firing", "resolved") if resolved_at else ("firing",):
                alerts.append((alert_id, key, started, fingerprint, started, status, started, 1, payload))
                alert_id += 1
            body = f"{self._body_head}{json.dumps(str(key))}{self._body_tail}"
            analyses.append((analysis_id, key, started, started + timedelta(seconds=30), "evidence", category.value,
                             0.8, False, rng.uniform(0.5, 6.0), self._top["service"], self._top["cause"], self._summary,
                             self._hypotheses, self._remediation, body, self._signature))
            analysis_id += 1
        return {"incident_keys": keys, "incidents": incidents, "alerts": alerts, "analyses": analyses}


COLUMNS = {
    "incident_keys": ["id", "started_at"],
    "incidents": ["id", "fingerprint", "alert_name", "service", "severity", "status", "category", "started_at",
                  "resolved_at", "created_at", "updated_at", "alert"],
    "alerts": ["id", "incident_id", "incident_started_at", "fingerprint", "starts_at", "status", "received_at",
               "repeats", "payload"],
    "analyses": ["id", "incident_id", "incident_started_at", "created_at", "reasoner", "category", "confidence",
                 "degraded", "duration_seconds", "top_service", "top_cause", "summary", "hypotheses", "remediation",
                 "body", "signature"],
}


def _database_url(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


async def _unpartition(conn: asyncpg.Connection) -> None:
    """Plain tables of the same columns and indexes: each table's default partition, detached and renamed."""
    for table in ("analyses", "alerts"):  # their id sequences outlive the partitioned tables
        await conn.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY NONE")
    for table in ("analyses", "alerts", "incidents"):
        await conn.execute(f"ALTER TABLE {table} DETACH PARTITION {table}_default")
        await conn.execute(f"DROP TABLE {table} CASCADE")
        await conn.execute(f"ALTER TABLE {table}_default RENAME TO {table}")
    for table in ("analyses", "alerts"):
        await conn.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT nextval('{table}_id_seq')")
        await conn.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id")


async def _months(conn: asyncpg.Connection, start: datetime, end: datetime) -> int:
    made, month = 0, start
    while month <= end + timedelta(days=31):
        made += await history.ensure_partitions(conn, now=month, months_ahead=0)
        month += timedelta(days=28)
    return made


async def load(server_url: str, incidents: int, end: datetime, log: Callable[[str], None]) -> dict[str, Any]:
    """Create both databases and COPY the same history into each; figures of the load."""
    admin = await asyncpg.connect(server_url)
    for schema in SCHEMAS:
        await admin.execute(f'DROP DATABASE IF EXISTS "history_{schema}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "history_{schema}"')
    await admin.close()
    start = end - timedelta(hours=incidents / PER_HOUR)
    conns: dict[str, asyncpg.Connection] = {}
    for schema in SCHEMAS:
        url = _database_url(server_url, f"history_{schema}")
        await (await Store.connect(url)).close()  # the migrations
        conn = conns[schema] = await asyncpg.connect(url)
        await conn.execute("SET synchronous_commit = off")
        if schema == "unpartitioned":
            await _unpartition(conn)
        else:
            await _months(conn, start, end)
    analysis = await real_analysis()
    rows = Rows(analysis)
    rng = random.Random(16)
    seconds = {schema: 0.0 for schema in SCHEMAS}
    alert_id = analysis_id = 1
    for first in range(0, incidents, BATCH):
        batch = rows.batch(rng, first, min(BATCH, incidents - first), start, end, alert_id, analysis_id)
        alert_id += len(batch["alerts"])
        analysis_id += len(batch["analyses"])
        for schema, conn in conns.items():
            began = time.perf_counter()
            async with conn.transaction():
                for table, records in batch.items():
                    await conn.copy_records_to_table(table, records=records, columns=COLUMNS[table])
            seconds[schema] += time.perf_counter() - began
        log(f"loaded {first + len(batch['incidents']):,} of {incidents:,} incidents")
    for schema, conn in conns.items():
        await conn.execute("SELECT setval('alerts_id_seq', $1), setval('analyses_id_seq', $2)", alert_id, analysis_id)
        began = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        seconds[schema] += time.perf_counter() - began
        await conn.close()
    return {"analysis_body_bytes": rows.analysis_bytes, "alerts": alert_id - 1, "start": start.isoformat(),
            "end": end.isoformat(), "load_seconds": {k: round(v, 1) for k, v in seconds.items()}}


async def _timed(call: Callable[[], Awaitable[Any]], repeat: int) -> dict[str, float]:
    for _ in range(3):  # warm the cache and the pool
        await call()
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    return {"p50_ms": round(float(np.percentile(samples, 50)), 2), "p95_ms": round(float(np.percentile(samples, 95)), 2)}


async def measure(server_url: str, end: datetime, repeat: int) -> dict[str, dict[str, dict[str, float]]]:
    """Latency of each read, per schema, through the store (what the API's handlers call)."""
    figures: dict[str, dict[str, dict[str, float]]] = {}
    day = end - timedelta(days=40)
    for schema in SCHEMAS:
        url = _database_url(server_url, f"history_{schema}")
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2, statement_cache_size=0,
                                         init=lambda c: c.set_type_codec("jsonb", encoder=json.dumps,
                                                                         decoder=json.loads, schema="pg_catalog"))
        store = Store(pool)  # no migrate: the unpartitioned tables are not what the migrations keep up
        async with pool.acquire() as conn:
            ids = [str(r["id"]) for r in await conn.fetch(
                "SELECT id FROM incident_keys ORDER BY started_at DESC LIMIT 2000")]
        rng = random.Random(7)
        reads: dict[str, Callable[[], Awaitable[Any]]] = {
            "list": lambda: store.list_incidents(),
            "list_category": lambda: store.list_incidents(category=Category.network),
            "list_service": lambda: store.list_incidents(service="service-07"),
            "list_severity": lambda: store.list_incidents(severity=Severity.warning),
            "list_status_open": lambda: store.list_incidents(status="open"),
            "list_status_resolved": lambda: store.list_incidents(status="resolved"),
            "list_time_range": lambda: store.list_incidents(since=day, until=day + timedelta(days=1)),
            "list_archived_too": lambda: store.list_incidents(include_archived=True),
            "detail": lambda: store.get_incident(rng.choice(ids)),
            "stats_30_days": lambda: store.stats(since=end - timedelta(days=30)),
        }
        figures[schema] = {name: await _timed(call, repeat) for name, call in reads.items()}
        await pool.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=876_000, help="incidents in the history (876,000: a year)")
    parser.add_argument("--repeat", type=int, default=40, help="timed calls per read")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "rca-bench-history",
                        help="the embedded PostgreSQL's data folder")
    parser.add_argument("--reuse", action="store_true", help="measure the history already loaded in --data-dir")
    args = parser.parse_args()
    server_url = start_embedded(args.data_dir)
    marker = args.data_dir / "loaded.json"
    try:
        if args.reuse and marker.exists() and json.loads(marker.read_text())["incidents"] == args.incidents:
            loaded = json.loads(marker.read_text())
        else:
            end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
            loaded = asyncio.run(load(server_url, args.incidents, end,
                                      lambda m: print(m, file=sys.stderr, flush=True)))
            loaded["incidents"] = args.incidents
            marker.write_text(json.dumps(loaded))
        end = datetime.fromisoformat(loaded["end"])
        figures = asyncio.run(measure(server_url, end, args.repeat))
    finally:
        stop_embedded()
    flat, part = figures["unpartitioned"], figures["partitioned"]
    ratios = {name: round(flat[name]["p95_ms"] / part[name]["p95_ms"], 2) for name in part}
    lists = [name for name in part if name.startswith("list")]
    print(json.dumps({
        **loaded,
        "repeat": args.repeat,
        "latency": figures,
        "p95_unpartitioned_over_partitioned": ratios,
        "targets_met": {schema: {
            "first_page_p95_le_50_ms": all(figures[schema][n]["p95_ms"] <= 50 for n in lists),
            "stats_30_days_p95_le_200_ms": figures[schema]["stats_30_days"]["p95_ms"] <= 200,
        } for schema in SCHEMAS},
    }, indent=2))


if __name__ == "__main__":
    main()
