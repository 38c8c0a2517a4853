"""Spans from Kafka: OTLP/JSON batches decoded, bad records refused with a reason, incomplete spans counted."""

from __future__ import annotations

import json

import pytest

from pipelines.streaming.otlp import InvalidSpanBatch, decode_spans
from tests.support.otlp import otlp_batch

T = 1_700_000_000.0


def test_an_otlp_batch_gives_every_span_with_its_service_parent_time_and_status() -> None:
    value = otlp_batch({
        "gateway": [{"trace": "4BF92F3577B34DA6A3CE929D0E0E4736", "span": "00f067aa0ba902b7", "name": "GET /cart", "start": T, "ms": 12.5}],
        "cart": [{"trace": "4bf92f3577b34da6a3ce929d0e0e4736", "span": "00f067aa0ba902b8", "parent": "00f067aa0ba902b7",
                  "name": "CartController.get", "start": T + 0.001, "ms": 9.0, "error": True}],
    })
    batch = decode_spans(value)
    assert batch.skipped == 0
    gateway, cart = batch.spans
    assert (gateway.service, gateway.operation, gateway.parent_id, gateway.error) == ("gateway", "GET /cart", None, False)
    assert gateway.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"  # ids in lower-case hex, as logs print them
    assert gateway.start == pytest.approx(T) and gateway.duration_ms == pytest.approx(12.5)
    assert (cart.service, cart.parent_id, cart.error) == ("cart", "00f067aa0ba902b7", True)


def test_spans_without_an_id_a_service_or_a_start_are_left_out_and_counted() -> None:
    document = json.loads(otlp_batch({"cart": [{"trace": "ab" * 16, "span": "cd" * 8, "name": "ok", "start": T, "ms": 1.0},
                                               {"trace": "ab" * 16, "span": "not-hex", "name": "bad id", "start": T, "ms": 1.0}]}))
    document["resourceSpans"].append({"resource": {"attributes": []}, "scopeSpans": [{"spans": [{"traceId": "ab" * 16, "spanId": "ef" * 8}]}]})
    batch = decode_spans(json.dumps(document).encode())
    assert [s.operation for s in batch.spans] == ["ok"]
    assert batch.skipped == 2


def test_a_single_span_in_this_projects_schema_is_taken_too() -> None:
    span = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "service": "cart", "operation": "get", "start": T, "duration_ms": 3.0}
    assert decode_spans(json.dumps(span).encode()).spans[0].service == "cart"


@pytest.mark.parametrize(("value", "reason", "words"), [
    (b"", "undecodable", "empty"),
    (b"\xff\x00 not json", "undecodable", "not JSON"),
    (b"[1, 2]", "invalid", "JSON object"),
    (b'{"hello": 1}', "invalid", "resourceSpans"),
    (b'{"resourceSpans": {}}', "invalid", "not a list"),
    (b'{"resourceSpans": []}', "invalid", "no usable span"),
    (b'{"span_id": "ab", "service": "x"}', "invalid", "not a span"),
])
def test_a_record_without_any_usable_span_is_refused_with_its_reason(value: bytes, reason: str, words: str) -> None:
    with pytest.raises(InvalidSpanBatch) as caught:
        decode_spans(value)
    assert caught.value.reason == reason and words in caught.value.detail
