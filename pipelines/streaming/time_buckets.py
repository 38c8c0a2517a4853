"""What a digester holds per time bucket, bounded by bytes and by age, with what the bounds evicted counted.

One rule for the log digests (:class:`~pipelines.streaming.digester.Digester`) and the spans
(:class:`~pipelines.streaming.span_store.SpanStore`): buckets older than ``retention_seconds``
expire (counted as ``older_than_retention``); past ``max_bytes`` the oldest bucket is evicted and
what it held is counted as *cut*, per bucket, so a range that covers a cut bucket can say so in
the analysis. A subclass keeps the buckets' contents and says what dropping one removes.

Pure Python (no Kafka, no Ray).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

DROP_EXPIRED = "older_than_retention"


def sum_counts(parts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Counts by reason (what several holders dropped) added up."""
    out: dict[str, int] = {}
    for part in parts:
        for reason, n in part.items():
            out[reason] = out.get(reason, 0) + n
    return out


class TimeBuckets:
    """The byte and age bounds of per-bucket holdings; ``_remove`` drops a bucket's contents and says how many."""

    def __init__(self, *, max_bytes: int, retention_seconds: float, bucket_seconds: float,
                 clock: Callable[[], float], cut_reason: str) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        if not retention_seconds > 0:
            raise ValueError(f"retention_seconds must be positive, got {retention_seconds}")
        self.max_bytes = max_bytes
        self.retention_seconds = float(retention_seconds)
        self.bucket_seconds = float(bucket_seconds)
        self._clock = clock
        self._cut_reason = cut_reason
        self._sizes: dict[float, int] = {}  # bucket -> estimated bytes of what it holds
        self.bytes = 0
        self.cut: dict[float, int] = {}  # bucket -> items the bound evicted
        self.dropped: dict[str, int] = {}

    def _remove(self, bucket: float) -> int:
        """Drop the bucket's contents; how many items (lines, spans) it held."""
        raise NotImplementedError

    def _resize(self, bucket: float, size: int) -> None:
        self.bytes += size - self._sizes.get(bucket, 0)
        self._sizes[bucket] = size

    def _drop_bucket(self, bucket: float) -> int:
        self.bytes -= self._sizes.pop(bucket)
        return self._remove(bucket)

    def _expire(self) -> None:
        oldest = self._clock() - self.retention_seconds
        for bucket in [b for b in self._sizes if b < oldest]:
            self._count(DROP_EXPIRED, self._drop_bucket(bucket))
        for bucket in [b for b in self.cut if b < oldest]:
            del self.cut[bucket]

    def _bound(self) -> None:
        """Evict the oldest buckets until what they hold fits ``max_bytes``; it is counted as cut."""
        while self.bytes > self.max_bytes and self._sizes:
            bucket = min(self._sizes)
            n = self._drop_bucket(bucket)
            self.cut[bucket] = self.cut.get(bucket, 0) + n
            self._count(self._cut_reason, n)

    def _count(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n
