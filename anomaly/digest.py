"""The mergeable summary of a chunk of log records.

A ``Digest`` keeps, per distinct masked message (a *shape*), its count, first/last
time, a few raw samples, and its counts by level, service, exception type and time
bucket. Templates are mined from the set of shapes when asked for, so merging two
digests (a union of shapes with summed counts) gives exactly the templates of one
pass over all their lines, whatever the chunking or order. Memory follows the number
of distinct shapes, not the number of lines.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from anomaly.masking import mask_series
from anomaly.records import LogRecord
from anomaly.templates import assign_templates

MAX_SAMPLES = 3
MAX_SAMPLE_CHARS = 2_000
#: Java/Python style exception names: dotted or bare, ending in Error/Exception/...
EXCEPTION_PATTERN = r"\b(?:[a-zA-Z_][\w$]*\.)*[A-Z][\w$]*(?:Exception|Error|Throwable|Fault)\b"
ERROR_WORDS = (
    r"(?i)\b(?:error|errors|exception|fail|failed|failure|failing|fatal|panic|refused|timeout|timed out|"
    r"denied|unreachable|traceback|crash|crashed|abort|aborted|killed|oom|unavailable|rejected)\b"
)


@dataclass
class TemplateStats:
    """One template and what the digest knows about its lines."""

    template_id: str
    text: str
    count: int
    first_seen: float | None
    last_seen: float | None
    samples: list[str]
    levels: dict[str, int]
    services: dict[str, int]
    exception_types: dict[str, int]
    is_error: bool


@dataclass
class _Shape:
    """Stats of one distinct masked message."""

    count: int = 0
    first: float | None = None
    last: float | None = None
    samples: list[str] = field(default_factory=list)
    levels: Counter = field(default_factory=Counter)
    services: Counter = field(default_factory=Counter)
    exceptions: Counter = field(default_factory=Counter)
    buckets: Counter = field(default_factory=Counter)

    def absorb(self, other: _Shape) -> None:
        self.count += other.count
        self.first = _min(self.first, other.first)
        self.last = _max(self.last, other.last)
        for s in other.samples:
            if len(self.samples) >= MAX_SAMPLES:
                break
            if s not in self.samples:
                self.samples.append(s)
        self.levels.update(other.levels)
        self.services.update(other.services)
        self.exceptions.update(other.exceptions)
        self.buckets.update(other.buckets)

    def copy(self) -> _Shape:
        new = _Shape()
        new.absorb(self)
        return new

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count, "first": self.first, "last": self.last, "samples": list(self.samples),
            "levels": dict(self.levels), "services": dict(self.services),
            "exceptions": dict(self.exceptions), "buckets": {repr(k): v for k, v in self.buckets.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Shape:
        return cls(
            count=int(d["count"]), first=_opt_float(d.get("first")), last=_opt_float(d.get("last")),
            samples=[str(s) for s in d.get("samples", [])][:MAX_SAMPLES],
            levels=Counter({str(k): int(v) for k, v in d.get("levels", {}).items()}),
            services=Counter({str(k): int(v) for k, v in d.get("services", {}).items()}),
            exceptions=Counter({str(k): int(v) for k, v in d.get("exceptions", {}).items()}),
            buckets=Counter({float(k): int(v) for k, v in d.get("buckets", {}).items()}),
        )


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


class Digest:
    """Mergeable digest of log records (see module doc)."""

    def __init__(self, *, bucket_seconds: float = 60.0) -> None:
        if not (bucket_seconds > 0 and math.isfinite(bucket_seconds)):
            raise ValueError(f"bucket_seconds must be a positive number, got {bucket_seconds!r}")
        self.bucket_seconds = float(bucket_seconds)
        self.lines = 0
        self.services: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self._shapes: dict[str, _Shape] = {}
        self._templates: dict[str, TemplateStats] | None = None
        self._shape_template: dict[str, tuple[str, str]] | None = None

    # ------------------------------------------------------------- building
    @classmethod
    def from_records(cls, records: Iterable[LogRecord], *, bucket_seconds: float = 60.0) -> Digest:
        rows = list(records)
        frame = pl.DataFrame(
            {
                "message": pl.Series([r.message for r in rows], dtype=pl.String),
                "timestamp": pl.Series([r.timestamp for r in rows], dtype=pl.Float64),
                "level": pl.Series([r.level for r in rows], dtype=pl.String),
                "service": pl.Series([r.service for r in rows], dtype=pl.String),
            }
        )
        return cls.from_frame(frame, bucket_seconds=bucket_seconds)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, *, bucket_seconds: float = 60.0) -> Digest:
        """Vectorized build from a frame with ``message, timestamp, level, service`` columns."""
        digest = cls(bucket_seconds=bucket_seconds)
        if frame.height == 0:
            return digest
        msg = pl.col("message").fill_null("")
        first_line = msg.str.split_exact("\n", 1).struct.field("field_0")
        df = frame.select(
            msg.alias("message"),
            pl.col("timestamp").cast(pl.Float64),
            pl.col("level").cast(pl.String),
            pl.col("service").cast(pl.String),
        ).with_columns(
            first_line.alias("first"),
            (pl.col("timestamp") / bucket_seconds).floor().mul(bucket_seconds).alias("bucket"),
        )
        df = df.with_columns(mask_series(df.get_column("first")).alias("shape"))
        digest.lines = df.height
        main = df.group_by("shape").agg(
            pl.len().alias("n"),
            pl.col("timestamp").min().alias("t0"),
            pl.col("timestamp").max().alias("t1"),
            pl.col("message").unique(maintain_order=True).head(MAX_SAMPLES).alias("samples"),
        )
        shapes = digest._shapes
        for shape, n, t0, t1, samples in main.iter_rows():
            shapes[shape] = _Shape(
                count=n, first=t0, last=t1, samples=[s[:MAX_SAMPLE_CHARS] for s in samples]
            )
        for col, attr in (("level", "levels"), ("service", "services"), ("bucket", "buckets")):
            counts = df.filter(pl.col(col).is_not_null()).group_by("shape", col).len()
            for shape, key, n in counts.iter_rows():
                getattr(shapes[shape], attr)[key] += n
        exc = (
            df.filter(pl.col("message").str.contains(r"(?:Exception|Error|Throwable|Fault)\b"))
            .select("shape", pl.col("message").str.extract_all(EXCEPTION_PATTERN).list.unique().alias("exc"))
            .explode("exc")
            .drop_nulls("exc")
            .group_by("shape", "exc")
            .len()
        )
        for shape, name, n in exc.iter_rows():
            shapes[shape].exceptions[name] += n
        svc = df.filter(pl.col("service").is_not_null()).group_by("service").len()
        digest.services = {s: n for s, n in svc.iter_rows()}
        return digest

    # ------------------------------------------------------------- merging
    def merge(self, other: Digest) -> Digest:
        """A new digest holding both (pure; associative and commutative in templates)."""
        return Digest.merge_all([self, other])

    @classmethod
    def merge_all(cls, digests: Iterable[Digest]) -> Digest:
        digests = list(digests)
        out = cls(bucket_seconds=digests[0].bucket_seconds if digests else 60.0)
        for d in digests:
            out.absorb(d)
        return out

    def absorb(self, other: Digest, *, take: bool = False) -> None:
        """Add ``other`` into this digest in place (``take``: other is discarded, skip copies)."""
        if other.bucket_seconds != self.bucket_seconds:
            raise ValueError(
                f"cannot merge digests with different bucket_seconds ({self.bucket_seconds} and {other.bucket_seconds})"
            )
        self.lines += other.lines
        for k, v in other.services.items():
            self.services[k] = self.services.get(k, 0) + v
        for k, v in other.dropped.items():
            self.dropped[k] = self.dropped.get(k, 0) + v
        shapes = self._shapes
        for shape, stats in other._shapes.items():
            mine = shapes.get(shape)
            if mine is None:
                shapes[shape] = stats if take else stats.copy()
            else:
                mine.absorb(stats)
        self._templates = None
        self._shape_template = None

    # ------------------------------------------------------------- templates
    def _assignment(self) -> dict[str, tuple[str, str]]:
        if self._shape_template is None:
            self._shape_template = assign_templates(self._shapes)
        return self._shape_template

    @property
    def templates(self) -> dict[str, TemplateStats]:
        """template_id -> stats, mined over all shapes (cached until the digest changes)."""
        if self._templates is None:
            self._templates = self._build_templates()
        return self._templates

    def _build_templates(self) -> dict[str, TemplateStats]:
        import re

        error_words = re.compile(ERROR_WORDS)
        out: dict[str, TemplateStats] = {}
        assigned = self._assignment()
        for shape in sorted(self._shapes, key=lambda s: (-self._shapes[s].count, s)):
            st = self._shapes[shape]
            tid, text = assigned[shape]
            t = out.get(tid)
            if t is None:
                t = out[tid] = TemplateStats(
                    template_id=tid, text=text, count=0, first_seen=None, last_seen=None, samples=[],
                    levels={}, services={}, exception_types={}, is_error=False,
                )
            t.count += st.count
            t.first_seen = _min(t.first_seen, st.first)
            t.last_seen = _max(t.last_seen, st.last)
            for s in st.samples:
                if len(t.samples) < MAX_SAMPLES and s not in t.samples:
                    t.samples.append(s)
            for src, dst in ((st.levels, t.levels), (st.services, t.services), (st.exceptions, t.exception_types)):
                for k, v in src.items():
                    dst[k] = dst.get(k, 0) + v
        for t in out.values():
            t.is_error = bool(
                t.levels.get("ERROR", 0) + t.levels.get("FATAL", 0)
                or t.exception_types
                or error_words.search(t.text)
            )
        return out

    def template_of_shape(self, shape: str) -> str:
        return self._assignment()[shape][0]

    def template_counts_by_service(self) -> dict[str, dict[str, int]]:
        """service -> template_id -> count."""
        assigned = self._assignment()
        out: dict[str, dict[str, int]] = {}
        for shape, st in self._shapes.items():
            tid = assigned[shape][0]
            for svc, n in st.services.items():
                d = out.setdefault(svc, {})
                d[tid] = d.get(tid, 0) + n
        return out

    def bucket_counts(self) -> dict[float, dict[str, int]]:
        """bucket start (unix s) -> template_id -> count (lines without a time are left out)."""
        assigned = self._assignment()
        out: dict[float, dict[str, int]] = {}
        for shape, st in self._shapes.items():
            tid = assigned[shape][0]
            for b, n in st.buckets.items():
                d = out.setdefault(b, {})
                d[tid] = d.get(tid, 0) + n
        return dict(sorted(out.items()))

    @property
    def shapes(self) -> int:
        """Number of distinct masked messages held."""
        return len(self._shapes)

    # ------------------------------------------------------------- transport
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "bucket_seconds": self.bucket_seconds,
            "lines": self.lines,
            "services": dict(self.services),
            "dropped": dict(self.dropped),
            "shapes": {k: v.to_dict() for k, v in self._shapes.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Digest:
        try:
            out = cls(bucket_seconds=float(d.get("bucket_seconds", 60.0)))
            out.lines = int(d["lines"])
            out.services = {str(k): int(v) for k, v in d.get("services", {}).items()}
            out.dropped = {str(k): int(v) for k, v in d.get("dropped", {}).items()}
            out._shapes = {str(k): _Shape.from_dict(v) for k, v in d.get("shapes", {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a valid Digest dict: {exc!r}") from exc
        return out

    def __repr__(self) -> str:
        return f"Digest(lines={self.lines}, shapes={len(self._shapes)}, services={len(self.services)})"
