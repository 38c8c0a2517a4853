"""Loghub-2k grouping accuracy with one engine configuration for every system."""

from __future__ import annotations

import pytest

from pipelines.evaluation.loghub import evaluate_loghub, grouping_accuracy

pytestmark = pytest.mark.eval


@pytest.fixture
def loghub(datasets_dir):
    if not (datasets_dir / "loghub-2k").is_dir():
        pytest.skip(f"Loghub-2k not found under {datasets_dir}")
    return datasets_dir / "loghub-2k"


def test_grouping_accuracy_counts_whole_groups_only():
    assert grouping_accuracy(["a", "a", "b", "c"], ["x", "x", "y", "y"]) == 0.5
    with pytest.raises(ValueError):
        grouping_accuracy(["a"], [])


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no <S>/<S>_2k"):
        evaluate_loghub(tmp_path)


def test_loghub_mean_grouping_accuracy_meets_target(loghub):
    result = evaluate_loghub(loghub)
    assert len(result["systems"]) == 12
    assert result["mean_ga"] >= 0.95  # target; measured 0.985 (Drain, tuned per system: 0.891)
    assert min(result["systems"].values()) >= 0.85  # measured minimum: Android 0.920


def test_leave_one_system_out_chooses_constants_on_the_other_systems(loghub):
    from pipelines.evaluation.loghub import CONSTANTS, evaluate_loghub_loo

    result = evaluate_loghub_loo(loghub)
    assert len(result["folds"]) == 12
    for fold in result["folds"].values():
        assert set(fold["chosen"]) == set(CONSTANTS)
        assert all(fold["chosen"][n] in CONSTANTS[n][1] for n in CONSTANTS)
        assert 0.0 <= fold["ga"] <= 1.0
    held = [f["ga"] for f in result["folds"].values()]
    assert result["mean_ga"] == round(sum(held) / len(held), 4)
    assert result["min_ga"] == min(held)
    assert result["mean_ga"] >= 0.90  # issue 13's target for systems the constants were not chosen on
    # the engine ships the value the twelve systems choose together
    assert result["engine"] == result["chosen_on_all"]


def test_leave_one_out_needs_two_systems(tmp_path):
    from pipelines.evaluation.loghub import evaluate_loghub_loo

    system = tmp_path / "Only"
    system.mkdir()
    (system / "Only_2k.log_structured.csv").write_text("LineId,Content,EventId\n1,hello 1,E1\n")
    with pytest.raises(ValueError, match="at least two systems"):
        evaluate_loghub_loo(tmp_path)
