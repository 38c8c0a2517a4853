"""HDFS session anomaly detection (DeepLog split), fitted without labels."""

from __future__ import annotations

import json

import pytest

from pipelines.evaluation.hdfs import detection_figures, evaluate_hdfs

pytestmark = pytest.mark.eval


def test_weighted_figures_count_normal_sessions_more():
    out = detection_figures([True, True, False, True], [1, 1, 1, 0], normal_weight=10.0)
    assert out["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert out["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert out["precision_weighted"] == pytest.approx(2 / 12, abs=1e-4)


def test_corrupt_file_is_named(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"normal_weight": 2.0}))
    (tmp_path / "session_train.jsonl").write_text('{"events": ["E1"], "label": 0}\nnot json\n')
    (tmp_path / "session_test.jsonl").write_text('{"events": ["E1"], "label": 0}\n')
    with pytest.raises(ValueError, match="session_train.jsonl:2"):
        evaluate_hdfs(tmp_path)
    (tmp_path / "meta.json").unlink()
    with pytest.raises(FileNotFoundError, match="meta.json"):
        evaluate_hdfs(tmp_path)


def test_hdfs_weighted_f1_meets_target(datasets_dir):
    result = evaluate_hdfs(datasets_dir / "hdfs")
    assert result["f1_weighted"] >= 0.95  # target; measured 0.986
    assert result["recall"] >= 0.99
