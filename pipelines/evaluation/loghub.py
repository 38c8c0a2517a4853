"""Loghub-2k grouping accuracy of the engine's template mining.

Pure function over a folder: for every ``<S>/<S>_2k.log_structured.csv`` it masks and
mines the ``Content`` column with the one engine configuration (no per-system
settings) and scores grouping accuracy against ``EventId``.

``evaluate_loghub_loo`` measures how that holds on a system the constants were not
chosen on: for each system in turn it picks every measured constant (``CONSTANTS``)
on the other systems (best mean GA; ties: the middle of the tied values) and scores
the held-out system with it.
"""

from __future__ import annotations

import csv
import itertools
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from anomaly import mining
from anomaly.masking import mask_many
from anomaly.templates import TemplateMiner, assign_templates

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


#: the engine's measured constants: name -> (keyword of ``mining.mine``, values tried);
#: masking has none (its rules are fixed shapes, kept or dropped by the ablation)
CONSTANTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "MAX_CONSTANT_VALUES": ("max_constant_values", (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16)),
}


def _structured_files(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Loghub folder not found: {root}")
    files = sorted(root.glob("*/*_2k.log_structured.csv"))
    if not files:
        raise FileNotFoundError(f"no <S>/<S>_2k.log_structured.csv under {root}")
    return files


def _choose(scores: dict[tuple[int, ...], list[float]]) -> tuple[int, ...]:
    """The setting of best mean GA; ties go to the middle one (in the order tried)."""
    means = {setting: sum(v) / len(v) for setting, v in scores.items()}
    best = max(means.values())
    tied = [setting for setting, m in means.items() if m >= best - 1e-12]
    return tied[(len(tied) - 1) // 2]


def evaluate_loghub_loo(root: Path, progress: Progress | None = None) -> dict:
    """Leave one system out: constants chosen on the other systems, GA on the held-out one."""
    names = list(CONSTANTS)
    grid = list(itertools.product(*(values for _, values in CONSTANTS.values())))
    ga: dict[str, dict[tuple[int, ...], float]] = {}
    for path in _structured_files(root):
        contents, truth = read_structured(path)
        masked = mask_many(contents)  # masking has no constant: once per system
        ga[path.parent.name] = {}
        for setting in grid:
            kwargs = {CONSTANTS[n][0]: v for n, v in zip(names, setting)}
            assigned = assign_templates(masked, **kwargs)
            ga[path.parent.name][setting] = grouping_accuracy([assigned[m][0] for m in masked], truth)
    if len(ga) < 2:
        raise ValueError(f"leave-one-out needs at least two systems, found {len(ga)} under {root}")
    folds: dict[str, dict] = {}
    for held_out in ga:
        others = {setting: [ga[s][setting] for s in ga if s != held_out] for setting in grid}
        chosen = _choose(others)
        folds[held_out] = {"chosen": dict(zip(names, chosen)), "ga": round(ga[held_out][chosen], 4)}
        if progress:
            progress(f"{held_out}: GA {folds[held_out]['ga']:.3f} with {folds[held_out]['chosen']}")
    held = [f["ga"] for f in folds.values()]
    everything = _choose({setting: [ga[s][setting] for s in ga] for setting in grid})
    return {
        "folds": folds,
        "mean_ga": round(sum(held) / len(held), 4),
        "min_ga": min(held),
        "stdev_ga": round(statistics.pstdev(held), 4),
        "candidates": {n: list(values) for n, (_, values) in CONSTANTS.items()},
        "chosen_on_all": dict(zip(names, everything)),
        "engine": {n: getattr(mining, n) for n in names},
    }


def evaluate_loghub(root: Path, progress: Progress | None = None) -> dict:
    """Grouping accuracy per system and the mean, over every ``*_2k.log_structured.csv``."""
    systems: dict[str, float] = {}
    for path in _structured_files(root):
        system = path.parent.name
        contents, truth = read_structured(path)
        systems[system] = round(grouping_accuracy(parse_contents(contents), truth), 4)
        if progress:
            progress(f"{system}: GA {systems[system]:.3f}")
    return {"systems": systems, "mean_ga": round(sum(systems.values()) / len(systems), 4)}
