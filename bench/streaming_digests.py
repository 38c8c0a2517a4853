"""Benchmark of digest-on-arrival against the raw-line buffer it replaced (a benchmark, never a test).

For each cluster log rate (default 10k, 50k, 100k lines/s) it generates two full context
windows and the wait after the alert of ``rca.logs`` events (40 services, ~200 bytes each,
5 % errors, half of them traced (a span id each, as an OpenTelemetry log bridge writes it); the variable fields are the kinds production lines carry and the masking handles:
numbers, hex ids, UUIDs, IPs with ports, durations, so distinct shapes stay ~100 however high
the rate) and feeds the *same* events, in the same order, to

* a :class:`~pipelines.streaming.digester.Digester` (what the reader runs now), bounded by
  ``RCA_DIGEST_MAX_BYTES`` (default 512 MiB), and
* the old :class:`~pipelines.streaming.log_buffer.LogBuffers` at its old default
  (``RCA_LOG_BUFFER_MAX_BYTES``, 256 MiB),

each in a process of its own (so each one's peak memory is its own). Event time runs faster
than the wall clock: events carry the timestamps of the nominal rate (an alert at the end of
the second window), but are fed as fast as the consumer takes them. Reported per rate:
memory held (the digests' own estimate and the process's peak RSS above its start), the share
of the window's and the baseline's lines counted in what the consumer holds, events/s one
consumer takes (wall and per CPU second), and the time from the alert to its merged context
(both ranges merged; for the buffer, both ranges read back as events; p50 and p95 of
``QUERIES`` alerts, the first of which also mines the batch still pending). Ratios compare the two.

    .venv/bin/python bench/streaming_digests.py [--rates 10000,50000,100000] [--window 300] [--services 40]

Prints one JSON object (progress on stderr). The default 300 s window at the three rates takes
about half an hour or more on this 2-core machine (more when it is loaded); ``--window 30
--rates 10000`` is a quick look.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WAIT_SECONDS = 5.0
BATCH = 20_000  # records per getmany(), as the reader fetches them
QUERIES = 20
T0 = 1_767_225_600.0  # where the benchmark's event time starts (a multiple of the bucket)

VERBS = ("GET", "POST", "PUT", "DELETE")
RESOURCES = ("orders", "carts", "items", "users", "sessions", "invoices", "payments", "products")
STATEMENTS = (  # variable fields of the kinds production logs carry and the masking handles
    "{verb} /api/v1/{res}/{n} {status} in {ms} ms",
    "cache {hit} for key {res}:{n} after {ms} ms",
    "user {uuid} {action} {res} {n}",
    "worker {worker} picked job {hexid} from queue {res} ({ms} ms waiting)",
    "connection {n} to {ip}:5432 returned to the pool after {secs}s",
    "published event {res}.{action} id={hexid} partition={worker} size={n} bytes",
)
ERRORS = (
    "java.net.SocketTimeoutException: Read timed out after {ms} ms calling {res} at {ip}:8080",
    "Connection refused: {res}-db:5432 (attempt {worker}, request {uuid})",
    "request {hexid} failed: upstream {res} answered 503 after {secs}s",
)


class Record(NamedTuple):
    """What the consumers read of an aiokafka ConsumerRecord."""

    value: bytes
    key: bytes
    timestamp: int  # ms


def generate(rate: int, seconds: float, services: int, t0: float = T0, traced_every: int = 2) -> Iterator[list[Record]]:
    """Batches of events at ``rate`` lines/s of event time, from ``t0`` for ``seconds``; one line in
    ``traced_every`` carries a span id (0: none)."""
    names = [f"svc-{i:02d}" for i in range(services)]
    keys = [name.encode() for name in names]
    total = int(rate * seconds)
    step = 1.0 / rate
    n = 0
    while n < total:
        batch = []
        for i in range(n, min(n + BATCH, total)):
            s = i % services
            moment = t0 + i * step
            mixed = (i * 0x9E3779B97F4A7C15) & 0xFFFF_FFFF_FFFF_FFFF  # ids that look random, cheaply
            args = {"verb": VERBS[i % 4], "res": RESOURCES[(i // 7 + s) % 8], "n": i % 100_003, "ms": i % 997,
                    "status": 200 if i % 50 else 404, "hit": "hit" if i % 3 else "miss",
                    "action": ("created", "updated", "deleted", "loaded")[i % 4], "worker": i % 16,
                    "uuid": f"{mixed >> 32:08x}-{mixed >> 16 & 0xFFFF:04x}-4{mixed & 0xFFF:03x}-a{i & 0xFFF:03x}-"
                            f"{mixed & 0xFFFF_FFFF_FFFF:012x}",
                    "hexid": f"{mixed:016x}", "ip": f"10.{s}.{i >> 8 & 255}.{i & 255}", "secs": f"{i % 300 / 10:.1f}"}
            if i % 20 == 7:
                level, text = "ERROR", ERRORS[(i // 20) % 3].format(**args)
            else:
                level, text = "INFO", STATEMENTS[(i // services + s) % 6].format(**args)
            traced = f',"span_id":"{(mixed * 0xBF58476D1CE4E5B9) >> 64:016x}"' if traced_every and i % traced_every == 0 else ""
            value = (f'{{"timestamp":{moment:.5f},"service":"{names[s]}","pod":"{names[s]}-7d9f-{i % 3}",'
                     f'"level":"{level}","message":"{text}"{traced}}}').encode()
            batch.append(Record(value, keys[s], int(moment * 1000)))
        n += len(batch)
        yield batch


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _expected(rate: int, start: float, end: float, services: int, seconds: float, inside: Any) -> int:
    """How many generated lines fall in a range, by the consumer's own rule ``inside(moment)``."""
    step = 1.0 / rate
    first = max(0, math.ceil((start - 10 - T0) / step))
    last = min(int(rate * seconds), math.ceil((end + 10 - T0) / step))
    return sum(1 for i in range(first, last) if inside(T0 + i * step))


def run_consumer(kind: str, rate: int, window: float, services: int, max_bytes: int, traced_every: int,
                 out: Any) -> None:
    """Feed one consumer every event of two windows and the wait; report what it held and counted."""
    from pipelines.context_window import ContextWindow
    from pipelines.streaming.digester import Digester
    from pipelines.streaming.log_buffer import LogBuffers

    seconds = 2 * window + WAIT_SECONDS
    span = ContextWindow.at(T0 + 2 * window, window, WAIT_SECONDS)
    clock = {"now": T0}
    digester = Digester(max_bytes=max_bytes, retention_seconds=2 * (window + WAIT_SECONDS) + 60,
                        clock=lambda: clock["now"])
    buffers = LogBuffers(max_bytes)
    start_rss = _rss_bytes()
    wall = cpu = 0.0
    fed = 0
    for batch in generate(rate, seconds, services, traced_every=traced_every):
        clock["now"] = batch[-1].timestamp / 1000
        w, c = time.perf_counter(), time.process_time()
        if kind == "digester":
            digester.ingest(batch)
        else:
            buffers.ingest(batch)
        wall += time.perf_counter() - w
        cpu += time.process_time() - c
        fed += len(batch)
    query_seconds, mining_seconds = [], []
    counted = {}
    for _ in range(QUERIES):
        w = time.perf_counter()
        if kind == "digester":
            found = {"window": digester.between(span.start, span.end, through_end=True),
                     "baseline": digester.between(*span.baseline)}
            counted = {label: r.digest.lines for label, r in found.items()}
            for r in found.values():
                r.digest.shape_counts()  # compacted: the merged context as the reader hands it over
            query_seconds.append(time.perf_counter() - w)  # the first also mines the batch still pending
            w = time.perf_counter()
            for r in found.values():
                r.digest.templates  # noqa: B018 - templates over the merged shapes: the scorer's first step
            mining_seconds.append(time.perf_counter() - w)
        else:
            events = {"window": buffers.window(span.start, span.end), "baseline": buffers.window(*span.baseline)}
            counted = {label: len(e) for label, e in events.items()}
            query_seconds.append(time.perf_counter() - w)
    if kind == "digester":
        analysis_seconds, analysis_stats = analyze_once(digester, span)
        half = digester.bucket_seconds / 2

        def inside_range(start: float, end: float) -> Any:  # Digester.between's rule; the window takes its last bucket
            def inside(m: float) -> bool:
                bucket = math.floor(m / digester.bucket_seconds) * digester.bucket_seconds
                return start <= bucket + half and (bucket + half < end or (end == span.end and bucket < end))
            return inside
    else:

        def inside_range(start: float, end: float) -> Any:
            return lambda m: start <= m <= end
    ranges = {"window": (span.start, span.end), "baseline": span.baseline}
    expected = {label: _expected(rate, a, b, services, seconds, inside_range(a, b)) for label, (a, b) in ranges.items()}
    held = digester.stats().bytes if kind == "digester" else buffers.stats().bytes
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {
        "events": fed,
        "held_bytes": held,
        "peak_rss_above_start_bytes": max(0, peak - start_rss),
        "share_counted": {label: round(counted[label] / expected[label], 4) if expected[label] else None
                          for label in ranges},
        "lines_counted": counted,
        "lines_in_range": expected,
        "events_per_s": round(fed / wall),
        "events_per_cpu_second": round(fed / cpu),
        "alert_to_context_seconds": {"first": round(query_seconds[0], 3),
                                     "p50": round(float(numpy.percentile(query_seconds, 50)), 3),
                                     "p95": round(float(numpy.percentile(query_seconds, 95)), 3),
                                     "max": round(max(query_seconds), 3)},
    }
    if kind == "digester":
        stats = digester.stats()
        result.update(buckets=stats.buckets, cut_lines=stats.cut_lines, dropped=stats.dropped,
                      alert_to_analysis_seconds=round(analysis_seconds, 3), analysis_stats=analysis_stats,
                      templates_seconds={"median": round(statistics.median(mining_seconds), 3),
                                         "max": round(max(mining_seconds), 3)},
                      shapes={label: r.digest.shapes for label, r in found.items()},
                      templates={label: len(r.digest.templates) for label, r in found.items()})
    else:
        result.update(dropped=buffers.stats().dropped)
    out.put(result)


def analyze_once(digester: Any, span: Any) -> tuple[float, dict[str, Any]]:
    """One alert from its firing to its Analysis: the merged context, then the pipeline's stages
    (scorer, evidence reasoner) in this process, as the Ingress runs them (no Serve hop, no database)."""
    import asyncio
    from datetime import datetime, timezone

    from pipelines.schemas import Alert, IncidentContext
    from tests.support.local_pipeline import local_pipeline

    alert = Alert(name="HighErrorRate", severity="critical", labels={"service": "svc-00"}, fingerprint="bench",
                  timestamp=datetime.fromtimestamp(span.end - WAIT_SECONDS, tz=timezone.utc))
    began = time.perf_counter()
    window = digester.between(span.start, span.end, through_end=True)
    baseline = digester.between(*span.baseline)
    context = IncidentContext(alert=alert, window_digest=window.digest, baseline_digest=baseline.digest)
    analysis = asyncio.run(local_pipeline().analyze("bench", context))
    return time.perf_counter() - began, analysis.stats.model_dump(mode="json")


def measure(kind: str, rate: int, window: float, services: int, max_bytes: int, traced_every: int) -> dict[str, Any]:
    """Run one consumer in a fresh process (its memory its own) and return its report."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    process = context.Process(target=run_consumer, args=(kind, rate, window, services, max_bytes, traced_every, out))
    process.start()
    result = out.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="10000,50000,100000", help="cluster log rates, lines/s, comma-separated")
    parser.add_argument("--window", type=float, default=300.0, help="INCIDENT_CONTEXT_WINDOW, seconds")
    parser.add_argument("--services", type=int, default=40)
    parser.add_argument("--digest-max-bytes", type=int, default=512 * 1024 * 1024)
    parser.add_argument("--buffer-max-bytes", type=int, default=256 * 1024 * 1024)
    parser.add_argument("--traced-every", type=int, default=2, help="one line in N carries a span id (0: none)")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    report: dict[str, Any] = {
        "window_seconds": args.window, "wait_seconds": WAIT_SECONDS, "services": args.services,
        "traced_every": args.traced_every,
        "event_time": "events carry the nominal rate's timestamps and are fed as fast as consumed "
                      "(event time runs faster than the wall clock)",
        "digest_max_bytes": args.digest_max_bytes, "buffer_max_bytes": args.buffer_max_bytes,
        "cpus": os.cpu_count(), "load_average_1m_at_start": round(os.getloadavg()[0], 1), "rates": {},
    }
    for rate in rates:
        print(f"{rate} lines/s: digester", file=sys.stderr, flush=True)
        digests = measure("digester", rate, args.window, args.services, args.digest_max_bytes, args.traced_every)
        print(f"{rate} lines/s: log buffers", file=sys.stderr, flush=True)
        raw = measure("buffer", rate, args.window, args.services, args.buffer_max_bytes, args.traced_every)
        report["rates"][str(rate)] = {
            "digester": digests,
            "log_buffers": raw,
            "ratios": {
                "window_share_digests_over_buffers": _ratio(digests["share_counted"]["window"], raw["share_counted"]["window"]),
                "baseline_share_digests_over_buffers": _ratio(digests["share_counted"]["baseline"],
                                                              raw["share_counted"]["baseline"]),
                "held_bytes_digests_over_buffers": _ratio(digests["held_bytes"], raw["held_bytes"]),
                "events_per_s_digests_over_buffers": _ratio(digests["events_per_s"], raw["events_per_s"]),
                "context_p50_seconds_digests_over_buffers": _ratio(digests["alert_to_context_seconds"]["p50"],
                                                                   raw["alert_to_context_seconds"]["p50"]),
            },
        }
    report["load_average_1m_at_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(report, indent=2))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


if __name__ == "__main__":
    main()
