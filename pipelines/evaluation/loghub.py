"""Loghub-2k grouping accuracy of the engine's template mining.

Pure function over a folder: for every ``<S>/<S>_2k.log_structured.csv`` it masks and
mines the ``Content`` column with the one engine configuration (no per-system
settings) and scores grouping accuracy against ``EventId``.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from anomaly.templates import TemplateMiner

Progress = Callable[[str], None]


def grouping_accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Share of lines whose predicted group holds exactly the lines of their true group."""
    if len(predicted) != len(truth):
        raise ValueError(f"predicted ({len(predicted)}) and truth ({len(truth)}) lengths differ")
    if not truth:
        return 0.0
    pred_groups: dict[str, set[int]] = defaultdict(set)
    true_groups: dict[str, set[int]] = defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth)):
        pred_groups[p].add(i)
        true_groups[t].add(i)
    correct = 0
    for members in true_groups.values():
        first = next(iter(members))
        if pred_groups[predicted[first]] == members:
            correct += len(members)
    return correct / len(truth)


def read_structured(path: Path) -> tuple[list[str], list[str]]:
    """The ``Content`` and ``EventId`` columns of one structured CSV."""
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.DictReader(fh)
            missing = {"Content", "EventId"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
            rows = [(r["Content"] or "", r["EventId"] or "") for r in reader]
    except csv.Error as exc:
        raise ValueError(f"{path}: not a readable CSV ({exc})") from exc
    if not rows:
        raise ValueError(f"{path}: no rows")
    return [c for c, _ in rows], [e for _, e in rows]


def parse_contents(contents: Sequence[str]) -> list[str]:
    """Template id per message, from one pass of the engine's masking and mining."""
    miner = TemplateMiner()
    miner.add(contents)
    return miner.template_ids(contents)


def evaluate_loghub(root: Path, progress: Progress | None = None) -> dict:
    """Grouping accuracy per system and the mean, over every ``*_2k.log_structured.csv``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Loghub folder not found: {root}")
    files = sorted(root.glob("*/*_2k.log_structured.csv"))
    if not files:
        raise FileNotFoundError(f"no <S>/<S>_2k.log_structured.csv under {root}")
    systems: dict[str, float] = {}
    for path in files:
        system = path.parent.name
        contents, truth = read_structured(path)
        systems[system] = round(grouping_accuracy(parse_contents(contents), truth), 4)
        if progress:
            progress(f"{system}: GA {systems[system]:.3f}")
    return {"systems": systems, "mean_ga": round(sum(systems.values()) / len(systems), 4)}
