"""Line intake: formats, header extraction, stack traces, and bad input counted, never raised."""

from __future__ import annotations

import json

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
         "kubernetes": {"pod_name": "ship-1", "container_name": "shipping"}}
    )
    rec = parse_lines([line]).records[0]
    assert rec.message == "order 7 shipped"
    assert rec.level == "INFO"
    assert rec.pod == "ship-1" and rec.service == "shipping"
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
