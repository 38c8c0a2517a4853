"""The Digester: log events mined on arrival into per-(service, bucket) digests that give the same
analysis as the lines, bounded in memory, with what a bound cut named; template ids the same in
every process, so digests mined apart merge exactly. No broker needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from anomaly.digest import Digest
from pipelines.context_window import ContextWindow
from pipelines.pipeline import digest_chunk, to_chunk_items
from pipelines.schemas import IncidentContext, LogEvent, Telemetry
from pipelines.simulate import simulate
from pipelines.streaming.digester import CUT_REASON, DROP_EXPIRED, Digester
from pipelines.streaming.log_buffer import DROP_OVERSIZED, InvalidLogEvent
from pipelines.streaming.producer import log_record
from tests.support.local_pipeline import local_pipeline

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a multiple of the 10 s bucket


def event(message: str, at: float, service: str = "api", **fields: object) -> bytes:
    return json.dumps({"message": message, "service": service, "timestamp": at, **fields}).encode()


def digester(max_bytes: int = 512 << 20, now: float = T0 + 3600, retention: float = 7200, **options) -> Digester:
    return Digester(max_bytes=max_bytes, retention_seconds=retention, clock=lambda: now, **options)


def test_a_range_digest_counts_what_the_same_events_give_to_analyze() -> None:
    events = []
    for i in range(600):
        level = "ERROR" if i % 7 == 0 else "info"
        text = f"payment {i} failed: timeout after {i % 50} ms" if level == "ERROR" else f"GET /cart/{i} 200 in {i % 90} ms"
        events.append({"message": text, "service": ["api", "cart", "db"][i % 3], "timestamp": T0 + i * 0.5,
                       "level": level, "labels": {"span_id": f"{i:016X}"}})
    d = digester(batch_events=128)  # several batches, every (service, bucket) absorbed more than once
    for e in events:
        d.add(json.dumps(e).encode(), fallback_time=0.0)
    got = d.between(T0, T0 + 300).digest
    want = digest_chunk(to_chunk_items([LogEvent.model_validate(e) for e in events]))
    assert got.lines == want.lines == 600
    assert {t: s.count for t, s in got.templates.items()} == {t: s.count for t, s in want.templates.items()}
    assert {t: s.levels for t, s in got.templates.items()} == {t: s.levels for t, s in want.templates.items()}
    assert got.bucket_counts() == want.bucket_counts()
    assert got.template_counts_by_service() == want.template_counts_by_service()
    assert got.span_templates() == want.span_templates()


def test_adjacent_ranges_share_no_bucket_and_miss_none() -> None:
    d = digester()
    for i in range(120):
        d.add(event(f"tick {i}", T0 + i), fallback_time=0.0)
    window, baseline = d.between(T0 + 60, T0 + 120), d.between(T0, T0 + 60)
    assert (baseline.digest.lines, window.digest.lines) == (60, 60)
    assert d.between(T0 + 56, T0 + 120).digest.lines == 60  # a bucket belongs to the range holding its middle
    assert d.between(T0 + 55, T0 + 120).digest.lines == 70
    # a window's end borders no other range: it takes the bucket its end falls in (the lines just after the alert)
    assert d.between(T0 + 60, T0 + 115).digest.lines == 50
    assert d.between(T0 + 60, T0 + 115, through_end=True).digest.lines == 60


def test_memory_bound_evicts_the_oldest_buckets_counts_the_lines_and_names_the_cut() -> None:
    d = digester(max_bytes=2 << 20, batch_events=1000)
    for i in range(60_000):  # distinct shapes, so each bucket costs real memory
        d.add(event(f"user-{i} opened session s{i}x via route r{i}y", T0 + i * 0.01), fallback_time=0.0)
    d.flush()
    stats = d.stats()
    assert stats.bytes <= stats.max_bytes
    assert stats.cut_lines > 0 and stats.lines + stats.cut_lines == 60_000
    first = d.between(T0, T0 + 10)
    assert first.cut_lines > 0 and first.digest.dropped[CUT_REASON] == first.cut_lines
    reason = first.degraded_reason("baseline", d.max_bytes)
    assert reason is not None and "RCA_DIGEST_MAX_BYTES" in reason and str(first.cut_lines) in reason
    last = d.between(T0 + 590, T0 + 600)
    assert last.cut_lines == 0 and last.degraded_reason("window", d.max_bytes) is None and last.digest.lines > 0


def test_memory_follows_templates_not_lines() -> None:
    small, large = digester(), digester()
    for n, d in ((10_000, small), (100_000, large)):
        for i in range(n):
            d.add(event(f"GET /cart/{i} 200 in {i % 90} ms", T0 + i * 300 / n, service=f"s{i % 4}"), fallback_time=0.0)
        d.flush()
    assert large.stats().lines == 10 * small.stats().lines
    assert large.stats().bytes < 1.5 * small.stats().bytes


def test_bad_oversized_and_expired_events_are_refused_or_counted() -> None:
    d = digester(max_event_bytes=200, now=T0, retention=600)
    with pytest.raises(InvalidLogEvent, match="'message'"):
        d.add(b'{"service": "api"}', fallback_time=T0)
    d.add(event("x" * 300, T0), fallback_time=T0)
    d.add(event("from last week", T0 - 7 * 86_400), fallback_time=T0)
    d.add(event("   ", T0), fallback_time=T0)
    d.add(b'{"message": "no time, no service"}', fallback_time=T0 - 5, key=b"cart")
    kept = d.between(T0 - 600, T0 + 10)
    assert d.dropped == {DROP_OVERSIZED: 1, DROP_EXPIRED: 1}
    assert kept.digest.lines == 1 and kept.digest.services == {"cart": 1}
    assert kept.digest.dropped == {"empty": 1}


def test_ingest_returns_the_refused_records_with_their_reasons() -> None:
    class Record:
        def __init__(self, value: bytes) -> None:
            self.value, self.key, self.timestamp = value, None, T0 * 1000

    good, bad = Record(event("fine", T0)), Record(b"[1]")
    refused = digester().ingest([good, bad])
    assert [(r, e.reason) for r, e in refused] == [(bad, "invalid")]


async def test_an_alert_analyzed_from_digests_gets_the_analysis_of_its_lines() -> None:
    """The reader's path (events mined on arrival, window and baseline merged) and the lines'
    path (``/analyze`` with the same events) go through the same stages to the same answer."""
    incident = simulate("db_pool_exhaustion", alert_time=datetime.fromtimestamp(T0, timezone.utc))
    window_events = [e for e in incident.logs if isinstance(e, LogEvent)]
    baseline_events = [e for e in incident.baseline.logs if isinstance(e, LogEvent)]
    times = [e.timestamp.timestamp() for e in window_events]
    span = ContextWindow.at(T0, T0 - min(times) // 10 * 10, max(times) // 10 * 10 + 10 - T0)
    d = digester(now=T0 + 3600)
    for e in [*baseline_events, *window_events]:
        key, value = log_record(e)
        d.add(value, fallback_time=0.0, key=key)
    window, baseline = d.between(span.start, span.end), d.between(*span.baseline)
    assert window.digest.lines == len(window_events) and baseline.digest.lines == len(baseline_events)

    pipeline = local_pipeline()
    from_lines = await pipeline.analyze("a", IncidentContext(
        alert=incident.alert, window=Telemetry(logs=window_events, metrics=incident.metrics),
        baseline=Telemetry(logs=baseline_events, metrics=incident.baseline.metrics)))
    from_digests = await pipeline.analyze("b", IncidentContext(
        alert=incident.alert, window=Telemetry(metrics=incident.metrics),
        baseline=Telemetry(metrics=incident.baseline.metrics),
        window_digest=window.digest, baseline_digest=baseline.digest))
    assert from_digests.stats.lines_in == from_lines.stats.lines_in
    assert from_digests.stats.templates == from_lines.stats.templates
    assert from_digests.classification == from_lines.classification
    assert [(h.service, h.category, h.confidence) for h in from_digests.hypotheses] == \
           [(h.service, h.category, h.confidence) for h in from_lines.hypotheses]
    assert [(a.kind, a.subject, a.score) for a in from_digests.anomalies] == \
           [(a.kind, a.subject, a.score) for a in from_lines.anomalies]
    assert from_digests.hypotheses[0].service == incident.culprit


_MINE_IN_A_PROCESS = """
import json, sys
from pipelines.streaming.digester import Digester
digester = Digester(max_bytes=1 << 30, retention_seconds=1e10, clock=lambda: 0.0)
for line in sys.stdin:
    digester.add(line.strip().encode(), fallback_time=0.0)
json.dump(digester.between(0.0, 1e10).digest.to_dict(), sys.stdout)
"""


def _mine_in_a_process(events: list[bytes], hash_seed: str) -> Digest:
    """Mine ``events`` in a fresh Python process (its own string hashing) and bring its digest back as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", _MINE_IN_A_PROCESS], input=b"\n".join(events), capture_output=True, check=True,
        cwd=Path(__file__).resolve().parents[2], env={**os.environ, "PYTHONHASHSEED": hash_seed}, timeout=300,
    )
    return Digest.from_dict(json.loads(done.stdout))


def test_two_processes_mining_the_same_lines_agree_on_template_ids_and_their_digests_merge_exactly() -> None:
    events = [event(text, T0 + i * 0.7, service=["api", "cart"][i % 2], level=level)
              for i in range(3000)
              for text, level in [([f"GET /cart/{i} 200 in {i % 90} ms", f"db pool exhausted after {i % 30} s",
                                    f"user u{i % 50} logged in from 10.0.{i % 9}.{i % 200}",
                                    f"Connection refused: payments-{i % 3}:8080"][i % 4],
                                   "ERROR" if i % 4 in (1, 3) else "INFO")]]
    one, other = _mine_in_a_process(events, "1"), _mine_in_a_process(events, "2")
    assert set(one.templates) == set(other.templates) and len(one.templates) >= 4
    assert one.bucket_counts() == other.bucket_counts()

    first, second = _mine_in_a_process(events[:1700], "3"), _mine_in_a_process(events[1700:], "4")
    merged = Digest.merge_all([first, second])
    assert merged.lines == one.lines == 3000
    assert {t: s.count for t, s in merged.templates.items()} == {t: s.count for t, s in one.templates.items()}
    assert {t: s.levels for t, s in merged.templates.items()} == {t: s.levels for t, s in one.templates.items()}
    assert merged.bucket_counts() == one.bucket_counts()
    assert merged.template_counts_by_service() == one.template_counts_by_service()
