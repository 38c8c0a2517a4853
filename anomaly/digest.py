"""The mergeable summary of a chunk of log records.

A ``Digest`` keeps, per distinct masked message (a *shape*), its count, first/last
time, a few raw samples, and its counts by level, service, exception type and time
bucket, and its error lines by service. Templates are mined from the set of shapes when asked for, so merging two
digests (a union of shapes with summed counts) gives exactly the templates of one
pass over all their lines, whatever the chunking or order. Memory follows the number
of distinct shapes, not the number of lines.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from anomaly.formats import ACCESS_SERVER_ERROR
from anomaly.intake import SPAN_ID_PATTERN
from anomaly.masking import mask_series
from anomaly.records import LogRecord
from anomaly.mining import tokenize
from anomaly.templates import assign_templates
from anomaly import span_sample

MAX_SAMPLES = 3
#: Width of the time buckets lines are counted in. Ten seconds resolve the onset of a fault
#: inside a few-minute incident window (what rose right after the alert, what was already there).
BUCKET_SECONDS = 10.0
MAX_SAMPLE_CHARS = 2_000
#: Java/Python style exception names: dotted or bare, ending in Error/Exception/...
EXCEPTION_PATTERN = r"\b(?:[a-zA-Z_][\w$]*\.)*[A-Z][\w$]*(?:Exception|Error|Throwable|Fault)\b"
ERROR_WORDS = (
    r"(?i)\b(?:error|errors|exception|fail|failed|failure|failing|fatal|panic|refused|timeout|timed out|"
    r"denied|unreachable|traceback|crash|crashed|abort|aborted|killed|oom|unavailable|rejected)\b"
)
#: words that say there was no error: Go's ``error <nil>`` / ``err=<nil>``, ``error: null``, ``no errors``
NO_ERROR_WORDS = (
    r"(?i)\b(?:no|zero|without)\s+(?:errors?|failures?)\b"
    r"|\berr(?:or)?s?\b\s*[=:]?\s*(?:<nil>|nil|null|none|false)(?![\w<])"
)
#: levels (as the intake names them) that make a line an error line
ERROR_LEVELS = ("ERROR", "FATAL")


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
    #: service ("" when unknown) -> lines that failed by themselves: logged at an error level, or an
    #: access line answered 5xx. A template can mix them with normal lines (one access-log shape
    #: for every status, one "request done status=<*>" line at INFO or ERROR by its status).
    failures: dict[str, int] = field(default_factory=dict)
    #: the template's words say error (an error word or an exception): every line of it is one
    worded: bool = False

    @property
    def error_lines(self) -> int:
        """Lines of this template that are errors."""
        return self.count if self.worded else sum(self.failures.values())

    @property
    def error_share(self) -> float:
        """The share of its lines that are errors."""
        return self.error_lines / self.count if self.count else 0.0

    def error_lines_of(self, service: str) -> int:
        """Lines of this template that ``service`` logged as errors."""
        return self.services.get(service, 0) if self.worded else self.failures.get(service, 0)


_PLACEHOLDER = re.compile(r"<[A-Z*]+>")


@lru_cache(maxsize=65_536)
def _token_pattern(template_token: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(p) for p in _PLACEHOLDER.split(template_token)), re.S)


def _matches(template_tokens: list[str], tokens: list[str]) -> bool:
    """Does a masked message fit a template, token by token (a placeholder matches any text)?"""
    return len(template_tokens) == len(tokens) and all(
        t == s or ("<" in t and _token_pattern(t).fullmatch(s) is not None)
        for t, s in zip(template_tokens, tokens)
    )


#: per shape: its first and last line ("samples") and its first error lines ("error_samples")
_SHAPES_SCHEMA = {"shape": pl.String, "count": pl.Int64, "first": pl.Float64, "last": pl.Float64,
                  "samples": pl.List(pl.String), "error_samples": pl.List(pl.String)}
#: Trace context a logging pattern prints into every line (``TraceID: 3b3a... SpanID: 0ba8...``). It
#: is request metadata, not part of the event: left in, every line of an application shares it
#: and the miner reads that shared prefix as the event, merging unrelated statements.
TRACE_CONTEXT_PATTERN = r"(?i)\b(?:trace|span)[_ -]?id\b[\"']?\s*[:=]\s*[\"']?[0-9a-f]{8,32}\b[\"']?,?"
#: template ids of a baseline's lines that match none of this digest's templates (``counts_of``)
BASELINE_PREFIX = "baseline:"
#: at most this many traced requests (span ids) keep their line links per digest: a sample by span id
#: (:mod:`anomaly.span_sample`); the lines of the others are counted in ``dropped`` as ``span_links_sampled_out``
MAX_SPAN_LINKS = 200_000
SAMPLED_OUT = "span_links_sampled_out"
#: side tables: shape -> key -> line count
_SIDE = {"levels": "level", "services": "service", "exceptions": "exception", "buckets": "bucket", "spans": "span",
         "failures": "service"}
_SIDE_SCHEMA = {
    name: {"shape": pl.String, key: (pl.Float64 if key == "bucket" else pl.String), "n": pl.Int64}
    for name, key in _SIDE.items()
}
#: absorbed tables are compacted (concat + group-by) once this many are pending
_COMPACT_EVERY = 16


#: over a group of shapes' rows (a merge, or a template's shapes): the first line of the earliest, the
#: last line of the latest, and the first error lines
_FIRST_LINE = pl.col("samples").sort_by("first", maintain_order=True).first().list.first()
_LAST_LINE = pl.col("samples").sort_by("last", maintain_order=True).last().list.last()
_ERROR_LINES = (pl.col("error_samples").sort_by("first", maintain_order=True).list.explode(keep_nulls=False, empty_as_null=False)
                .unique(maintain_order=True).head(MAX_SAMPLES).alias("error_samples"))


def _exemplars(first_line: str | None, last_line: str | None, error_lines: list[str]) -> list[str]:
    """A template's exemplar lines: its first error line, its first and last lines, then more error lines.

    An error inside a template of mostly normal lines (the 502s among an access log's 200s) is
    what an on-call engineer needs to see, and the first and last lines show the template's
    span of time: the start of a fault and how it looks now."""
    ordered = [*error_lines[:1], first_line, last_line, *error_lines[1:]]
    return list(dict.fromkeys(line for line in ordered if line is not None))[:MAX_SAMPLES]


def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def event_frame(
    messages: list[str], timestamps: list[float | None], levels: list[str | None],
    services: list[str | None], spans: list[str | None],
) -> pl.DataFrame:
    """The columns :meth:`Digest.from_frame` reads, from parsed events; the span is the one a
    shipper handed over, else the one the message names."""
    frame = pl.DataFrame(
        {
            "message": pl.Series(messages, dtype=pl.String),
            "timestamp": pl.Series(timestamps, dtype=pl.Float64),
            "level": pl.Series(levels, dtype=pl.String),
            "service": pl.Series(services, dtype=pl.String),
            "span": pl.Series(spans, dtype=pl.String),
        }
    )
    inline = pl.col("message").str.extract(SPAN_ID_PATTERN, 1).str.to_lowercase()
    return frame.with_columns(pl.coalesce("span", inline).alias("span"))


class Digest:
    """Mergeable digest of log records (see module doc).

    The per-shape tables are polars frames, so building, merging and compacting
    stay vectorized; Python objects are only made per *template* when asked for.
    """

    def __init__(self, *, bucket_seconds: float = BUCKET_SECONDS, max_linked_spans: int | None = None) -> None:
        """``max_linked_spans``: the span links this digest keeps at most (default ``MAX_SPAN_LINKS``);
        a streaming bucket keeps fewer, so that a window's buckets merged hold about that many."""
        if not (isinstance(bucket_seconds, (int, float)) and bucket_seconds > 0 and math.isfinite(bucket_seconds)):
            raise ValueError(f"bucket_seconds must be a positive number, got {bucket_seconds!r}")
        if max_linked_spans is not None and max_linked_spans < 1:
            raise ValueError(f"max_linked_spans must be positive, got {max_linked_spans}")
        self.bucket_seconds = float(bucket_seconds)
        self.max_linked_spans = max_linked_spans or MAX_SPAN_LINKS
        #: the span sample's threshold: links are kept for spans whose hash is below it
        self.span_threshold = span_sample.SPACE
        self.lines = 0
        self.services: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self._tables: dict[str, pl.DataFrame] = {"shapes": _empty(_SHAPES_SCHEMA)}
        self._tables.update({name: _empty(schema) for name, schema in _SIDE_SCHEMA.items()})
        self._pending: list[dict[str, pl.DataFrame]] = []
        self._templates: dict[str, TemplateStats] | None = None
        self._shape_template: dict[str, tuple[str, str]] | None = None

    # ------------------------------------------------------------- building
    @classmethod
    def from_records(cls, records: Iterable[LogRecord], *, bucket_seconds: float = BUCKET_SECONDS) -> Digest:
        rows = list(records)
        frame = event_frame(
            [r.message for r in rows], [r.timestamp for r in rows], [r.level for r in rows],
            [r.service for r in rows], [r.span_id for r in rows],
        )
        return cls.from_frame(frame, bucket_seconds=bucket_seconds)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, *, bucket_seconds: float = BUCKET_SECONDS,
                   max_linked_spans: int | None = None) -> Digest:
        """Vectorized build from a frame with ``message, timestamp, level, service`` (and maybe ``span``) columns."""
        digest = cls(bucket_seconds=bucket_seconds, max_linked_spans=max_linked_spans)
        if frame.height == 0:
            return digest
        msg = pl.col("message").cast(pl.String).fill_null("")
        # the intake reads the span from the raw line (from_records from the record or its message)
        span = pl.col("span").cast(pl.String) if "span" in frame.columns else msg.str.extract(SPAN_ID_PATTERN, 1).str.to_lowercase()
        df = frame.select(
            msg.alias("message"),
            pl.col("timestamp").cast(pl.Float64),
            pl.col("level").cast(pl.String),
            pl.col("service").cast(pl.String),
            span.alias("span"),
        )
        # the first line names the event; a joined stack trace only adds exception types
        first = df.get_column("message").str.split_exact("\n", 1).struct.field("field_0")
        first = first.str.replace_all(TRACE_CONTEXT_PATTERN, "")
        failed = pl.col("level").str.to_uppercase().is_in(ERROR_LEVELS).fill_null(False) | first.str.contains(ACCESS_SERVER_ERROR)
        df = df.with_columns(
            mask_series(first).alias("shape"),
            ((pl.col("timestamp") / bucket_seconds).floor() * bucket_seconds).alias("bucket"),
            failed.alias("failed"),
        )
        digest.lines = df.height
        t = digest._tables
        t["shapes"] = df.group_by("shape").agg(
            pl.len().cast(pl.Int64).alias("count"),
            pl.col("timestamp").min().alias("first"),
            pl.col("timestamp").max().alias("last"),
            pl.concat_list(pl.col("message").first(), pl.col("message").last())
            .list.eval(pl.element().str.slice(0, MAX_SAMPLE_CHARS)).list.unique(maintain_order=True).alias("samples"),
            pl.col("message").filter(pl.col("failed")).head(MAX_SAMPLES).str.slice(0, MAX_SAMPLE_CHARS)
            .unique(maintain_order=True).alias("error_samples"),
        )
        for name, key in _SIDE.items():
            if name in ("exceptions", "failures"):
                continue
            col = key
            t[name] = (
                df.filter(pl.col(col).is_not_null()).group_by("shape", col).agg(pl.len().cast(pl.Int64).alias("n"))
            )
        t["failures"] = (
            df.filter(pl.col("failed")).group_by("shape", pl.col("service").fill_null("")).agg(pl.len().cast(pl.Int64).alias("n"))
        )
        t["exceptions"] = (
            df.filter(pl.col("message").str.contains(r"(?:Exception|Error|Throwable|Fault)\b"))
            .select("shape", pl.col("message").str.extract_all(EXCEPTION_PATTERN).list.unique().alias("exception"))
            .explode("exception")
            .drop_nulls("exception")
            .group_by("shape", "exception")
            .agg(pl.len().cast(pl.Int64).alias("n"))
        )
        digest._cap_span_links()
        svc = t["services"].group_by("service").agg(pl.col("n").sum())
        digest.services = dict(zip(svc.get_column("service").to_list(), svc.get_column("n").to_list()))
        return digest

    # ------------------------------------------------------------- merging
    def merge(self, other: Digest) -> Digest:
        """A new digest holding both (pure; associative and commutative in templates)."""
        return Digest.merge_all([self, other])

    @classmethod
    def merge_all(cls, digests: Iterable[Digest]) -> Digest:
        digests = list(digests)
        out = cls(bucket_seconds=digests[0].bucket_seconds if digests else BUCKET_SECONDS)
        for d in digests:
            out._take(d)  # compacted once, when read: a context merges hundreds of (service, bucket) digests
        return out

    def absorb(self, other: Digest) -> None:
        """Add ``other`` into this digest in place (``other`` is left unchanged)."""
        self._take(other)
        if len(self._pending) >= _COMPACT_EVERY:
            self._compact()

    def _take(self, other: Digest) -> None:
        if other.bucket_seconds != self.bucket_seconds:
            raise ValueError(
                f"cannot merge digests with different bucket_seconds ({self.bucket_seconds} and {other.bucket_seconds})"
            )
        self.lines += other.lines
        for k, v in other.services.items():
            self.services[k] = self.services.get(k, 0) + v
        for k, v in other.dropped.items():
            self.dropped[k] = self.dropped.get(k, 0) + v
        self.span_threshold = min(self.span_threshold, other.span_threshold)
        self._pending.extend(other._pending)
        self._pending.append(dict(other._tables))  # frames are immutable: sharing is safe
        self._templates = None
        self._shape_template = None

    def compact(self) -> None:
        """Fold the merges not yet folded in. A digest held for long calls it after each merge: merges
        are otherwise folded every ``_COMPACT_EVERY``, and until then each holds its own tables."""
        self._compact()

    def _compact(self) -> None:
        if not self._pending:
            return
        parts = [self._tables, *self._pending]
        self._pending = []
        shapes = pl.concat([p["shapes"] for p in parts], how="vertical_relaxed")
        self._tables = {
            "shapes": shapes.group_by("shape", maintain_order=True).agg(
                pl.col("count").sum(),
                pl.col("first").min(),
                pl.col("last").max(),
                pl.concat_list(_FIRST_LINE, _LAST_LINE).list.drop_nulls().list.unique(maintain_order=True).alias("samples"),
                _ERROR_LINES,
            )
        }
        for name, key in _SIDE.items():
            side = pl.concat([p[name] for p in parts], how="vertical_relaxed")
            self._tables[name] = side.group_by("shape", key).agg(pl.col("n").sum())
        self._cap_span_links()

    def count_dropped(self, counts: dict[str, int]) -> None:
        """Add what the intake dropped, by reason, to what the digest itself left out."""
        for reason, n in counts.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def _cap_span_links(self) -> None:
        """Keep the links of a sample of the spans, at most ``max_linked_spans`` of them, chosen by span id
        (:mod:`anomaly.span_sample`): the lines of the others are counted, never their templates' counts."""
        spans = self._tables["spans"]
        if self.span_threshold >= span_sample.SPACE and spans.height <= self.max_linked_spans:
            return
        hashes = span_sample.span_hashes(spans.get_column("span"))
        self.span_threshold = span_sample.lower_threshold(hashes, self.span_threshold, self.max_linked_spans)
        keep = hashes < self.span_threshold
        if keep.all():
            return
        self._tables["spans"] = spans.filter(keep)
        out = int(spans.filter(~keep).get_column("n").sum())
        self.dropped[SAMPLED_OUT] = self.dropped.get(SAMPLED_OUT, 0) + out

    def keeps_span(self, span_id: str) -> bool:
        """Is this request in the digest's span sample (are its lines' links kept)? A reader that counts
        spans against ``span_templates`` counts only these, so the shares it reads are not biased."""
        return span_sample.kept(span_id, self.span_threshold)

    def _table(self, name: str) -> pl.DataFrame:
        self._compact()
        return self._tables[name]

    # ------------------------------------------------------------- templates
    def _assignment(self) -> dict[str, tuple[str, str]]:
        if self._shape_template is None:
            self._shape_template = assign_templates(self._table("shapes").get_column("shape").to_list())
        return self._shape_template

    def _assignment_frame(self) -> pl.DataFrame:
        assigned = self._assignment()
        return pl.DataFrame(
            {
                "shape": list(assigned),
                "template_id": [v[0] for v in assigned.values()],
                "text": [v[1] for v in assigned.values()],
            },
            schema={"shape": pl.String, "template_id": pl.String, "text": pl.String},
        )

    @property
    def templates(self) -> dict[str, TemplateStats]:
        """template_id -> stats, mined over all shapes (cached until the digest changes)."""
        if self._templates is None:
            self._templates = self._build_templates()
        return self._templates

    def _by_template(self, name: str, key: str, amap: pl.DataFrame) -> dict[str, dict]:
        side = self._table(name).join(amap, on="shape").group_by("template_id", key).agg(pl.col("n").sum())
        out: dict[str, dict] = {}
        for tid, k, n in side.iter_rows():
            out.setdefault(tid, {})[k] = n
        return out

    def _build_templates(self) -> dict[str, TemplateStats]:
        error_words, no_error = re.compile(ERROR_WORDS), re.compile(NO_ERROR_WORDS)
        amap = self._assignment_frame()
        agg = (
            self._table("shapes")
            .join(amap, on="shape")
            .sort(["count", "shape"], descending=[True, False])
            .group_by("template_id", maintain_order=True)
            .agg(
                pl.col("text").first(),
                pl.col("count").sum(),
                pl.col("first").min(),
                pl.col("last").max(),
                _FIRST_LINE.alias("first_line"),
                _LAST_LINE.alias("last_line"),
                _ERROR_LINES,
            )
        )
        levels = self._by_template("levels", "level", amap)
        services = self._by_template("services", "service", amap)
        exceptions = self._by_template("exceptions", "exception", amap)
        failures = self._by_template("failures", "service", amap)
        out: dict[str, TemplateStats] = {}
        for tid, text, count, first, last, first_line, last_line, error_lines in agg.iter_rows():
            samples = _exemplars(first_line, last_line, error_lines)
            exc = exceptions.get(tid, {})
            failed = failures.get(tid, {})
            worded = bool(exc or error_words.search(no_error.sub(" ", text)))
            out[tid] = TemplateStats(
                template_id=tid, text=text, count=count, first_seen=first, last_seen=last,
                samples=list(samples), levels=levels.get(tid, {}), services=services.get(tid, {}), exception_types=exc,
                is_error=bool(worded or failed), failures=failed, worded=worded,
            )
        return out

    def span_templates(self) -> dict[str, dict[str, int]]:
        """span id -> template id -> lines: what each traced request logged, for trace-aware signals."""
        amap = self._assignment_frame()
        side = self._table("spans").join(amap, on="shape").group_by("span", "template_id").agg(pl.col("n").sum())
        out: dict[str, dict[str, int]] = {}
        for span, tid, n in side.iter_rows():
            out.setdefault(span, {})[tid] = n
        return out

    def template_of_shape(self, shape: str) -> str:
        return self._assignment()[shape][0]

    def shape_counts(self) -> dict[str, int]:
        """Distinct masked message -> line count."""
        t = self._table("shapes")
        return dict(zip(t.get_column("shape").to_list(), t.get_column("count").to_list()))

    def shape_bucket_counts(self) -> dict[str, dict[float, int]]:
        out: dict[str, dict[float, int]] = {}
        for shape, b, n in self._table("buckets").iter_rows():
            out.setdefault(shape, {})[b] = n
        return out

    def counts_of(self, other: Digest) -> tuple[dict[str, int], dict[float, dict[str, int]]]:
        """``other``'s lines counted against *this* digest's templates, in total and per bucket.

        Template ids are only comparable within one digest (mining depends on the set
        of shapes), so a baseline is read through the window's templates (``_read_through``).
        """
        through = self._read_through(other)
        counts: dict[str, int] = {}
        buckets: dict[float, dict[str, int]] = {}
        other_buckets = other.shape_bucket_counts()
        for shape, count in other.shape_counts().items():
            tid = through[shape]
            counts[tid] = counts.get(tid, 0) + count
            for b, n in other_buckets.get(shape, {}).items():
                row = buckets.setdefault(b, {})
                row[tid] = row.get(tid, 0) + n
        return counts, dict(sorted(buckets.items()))

    def span_templates_of(self, other: Digest) -> dict[str, dict[str, int]]:
        """``other``'s span id -> template id -> lines, in *this* digest's template ids (a baseline's requests)."""
        through = self._read_through(other)
        out: dict[str, dict[str, int]] = {}
        for shape, span, n in other._table("spans").select("shape", "span", "n").iter_rows():
            row = out.setdefault(span, {})
            tid = through[shape]
            row[tid] = row.get(tid, 0) + n
        return out

    def _read_through(self, other: Digest) -> dict[str, str]:
        """Each of ``other``'s shapes -> the template of *this* digest it belongs to.

        A shape seen in both goes to its template here; any other shape to the template here
        whose text matches it token by token; what matches none is keyed
        ``BASELINE_PREFIX + its own template id``.
        """
        by_len: dict[int, list[tuple[str, list[str]]]] = {}
        for tid, t in self.templates.items():
            toks = tokenize(t.text)
            by_len.setdefault(len(toks), []).append((tid, toks))
        mine = self._assignment()
        out: dict[str, str] = {}
        for shape in other.shape_counts():
            if shape in mine:
                out[shape] = mine[shape][0]
                continue
            toks = tokenize(shape)
            tid = next((t for t, tt in by_len.get(len(toks), ()) if _matches(tt, toks)), None)
            out[shape] = tid if tid is not None else BASELINE_PREFIX + other.template_of_shape(shape)
        return out

    def template_counts_by_service(self) -> dict[str, dict[str, int]]:
        """service -> template_id -> count."""
        by_t = self._by_template("services", "service", self._assignment_frame())
        out: dict[str, dict[str, int]] = {}
        for tid, svcs in by_t.items():
            for svc, n in svcs.items():
                out.setdefault(svc, {})[tid] = n
        return out

    def bucket_counts(self) -> dict[float, dict[str, int]]:
        """bucket start (unix s) -> template_id -> count (lines without a time are left out)."""
        by_t = self._by_template("buckets", "bucket", self._assignment_frame())
        out: dict[float, dict[str, int]] = {}
        for tid, buckets in by_t.items():
            for b, n in buckets.items():
                out.setdefault(b, {})[tid] = n
        return dict(sorted(out.items()))

    def estimated_bytes(self) -> int:
        """Memory its tables hold (polars' estimate, merges not yet compacted included): what a memory bound counts."""
        return sum(int(t.estimated_size()) for part in (self._tables, *self._pending) for t in part.values())

    @property
    def shapes(self) -> int:
        """Number of distinct masked messages held."""
        return self._table("shapes").height

    # ------------------------------------------------------------- transport
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, columnar (one list per column) so large digests convert fast."""
        self._compact()
        return {
            "version": 2,
            "bucket_seconds": self.bucket_seconds,
            "lines": self.lines,
            "services": dict(self.services),
            "dropped": dict(self.dropped),
            "span_threshold": self.span_threshold,
            "max_linked_spans": self.max_linked_spans,
            "tables": {name: t.to_dict(as_series=False) for name, t in self._tables.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Digest:
        try:
            out = cls(bucket_seconds=float(d.get("bucket_seconds", BUCKET_SECONDS)),
                      max_linked_spans=int(d.get("max_linked_spans", MAX_SPAN_LINKS)))
            out.span_threshold = int(d.get("span_threshold", span_sample.SPACE))
            out.lines = int(d["lines"])
            out.services = {str(k): int(v) for k, v in d.get("services", {}).items()}
            out.dropped = {str(k): int(v) for k, v in d.get("dropped", {}).items()}
            tables = d["tables"]
            shapes = dict(tables["shapes"])
            shapes.setdefault("error_samples", [[] for _ in shapes.get("shape", [])])  # a digest of version 2
            out._tables["shapes"] = pl.DataFrame(shapes, schema=_SHAPES_SCHEMA)
            for name, schema in _SIDE_SCHEMA.items():
                out._tables[name] = pl.DataFrame(tables.get(name, {k: [] for k in schema}), schema=schema)
        except (KeyError, TypeError, ValueError, AttributeError, pl.exceptions.PolarsError) as exc:
            raise ValueError(f"not a valid Digest dict: {exc!r}") from exc
        return out

    def __repr__(self) -> str:
        return f"Digest(lines={self.lines}, shapes={self.shapes}, services={len(self.services)})"
