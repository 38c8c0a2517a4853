"""LogBuffers and parse_log_event: bounded memory, oldest-first eviction, windows, and bad events named."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.streaming.log_buffer import (
    BLOCK_EVENTS,
    DROP_EVICTED,
    DROP_OVERSIZED,
    ENTRY_OVERHEAD_BYTES,
    InvalidLogEvent,
    LogBuffers,
    parse_log_event,
    parse_timestamp,
)
from pipelines.schemas import LogEvent

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()


def raw(message: str, service: str | None = "api", at: float | str | None = T0, **extra: object) -> bytes:
    event: dict[str, object] = {"message": message, **extra}
    if service is not None:
        event["service"] = service
    if at is not None:
        event["timestamp"] = at if isinstance(at, str) else datetime.fromtimestamp(at, timezone.utc).isoformat()
    return json.dumps(event).encode()


# ------------------------------------------------------------------ parse_log_event


def test_parse_reads_service_and_iso_time() -> None:
    service, moment = parse_log_event(raw("boom", "cart", "2026-01-01T00:00:05Z"), fallback_time=0.0)
    assert service == "cart"
    assert moment == T0 + 5


def test_parse_naive_time_is_utc_and_numbers_are_unix_seconds_or_millis() -> None:
    assert parse_timestamp("2026-01-01T00:00:00") == T0
    assert parse_timestamp(T0) == T0
    assert parse_timestamp(T0 * 1000) == T0
    assert parse_timestamp(True) is None
    assert parse_timestamp("yesterday") is None


def test_parse_falls_back_to_record_time_and_key() -> None:
    service, moment = parse_log_event(raw("x", service=None, at=None), fallback_time=123.5, key=b"payments")
    assert (service, moment) == ("payments", 123.5)
    service, _ = parse_log_event(raw("x", service=None, at=None), fallback_time=1.0)
    assert service == "unknown"


@pytest.mark.parametrize(
    ("value", "reason", "names"),
    [
        (None, "empty", "no value"),
        (b"\xff\xfe not json", "undecodable", "not JSON"),
        (b'{"message": "unterminated', "undecodable", "not JSON"),
        (b"[1, 2]", "invalid", "JSON object"),
        (b'{"service": "api"}', "invalid", "'message'"),
        (b'{"message": 5}', "invalid", "'message'"),
        (b'{"message": "m", "service": 3}', "invalid", "'service'"),
        (b'{"message": "m", "labels": [1]}', "invalid", "'labels'"),
        (b'{"message": "m", "timestamp": "not a time"}', "invalid", "'timestamp'"),
    ],
)
def test_parse_names_what_is_wrong(value: bytes | None, reason: str, names: str) -> None:
    with pytest.raises(InvalidLogEvent) as caught:
        parse_log_event(value, fallback_time=0.0)
    assert caught.value.reason == reason
    assert names in str(caught.value)


def test_what_parse_accepts_the_contract_model_accepts() -> None:
    value = raw("GET /cart 500", "cart", pod="cart-1", level="ERROR", labels={"zone": "a"})
    parse_log_event(value, fallback_time=0.0)
    event = LogEvent.model_validate_json(value)
    assert event.pod == "cart-1" and event.labels == {"zone": "a"}


# ------------------------------------------------------------------ LogBuffers


def test_window_returns_events_of_the_range_in_time_order() -> None:
    buffers = LogBuffers(max_bytes=10_000_000)
    for offset in (30, 10, 20, 400):
        buffers.add("api", T0 + offset, raw(f"at {offset}", at=T0 + offset))
    buffers.add("db", T0 + 15, raw("db at 15", "db", at=T0 + 15))
    events = buffers.window(T0, T0 + 60)
    assert [e["message"] for e in events] == ["at 10", "db at 15", "at 20", "at 30"]
    assert [e["message"] for e in buffers.window(T0, T0 + 60, services=["db"])] == ["db at 15"]
    assert buffers.window(T0, T0 + 60, services=["nobody"]) == []
    assert buffers.services() == ["api", "db"]


def test_window_fills_in_service_and_time_the_event_lacked() -> None:
    buffers = LogBuffers(max_bytes=10_000_000)
    buffers.add("from-key", T0 + 1, raw("no meta", service=None, at=None))
    (event,) = buffers.window(T0, T0 + 2)
    assert event["service"] == "from-key"
    assert datetime.fromisoformat(event["timestamp"]).timestamp() == T0 + 1
    LogEvent.model_validate(event)


def test_memory_bound_evicts_oldest_arrivals_first_and_counts_them() -> None:
    value_size = len(raw("m" * 100, at=T0))
    per_event = value_size + ENTRY_OVERHEAD_BYTES
    buffers = LogBuffers(max_bytes=per_event * 50, block_events=4)
    for index in range(200):
        buffers.add("api" if index % 2 else "db", T0 + index, raw("m" * 100, at=T0 + index))
    stats = buffers.stats()
    assert stats.bytes <= stats.max_bytes
    assert stats.events == 50
    assert stats.dropped[DROP_EVICTED] == 150
    kept = sorted(datetime.fromisoformat(e["timestamp"]).timestamp() - T0 for e in buffers.window(T0, T0 + 1000))
    assert len(kept) == 50
    # global arrival order, to within block_events arrivals: both services keep their latest lines
    assert kept[0] >= 150 - 4
    assert set(range(150 + 4, 200)) <= set(kept)


def test_a_quiet_service_keeps_its_recent_lines_when_a_chatty_one_fills_the_budget() -> None:
    buffers = LogBuffers(max_bytes=200_000, block_events=64)
    buffers.add("quiet", T0, raw("quiet early", "quiet", at=T0))
    for index in range(5_000):
        buffers.add("chatty", T0 + index / 10, raw("noise", "chatty", at=T0 + index / 10))
    buffers.add("quiet", T0 + 500, raw("quiet late", "quiet", at=T0 + 500))
    assert [e["message"] for e in buffers.window(T0, T0 + 600, services=["quiet"])] == ["quiet late"]
    assert buffers.stats().dropped[DROP_EVICTED] > 0


def test_eviction_across_many_blocks_keeps_accounting_exact() -> None:
    buffers = LogBuffers(max_bytes=400_000)
    total = BLOCK_EVENTS * 5
    for index in range(total):
        buffers.add(f"svc{index % 3}", T0 + index / 100, raw(f"line {index}", f"svc{index % 3}", at=T0 + index / 100))
    stats = buffers.stats()
    held = buffers.raw_window(-1e18, 1e18)
    assert len(held) == stats.events
    assert stats.events + stats.dropped[DROP_EVICTED] == total
    assert stats.bytes == sum(len(v) + ENTRY_OVERHEAD_BYTES for _, _, v in held)


def test_oversized_event_is_refused_and_counted() -> None:
    buffers = LogBuffers(max_bytes=1_000_000, max_event_bytes=100)
    assert buffers.add("api", T0, raw("x" * 500)) is False
    assert buffers.add("api", T0, raw("small")) is True
    assert buffers.stats().dropped == {DROP_OVERSIZED: 1}
    assert buffers.stats().events == 1


def test_window_limit_keeps_the_latest_and_counts_the_rest() -> None:
    buffers = LogBuffers(max_bytes=10_000_000)
    for index in range(10):
        buffers.add("api", T0 + index, raw(str(index), at=T0 + index))
    events = buffers.window(T0, T0 + 100, limit=3)
    assert [e["message"] for e in events] == ["7", "8", "9"]
    assert buffers.stats().dropped["context_limit"] == 7


def test_rejects_a_nonpositive_budget() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        LogBuffers(max_bytes=0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 600), st.integers(0, 300)), max_size=200),
    st.integers(2_000, 40_000),
    st.integers(1, 8),
    st.integers(0, 600),
    st.integers(0, 600),
)
def test_window_matches_a_brute_force_model(
    events: list[tuple[str, int, int]], budget: int, block_events: int, lo: int, width: int
) -> None:
    buffers = LogBuffers(max_bytes=budget, block_events=block_events)
    added = []
    for service, offset, size in events:
        value = raw("x" * size, service, at=T0 + offset)
        buffers.add(service, T0 + offset, value)
        added.append((T0 + offset, service, value))
    held = buffers.raw_window(-1e18, 1e18)
    stats = buffers.stats()
    assert len(held) == stats.events
    assert stats.bytes == sum(len(v) + ENTRY_OVERHEAD_BYTES for _, _, v in held) <= budget
    if block_events == 1:  # eviction is then exactly first-in, first-out
        assert sorted(v for _, _, v in held) == sorted(v for _, _, v in added[len(added) - stats.events :])
    start, end = T0 + lo, T0 + lo + width
    expected = sorted((t, s, v) for t, s, v in held if start <= t <= end)
    assert sorted(buffers.raw_window(start, end)) == expected
    assert [t for t, _, _ in buffers.raw_window(start, end)] == [t for t, _, _ in expected]


class Record:
    """What aiokafka gives the reader: value, key, timestamp in milliseconds."""

    def __init__(self, value: bytes | None, key: bytes | None = None, timestamp: int = int(T0 * 1000)) -> None:
        self.value, self.key, self.timestamp = value, key, timestamp


def test_ingest_holds_good_events_and_returns_the_bad_with_reasons() -> None:
    records = [
        Record(raw("fast path", "api", at=T0 + 1)),
        Record(raw("naive time", "api", at="2026-01-01T00:00:02")),
        Record(raw("no service, keyed", service=None, at=T0 + 3), key=b"db"),
        Record(raw("no time", "api", at=None), timestamp=int((T0 + 4) * 1000)),
        Record(b"not json"),
        Record(b'{"message": "m", "pod": 7}'),
        Record(None),
    ]
    buffers = LogBuffers(max_bytes=10_000_000)
    held, bad = buffers.ingest(records)
    assert held == 4
    assert [(record is records[i], error.reason) for i, (record, error) in zip((4, 5, 6), bad)] == [
        (True, "undecodable"), (True, "invalid"), (True, "empty")]
    window = buffers.window(T0, T0 + 10)
    assert [(e["message"], e["service"]) for e in window] == [
        ("fast path", "api"), ("naive time", "api"), ("no service, keyed", "db"), ("no time", "api")]
    assert buffers.stats().events == 4


def test_ingest_and_add_account_the_same() -> None:
    values = [raw(f"line {i}", f"s{i % 4}", at=T0 + i) for i in range(3000)]
    one, many = LogBuffers(max_bytes=300_000, block_events=50), LogBuffers(max_bytes=300_000, block_events=50)
    for value in values:
        service, moment = parse_log_event(value, 0.0)
        one.add(service, moment, value)
    many.ingest(Record(value) for value in values)
    assert one.stats() == many.stats()
    assert one.raw_window(T0, T0 + 5000) == many.raw_window(T0, T0 + 5000)
