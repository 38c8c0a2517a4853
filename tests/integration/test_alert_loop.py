"""The real alert loop on this machine: workload -> Prometheus rule -> Alertmanager -> webhook -> incident.

Real ``prometheus`` and ``prometheus-alertmanager`` processes (scripts/install-prometheus) are
started by ``scripts/stack start --no-app`` on free ports in a temporary folder, with the
shipped ``configs/`` and one override: ``STACK_RULE_FOR`` rewrites every rule's ``for:`` to a
few seconds (the rules and thresholds are the shipped ones). The stack's demo workload
(``scripts/workload.py``) is one simulated service of ``pipelines/simulate.py``'s
``third_party_outage``: Prometheus scrapes its metrics, and its logs reach the analysis through
Loki's documented ``query_range`` API, which the workload answers (no Loki server runs here).

The analyzer is the session's Serve app (one Ray cluster): its code, database and HTTP proxy,
with a second application of the same ``build_app`` beside it, configured as in production:
the test's Prometheus and Loki (``RCA_PROMETHEUS_URL``, ``RCA_LOKI_URL``), the machine's Kafka
broker (``scripts/kafka``, topics of this test alone) and an OpenAI-compatible LLM (the local
stand-in of tests/support/openai_standin.py, answering as a grounded model would); its auth
settings are the session app's (tests/conftest.py). Alertmanager posts to that application's
``POST /webhook/alertmanager`` with the session's webhook token; the alert goes through
``rca.alerts`` and the Kafka reader, and the LLM reasoner writes the analysis.

While the alert resolves, every PromQL expression of the Grafana dashboards is run against this
Prometheus, which scrapes Ray's metrics export port: every one returns data. For the panels no
healthy alert touches, the test does what operators see happen: a poison message on
``rca.alerts`` (dead-letter panel), an oversized event on ``rca.logs`` (dropped lines), a span
without an id on ``rca.spans`` (dropped spans), a request without credentials (rejected requests).

Waits poll with generous deadlines; no assertion is about time. The whole test takes about
3 minutes, most of it waiting for the 5xx ratio over the rule's 2-minute window to fall
under 5 % after the fault is cleared.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from pipelines.streaming.producer import Publisher
from pipelines.streaming.topics import TopicNames
from pipelines.simulate import SCENARIOS
from tests.conftest import AUTH_SETTINGS, REPO, WEBHOOK_TOKEN, free_port
from tests.integration.kafka_support import isolated_settings, kafka_bootstrap  # noqa: F401 - fixture
from tests.support.openai_standin import OpenAIStandin, quoting_model, respond_with
from tests.support.otlp import otlp_batch

pytestmark = [
    pytest.mark.serve,
    pytest.mark.kafka,
    pytest.mark.skipif(
        not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")),
        reason="prometheus and prometheus-alertmanager are not installed (run scripts/install-prometheus)",
    ),
]

SCENARIO = "third_party_outage"
LOOP_APP = "rca-alert-loop"
LOOP_PREFIX = "/alert-loop"
LLM_MODEL = "standin-model"
T = TypeVar("T")


@dataclass
class Stack:
    prometheus: str
    alertmanager: str
    workload: str
    env: dict[str, str]


@dataclass
class LoopApp:
    url: str
    bootstrap: str
    topics: TopicNames


def wait_for(what: str, probe: Callable[[], T | None], deadline_s: float, every_s: float = 1.0) -> T:
    """Poll ``probe`` until it returns something; fail naming ``what`` after the deadline."""
    end = time.monotonic() + deadline_s
    last_error: Exception | None = None
    while time.monotonic() < end:
        try:
            found = probe()
            if found is not None:
                return found
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            last_error = exc
        time.sleep(every_s)
    pytest.fail(f"{what}: not seen within {deadline_s:.0f} s" + (f" (last error: {last_error})" if last_error else ""))


def ray_metrics_port() -> int:
    """Ray's metrics export port of the session's node: Prometheus scrapes the app there."""
    import ray

    return int(ray.nodes()[0]["MetricsExportPort"])


@pytest.fixture
def loop_stack(serve_app: str, tmp_path: Path) -> Iterator[Stack]:
    ports = {name: free_port() for name in ("prometheus", "alertmanager", "workload")}
    env = {
        **os.environ,
        "STACK_DIR": str(tmp_path / "stack"),
        "STACK_PROMETHEUS_PORT": str(ports["prometheus"]),
        "STACK_ALERTMANAGER_PORT": str(ports["alertmanager"]),
        "STACK_WORKLOAD_PORT": str(ports["workload"]),
        "STACK_METRICS_PORT": str(ray_metrics_port()),
        "STACK_SCENARIO": SCENARIO,
        "STACK_SCRAPE_INTERVAL": "1s",
        "STACK_RULE_FOR": "5s",
        "STACK_GROUP_WAIT": "1s",
        "STACK_GROUP_INTERVAL": "2s",
        "STACK_WEBHOOK_URL": f"{serve_app}{LOOP_PREFIX}/webhook/alertmanager",
    }
    script = str(REPO / "scripts" / "stack")
    # Alertmanager presents the session's webhook token (the stack keeps a token file it finds).
    secrets = tmp_path / "stack" / "secrets"
    secrets.mkdir(parents=True, mode=0o700)
    (secrets / "webhook-token").write_text(WEBHOOK_TOKEN + "\n")
    started = subprocess.run([script, "start", "--no-app"], env=env, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, f"scripts/stack start failed:\n{started.stdout}\n{started.stderr}"
        yield Stack(
            prometheus=f"http://127.0.0.1:{ports['prometheus']}",
            alertmanager=f"http://127.0.0.1:{ports['alertmanager']}",
            workload=f"http://127.0.0.1:{ports['workload']}",
            env=env,
        )
    finally:
        subprocess.run([script, "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture
def llm() -> Iterator[OpenAIStandin]:
    """The local OpenAI-compatible endpoint, answering from what it was sent as a grounded model would."""
    with OpenAIStandin(default=respond_with(quoting_model)) as standin:
        yield standin


@pytest.fixture
def loop_app(serve_app: str, database_url: str, data_dir: Path, loop_stack: Stack, kafka_bootstrap: str,
             llm: OpenAIStandin) -> Iterator[LoopApp]:
    """The app's second application on the session's Serve: the stack's Prometheus and Loki, Kafka, an LLM."""
    from ray import serve

    from pipelines.app import build_app
    from pipelines.streaming.reader import stop_reader

    settings = isolated_settings(
        kafka_bootstrap,
        **AUTH_SETTINGS,  # the session app's: its JWTs and webhook token hold here too
        database_url=database_url,
        data_dir=data_dir,
        prometheus_url=loop_stack.prometheus,
        loki_url=loop_stack.workload,
        openai_base_url=llm.base_url,
        openai_api_key="test-key",
        openai_model=LLM_MODEL,
        summarizer_replicas=1,
        source_timeout_seconds=10,
    )
    app = build_app(settings, autoscaling={"Summarizer": {"max_replicas": 2}, "AnomalyScorer": {"max_replicas": 1},
                                          "Reasoner": {"max_replicas": 1}})
    serve.run(app, name=LOOP_APP, route_prefix=LOOP_PREFIX,
              logging_config={"enable_access_log": False, "log_level": "WARNING"})
    try:
        yield LoopApp(url=f"{serve_app}{LOOP_PREFIX}", bootstrap=kafka_bootstrap, topics=TopicNames.from_settings(settings))
    finally:
        stop_reader(LOOP_APP)
        serve.delete(LOOP_APP)


def _prometheus_query(stack: Stack, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{stack.prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
    return answer["data"]["result"]


def _dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every Prometheus target of the shipped Grafana dashboards."""
    queries = []
    for path in sorted((REPO / "configs" / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    queries.append((f"{path.stem}: {panel['title']}", target["expr"]))
    return queries


async def _publish(app: LoopApp, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    publisher = Publisher(app.bootstrap, topics=app.topics)
    try:
        await publisher.publish_records(topic, records)
    finally:
        await publisher.stop()


def _incident(app: str, service: str, name: str, since: str, headers: dict[str, str]) -> dict | None:
    page = httpx.get(f"{app}/api/incidents", params={"service": service, "since": since, "page_size": 100},
                     headers=headers, timeout=10)
    page.raise_for_status()
    return next((i for i in page.json()["items"] if i["alert_name"] == name), None)


def test_a_fault_fires_a_rule_and_alertmanager_opens_then_resolves_an_analyzed_incident(
    loop_stack: Stack, loop_app: LoopApp, auth_headers: Callable[..., dict[str, str]]
) -> None:
    spec = SCENARIOS[SCENARIO]
    service, alert_name = spec.alert_service, spec.alert_name
    headers = auth_headers("viewer")
    app = loop_app.url

    # The workload is scraped, healthy, and nothing fires yet.
    wait_for("the workload scraped", lambda: _prometheus_query(loop_stack, 'up{job="demo-workload"} == 1') or None, 60)
    wait_for("the request rate of the workload recorded",
             lambda: _prometheus_query(loop_stack, f'service:http_requests:rate2m{{service="{service}"}} > 0') or None, 60)
    assert _prometheus_query(loop_stack, f'ALERTS{{alertname="{alert_name}", service="{service}"}}') == []
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))

    # Inject the fault: the shipped rule fires and Alertmanager posts to the webhook.
    assert httpx.post(f"{loop_stack.workload}/fault", timeout=5).json()["fault"] is True
    wait_for(f"{alert_name} firing in Prometheus",
             lambda: _prometheus_query(loop_stack, f'ALERTS{{alertname="{alert_name}", alertstate="firing", service="{service}"}}') or None,
             90)
    incident = wait_for(
        f"an analyzed {alert_name} incident of {service} in GET /api/incidents",
        lambda: (i if (i := _incident(app, service, alert_name, since, headers)) and i["analysis"] else None),
        90,
    )
    analysis = incident["analysis"]
    assert incident["status"] == "open"
    assert incident["alert"]["labels"]["service"] == service
    assert incident["category"] == analysis["classification"]["category"] == spec.category.value
    assert spec.culprit in [h["service"] for h in analysis["hypotheses"]]
    assert analysis["remediation"], "an analysis without remediation steps"
    # The context came from the workload's logs through the Loki route (and its metrics through Prometheus).
    assert analysis["stats"]["lines_in"] > 0
    assert not [r for r in analysis["degraded_reasons"] if r.startswith(("loki", "prometheus"))]

    # Alertmanager -> webhook -> rca.alerts -> the Kafka reader -> the pipeline, reasoned by the LLM.
    assert analysis["reasoner"] == f"llm:{LLM_MODEL}", analysis["degraded_reasons"]
    assert analysis["llm_usage"]["prompt_tokens"] > 0

    # The session app reads the same incident (one database), with its own auth.
    same = httpx.get(f"{app.removesuffix(LOOP_PREFIX)}/api/incidents/{incident['id']}", headers=headers, timeout=10)
    assert same.status_code == 200 and same.json()["analysis"]["classification"] == analysis["classification"]

    # The analyzer's own metrics reach Prometheus through Ray's metrics export port.
    wait_for("ray_rca_incidents_total scraped from the app",
             lambda: _prometheus_query(loop_stack, "sum(ray_rca_incidents_total) > 0") or None, 60)

    # Clear the fault: the alert resolves, Alertmanager sends `resolved`, the incident closes.
    assert httpx.delete(f"{loop_stack.workload}/fault", timeout=5).json()["fault"] is False

    # What else operators see: a poison alert (to the dead-letter topic), a log event over
    # RCA_MAX_LINE_BYTES (dropped by the digesters), a span batch with a span that has no id
    # (left out by the digesters), a call without credentials (401).
    oversized = json.dumps({"message": "x" * 70_000, "service": service}).encode()
    now = time.time()
    spans = otlp_batch({service: [{"trace": "4bf92f3577b34da6a3ce929d0e0e4736", "span": "00f067aa0ba902b7",
                                   "name": "GET /work", "start": now, "ms": 3.0},
                                  {"trace": "4bf92f3577b34da6a3ce929d0e0e4736", "span": "",
                                   "name": "GET /work", "start": now, "ms": 2.0}]})
    asyncio.run(_publish(loop_app, loop_app.topics.alerts, [(b"poison", b"{not an alert")]))
    asyncio.run(_publish(loop_app, loop_app.topics.logs, [(service.encode(), oversized)]))
    asyncio.run(_publish(loop_app, loop_app.topics.spans, [(service.encode(), spans)]))
    assert httpx.get(f"{app}/api/incidents", timeout=10).status_code == 401

    # Meanwhile, the dashboards' PromQL against this Prometheus: every expression is valid and
    # returns data, and the panels of what this test made happen show it by its label.
    # rate()/increase() need two samples of a series inside the window: a series first
    # scraped moments ago has data a scrape or two later, so poll rather than look once.
    expected = {
        "ray_rca_dlq_messages_total": ("reason", {"undecodable"}),
        "ray_rca_log_lines_dropped_total": ("reason", {"oversized"}),
        "ray_rca_spans_dropped_total": ("reason", {"span_incomplete"}),
        "ray_rca_requests_rejected_total": ("reason", {"unauthenticated"}),
        "ray_rca_llm_requests_total": ("outcome", {"ok"}),
        "ray_rca_llm_tokens_total": ("kind", {"prompt", "completion"}),
        "ray_rca_kafka_consumer_lag_messages": ("topic", {loop_app.topics.alerts}),
    }
    shown: set[str] = set()
    for title, expr in _dashboard_queries():
        query = expr.replace("$__rate_interval", "1m")
        answer = httpx.get(f"{loop_stack.prometheus}/api/v1/query", params={"query": query}, timeout=10).json()
        assert answer["status"] == "success", f"{title}: {expr}: {answer.get('error')}"
        metric = next((m for m in expected if m in expr), None)
        label, values = expected[metric] if metric else ("", set())

        def shows(query: str = query, label: str = label, values: set[str] = values) -> list[dict[str, Any]] | None:
            result = _prometheus_query(loop_stack, query)
            return result if result and values <= {series["metric"].get(label) for series in result} else None

        wait_for(f"{title}: {expr} returns data" + (f" with {label} {sorted(values)}" if values else ""),
                 shows, 90, every_s=2)
        shown.update([metric] if metric else [])
    assert shown == set(expected), f"no dashboard panel shows {sorted(set(expected) - shown)}"
    resolved = wait_for(
        f"the {alert_name} incident resolved",
        lambda: (i if (i := _incident(app, service, alert_name, since, headers)) and i["status"] == "resolved" else None),
        200,
        every_s=2,
    )
    assert resolved["id"] == incident["id"]
    assert resolved["resolved_at"] is not None
    time_to_resolve = datetime.fromisoformat(resolved["resolved_at"]) - datetime.fromisoformat(resolved["started_at"])
    assert time_to_resolve.total_seconds() > 0
    stats = httpx.get(f"{app}/api/stats", headers=headers, timeout=10).json()
    assert stats["incidents"] >= 1
