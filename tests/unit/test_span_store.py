"""The SpanStore: the spans of one ``rca.spans`` partition per time bucket, bounded by memory and by
retention, with what a bound cut counted and named; shares of a range merge. No broker needed."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from pipelines.schemas import Span
from pipelines.streaming.span_store import CUT_REASON, DROP_EXPIRED, DROP_INCOMPLETE, SpanRange, SpanStore
from tests.support.otlp import otlp_batch

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a multiple of the 10 s bucket


def span(i: int, at: float, service: str = "cart") -> Span:
    return Span(trace_id=f"{i:032x}", span_id=f"{i:016x}", service=service, operation=f"GET /cart/{i}",
                start=at, duration_ms=3.5)


def store(max_bytes: int = 64 << 20, now: float = T0 + 3600, retention: float = 7200) -> SpanStore:
    return SpanStore(max_bytes=max_bytes, retention_seconds=retention, clock=lambda: now)


def test_a_range_holds_the_spans_that_started_in_it_time_ordered() -> None:
    s = store()
    s.add([span(i, T0 + 59 - i) for i in range(60)])  # arrive newest first
    window = s.between(T0 + 30, T0 + 60)
    assert [x.start for x in window.spans] == [T0 + 30 + k for k in range(30)]
    assert window.spans[0] == span(29, T0 + 30)
    assert len(s.between(T0, T0 + 30).spans) == 30  # adjacent ranges share no span
    assert len(s.between(T0, T0 + 59).spans) == 59 and len(s.between(T0, T0 + 59, through_end=True).spans) == 60


def test_memory_bound_evicts_the_oldest_buckets_counts_the_spans_and_names_the_cut() -> None:
    s = store(max_bytes=256 << 10)
    s.add([span(i, T0 + i * 0.1) for i in range(6000)])  # 600 s of spans, ~400 bytes each: far past 256 KiB
    stats = s.stats()
    assert stats.bytes <= s.max_bytes
    assert stats.cut_spans > 0 and stats.spans + stats.cut_spans == 6000
    assert stats.dropped == {CUT_REASON: stats.cut_spans}
    first = s.between(T0, T0 + 10)
    assert first.spans == () and first.cut_spans == 100
    reason = first.degraded_reason("baseline", s.max_bytes)
    assert reason is not None and reason.startswith(f"{CUT_REASON}: 100 spans of the baseline")
    assert "RCA_SPAN_BUFFER_MAX_BYTES" in reason
    last = s.between(T0 + 590, T0 + 600)
    assert last.cut_spans == 0 and last.degraded_reason("window", s.max_bytes) is None and len(last.spans) == 100


def test_spans_older_than_retention_are_counted_not_held_and_expire_as_time_goes_on() -> None:
    now = [T0]
    s = SpanStore(max_bytes=64 << 20, retention_seconds=600, clock=lambda: now[0])
    s.add([span(1, T0 - 7 * 86_400), span(2, T0 - 300), span(3, T0 - 5)])
    assert s.dropped == {DROP_EXPIRED: 1} and s.stats().spans == 2
    now[0] = T0 + 400  # the span at T0 - 300 is now past retention
    assert [x.span_id for x in s.between(T0 - 600, T0 + 600).spans] == [span(3, 0).span_id]
    assert s.dropped == {DROP_EXPIRED: 2} and s.stats().spans == 1


def test_ingest_keeps_the_good_spans_counts_the_incomplete_and_returns_the_unusable_records() -> None:
    s = store()
    batch = otlp_batch({"gateway": [{"trace": "ab" * 16, "span": "cd" * 8, "name": "GET /", "start": T0 + 1, "ms": 4.0}]})
    broken = json.loads(batch)
    broken["resourceSpans"][0]["scopeSpans"][0]["spans"].append({"name": "no ids", "startTimeUnixNano": "1"})
    records = [SimpleNamespace(value=json.dumps(broken).encode()), SimpleNamespace(value=b"not json"),
               SimpleNamespace(value=span(7, T0 + 2).model_dump_json().encode())]
    bad = s.ingest(records)
    assert [(r.value, e.reason) for r, e in bad] == [(b"not json", "undecodable")]
    assert s.dropped == {DROP_INCOMPLETE: 1}
    assert [(x.service, x.operation) for x in s.between(T0, T0 + 10).spans] == [("gateway", "GET /"), ("cart", "GET /cart/7")]


def test_shares_of_a_range_merge_in_time_order_with_their_cuts_summed() -> None:
    a = SpanRange((span(1, T0 + 1), span(3, T0 + 3)), cut_spans=2)
    b = SpanRange((span(2, T0 + 2),), cut_spans=1)
    merged = SpanRange.merge([a, b, SpanRange()])
    assert [x.span_id for x in merged.spans] == [span(i, 0).span_id for i in (1, 2, 3)] and merged.cut_spans == 3


def test_a_store_refuses_bounds_that_make_no_sense() -> None:
    with pytest.raises(ValueError, match="max_bytes must be positive, got 0"):
        SpanStore(max_bytes=0, retention_seconds=60)
    with pytest.raises(ValueError, match="retention_seconds must be positive, got 0"):
        SpanStore(max_bytes=1, retention_seconds=0)
