"""Fault-free replays: windows with no fault, through the same pipeline, and the share of them
where the analysis names a root cause with confidence >= 0.5 (target <= 5 %, the product
spec's false-positive rate).

Two sources, reported apart and together:

* ``nezha``: each fault-free ``construct_data`` minute of a Nezha dataset is a window (the alert
  fires at its last line; ``ContextWindow`` decides what the analyzer reads), its baseline the
  other day's fault-free minute. Its metrics come from times away from every case: alert moments
  whose window and the ``CLEARANCE_SECONDS`` around it hold no injection, moved onto the window
  (several such moments a day: one window each). Only this side reads the fault list, to choose
  those times; the analyzer never sees it.
* ``simulator``: ``pipelines.simulate`` with its fault switched off, every scenario, several
  seeds: the same traffic and the same alert, a false alarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipelines.context_window import DEFAULT_AFTER_SECONDS, ContextWindow
from pipelines.evaluation.intervals import share
from pipelines.evaluation.nezha import (
    BASELINE_MINUTES,
    NezhaDatasetError,
    _csv_files,
    _metric_day,
    load_cases,
    load_rules,
    read_logs,
    replay_context,
)
from pipelines.schemas import Analysis, IncidentContext, MetricSeries, Telemetry

CONFIDENT = 0.5  # a top hypothesis at or above this confidence names a root cause
TARGET_SHARE = 0.05
CLEARANCE_SECONDS = 600.0  # no injection within 10 minutes of a fault-free window
WINDOWS_PER_DAY = 8  # metric moments per fault-free minute
SIMULATOR_SEEDS = (1, 2, 3, 4, 5)


@dataclass
class FaultFreeWindow:
    """One fault-free replay: a name, its source, and how to build what the analyzer reads."""

    name: str
    source: str
    build: Callable[[], IncidentContext]


def nezha_windows(root: Path, before_seconds: float = 300.0, after_seconds: float = DEFAULT_AFTER_SECONDS) -> list[FaultFreeWindow]:
    """The fault-free windows of a Nezha dataset (see the module's docstring)."""
    root = Path(root)
    construct = root / "construct_data"
    if not construct.is_dir():
        raise NezhaDatasetError(f"{construct}: folder is missing; the fault-free minutes live there")
    injections = [case.inject_time.timestamp() for case in load_cases(root)]
    days = sorted(p for p in construct.iterdir() if p.is_dir() and _csv_files(p / "log", "*_log"))
    rule = load_rules()["HighErrorRate"]
    windows: list[FaultFreeWindow] = []
    for day in days:
        others = [d for d in days if d != day]
        stamps = [e.timestamp.timestamp() for e in read_logs(_csv_files(day / "log", "*_log")) if e.timestamp]
        if not stamps:
            continue
        window = ContextWindow.at(max(stamps) + 1.0, before_seconds, after_seconds)
        for moment in _clear_moments(_metric_day(day / "metric").all_times(), injections, window):
            windows.append(FaultFreeWindow(
                name=f"{day.name} {_hhmm(window.moment)} (metrics of {_hhmm(moment)})",
                source="nezha",
                build=lambda day=day, other=(others[0] if others else None), shift=window.moment - moment, w=window:
                    replay_context(day, other, w, rule, metrics_shift=shift),
            ))
    return windows


def _clear_moments(times: list[float], injections: list[float], window: ContextWindow) -> list[float]:
    """Up to ``WINDOWS_PER_DAY`` alert moments, evenly spread, with a full metric history, whose
    window is ``CLEARANCE_SECONDS`` away from every injection."""
    if not times:
        return []
    first, last = min(times), max(times)
    step = window.width
    moment = first + 60.0 * BASELINE_MINUTES + window.before_seconds
    clear: list[float] = []
    while moment + window.after_seconds <= last:
        low, high = moment - window.before_seconds - CLEARANCE_SECONDS, moment + window.after_seconds + CLEARANCE_SECONDS
        if not any(low <= t <= high for t in injections):
            clear.append(moment)
        moment += step
    if len(clear) <= WINDOWS_PER_DAY:
        return clear
    stride = len(clear) / WINDOWS_PER_DAY
    return [clear[int(i * stride)] for i in range(WINDOWS_PER_DAY)]


def simulator_windows(seeds: tuple[int, ...] = SIMULATOR_SEEDS, before_seconds: float = 300.0,
                      after_seconds: float = DEFAULT_AFTER_SECONDS) -> list[FaultFreeWindow]:
    """Every simulator scenario with its fault switched off, for each seed."""
    from pipelines.simulate import SCENARIOS

    return [
        FaultFreeWindow(name=f"{scenario} seed {seed}", source="simulator",
                        build=lambda scenario=scenario, seed=seed: _simulated(scenario, seed, before_seconds, after_seconds))
        for scenario in SCENARIOS for seed in seeds
    ]


def _simulated(scenario: str, seed: int, before_seconds: float, after_seconds: float) -> IncidentContext:
    from pipelines.simulate import simulate

    incident = simulate(scenario, seed=seed, fault=False)
    window = ContextWindow.at(incident.alert.timestamp, before_seconds, after_seconds)
    return IncidentContext(
        alert=incident.alert,
        window=Telemetry(logs=incident.logs, metrics=_within(incident.metrics, window.start, window.end)),
        baseline=incident.baseline,
    )


def _within(series: list[MetricSeries], start: float, end: float) -> list[MetricSeries]:
    return [MetricSeries(service=s.service, name=s.name, points=[(t, v) for t, v in s.points if start <= t < end]) for s in series]


def _hhmm(moment: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%H:%M")


def score_fault_free(results: list[tuple[FaultFreeWindow, Analysis, float]]) -> dict[str, Any]:
    """The share of windows whose top hypothesis has confidence >= ``CONFIDENT``, with counts and
    a Wilson 95 % interval, per source and overall; one row per window."""
    rows = []
    for window, analysis, seconds in results:
        top = max(analysis.hypotheses, key=lambda h: h.confidence, default=None)
        rows.append({
            "window": window.name,
            "source": window.source,
            "top_service": top.service if top else None,
            "top_confidence": round(top.confidence, 3) if top else None,
            "top_cause": top.cause[:200] if top else None,
            "confident": bool(top and top.confidence >= CONFIDENT),
            "category": analysis.classification.category.value,
            "degraded_reasons": list(analysis.degraded_reasons),
            "seconds": round(seconds, 3),
        })

    def figure(selected: list[dict[str, Any]]) -> dict[str, Any]:
        return share(sum(r["confident"] for r in selected), len(selected))

    confident = figure(rows)
    return {
        "windows": len(rows),
        "confidence_threshold": CONFIDENT,
        "confident_share": confident,
        "target_share": TARGET_SHARE,
        "meets_target": confident["value"] is not None and confident["value"] <= TARGET_SHARE,
        "by_source": {source: {"windows": sum(1 for r in rows if r["source"] == source),
                               "confident_share": figure([r for r in rows if r["source"] == source])}
                      for source in sorted({r["source"] for r in rows})},
        "rows": rows,
    }
