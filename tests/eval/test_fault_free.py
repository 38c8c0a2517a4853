"""Fault-free replays through the Serve pipeline: ``rca eval fault-free DIR --json``.

Windows with no fault (Nezha's fault-free construct_data minutes, the simulator with its fault
switched off) and the share of them where the analysis names a root cause with confidence
>= 0.5. The target is <= 5 %, and it holds (1 of 46 on 2026-12-06): the test asserts it, and
that the share is measured with counts and an interval.
"""

from __future__ import annotations

import pytest

from tests.support.cli_json import run_cli_json

pytestmark = pytest.mark.eval


@pytest.fixture(scope="module")
def fault_free_result(datasets_dir):
    root = datasets_dir / "nezha-trainticket"
    if not (root / "construct_data").is_dir():
        pytest.skip(f"{root}: Nezha Train-Ticket data absent (see ../shared/datasets/README.md)")
    return run_cli_json("eval", "fault-free", str(root), "--json")


def test_share_is_reported_with_counts_and_interval(fault_free_result):
    result = fault_free_result
    share = result["confident_share"]
    assert result["windows"] == share["total"] == len(result["rows"]) > 0
    assert share["count"] == sum(r["confident"] for r in result["rows"])
    low, high = share["ci95"]
    assert 0 <= low <= share["value"] <= high <= 1
    assert result["confidence_threshold"] == 0.5 and result["target_share"] == 0.05
    assert result["meets_target"] == (share["value"] <= 0.05)
    assert result["meets_target"], f"{share['count']} of {share['total']} fault-free windows named a confident root cause"
    assert set(result["by_source"]) == {"nezha", "simulator"}
    assert sum(s["windows"] for s in result["by_source"].values()) == result["windows"]
    assert result["by_source"]["simulator"]["windows"] == 30  # 6 scenarios x 5 seeds


def test_every_window_has_an_analysis(fault_free_result):
    for row in fault_free_result["rows"]:
        assert row["source"] in ("nezha", "simulator")
        assert row["confident"] == (row["top_confidence"] is not None and row["top_confidence"] >= 0.5)
