"""Record what ``pipelines.metrics`` would send to Ray: ``with recording() as calls: ...``.

Each call is ``(metric name, "inc" | "set" | "observe", value, tags)``; a wrong kind or a
wrong set of tags fails at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pipelines import metrics

Call = tuple[str, str, float, dict[str, str]]


class Recorder:
    """Stands in for a ray.util.metrics object: remembers every call."""

    def __init__(self, name: str, calls: list[Call]) -> None:
        self.name = name
        self.kind, self.tag_keys, _ = metrics.METRICS[name]
        self.calls = calls

    def _record(self, method: str, value: float, tags: dict[str, str] | None) -> None:
        tags = tags or {}
        assert set(tags) == set(self.tag_keys), f"{self.name}: tags {tags} != {self.tag_keys}"
        self.calls.append((self.name, method, value, tags))

    def inc(self, value: float, tags: dict[str, str] | None = None) -> None:
        assert self.kind == "counter" and value > 0
        self._record("inc", value, tags)

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        assert self.kind == "gauge"
        self._record("set", value, tags)

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        assert self.kind == "histogram"
        self._record("observe", value, tags)


@contextmanager
def recording() -> Iterator[list[Call]]:
    """Swap the metrics backend for recorders of this process; the real one is back afterwards."""
    calls: list[Call] = []
    metrics._reset(lambda name: Recorder(name, calls))
    try:
        yield calls
    finally:
        metrics._reset()
