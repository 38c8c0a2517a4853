"""Benchmark of the streaming spine on a real broker (scripts/kafka start): logs in, alerts out.

1. **log consume path**: events of about 200 bytes are written to a fresh ``rca.logs``-like
   topic by a producer in another process while the reader (``KafkaReader``, the same code
   the Ray actor runs) consumes them into its digests; then the same reader code reads a
   full backlog. Reports events/s, MB/s and the consumer lag sampled while producing.
2. **alert storm**: 1,000 alerts (distinct services, so 1,000 incidents) are published the
   way the webhook does; the real Serve app (its own Ray, embedded PostgreSQL and topics,
   HTTP on a free port) reads them from Kafka, analyzes and stores them. Reports the time
   until every alert is a stored incident with an analysis, and any loss.
3. **an alert under load** (``--load-rate R``): the real Serve app again, while a producer in
   another process writes R log lines a second, live (stamped with the wall clock), for a whole
   context window (``--load-window``) and on; then alerts fire one after another. Reports, per
   alert, the time from its publication to its stored analysis (the alert's own
   ``RCA_CONTEXT_WAIT_SECONDS`` included, and given apart), the analysis' own duration, and the
   lines of its window the analysis counted against the lines written in it.

usage: .venv/bin/python bench/kafka_throughput.py [--json] [--events 500000] [--alerts 1000]
       [--bootstrap 127.0.0.1:9092] [--skip-storm] [--skip-logs] [--load-rate 20000 --load-window 60]
Over TLS: the RCA_KAFKA_SECURITY_PROTOCOL, RCA_KAFKA_CA_FILE... of the environment (README "TLS").
Needs the broker (scripts/kafka start); never run as a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import socket
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.streaming.producer import AlertPublisher  # noqa: E402
from pipelines.streaming.reader import KafkaReader  # noqa: E402
from pipelines.streaming.topics import TopicNames, ensure_topics  # noqa: E402
from pipelines.schemas import Alert  # noqa: E402
from pipelines.settings import Settings  # noqa: E402
from pipelines.tls import kafka_client_options  # noqa: E402

SERVICES = [f"svc-{i:02d}" for i in range(20)]
LEVELS = ["INFO", "INFO", "INFO", "WARN", "ERROR"]


def make_events(count: int, start: float) -> list[tuple[bytes, bytes]]:
    """``count`` LogEvent JSON records of about 200 bytes, keyed by service."""
    records = []
    for index in range(count):
        service = SERVICES[index % len(SERVICES)]
        moment = datetime.fromtimestamp(start + index / 100_000, timezone.utc).isoformat()
        value = (
            f'{{"timestamp":"{moment}","service":"{service}","pod":"{service}-7d9f-{index % 5}",'
            f'"level":"{LEVELS[index % 5]}","message":"request {index} handled in {index % 997} ms '
            f'user=u{index % 1013} path=/api/v1/items/{index % 89}","labels":{{"zone":"z{index % 3}"}}}}'
        ).encode()
        records.append((service.encode(), value))
    return records


def _produce(bootstrap: str, topic: str, count: int, start_at: float, done: Any) -> None:
    """Child process: write ``count`` events as fast as the client can (acks=all, idempotent).

    Uses aiokafka's batch API (one partition per service, as keying by service would), because
    the per-record ``send`` costs more CPU than the reader's whole consume path.
    """
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        records = make_events(count, time.time())
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                    linger_ms=20, max_batch_size=256 * 1024, request_timeout_ms=120_000,
                                    **kafka_client_options(Settings()))  # the security settings of the environment
        await producer.start()
        partitions = sorted(await producer.partitions_for(topic))
        while time.time() < start_at:
            await asyncio.sleep(0.01)
        began = time.perf_counter()
        pending = []
        batch, partition = producer.create_batch(), 0
        for index, (key, value) in enumerate(records):
            if batch.append(key=key, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batch, topic, partition=partitions[partition]))
                partition = (partition + 1) % len(partitions)
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            if len(pending) > 64:
                await asyncio.gather(*pending)
                pending = []
        pending.append(await producer.send_batch(batch, topic, partition=partitions[partition]))
        await asyncio.gather(*pending)
        done.value = time.perf_counter() - began
        await producer.stop()

    asyncio.run(run())


async def _noop(alert: dict[str, Any], context: Any, delivery: str) -> dict[str, Any]:
    return {"incident_id": None, "created": False, "analyzed": False, "status": "open"}


async def _consume(settings: Settings, expected: int, lag_from: float | None) -> dict[str, Any]:
    """Run the reader until it holds ``expected`` events; sample its lag after ``lag_from`` (unix time)."""
    reader = KafkaReader(settings, process=_noop)
    await reader.start()
    lags: list[int] = []
    first: float | None = None
    cpu_first = 0.0
    try:
        while reader.digests.consumed < expected:
            await asyncio.sleep(0.02)
            if first is None and reader.digests.digesters:  # joined, partitions assigned and positioned
                first = time.perf_counter()
                cpu_first = time.process_time()
            if lag_from is not None and time.time() >= lag_from and first is not None:
                lags.append(sum(v for k, v in reader.lag().items() if k.startswith(settings.kafka_logs_topic)))
        end = time.perf_counter()
        cpu = time.process_time() - cpu_first
        end_wall = time.time()
        for digester in reader.digests.digesters.values():
            digester.flush()
        stats = reader.digests.stats()
    finally:
        await reader.stop()
    return {"first": first, "end": end, "cpu": cpu, "end_wall": end_wall, "lags": lags, "digest_lines": stats.lines,
            "digest_bytes": stats.bytes, "dropped": stats.dropped}


async def bench_logs(bootstrap: str, events: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=bootstrap, kafka_logs_topic=f"bench.{tag}.logs", kafka_alerts_topic=f"bench.{tag}.alerts",
        kafka_dlq_topic=f"bench.{tag}.dlq", kafka_group_id=f"bench-{tag}", kafka_partitions=3,
        digest_max_bytes=2 * 1024**3,
    )
    await ensure_topics(bootstrap, 3, TopicNames.from_settings(settings), client_options=kafka_client_options(settings))
    payload_bytes = sum(len(v) for _, v in make_events(1000, time.time())) / 1000 * events

    # live: consume while another process produces
    done = multiprocessing.Value("d", 0.0)
    start_at = time.time() + 5.0  # the reader is connected by then
    producer = multiprocessing.Process(
        target=_produce, args=(bootstrap, settings.kafka_logs_topic, events, start_at, done)
    )
    producer.start()
    live = await _consume(settings, events, lag_from=start_at)
    producer.join()
    live_seconds = live["end_wall"] - start_at  # from the first event produced to the last one held

    # backlog: a fresh reader reads everything that is already there
    backlog = await _consume(settings, events, lag_from=None)
    backlog_seconds = backlog["end"] - backlog["first"]
    return {
        "events": events,
        "event_bytes_avg": round(payload_bytes / events, 1),
        "partitions": 3,
        "produce_events_per_s": round(events / done.value) if done.value else None,
        "live_consume_events_per_s": round(events / live_seconds),
        "live_consume_mb_per_s": round(payload_bytes / live_seconds / 1e6, 1),
        "live_lag_max": max(live["lags"], default=0),
        "live_lag_median": sorted(live["lags"])[len(live["lags"]) // 2] if live["lags"] else 0,
        "backlog_consume_events_per_s": round(events / backlog_seconds),
        "backlog_consume_mb_per_s": round(payload_bytes / backlog_seconds / 1e6, 1),
        # events per CPU-second of the reader's process: what one dedicated core sustains,
        # whatever else runs on the machine (wall-clock rates above depend on the load)
        "backlog_events_per_cpu_second": round(events / backlog["cpu"]),
        "live_events_per_cpu_second": round(events / live["cpu"]),
        "load_average_1m": round(os.getloadavg()[0], 1),
        "digest_lines": backlog["digest_lines"],
        "digest_bytes": backlog["digest_bytes"],
        "digest_dropped": backlog["dropped"],
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_storm(bootstrap: str, count: int) -> dict[str, Any]:
    """1,000 alerts through Kafka into the real Serve app; time until all are stored and analyzed."""
    from pipelines import runtime
    from pipelines.store import Store

    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="rca-bench-") as folder:
        settings = Settings(
            kafka_bootstrap=bootstrap, kafka_logs_topic=f"bench.{tag}.logs", kafka_alerts_topic=f"bench.{tag}.alerts",
            kafka_dlq_topic=f"bench.{tag}.dlq", kafka_group_id=f"bench-{tag}", kafka_partitions=3,
            context_wait_seconds=1.0, data_dir=Path(folder), port=_free_port(), host="127.0.0.1",
        )
        started = time.perf_counter()
        app = runtime.start(settings, http=False, num_cpus=2)
        app_seconds = time.perf_counter() - started
        try:
            return asyncio.run(_storm(app.settings, count, app_seconds, Store))
        finally:
            from pipelines.streaming.reader import stop_reader

            stop_reader("rca")
            runtime.stop()


async def _storm(settings: Settings, count: int, app_seconds: float, store_class: Any) -> dict[str, Any]:
    fired = datetime.now(timezone.utc)
    alerts = [
        Alert(name="HighErrorRate", severity="critical", timestamp=fired,
              labels={"alertname": "HighErrorRate", "service": f"storm-{i:04d}"}, fingerprint=f"storm-{i:04d}")
        for i in range(count)
    ]
    publisher = AlertPublisher.from_settings(settings)
    store = await store_class.connect(settings.database_url)
    try:
        began = time.perf_counter()
        for offset in range(0, count, 100):  # webhook bodies of 100 alerts, acknowledged before the next
            await publisher.publish(alerts[offset : offset + 100])
        published = time.perf_counter() - began
        stored = analyzed = 0
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            async with store._pool.acquire() as conn:  # noqa: SLF001 - a benchmark may peek
                stored = await conn.fetchval(
                    "SELECT count(DISTINCT fingerprint) FROM alerts WHERE fingerprint LIKE 'storm-%'")
                analyzed = await conn.fetchval(
                    "SELECT count(*) FROM incidents i WHERE i.fingerprint LIKE 'storm-%' AND EXISTS "
                    "(SELECT 1 FROM analyses a WHERE a.incident_id = i.id)")
                incidents = await conn.fetchval("SELECT count(*) FROM incidents WHERE fingerprint LIKE 'storm-%'")
            if analyzed >= count:
                break
            await asyncio.sleep(0.5)
        seconds = time.perf_counter() - began
    finally:
        await publisher.stop()
        await store.close()
    return {
        "alerts": count,
        "app_start_seconds": round(app_seconds, 1),
        "publish_seconds": round(published, 2),
        "seconds_to_all_analyzed": round(seconds, 1),
        "alerts_per_s": round(count / seconds, 1),
        "alerts_stored": stored,
        "incidents": incidents,
        "incidents_analyzed": analyzed,
        "lost": count - stored,
    }


def _produce_live(bootstrap: str, topic: str, rate: int, seconds: float, started: Any, written: Any) -> None:
    """Child process: write ``rate`` events a second for ``seconds``, each stamped with the wall clock,
    in 0.1 s ticks; ``written`` counts them, ``started`` is when the first tick went out."""
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=256 * 1024,
                                    **kafka_client_options(Settings()))
        await producer.start()
        per_tick, index = max(1, rate // 10), 0
        started.value = began = time.time()
        while time.time() - began < seconds:
            tick = time.time()
            sends = []
            for key, value in make_events(per_tick, tick):
                sends.append(await producer.send(topic, value=value, key=key))
                index += 1
            await asyncio.gather(*sends)
            written.value = index
            await asyncio.sleep(max(0.0, 0.1 - (time.time() - tick)))
        await producer.stop()

    asyncio.run(run())


def bench_alert_under_load(bootstrap: str, rate: int, window: float, alerts: int = 5) -> dict[str, Any]:
    """Alerts analyzed by the real Serve app while ``rate`` lines/s flow into ``rca.logs``."""
    from pipelines import runtime
    from pipelines.store import Store

    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="rca-bench-") as folder:
        settings = Settings(
            kafka_bootstrap=bootstrap, kafka_logs_topic=f"bench.{tag}.logs", kafka_alerts_topic=f"bench.{tag}.alerts",
            kafka_dlq_topic=f"bench.{tag}.dlq", kafka_spans_topic=f"bench.{tag}.spans", kafka_group_id=f"bench-{tag}",
            kafka_partitions=3, context_wait_seconds=1.0, context_window_seconds=int(window), data_dir=Path(folder),
            port=_free_port(), host="127.0.0.1",
        )
        app = runtime.start(settings, http=False, num_cpus=2)
        context = multiprocessing.get_context("spawn")
        started, written = context.Value("d", 0.0), context.Value("q", 0)
        producer = context.Process(target=_produce_live, args=(bootstrap, settings.kafka_logs_topic, rate,
                                                               window + 15 + alerts * 6, started, written))
        producer.start()
        try:
            return asyncio.run(_alerts_under_load(app.settings, rate, window, alerts, started, written, Store))
        finally:
            producer.terminate()
            producer.join()
            from pipelines.streaming.reader import stop_reader

            stop_reader("rca")
            runtime.stop()


async def _alerts_under_load(settings: Settings, rate: int, window: float, alerts: int, started: Any,
                             written: Any, store_class: Any) -> dict[str, Any]:
    publisher = AlertPublisher.from_settings(settings)
    store = await store_class.connect(settings.database_url)
    rows = []
    try:
        while not started.value or time.time() - started.value < window + 10:  # a whole window written
            await asyncio.sleep(0.5)
        for index in range(alerts):
            fired = datetime.now(timezone.utc)
            fingerprint = f"load-{uuid.uuid4().hex[:8]}"
            await publisher.publish([Alert(name="HighErrorRate", severity="critical", timestamp=fired,
                                           labels={"alertname": "HighErrorRate", "service": SERVICES[index]},
                                           fingerprint=fingerprint)])
            published = time.time()
            found = None
            while found is None and time.time() - published < 300:
                async with store._pool.acquire() as conn:  # noqa: SLF001 - a benchmark may peek
                    found = await conn.fetchrow(
                        "SELECT extract(epoch FROM a.created_at)::float8 AS stored, a.duration_seconds, "
                        "(a.body->'stats'->>'lines_in')::bigint AS lines_in FROM analyses a "
                        "JOIN incidents i ON i.id = a.incident_id WHERE i.fingerprint = $1", fingerprint)
                if found is None:
                    await asyncio.sleep(0.05)
            if found is not None:
                achieved = written.value / max(1e-9, time.time() - started.value)
                rows.append({"alert_to_stored_analysis_seconds": round(found["stored"] - published, 3),
                             "of_which_context_wait_seconds": settings.context_wait_seconds,
                             "analysis_seconds": round(found["duration_seconds"] or 0.0, 3),
                             "lines_in": found["lines_in"],
                             "lines_written_in_window": int(min(window, published - started.value) * achieved)})
            await asyncio.sleep(max(0.0, 5 - (time.time() - published)))
    finally:
        await publisher.stop()
        await store.close()
    waits = sorted(r["alert_to_stored_analysis_seconds"] for r in rows)
    achieved = written.value / max(1e-9, time.time() - started.value)
    return {"rate_lines_per_s": rate, "achieved_lines_per_s": round(achieved), "window_seconds": window,
            "lines_written": written.value,
            "alerts": alerts, "analyzed": len(rows),
            "alert_to_stored_analysis_seconds": {"median": waits[len(waits) // 2] if waits else None,
                                                 "max": waits[-1] if waits else None},
            "per_alert": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--skip-storm", action="store_true")
    parser.add_argument("--skip-logs", action="store_true")
    parser.add_argument("--load-rate", type=int, default=0, help="lines/s written live while alerts fire (0: skip)")
    parser.add_argument("--load-window", type=float, default=60.0, help="INCIDENT_CONTEXT_WINDOW under load, seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    # Ray's log monitor writes its actors' lines (and "(raylet) ..." notices) to the driver's stdout:
    # while the app runs, stdout goes to stderr, so the report on stdout is JSON and nothing else
    report = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    result: dict[str, Any] = {}
    if not args.skip_logs:
        result["logs"] = asyncio.run(bench_logs(args.bootstrap, args.events))
    if not args.skip_storm:
        result["alert_storm"] = bench_storm(args.bootstrap, args.alerts)
    if args.load_rate:
        result["alert_under_load"] = bench_alert_under_load(args.bootstrap, args.load_rate, args.load_window)
    if args.json:
        print(json.dumps(result, indent=2), file=report)
    else:
        for section, figures in result.items():
            print(section, file=report)
            for key, value in figures.items():
                print(f"  {key:32} {value}", file=report)
    report.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
