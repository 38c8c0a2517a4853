"""Property-based fuzzing (hypothesis) of log intake and of the Alertmanager payload parser.

Whatever arrives - binary, huge lines, control characters, JSON look-alikes, wrong types -
no exception escapes except a validation error that names the field, and the good lines
next to the bad ones are all kept.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipelines.pipeline import digest_chunk, to_chunk_items
from pipelines.schemas import AlertmanagerWebhook, AnalyzeRequest

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_LINE_BYTES = 2048

good_lines = st.lists(
    st.builds(
        lambda i, svc, word: f"2024-01-07T10:29:{i % 60:02d}Z ERROR [{svc}] request {i} failed: {word}",
        st.integers(0, 10_000),
        st.sampled_from(["api", "db", "cache"]),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12),
    ),
    min_size=1,
    max_size=40,
)
hostile_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.text(alphabet="\x00\x01\x1b\r\n\t\u2028\ufeff\ud7ff{}[]\"\\<>", max_size=200),
    st.just("x" * (MAX_LINE_BYTES * 3)),
    st.just(""),
    st.just('{"level": "error", "message": '),  # half a JSON log line
    st.builds(lambda d: json.dumps(d), st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=5)),
)
hostile_bytes = st.binary(max_size=300)
hostile_events = st.fixed_dictionaries(
    {"message": st.one_of(st.text(max_size=300), st.none(), st.integers())},
    optional={"timestamp": st.one_of(st.floats(allow_nan=True), st.text(max_size=10), st.none()),
              "level": st.one_of(st.text(max_size=10), st.none(), st.integers()),
              "service": st.one_of(st.text(max_size=20), st.none())},
)


@FUZZ
@given(good=good_lines, bad=st.lists(st.one_of(hostile_text, hostile_bytes), max_size=20), data=st.data())
def test_log_intake_never_raises_and_keeps_every_good_line(good: list[str], bad: list, data) -> None:
    items: list = list(good)
    for b in bad:  # interleave the hostile lines anywhere among the good ones
        items.insert(data.draw(st.integers(0, len(items))), b)
    texts = [i.decode("utf-8", "replace") if isinstance(i, bytes) else i for i in items]
    result = digest_chunk(texts, max_line_bytes=MAX_LINE_BYTES)
    assert result.lines >= len(good), (result.lines, result.dropped)
    assert result.lines <= len(texts), "nothing is invented"
    assert all(isinstance(n, int) and n >= 0 for n in result.dropped.values())


@FUZZ
@given(good=good_lines, events=st.lists(hostile_events, max_size=10))
def test_event_intake_never_raises_and_keeps_text_lines(good: list[str], events: list[dict]) -> None:
    result = digest_chunk([*good, *events], max_line_bytes=MAX_LINE_BYTES)
    assert result.lines >= len(good)


@FUZZ
@given(logs=st.lists(st.one_of(hostile_text, hostile_events, st.integers(), st.none(), st.lists(st.text(max_size=5))),
                     max_size=15))
def test_analyze_request_either_validates_or_names_the_bad_field(logs: list) -> None:
    body = {"alert": {"name": "HighErrorRate", "timestamp": "2024-01-07T10:30:00Z"}, "logs": logs}
    try:
        request = AnalyzeRequest.model_validate(body)
    except ValidationError as exc:
        assert all(err["loc"] and err["loc"][0] == "logs" for err in exc.errors())
        return
    items = to_chunk_items(request.logs)
    assert len(items) == len(logs)
    digest_chunk(items, max_line_bytes=MAX_LINE_BYTES)


def _json_values() -> st.SearchStrategy:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
    return st.recursive(scalars, lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)), max_leaves=20)


def _alert(labels: dict[str, str], starts: datetime) -> dict:
    return {"status": "firing", "labels": labels, "annotations": {"summary": "s"}, "startsAt": starts.isoformat(),
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": ""}


alertmanager_payload = st.fixed_dictionaries(
    {
        "version": st.sampled_from(["4", "4", "3", ""]),
        "status": st.sampled_from(["firing", "resolved", "pending"]),
        "alerts": st.lists(
            st.one_of(
                st.builds(
                    _alert,
                    st.dictionaries(st.sampled_from(["alertname", "service", "severity", "job", "pod"]),
                                    st.text(max_size=40), max_size=5),
                    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)),
                ),
                _json_values(),
            ),
            max_size=6,
        ),
    },
    optional={"groupLabels": _json_values(), "commonLabels": _json_values(), "truncatedAlerts": _json_values(),
              "externalURL": _json_values(), "receiver": _json_values()},
)


@FUZZ
@given(payload=st.one_of(alertmanager_payload, _json_values()))
def test_alertmanager_parser_validates_or_names_the_field(payload) -> None:
    try:
        webhook = AlertmanagerWebhook.model_validate(payload)
    except ValidationError as exc:
        assert exc.errors(), "a refusal says what was wrong"
        for err in exc.errors():
            assert isinstance(err["msg"], str) and err["msg"]
        return
    valid, rejected = webhook.valid_alerts()
    assert len(valid) + len(rejected) == len(webhook.alerts), "every alert is taken or rejected, none lost"
    for rejection in rejected:
        assert rejection.error.startswith(f"body.alerts.{rejection.index}"), "a rejection names the alert"
    for alert in valid:
        converted = alert.to_alert()
        assert converted.name == alert.labels["alertname"]
        assert converted.timestamp.tzinfo is not None
        assert converted.identity()


@FUZZ
@given(raw=st.binary(max_size=400))
def test_alertmanager_parser_survives_raw_bytes(raw: bytes) -> None:
    try:
        AlertmanagerWebhook.model_validate_json(raw)
    except ValidationError:
        pass
