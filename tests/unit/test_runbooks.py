"""User runbooks: validated with file:line: field, matched to the top hypothesis, placed before the playbooks."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anomaly import AnomalyReport, Digest, LogRecord
from pipelines.cli import app
from pipelines.reasoning.base import Evidence
from pipelines.reasoning.evidence import EvidenceReasoner
from pipelines.reasoning.playbooks import PLAYBOOKS, remediation_for
from pipelines.runbooks import (
    DEFAULT_DIR,
    IncidentFacts,
    RunbookError,
    Runbooks,
    check_runbooks,
    load_runbooks,
    parse_runbook,
    past_matches,
)
from pipelines.schemas import Alert, Analysis, Category, Classification, Hypothesis, Incident, RemediationStep, RiskLevel

GOOD = """\
name: orders database
match:
  category: database
  service: "*-db"
  text: "(?i)too many clients"
steps:
  - action: Count connections on {service}
    command: kubectl exec -n {namespace} {pod} -- psql -c "SELECT count(*) FROM pg_stat_activity"
    expected_outcome: Connections at max_connections
    risk_level: low
  - action: End idle sessions on {service}
    expected_outcome: Connections freed
    risk_level: medium
"""

DB_FACTS = IncidentFacts(Category.database, "db_connection_exhaustion", "orders-db", "shop", "orders-db-0",
                         ("[logs] FATAL: sorry, too many clients already x80",))


def _runbooks(text: str = GOOD, file: str = "orders-db.yaml") -> Runbooks:
    runbook, problems = parse_runbook(text, file)
    assert not problems and runbook is not None
    return Runbooks(items=[runbook])


# ---------------------------------------------------------------- validation


def test_the_shipped_runbooks_validate() -> None:
    runbooks, problems = check_runbooks(DEFAULT_DIR)
    assert not problems, problems
    assert {r.file for r in runbooks} >= {"db-connections.yaml", "dns.yaml"}
    assert all(r.steps for r in runbooks)


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ('text: "(?i)too many clients"', 'text: "(?i)too many (clients"', "orders-db.yaml:5: match.text: '(?i)too many (clients' is not a regular expression: missing ), unterminated subpattern"),
        ("    risk_level: medium", "    risk_level: critical", "orders-db.yaml:13: steps.1.risk_level: Input should be 'low', 'medium' or 'high' (got 'critical')"),
        ("    expected_outcome: Connections freed\n", "", "orders-db.yaml:11: steps.1.expected_outcome: Field required"),
        ("  category: database", "  category: databse", "orders-db.yaml:3: match.category.0: Input should be 'infrastructure', "),
        ("  service: \"*-db\"", "  fault_type: db_exhaustion", "orders-db.yaml:4: match.fault_type: unknown fault type 'db_exhaustion'; one of"),
        ("Count connections on {service}", "Count connections on {host}", "orders-db.yaml:7: steps.0.action: unknown placeholder {host}; use {service}, {namespace} or {pod}"),
        ("    risk_level: low", "    risk_level: low\n    rollback: none", "orders-db.yaml:11: steps.0.rollback: Extra inputs are not permitted"),
        ("name: orders database", "name: orders database\nname: again", "orders-db.yaml:2: name: given twice"),
        ("  - action: End", "  -action: End", "orders-db.yaml:11: not valid YAML: expected <block end>"),
    ],
)
def test_a_bad_runbook_is_named_by_file_line_and_field(old: str, new: str, says: str) -> None:
    text = GOOD.replace(old, new)
    assert text != GOOD
    runbook, problems = parse_runbook(text, "orders-db.yaml")
    assert runbook is None
    assert any(str(p).startswith(says) for p in problems), [str(p) for p in problems]


def test_a_match_must_say_something() -> None:
    text = GOOD.replace('  category: database\n  service: "*-db"\n  text: "(?i)too many clients"\n', "  {}\n")
    _, problems = parse_runbook(text.replace("match:\n  {}", "match: {}"), "all.yaml")
    assert [str(p) for p in problems] == [
        "all.yaml:2: match: give at least one of category, fault_type, service, text (an empty match would take every incident)"
    ]


def test_loading_fails_with_every_problem_and_a_missing_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "a-good.yaml").write_text(GOOD)
    (tmp_path / "b-bad.yaml").write_text(GOOD.replace("risk_level: low", "risk_level: severe"))
    (tmp_path / "c-list.yml").write_text("- just\n- a list\n")
    (tmp_path / "notes.txt").write_text("not a runbook")
    with pytest.raises(RunbookError) as caught:
        load_runbooks(tmp_path)
    message = str(caught.value)
    assert "b-bad.yaml:10: steps.0.risk_level" in message and "c-list.yml:1: a runbook file holds one mapping" in message
    assert "a-good.yaml" not in message and "notes.txt" not in message
    with pytest.raises(RunbookError, match="RCA_RUNBOOKS_DIR: no such directory"):
        load_runbooks(tmp_path / "missing")
    assert load_runbooks(None).items or not DEFAULT_DIR.is_dir()


# ---------------------------------------------------------------- matching and remediation


def test_every_condition_must_hold_and_a_list_is_any_of() -> None:
    match = _runbooks().items[0].match
    assert match.matches(DB_FACTS)
    assert not match.matches(IncidentFacts(Category.database, "database_error", "orders", "shop", None, DB_FACTS.texts))  # glob
    assert not match.matches(IncidentFacts(Category.network, "dns_failure", "orders-db", "shop", None, DB_FACTS.texts))
    assert not match.matches(IncidentFacts(Category.database, "database_error", "orders-db", "shop", None, ("lock wait timeout",)))
    assert not match.matches(IncidentFacts(Category.database, "database_error", None, "shop", None, DB_FACTS.texts))
    either = _runbooks(GOOD.replace("  category: database", "  category: [network, database]")).items[0].match
    assert either.matches(DB_FACTS)


def test_runbook_steps_come_first_filled_in_and_say_where_they_came_from() -> None:
    steps = remediation_for("db_connection_exhaustion", "orders-db", "shop", caller="orders", runbooks=_runbooks(),
                            category=Category.database, evidence=DB_FACTS.texts, pod="orders-db-0")
    assert [s.step for s in steps] == list(range(1, len(steps) + 1))
    assert [s.source for s in steps] == ["runbook:orders-db.yaml"] * 2 + ["playbook:db_connection_exhaustion"] * len(PLAYBOOKS["db_connection_exhaustion"])
    assert steps[0].action == "Count connections on orders-db"
    assert steps[0].command == 'kubectl exec -n shop orders-db-0 -- psql -c "SELECT count(*) FROM pg_stat_activity"'
    assert steps[1].command is None and steps[1].risk_level == RiskLevel.medium
    unknown_pod = remediation_for("db_connection_exhaustion", "orders-db", None, runbooks=_runbooks(),
                                  category=Category.database, evidence=DB_FACTS.texts)
    assert unknown_pod[0].command.startswith("kubectl exec -n default <pod> --")


def test_replace_playbook_leaves_the_builtin_steps_out_and_no_match_leaves_them_alone() -> None:
    replacing = _runbooks(GOOD.replace("steps:", "replace_playbook: true\nsteps:"))
    steps = remediation_for("database_error", "orders-db", "shop", runbooks=replacing, category=Category.database, evidence=DB_FACTS.texts)
    assert {s.source for s in steps} == {"runbook:orders-db.yaml"}
    builtin = remediation_for("dns_failure", "coredns", "shop", runbooks=replacing, category=Category.network)
    assert builtin == remediation_for("dns_failure", "coredns", "shop")
    assert {s.source for s in builtin} == {"playbook:dns_failure"}
    assert {s.source for s in remediation_for("no_such_kind", None, None)} == {"playbook:unknown"}


def test_the_evidence_reasoner_puts_the_shipped_database_runbook_first() -> None:
    t0 = 1_700_000_000.0
    alert = Alert(name="HighErrorRate", timestamp=datetime.fromtimestamp(t0, tz=timezone.utc),
                  labels={"service": "checkout", "namespace": "shop", "pod": "checkout-7d9f-abcde"})

    def digest(rows: list[tuple[str, str, str, float]]) -> Digest:
        return Digest.from_records([LogRecord(message=m, timestamp=t, level=lv, service=s) for s, lv, m, t in rows])

    normal = [("checkout", "INFO", f"POST /api/checkout 200 in {10 + i % 5} ms", t0 - 900 + i * 3) for i in range(100)]
    rows = [("orders", "ERROR", f"Connection to orders-db:5432 refused. (request {i}) java.net.ConnectException: Connection refused",
             t0 - 100 + i * 4) for i in range(40)]
    evidence = Evidence(alert=alert, summary="", digest=digest([(s, lv, m, t + 660) for s, lv, m, t in normal] + rows),
                        report=AnomalyReport(), baseline_digest=digest(normal))
    verdict = EvidenceReasoner(load_runbooks(DEFAULT_DIR)).decide(evidence)
    top = verdict.hypotheses[0]
    assert top.service == "orders-db" and top.fault_type in ("database_error", "db_connection_exhaustion")
    sources = [s.source for s in verdict.remediation]
    assert sources[0] == "runbook:db-connections.yaml" and f"playbook:{top.fault_type}" in sources
    assert "statefulset/orders-db" in verdict.remediation[0].command and "-n shop" in verdict.remediation[0].command
    assert "<pod>" not in verdict.remediation[0].command  # the alert's pod is checkout's, not the database's
    assert EvidenceReasoner().decide(evidence).remediation[0].source == f"playbook:{top.fault_type}"


def test_remediation_steps_without_a_source_still_read() -> None:
    step = RemediationStep.model_validate({"step": 1, "action": "a", "expected_outcome": "b", "risk_level": "low"})
    assert step.source is None


# ---------------------------------------------------------------- past incidents and the CLI


def _incident(service: str, category: Category, fault_type: str, evidence: str) -> Incident:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    alert = Alert(name="HighErrorRate", timestamp=now, labels={"service": "orders", "namespace": "shop"})
    hypotheses = [Hypothesis(cause="c", confidence=0.8, evidence=[evidence], category=category, service=service, fault_type=fault_type),
                  Hypothesis(cause="d", confidence=0.1, category=category, service="orders")]
    analysis = Analysis(incident_id="x", summary="s", classification=Classification(category=category, confidence=0.8),
                        hypotheses=hypotheses, reasoner="evidence",
                        remediation=[RemediationStep(step=1, action="a", expected_outcome="b", risk_level=RiskLevel.low)])
    return Incident(id=f"{service}-{fault_type}", alert_name="HighErrorRate", service="orders", severity="critical", status="open",
                    category=category, fingerprint="f", started_at=now, created_at=now, alert=alert, analysis=analysis)


def test_past_incidents_a_runbook_would_have_matched() -> None:
    runbooks = _runbooks().items
    hit = _incident("orders-db", Category.database, "db_connection_exhaustion", "FATAL: sorry, too many clients already")
    miss = _incident("payments-db", Category.database, "database_error", "deadlock detected")
    unanalyzed = hit.model_copy(update={"analysis": None, "id": "pending"})
    assert {k: [i.id for i in v] for k, v in past_matches(runbooks, [hit, miss, unanalyzed]).items()} == {"orders-db.yaml": [hit.id]}
    assert IncidentFacts.of_incident(hit).pod is None  # an alert on orders names orders' pod, not the database's


def test_check_validates_without_a_database_and_exits_2_on_a_bad_runbook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RCA_DATABASE_URL", "postgresql://rca@127.0.0.1:1/rca")
    (tmp_path / "good.yaml").write_text(GOOD)
    result = CliRunner().invoke(app, ["runbooks", "check", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["problems"] == [] and report["runbooks"][0]["file"] == "good.yaml"
    assert report["database"].startswith("no database reachable") and report["runbooks"][0]["matched_incidents"] is None
    (tmp_path / "bad.yaml").write_text(GOOD.replace("(?i)too many clients", "(unclosed"))
    result = CliRunner().invoke(app, ["runbooks", "check", str(tmp_path)])
    assert result.exit_code == 2
    assert "bad.yaml:5: match.text: '(unclosed' is not a regular expression" in result.output


def test_a_bad_runbook_stops_the_application_from_being_built(tmp_path: Path) -> None:
    from pipelines.app import build_app
    from pipelines.settings import Settings

    (tmp_path / "dns.yaml").write_text(GOOD.replace("risk_level: low", "risk_level: urgent"))
    with pytest.raises(RunbookError, match=r"dns.yaml:10: steps.0.risk_level: .*\(got 'urgent'\)"):
        build_app(Settings(runbooks_dir=tmp_path))
