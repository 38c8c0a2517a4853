"""ContextWindow: one window and baseline per alert, for every path; Wilson intervals."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pipelines.context_window import ContextWindow
from pipelines.evaluation.intervals import share, wilson_interval
from pipelines.schemas import Alert
from pipelines.settings import Settings

MOMENT = datetime(2024, 3, 1, 10, 0, 0, tzinfo=timezone.utc)


def test_window_runs_before_the_alert_to_the_wait_after_it() -> None:
    settings = Settings(context_window_seconds=300, context_wait_seconds=5.0)
    alert = Alert(name="HighErrorRate", timestamp=MOMENT)
    window = ContextWindow.for_alert(alert, settings)
    t = MOMENT.timestamp()
    assert (window.start, window.end) == (t - 300, t + 5)
    assert window.baseline == (t - 605, t - 300)  # the same width (305 s), just before
    assert window.contains(t + 4.9) and not window.contains(t + 5) and not window.contains(t - 301)
    assert window.start_time.tzinfo is not None and window.end_time == datetime.fromtimestamp(t + 5, tz=timezone.utc)
    assert ContextWindow.for_alert(alert, settings, before_seconds=60).start == t - 60
    assert window.history(1800) == (t - 2100, t - 300)


def test_window_refuses_an_empty_range() -> None:
    with pytest.raises(ValueError):
        ContextWindow.at(MOMENT, 0)
    with pytest.raises(ValueError):
        ContextWindow.at(MOMENT, 60, -1)


def test_wilson_interval() -> None:
    low, high = wilson_interval(20, 30)
    assert 0.48 < low < 0.49 and 0.80 < high < 0.81
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) is None
    figure = share(3, 4)
    assert figure["value"] == 0.75 and figure["count"] == 3 and figure["total"] == 4
    assert figure["ci95"][0] < 0.75 < figure["ci95"][1]
    assert share(0, 0) == {"value": None, "count": 0, "total": 0, "ci95": None}
