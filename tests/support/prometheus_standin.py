"""A Prometheus stand-in that answers ``GET /api/v1/query_range`` as documented.

https://prometheus.io/docs/prometheus/latest/querying/api/#range-queries: parameters
``query``, ``start``, ``end``, ``step``; success is ``{"status": "success", "data":
{"resultType": "matrix", "result": [{"metric": {...}, "values": [[t, "v"], ...]}]}}`` and
failure ``{"status": "error", "errorType": ..., "error": ...}`` with a 4xx/5xx code.
``mode`` switches to the failures a real server shows: ``slow``, ``garbage`` (not JSON),
``error`` (HTTP 503 with an error body), ``vector`` (a well-formed answer of the wrong type).
"""

from __future__ import annotations

import re
from typing import Callable

from tests.support.http_standin import Reply, Request, StandinServer

# query -> list of (series labels, value at time t); a value may be a string such as "NaN"
SeriesFor = Callable[[str], list[tuple[dict[str, str], Callable[[float], float | str]]]]


def default_series(query: str) -> list[tuple[dict[str, str], Callable[[float], float | str]]]:
    """One series per query, labelled with the first quoted label value in it (the service)."""
    match = re.search(r'="([^"]*)"', query)
    service = match.group(1) if match else "unknown"
    return [({"service": service}, lambda t: 42.0)]


class PrometheusStandin(StandinServer):
    def __init__(self, series_for: SeriesFor = default_series, *, mode: str = "ok", delay: float = 0.0) -> None:
        self.series_for = series_for
        self.mode = mode
        self.delay = delay
        super().__init__(self._handle)

    def queries(self) -> list[str]:
        return [r.param("query") or "" for r in self.requests]

    def _handle(self, request: Request) -> Reply:
        if request.path != "/api/v1/query_range":
            return Reply(404, {"status": "error", "errorType": "not_found", "error": request.path})
        if self.mode == "slow":
            return Reply(200, {"status": "success", "data": {"resultType": "matrix", "result": []}}, delay=self.delay)
        if self.mode == "garbage":
            return Reply(200, "<html>502 Bad Gateway</html>")
        if self.mode == "error":
            return Reply(503, {"status": "error", "errorType": "unavailable", "error": "query engine overloaded"})
        if self.mode == "vector":
            return Reply(200, {"status": "success", "data": {"resultType": "vector", "result": []}})
        try:
            query = request.param("query") or ""
            start, end, step = (float(request.param(k) or "x") for k in ("start", "end", "step"))
        except ValueError:
            return Reply(400, {"status": "error", "errorType": "bad_data", "error": "invalid start/end/step"})
        if not query or step <= 0 or end < start:
            return Reply(400, {"status": "error", "errorType": "bad_data", "error": "invalid parameters"})
        result = []
        for labels, value in self.series_for(query):
            values = []
            t = start
            while t <= end:
                v = value(t)
                values.append([t, v if isinstance(v, str) else repr(float(v))])
                t += step
            result.append({"metric": labels, "values": values})
        return Reply(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})
