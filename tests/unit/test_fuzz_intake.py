"""Property-based fuzzing (hypothesis) of log intake and of the Alertmanager payload parser.

Whatever arrives - binary, huge lines, control characters, JSON look-alikes, wrong types -
no exception escapes except a validation error that names the field, and the good lines
next to the bad ones are all kept.
"""

from __future__ import annotations

import json
import time
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


# ---------------------------------------------------------------- what a probe sent (issue 16)

LONE_SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
BIDI_CONTROLS = st.sampled_from(["\u202e", "\u202d", "\u202a", "\u202b", "\u202c", "\u2066", "\u2067", "\u2068", "\u2069",
                                 "\u200e", "\u200f", "\u061c"])
EXTREME_NUMBERS = st.one_of(st.sampled_from(["1e30", "1e20", "-1", "-1e30", "NaN", "inf", "-inf", "1e308", "0.0",
                                             "99999999999999999999999"]),
                            st.floats(allow_nan=True, allow_infinity=True).map(repr))
hostile_unicode_text = st.builds(lambda a, s, b: a + s + b, st.text(max_size=20), st.one_of(LONE_SURROGATES, BIDI_CONTROLS),
                                 st.text(max_size=20))


@FUZZ
@given(good=good_lines, ts=EXTREME_NUMBERS, form=st.sampled_from(['{{"ts": {ts}, "level": "error", "msg": "boom"}}',
                                                                 '{{"time": "{ts}", "msg": "boom"}}',
                                                                 "ts={ts} level=error msg=boom", "{ts} ERROR boom"]))
def test_extreme_times_in_lines_are_missing_and_counted_never_raised(good: list[str], ts: str, form: str) -> None:
    from anomaly import parse_lines
    from anomaly.intake import MAX_FUTURE_SECONDS

    intake = parse_lines([*good, form.format(ts=ts)])
    assert len(intake.records) >= len(good)
    latest = time.time() + MAX_FUTURE_SECONDS
    for record in intake.records:
        assert record.timestamp is None or 0 <= record.timestamp <= latest, record
    digest_chunk([*good, form.format(ts=ts)], max_line_bytes=MAX_LINE_BYTES)


def test_the_probes_times_are_counted_as_out_of_range() -> None:
    from anomaly import parse_lines

    for line in ('{"ts": 1e30, "msg": "boom"}', "ts=1e30 msg=boom", '{"ts": 1e20, "msg": "year 5138"}',
                 "1969-12-31T23:59:59Z ERROR before the epoch"):
        intake = parse_lines([line])
        assert intake.records[0].timestamp is None and intake.dropped == {"timestamp_out_of_range": 1}, line
    ok = parse_lines(['{"ts": 1704623341, "msg": "fine"}'])
    assert ok.records[0].timestamp == 1704623341 and ok.dropped == {}


@FUZZ
@given(name=hostile_unicode_text, where=st.sampled_from(["alertname", "service", "label_key", "annotation"]),
       n_good=st.integers(1, 3))
def test_webhook_rejects_only_the_alert_with_a_lone_surrogate_or_bidi_control(name: str, where: str, n_good: int) -> None:
    labels = {"alertname": "HighErrorRate", "service": "checkout"}
    annotations = {"summary": "s"}
    if where == "alertname":
        labels["alertname"] = name
    elif where == "service":
        labels["service"] = name
    elif where == "label_key":
        labels[name] = "x"
    else:
        annotations["description"] = name
    starts = datetime(2024, 1, 7, 10, 30, tzinfo=timezone.utc)
    good = [_alert({"alertname": f"Good{i}", "service": "checkout"}, starts) for i in range(n_good)]
    bad = {**_alert(labels, starts), "annotations": annotations}
    webhook = AlertmanagerWebhook.model_validate({"version": "4", "status": "firing", "alerts": [*good, bad]})
    valid, rejected = webhook.valid_alerts()
    # the name holds a lone surrogate (refused anywhere) or a bidi control (refused in labels only)
    refused = any("\ud800" <= c <= "\udfff" for c in name) or where != "annotation"
    assert len(valid) == n_good + (not refused), (name, where, rejected)
    for alert in valid:
        alert.to_alert()  # never fails after validation
    if refused:
        assert [r.index for r in rejected] == [n_good] and rejected[0].error.startswith(f"body.alerts.{n_good}.")
        assert "surrogate" in rejected[0].error or "bidirectional" in rejected[0].error


@FUZZ
@given(name=hostile_unicode_text, where=st.sampled_from(["name", "service", "annotation"]))
def test_analyze_request_names_the_field_holding_a_lone_surrogate_or_bidi_control(name: str, where: str) -> None:
    alert: dict = {"name": "HighErrorRate", "timestamp": "2024-01-07T10:30:00Z", "labels": {"service": "checkout"}}
    if where == "name":
        alert["name"] = name
    elif where == "service":
        alert["labels"]["service"] = name
    else:
        alert["annotations"] = {"description": name}
    try:
        request = AnalyzeRequest.model_validate({"alert": alert, "logs": [name]})
    except ValidationError as exc:
        errors = exc.errors()
        assert errors and all(err["loc"][0] == "alert" for err in errors), errors
        assert any(w in str(errors) for w in ("surrogate", "bidirectional", "unicode string")), errors
        return
    assert where == "annotation" and not any("\ud800" <= c <= "\udfff" for c in name)
    assert request.logs == [name], "log text is kept (IncidentService repairs and counts it)"
