"""Incident history upkeep: monthly partitions created ahead, and archival of old resolved incidents.

Why: incidents, alerts and analyses grow by the hour for years (migration 006). Partitioned by
month of the incident's start, a query for recent incidents reads recent months only; moving
incidents resolved more than ``RCA_RETENTION_DAYS`` ago to ``*_archive`` tables keeps the live
tables (what the list, the stats and the incident grouping read) at the size of the retention.
The audit log is never touched here: archival only appends one audit row per run (the store
does, see ``Store.archive``).

Both jobs run at migrate (partitions) and in the ingress' daily history task
(:class:`HistoryJob`), and archival on demand with ``rca db archive``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Awaitable, Callable

import asyncpg

log = logging.getLogger(__name__)

#: months of partitions kept ready after the current one
MONTHS_AHEAD = 3
#: incidents moved per archival transaction (short transactions; the list keeps answering)
ARCHIVE_BATCH = 1000
#: the history job's period
DAILY_SECONDS = 86_400.0
_PARTITION_LOCK = 7240006


def month_starts(now: datetime, months_ahead: int = MONTHS_AHEAD) -> list[date]:
    """The first day of ``now``'s month (UTC) and of the ``months_ahead`` months after it."""
    first = now.astimezone(timezone.utc).date().replace(day=1)
    months = []
    for step in range(months_ahead + 1):
        year, month = divmod(first.month - 1 + step, 12)
        months.append(date(first.year + year, month + 1, 1))
    return months


async def ensure_partitions(conn: asyncpg.Connection, now: datetime | None = None,
                            months_ahead: int = MONTHS_AHEAD) -> int:
    """Create the missing monthly partitions of the current and next months; how many tables were made.

    Runs in the caller's transaction when it has one; concurrent callers wait on one lock.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _PARTITION_LOCK)
        created = 0
        for month in month_starts(now or datetime.now(timezone.utc), months_ahead):
            created += await conn.fetchval("SELECT rca_history_month($1)", month)
    if created:
        log.info("created %d monthly history partitions", created)
    return created


@dataclass(frozen=True)
class ArchiveProgress:
    """Where an archival run stands: incidents (with their alerts and analyses) moved so far, of how many."""

    moved: int
    due: int
    dry_run: bool


_DUE = "FROM incidents WHERE status = 'resolved' AND resolved_at < $1"


async def count_due(conn: asyncpg.Connection, cutoff: datetime) -> int:
    """How many live incidents were resolved before ``cutoff``."""
    return await conn.fetchval(f"SELECT count(*) {_DUE}", cutoff)


async def archive_batch(conn: asyncpg.Connection, cutoff: datetime, limit: int = ARCHIVE_BATCH) -> int:
    """Move up to ``limit`` incidents resolved before ``cutoff``, with their alerts and analyses, to
    the archive tables, in the caller's transaction; how many incidents moved.

    Rows are moved whole (``DELETE ... RETURNING`` into the archive), so nothing is lost or
    doubled if the transaction fails; incident_keys keeps every id and notes when it was archived.
    """
    rows = await conn.fetch(f"SELECT id, started_at {_DUE} ORDER BY resolved_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                            cutoff, limit)
    if not rows:
        return 0
    ids = [r["id"] for r in rows]
    starts = sorted({r["started_at"] for r in rows})
    # the started_at range lets the planner read only the partitions of these incidents
    span = (starts[0], starts[-1])
    await conn.execute(
        "WITH moved AS (DELETE FROM incidents WHERE id = ANY($1) AND started_at BETWEEN $2 AND $3 RETURNING *)"
        " INSERT INTO incidents_archive SELECT * FROM moved", ids, *span)
    await conn.execute(
        "WITH moved AS (DELETE FROM alerts WHERE incident_id = ANY($1) AND incident_started_at BETWEEN $2 AND $3"
        " RETURNING *) INSERT INTO alerts_archive SELECT * FROM moved", ids, *span)
    await conn.execute(
        "WITH moved AS (DELETE FROM analyses WHERE incident_id = ANY($1) AND incident_started_at BETWEEN $2 AND $3"
        " RETURNING *) INSERT INTO analyses_archive SELECT * FROM moved", ids, *span)
    await conn.execute("UPDATE incident_keys SET archived_at = now() WHERE id = ANY($1)", ids)
    return len(ids)


def retention_cutoff(retention_days: int, now: datetime | None = None) -> datetime:
    """The resolution time before which an incident is archived."""
    return (now or datetime.now(timezone.utc)) - timedelta(days=retention_days)


class HistoryJob:
    """The daily history task of an ingress replica: partitions ahead, then archival.

    An asyncio task like the notification worker: several replicas may run it at once
    (partition creation takes a lock, archival skips rows another run holds). A failed pass
    is logged and retried the next day; it never stops the replica.
    """

    def __init__(self, run_once: Callable[[], Awaitable[object]], period_seconds: float = DAILY_SECONDS) -> None:
        self._run_once = run_once
        self._period = period_seconds
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="rca-history-job")

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _loop(self) -> None:
        # the first pass waits a period: at start-up the store's migrate has just made the partitions
        while True:
            await asyncio.sleep(self._period)
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a database down today is tried again tomorrow
                log.warning("history job failed, next try in %.0f s: %s", self._period, exc)
