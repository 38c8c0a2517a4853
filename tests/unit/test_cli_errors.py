"""The CLI names what is wrong with a user's input and exits 2, before starting anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import CliError, app, load_alert

runner = CliRunner()


def _alert_file(tmp_path: Path, content: bytes | str, name: str = "alert.json") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("", "the file is empty"),
        ("{bad", "not valid JSON (line 1"),
        (b"\xff\xfe\x00\x01", "not UTF-8"),
        ('{"name": "HighCPUUsage"}', "timestamp: Field required"),
        ('{"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {}, "startsAt": "2024-01-07T10:30:00Z"}]}', "alertname"),
    ],
)
def test_bad_alert_files_are_named_with_the_problem(tmp_path: Path, content: str | bytes, says: str) -> None:
    path = _alert_file(tmp_path, content)
    with pytest.raises(CliError) as caught:
        load_alert(path)
    assert str(path) in str(caught.value) and says in str(caught.value)


def test_alert_formats_accepted(tmp_path: Path) -> None:
    ours = {"name": "HighCPUUsage", "severity": "critical", "timestamp": "2024-01-07T10:30:00Z", "labels": {"service": "web"}}
    webhook = {"version": "4", "status": "firing", "alerts": [{"status": "firing", "startsAt": "2024-01-07T10:30:00Z",
               "labels": {"alertname": "HighCPUUsage", "service": "web", "severity": "critical"}}]}
    labels = {"alertname": "HighCPUUsage", "service": "web", "severity": "critical"}
    one = {"labels": labels, "annotations": {"summary": "CPU above 90%"}, "startsAt": "2024-01-07T10:30:00Z"}
    api_v2 = [dict(one, endsAt="2024-01-07T11:30:00Z", fingerprint="ab12", status={"state": "active", "silencedBy": []})]
    prometheus = {"status": "success", "data": {"alerts": [
        {"labels": labels, "annotations": {}, "state": "firing", "activeAt": "2024-01-07T10:30:00Z", "value": "9.3e-01"}]}}
    for body in (ours, {"alert": ours}, webhook, one, api_v2, prometheus):
        alert = load_alert(_alert_file(tmp_path, json.dumps(body)))
        assert alert.name == "HighCPUUsage" and alert.service == "web" and alert.severity.value == "critical"
        assert alert.timestamp.isoformat() == "2024-01-07T10:30:00+00:00" and alert.status == "firing"
    resolved = load_alert(_alert_file(tmp_path, json.dumps(dict(one, status="resolved", endsAt="2024-01-07T10:40:00Z"))))
    assert resolved.status == "resolved"
    with pytest.raises(CliError, match="the list holds no alert"):
        load_alert(_alert_file(tmp_path, "[]"))
    with pytest.raises(CliError, match="alertname"):
        load_alert(_alert_file(tmp_path, json.dumps({"labels": {"service": "web"}, "startsAt": "2024-01-07T10:30:00Z"})))


def test_missing_files_and_unknown_scenario_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze", "--alert", str(tmp_path / "nope.json")])
    assert isinstance(result.exception, CliError) and "no such file" in str(result.exception)
    alert = _alert_file(tmp_path, json.dumps({"name": "X", "timestamp": "2024-01-07T10:30:00Z"}))
    result = runner.invoke(app, ["analyze", "--alert", str(alert), "--logs", str(tmp_path / "missing.log")])
    assert isinstance(result.exception, CliError) and "missing.log: no such file" in str(result.exception)
    binary = _alert_file(tmp_path, bytes(range(256)) * 64, "garbage.log")
    result = runner.invoke(app, ["analyze", "--alert", str(alert), "--logs", str(binary)])
    assert isinstance(result.exception, CliError) and "no readable log lines" in str(result.exception)
    result = runner.invoke(app, ["demo", "--scenario", "meteor_strike"])
    assert isinstance(result.exception, CliError) and "memory_leak" in str(result.exception)


def test_eval_commands_name_a_missing_dataset(tmp_path: Path) -> None:
    for kind in ("loghub", "hdfs", "nezha"):
        result = runner.invoke(app, ["eval", kind, str(tmp_path / "absent")])
        assert isinstance(result.exception, CliError) and "no such folder" in str(result.exception)


def test_serve_refuses_a_bad_runbook_before_starting_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    (tmp_path / "bad.yaml").write_text(
        "name: x\nmatch:\n  category: database\nsteps:\n  - action: a\n    expected_outcome: b\n    risk_level: critical\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "serve", "--port", "8123"],
        capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "RCA_RUNBOOKS_DIR": str(tmp_path)},
    )
    assert done.returncode == 2
    assert "bad.yaml:7: steps.0.risk_level" in done.stderr and "Traceback" not in done.stderr


def test_serve_refuses_an_unreadable_notification_secret_file_before_starting_anything(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    missing = tmp_path / "slack-url"
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "serve", "--port", "8124"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "RCA_SLACK_WEBHOOK_URL_FILE": str(missing)},
    )
    assert done.returncode == 2
    assert "RCA_SLACK_WEBHOOK_URL_FILE" in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_telemetry_kind_to_leave_out_is_named(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "nezha", str(tmp_path), "--without", "traces"])
    assert isinstance(result.exception, CliError)
    assert str(result.exception) == "--without: unknown telemetry kind 'traces'; choose from logs, metrics, spans"
