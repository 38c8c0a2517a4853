"""``ContextWindow``: for one alert, the time range the analysis reads and its baseline.

One place decides it for every path (the ingress gathering from Loki and Prometheus, the
Kafka reader's buffers, the evaluations' replays):

* the **window** runs from ``INCIDENT_CONTEXT_WINDOW`` seconds before the alert to
  ``RCA_CONTEXT_WAIT_SECONDS`` after it: the few seconds the Kafka reader waits for the lines
  written just after the alert, and no more, so nothing reads what production would not have
  when it answers;
* the **baseline** is the range of the same width just before the window: what "normal" looked
  like right before the incident.

Times are unix seconds (floats) on the way in and out; ``start_time`` / ``end_time`` give
datetimes for sources that take them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.schemas import Alert
    from pipelines.settings import Settings

#: seconds after the alert that belong to its context (``RCA_CONTEXT_WAIT_SECONDS``'s default)
DEFAULT_AFTER_SECONDS = 5.0


@dataclass(frozen=True)
class ContextWindow:
    """The window ``[start, end)`` around an alert fired at ``moment`` and its baseline."""

    moment: float
    before_seconds: float
    after_seconds: float = DEFAULT_AFTER_SECONDS

    def __post_init__(self) -> None:
        if self.before_seconds <= 0 or self.after_seconds < 0:
            raise ValueError(f"context window: before {self.before_seconds}s must be > 0 and after {self.after_seconds}s >= 0")

    @classmethod
    def at(cls, moment: datetime | float, before_seconds: float, after_seconds: float = DEFAULT_AFTER_SECONDS) -> ContextWindow:
        stamp = moment.timestamp() if isinstance(moment, datetime) else float(moment)
        return cls(stamp, float(before_seconds), float(after_seconds))

    @classmethod
    def for_alert(cls, alert: Alert, settings: Settings, before_seconds: float | None = None) -> ContextWindow:
        """The window of an alert under the settings (``before_seconds`` overrides the width before it)."""
        before = settings.context_window_seconds if before_seconds is None else before_seconds
        return cls.at(alert.timestamp, before, settings.context_wait_seconds)

    @property
    def start(self) -> float:
        return self.moment - self.before_seconds

    @property
    def end(self) -> float:
        return self.moment + self.after_seconds

    @property
    def width(self) -> float:
        return self.end - self.start

    @property
    def baseline(self) -> tuple[float, float]:
        """``(start, end)`` of the range of the same width just before the window."""
        return self.start - self.width, self.start

    def history(self, seconds: float) -> tuple[float, float]:
        """``(start, end)`` of the ``seconds`` just before the window (a longer metric baseline)."""
        return self.start - seconds, self.start

    def contains(self, moment: float) -> bool:
        return self.start <= moment < self.end

    @property
    def start_time(self) -> datetime:
        return datetime.fromtimestamp(self.start, tz=timezone.utc)

    @property
    def end_time(self) -> datetime:
        return datetime.fromtimestamp(self.end, tz=timezone.utc)

    @property
    def moment_time(self) -> datetime:
        return datetime.fromtimestamp(self.moment, tz=timezone.utc)
