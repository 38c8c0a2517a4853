"""Trace spans from Kafka: OTLP/JSON batches as the OpenTelemetry Collector's Kafka exporter writes them.

Why OTLP/JSON on Kafka
    Most traced services already send spans to an OpenTelemetry Collector. Its ``kafka``
    exporter with ``encoding: otlp_json`` publishes each batch as one
    ``ExportTraceServiceRequest`` in the OTLP/JSON encoding (ids in hex, times as decimal
    strings of nanoseconds), so the digesters can hold the last two windows of spans beside the logs
    without a trace store (``configs/otel-collector.yaml``). A producer of its own may also
    send one span per message as this project's ``Span`` JSON.

A batch that is not JSON, or holds no valid span, is refused with the reason, for the
dead-letter topic; spans of a batch that lack an id, a service or a start time are left out
and counted, and the rest of the batch is kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from pipelines.schemas import Span, describe_validation_error

#: OTLP status code of a span that failed (``STATUS_CODE_ERROR``)
_STATUS_ERROR = 2


class InvalidSpanBatch(ValueError):
    """A Kafka record that holds no usable span; ``reason`` is the dead-letter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class SpanBatch:
    """The spans decoded from one record, and how many of its spans were left out."""

    spans: list[Span] = field(default_factory=list)
    skipped: int = 0


def decode_spans(value: bytes | None) -> SpanBatch:
    """The spans of one Kafka record: an OTLP/JSON ``ExportTraceServiceRequest`` or one ``Span`` object."""
    if not value:
        raise InvalidSpanBatch("undecodable", "empty message")
    try:
        document = json.loads(value)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidSpanBatch("undecodable", f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidSpanBatch("invalid", f"expected a JSON object, got {type(document).__name__}")
    if "resourceSpans" in document:
        batch = _from_otlp(document["resourceSpans"])
    elif "span_id" in document:
        try:
            batch = SpanBatch([Span.model_validate(document)])
        except ValidationError as error:
            raise InvalidSpanBatch("invalid", f"not a span: {describe_validation_error(error)}") from None
    else:
        raise InvalidSpanBatch("invalid", "neither an OTLP ExportTraceServiceRequest (resourceSpans) nor a span (span_id)")
    if not batch.spans:
        raise InvalidSpanBatch("invalid", f"no usable span ({batch.skipped} without an id, a service or a start time)")
    return batch


def _from_otlp(resource_spans: Any) -> SpanBatch:
    batch = SpanBatch()
    if not isinstance(resource_spans, list):
        raise InvalidSpanBatch("invalid", "resourceSpans is not a list")
    for resource in resource_spans:
        if not isinstance(resource, dict):
            continue
        service = _attribute(resource.get("resource", {}), "service.name")
        # "instrumentationLibrarySpans": the name before OTLP 0.15, still sent by old SDKs
        for scope in resource.get("scopeSpans") or resource.get("instrumentationLibrarySpans") or []:
            raws = scope.get("spans") if isinstance(scope, dict) else None
            for raw in raws if isinstance(raws, list) else []:
                span = _span(raw, service)
                if span is None:
                    batch.skipped += 1
                else:
                    batch.spans.append(span)
    return batch


def _span(raw: Any, service: str | None) -> Span | None:
    if not isinstance(raw, dict) or not service:
        return None
    trace_id, span_id = _hex(raw.get("traceId")), _hex(raw.get("spanId"))
    start, end = _nanos(raw.get("startTimeUnixNano")), _nanos(raw.get("endTimeUnixNano"))
    if not trace_id or not span_id or start is None:
        return None
    status = raw.get("status") if isinstance(raw.get("status"), dict) else {}
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=_hex(raw.get("parentSpanId")) or None,
        service=service,
        operation=str(raw.get("name") or ""),
        start=start / 1e9,
        duration_ms=max(0.0, ((end if end is not None else start) - start) / 1e6),
        error=status.get("code") in (_STATUS_ERROR, "STATUS_CODE_ERROR"),
    )


def _attribute(holder: Any, key: str) -> str | None:
    """A string attribute of an OTLP resource (``[{"key": ..., "value": {"stringValue": ...}}]``)."""
    attributes = holder.get("attributes") if isinstance(holder, dict) else None
    for item in attributes if isinstance(attributes, list) else []:
        if isinstance(item, dict) and item.get("key") == key:
            value = item.get("value") or {}
            found = value.get("stringValue") if isinstance(value, dict) else None
            return found if isinstance(found, str) and found else None
    return None


def _hex(value: Any) -> str:
    """A trace or span id as lower-case hex; '' for anything that is not one."""
    if not isinstance(value, str):
        return ""
    text = value.strip().lower()
    return text if text and len(text) <= 32 and all(c in "0123456789abcdef" for c in text) else ""


def _nanos(value: Any) -> int | None:
    """OTLP/JSON writes 64-bit times as decimal strings; numbers are taken too."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
