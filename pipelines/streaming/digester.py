"""Digest on arrival: log events from ``rca.logs`` mined as they come into one Digest per time bucket.

Why digests, not raw lines
    The analysis needs template counts per bucket, exemplar lines and span links, which a
    :class:`~anomaly.digest.Digest` holds, never the lines themselves. Held raw, a 300 s window
    and its baseline at 100k lines/s take ~18 GB; mined on arrival they take what their distinct
    shapes take, so memory grows with templates and buckets, not with lines. Digests merge
    exactly (template ids are derived from the template text, mining is a function of the set
    of shapes), so an alert's context is the merge of the buckets of its window, and digests
    from other digesters merge into it the same way.

Batches
    Mining one line at a time would cost a polars call per line; events are decoded and checked
    as they come (:func:`~pipelines.streaming.log_buffer.decode_log_event`) and their fields
    held as columns until ``batch_events`` are pending or a query asks (:meth:`Digester.flush`).
    Then each bucket of the batch becomes one Digest (its services' lines kept apart inside it,
    as a Digest does) that is absorbed into what that bucket already holds: pre-merged, so an
    alert's 300 s window merges 31 bucket digests, not one per service and bucket. Events are
    read as ``/analyze`` reads log events (level upper-cased, the span a shipper's label or the
    message names, empty messages counted).

Bounds, and nothing dropped silently
    Buckets older than ``retention_seconds`` (two context windows and the wait: what any alert
    can still ask for) are expired. Past ``max_bytes`` (``RCA_DIGEST_MAX_BYTES``) the oldest
    bucket is evicted and its lines are counted, per bucket, as *cut*: a window or baseline
    that covers a cut bucket says so in the analysis (``degraded_reasons`` and
    ``lines_dropped["digest_bound"]``). Oversized events are refused and counted.

Pure Python (no Kafka, no Ray): the reader calls it, tests and the benchmark call it directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from anomaly.digest import BUCKET_SECONDS, MAX_SPAN_LINKS, Digest, event_frame
from pipelines.pipeline import SPAN_LABELS
from pipelines.streaming.log_buffer import DROP_OVERSIZED, InvalidLogEvent, decode_log_event
from pipelines.streaming.span_store import SpanRange, SpanStoreStats
from pipelines.streaming.time_buckets import DROP_EXPIRED, TimeBuckets, sum_counts

if TYPE_CHECKING:
    from pipelines.settings import Settings

BATCH_EVENTS = 100_000
"""Events mined together: large enough that the per-call cost of polars is small beside the lines."""
BATCH_BYTES = 32 * 1024 * 1024
"""...or this many bytes of messages, whichever comes first: pending text stays bounded whatever the line size."""

CUT_REASON = "digest_bound"


def history_seconds(settings: Settings) -> float:
    """How far back digests are read and kept: an alert's window and its baseline (each the window
    and the wait), and a minute for lines that arrive late."""
    return 2 * (settings.context_window_seconds + settings.context_wait_seconds) + 60


def _own_strings(digest: Digest) -> Digest:
    """The same digest with tables that own their strings.

    A digest built from a slice of a batch keeps polars string views into the whole batch's
    buffers (its exemplar lines are a few rows, but they pin every message of the batch), which
    ``estimated_bytes`` does not see: held for a retention period at 100k lines/s, that grew the
    process by ~70 MiB per million lines while the bound counted 1 MiB. A round trip through the
    digest's own transport copies just what it holds. (To mend in ``anomaly.digest`` itself.)
    """
    return Digest.from_dict(digest.to_dict())


@dataclass(frozen=True)
class DigestRange:
    """The merged digest of a time range, how many of its lines the memory bound cut, and (from a
    digester member, which also holds ``rca.spans`` partitions) the range's spans."""

    digest: Digest
    cut_lines: int
    spans: SpanRange = SpanRange()

    def degraded_reason(self, label: str, max_bytes: int) -> str | None:
        """What an analysis must say when lines of this range were cut, else None."""
        if not self.cut_lines:
            return None
        return (f"{CUT_REASON}: {self.cut_lines} log lines of the {label} were evicted from the streaming digests "
                f"(RCA_DIGEST_MAX_BYTES={max_bytes}); raise it or shorten the window")


@dataclass(frozen=True)
class DigesterStats:
    """A snapshot for /health, metrics and the benchmark."""

    bytes: int
    max_bytes: int
    lines: int
    buckets: int
    keys: int
    pending: int
    cut_lines: int
    dropped: dict[str, int]
    spans: SpanStoreStats = SpanStoreStats()

    @classmethod
    def total(cls, parts: list[DigesterStats], max_bytes: int) -> DigesterStats:
        """Several digesters' stats summed (``max_bytes``: the bound they share, or each one's)."""
        dropped = sum_counts(p.dropped for p in parts)
        return cls(
            bytes=sum(p.bytes for p in parts), max_bytes=max_bytes, lines=sum(p.lines for p in parts),
            buckets=sum(p.buckets for p in parts), keys=sum(p.keys for p in parts),
            pending=sum(p.pending for p in parts), cut_lines=sum(p.cut_lines for p in parts), dropped=dropped,
            spans=SpanStoreStats.total(p.spans for p in parts),
        )


class Digester(TimeBuckets):
    """Mines log events as they arrive into one Digest per bucket, bounded by ``max_bytes``."""

    def __init__(
        self,
        *,
        max_bytes: int,
        retention_seconds: float,
        bucket_seconds: float = BUCKET_SECONDS,
        max_event_bytes: int = 65_536,
        batch_events: int = BATCH_EVENTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` gives the time retention is counted from (the benchmark's event time runs faster)."""
        super().__init__(max_bytes=max_bytes, retention_seconds=retention_seconds, bucket_seconds=bucket_seconds,
                         clock=clock, cut_reason=CUT_REASON)
        if batch_events < 1:
            raise ValueError(f"batch_events must be positive, got {batch_events}")
        self.max_event_bytes = max_event_bytes
        # a bucket keeps the line links of a sample of its requests, sized so that the buckets an alert's
        # window merges (about half the retention) hold about what one digest keeps: the links stay flat
        # as the log rate grows, where they grew by ~60 bytes a traced line
        self.linked_spans_per_bucket = max(1, int(MAX_SPAN_LINKS * 2 * self.bucket_seconds / self.retention_seconds))
        self.batch_events = batch_events
        # the pending batch, as the columns of anomaly.digest.event_frame
        self._messages: list[str] = []
        self._times: list[float] = []
        self._levels: list[str | None] = []
        self._services: list[str] = []
        self._spans: list[str | None] = []
        self._pending_events = 0
        self._pending_bytes = 0
        self._digests: dict[float, Digest] = {}  # bucket -> the digest of every service's lines in it
        self.lines = 0

    # ---------------------------------------------------------------- arrival

    def ingest(self, records: Iterable[Any]) -> list[tuple[Any, InvalidLogEvent]]:
        """Take a batch of Kafka records (``value``, ``key``, ``timestamp`` in ms); return the refused ones with why."""
        bad: list[tuple[Any, InvalidLogEvent]] = []
        oldest = self._clock() - self.retention_seconds
        for record in records:
            try:
                self._hold(record.value, record.timestamp / 1000.0, record.key, oldest)
            except InvalidLogEvent as error:
                bad.append((record, error))
        if self._batch_full():
            self.flush()
        return bad

    def add(self, value: bytes | None, fallback_time: float, key: bytes | None = None) -> None:
        """Take one raw event; raise :class:`InvalidLogEvent` naming what is wrong with it."""
        self._hold(value, fallback_time, key, self._clock() - self.retention_seconds)
        if self._batch_full():
            self.flush()

    def _batch_full(self) -> bool:
        return self._pending_events >= self.batch_events or self._pending_bytes >= BATCH_BYTES

    def _hold(self, value: bytes | None, fallback_time: float, key: bytes | None, oldest: float) -> None:
        if value is not None and len(value) > self.max_event_bytes:
            self._count(DROP_OVERSIZED, 1)
            return
        service, moment, event = decode_log_event(value, fallback_time, key)
        if moment < oldest:
            self._count(DROP_EXPIRED, 1)
            return
        span = event.get("span_id")
        if not span:
            labels = event.get("labels") or {}
            span = next((labels[k] for k in SPAN_LABELS if labels.get(k)), None)
        level = event.get("level")
        self._messages.append(event["message"])
        self._times.append(moment)
        self._levels.append(level.upper() if level else None)
        self._services.append(service)
        self._spans.append(str(span).lower() if span else None)
        self._pending_events += 1
        self._pending_bytes += len(value)  # type: ignore[arg-type]

    def flush(self) -> None:
        """Mine what is pending into the buckets' digests, then apply retention and the memory bound."""
        if not self._pending_events:
            return
        frame = event_frame(self._messages, self._times, self._levels, self._services, self._spans)
        self._messages, self._times, self._levels, self._services, self._spans = [], [], [], [], []
        self._pending_events = self._pending_bytes = 0
        frame = frame.with_columns(
            ((pl.col("timestamp") / self.bucket_seconds).floor() * self.bucket_seconds).alias("bucket"),
            (pl.col("message").str.strip_chars() == "").alias("empty"),
        )
        empty = frame.filter(pl.col("empty")).group_by("bucket").len()
        empties = {(b,): n for b, n in empty.iter_rows()}
        parts = frame.filter(~pl.col("empty")).partition_by("bucket", as_dict=True)
        for where in set(parts) | set(empties):
            (bucket,) = where
            part = parts.get(where)
            digest = (_own_strings(Digest.from_frame(part, bucket_seconds=self.bucket_seconds,
                                                     max_linked_spans=self.linked_spans_per_bucket))
                      if part is not None else
                      Digest(bucket_seconds=self.bucket_seconds, max_linked_spans=self.linked_spans_per_bucket))
            if where in empties:
                digest.count_dropped({"empty": empties[where]})
            held = self._digests.get(bucket)
            if held is None:
                self._digests[bucket] = digest
            else:
                held.absorb(digest)
                held.compact()  # held for the retention period: unfolded merges would grow with the rate
            self.lines += digest.lines
            self._resize(bucket, self._digests[bucket].estimated_bytes())
        self._expire()
        self._bound()

    def _remove(self, bucket: float) -> int:
        lines = self._digests.pop(bucket).lines
        self.lines -= lines
        return lines

    # ---------------------------------------------------------------- queries

    def _in_range(self, bucket: float, start: float, end: float, through_end: bool) -> bool:
        """A bucket belongs to the range that holds its middle, so adjacent ranges never share one;
        ``through_end`` also takes the bucket ``end`` falls in (a window's end borders no range)."""
        middle = bucket + self.bucket_seconds / 2
        return start <= middle and (middle < end or (through_end and bucket < end))

    def between(self, start: float, end: float, *, through_end: bool = False) -> DigestRange:
        """The merged digest of the buckets in ``[start, end)`` (to half a bucket; ``through_end``: and
        the whole bucket ``end`` falls in) and the lines the bound cut from them."""
        if self._pending_events:
            self.flush()
        parts = [
            digest
            for bucket, digest in sorted(self._digests.items()) if self._in_range(bucket, start, end, through_end)
        ]
        merged = Digest.merge_all(parts) if parts else Digest(bucket_seconds=self.bucket_seconds)
        cut = sum(n for bucket, n in self.cut.items() if self._in_range(bucket, start, end, through_end))
        if cut:
            merged.count_dropped({CUT_REASON: cut})
        return DigestRange(merged, cut)

    def stats(self) -> DigesterStats:
        return DigesterStats(
            bytes=self.bytes,
            max_bytes=self.max_bytes,
            lines=self.lines,
            buckets=len(self._digests),
            keys=len(self._digests),
            pending=self._pending_events,
            cut_lines=sum(self.cut.values()),
            dropped=dict(self.dropped),
        )
