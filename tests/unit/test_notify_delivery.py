"""The delivery rules: what an answer means, how long to wait, routing, and secrets kept out of text and settings."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from pipelines.notify.channels import build_channels
from pipelines.notify.delivery import backoff_seconds, classify, parse_retry_after, scrub
from pipelines.notify.pagerduty import PagerDutyChannel
from pipelines.notify.routing import NotifyRoute, route
from pipelines.notify.slack import SlackChannel
from pipelines.settings import Settings

NOW = datetime(2026, 12, 6, 10, 0, 0, tzinfo=timezone.utc)
SLACK = SlackChannel("https://hooks.slack.test/services/T/B/hooksecret")


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after("Sun, 06 Dec 2026 10:00:30 GMT", NOW) == 30.0
    assert parse_retry_after("Sun, 06 Dec 2026 09:00:00 GMT", NOW) == 0.0  # already past: no wait
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None and parse_retry_after("-5") is None


@pytest.mark.parametrize(("status", "body", "outcome"), [
    (200, "ok", "delivered"),
    (200, "something else", "rejected"),
    (400, "invalid_payload", "rejected"),
    (403, "action_prohibited", "rejected"),
    (404, "no_service", "rejected"),
    (410, "channel_is_archived", "rejected"),
    (408, "", "retry"),
    (429, "rate_limited", "retry"),
    (500, "rollup_error", "retry"),
    (503, "", "retry"),
])
def test_what_a_slack_answer_means(status: int, body: str, outcome: str) -> None:
    attempt = classify(SLACK, status, body, None)
    assert attempt.outcome == outcome and attempt.status == status
    if outcome == "rejected":
        assert "not retried" in attempt.reason or "not the answer" in attempt.reason


def test_pagerduty_accepts_with_202_and_a_400_says_why() -> None:
    channel = PagerDutyChannel("u", "key")
    assert classify(channel, 202, '{"status":"success"}', None).outcome == "delivered"
    refused = classify(channel, 400, '{"status":"invalid event","errors":["payload.summary is missing"]}', None)
    assert refused.outcome == "rejected" and "payload.summary is missing" in refused.reason
    limited = classify(channel, 429, "", "7")
    assert limited.outcome == "retry" and limited.retry_after_seconds == 7.0


def test_secrets_are_scrubbed_from_recorded_reasons() -> None:
    attempt = classify(SLACK, 400, "bad hook https://hooks.slack.test/services/T/B/hooksecret", None)
    assert "hooksecret" not in attempt.reason and "***" in attempt.reason
    assert scrub("key=abc", ["abc", ""]) == "key=***"


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    for attempt in range(1, 30):
        ceiling = min(60.0, 1.0 * 2 ** (attempt - 1))
        waits = [backoff_seconds(attempt, 1.0, 60.0, rng) for _ in range(50)]
        assert all(0.5 <= w <= ceiling for w in waits)
        if ceiling > 2:
            assert len({round(w, 6) for w in waits}) > 40  # jittered: retries of many rows do not line up
    assert backoff_seconds(10_000, 1.0, 60.0, rng) <= 60.0


def test_routing_by_category_severity_and_service_glob() -> None:
    routes = [
        NotifyRoute(channel="pagerduty", severities=["critical"], services=["payments-*", "orders-db"]),
        NotifyRoute(channel="slack"),
        NotifyRoute(channel="webhook", categories=["security"]),
    ]
    both = {"slack", "pagerduty", "webhook"}
    assert route(routes, both, "database", "critical", "payments-api") == ["slack", "pagerduty"]
    assert route(routes, both, "database", "warning", "payments-api") == ["slack"]
    assert route(routes, both, "database", "critical", "checkout") == ["slack"]
    assert route(routes, both, "security", "info", None) == ["slack", "webhook"]
    assert route([], {"slack"}, "network", "info", "x") == ["slack"]  # no routes: every configured channel


def test_routes_are_read_from_the_environment_and_a_bad_one_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RCA_NOTIFY_ROUTES", '[{"channel": "pagerduty", "severities": ["critical"], "services": ["pay-*"]}]')
    assert Settings().notify_routes[0].services == ["pay-*"]
    monkeypatch.setenv("RCA_NOTIFY_ROUTES", '[{"channel": "email"}]')
    with pytest.raises(ValueError, match="channel"):
        Settings()
    monkeypatch.setenv("RCA_NOTIFY_ROUTES", '[{"channel": "slack", "severity": ["critical"]}]')
    with pytest.raises(ValueError, match="severity"):
        Settings()


def test_secrets_come_from_the_environment_or_files_and_are_never_shown(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "pd"
    key_file.write_text("routing-key-from-file\n")
    monkeypatch.setenv("RCA_SLACK_WEBHOOK_URL", "https://hooks.slack.test/services/T/B/envsecret")
    monkeypatch.setenv("RCA_PAGERDUTY_ROUTING_KEY_FILE", str(key_file))
    settings = Settings()
    channels = build_channels(settings)
    assert set(channels) == {"slack", "pagerduty"}
    assert channels["pagerduty"].secrets() == ["routing-key-from-file"]
    shown = repr(settings) + settings.model_dump_json()
    assert "envsecret" not in shown and "routing-key-from-file" not in shown


def test_a_missing_secret_file_or_an_unsigned_webhook_is_refused_clearly(tmp_path) -> None:
    with pytest.raises(ValueError, match="RCA_PAGERDUTY_ROUTING_KEY_FILE .*missing"):
        build_channels(Settings(pagerduty_routing_key_file=tmp_path / "missing"))
    with pytest.raises(ValueError, match="RCA_NOTIFY_WEBHOOK_SECRET"):
        build_channels(Settings(notify_webhook_url="https://receiver.test/hook"))
    with pytest.raises(ValueError, match="routes to pagerduty, which is not configured"):
        build_channels(Settings(notify_routes=[NotifyRoute(channel="pagerduty")]))
    assert build_channels(Settings()) == {}


def test_a_retry_after_date_in_the_future_is_counted_from_now() -> None:
    later = (NOW + timedelta(minutes=2)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(later, NOW) == 120.0


def test_build_app_refuses_a_bad_notification_setting_before_anything_starts() -> None:
    from pipelines.app import build_app

    with pytest.raises(ValueError, match="RCA_NOTIFY_ROUTES routes to slack"):
        build_app(Settings(notify_routes=[NotifyRoute(channel="slack")]))
