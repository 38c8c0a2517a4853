"""Root-cause localization on the Nezha Train-Ticket fault cases, replayed as production runs.

Runs the issue's "done when" command, ``rca eval nezha --alert-delay 120 DIR --json``, through
the same Serve application production uses: every alert fires 120 s after its injection and the
analyzer reads only the alert's ContextWindow. Asserts the report's structure and case counts,
and the targets that hold; the figures of the delay sweep (0, 60, 120, 180 s) are in the README.
Skips when the shared dataset is absent. Timings are reported but never asserted.
"""

from __future__ import annotations

import pytest

from tests.support.cli_json import run_cli_json

pytestmark = pytest.mark.eval

CASES_BY_TYPE = {"exception": 9, "return": 7, "network_delay": 9, "cpu_contention": 5}


@pytest.fixture(scope="module")
def nezha_result(datasets_dir):
    root = datasets_dir / "nezha-trainticket"
    if not (root / "rca_data").is_dir():
        pytest.skip(f"{root}: Nezha Train-Ticket data absent (see ../shared/datasets/README.md)")
    return run_cli_json("eval", "nezha", "--alert-delay", "120", str(root), "--json")


def _is_share(figure: dict, total: int) -> None:
    assert figure["total"] == total and 0 <= figure["count"] <= total
    assert figure["value"] == pytest.approx(figure["count"] / total, abs=1e-4)
    low, high = figure["ci95"]
    assert 0 <= low <= figure["value"] <= high <= 1


def test_report_fields_and_counts(nezha_result):
    assert nezha_result["cases"] == 30
    assert (nezha_result["alert_at"], nezha_result["alert_delay_seconds"]) == ("delay", 120)
    for key in ("as_at_1", "as_at_3", "category_accuracy", "fault_type_accuracy"):
        _is_share(nezha_result[key], 30)
    assert nezha_result["as_at_1"]["count"] <= nezha_result["as_at_3"]["count"]
    assert nezha_result["as_at_5"] is None and nezha_result["as_at_5_note"]
    assert {kind: figures["cases"] for kind, figures in nezha_result["by_fault_type"].items()} == CASES_BY_TYPE
    for kind, figures in nezha_result["by_fault_type"].items():
        _is_share(figures["as_at_1"], CASES_BY_TYPE[kind])
        _is_share(figures["as_at_3"], CASES_BY_TYPE[kind])
    assert "p50_seconds" in nezha_result and "p95_seconds" in nezha_result


def test_every_alert_fired_late_and_says_why(nezha_result):
    rows = nezha_result["rows"]
    assert len(rows) == 30
    for row in rows:
        alert = row["alert"]
        assert alert["after_injection_seconds"] == 120 and alert["reason"] == "injection + 120s"
        assert alert["alert"] in ("HighErrorRate", "SlowResponseTime")
        assert row["rank"] is None or 1 <= row["rank"] <= 3
    counts = nezha_result["alerts"]
    assert counts["at_delay"] == 30 and counts["fired_by_rules"] == 0


def test_category_accuracy_target(nezha_result):
    """The product target (>= 0.90) holds at a 120 s delay: 30/30 on 2026-12-06."""
    assert nezha_result["category_accuracy"]["value"] >= 0.90


def test_root_cause_targets_at_a_120_s_delay(nezha_result):
    """The issue's targets, which hold on this development set since 2026-12-06 (27/30 and 30/30):
    the culprit first in at least 90 % of the cases, among the three hypotheses in at least 97 %."""
    assert nezha_result["as_at_1"]["value"] >= 0.90
    assert nezha_result["as_at_3"]["value"] >= 0.97


def test_corrupt_case_file_is_named(tmp_path):
    from pipelines.evaluation.nezha import NezhaDatasetError, load_cases

    day = tmp_path / "rca_data" / "2024-01-01"
    day.mkdir(parents=True)
    (day / "2024-01-01-fault_list.json").write_text("{not json")
    with pytest.raises(NezhaDatasetError, match="2024-01-01-fault_list.json"):
        load_cases(tmp_path)
