"""The Nezha dataset reader and scorer on a tiny synthetic dataset in Nezha's layout."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipelines.evaluation.nezha import NezhaDatasetError, load_cases, metric_name, score_cases, service_of_pod
from pipelines.schemas import Analysis, Classification, Hypothesis, RemediationStep

DAY = "2024-03-01"
POD_A = "shop-cart-service-5dc8d4f9fd-46997"
POD_B = "shop-api-gateway-6f6cfc45b-h5m2n"


def _gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write(text)


def _log_row(ts: str, pod: str, message: str) -> str:
    inner = json.dumps({"log": f"18:00:01.000 ERROR  c.s.CartServiceImpl#12 {message}\n", "stream": "stdout"})
    return f'{ts},0,node,{pod},server,t1,s1,"{inner.replace(chr(34), chr(34) * 2)}"\n'


def _dataset(root: Path) -> Path:
    rca = root / "rca_data" / DAY
    rca.mkdir(parents=True)
    (rca / f"{DAY}-fault_list.json").write_text(
        json.dumps({"10": [{"inject_time": f"{DAY} 10:00:30", "inject_timestamp": "1", "inject_pod": POD_A, "inject_type": "return"}]})
    )
    header = "Timestamp,TimeUnixNano,Node,PodName,Container,TraceID,SpanID,Log\n"
    row = _log_row(f"{DAY}T10:00:10Z", POD_A, "cart failed")
    _gz(rca / "log" / "10_00_log.csv.gz", header + row + row)  # an exact duplicate row
    _gz(rca / "log" / "10_01_log.csv.gz", header + row + _log_row(f"{DAY}T10:01:10Z", POD_A, "cart failed again"))
    _gz(rca / "log" / "10_02_log.csv.gz", header)
    spans = "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration\n"
    spans += f"t1,a,root,{POD_B},GET /cart,1709287210000000000,1709287210100000000,100000\n"
    spans += f"t1,b,a,{POD_A},CartController.get,1709287210001000000,1709287210090000000,89000\n"
    _gz(rca / "trace" / "10_00_trace.csv.gz", spans)
    _gz(rca / "trace" / "10_01_trace.csv.gz", spans)  # the same spans again: kept once
    _gz(rca / "trace" / "10_02_trace.csv.gz", spans.splitlines()[0] + "\n")
    cols = "Time,TimeStamp,PodName,CpuUsageRate(%),PodClientLatencyP90(s),PodSuccessRate(%)\n"
    rows = "".join(
        f"{DAY} 09:{m:02d}:05.1 +0000 UTC m=+1.0,0,{POD_A},{5 if m < 59 else 90},{3600 if m == 58 else 0.1},0\n"
        for m in range(20, 60)
    ) + f"{DAY} 10:00:05.1 +0000 UTC m=+1.0,0,{POD_A},95,0.2,0\n"
    _gz(rca / "metric" / f"{POD_A}_metric.csv.gz", cols + rows)
    _gz(rca / "metric" / "front_service.csv.gz", "Time,TimeStamp,ServiceName,SuccessRate(%),LatencyP90(s)\n"
        f"{DAY} 09:59:05.1 +0000 UTC m=+1.0,0,Frontend,0,0.1\n{DAY} 10:01:05.1 +0000 UTC m=+1.0,0,Frontend,0,0.5\n")
    base = root / "construct_data" / DAY
    _gz(base / "log" / "09_00_log.csv.gz", header + _log_row(f"{DAY}T09:00:10Z", POD_A, "cart ok"))
    _gz(base / "trace" / "09_00_trace.csv.gz", spans)
    return root


def test_service_of_pod_strips_replica_set_and_pod_suffixes() -> None:
    assert service_of_pod("ts-contacts-service-866bd68c97-9sv6w") == "ts-contacts-service"
    assert service_of_pod("redis-0") == "redis"
    assert service_of_pod("frontend") == "frontend"


def test_metric_names_are_snake_case_with_units() -> None:
    assert metric_name("CpuUsageRate(%)") == "cpu_usage_rate_percent"
    assert metric_name("PodServerLatencyP90(s)") == "pod_server_latency_p90_seconds"


def test_case_and_context(tmp_path: Path) -> None:
    cases = load_cases(_dataset(tmp_path))
    assert len(cases) == 1
    case = cases[0]
    assert case.truth_service == "shop-cart-service"
    assert case.inject_time == datetime(2024, 3, 1, 10, 0, 30, tzinfo=timezone.utc)
    context = case.context()
    messages = [e.message for e in context.window.logs]
    assert len(messages) == 2  # duplicate rows across and within minute files dropped
    assert all(e.level == "ERROR" and e.service == "shop-cart-service" for e in context.window.logs)
    assert len(context.window.spans) == 2
    assert {s.service for s in context.window.spans} == {"shop-cart-service", "shop-api-gateway"}
    assert context.alert.labels["service"] == "shop-api-gateway"  # the entry point, never the culprit
    assert context.alert.name == "SlowResponseTime"
    cpu = {(m.service, m.name): m for m in context.window.metrics}[("shop-cart-service", "cpu_usage_rate_percent")]
    assert max(v for _, v in cpu.points) == 95
    base = {(m.service, m.name): m for m in context.baseline.metrics}
    latency = base[("shop-cart-service", "pod_client_latency_p90_seconds")]
    assert all(v < 3600 for _, v in latency.points)  # the sentinel is not a value
    assert context.baseline.logs and context.baseline.spans


def test_missing_minute_file_degrades_and_corrupt_file_names_itself(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    (root / "rca_data" / DAY / "log" / "10_02_log.csv.gz").unlink()
    case = load_cases(root)[0]
    assert any("10_02_log" in r for r in case.context().degraded_reasons)
    bad = root / "rca_data" / DAY / "trace" / "10_01_trace.csv.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(NezhaDatasetError, match="10_01_trace"):
        load_cases(root)[0].context()


def test_missing_dataset_and_fault_list(tmp_path: Path) -> None:
    with pytest.raises(NezhaDatasetError, match="rca_data"):
        load_cases(tmp_path)
    (tmp_path / "rca_data" / DAY).mkdir(parents=True)
    with pytest.raises(NezhaDatasetError, match="fault_list"):
        load_cases(tmp_path)


def _analysis(services: list[str], category: str, fault_type: str) -> Analysis:
    return Analysis(
        incident_id="x",
        summary="s",
        classification=Classification(category=category, confidence=0.5),
        hypotheses=[
            Hypothesis(cause="c", confidence=0.9 - i * 0.1, category=category, service=s, fault_type=fault_type)
            for i, s in enumerate(services)
        ],
        remediation=[RemediationStep(step=1, action="a", expected_outcome="o", risk_level="low")],
        reasoner="evidence",
    )


def test_score_cases(tmp_path: Path) -> None:
    case = load_cases(_dataset(tmp_path))[0]
    hit = _analysis(["shop-cart-service", "other"], "application", "code_exception")
    second = _analysis(["other", "shop-cart-service"], "network", "network_delay")
    result = score_cases([(case, hit, 1.0), (case, second, 3.0)])
    assert result["cases"] == 2
    assert result["as_at_1"] == 0.5 and result["as_at_3"] == 1.0
    assert result["category_accuracy"] == 0.5
    assert result["fault_type_accuracy"] == 0.5
    assert result["p50_seconds"] == 2.0
    assert [r["rank"] for r in result["rows"]] == [1, 2]
