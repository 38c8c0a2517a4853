"""Line intake: formats, header extraction, stack traces, and bad input counted, never raised."""

from __future__ import annotations

import json

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly.intake import parse_lines


def test_plain_line_header_is_extracted():
    rec = parse_lines(["2024-05-01T10:00:00.250Z ERROR [orders] payment failed"]).records[0]
    assert rec.timestamp == 1714557600.25
    assert rec.level == "ERROR"
    assert rec.message == "[orders] payment failed"


def test_json_line_fields():
    line = json.dumps({"time": "2024-05-01T12:00:00+02:00", "level": "warning", "msg": "slow", "service": "cart"})
    rec = parse_lines([line]).records[0]
    assert (rec.message, rec.level, rec.service, rec.timestamp) == ("slow", "WARN", "cart", 1714557600.0)


def test_docker_wrapper_is_unwrapped_and_inner_line_parsed():
    line = json.dumps(
        {"log": "2024-05-01 10:00:01,500 INFO order 7 shipped\n", "stream": "stdout",
         "kubernetes": {"pod_name": "shipping-6d9f7b8c5-x2x9z", "container_name": "server"}}
    )
    rec = parse_lines([line]).records[0]
    assert rec.message == "order 7 shipped"
    assert rec.level == "INFO"
    # a container's name is often generic: the pod's workload names the service
    assert (rec.pod, rec.container, rec.service) == ("shipping-6d9f7b8c5-x2x9z", "server", "shipping")
    assert rec.timestamp == 1714557601.5


def test_logfmt_line_fields():
    rec = parse_lines(['ts=1714557600 level=error service=pay msg="card declined for \\"bob\\""']).records[0]
    assert rec.level == "ERROR" and rec.service == "pay" and rec.timestamp == 1714557600.0
    assert rec.message.startswith("card declined")


def test_epoch_milliseconds_and_default_service():
    rec = parse_lines(['{"ts": 1714557600500, "msg": "x"}'], service="api").records[0]
    assert rec.timestamp == 1714557600.5 and rec.service == "api"


def test_java_stack_trace_joined_to_first_line():
    lines = [
        "2024-05-01T10:00:00Z ERROR request failed",
        "java.lang.IllegalStateException: pool exhausted",
        "\tat com.shop.Pool.get(Pool.java:10)",
        "Caused by: java.net.SocketTimeoutException: Read timed out",
        "\t... 12 more",
        "2024-05-01T10:00:01Z INFO next request",
    ]
    records = parse_lines(lines).records
    assert [r.level for r in records] == ["ERROR", "INFO"]
    assert "Caused by: java.net.SocketTimeoutException" in records[0].message
    assert records[0].message.count("\n") == 4


def test_python_traceback_joined():
    lines = ["ERROR boom", "Traceback (most recent call last):", '  File "a.py", line 1, in f', "ValueError: bad"]
    records = parse_lines(lines).records
    assert len(records) == 1 and records[0].message.endswith("ValueError: bad")


def test_bad_lines_are_counted_not_raised():
    lines = [b"\xff\xfe ERROR half", "", "   ", "\x00\x01\x02\x03\x04", "x" * 100, "ok line", 42]
    intake = parse_lines(lines, max_line_bytes=50)
    assert intake.dropped == {"undecodable": 1, "empty": 2, "binary": 1, "oversized": 1, "not_text": 1}
    messages = [r.message for r in intake.records]
    assert "ok line" in messages
    assert any(m.endswith("[truncated]") for m in messages)
    assert any("ERROR half" in m for m in messages)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=80), st.binary(max_size=80)), max_size=40))
def test_any_input_never_raises_and_every_line_is_accounted_for(lines):
    intake = parse_lines(lines, max_line_bytes=64)
    dropped = sum(v for k, v in intake.dropped.items() if k in ("empty", "binary"))
    # records can only be fewer than kept lines when continuation lines were joined
    assert len(intake.records) <= len(lines) - dropped
    assert all(isinstance(r.message, str) and r.message.strip() for r in intake.records)


def test_docker_wrapped_stack_trace_is_joined_and_never_split_across_batches():
    from anomaly.engine import batches

    def docker(text: str) -> str:
        return json.dumps({"log": text + "\n", "stream": "stderr"})

    trace = [docker("2024-05-01T10:00:00Z ERROR call failed"),
             docker("java.lang.IllegalStateException: closed"), docker("\tat a.B.c(B.java:1)")]
    records = parse_lines(trace).records
    assert len(records) == 1 and records[0].message.endswith("at a.B.c(B.java:1)")
    lines = [docker("ok")] * 3 + [docker("\tat a.B.c(B.java:1)")] * 3 + [docker("next")]
    assert [len(b) for b in batches(lines, size=3)] == [6, 1]


def test_a_structured_lines_error_field_is_part_of_its_message():
    """The message says that something failed; the error field says why. Both reach the templates."""
    lines = [
        json.dumps({"ts": 1714557600, "level": "error", "msg": "upstream request failed", "error": "getaddrinfo ENOTFOUND inventory"}),
        json.dumps({"ts": 1714557600, "level": "error", "msg": "charge failed", "err": "card declined"}),
        'ts=1714557600 level=error msg="dependency call failed" error="dial tcp: i/o timeout" attempt=2',
        json.dumps({"ts": 1714557600, "level": "error", "msg": "boom: disk full", "error": "disk full"}),
        json.dumps({"ts": 1714557600, "level": "error", "msg": "nested cause", "err": {"message": "kept out"}}),
        json.dumps({"ts": 1714557600, "level": "info", "msg": "fine", "error": ""}),
    ]
    messages = [r.message for r in parse_lines(lines).records]
    assert messages == [
        "upstream request failed: getaddrinfo ENOTFOUND inventory",
        "charge failed: card declined",
        "dependency call failed: dial tcp: i/o timeout",
        "boom: disk full",  # already in the message: not repeated
        "nested cause",  # an object is not a message; the line is still taken
        "fine",
    ]


# the time shapes logs are written in besides ISO 8601: each must land on the same instant
T0 = 1714557600.0  # 2024-05-01T10:00:00Z


@pytest.mark.parametrize("line, expected", [
    # Apache / nginx access log (common and combined log format): the time is in brackets mid-line
    ('203.0.113.9 - - [01/May/2024:10:00:00 +0000] "GET /cart HTTP/1.1" 502 157 "-" "curl/8.5"', T0),
    ('203.0.113.9 - alice [01/May/2024:12:00:00 +0200] "POST /pay HTTP/2.0" 200 12', T0),
    # Go's log package, nginx's error log
    ("2024/05/01 10:00:00 [error] 31#31: *1 connect() failed (111: Connection refused)", T0),
    ("2024/05/01 10:00:00.250 worker started", T0 + 0.25),
    # Tomcat / java.util.logging
    ("01-May-2024 10:00:00.500 SEVERE [main] org.apache.catalina.startup.Catalina.start failed", T0 + 0.5),
    # JSON keys of common logging libraries
    (json.dumps({"asctime": "2024-05-01 10:00:00,000", "levelname": "INFO", "message": "profile loaded"}), T0),
    (json.dumps({"start_time": "2024-05-01T10:00:00.000Z", "method": "GET", "response_code": 503}), T0),
    (json.dumps({"@t": "2024-05-01T10:00:00Z", "@m": "order placed", "@l": "Warning"}), T0),
    (json.dumps({"timeMillis": 1714557600000, "level": "INFO", "message": "x"}), T0),
    (json.dumps({"time_local": "01/May/2024:10:00:00 +0000", "status": "502"}), T0),
])
def test_common_time_shapes_are_read(line, expected):
    rec = parse_lines([line]).records[0]
    assert rec.timestamp == pytest.approx(expected)


def test_klog_time_takes_the_year_of_the_batch():
    lines = ["2024-05-01T09:59:00Z INFO other line",
             'E0501 10:00:00.250000    1873 kubelet.go:2505] "Probe failed" probe="readiness"']
    recs = parse_lines(lines).records
    assert recs[1].level == "ERROR"
    assert recs[1].timestamp == pytest.approx(T0 + 0.25)


def test_message_keys_of_structlog_and_serilog():
    structlog = json.dumps({"event": "cache miss", "level": "warning", "timestamp": "2024-05-01T10:00:00Z"})
    serilog = json.dumps({"@t": "2024-05-01T10:00:00Z", "@m": "Order 42 placed", "@l": "Error"})
    recs = parse_lines([structlog, serilog]).records
    assert [r.message for r in recs] == ["cache miss", "Order 42 placed"]
    assert [r.level for r in recs] == ["WARN", "ERROR"]


def test_a_day_month_year_date_inside_a_message_is_not_taken_for_the_line_time():
    rec = parse_lines(["report for 01/May/2024:10:00:00 written"]).records[0]
    assert rec.timestamp is None
