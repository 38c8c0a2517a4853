"""Line intake: raw lines (plain text, JSON lines, docker ``{"log": ...}``, logfmt) to records.

Transport prefixes and envelopes of exported logs (Loki, stern, kubectl, docker compose, CRI,
journald, syslog, Kubernetes events) are read and stripped first (``anomaly.formats``): they
give the line's service, pod, container and host; a pod's name gives its workload
(``anomaly.pods``).

The work runs as vectorized polars kernels over a batch of lines, so the same code
serves a handful of lines from an API request and millions in the benchmark.
Bad lines never raise: oversized lines are truncated, undecodable bytes are replaced,
binary garbage and empty lines are dropped, and every one of these is counted. A time
outside ``EARLIEST_SECONDS`` (1970) .. now + ``MAX_FUTURE_SECONDS`` (a day: clock skew), or
not finite, is treated as missing and counted as ``timestamp_out_of_range``.
Stack-trace continuation lines are joined to the record they belong to.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from anomaly.formats import (
    CLF_TIME, DAY_MONTH_YEAR_START, OTHER_TIME_SHAPE, iso_time_text, klog_level, on_rows, spring_app, strip_transport, with_syslog_year,
)
from anomaly.pods import is_pod_name, workload_expr
from anomaly.records import LogRecord

_LEVEL_ALIASES = {
    "FATAL": "FATAL", "CRITICAL": "FATAL", "CRIT": "FATAL", "EMERG": "FATAL", "ALERT": "FATAL", "PANIC": "FATAL",
    "SEVERE": "ERROR", "ERROR": "ERROR", "ERR": "ERROR", "E": "ERROR",
    "WARN": "WARN", "WARNING": "WARN", "W": "WARN",
    "INFO": "INFO", "NOTICE": "INFO", "INFORMATION": "INFO", "I": "INFO",
    "DEBUG": "DEBUG", "D": "DEBUG", "FINE": "DEBUG", "TRACE": "TRACE", "FINER": "TRACE", "FINEST": "TRACE",
    # pino / bunyan numeric levels
    "10": "TRACE", "20": "DEBUG", "30": "INFO", "40": "WARN", "50": "ERROR", "60": "FATAL",
}
_LEVEL_WORD = r"(?i)(?:^|[\s\[|<(])(FATAL|CRITICAL|CRIT|PANIC|SEVERE|ERROR|ERR|WARNING|WARN|NOTICE|INFO|DEBUG|TRACE)(?:$|[\s\]|>):])"
_CONTINUATION = (
    r"^(?:\s+\S|Caused by:|Traceback \(most recent call last\)|\s*\.\.\. \d+ (?:more|common frames omitted)"
    r"|During handling of the above exception|The above exception was the direct cause"  # Python chained exceptions
    r"|goroutine \d+ \[|created by |\[signal )"  # Go panics
)
#: an exception line (Java, Python) or a Go frame's function line: part of the trace next to it
_EXCEPTION_LINE = (
    r"^(?:(?:[a-zA-Z_][\w$]*\.)*[A-Z][\w$]*(?:Error|Exception|Throwable|Fault|Timeout|Interrupt)\b(?::|$)"
    r"|(?:[a-zA-Z_][\w$]*\.)+[A-Z][\w$]*: |[\w./*()-]+\(.*\)$)"
)
_BINARY = r"[\x00-\x08\x0e-\x1f\x7f]"
#: the times a line may carry: from the epoch to a day ahead of this machine's clock (skew between
#: hosts); anything else (``"ts": 1e30``, a year 5138, -5, NaN) is a broken clock or a hostile line
EARLIEST_SECONDS = 0.0
MAX_FUTURE_SECONDS = 86_400.0

#: JSON keys read per field, anywhere in the object (nested keys such as
#: ``kubernetes.pod_name`` are found by their last name).
_JSON_KEYS = {
    "log": ("log",),
    # structlog's ``event``, Serilog's compact ``@m``, GELF's ``short_message``, Google Cloud
    # Logging's ``textPayload``
    "message": ("message", "msg", "MESSAGE", "Message", "text", "event", "@m", "short_message", "textPayload"),
    # Datadog's log export calls the level ``status`` (last: elsewhere it is often an HTTP status,
    # which names no level and is left out)
    "level": ("level", "severity", "lvl", "loglevel", "levelname", "Level", "@l", "status"),
    # python-json-logger's ``asctime``, Envoy's and Istio's access log ``start_time``, Serilog's ``@t``,
    # log4j2's ``timeMillis``, nginx JSON access logs' ``time_iso8601`` / ``time_local``
    "time": ("time", "timestamp", "@timestamp", "ts", "datetime", "date", "asctime", "start_time", "@t",
             "timeMillis", "Timestamp", "eventTime", "time_iso8601", "time_local"),
    "service": ("service", "service.name", "app", "application"),
    # a container's name is often generic (``server``, ``app``): the pod's workload comes before it
    "container": ("container_name",),
    "pod": ("pod", "pod_name", "hostname", "host"),
    # the weakest hint: a logger's name (pino's ``name`` is the service; ``cart.api`` names ``cart``)
    "logger": ("logger", "name", "logger_name"),
    # the cause of a structured error line is usually in a field of its own, not in the message
    "error": ("error", "err", "exception", "exc_info", "stack_trace", "stacktrace"),
}
#: How a log line names the trace span it was written in: OTel/JSON fields (``"span_id": ...``,
#: ``spanId``), logfmt (``span_id=...``) and the inline form of logback/log4j MDC patterns
#: (``SpanID: 0ba8...``). Read from the raw line, before a structured line is reduced to its message.
SPAN_ID_PATTERN = r"(?i)\bspan[_ -]?id\b[\"']?\s*[:=]\s*[\"']?([0-9a-f]{8,32})\b"
_JSON_UNESCAPE = ((r"\n", "\n"), (r"\t", "\t"), (r"\r", ""), (r'\"', '"'), (r"\/", "/"), (r"\\", "\\"))


@dataclass
class Intake:
    """Parsed records and the counts of what was dropped or repaired, by reason."""

    records: list[LogRecord]
    dropped: dict[str, int] = field(default_factory=dict)


def _to_series(lines: Iterable[str | bytes], max_line_bytes: int, dropped: dict[str, int]) -> pl.Series:
    """Lines as a string Series; bytes are decoded (and counted) only when present."""
    if not isinstance(lines, list):
        lines = list(lines)
    try:
        return pl.Series("text", lines, dtype=pl.String)  # all str: no Python loop
    except (TypeError, pl.exceptions.PolarsError):
        return pl.Series("text", _decode(lines, max_line_bytes, dropped), dtype=pl.String)


def _decode(lines: Iterable[str | bytes], max_line_bytes: int, dropped: dict[str, int]) -> list[str]:
    out: list[str] = []
    append = out.append
    for line in lines:
        if isinstance(line, (bytes, bytearray, memoryview)):
            raw = bytes(line)
            if len(raw) > max_line_bytes:
                raw = raw[:max_line_bytes]
                dropped["oversized"] = dropped.get("oversized", 0) + 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", errors="replace")
                dropped["undecodable"] = dropped.get("undecodable", 0) + 1
        elif isinstance(line, str):
            text = line
        else:
            dropped["not_text"] = dropped.get("not_text", 0) + 1
            continue
        append(text)
    return out


def _json_field(keys: tuple[str, ...], *, numbers: bool = False, unescape: bool = False) -> pl.Expr:
    """First string (or number) value of any of ``keys``, JSON-unescaped.

    A regex over the raw object (one vectorized pass per field) instead of a JSON
    parser: polars' decoder fails a whole batch on one malformed or oddly typed row.
    An escaped quote never ends a match, so keys inside string values are not read.
    """
    alt = "|".join(k.replace(".", r"\.") for k in keys)
    t = pl.col("text")
    if numbers:
        pat = rf'"(?:{alt})"\s*:\s*"?((?:[^"\\]|\\.)*?)[",}}]'
    else:
        pat = rf'"(?:{alt})"\s*:\s*"((?:[^"\\]|\\.)*)"'
    value = t.str.extract(pat, 1)
    if unescape:
        for esc, plain in _JSON_UNESCAPE:
            value = value.str.replace_all(esc, plain, literal=True)
    return value


_on_rows = on_rows


_NESTED = ("kubernetes", "resource", "fields")
#: app labels as Kubernetes metadata carries them (Fluent Bit and Vector under ``kubernetes``, Cloud
#: Logging's ``labels`` with its ``k8s-pod/`` prefix and ``/`` in a key written ``_``)
_APP_LABELS = ("app", "app.kubernetes.io/name", "k8s-app", "k8s-pod/app", "k8s-pod/app_kubernetes_io/name")
_LABELS = pl.Struct({k: pl.String for k in _APP_LABELS})
_NESTED_FIELDS = {k: pl.String for k in ("pod_name", "container_name", "pod", "container", "service")}
#: the extra metadata each wrapper may carry: Kubernetes labels, or (Cloud Logging's
#: ``resource.labels`` of a ``k8s_container``) the pod and container
_NESTED_EXTRA = {
    "kubernetes": {"labels": _LABELS, "pod_labels": _LABELS},
    "resource": {"labels": pl.Struct({"pod_name": pl.String, "container_name": pl.String})},
    "fields": {},
}
#: docker json-file's ``attrs``: the compose service a container runs
_COMPOSE_LABEL = "com.docker.compose.service"
_JSON_SCHEMA = pl.Struct(
    {k: pl.String for keys in _JSON_KEYS.values() for k in keys if "." not in k}
    | {n: pl.Struct(_NESTED_FIELDS | _NESTED_EXTRA[n]) for n in _NESTED}
    | {"stream": pl.String, "attrs": pl.Struct({_COMPOSE_LABEL: pl.String}), "labels": _LABELS}
)


def _json_decoded(df: pl.DataFrame) -> pl.DataFrame | None:
    """All fields in one JSON-decoder pass, or None when a row does not fit the schema."""
    try:
        dec = df.select(pl.col("text").str.json_decode(_JSON_SCHEMA).alias("j")).to_series().struct.unnest()
    except pl.exceptions.PolarsError:
        return None

    def first(keys: tuple[str, ...], nested: tuple[str, ...] = ()) -> pl.Expr:
        cols = [pl.col(k) for k in keys if "." not in k]
        cols += [pl.col(n).struct.field(f) for n in _NESTED for f in nested]
        return pl.coalesce(cols)

    def app_label() -> pl.Expr:
        holders = [pl.col("labels")] + [pl.col("kubernetes").struct.field(f) for f in ("labels", "pod_labels")]
        return pl.coalesce([h.struct.field(k) for k in _APP_LABELS for h in holders])

    resource = pl.col("resource").struct.field("labels")

    fields = dec.select(
        first(_JSON_KEYS["log"]).alias("j_log"),
        first(_JSON_KEYS["message"]).alias("j_msg"),
        first(_JSON_KEYS["level"]).alias("j_level"),
        first(_JSON_KEYS["time"]).alias("j_time"),
        pl.coalesce(first(_JSON_KEYS["service"], ("service",)), app_label()).alias("j_service"),
        pl.coalesce(first(_JSON_KEYS["container"], ("container_name", "container")), resource.struct.field("container_name")).alias("j_container"),
        pl.coalesce(first(_JSON_KEYS["pod"], ("pod_name", "pod")), resource.struct.field("pod_name")).alias("j_pod"),
        first(_JSON_KEYS["error"]).alias("j_error"),
        first(_JSON_KEYS["logger"]).alias("j_logger"),
        pl.col("stream").alias("j_stream"),
        pl.col("attrs").struct.field(_COMPOSE_LABEL).alias("j_compose"),
    )
    return pl.concat([df, fields], how="horizontal")


_J_COLUMNS = ("j_log", "j_msg", "j_level", "j_time", "j_service", "j_container", "j_pod", "j_error", "j_logger", "j_stream", "j_compose")


def _json_fields_by_regex(df: pl.DataFrame) -> pl.DataFrame:
    """The ``j_*`` columns read by key name anywhere in the object (``_json_field``)."""
    return df.drop([c for c in _J_COLUMNS if c in df.columns]).with_columns(
        _json_field(_JSON_KEYS["log"], unescape=True).alias("j_log"),
        _json_field(_JSON_KEYS["message"], unescape=True).alias("j_msg"),
        _json_field(_JSON_KEYS["level"]).alias("j_level"),
        _json_field(_JSON_KEYS["time"], numbers=True).alias("j_time"),
        _json_field(_JSON_KEYS["service"] + _APP_LABELS).alias("j_service"),
        _json_field(_JSON_KEYS["container"]).alias("j_container"),
        _json_field(_JSON_KEYS["pod"]).alias("j_pod"),
        _json_field(_JSON_KEYS["error"], unescape=True).alias("j_error"),
        _json_field(_JSON_KEYS["logger"]).alias("j_logger"),
        _json_field(("stream",)).alias("j_stream"),
        _json_field((_COMPOSE_LABEL,)).alias("j_compose"),
    )


def _parse_json_rows(df: pl.DataFrame) -> pl.DataFrame:
    """Fill message/level/time/service/pod from JSON objects; docker's ``log`` is unwrapped.

    The decoder reads the usual top-level and Kubernetes-metadata keys in one pass. Rows where it
    finds neither a message nor a docker ``log`` keep the event one level down (an Elasticsearch
    hit's ``_source``, Datadog's ``attributes``, Cloud Logging's ``jsonPayload``), or do not fit
    its schema at all: their keys are read by name wherever they are.
    """
    js = _json_decoded(df)
    if js is None:  # malformed or oddly typed rows: the per-field regex path copes with them
        js = _json_fields_by_regex(df)
    else:
        js = on_rows(js, pl.col("j_log").is_null() & pl.col("j_msg").is_null(), _json_fields_by_regex)
    return js.with_columns(
        # docker wrapper: the inner text is parsed again as a line of its own
        pl.when(pl.col("j_log").is_not_null()).then(pl.col("j_log").str.strip_chars_end("\r\n"))
        .when(pl.col("j_msg").is_not_null()).then(_with_error(pl.col("j_msg"), pl.col("j_error")))
        .otherwise(pl.col("text")).alias("text"),
        (pl.col("j_log").is_null()).alias("structured"),
        pl.col("j_log").is_not_null().alias("wrapped"),
        pl.coalesce("level", "j_level").alias("level"),
        pl.coalesce("time", "j_time").alias("time"),
        pl.coalesce("service", "j_compose", "j_service").alias("service"),
        pl.coalesce("pod", "j_pod").alias("pod"),
        pl.coalesce("container", "j_container").alias("container"),
        pl.coalesce("_logger", "j_logger").alias("_logger"),
        # the stream a docker-wrapped line came from: its trace lines are joined within it
        pl.coalesce("_src", pl.when(pl.col("j_log").is_not_null()).then(
            pl.concat_str(["j_compose", "j_stream"], separator="/", ignore_nulls=True))).alias("_src"),
    ).drop(*_J_COLUMNS)


def _with_error(message: pl.Expr, error: pl.Expr) -> pl.Expr:
    """A structured line's message with its error field appended (``msg: error``).

    ``msg="upstream request failed" error="getaddrinfo ENOTFOUND inventory"``: the message says
    that something failed, the error field says why; templates and the lexicon need both.
    """
    has_error = error.is_not_null() & (error.str.len_chars() > 0) & ~message.str.contains(error, literal=True)
    return pl.when(has_error).then(pl.concat_str([message, pl.lit(": "), error])).otherwise(message)


def _logfmt_value(key_alt: str) -> pl.Expr:
    """Value of the first of ``key_alt`` keys: one regex pass, then quotes undone."""
    pat = rf'\b(?:{key_alt})=("(?:[^"\\]|\\.)*"|\S*)'
    raw = pl.col("text").str.extract(pat, 1)
    quoted = raw.str.starts_with('"')
    unquoted = raw.str.slice(1, raw.str.len_chars() - 2).str.replace_all('\\"', '"', literal=True)
    return pl.when(quoted).then(unquoted).otherwise(raw)


def _parse_logfmt_rows(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(
        _with_error(pl.coalesce(_logfmt_value("msg|message"), pl.col("text")), _logfmt_value("|".join(_JSON_KEYS["error"]))).alias("text"),
        pl.coalesce("level", pl.col("text").str.extract(r"\b(?:level|lvl|severity)=\"?(\w+)", 1)).alias("level"),
        pl.coalesce("time", pl.col("text").str.extract(r"\b(?:ts|time|timestamp)=\"?([^\s\"]+)", 1)).alias("time"),
        pl.coalesce("service", pl.col("text").str.extract(r"\b(?:service|app|svc)=\"?([^\s\"]+)", 1)).alias("service"),
        pl.coalesce("pod", pl.col("text").str.extract(r"\b(?:pod|host)=\"?([^\s\"]+)", 1)).alias("pod"),
        pl.lit(True).alias("structured"),
    )


#: a plain line's header: timestamp, then maybe a level, then the message
_HEADER = (
    rf"^\s*\[?(?P<ts>(?:\d{{4}}[-/]\d{{2}}[-/]\d{{2}}[T ]|{DAY_MONTH_YEAR_START})"
    r"\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:\s?(?:Z|[+-]\d{2}:?\d{2}|UTC))?)\]?"
    r"\s*(?:\[?(?P<lvl>(?i:FATAL|CRITICAL|ERROR|WARN|WARNING|INFO|DEBUG|TRACE))\]?\s*[:\-]?\s+)?"
)


_NAMED = r"^([a-z][a-z0-9]*(?:[-_][a-z0-9]+)+)(?::\s*|\s+)(\S)"


def _parse_plain_rows(df: pl.DataFrame) -> pl.DataFrame:
    h = pl.col("text").str.extract_groups(_HEADER)
    df = df.with_columns(h.alias("h"))
    df = df.with_columns(
        pl.coalesce("time", pl.col("h").struct.field("ts"), pl.col("text").str.extract(CLF_TIME, 1)).alias("time"),
        pl.coalesce("level", pl.col("h").struct.field("lvl")).alias("level"),
        pl.when(pl.col("h").struct.field("ts").is_not_null())
        .then(pl.col("text").str.replace(_HEADER, ""))
        .otherwise(pl.col("text")).alias("text"),
    )
    # ``<time> ERROR web-api worker loop lagging``: a hyphenated name right after the level is the
    # writer (a bare word there is too often the message's first word to count)
    named = pl.col("h").struct.field("lvl").is_not_null() & pl.col("service").is_null() & pl.col("text").str.contains(_NAMED)
    return df.with_columns(
        pl.when(named).then(pl.col("text").str.extract(_NAMED, 1)).otherwise("service").alias("service"),
        pl.when(named).then(pl.col("text").str.replace(_NAMED, "${2}")).otherwise("text").alias("text"),
    ).drop("h")


def _normalize_level(col: pl.Expr) -> pl.Expr:
    return col.str.strip_chars().str.to_uppercase().replace_strict(_LEVEL_ALIASES, default=None, return_dtype=pl.String)


def _with_timestamp(df: pl.DataFrame, source: str) -> pl.DataFrame:
    """Add ``timestamp`` (unix s) parsed from column ``source``.

    ISO-8601-like text: the fixed-width ``YYYY-MM-DD[T ]HH:MM:SS`` head goes through
    a strptime kernel, the fraction and the offset through two short regexes on the
    tail. The few other shapes common in logs (the access logs' ``01/Dec/2025:11:25:00
    +0000``, Go's ``2025/03/14 10:22:00``, Java's ``14-Mar-2025 10:22:00``) are first
    rewritten to that text. Numeric text is read as epoch seconds, milliseconds, micro- or nanoseconds.
    """
    df = on_rows(df, pl.col(source).str.contains(OTHER_TIME_SHAPE),
                 lambda d: d.with_columns(iso_time_text(pl.col(source)).alias(source)))
    col = pl.col(source).str.strip_chars()
    head = col.str.slice(0, 19).str.replace(" ", "T", literal=True)
    base = head.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="ms").dt.epoch("ms") / 1000.0
    tail = pl.col("_tail")
    frac = ("0." + tail.struct.field("f")).cast(pl.Float64, strict=False).fill_null(0.0)
    tz = tail.struct.field("tz")
    sign = pl.when(tz.str.starts_with("-")).then(-1.0).otherwise(1.0)
    hh = tz.str.slice(1, 2).cast(pl.Float64, strict=False)
    mm = tz.str.replace(":", "", literal=True).str.slice(3, 2).cast(pl.Float64, strict=False)
    offset = (sign * (hh * 3600 + mm.fill_null(0) * 60)).fill_null(0.0)
    num = col.cast(pl.Float64, strict=False)
    epoch = (
        pl.when(num > 1e17).then(num / 1e9).when(num > 1e14).then(num / 1e6)
        .when(num > 1e11).then(num / 1e3).when(num > 1e8).then(num).otherwise(None)
    )
    df = df.with_columns(
        col.str.slice(19).str.extract_groups(r"^(?:[.,](?P<f>\d{1,9}))?\s?(?P<tz>[+-]\d{2}:?\d{2})?").alias("_tail")
    )
    return df.with_columns(pl.coalesce(epoch, base + frac - offset).alias("timestamp")).drop("_tail")


def parse_frame(
    lines: Iterable[str | bytes], *, service: str | None = None, max_line_bytes: int = 65_536
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Vectorized intake: a frame of ``message, timestamp, level, service, pod, container, host, span`` and drop counts."""
    dropped: dict[str, int] = {}
    df = _to_series(lines, max_line_bytes, dropped).to_frame().with_row_index("row")
    t = pl.col("text")
    if df.select(t.str.ends_with("\n").any() | t.str.ends_with("\r").any()).item():
        df = df.with_columns(t.str.strip_chars_end("\r\n"))
    over = int(df.select((t.str.len_bytes() > max_line_bytes).sum()).item())
    if over:
        dropped["oversized"] = dropped.get("oversized", 0) + over
        df = df.with_columns(
            pl.when(t.str.len_bytes() > max_line_bytes)
            .then(t.str.slice(0, max_line_bytes // 4) + " …[truncated]")
            .otherwise(t).alias("text")
        )
    keep = t.str.contains(r"\S")
    n_empty = df.height - int(df.select(keep.sum()).item())
    if n_empty:
        dropped["empty"] = dropped.get("empty", 0) + n_empty
        df = df.filter(keep)
    if df.select(t.str.contains(_BINARY).any()).item():
        binary = t.str.count_matches(_BINARY) * 10 > t.str.len_chars()
        n_bin = int(df.select(binary.sum()).item())
        if n_bin:
            dropped["binary"] = dropped.get("binary", 0) + n_bin
            df = df.filter(~binary)
    null = pl.lit(None, dtype=pl.String)
    df = df.with_columns(
        level=null, time=null, service=null, pod=null, container=null, host=null, _logger=null, _src=null,
        structured=pl.lit(False), wrapped=pl.lit(False), _partial=pl.lit(None, dtype=pl.Boolean),
        span=t.str.extract(SPAN_ID_PATTERN, 1).str.to_lowercase(),
    )
    df = strip_transport(df)
    is_json = t.str.starts_with("{") & t.str.ends_with("}")
    df = _on_rows(df, is_json, _parse_json_rows)
    df = _on_rows(df, pl.col("wrapped") & is_json, _parse_json_rows)  # JSON inside a docker wrapper
    is_logfmt = ~pl.col("structured") & t.str.contains(r"^\s*[\w.@-]+=") & t.str.contains(r"(?:^|\s)(?:msg|message)=")
    df = _on_rows(df, is_logfmt, _parse_logfmt_rows)
    df = _on_rows(df, ~pl.col("structured"), _parse_plain_rows)
    df = _join_continuations(df)  # from here on, one row per record
    df = spring_app(klog_level(df))
    df = _on_rows(
        df, pl.col("level").is_null(),
        lambda d: d.with_columns(t.str.slice(0, 120).str.extract(_LEVEL_WORD, 1).alias("level")),
    )
    df = _with_timestamp(df, "time")
    sane = pl.col("timestamp").is_between(EARLIEST_SECONDS, time.time() + MAX_FUTURE_SECONDS)  # NaN, inf: false
    n_insane = int(df.select((pl.col("timestamp").is_not_null() & ~sane).sum()).item())
    if n_insane:
        dropped["timestamp_out_of_range"] = dropped.get("timestamp_out_of_range", 0) + n_insane
        df = df.with_columns(pl.when(sane).then(pl.col("timestamp")).alias("timestamp"))
    df = with_syslog_year(df).with_columns(
        _normalize_level(pl.col("level")).alias("level"),
        _service(pl.lit(service, dtype=pl.String)).alias("service"),
    )
    return df.select(pl.col("text").alias("message"), "timestamp", "level", "service", "pod", "container", "host", "span"), dropped


#: first segments of a logger name that name an organisation, not a service (``com.shop.Orders``)
_ORG_SEGMENTS = r"^(?:com|org|net|io|de|ch|uk|fr|nl|java|javax|jdk|sun|root|main|__main__|app|uvicorn|gunicorn|django|celery)$"


def _service(default: pl.Expr) -> pl.Expr:
    """The line's service: what the wrapper or line says, else the pod's workload, the container, the logger."""
    pod = pl.col("pod")
    logger = pl.col("_logger").str.extract(r"^([\w-]+)", 1)
    return pl.coalesce(
        "service",
        pl.when(is_pod_name(pod)).then(workload_expr(pod)),
        "container",
        pl.when(~logger.str.contains(_ORG_SEGMENTS)).then(logger),
        default,
    )


def _join_continuations(df: pl.DataFrame) -> pl.DataFrame:
    """Join CRI partial lines, then stack-trace lines (indented ``at``, ``Caused by:``, the exception line).

    Lines are joined within the stream they came from (``_src``: a pod's container, a compose
    service, a Loki label set), so a trace whose lines came interleaved with other pods' lines
    (stern, docker JSON per line) is still one record. A line without a prefix belongs to the
    stream of the line before it.
    """
    keyed = df.get_column("_src").null_count() < df.height
    if keyed:
        df = df.with_columns(pl.col("_src").forward_fill().fill_null("").alias("_stream"))

    def over(e: pl.Expr) -> pl.Expr:
        return e.over("_stream") if keyed else e

    if df.get_column("_partial").any():
        df = _merge(df, over(pl.col("_partial").shift(1)).fill_null(False), "", keyed)
    t = pl.col("text")
    cont = t.str.contains(_CONTINUATION)
    # an exception line belongs to the trace around it (frames after it, or before it)
    exc_after = t.str.contains(_EXCEPTION_LINE) & (over(cont.shift(1)).fill_null(False) | over(cont.shift(-1)).fill_null(False))
    is_cont = (cont | exc_after) & (over(pl.int_range(pl.len())) > 0)
    df = _merge(df, is_cont, "\n", keyed)
    return df.drop("_stream", "_partial", "_src", strict=False)


def _merge(df: pl.DataFrame, is_cont: pl.Expr, separator: str, keyed: bool) -> pl.DataFrame:
    """Rows flagged ``is_cont`` joined to the record before them (in their stream when ``keyed``)."""
    df = df.with_columns(is_cont.alias("_cont"))
    if not df.get_column("_cont").any():
        return df.drop("_cont")
    head = pl.when(~pl.col("_cont")).then(pl.col("row")).forward_fill()  # the row that starts each line's record
    df = df.with_columns((head.over("_stream") if keyed else head).alias("_record"))
    # each record's text joined, written over its first row's text; the other rows go
    trace_ids = df.filter(pl.col("_cont")).get_column("_record").unique().implode()
    texts = (
        df.filter(pl.col("_record").is_in(trace_ids)).group_by("_record")
        .agg(pl.col("text").str.join(separator)).sort("_record").get_column("text")
    )
    heads = df.filter(~pl.col("_cont"))
    idx = heads.select(pl.col("_record").is_in(trace_ids)).to_series().arg_true()
    return heads.with_columns(heads.get_column("text").scatter(idx, texts)).drop("_record", "_cont")


def parse_lines(
    lines: Iterable[str | bytes], *, service: str | None = None, max_line_bytes: int = 65_536
) -> Intake:
    """Parse raw lines into records; never raises on bad lines (see module doc)."""
    df, dropped = parse_frame(lines, service=service, max_line_bytes=max_line_bytes)
    records = [
        LogRecord(message=m, timestamp=ts, level=lv, service=sv, pod=pd, container=ct, host=hs, span_id=sp)
        for m, ts, lv, sv, pd, ct, hs, sp in zip(*(df.get_column(c).to_list() for c in df.columns))
    ]
    return Intake(records=records, dropped=dropped)
