"""Session novelty detection: fitted on normal sessions only, no labels."""

from __future__ import annotations

import random

import pytest

from anomaly.sessions import SessionDetector


def _normal(rng: random.Random) -> list[str]:
    k = rng.choice([2, 3])
    return ["open"] + ["write", "ack"] * k + ["close"]


def test_unseen_events_and_odd_counts_are_anomalous_normal_ones_are_not():
    rng = random.Random(0)
    train = [_normal(rng) for _ in range(200)]
    det = SessionDetector().fit(train)
    test = [
        ["open", "write", "ack", "write", "ack", "close"],  # normal
        ["open", "write", "ack", "write", "ack", "crash"],  # unseen event
        ["open"] + ["write", "ack"] * 30 + ["close"],  # far too long
        ["open", "close"],  # the writes are missing
    ]
    assert det.predict(test).tolist() == [False, True, True, True]


def test_predict_before_fit_and_empty_fit_are_clear_errors():
    with pytest.raises(RuntimeError, match="fit"):
        SessionDetector().predict([["a"]])
    with pytest.raises(ValueError, match="no sessions"):
        SessionDetector().fit([])
