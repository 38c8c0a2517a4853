"""A Loki stand-in that answers ``GET /loki/api/v1/query_range`` as documented.

https://grafana.com/docs/loki/latest/reference/loki-http-api/#query-logs-within-a-range-of-time:
parameters ``query`` (a stream selector here: ``{a="x", b="y"}``, equality matchers only),
``start``/``end`` in unix nanoseconds (start inclusive, end exclusive), ``limit``,
``direction``; the answer groups lines into ``streams`` with ``[["<ns>", "<line>"], ...]``.
``mode`` switches to failures: ``slow``, ``garbage``, ``error`` (HTTP 500), ``matrix``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.support.http_standin import Reply, Request, StandinServer

_MATCHER = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')


@dataclass
class Entry:
    labels: dict[str, str]
    ts_ns: int
    line: str


class LokiStandin(StandinServer):
    def __init__(self, entries: list[Entry] | None = None, *, mode: str = "ok", delay: float = 0.0) -> None:
        self.entries = list(entries or [])
        self.mode = mode
        self.delay = delay
        super().__init__(self._handle)

    def selectors(self) -> list[str]:
        return [r.param("query") or "" for r in self.requests]

    def _handle(self, request: Request) -> Reply:
        if request.path != "/loki/api/v1/query_range":
            return Reply(404, "404 page not found\n")
        if self.mode == "slow":
            return Reply(200, {"status": "success", "data": {"resultType": "streams", "result": []}}, delay=self.delay)
        if self.mode == "garbage":
            return Reply(200, b"\x00\x01\x02 not json")
        if self.mode == "error":
            return Reply(500, "too many outstanding requests\n")
        if self.mode == "matrix":
            return Reply(200, {"status": "success", "data": {"resultType": "matrix", "result": []}})
        query = request.param("query") or ""
        if not query.startswith("{") or not query.rstrip().endswith("}"):
            return Reply(400, "parse error: queries require at least one stream selector\n")
        wanted = {k: v.encode().decode("unicode_escape") for k, v in _MATCHER.findall(query)}
        try:
            start = int(request.param("start") or 0)
            end = int(request.param("end") or 2**63 - 1)
            limit = int(request.param("limit") or 100)
        except ValueError:
            return Reply(400, "invalid start/end/limit\n")
        forward = (request.param("direction") or "backward") == "forward"
        hits = [
            e for e in self.entries
            if start <= e.ts_ns < end and all(e.labels.get(k) == v for k, v in wanted.items())
        ]
        hits.sort(key=lambda e: e.ts_ns, reverse=not forward)
        hits = hits[:limit]
        streams: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
        for e in hits:
            streams.setdefault(tuple(sorted(e.labels.items())), []).append([str(e.ts_ns), e.line])
        result = [{"stream": dict(key), "values": values} for key, values in streams.items()]
        return Reply(200, {"status": "success", "data": {"resultType": "streams", "result": result}})
