"""The Nezha dataset reader and scorer on tiny synthetic datasets in Nezha's layouts.

Train-Ticket style (gzip CSVs, a front_service file) and Online Boutique style (plain CSVs, no
front-end file, extra non-pod files in the metric folder, other fault type names), glued rows,
the alert at injection + delay or when the project's rules fire, and nothing read past the
alert's ContextWindow.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipelines.evaluation.nezha import (
    NezhaDatasetError,
    firing_starts,
    load_cases,
    load_rules,
    metric_name,
    rank_of,
    score_cases,
    service_of_pod,
    without,
)
from pipelines.schemas import Analysis, Classification, Hypothesis, RemediationStep

DAY = "2024-03-01"
POD_A = "shop-cart-service-5dc8d4f9fd-46997"
POD_B = "shop-api-gateway-6f6cfc45b-h5m2n"
INJECT = datetime(2024, 3, 1, 10, 0, 30, tzinfo=timezone.utc)
LOG_HEADER = "Timestamp,TimeUnixNano,Node,PodName,Container,TraceID,SpanID,Log\n"
SPAN_HEADER = "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)


def _log_row(ts: str, pod: str, message: str) -> str:
    inner = json.dumps({"log": f"18:00:01.000 ERROR  c.s.CartServiceImpl#12 {message}\n", "stream": "stdout"})
    return f'{ts},0,node,{pod},server,t1,s1,"{inner.replace(chr(34), chr(34) * 2)}"\n'


def _span_rows(start_s: int) -> str:
    return (f"t{start_s},a,root,{POD_B},GET /cart,{start_s}000000000,{start_s}100000000,100000\n"
            f"t{start_s},b,a,{POD_A},CartController.get,{start_s}001000000,{start_s}090000000,89000\n")


def _metric_rows(minutes: range, pod: str, hour: int = 9, cpu=lambda m: 5) -> str:
    return "".join(f"{DAY} {hour:02d}:{m:02d}:05.1 +0000 UTC m=+1.0,0,{pod},{cpu(m)},{3600 if m == 58 else 0.1},0\n" for m in minutes)


def _dataset(root: Path, *, ext: str = ".csv.gz", fault: str = "return", front: str | None = None) -> Path:
    rca = root / "rca_data" / DAY
    rca.mkdir(parents=True)
    (rca / f"{DAY}-fault_list.json").write_text(json.dumps(
        {"10": [{"inject_time": f"{DAY} 10:00:30", "inject_timestamp": "1", "inject_pod": POD_A, "inject_type": fault}]}))
    row = _log_row(f"{DAY}T10:00:10Z", POD_A, "cart failed")
    _write(rca / "log" / f"10_00_log{ext}", LOG_HEADER + row + row)  # an exact duplicate row
    _write(rca / "log" / f"10_01_log{ext}", LOG_HEADER + row + _log_row(f"{DAY}T10:01:10Z", POD_A, "cart failed again"))
    _write(rca / "log" / f"10_02_log{ext}", LOG_HEADER + _log_row(f"{DAY}T10:02:50Z", POD_A, "after the alert's window"))
    spans = SPAN_HEADER + _span_rows(1709287210)  # 10:00:10
    _write(rca / "trace" / f"10_00_trace{ext}", spans)
    _write(rca / "trace" / f"10_01_trace{ext}", spans)  # the same spans again: kept once
    _write(rca / "trace" / f"10_02_trace{ext}", SPAN_HEADER + _span_rows(1709287380))  # 10:03:00, after every window
    cols = "Time,TimeStamp,PodName,CpuUsageRate(%),PodClientLatencyP90(s),PodSuccessRate(%)\n"
    rows = _metric_rows(range(20, 60), POD_A, cpu=lambda m: 5 if m < 59 else 90)
    rows += f"{DAY} 10:00:05.1 +0000 UTC m=+1.0,0,{POD_A},95,0.2,0\n{DAY} 10:05:05.1 +0000 UTC m=+1.0,0,{POD_A},99,0.2,0\n"
    _write(rca / "metric" / f"{POD_A}_metric{ext}", cols + rows)
    _write(rca / "metric" / f"{POD_B}_metric{ext}", cols + _metric_rows(range(20, 60), POD_B))
    if front is not None:
        _write(rca / "metric" / f"front_service{ext}", front)
    base = root / "construct_data" / DAY
    _write(base / "log" / f"09_00_log{ext}", LOG_HEADER + _log_row(f"{DAY}T09:00:10Z", POD_A, "cart ok"))
    _write(base / "trace" / f"09_00_trace{ext}", SPAN_HEADER + _span_rows(1709283610))
    return root


def _front(latency_p95) -> str:
    text = "Time,TimeStamp,ServiceName,SuccessRate(%),LatencyP90(s),LatencyP95(s)\n"
    for m in range(40, 70):
        at = datetime(2024, 3, 1, 9, 0, 5, tzinfo=timezone.utc) + timedelta(minutes=m)
        text += f"{at:%Y-%m-%d %H:%M:%S}.1 +0000 UTC m=+1.0,0,Frontend,0,0.1,{latency_p95(at)}\n"
    return text


def test_service_of_pod_strips_replica_set_and_pod_suffixes() -> None:
    assert service_of_pod("ts-contacts-service-866bd68c97-9sv6w") == "ts-contacts-service"
    assert service_of_pod("redis-0") == "redis"
    assert service_of_pod("frontend") == "frontend"


def test_metric_names_are_snake_case_with_units() -> None:
    assert metric_name("CpuUsageRate(%)") == "cpu_usage_rate_percent"
    assert metric_name("PodServerLatencyP90(s)") == "pod_server_latency_p90_seconds"


def test_context_is_the_alerts_window_only(tmp_path: Path) -> None:
    case = load_cases(_dataset(tmp_path))[0]
    assert case.truth_service == "shop-cart-service" and case.inject_time == INJECT
    context = case.context("delay", 120, before_seconds=300, after_seconds=5)
    assert context.alert.timestamp == INJECT + timedelta(seconds=120)
    messages = [e.message for e in context.window.logs]
    assert messages == ["c.s.CartServiceImpl#12 cart failed", "c.s.CartServiceImpl#12 cart failed again"]
    assert all(e.level == "ERROR" and e.service == "shop-cart-service" for e in context.window.logs)
    assert len(context.window.spans) == 2  # duplicates across files dropped; the 10:03 spans are after the window
    assert context.alert.labels["service"] == "shop-api-gateway"  # the entry point, never the culprit
    end = context.alert.timestamp.timestamp() + 5
    assert all(t < end for m in context.window.metrics for t, _ in m.points)  # nothing from 10:05
    cpu = {(m.service, m.name): m for m in context.window.metrics}[("shop-cart-service", "cpu_usage_rate_percent")]
    assert max(v for _, v in cpu.points) == 95
    latency = {(m.service, m.name): m for m in context.window.metrics}[("shop-cart-service", "pod_client_latency_p90_seconds")]
    assert all(v < 3600 for _, v in latency.points)  # the sentinel is not a value
    assert context.baseline.logs and context.baseline.spans
    assert all(t < context.alert.timestamp.timestamp() - 300 for m in context.baseline.metrics for t, _ in m.points)


def test_an_ablation_leaves_a_kind_of_telemetry_out_of_window_and_baseline(tmp_path: Path) -> None:
    context = load_cases(_dataset(tmp_path))[0].context("delay", 120, before_seconds=300, after_seconds=5)
    logless = without(context, ["logs"])
    assert not logless.window.logs and not logless.baseline.logs
    assert logless.window.spans == context.window.spans and logless.window.metrics == context.window.metrics
    assert context.window.logs  # the cached context itself is left whole
    assert without(context, []) is context
    with pytest.raises(ValueError, match="unknown telemetry kind 'traces'"):
        without(context, ["traces"])


def test_alert_at_injection_reads_no_later_line_and_carries_no_injection_time(tmp_path: Path) -> None:
    case = load_cases(_dataset(tmp_path))[0]
    context = case.context("delay", 0, before_seconds=300, after_seconds=5)
    assert [e.timestamp.isoformat() for e in context.window.logs] == ["2024-03-01T10:00:10+00:00"]
    alert_text = json.dumps(context.alert.model_dump(mode="json", exclude={"timestamp"}))
    assert "10:00:30" not in alert_text and "return" not in alert_text and "cart" not in alert_text
    plan = case.alert_plan("delay", 60)
    assert plan.after_injection_seconds == 60 and plan.reason == "injection + 60s"


def test_short_metric_history_is_said_not_filled_from_later(tmp_path: Path) -> None:
    case = load_cases(_dataset(tmp_path))[0]
    context = case.context("delay", 0, before_seconds=2400, after_seconds=5)
    assert any("metric history before the window is short" in r for r in context.degraded_reasons)
    assert all(t < context.alert.timestamp.timestamp() - 2400 for m in context.baseline.metrics for t, _ in m.points)


def test_rules_come_from_the_projects_rule_file() -> None:
    rules = load_rules()
    assert (rules["HighErrorRate"].threshold, rules["HighErrorRate"].for_seconds) == (0.05, 120)
    assert (rules["SlowResponseTime"].threshold, rules["SlowResponseTime"].for_seconds) == (2, 300)
    samples = [(60.0 * i, v) for i, v in enumerate([1, 3, 3, 3, 1, 3, 3, 3, 3, 3])]
    assert firing_starts(samples, 2, 120) == [180.0, 420.0]  # pending from the first sample over, reset under


def test_alert_fires_when_a_rule_fires_else_at_the_delay(tmp_path: Path) -> None:
    slow_from = datetime(2024, 3, 1, 9, 56, tzinfo=timezone.utc)  # pending 09:56:05, firing 10:01:05 (for: 5m)
    root = _dataset(tmp_path, front=_front(lambda at: 3.0 if at >= slow_from else 0.5))
    case = load_cases(root)[0]
    plan = case.alert_plan("rules", 120)
    assert plan.moment == datetime(2024, 3, 1, 10, 1, 5, 100000, tzinfo=timezone.utc)
    assert plan.rule.name == "SlowResponseTime" and plan.reason.startswith("rule SlowResponseTime fired")
    assert case.context("rules", 120).alert.name == "SlowResponseTime"
    delayed = case.alert_plan("delay", 120)  # the sweep: the delay decides, the rules are still reported
    assert delayed.after_injection_seconds == 120 and delayed.rules_fire_after_seconds == pytest.approx(35.1)
    assert delayed.rule.name == "SlowResponseTime"  # firing at the alert's moment

    quiet = load_cases(_dataset(tmp_path / "quiet", front=_front(lambda at: 0.5)))[0]
    fallback = quiet.alert_plan("rules", 60)
    assert fallback.after_injection_seconds == 60 and fallback.reason.startswith("no rule fired")
    # a success rate of 0 in every row is not measured: no HighErrorRate storm from it
    assert fallback.rules_fire_after_seconds is None


def test_glued_row_is_skipped_counted_and_named(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    glued = _log_row(f"{DAY}T10:01:20Z", POD_A, "x").rstrip("\n") + ",extra,fields\n"
    _write(root / "rca_data" / DAY / "log" / "10_01_log.csv.gz",
           LOG_HEADER + _log_row(f"{DAY}T10:01:10Z", POD_A, "kept") + glued + _log_row(f"{DAY}T10:01:30Z", POD_A, "kept too"))
    context = load_cases(root)[0].context("delay", 120)
    assert [e.message.split()[-1] for e in context.window.logs][-2:] == ["kept", "too"]
    assert any("10_01_log.csv.gz: 1 malformed row(s) skipped" in r for r in context.degraded_reasons)


def test_online_boutique_layout(tmp_path: Path) -> None:
    """Plain CSVs, no front-end file, non-pod files in the metric folder, OB's fault type names."""
    root = _dataset(tmp_path, ext=".csv", fault="cpu_consumed")
    metric = root / "rca_data" / DAY / "metric"
    (metric / "dependency.csv").write_text("Source,Target,Weight\nfrontend,cartservice,1\n")
    (metric / "source_50.csv").write_text("a,b\n1,2\n")
    (metric / "destination_50.csv").write_text("a,b\n1,2\n")
    case = load_cases(root)[0]
    assert (case.truth_category, case.truth_fault_type) == ("infrastructure", "cpu_contention")
    context = case.context("rules", 120)
    assert len(context.window.logs) == 2 and len(context.window.spans) == 2
    assert context.alert.labels["service"] == "shop-api-gateway"
    assert any("dependency.csv" in r and "source_50.csv" in r and "destination_50.csv" in r for r in context.degraded_reasons)


def test_unknown_fault_type_is_scored_by_service_only(tmp_path: Path) -> None:
    case = load_cases(_dataset(tmp_path, fault="pod_failure"))[0]
    assert case.truth_category == "unknown"
    result = score_cases([(case, _analysis(["shop-cart-service", "other"], "application", "code_exception"), 1.0)])
    assert result["as_at_1"]["value"] == 1.0
    assert result["category_accuracy"]["total"] == 0 and result["fault_type_accuracy"]["total"] == 0


def test_missing_minute_files_degrade_and_corrupt_file_names_itself(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    for name in ("10_00", "10_01", "10_02"):
        (root / "rca_data" / DAY / "log" / f"{name}_log.csv.gz").unlink()
    case = load_cases(root)[0]
    assert any("no log lines inside the context window" in r for r in case.context().degraded_reasons)
    bad = root / "rca_data" / DAY / "trace" / "10_01_trace.csv.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(NezhaDatasetError, match="10_01_trace"):
        load_cases(root)[0].context("delay", 60)


def test_missing_dataset_and_fault_list(tmp_path: Path) -> None:
    with pytest.raises(NezhaDatasetError, match="rca_data"):
        load_cases(tmp_path)
    (tmp_path / "rca_data" / DAY).mkdir(parents=True)
    with pytest.raises(NezhaDatasetError, match="fault_list"):
        load_cases(tmp_path)


def _analysis(services: list[str], category: str, fault_type: str, confidences: list[float] | None = None) -> Analysis:
    confidences = confidences or [0.9 - i * 0.1 for i in range(len(services))]
    return Analysis(
        incident_id="x",
        summary="s",
        classification=Classification(category=category, confidence=0.5),
        hypotheses=[
            Hypothesis(cause="c", confidence=c, category=category, service=s, fault_type=fault_type)
            for s, c in zip(services, confidences)
        ],
        remediation=[RemediationStep(step=1, action="a", expected_outcome="o", risk_level="low")],
        reasoner="evidence",
    )


def test_ties_rank_pessimistically() -> None:
    tied = _analysis(["shop-cart-service", "other", "third"], "application", "code_exception", [0.5, 0.5, 0.5])
    assert rank_of(tied, "shop-cart-service") == 3
    assert rank_of(_analysis(["a", "shop-cart-service"], "network", "x", [0.7, 0.5]), "shop-cart-service") == 2
    assert rank_of(tied, "absent") is None


def test_score_cases(tmp_path: Path) -> None:
    case = load_cases(_dataset(tmp_path))[0]
    hit = _analysis(["shop-cart-service", "other"], "application", "code_exception")
    second = _analysis(["other", "shop-cart-service"], "network", "network_delay")
    tie = _analysis(["shop-cart-service", "other"], "application", None, [0.6, 0.6])
    plans = {case.case_id: case.alert_plan("delay", 120)}
    result = score_cases([(case, hit, 1.0), (case, second, 3.0), (case, tie, 2.0)], plans)
    assert result["cases"] == 3
    assert result["as_at_1"] == {"value": 0.3333, "count": 1, "total": 3, "ci95": result["as_at_1"]["ci95"]}
    assert result["as_at_3"]["count"] == 3
    low, high = result["as_at_1"]["ci95"]
    assert 0 < low < 0.3333 < high < 1
    assert result["category_accuracy"]["count"] == 2
    assert result["fault_type_accuracy"]["count"] == 1  # a missing fault type is a miss
    assert result["as_at_5"] is None and "3 hypotheses" in result["as_at_5_note"]
    assert result["by_fault_type"]["return"]["cases"] == 3
    assert result["p50_seconds"] == 2.0
    assert [r["rank"] for r in result["rows"]] == [1, 2, 2]
    assert result["rows"][0]["alert"]["after_injection_seconds"] == 120
    assert result["alerts"]["at_delay"] == 3
