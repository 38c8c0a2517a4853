#!/usr/bin/env python3
"""Demo workload: one simulated service that Prometheus can scrape and Loki can be asked about.

It turns an incident scenario of ``pipelines/simulate.py`` into a live service, so the real
alert loop (Prometheus rule -> Alertmanager -> the analyzer's webhook) can run on one machine:

* ``GET /metrics``: real Prometheus metrics of the scenario's alerting service, updated twice a
  second by simulated traffic: ``http_requests_total{service,method,status}``, the histogram
  ``http_request_duration_seconds{service}``, and cAdvisor-style
  ``container_cpu_usage_seconds_total`` / ``container_memory_working_set_bytes`` /
  ``container_spec_memory_limit_bytes`` with ``container=<service>`` (the conventions
  ``configs/prometheus-rules.yaml`` reads).
* ``POST /fault`` injects the scenario's fault (its metric effect on the alerting service and its
  log lines from now on); ``DELETE /fault`` clears it. ``GET /status`` says which is active.
* ``GET /loki/api/v1/query_range``: the service's logs through Loki's documented range-query API
  (https://grafana.com/docs/loki/latest/reference/loki-http-api/#query-logs-within-a-range-of-time),
  stream selectors only, since no Loki server runs here. Lines are the scenario's: normal traffic
  of every shop service, and the fault's lines from the moment it is injected, each visible once
  its time has come. Streams are labelled ``service``, ``namespace="shop"`` and ``level``.

usage: python scripts/workload.py --port 9100 [--scenario third_party_outage] [--seed 7]
The analyzer reads these logs with RCA_LOKI_URL=http://127.0.0.1:9100 (scripts/stack sets it).
"""

from __future__ import annotations

import argparse
import bisect
import json
import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from pipelines.schemas import LogEvent, LogInput
from pipelines.simulate import SCENARIOS, simulate

log = logging.getLogger("workload")

# Values of a healthy service; a fault moves the alerting service's values to the scenario's.
NORMAL = {"cpu_usage_percent": 25.0, "memory_usage_percent": 55.0, "error_rate": 0.004, "latency_p95_seconds": 0.18}
REQUESTS_PER_SECOND = 20
TICK_SECONDS = 0.5
MEMORY_LIMIT_BYTES = 512 * 1024 * 1024
NAMESPACE = "shop"
MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
LOGFMT_FIELD = re.compile(r'(?:^|\s)(ts|service|level)=("[^"]*"|\S+)')


# ---------------------------------------------------------------- logs


@dataclass(frozen=True)
class Line:
    """One log entry as Loki would store it."""

    ts_ns: int
    service: str
    level: str
    text: str


def to_line(entry: LogInput) -> Line | None:
    """A simulated entry with its time and service; None when it carries neither."""
    if isinstance(entry, LogEvent):
        if entry.timestamp is None or not entry.service:
            return None
        return Line(int(entry.timestamp.timestamp() * 1e9), entry.service, (entry.level or "info").lower(), entry.message)
    text = entry if isinstance(entry, str) else json.dumps(entry)
    fields: dict[str, str] = {}
    if text.startswith("{"):
        try:
            fields = {k: str(v) for k, v in json.loads(text).items() if k in ("ts", "service", "level")}
        except ValueError:
            return None
    else:
        fields = {k: v.strip('"') for k, v in LOGFMT_FIELD.findall(text)}
    if "ts" not in fields or "service" not in fields:
        return None
    moment = datetime.fromisoformat(fields["ts"].replace("Z", "+00:00"))
    return Line(int(moment.timestamp() * 1e9), fields["service"], fields.get("level", "info").lower(), text)


class LogTimeline:
    """The service's log as time passes: a normal segment, then the fault's from the injection on.

    Segments come from :func:`pipelines.simulate.simulate` with the alert time chosen so that
    the simulated times are wall-clock times: its fault-free baseline for a normal segment, its
    window from the fault's start for a fault segment. A segment that runs out is extended.
    """

    def __init__(self, scenario: str, seed: int, start: float) -> None:
        self._scenario = scenario
        self._seed = seed
        self._lock = threading.Lock()
        self._lines: list[Line] = []
        self._keys: list[int] = []
        self._kind = "normal"
        self._segment_end = 0
        self._append("normal", start - 300)

    def _segment(self, kind: str, at: float) -> tuple[list[Line], int]:
        moment = datetime.fromtimestamp(at, tz=timezone.utc)
        if kind == "normal":
            # the baseline covers [alert - 18 min, alert - 8 min)
            entries = simulate(self._scenario, seed=self._seed, alert_time=moment + timedelta(minutes=18)).baseline.logs
            length = 600
        else:
            # the window's fault starts 2 minutes before the alert and lasts 4 minutes
            entries = simulate(self._scenario, seed=self._seed, alert_time=moment + timedelta(minutes=2)).logs
            length = 240
        start_ns = int(at * 1e9)
        lines = sorted((line for e in entries if (line := to_line(e)) and line.ts_ns >= start_ns), key=lambda l: l.ts_ns)
        return lines, start_ns + length * 1_000_000_000

    def _append(self, kind: str, at: float) -> None:
        lines, end = self._segment(kind, at)
        cut = bisect.bisect_left(self._keys, int(at * 1e9))
        del self._lines[cut:], self._keys[cut:]
        self._lines.extend(lines)
        self._keys.extend(line.ts_ns for line in lines)
        self._kind, self._segment_end = kind, end

    def switch(self, kind: str, at: float) -> None:
        """From ``at`` on the log is ``kind`` ("normal" or "fault"); later lines already made are replaced."""
        with self._lock:
            self._append(kind, at)

    def query(self, start_ns: int, end_ns: int, now: float) -> list[Line]:
        """Lines written so far within [start_ns, end_ns], oldest first."""
        now_ns = int(now * 1e9)
        with self._lock:
            while self._segment_end <= now_ns:
                self._append(self._kind, self._segment_end / 1e9)
            lo = bisect.bisect_left(self._keys, start_ns)
            hi = bisect.bisect_right(self._keys, min(end_ns, now_ns))
            return self._lines[lo:hi]


def parse_selector(query: str) -> list[tuple[str, str, str]]:
    """``{a="x", b=~"y.*"}`` -> matchers; ValueError for anything but a stream selector."""
    text = query.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError("only a LogQL stream selector {label=\"value\", ...} is supported")
    body, matchers, pos = text[1:-1], [], 0
    while pos < len(body):
        found = MATCHER.match(body, pos)
        if not found:
            raise ValueError(f"cannot parse the stream selector at {body[pos:pos + 30]!r}")
        name, op, value = found.groups()
        matchers.append((name, op, value.encode().decode("unicode_escape")))
        pos = found.end()
    if not matchers:
        raise ValueError("a stream selector needs at least one matcher")
    return matchers


def matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for name, op, value in matchers:
        actual = labels.get(name, "")
        ok = {
            "=": actual == value,
            "!=": actual != value,
            "=~": re.fullmatch(value, actual) is not None,
            "!~": re.fullmatch(value, actual) is None,
        }[op]
        if not ok:
            return False
    return True


# ---------------------------------------------------------------- metrics


class Service:
    """The simulated service: traffic that moves its metrics, and the fault switch."""

    def __init__(self, scenario: str, seed: int) -> None:
        spec = SCENARIOS[scenario]
        self.scenario = scenario
        self.name = spec.alert_service
        self.effect = dict(spec.metric_effect.get(spec.alert_service, {}))
        self.timeline = LogTimeline(scenario, seed, time.time())
        self.fault_since: float | None = None
        self.registry = CollectorRegistry()
        self._rng = random.Random(seed)
        self._requests = Counter("http_requests_total", "Requests served.", ["service", "method", "status"], registry=self.registry)
        self._latency = Histogram(
            "http_request_duration_seconds", "Request duration.", ["service"], registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        self._cpu = Counter("container_cpu_usage_seconds_total", "CPU time used.", ["container"], registry=self.registry)
        self._memory = Gauge("container_memory_working_set_bytes", "Working set.", ["container"], registry=self.registry)
        limit = Gauge("container_spec_memory_limit_bytes", "Memory limit.", ["container"], registry=self.registry)
        limit.labels(self.name).set(MEMORY_LIMIT_BYTES)
        self._requests.labels(self.name, "GET", "200").inc(0)
        self._requests.labels(self.name, "GET", "502").inc(0)

    def value(self, name: str) -> float:
        if self.fault_since is not None and name in self.effect:
            return self.effect[name]
        return NORMAL[name]

    def tick(self, seconds: float) -> None:
        rng = self._rng
        error_rate = self.value("error_rate")
        p95 = self.value("latency_p95_seconds")
        for _ in range(max(1, round(REQUESTS_PER_SECOND * seconds))):
            failed = rng.random() < error_rate
            self._requests.labels(self.name, "GET", "502" if failed else "200").inc()
            self._latency.labels(self.name).observe(max(0.001, rng.gauss(p95 / 1.6, p95 / 6)))
        self._cpu.labels(self.name).inc(self.value("cpu_usage_percent") / 100 * seconds)
        self._memory.labels(self.name).set(self.value("memory_usage_percent") / 100 * MEMORY_LIMIT_BYTES)

    def inject(self) -> None:
        if self.fault_since is None:
            self.fault_since = time.time()
            self.timeline.switch("fault", self.fault_since)

    def clear(self) -> None:
        if self.fault_since is not None:
            self.fault_since = None
            self.timeline.switch("normal", time.time())

    def status(self) -> dict:
        return {"scenario": self.scenario, "service": self.name, "fault": self.fault_since is not None,
                "fault_since": self.fault_since}


# ---------------------------------------------------------------- HTTP


def make_handler(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            log.debug(format, *args)

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: object) -> None:
            self._send(status, json.dumps(payload).encode())

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urlsplit(self.path)
            if url.path == "/metrics":
                self._send(200, generate_latest(service.registry), CONTENT_TYPE_LATEST)
            elif url.path in ("/ready", "/status"):
                self._json(200, service.status())
            elif url.path == "/loki/api/v1/query_range":
                self._query_range(parse_qs(url.query))
            else:
                self._json(404, {"error": f"no route {url.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if urlsplit(self.path).path != "/fault":
                return self._json(404, {"error": "POST /fault injects the fault"})
            service.inject()
            self._json(200, service.status())

        def do_DELETE(self) -> None:  # noqa: N802
            if urlsplit(self.path).path != "/fault":
                return self._json(404, {"error": "DELETE /fault clears the fault"})
            service.clear()
            self._json(200, service.status())

        def _query_range(self, params: dict[str, list[str]]) -> None:
            now = time.time()
            try:
                matchers = parse_selector(params["query"][0])
                end_ns = int(params.get("end", [str(int(now * 1e9))])[0])
                start_ns = int(params.get("start", [str(end_ns - 3_600_000_000_000)])[0])
                limit = int(params.get("limit", ["100"])[0])
                direction = params.get("direction", ["backward"])[0]
                if direction not in ("forward", "backward") or limit < 1:
                    raise ValueError("direction must be forward or backward and limit positive")
            except (KeyError, ValueError) as exc:
                return self._json(400, {"status": "error", "error": f"bad query_range request: {exc}"})
            selected = [
                line for line in service.timeline.query(start_ns, end_ns, now)
                if matches({"service": line.service, "namespace": NAMESPACE, "level": line.level}, matchers)
            ]
            selected = selected[:limit] if direction == "forward" else selected[::-1][:limit]
            streams: dict[tuple[str, str], list[list[str]]] = {}
            for line in selected:
                streams.setdefault((line.service, line.level), []).append([str(line.ts_ns), line.text])
            result = [
                {"stream": {"service": svc, "namespace": NAMESPACE, "level": level}, "values": values}
                for (svc, level), values in streams.items()
            ]
            self._json(200, {"status": "success", "data": {"resultType": "streams", "result": result}})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--scenario", default="third_party_outage", choices=sorted(SCENARIOS))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s workload %(levelname)s %(message)s")
    service = Service(args.scenario, args.seed)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(service))

    def traffic() -> None:
        while True:
            time.sleep(TICK_SECONDS)
            service.tick(TICK_SECONDS)

    threading.Thread(target=traffic, daemon=True, name="traffic").start()
    log.info("%s (%s) on http://%s:%d", service.name, args.scenario, args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
