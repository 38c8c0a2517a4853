"""configs/: the files operators deploy are valid for the tools that read them, and agree with the code.

promtool / amtool run when installed (scripts/install-prometheus; CI installs them) and the
tests that need them skip with a message otherwise. Everything else is checked in Python.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines import metrics
from pipelines.schemas import LogEvent

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
DASHBOARDS = CONFIGS / "grafana" / "dashboards"
MIGRATIONS = ROOT / "pipelines" / "migrations"

SPEC_ALERTS = {  # alert -> (for, severity) of the product spec
    "HighCPUUsage": ("2m", "warning"),
    "HighMemoryUsage": ("2m", "critical"),
    "HighErrorRate": ("2m", "critical"),
    "ServiceDown": ("1m", "critical"),
    "SlowResponseTime": ("5m", "warning"),
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed; run scripts/install-prometheus to check configs with it")
    return path


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def _yaml(name: str) -> Any:
    return yaml.safe_load((CONFIGS / name).read_text())


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _yaml("prometheus-rules.yaml")["groups"] for rule in group["rules"]]


# ---------------------------------------------------------------- Prometheus


def test_promtool_accepts_config_and_rules() -> None:
    promtool = _tool("promtool")
    result = _run(promtool, "check", "config", "prometheus.yml", cwd=CONFIGS)
    assert result.returncode == 0, result.stdout + result.stderr
    result = _run(promtool, "check", "rules", "prometheus-rules.yaml", cwd=CONFIGS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_spec_alerts_exist_with_severity_service_and_annotations() -> None:
    alerts = {rule["alert"]: rule for rule in _rules() if "alert" in rule}
    assert set(SPEC_ALERTS) <= set(alerts)
    for name, (duration, severity) in SPEC_ALERTS.items():
        rule = alerts[name]
        assert rule["for"] == duration, name
        assert rule["labels"]["severity"] == severity, name
        assert "$labels.service" in rule["labels"]["service"], name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_prometheus_scrapes_itself_and_the_analyzer_and_sends_to_alertmanager() -> None:
    config = _yaml("prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "prometheus" in jobs and "rca-analyzer" in jobs
    analyzer_targets = [t for sc in jobs["rca-analyzer"]["static_configs"] for t in sc["targets"]]
    assert analyzer_targets == ["app:8080"] and jobs["rca-analyzer"].get("metrics_path", "/metrics") == "/metrics"
    for rule_file in config["rule_files"]:
        assert (CONFIGS / rule_file).is_file(), rule_file
    targets = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert targets == ["alertmanager:9093"]


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _expected(alert: str, labels: dict[str, str], summary: str, description: str) -> dict[str, Any]:
    severity = SPEC_ALERTS[alert][1]
    return {"exp_labels": {"severity": severity, **labels}, "exp_annotations": {"summary": summary, "description": description}}


def test_alert_rules_fire_on_the_conditions_of_the_spec_and_not_below(tmp_path: Path) -> None:
    """promtool test rules: each alert fires with the right labels; calm services stay quiet."""
    promtool = _tool("promtool")
    shutil.copy(CONFIGS / "prometheus-rules.yaml", tmp_path)
    step = "30s"
    series = [
        # 0.9 CPU-seconds per second (90 %) vs 0.5 (50 %): 27 and 15 CPU-seconds every 30 s.
        _series("process_cpu_seconds_total", {"job": "checkout", "instance": "a:1"}, "0+27x40"),
        _series("process_cpu_seconds_total", {"job": "calm", "instance": "b:1"}, "0+15x40"),
        _series("container_cpu_usage_seconds_total", {"container": "worker", "pod": "w-0"}, "0+25.5x40"),
        _series("container_memory_working_set_bytes", {"container": "db", "pod": "db-0"}, "950x40"),
        _series("container_spec_memory_limit_bytes", {"container": "db", "pod": "db-0"}, "1000x40"),
        _series("container_memory_working_set_bytes", {"container": "cache", "pod": "c-0"}, "800x40"),
        _series("container_spec_memory_limit_bytes", {"container": "cache", "pod": "c-0"}, "1000x40"),
        # api: 3 of 33 requests fail (9 %); web: 1 of 100 (1 %).
        _series("http_requests_total", {"job": "api", "status": "500"}, "0+3x40"),
        _series("http_requests_total", {"job": "api", "status": "200"}, "0+30x40"),
        _series("http_requests_total", {"job": "web", "status": "503"}, "0+1x40"),
        _series("http_requests_total", {"job": "web", "status": "200"}, "0+99x40"),
        _series("up", {"job": "rca-analyzer", "instance": "app:8000", "service": "rca-analyzer"}, "0x40"),
        _series("up", {"job": "prometheus", "instance": "localhost:9090", "service": "prometheus"}, "1x40"),
        # Serve latency: 90 % of requests between 1 s and 5 s -> p95 about 4.8 s.
        _series("ray_serve_http_request_latency_ms_bucket", {"service": "rca-analyzer", "le": "1000"}, "0+1x40"),
        _series("ray_serve_http_request_latency_ms_bucket", {"service": "rca-analyzer", "le": "5000"}, "0+10x40"),
        _series("ray_serve_http_request_latency_ms_bucket", {"service": "rca-analyzer", "le": "+Inf"}, "0+10x40"),
        # http histogram: all requests under 0.5 s -> no alert.
        _series("http_request_duration_seconds_bucket", {"job": "web", "le": "0.5"}, "0+10x40"),
        _series("http_request_duration_seconds_bucket", {"job": "web", "le": "+Inf"}, "0+10x40"),
    ]
    tests = {
        "rule_files": ["prometheus-rules.yaml"],
        "evaluation_interval": step,
        "tests": [
            {
                "interval": step,
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "HighCPUUsage", "exp_alerts": []},  # not yet for 2m
                    {
                        "eval_time": "5m",
                        "alertname": "HighCPUUsage",
                        "exp_alerts": [
                            _expected(
                                "HighCPUUsage",
                                {"service": "checkout", "source": "process"},
                                "High CPU usage on checkout",
                                "checkout has used 90% CPU (100% = one core) for more than 2 minutes (threshold 80%).",
                            ),
                            _expected(
                                "HighCPUUsage",
                                {"service": "worker", "source": "container"},
                                "High CPU usage on worker",
                                "worker has used 85% CPU (100% = one core) for more than 2 minutes (threshold 80%).",
                            ),
                        ],
                    },
                    {
                        "eval_time": "5m",
                        "alertname": "HighMemoryUsage",
                        "exp_alerts": [
                            _expected(
                                "HighMemoryUsage",
                                {"service": "db", "source": "container"},
                                "High memory usage on db",
                                "db has used 95% of its memory limit for more than 2 minutes (threshold 90%).",
                            )
                        ],
                    },
                    {
                        "eval_time": "5m",
                        "alertname": "HighErrorRate",
                        "exp_alerts": [
                            _expected(
                                "HighErrorRate",
                                {"service": "api", "source": "http"},
                                "High 5xx error rate on api",
                                "9.091% of the requests to api failed with a 5xx status for more than 2 minutes"
                                " (threshold 5%).",
                            )
                        ],
                    },
                    {"eval_time": "30s", "alertname": "ServiceDown", "exp_alerts": []},
                    {
                        "eval_time": "2m",
                        "alertname": "ServiceDown",
                        "exp_alerts": [
                            _expected(
                                "ServiceDown",
                                {"service": "rca-analyzer", "job": "rca-analyzer", "instance": "app:8000"},
                                "rca-analyzer is down",
                                "Prometheus could not scrape app:8000 (job rca-analyzer) for more than 1 minute.",
                            )
                        ],
                    },
                    {"eval_time": "5m", "alertname": "SlowResponseTime", "exp_alerts": []},  # needs 5m of p95
                    {
                        "eval_time": "12m",
                        "alertname": "SlowResponseTime",
                        "exp_alerts": [
                            _expected(
                                "SlowResponseTime",
                                {"service": "rca-analyzer", "source": "ray_serve"},
                                "Slow responses from rca-analyzer",
                                "The 95th percentile response time of rca-analyzer has been 4.778s for more than"
                                " 5 minutes (threshold 2s).",
                            )
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = _run(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- Alertmanager


def test_amtool_accepts_the_alertmanager_config() -> None:
    amtool = _tool("amtool")
    result = _run(amtool, "check-config", "alertmanager.yml", cwd=CONFIGS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_routes_everything_to_the_webhook_grouped_by_service_with_a_token_file() -> None:
    config = _yaml("alertmanager.yml")
    route = config["route"]
    assert route["group_by"] == ["service"]
    receivers = {r["name"]: r for r in config["receivers"]}
    webhook = receivers[route["receiver"]]["webhook_configs"][0]
    assert webhook["url"] == "http://app:8000/webhook/alertmanager"
    assert webhook["send_resolved"] is True
    assert 1 <= webhook["max_alerts"] <= 1000  # AlertmanagerWebhook takes at most 1000 alerts
    auth = webhook["http_config"]["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials_file"].startswith("/")
    assert "credentials" not in auth, "the token must come from a file, not be inlined"
    assert not route.get("routes"), "every alert reaches the analyzer"


def test_amtool_routes_a_spec_alert_to_the_analyzer() -> None:
    amtool = _tool("amtool")
    result = _run(
        amtool, "config", "routes", "test", "--config.file=alertmanager.yml", "alertname=HighCPUUsage",
        "service=checkout", "severity=warning", cwd=CONFIGS,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "rca-analyzer"


# ---------------------------------------------------------------- Grafana


def _datasources() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((CONFIGS / "grafana/provisioning/datasources/datasources.yaml").read_text())
    return {ds["uid"]: ds for ds in config["datasources"]}


def _dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def _targets(kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(dashboard, panel title, target) of every target on a data source of ``kind``."""
    types = {uid: ds["type"] for uid, ds in _datasources().items()}
    found = []
    for name, board in _dashboards().items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                uid = (target.get("datasource") or panel["datasource"])["uid"]
                if types.get(uid) == kind:
                    found.append((name, panel["title"], target))
    return found


def test_datasources_are_prometheus_postgresql_and_loki_without_inline_secrets() -> None:
    sources = _datasources()
    kinds = {ds["type"] for ds in sources.values()}
    assert {"prometheus", "grafana-postgresql-datasource"} <= kinds
    postgres = next(ds for ds in sources.values() if ds["type"] == "grafana-postgresql-datasource")
    assert postgres["secureJsonData"]["password"].startswith("$"), "password from the environment"
    provider = yaml.safe_load((CONFIGS / "grafana/provisioning/dashboards/dashboards.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboards_parse_and_use_only_provisioned_datasources() -> None:
    boards = _dashboards()
    assert {"incidents.json", "pipeline.json"} <= set(boards)
    uids = set(_datasources())
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    for name, board in boards.items():
        assert board["title"] and board["panels"], name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in uids, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target.get("datasource", panel["datasource"])["uid"] in uids, (name, panel["title"])


def test_incidents_dashboard_has_the_panels_operators_asked_for() -> None:
    titles = {p["title"] for p in _dashboards()["incidents.json"]["panels"]}
    assert {"Incidents by category", "Incidents by severity", "MTTR", "Top services", "Latest root causes"} <= titles
    titles = {p["title"] for p in _dashboards()["pipeline.json"]["panels"]}
    assert {"Log lines / s", "Stage latency p50", "Stage latency p95", "Replicas per deployment",
            "Kafka consumer lag", "LLM tokens / s", "Dropped lines / s by reason"} <= titles


_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
_PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
    "rate", "irate", "increase", "histogram_quantile", "and", "or", "unless", "le", "bool", "offset",
    "label_replace", "topk", "bottomk", "abs", "clamp_min", "clamp_max", "vector", "scalar", "time",
}


def _promql(expr: str) -> str:
    for variable, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def _metric_names(expr: str) -> set[str]:
    """Identifiers that are metric names: not functions, keywords, label names or strings."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {n for n in names if n not in _PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]?", n)}


def _ray_builtin_metric_names() -> set[str]:
    """Names of Ray's and Serve's own metrics, read from the installed Ray (as scraped: ray_ prefix)."""
    import ray

    root = Path(ray.__file__).parent
    names: set[str] = set()
    for path in list((root / "serve").rglob("*.py")):
        names.update(re.findall(r'"(serve_[a-z_]+)"', path.read_text(errors="ignore")))
        for protocol in ("http", "grpc"):
            text = path.read_text(errors="ignore")
            names.update(n.replace("{protocol_name}", protocol) for n in re.findall(r'f"(serve_[a-z_{}]+)"', text))
    exported = set()
    for name in names:
        exported |= {f"ray_{name}", f"ray_{name}_total", f"ray_{name}_bucket", f"ray_{name}_sum", f"ray_{name}_count"}
    return exported


def _our_metric_names() -> set[str]:
    exported = set()
    for name, (kind, _tags, _help) in metrics.METRICS.items():
        full = metrics.EXPORTED_PREFIX + name
        exported.add(full)
        if kind == "histogram":
            exported |= {f"{full}_bucket", f"{full}_sum", f"{full}_count"}
    return exported


def test_dashboard_promql_uses_only_metrics_that_exist() -> None:
    known = _our_metric_names() | _ray_builtin_metric_names()
    targets = _targets("prometheus")
    assert targets
    for board, title, target in targets:
        unknown = _metric_names(_promql(target["expr"])) - known
        assert not unknown, f"{board} / {title}: unknown metrics {sorted(unknown)} in {target['expr']}"


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """promtool cannot parse one expression, but it parses every expression of a rule file."""
    promtool = _tool("promtool")
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": _promql(target["expr"])}
        for i, (_board, _title, target) in enumerate(_targets("prometheus"))
    ]
    (tmp_path / "exprs.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = _run(promtool, "check", "rules", "exprs.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _grafana_sql(raw: str) -> str:
    """Grafana's PostgreSQL macros, expanded the way Grafana does for a fixed range."""
    raw = re.sub(
        r"\$__timeGroupAlias\(([^,]+),\s*'[^']*'\)",
        r"""to_timestamp(floor(extract(epoch FROM \1) / 300) * 300) AS "time\"""",
        raw,
    )
    return re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        r"\1 BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-02T00:00:00Z'",
        raw,
    )


def test_dashboard_sql_reads_tables_and_columns_of_the_migrations() -> None:
    """Static check: every table a panel reads is created by a migration, every a.column exists."""
    migrations = "\n".join(p.read_text() for p in sorted(MIGRATIONS.glob("*.sql")))
    if not migrations:
        pytest.skip("pipelines/migrations has no .sql file yet")
    tables: dict[str, set[str]] = {}
    for table, body in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", migrations, re.S):
        tables[table] = {line.split()[0] for line in body.strip().splitlines() if line.strip()}
    targets = _targets("grafana-postgresql-datasource")
    assert targets
    for board, title, target in targets:
        sql = _grafana_sql(target["rawSql"])
        aliases = {}
        for table, alias in re.findall(r"(?<!epoch )\b(?:FROM|JOIN)\s+(\w+)(?:\s+(?!WHERE|ON|GROUP|ORDER|JOIN)(\w+))?", sql):
            assert table in tables, f"{board} / {title}: no table {table}"
            aliases[alias or table] = table
        for alias, column in re.findall(r"\b(\w+)\.(\w+)\b", sql):
            if alias in aliases:
                assert column in tables[aliases[alias]], f"{board} / {title}: no column {alias}.{column}"


def test_dashboard_sql_runs_on_postgresql(tmp_path: Path) -> None:
    """Every SQL panel, macros expanded, is planned by PostgreSQL on the schema of the migrations."""
    asyncpg = pytest.importorskip("asyncpg")
    from pipelines.database import DatabaseUnavailable, start_embedded, stop_embedded

    try:
        url = start_embedded(tmp_path / "postgres")
    except DatabaseUnavailable as error:
        pytest.skip(f"no PostgreSQL to plan the dashboard SQL on: {error}")
    migrations = [p.read_text() for p in sorted(MIGRATIONS.glob("*.sql"))]
    targets = _targets("grafana-postgresql-datasource")

    async def plan_all() -> list[str]:
        connection = await asyncpg.connect(url)
        failures = []
        try:
            for sql in migrations:
                await connection.execute(sql)
            for board, title, target in targets:
                try:
                    await connection.fetch("EXPLAIN " + _grafana_sql(target["rawSql"]))
                except asyncpg.PostgresError as error:
                    failures.append(f"{board} / {title}: {error}")
        finally:
            await connection.close()
        return failures

    try:
        assert asyncio.run(plan_all()) == []
    finally:
        stop_embedded()


# ---------------------------------------------------------------- log shippers, Loki, Serve


def _vrl_output_keys(source: str) -> set[str]:
    body = source[source.index(". = {") :]
    depth, keys = 0, set()
    for match in re.finditer(r'[{}]|"(\w+)":', body):
        if match.group(0) == "{":
            depth += 1
        elif match.group(0) == "}":
            depth -= 1
            if depth == 0:
                break
        elif depth == 1:
            keys.add(match.group(1))
    return keys


def test_vector_ships_log_events_to_the_logs_topic() -> None:
    config = tomllib.loads((CONFIGS / "vector.toml").read_text())
    sink = config["sinks"]["kafka_logs"]
    assert sink["type"] == "kafka" and sink["topic"] == "rca.logs" and sink["encoding"]["codec"] == "json"
    assert sink["key_field"] == "service"
    (transform_name,) = sink["inputs"]
    transform = config["transforms"][transform_name]
    assert transform["type"] == "remap"
    assert set(transform["inputs"]) <= set(config["sources"])
    assert _vrl_output_keys(transform["source"]) == set(LogEvent.model_fields)


def _fluent_bit_sections() -> list[tuple[str, dict[str, str]]]:
    sections: list[tuple[str, dict[str, str]]] = []
    for line in (CONFIGS / "fluent-bit.conf").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            sections.append((stripped.strip("[]"), {}))
        else:
            key, _, value = stripped.partition(" ")
            sections[-1][1][key.lower()] = value.strip()
    return sections


def test_fluent_bit_ships_log_events_to_the_logs_topic() -> None:
    sections = _fluent_bit_sections()
    outputs = [s for kind, s in sections if kind == "OUTPUT"]
    assert [o["name"] for o in outputs] == ["kafka"]
    output = outputs[0]
    assert output["topics"] == "rca.logs" and output["format"] == "json"
    assert output["timestamp_key"] == "timestamp" and output["timestamp_format"].startswith("iso8601")
    assert output["message_key_field"] == "service"
    (tail,) = [s for kind, s in sections if kind == "INPUT"]
    assert tail["key"] == "message"
    # The record the filters build: message (tail), service and labels (lua), timestamp (output).
    lua = next(s for kind, s in sections if kind == "FILTER" and s["name"] == "lua")["code"]
    keys = {"message", "timestamp"} | set(re.findall(r'record\["(\w+)"\] = (?!nil)', lua))
    assert keys <= set(LogEvent.model_fields)
    record = {"message": "GET /x 500", "timestamp": "2026-01-01T00:00:00.123456789Z", "service": "api",
              "labels": {"shipper": "fluent-bit", "file": "/var/log/apps/api/x.log"}}
    assert LogEvent.model_validate(record).service == "api"


def test_loki_config_is_single_node_filesystem_on_port_3100() -> None:
    config = _yaml("loki.yaml")
    assert config["server"]["http_listen_port"] == 3100
    assert config["auth_enabled"] is False
    assert config["common"]["ring"]["kvstore"]["store"] == "inmemory"
    assert config["schema_config"]["configs"][0]["object_store"] == "filesystem"


def _declared_deployments() -> set[str]:
    names = set()
    for path in (ROOT / "deployments").glob("*.py"):
        for block in re.findall(r"@serve\.deployment\((.*?)\)\s*\nclass", path.read_text(), re.S):
            names.update(re.findall(r'name="(\w+)"', block))
    return names


def _unknown_serve_fields(config: dict[str, Any]) -> list[str]:
    """Keys Ray's schema does not define (it ignores extra keys, so a misspelt option would pass)."""
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema

    unknown = [f"{k}" for k in config if k not in ServeDeploySchema.model_fields]
    for app in config.get("applications", []):
        unknown += [f"applications.{k}" for k in app if k not in ServeApplicationSchema.model_fields]
        for deployment in app.get("deployments", []):
            where = f"deployments.{deployment.get('name')}"
            unknown += [f"{where}.{k}" for k in deployment if k not in DeploymentSchema.model_fields]
            autoscaling = deployment.get("autoscaling_config") or {}
            AutoscalingConfig.model_validate(autoscaling)  # a plain dict in the schema: check its types here
            unknown += [f"{where}.autoscaling_config.{k}" for k in autoscaling if k not in AutoscalingConfig.model_fields]
    return unknown


def test_serve_config_is_valid_for_ray_serve_and_names_the_code_deployments() -> None:
    from ray.serve.schema import ServeDeploySchema

    config = _yaml("serve.yaml")
    schema = ServeDeploySchema.model_validate(config)
    assert _unknown_serve_fields(config) == []
    (app,) = schema.applications
    assert app.import_path == "pipelines.app:app_builder"
    configured = {d.name for d in app.deployments}
    assert configured == {"Ingress", "Summarizer", "AnomalyScorer", "Reasoner"}
    declared = _declared_deployments()
    if not declared:
        pytest.skip("deployments/*.py declares no deployment yet")
    assert configured == declared
    module_name, _, attribute = app.import_path.partition(":")
    module = ROOT / (module_name.replace(".", "/") + ".py")
    assert re.search(rf"^def {attribute}\(", module.read_text(), re.M), f"{app.import_path} is not defined"


def test_serve_config_checks_catch_a_misspelt_option_and_a_wrong_type() -> None:
    from ray.serve.schema import ServeDeploySchema

    config = _yaml("serve.yaml")
    config["applications"][0]["deployments"][0]["max_ongoing_request"] = 3
    assert _unknown_serve_fields(config) == ["deployments.Ingress.max_ongoing_request"]
    config = _yaml("serve.yaml")
    config["applications"][0]["deployments"][1]["autoscaling_config"]["max_replicas"] = "many"
    ServeDeploySchema.model_validate(config)  # Ray's schema takes autoscaling_config as any dict
    with pytest.raises(Exception, match="max_replicas"):
        _unknown_serve_fields(config)


def test_the_otel_collector_publishes_spans_as_otlp_json_to_the_spans_topic() -> None:
    """The collector's exporter writes what pipelines.streaming.otlp decodes, to the topic the reader assigns."""
    from pipelines.settings import Settings

    config = yaml.safe_load((CONFIGS / "otel-collector.yaml").read_text())
    exporter = config["exporters"]["kafka"]
    assert exporter["traces"] == {"topic": Settings().kafka_spans_topic, "encoding": "otlp_json"}
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["exporters"] == ["kafka"] and set(pipeline["receivers"]) <= set(config["receivers"])
    assert pipeline["processors"][-1] == "batch" and set(pipeline["processors"]) <= set(config["processors"])
