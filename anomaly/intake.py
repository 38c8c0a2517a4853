"""Line intake: raw lines (plain text, JSON lines, docker ``{"log": ...}``, logfmt) to records.

The work runs as vectorized polars kernels over a batch of lines, so the same code
serves a handful of lines from an API request and millions in the benchmark.
Bad lines never raise: oversized lines are truncated, undecodable bytes are replaced,
binary garbage and empty lines are dropped, and every one of these is counted.
Stack-trace continuation lines are joined to the record they belong to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from anomaly.records import LogRecord

_LEVEL_ALIASES = {
    "FATAL": "FATAL", "CRITICAL": "FATAL", "CRIT": "FATAL", "EMERG": "FATAL", "ALERT": "FATAL", "PANIC": "FATAL",
    "SEVERE": "ERROR", "ERROR": "ERROR", "ERR": "ERROR", "E": "ERROR",
    "WARN": "WARN", "WARNING": "WARN", "W": "WARN",
    "INFO": "INFO", "NOTICE": "INFO", "INFORMATION": "INFO", "I": "INFO",
    "DEBUG": "DEBUG", "D": "DEBUG", "FINE": "DEBUG", "TRACE": "TRACE", "FINER": "TRACE", "FINEST": "TRACE",
}
_LEVEL_WORD = r"(?i)(?:^|[\s\[|<(])(FATAL|CRITICAL|CRIT|PANIC|SEVERE|ERROR|ERR|WARNING|WARN|NOTICE|INFO|DEBUG|TRACE)(?:$|[\s\]|>):])"
_ISO_TS = r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?)\s?(Z|[+-]\d{2}:?\d{2}|UTC)?"
_CONTINUATION = (
    r"^(?:\s+\S|Caused by:|Traceback \(most recent call last\)|\s*\.\.\. \d+ (?:more|common frames omitted))"
)
_EXCEPTION_LINE = r"^(?:[a-zA-Z_][\w$]*\.)*[A-Z][\w$]*(?:Error|Exception|Throwable|Fault)\b(?::|$)"
_BINARY = r"[\x00-\x08\x0e-\x1f\x7f]"

_JSON_FIELDS = {
    "log": ("log",),
    "message": ("message", "msg", "MESSAGE", "Message", "text"),
    "level": ("level", "severity", "lvl", "loglevel", "log.level", "levelname", "Level"),
    "time": ("time", "timestamp", "@timestamp", "ts", "datetime", "date", "t"),
    "service": ("service", "service.name", "app", "application", "logger_service", "container_name"),
    "pod": ("pod", "pod_name", "hostname", "host"),
}


@dataclass
class Intake:
    """Parsed records and the counts of what was dropped or repaired, by reason."""

    records: list[LogRecord]
    dropped: dict[str, int] = field(default_factory=dict)


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


def _first_json_field(col: pl.Expr, keys: tuple[str, ...]) -> pl.Expr:
    exprs = []
    for k in keys:
        path = "$." + k if "." not in k and "@" not in k else f"$['{k}']"
        exprs.append(col.str.json_path_match(path))
        if "." in k:
            exprs.append(col.str.json_path_match("$." + k))
    return pl.coalesce(exprs)


def _parse_json(df: pl.DataFrame) -> pl.DataFrame:
    """Fill message/level/time/service/pod from JSON lines; docker's ``log`` is unwrapped."""
    is_json = pl.col("text").str.starts_with("{") & pl.col("text").str.ends_with("}")
    if not df.select(is_json.any()).item():
        return df
    t = pl.col("text")
    js = df.filter(is_json)
    extracted = js.select(
        pl.col("row"),
        _first_json_field(t, _JSON_FIELDS["log"]).alias("j_log"),
        _first_json_field(t, _JSON_FIELDS["message"]).alias("j_msg"),
        _first_json_field(t, _JSON_FIELDS["level"]).alias("j_level"),
        _first_json_field(t, _JSON_FIELDS["time"]).alias("j_time"),
        _first_json_field(t, _JSON_FIELDS["service"]).alias("j_service"),
        _first_json_field(t, _JSON_FIELDS["pod"]).alias("j_pod"),
        pl.coalesce(t.str.json_path_match("$.kubernetes.pod_name"), t.str.json_path_match("$.kubernetes.pod")).alias("k_pod"),
        t.str.json_path_match("$.kubernetes.container_name").alias("k_service"),
    )
    df = df.join(extracted, on="row", how="left")
    inner = pl.col("j_log").str.strip_chars_end("\r\n")
    return df.with_columns(
        # docker wrapper: the inner text is parsed again as a line of its own
        pl.when(pl.col("j_log").is_not_null()).then(inner)
        .when(pl.col("j_msg").is_not_null()).then(pl.col("j_msg"))
        .otherwise(pl.col("text")).alias("text"),
        pl.col("j_msg").is_not_null().and_(pl.col("j_log").is_null()).alias("structured"),
        pl.coalesce("level", "j_level").alias("level"),
        pl.coalesce("time", "j_time").alias("time"),
        pl.coalesce("service", "j_service", "k_service").alias("service"),
        pl.coalesce("pod", "j_pod", "k_pod").alias("pod"),
    ).drop("j_log", "j_msg", "j_level", "j_time", "j_service", "j_pod", "k_pod", "k_service")


def _logfmt_value(key_alt: str) -> pl.Expr:
    pat = rf'(?:^|\s)(?:{key_alt})=(?:"((?:[^"\\]|\\.)*)"|(\S*))'
    t = pl.col("text")
    return pl.coalesce(t.str.extract(pat, 1), t.str.extract(pat, 2))


def _parse_logfmt(df: pl.DataFrame) -> pl.DataFrame:
    is_logfmt = (~pl.col("structured")) & pl.col("text").str.contains(r"(?:^|\s)(?:msg|message)=") & pl.col(
        "text"
    ).str.contains(r"^\s*[\w.@]+=")
    if not df.select(is_logfmt.any()).item():
        return df
    return df.with_columns(
        pl.when(is_logfmt).then(_logfmt_value("msg|message")).otherwise(pl.col("text")).alias("text"),
        pl.when(is_logfmt).then(pl.coalesce("level", _logfmt_value("level|lvl|severity"))).otherwise("level").alias("level"),
        pl.when(is_logfmt).then(pl.coalesce("time", _logfmt_value("ts|time|timestamp"))).otherwise("time").alias("time"),
        pl.when(is_logfmt).then(pl.coalesce("service", _logfmt_value("service|app|svc"))).otherwise("service").alias("service"),
        pl.when(is_logfmt).then(pl.coalesce("pod", _logfmt_value("pod|host"))).otherwise("pod").alias("pod"),
        (pl.col("structured") | is_logfmt).alias("structured"),
    )


def _normalize_level(col: pl.Expr) -> pl.Expr:
    return col.str.strip_chars().str.to_uppercase().replace_strict(_LEVEL_ALIASES, default=None, return_dtype=pl.String)


def _parse_time(col: pl.Expr) -> pl.Expr:
    """Unix seconds from ISO-8601-like text (offset honoured) or epoch s/ms/us/ns."""
    iso = col.str.extract(_ISO_TS, 1).str.replace(",", ".", literal=True).str.replace(" ", "T", literal=True)
    naive = iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us").dt.epoch("us") / 1e6
    tz = col.str.extract(_ISO_TS, 2)
    sign = pl.when(tz.str.starts_with("-")).then(-1.0).otherwise(1.0)
    hh = tz.str.slice(1, 2).cast(pl.Float64, strict=False)
    mm = tz.str.replace(":", "", literal=True).str.slice(3, 2).cast(pl.Float64, strict=False)
    offset = (sign * (hh * 3600 + mm.fill_null(0) * 60)).fill_null(0.0)
    num = col.cast(pl.Float64, strict=False)
    epoch = (
        pl.when(num > 1e17).then(num / 1e9).when(num > 1e14).then(num / 1e6)
        .when(num > 1e11).then(num / 1e3).when(num > 1e8).then(num).otherwise(None)
    )
    return pl.coalesce(epoch, naive - offset)


def parse_frame(
    lines: Iterable[str | bytes], *, service: str | None = None, max_line_bytes: int = 65_536
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Vectorized intake: a frame of ``message, timestamp, level, service, pod`` and drop counts."""
    dropped: dict[str, int] = {}
    texts = _decode(lines, max_line_bytes, dropped)
    df = pl.DataFrame({"text": pl.Series(texts, dtype=pl.String)}).with_row_index("row")
    df = df.with_columns(pl.col("text").str.strip_chars_end("\r\n"))
    over = df.select((pl.col("text").str.len_bytes() > max_line_bytes).sum()).item()
    if over:
        dropped["oversized"] = dropped.get("oversized", 0) + int(over)
        df = df.with_columns(
            pl.when(pl.col("text").str.len_bytes() > max_line_bytes)
            .then(pl.col("text").str.slice(0, max_line_bytes // 4) + " …[truncated]")
            .otherwise(pl.col("text")).alias("text")
        )
    binary = pl.col("text").str.count_matches(_BINARY) * 10 > pl.col("text").str.len_chars()
    empty = pl.col("text").str.strip_chars().str.len_chars() == 0
    flags = df.select(binary.sum().alias("b"), (empty & ~binary).sum().alias("e")).row(0)
    if flags[0]:
        dropped["binary"] = dropped.get("binary", 0) + int(flags[0])
    if flags[1]:
        dropped["empty"] = dropped.get("empty", 0) + int(flags[1])
    df = df.filter(~binary & ~empty)
    null = pl.lit(None, dtype=pl.String)
    df = df.with_columns(
        level=null, time=null, service=null, pod=null, structured=pl.lit(False)
    )
    df = _parse_json(df)
    df = _parse_json(df)  # JSON inside a docker wrapper
    df = _parse_logfmt(df)
    t = pl.col("text")
    head = t.str.slice(0, 120)
    df = df.with_columns(
        pl.coalesce(_normalize_level(pl.col("level")), _normalize_level(head.str.extract(_LEVEL_WORD, 1))).alias("level"),
        pl.coalesce(_parse_time(pl.col("time")), _parse_time(head)).alias("timestamp"),
        pl.coalesce("service", pl.lit(service, dtype=pl.String)).alias("service"),
    )
    header = rf"^\s*\[?{_ISO_TS}\]?\s*(?:\[?(?i:FATAL|CRITICAL|ERROR|WARN|WARNING|INFO|DEBUG|TRACE)\]?\s*[:\-]?\s*)?"
    df = df.with_columns(
        pl.when(~pl.col("structured") & pl.col("timestamp").is_not_null())
        .then(t.str.replace(header, ""))
        .otherwise(t)
        .alias("text")
    )
    df = _join_continuations(df)
    return df.select(
        pl.col("text").alias("message"), "timestamp", "level", "service", "pod"
    ), dropped


def _join_continuations(df: pl.DataFrame) -> pl.DataFrame:
    """Join stack-trace lines (indented ``at``, ``Caused by:``, the exception line after them)."""
    t = pl.col("text")
    cont = t.str.contains(_CONTINUATION)
    exc_after = t.str.contains(_EXCEPTION_LINE) & cont.shift(1).fill_null(False)
    is_cont = (cont | exc_after) & (pl.int_range(pl.len()) > 0)
    if not df.select(is_cont.any()).item():
        return df
    df = df.with_columns((~is_cont).cum_sum().alias("record"))
    return df.group_by("record", maintain_order=True).agg(
        t.str.join("\n").alias("text"),
        pl.col("timestamp").first(),
        pl.col("level").first(),
        pl.col("service").first(),
        pl.col("pod").first(),
    ).drop("record")


def parse_lines(
    lines: Iterable[str | bytes], *, service: str | None = None, max_line_bytes: int = 65_536
) -> Intake:
    """Parse raw lines into records; never raises on bad lines (see module doc)."""
    df, dropped = parse_frame(lines, service=service, max_line_bytes=max_line_bytes)
    records = [
        LogRecord(message=m, timestamp=ts, level=lv, service=sv, pod=pd)
        for m, ts, lv, sv, pd in zip(*(df.get_column(c).to_list() for c in df.columns))
    ]
    return Intake(records=records, dropped=dropped)
