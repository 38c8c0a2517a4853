"""HDFS session anomaly detection, scored as in the literature.

Fits the engine's ``SessionDetector`` on ``session_train.jsonl`` without reading a
label, predicts ``session_test.jsonl``, and reports precision, recall and F1, plus
the weighted figures that count each normal test session ``normal_weight`` times
(``meta.json``), which is what published results on the full split compare with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from anomaly.sessions import SessionDetector

Progress = Callable[[str], None]


def read_sessions(path: Path) -> tuple[list[list[str]], list[int]]:
    """Events and labels of a sessions file (labels are only read for scoring)."""
    if not path.is_file():
        raise FileNotFoundError(f"HDFS sessions file not found: {path}")
    events, labels = [], []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                ev = [str(e) for e in row["events"]]
                label = int(row["label"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: not a session line ({exc!r})") from exc
            if label not in (0, 1):
                raise ValueError(f"{path}:{n}: label must be 0 or 1, got {label}")
            events.append(ev)
            labels.append(label)
    if not events:
        raise ValueError(f"{path}: no sessions")
    return events, labels


def read_normal_weight(root: Path) -> float:
    path = root / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"HDFS meta file not found: {path}")
    try:
        weight = float(json.loads(path.read_text(encoding="utf-8"))["normal_weight"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: no numeric normal_weight ({exc!r})") from exc
    if weight <= 0:
        raise ValueError(f"{path}: normal_weight must be positive, got {weight}")
    return weight


def detection_figures(predicted: list[bool], labels: list[int], normal_weight: float = 1.0) -> dict:
    """Precision, recall, F1 and their normal-weighted counterparts."""
    tp = sum(1 for p, y in zip(predicted, labels) if p and y == 1)
    fp = sum(1 for p, y in zip(predicted, labels) if p and y == 0)
    fn = sum(1 for p, y in zip(predicted, labels) if not p and y == 1)

    def f1(p: float, r: float) -> float:
        return 2 * p * r / (p + r) if p + r else 0.0

    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    pw = tp / (tp + normal_weight * fp) if tp + fp else 0.0
    return {
        "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1(precision, recall), 4),
        "precision_weighted": round(pw, 4), "f1_weighted": round(f1(pw, recall), 4),
        "tp": tp, "fp": fp, "fn": fn, "normal_weight": normal_weight,
    }


def evaluate_hdfs(root: Path, progress: Progress | None = None) -> dict:
    """Fit on the train sessions (labels unread), score the test sessions."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"HDFS folder not found: {root}")
    weight = read_normal_weight(root)
    train, _ = read_sessions(root / "session_train.jsonl")
    test, labels = read_sessions(root / "session_test.jsonl")
    detector = SessionDetector().fit(train)
    if progress:
        progress(f"fitted on {len(train)} sessions; novelty threshold {detector.threshold:.3f}")
    predicted = detector.predict(test).tolist()
    out = detection_figures(predicted, labels, weight)
    out.update(train_sessions=len(train), test_sessions=len(test), method="event-count nearest-neighbour novelty")
    if progress:
        progress(f"f1 {out['f1']}, f1_weighted {out['f1_weighted']}")
    return out
