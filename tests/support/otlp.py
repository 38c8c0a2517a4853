"""OTLP/JSON trace batches as the OpenTelemetry Collector's Kafka exporter (``encoding: otlp_json``) writes them."""

from __future__ import annotations

import json
from typing import Any


def otlp_batch(services: dict[str, list[dict[str, Any]]]) -> bytes:
    """One ``ExportTraceServiceRequest``: per service, its spans given as
    ``{trace, span, parent, name, start (unix s), ms, error}``."""
    resource_spans = []
    for service, spans in services.items():
        resource_spans.append({
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}},
                                        {"key": "k8s.pod.name", "value": {"stringValue": f"{service}-7d9f-1"}}]},
            "scopeSpans": [{
                "scope": {"name": "io.opentelemetry.spring-webmvc-6.0", "version": "2.1.0"},
                "spans": [
                    {
                        "traceId": s["trace"], "spanId": s["span"], "parentSpanId": s.get("parent", ""),
                        "name": s["name"], "kind": 2,
                        "startTimeUnixNano": str(_nanos(s["start"])),
                        "endTimeUnixNano": str(_nanos(s["start"]) + round(s["ms"] * 1e6)),
                        "attributes": [{"key": "http.response.status_code", "value": {"intValue": "500" if s.get("error") else "200"}}],
                        "status": {"code": 2, "message": "boom"} if s.get("error") else {},
                    }
                    for s in spans
                ],
            }],
        })
    return json.dumps({"resourceSpans": resource_spans}).encode()


def _nanos(seconds: float) -> int:
    return round(seconds * 1e6) * 1000  # microsecond floats, exact nanosecond integers
