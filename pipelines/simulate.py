"""Seeded, realistic incidents: multi-service traffic with one injected fault.

Each scenario writes the logs a shop of eight services would write over a ten-minute
window (nginx access lines, Spring Boot lines with Java stack traces, JSON and logfmt
lines from the shippers), the per-service metrics Prometheus would hold, a fault-free
baseline of the ten minutes before, and the alert that fired. The demo and the tests use
it; the analyzer never sees the scenario's name or its true cause.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pipelines.schemas import Alert, Category, LogEvent, LogInput, MetricSeries, Telemetry

WINDOW = timedelta(minutes=10)
FAULT_AT = 0.6  # the fault starts 60 % into the window; the alert fires 2 minutes later
METRIC_STEP_SECONDS = 15

SERVICES = {
    "api-gateway": "nginx",
    "frontend": "json",
    "auth-service": "logfmt",
    "orders-service": "java",
    "checkout-service": "java",
    "payments-service": "json",
    "inventory-service": "logfmt",
    "orders-db": "postgres",
    "coredns": "plain",
}
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
PATHS = ["/api/orders", "/api/cart", "/api/products", "/api/checkout", "/api/login", "/api/inventory"]


@dataclass
class SimulatedIncident:
    """A generated incident; ``category`` and ``culprit`` are the truth, for tests only."""

    scenario: str
    category: Category
    culprit: str
    alert: Alert
    logs: list[LogInput]
    metrics: list[MetricSeries]
    baseline: Telemetry
    description: str

    def request_body(self) -> dict:
        """The incident as a ``POST /analyze`` body."""
        return {
            "alert": self.alert.model_dump(mode="json"),
            "context_window": int(WINDOW.total_seconds()),
            "logs": [e.model_dump(mode="json") if isinstance(e, LogEvent) else e for e in self.logs],
            "metrics": [m.model_dump(mode="json") for m in self.metrics],
            "baseline": self.baseline.model_dump(mode="json"),
        }


@dataclass
class _Writer:
    """Writes lines in each service's own format."""

    rng: random.Random
    logs: list[LogInput] = field(default_factory=list)

    def pod(self, service: str) -> str:
        return f"{service}-7d9f8b6c5-{zlib.crc32(service.encode()) % 100000:05d}"

    def write(self, service: str, at: datetime, level: str, message: str, **fields: object) -> None:
        kind = SERVICES[service]
        stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if kind == "json":
            self.logs.append(json.dumps({"ts": stamp, "level": level.lower(), "service": service, "msg": message, **fields}))
        elif kind == "logfmt":
            extra = " ".join(f"{k}={_logfmt(v)}" for k, v in fields.items())
            self.logs.append(f"ts={stamp} level={level.lower()} service={service} msg={_logfmt(message)} {extra}".rstrip())
        else:
            text = message if kind != "java" else self._java(service, at, level, message)
            if kind == "postgres":
                text = f"{at.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} UTC [{self.rng.randint(100, 9999)}] {level}:  {message}"
            self.logs.append(LogEvent(message=text, timestamp=at, service=service, pod=self.pod(service), level=level))

    def _java(self, service: str, at: datetime, level: str, message: str) -> str:
        thread = f"http-nio-8080-exec-{self.rng.randint(1, 40)}"
        trace = f"{self.rng.getrandbits(64):016x}"
        return (
            f"{at.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} {level:>5} [{service},{trace},{trace[:8]}] 1 --- "
            f"[{thread}] c.shop.{service.split('-')[0]}.Controller : {message}"
        )

    def access(self, at: datetime, path: str, status: int, seconds: float) -> None:
        ip = f"10.{self.rng.randint(0, 3)}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"
        stamp = at.strftime("%d/%b/%Y:%H:%M:%S +0000")
        line = (
            f'{ip} - - [{stamp}] "GET {path}/{self.rng.randint(1, 99999)} HTTP/1.1" {status} '
            f'{self.rng.randint(200, 9000)} "-" "Mozilla/5.0" {seconds:.3f}'
        )
        self.logs.append(LogEvent(message=line, timestamp=at, service="api-gateway", pod=self.pod("api-gateway"), level="ERROR" if status >= 500 else "INFO"))


def _logfmt(value: object) -> str:
    text = str(value)
    return f'"{text}"' if " " in text or "=" in text else text


def _normal_traffic(w: _Writer, start: datetime, seconds: int) -> None:
    """Ordinary traffic of every service: the part of the log an incident hides in."""
    rng = w.rng
    for second in range(seconds):
        at = start + timedelta(seconds=second)
        for _ in range(rng.randint(2, 4)):
            w.access(at + timedelta(milliseconds=rng.randint(0, 999)), rng.choice(PATHS), rng.choice([200] * 30 + [404]), rng.uniform(0.005, 0.25))
        t = at + timedelta(milliseconds=rng.randint(0, 999))
        w.write("frontend", t, "INFO", "rendered page", route=rng.choice(["/", "/cart", "/product"]), duration_ms=rng.randint(5, 90))
        if second % 2 == 0:
            w.write("auth-service", t, "INFO", "login succeeded", user=rng.choice(USERS), ip=f"10.2.{rng.randint(0, 255)}.{rng.randint(1, 254)}")
        w.write("orders-service", t, "INFO", f"Order {rng.randint(10000, 99999)} created for customer {rng.randint(1, 5000)} in {rng.randint(3, 40)}ms")
        if second % 3 == 0:
            w.write("checkout-service", t, "INFO", f"Checkout completed for cart {rng.randint(1000, 9999)} total={rng.randint(5, 500)}.{rng.randint(0, 99):02d} EUR")
            w.write("payments-service", t, "INFO", "payment authorized", amount_cents=rng.randint(500, 50000), provider="stripe", latency_ms=rng.randint(80, 300))
        if second % 5 == 0:
            w.write("inventory-service", t, "INFO", "stock reserved", sku=f"SKU-{rng.randint(100, 999)}", qty=rng.randint(1, 5))
            w.write("orders-db", t, "LOG", f"duration: {rng.uniform(0.2, 9):.3f} ms  statement: SELECT * FROM orders WHERE id = {rng.randint(1, 99999)}")
        if second % 10 == 0:
            w.write("coredns", t, "INFO", f"[INFO] 10.2.1.{rng.randint(2, 250)}:{rng.randint(30000, 60000)} - {rng.randint(1, 65535)} \"A IN {rng.choice(list(SERVICES))}.shop.svc.cluster.local. udp 64 false 512\" NOERROR qr,aa,rd 110 0.000{rng.randint(100, 999)}s")
        if second % 30 == 0:
            w.write("checkout-service", t, "DEBUG", f"GC pause (G1 Evacuation Pause) {rng.randint(3, 15)}ms")
            w.write("orders-service", t, "WARN", f"Slow request GET /api/orders took {rng.randint(900, 1500)}ms")


def _stack(exc: str, message: str, frames: list[str]) -> str:
    return f"{exc}: {message}\n" + "\n".join(f"\tat {f}" for f in frames)


# ---------------------------------------------------------------- the faults


def _memory_leak(w: _Writer, start: datetime, seconds: int) -> None:
    rng = w.rng
    for second in range(seconds):
        at = start + timedelta(seconds=second)
        if second % 4 == 0:
            w.write("checkout-service", at, "WARN", f"GC overhead: G1 Full GC took {rng.randint(800, 4000)}ms, heap {92 + second * 7 // seconds}% used")
        if second > seconds // 3 and second % 3 == 0:
            trace = _stack(
                "java.lang.OutOfMemoryError",
                "Java heap space",
                ["java.util.Arrays.copyOf(Arrays.java:3512)", "java.util.ArrayList.grow(ArrayList.java:237)", "com.shop.checkout.CartCache.put(CartCache.java:88)", "com.shop.checkout.CartController.add(CartController.java:41)"],
            )
            w.write("checkout-service", at, "ERROR", f"Servlet.service() for servlet [dispatcherServlet] threw exception\n{trace}")
            w.access(at, "/api/checkout", 500, rng.uniform(2, 6))
        if second % 45 == 44:
            w.write("checkout-service", at, "INFO", "Container checkout-service was OOMKilled, restarting (exit code 137)")


def _db_pool(w: _Writer, start: datetime, seconds: int) -> None:
    rng = w.rng
    for second in range(seconds):
        at = start + timedelta(seconds=second)
        if second % 2 == 0:
            trace = _stack(
                "java.sql.SQLTransientConnectionException",
                "HikariPool-1 - Connection is not available, request timed out after 30000ms.",
                ["com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)", "com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:181)", "com.shop.orders.OrderRepository.save(OrderRepository.java:57)"],
            )
            w.write("orders-service", at, "ERROR", f"Failed to create order\n{trace}")
            w.access(at, "/api/orders", 503, rng.uniform(29, 31))
        if second % 3 == 0:
            w.write("orders-db", at, "FATAL", "sorry, too many clients already")
            w.write("orders-db", at, "LOG", f"could not accept new connection: max_connections (100) reached, {rng.randint(100, 140)} waiting")
        if second % 10 == 0:
            w.write("orders-service", at, "WARN", f"HikariPool-1 - Pool stats (total=20, active=20, idle=0, waiting={rng.randint(30, 90)})")


def _dns(w: _Writer, start: datetime, seconds: int) -> None:
    rng = w.rng
    for second in range(seconds):
        at = start + timedelta(seconds=second)
        if second % 2 == 0:
            w.write("frontend", at, "ERROR", "upstream request failed", error=f"getaddrinfo ENOTFOUND inventory-service.shop.svc.cluster.local", attempt=rng.randint(1, 3))
            w.write("inventory-service", at, "ERROR", "dependency call failed", error=f"dial tcp: lookup orders-service.shop.svc.cluster.local on 10.96.0.10:53: read udp 10.2.1.{rng.randint(2, 250)}:{rng.randint(30000, 60000)}->10.96.0.10:53: i/o timeout")
            w.access(at, "/api/inventory", 504, rng.uniform(5, 10))
        if second % 3 == 0:
            trace = _stack(
                "java.net.UnknownHostException",
                "payments-service.shop.svc.cluster.local: Temporary failure in name resolution",
                ["java.base/java.net.InetAddress.getAllByName0(InetAddress.java:1534)", "org.apache.http.impl.conn.SystemDefaultDnsResolver.resolve(SystemDefaultDnsResolver.java:45)", "com.shop.checkout.PaymentClient.charge(PaymentClient.java:63)"],
            )
            w.write("checkout-service", at, "ERROR", f"Payment call failed\n{trace}")
        if second % 2 == 1:
            w.write("coredns", at, "ERROR", f"[ERROR] plugin/errors: 2 {rng.choice(list(SERVICES))}.shop.svc.cluster.local. A: read udp 10.2.0.{rng.randint(2, 9)}:{rng.randint(30000, 60000)}->10.96.0.1:53: i/o timeout")
        if second % 7 == 0:
            w.write("orders-service", at, "WARN", f"Connect timed out after {rng.randint(5000, 5100)}ms to inventory-service:8080, retrying")


def _cpu_saturation(w: _Writer, start: datetime, seconds: int) -> None:
    rng = w.rng
    for second in range(seconds):
        at = start + timedelta(seconds=second)
        if second % 3 == 0:
            w.write("orders-service", at, "WARN", f"Slow request GET /api/orders took {rng.randint(3000, 9000)}ms")
            w.access(at, "/api/orders", 200, rng.uniform(3, 9))
        if second % 5 == 0:
            w.write("inventory-service", at, "WARN", "worker loop lagging", lag_ms=rng.randint(1500, 6000), cpu_throttled_pct=rng.randint(60, 95))
            w.write("orders-service", at, "WARN", f"Thread pool saturated: active=200 queued={rng.randint(300, 900)}; CPU throttling detected")
        if second % 11 == 0:
            w.write("orders-service", at, "ERROR", "Node worker-3 condition: DiskPressure=True; kubelet eviction manager: attempting to reclaim ephemeral-storage, No space left on device writing /var/log/app.log")


def _credential_stuffing(w: _Writer, start: datetime, seconds: int) -> None:
    rng = w.rng
    for second in range(seconds):
        at = start + timedelta(seconds=second)
        for _ in range(rng.randint(8, 15)):
            ip = f"{rng.choice([45, 91, 185, 193])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            w.write("auth-service", at + timedelta(milliseconds=rng.randint(0, 999)), "WARN", "login failed: invalid credentials", user=f"user{rng.randint(1, 99999)}@mail.example", ip=ip)
            w.access(at, "/api/login", 401, rng.uniform(0.05, 0.2))
        if second % 6 == 0:
            w.write("auth-service", at, "WARN", "account locked after 5 failed attempts", user=f"user{rng.randint(1, 99999)}@mail.example")
        if second % 9 == 0:
            w.write("auth-service", at, "ERROR", "rate limit exceeded for login endpoint", ip=f"185.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}", window="60s")


def _third_party(w: _Writer, start: datetime, seconds: int) -> None:
    rng = w.rng
    for second in range(seconds):
        at = start + timedelta(seconds=second)
        if second % 2 == 0:
            w.write("payments-service", at, "ERROR", "payment provider error", provider="stripe", upstream="https://api.stripe.com/v1/charges", status=503, body="Service Unavailable")
            w.access(at, "/api/checkout", 502, rng.uniform(1, 3))
        if second % 5 == 0:
            w.write("checkout-service", at, "ERROR", "Payment failed: upstream payments-service returned 502 Bad Gateway")
        if second % 20 == 0:
            w.write("payments-service", at, "WARN", "circuit breaker OPEN for provider stripe after 50 consecutive failures")


@dataclass(frozen=True)
class Scenario:
    name: str
    category: Category
    culprit: str
    alert_name: str
    alert_service: str
    description: str
    inject: Callable[[_Writer, datetime, int], None]
    metric_effect: dict[str, dict[str, float]]  # service -> metric -> value during the fault


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("memory_leak", Category.application, "checkout-service", "HighMemoryUsage", "checkout-service",
                 "a memory leak in checkout-service ends in OutOfMemoryError and OOM kills", _memory_leak,
                 {"checkout-service": {"memory_usage_percent": 97.0, "error_rate": 0.2}}),
        Scenario("db_pool_exhaustion", Category.database, "orders-db", "HighErrorRate", "api-gateway",
                 "orders-db runs out of connections; orders-service's pool times out", _db_pool,
                 {"orders-service": {"error_rate": 0.35, "latency_p95_seconds": 30.0}, "orders-db": {"cpu_usage_percent": 70.0}}),
        Scenario("dns_failure", Category.network, "coredns", "HighErrorRate", "frontend",
                 "cluster DNS fails: lookups time out and names do not resolve", _dns,
                 {"frontend": {"error_rate": 0.3}, "inventory-service": {"error_rate": 0.4}}),
        Scenario("cpu_saturation", Category.infrastructure, "orders-service", "HighCPUUsage", "orders-service",
                 "the node of orders-service saturates its CPU and fills its disk", _cpu_saturation,
                 {"orders-service": {"cpu_usage_percent": 98.0, "latency_p95_seconds": 8.0}, "inventory-service": {"cpu_usage_percent": 93.0}}),
        Scenario("credential_stuffing", Category.security, "auth-service", "HighErrorRate", "auth-service",
                 "a credential-stuffing burst of failed logins from many addresses", _credential_stuffing,
                 {"auth-service": {"error_rate": 0.6, "cpu_usage_percent": 75.0}}),
        Scenario("third_party_outage", Category.external, "payments-service", "HighErrorRate", "payments-service",
                 "the third-party payment API answers 503", _third_party,
                 {"payments-service": {"error_rate": 0.5}, "checkout-service": {"error_rate": 0.2}}),
    )
}

_NORMAL_METRICS = {
    "cpu_usage_percent": (25.0, 6.0),
    "memory_usage_percent": (55.0, 4.0),
    "error_rate": (0.004, 0.002),
    "latency_p95_seconds": (0.18, 0.04),
}


def _metrics(rng: random.Random, start: datetime, seconds: int, fault_from: float | None, effect: dict[str, dict[str, float]]) -> list[MetricSeries]:
    series = []
    for service in SERVICES:
        for name, (mean, spread) in _NORMAL_METRICS.items():
            points = []
            for offset in range(0, seconds, METRIC_STEP_SECONDS):
                ts = start.timestamp() + offset
                value = max(0.0, rng.gauss(mean, spread))
                target = effect.get(service, {}).get(name)
                if fault_from is not None and target is not None and ts >= fault_from:
                    ramp = min(1.0, (ts - fault_from) / 60.0)
                    value = value + (target - value) * ramp
                points.append((ts, round(value, 4)))
            series.append(MetricSeries(service=service, name=name, points=points))
    return series


def simulate(scenario: str, *, seed: int = 7, alert_time: datetime | None = None, fault: bool = True) -> SimulatedIncident:
    """Generate one incident of the named scenario; same seed, same incident.

    ``fault=False`` switches the fault off: the same traffic and the same alert (a false alarm),
    no fault lines and no metric effect, for the fault-free replays.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    spec = SCENARIOS[scenario]
    rng = random.Random(f"{scenario}:{seed}")
    alert_time = alert_time or datetime(2024, 1, 7, 10, 30, tzinfo=timezone.utc)
    seconds = int(WINDOW.total_seconds())
    window_start = alert_time - WINDOW + timedelta(minutes=2)
    fault_start = window_start + timedelta(seconds=int(seconds * FAULT_AT))

    writer = _Writer(rng)
    _normal_traffic(writer, window_start, seconds)
    if fault:
        spec.inject(writer, fault_start, int((window_start + WINDOW - fault_start).total_seconds()))
    logs = _time_ordered(writer.logs)
    metrics = _metrics(rng, window_start, seconds, fault_start.timestamp() if fault else None, spec.metric_effect)

    base = _Writer(rng)
    baseline_start = window_start - WINDOW
    _normal_traffic(base, baseline_start, seconds)
    baseline = Telemetry(logs=_time_ordered(base.logs), metrics=_metrics(rng, baseline_start, seconds, None, {}))

    alert = Alert(
        name=spec.alert_name,
        severity="critical",
        timestamp=alert_time,
        labels={"alertname": spec.alert_name, "service": spec.alert_service, "namespace": "shop"},
        annotations={"summary": f"{spec.alert_name} on {spec.alert_service}"},
    )
    return SimulatedIncident(scenario, spec.category, spec.culprit, alert, logs, metrics, baseline, spec.description)


def _time_ordered(logs: list[LogInput]) -> list[LogInput]:
    """Interleave services by time, as a log store returns them; text lines keep their place."""
    def key(item: tuple[int, LogInput]) -> tuple[float, int]:
        index, entry = item
        if isinstance(entry, LogEvent) and entry.timestamp:
            return entry.timestamp.timestamp(), index
        if isinstance(entry, str) and entry.startswith("{"):
            return datetime.fromisoformat(json.loads(entry)["ts"].replace("Z", "+00:00")).timestamp(), index
        if isinstance(entry, str) and entry.startswith("ts="):
            return datetime.fromisoformat(entry[3:27].replace("Z", "+00:00")).timestamp(), index
        return 0.0, index

    return [entry for _, entry in sorted(enumerate(logs), key=key)]
