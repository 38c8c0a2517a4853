"""The summary a person reads: sentences on varied incidents, every number traceable to the input."""

from __future__ import annotations

import json
import re
import time

from anomaly import Digest, LogRecord, digest_lines, summarize
from anomaly.summary import body, http_status

T0 = 1_767_000_000.0  # 2025-12-29T09:20:00Z


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t))


def _json(t: float, service: str, level: str, msg: str) -> str:
    return json.dumps({"time": _iso(t), "level": level, "service": service, "msg": msg})


def _java(t: float, service: str, level: str, msg: str) -> str:
    """A Spring Boot line as Loki exports it (its labels name the service and pod)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"
    return (f'{_iso(t)} {{app="{service}", pod="{service}-7d9f8b6c5-x2x9z"}} {stamp} {level:>5} '
            f"1 --- [http-nio-8080-exec-7] c.shop.web.Controller : {msg}")


def _access(t: float, path: str, status: int) -> str:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(t))
    return f'10.1.2.3 - - [{stamp}] "GET {path} HTTP/1.1" {status} 512 "-" "curl/8.5.0"'


def _traffic(start: float, seconds: int, service: str = "frontend") -> list[str]:
    return [_json(start + s, service, "info", f"rendered page /product/{s % 7} in {20 + s % 9}ms") for s in range(seconds)]


_CLOCK = re.compile(r"\b\d{2}:\d{2}:\d{2}\b")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")


def assert_readable(text: str, digest: Digest, lines: list[str], metrics: dict | None = None, max_words: int = 200) -> None:
    """The shape every summary has: short, no placeholders, no ids, every number and time from the input."""
    assert len(text.split()) <= max_words
    assert "<*>" not in text
    assert not any(tid in text for tid in digest.templates)
    assert not re.search(r"\bT[0-9a-f]{10}\b", text)
    stamps = {t for tpl in digest.templates.values() for t in (tpl.first_seen, tpl.last_seen) if t is not None}
    stamps |= set(digest.bucket_counts())
    points = [p for series in (metrics or {}).values() for p in series]
    stamps |= {t for t, _ in points}
    clocks = {_clock(t) for t in stamps}
    for clock in _CLOCK.findall(text):
        assert clock in clocks, f"{clock} is no time of the input"
    allowed = set(_NUMBER.findall("\n".join(lines)))
    counts = [t.count for t in digest.templates.values()]
    counts += [n for row in digest.bucket_counts().values() for n in row.values()]
    counts += [digest.lines, len(digest.services), *digest.services.values()]
    span_minutes = int((max(stamps) - min(stamps)) / 60) + 1 if stamps else 1
    allowed |= {str(n) for n in counts} | {str(m) for m in range(1, span_minutes + 1)}
    allowed |= {str(n) for n in range(1, len(digest.templates) + 1)}  # patterns left out for the budget
    allowed |= {str(s) for s in range(10, 60 * span_minutes, 10)}  # periods: whole buckets
    for _, v in points:
        allowed |= {f"{v:.3g}", f"{v:.0f}", f"{v:g}"}
    for number in _NUMBER.findall(_CLOCK.sub(" ", text)):
        assert number in allowed, f"{number} in {text!r} is not from the input"


# ------------------------------------------------------------------ incidents


def test_out_of_memory_with_heap_climbing_and_full_gc_every_30_seconds():
    start = T0
    lines = _traffic(start, 600, "checkout")
    for s in range(300, 600, 30):
        lines.append(_java(start + s, "checkout", "WARN", f"Full GC (Allocation Failure) took {800 + s}ms, heap 9{s % 7}% used"))
    for s in range(330, 600, 5):
        lines.append(
            _java(start + s, "checkout", "ERROR", "Servlet.service() for servlet [dispatcherServlet] threw exception")
            + "\njava.lang.OutOfMemoryError: Java heap space\n\tat java.util.Arrays.copyOf(Arrays.java:3512)"
            "\n\tat com.shop.checkout.CartCache.put(CartCache.java:88)"
        )
    digest = digest_lines([part for ln in lines for part in ln.split("\n")])
    metrics = {("checkout", "heap_usage_percent"): [(start + s, 60.0 if s < 300 else 60.0 + (s - 300) / 8) for s in range(0, 600, 15)]}
    oom = next(t for t in digest.templates.values() if "java.lang.OutOfMemoryError" in t.exception_types)
    text = summarize(digest, must_include=[oom.template_id], metrics=metrics)
    assert_readable(text, digest, lines, metrics)
    # what started when and where comes first, with its exception and the frame that threw it
    first = text.split(". ")[0]
    assert first.startswith(f"From {_clock(start + 300)} UTC, checkout logged")
    assert "'Full GC (Allocation Failure) took 1100ms, heap 96% used' every 30 s" in first
    assert "java.lang.OutOfMemoryError ('Java heap space') at java.util.Arrays.copyOf(Arrays.java:3512)" in text
    assert "54 times in 4 min" in text
    # the metric move with the values read from the series
    assert "checkout heap usage rose from 60% to 95.6% between 09:25:00 and 09:29:45" in text
    # no transport prefix is quoted: no timestamp, level, trace context, thread or logger
    assert "http-nio" not in text and "c.shop.web.Controller" not in text and "3f9a1c2b" not in text
    assert " WARN " not in text and " ERROR " not in text


def test_an_access_log_of_only_200s_is_no_error():
    lines = [_access(T0 + s / 2, f"/api/items/{s}", 200) for s in range(600)]
    digest = digest_lines(lines)
    text = summarize(digest, must_include=list(digest.templates))
    assert_readable(text, digest, lines)
    assert "error" not in text.lower() and "fail" not in text.lower()
    assert "answered 600 requests" in text and "200" in text


def test_an_access_log_is_judged_by_its_status_codes():
    # failed requests first: the samples the digest keeps show their status
    lines = [_access(T0 + s, f"/api/pay/{s}", 503) for s in range(0, 150, 2)]
    lines += [_access(T0 + 150 + s, f"/api/orders/{s}", 200) for s in range(300)]
    digest = digest_lines(lines)
    text = summarize(digest, must_include=list(digest.templates))
    assert_readable(text, digest, lines)
    assert "status 503" in text and "GET /api/pay/0" in text
    # a shipper that gave the failed requests level ERROR: they are counted, and shown (error lines are
    # a template's first exemplars, even after 150 lines of 200s)
    records = [LogRecord(message=_access(T0 + s, f"/api/orders/{s}", 200), timestamp=T0 + s, level="INFO",
                         service="api-gateway") for s in range(300)]
    records += [LogRecord(message=_access(T0 + s, f"/api/pay/{s}", 503), timestamp=T0 + s + 0.5, level="ERROR",
                          service="api-gateway") for s in range(150, 300, 3)]
    digest = Digest.from_records(records)
    text = summarize(digest, must_include=list(digest.templates))
    assert_readable(text, digest, [r.message for r in records])
    assert "api-gateway answered 50 of 350 requests with errors (status 503, e.g. GET /api/pay/150)" in text


def test_what_was_already_there_is_said_and_not_blamed():
    start = T0
    lines = _traffic(start, 600, "orders")
    lines += [_json(start + s, "orders", "warn", "cache miss storm: failed to refresh price table") for s in range(5, 600, 20)]
    lines += [_json(start + s, "payments", "error", f"charge {9000 + s} failed: provider timeout after 3000ms")
              for s in range(360, 600, 3)]
    lines.sort(key=lambda ln: json.loads(ln)["time"])
    digest = digest_lines(lines)
    text = summarize(digest)
    assert_readable(text, digest, lines)
    assert text.startswith(f"From {_clock(start + 360)} UTC, payments logged 'charge ")
    before = text.split("Already there before, not the cause:", 1)[1]
    assert "orders" in before and "cache miss storm" in before and _clock(start + 5) in before


def test_what_is_absent_is_said():
    base_lines = _traffic(T0 - 600, 600, "orders") + [
        _json(T0 - 600 + s, "orders", "info", f"heartbeat sent to registry seq={s}") for s in range(0, 600, 10)]
    lines = _traffic(T0, 600, "orders") + [
        _json(T0 + s, "orders", "error", f"registry unreachable: connection refused (attempt {s})") for s in range(200, 600, 10)]
    baseline, digest = digest_lines(base_lines), digest_lines(lines)
    text = summarize(digest, baseline=baseline)
    assert_readable(text, digest, lines + base_lines)
    assert "Absent: orders 'heartbeat sent to registry seq=0' (60 lines in the baseline, none now)." in text
    assert "registry unreachable" in text.split(".")[0]


def test_a_python_traceback_names_the_frame_that_raised():
    lines = _traffic(T0, 300, "billing")
    for s in range(150, 300, 10):
        lines.append(f"{_iso(T0 + s)} ERROR billing.worker - invoice {s} failed")
        lines += ["Traceback (most recent call last):", '  File "/app/billing/worker.py", line 41, in run',
                  '  File "/app/billing/pdf.py", line 88, in render', "KeyError: 'currency'"]
    digest = digest_lines(lines)
    text = summarize(digest)
    assert_readable(text, digest, lines)
    assert "KeyError" in text and "render (/app/billing/pdf.py:88)" in text


def test_many_services_stay_within_the_budget_most_important_first():
    lines = []
    for i in range(12):
        svc = f"svc-{chr(97 + i)}"
        lines += _traffic(T0, 120, svc)[::4]
        word = ["ledger", "quota", "render", "search", "stock", "mail", "token", "price", "cart", "media", "queue", "audit"][i]
        lines += [_json(T0 + 60 + i + s, svc, "error", f"{word} store {word}-db unreachable, {word} request {s} failed")
                  for s in range(0, 60, 2)]
    lines.sort(key=lambda ln: json.loads(ln)["time"])
    digest = digest_lines(lines)
    text = summarize(digest, max_words=120)
    assert_readable(text, digest, lines, max_words=120)
    assert text.startswith(f"From {_clock(T0 + 60)} UTC, svc-a logged")
    assert re.search(r"\d+ more new or flagged patterns in ", text)


def test_nothing_new_says_so():
    lines = _traffic(T0, 300)
    digest = digest_lines(lines)
    text = summarize(digest)
    assert_readable(text, digest, lines)
    assert text.startswith("No error pattern began or rose in the window.")
    assert summarize(Digest()) == "No log lines and no metrics were given."


# ------------------------------------------------------------------ the parts


def test_body_strips_transport_and_logger_prefixes():
    sleuth = "2024-01-07 10:28:00.123 ERROR [orders,3f9a1c2b7d4e5f60,3f9a1c2b] 1 --- [http-nio-8080-exec-7] c.shop.Controller : Failed"
    assert body(sleuth + " to create order 42\n\tat x.Y.z(Y.java:1)") == "Failed to create order 42"
    assert body("1 --- [o-8080-exec-102] o.h.engine.jdbc.spi.SqlExceptionHelper   : SQL Error: 0, SQLState: null") == (
        "SQL Error: 0, SQLState: null")
    assert body("- WARN  [RecvWorker:1889:QuorumCnxManager$RecvWorker@762] - Connection broken for id 1") == (
        "Connection broken for id 1")
    assert body("[31214] orders@orders LOG:  process 31214 still waiting for RowExclusiveLock") == (
        "process 31214 still waiting for RowExclusiveLock")
    assert body("2024-01-07 10:28:00.123 UTC [4242] FATAL:  sorry, too many clients already") == "sorry, too many clients already"
    assert body('{"event": "cart merged", "items": 7, "level": "info"}') == "cart merged"
    assert body("ts=2024-01-07T10:28:00Z level=error msg=\"charge failed\" id=7") == "charge failed"
    assert body("[ERROR] plugin/errors: 2 a.svc. A: i/o timeout") == "plugin/errors: 2 a.svc. A: i/o timeout"
    assert body("[LocalLog partition=p-8] Rolled new log segment at offset 5 in 6 ms. (kafka.log.LocalLog)") == (
        "[LocalLog partition=p-8] Rolled new log segment at offset 5 in 6 ms.")


def test_http_status_reads_access_lines_only():
    assert http_status(_access(T0, "/a/1", 503)) == (503, "GET /a/1")
    assert http_status('{"status": 404, "path": "/x"}') == (404, "")
    assert http_status("processed batch of 200 events") is None
