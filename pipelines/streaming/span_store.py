"""The spans of one ``rca.spans`` partition, held by the digester that holds the partition, per time bucket.

Why spans are held by the digesters
    ``rca.spans`` and ``rca.logs`` have the same partition count and the digesters' group gives
    partition *i* of both to one member, so the member that mines a service's lines also holds
    the spans of that partition: an alert's context takes its spans from every member, merged,
    as it takes the digests. The reader holds no span and consumes no span partition.

Correct whatever the keying
    The OpenTelemetry Collector's Kafka exporter cannot key span batches by service (it keys them
    by trace id, ``partition_traces_by_id``, or not at all; see the README's Kafka section), so a
    service's spans may land on any partition. Each member keeps the spans of the partitions it
    holds, whichever services they belong to, and the context merges every member's: a span is in
    the context once whatever partition it landed on. Keyed by service (this project's own
    publishers do), the span-id join of a line and its span stays inside one member.

Bounds, and nothing dropped silently
    Spans are few beside lines, and the traces signal reads each one, so they are held as
    decoded (their ``Span`` JSON, about 300 bytes each), not digested. Buckets older than
    ``retention_seconds`` (the digests' retention) expire; past ``max_bytes`` the oldest bucket is
    evicted and its spans counted as *cut* per bucket: a window or baseline that covers a cut
    bucket says so in the analysis (:meth:`SpanRange.degraded_reason`). Spans of a batch that
    lack an id, a service or a start time are counted (``span_incomplete``); a record with no
    usable span is returned to the caller for the dead-letter topic.

Pure Python (no Kafka, no Ray): the digester member calls it, tests call it directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from anomaly.digest import BUCKET_SECONDS
from pipelines.schemas import Span
from pipelines.streaming.otlp import InvalidSpanBatch, decode_spans
from pipelines.streaming.time_buckets import DROP_EXPIRED, TimeBuckets, sum_counts

SPAN_OVERHEAD_BYTES = 120
"""What holding one span costs beside its JSON: the bytes object, the tuple and the list slot."""
DROP_INCOMPLETE = "span_incomplete"
CUT_REASON = "span_bound"


@dataclass(frozen=True)
class SpanRange:
    """The spans of a time range, time-ordered, and how many of its spans the memory bound cut."""

    spans: tuple[Span, ...] = ()
    cut_spans: int = 0

    def degraded_reason(self, label: str, max_bytes: int) -> str | None:
        """What an analysis must say when spans of this range were cut, else None."""
        if not self.cut_spans:
            return None
        return (f"{CUT_REASON}: {self.cut_spans} spans of the {label} were evicted from the digesters' span stores "
                f"(RCA_SPAN_BUFFER_MAX_BYTES={max_bytes}); raise it or shorten the window")

    @classmethod
    def merge(cls, parts: Iterable[SpanRange]) -> SpanRange:
        """Several holders' shares of one range (their partitions are disjoint, so no span is in two)."""
        parts = list(parts)
        spans = sorted((s for p in parts for s in p.spans), key=lambda s: (s.start, s.span_id))
        return cls(tuple(spans), sum(p.cut_spans for p in parts))


@dataclass(frozen=True)
class SpanStoreStats:
    """A snapshot for /health and the reader's stats."""

    bytes: int = 0
    spans: int = 0
    cut_spans: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @classmethod
    def total(cls, parts: Iterable[SpanStoreStats]) -> SpanStoreStats:
        parts = list(parts)
        return cls(sum(p.bytes for p in parts), sum(p.spans for p in parts), sum(p.cut_spans for p in parts),
                   sum_counts(p.dropped for p in parts))


class SpanStore(TimeBuckets):
    """Decoded spans of one partition per time bucket, bounded by ``max_bytes`` and ``retention_seconds``."""

    def __init__(
        self, *, max_bytes: int, retention_seconds: float, bucket_seconds: float = BUCKET_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(max_bytes=max_bytes, retention_seconds=retention_seconds, bucket_seconds=bucket_seconds,
                         clock=clock, cut_reason=CUT_REASON)
        self._buckets: dict[float, list[tuple[float, bytes]]] = {}  # bucket -> (start, Span JSON)
        self.spans = 0

    def ingest(self, records: Iterable[Any]) -> list[tuple[Any, InvalidSpanBatch]]:
        """Take a batch of Kafka records (``value``); return the ones that hold no usable span, with why."""
        bad: list[tuple[Any, InvalidSpanBatch]] = []
        for record in records:
            try:
                batch = decode_spans(record.value)
            except InvalidSpanBatch as error:
                bad.append((record, error))
                continue
            self._count(DROP_INCOMPLETE, batch.skipped)
            self.add(batch.spans)
        return bad

    def add(self, spans: Iterable[Span]) -> None:
        """Hold spans by their start time, then apply retention and the memory bound."""
        oldest = self._clock() - self.retention_seconds
        for span in spans:
            if span.start < oldest:
                self._count(DROP_EXPIRED, 1)
                continue
            bucket = (span.start // self.bucket_seconds) * self.bucket_seconds
            value = span.model_dump_json().encode()
            self._buckets.setdefault(bucket, []).append((span.start, value))
            self._resize(bucket, self._sizes.get(bucket, 0) + len(value) + SPAN_OVERHEAD_BYTES)
            self.spans += 1
        self._expire()
        self._bound()

    def _remove(self, bucket: float) -> int:
        n = len(self._buckets.pop(bucket))
        self.spans -= n
        return n

    def between(self, start: float, end: float, *, through_end: bool = False) -> SpanRange:
        """The spans that started in ``[start, end)`` (``through_end``: ``[start, end]``), time-ordered,
        and the spans the bound cut from the buckets the range overlaps."""
        self._expire()

        def inside(moment: float) -> bool:
            return start <= moment and (moment < end or (through_end and moment == end))

        found = [(moment, value) for bucket, held in self._buckets.items()
                 if bucket < end + self.bucket_seconds and bucket + self.bucket_seconds > start
                 for moment, value in held if inside(moment)]
        found.sort(key=lambda pair: pair[0])
        cut = sum(n for bucket, n in self.cut.items()
                  if (bucket < end or (through_end and bucket == end)) and bucket + self.bucket_seconds > start)
        return SpanRange(tuple(Span.model_validate_json(value) for _, value in found), cut)

    def stats(self) -> SpanStoreStats:
        return SpanStoreStats(self.bytes, self.spans, sum(self.cut.values()), dict(self.dropped))
