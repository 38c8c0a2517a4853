"""Transport prefixes and envelopes of exported logs: who wrote a line, and the line itself.

Users export logs through a tool that wraps every line: Loki's ``logcli`` (``<time> {labels}
<line>`` or ``--output=jsonl``), stern (``<pod> <container> [<time>] <line>``, with ``--all-namespaces`` the namespace first), ``kubectl logs
--prefix`` (``[pod/<pod>/<container>] <line>``), ``docker compose logs`` (``<service>-1  | <line>``),
the CRI log file (``<time> stdout F <line>``, ``P`` for a partial line), journald (``-o short``,
``short-iso``, ``json``), syslog (RFC 3164 and 5424) and Kubernetes events (``kubectl get
events`` rows, Event objects, kubernetes-event-exporter's ``{"verb", "event"}``).

``strip_transport`` recognizes each with one anchored regex over the batch (polars kernels,
run only on the rows a cheap first test lets through), moves what the wrapper says into the
``service, pod, container, host, time, level`` columns, sets ``_src`` (the stream a line came
from, so a trace's continuation lines are joined within their own stream) and leaves the
inner line in ``text`` for the intake's JSON, logfmt and plain parsers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import polars as pl

from anomaly.pods import is_pod_name, workload_expr

_TS = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = "(?:" + "|".join(_MONTHS) + ")"
_MONTH_NUMBER = {m: f"{i + 1:02d}" for i, m in enumerate(_MONTHS)}
_LEVEL_WORDS = r"(?i)^(?:FATAL|CRITICAL|CRIT|PANIC|SEVERE|ERROR|ERR|WARNING|WARN|NOTICE|INFO|DEBUG|TRACE)$"
#: syslog / journald PRIORITY severity 0-7
SEVERITY = {"0": "FATAL", "1": "FATAL", "2": "FATAL", "3": "ERROR", "4": "WARN", "5": "INFO", "6": "INFO", "7": "DEBUG"}

LOKI = rf'(?s)^(?P<ts>{_TS}) (?P<labels>\{{(?:[^"}}]|"(?:[^"\\]|\\.)*")*\}}) ?(?P<rest>.*)$'
STERN = (
    r"(?s)^(?P<pod>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?) (?P<container>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?) "
    rf"(?:(?P<ts>{_TS}) )?(?P<rest>.*)$"
)
#: ``stern --all-namespaces`` puts the namespace first: ``<namespace> <pod> <container> [<time>] <line>``
STERN_ALL_NAMESPACES = (
    r"(?s)^(?P<namespace>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?) (?P<pod>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?) "
    rf"(?P<container>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?) (?:(?P<ts>{_TS}) )?(?P<rest>.*)$"
)
KUBECTL_PREFIX = r"(?s)^\[pod/(?P<pod>[^/\]\s]+)/(?P<container>[^\]\s]+)\] ?(?P<rest>.*)$"
COMPOSE = r"(?s)^(?P<name>[A-Za-z0-9][\w.-]*?[-_]\d+)\s+\| ?(?P<rest>.*)$"
CRI = rf"(?s)^(?P<ts>{_TS}) (?P<stream>stdout|stderr) (?P<tag>[FP]) ?(?P<rest>.*)$"
_APP = r"(?P<app>[^\s\[\]:]+)(?:\[(?P<pid>\d+)\])?:"
SYSLOG_ISO = rf"(?s)^(?:<(?P<pri>\d{{1,3}})>)?(?P<ts>{_TS}) (?P<host>[\w.-]+) {_APP} ?(?P<rest>.*)$"
SYSLOG_CLASSIC = (
    rf"(?s)^(?:<(?P<pri>\d{{1,3}})>)?(?P<mon>{_MONTH}) {{1,2}}(?P<day>\d{{1,2}}) (?P<hms>\d{{2}}:\d{{2}}:\d{{2}}(?:\.\d+)?) "
    rf"(?P<host>[\w.-]+) {_APP} ?(?P<rest>.*)$"
)
SYSLOG_5424 = (
    r"(?s)^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+) ?\x{FEFF}?(?P<rest>.*)$"
)
EVENTS_TABLE = (
    r"^(?:(?P<ns>[a-z0-9][a-z0-9-]*)\s+)?(?P<age><unknown>|\d+[smhd]\d*[smh]?)\s+(?P<type>Normal|Warning)\s+"
    r"(?P<reason>[A-Za-z]+)\s+(?P<kind>[a-z.]+)/(?P<name>[\w.:-]+)\s+(?P<msg>.*)$"
)
#: one cheap anchored test: could this line start with any of the prefixes above?
_CANDIDATE = (
    rf"^(?:\d{{4}}-\d{{2}}-\d{{2}}T[\d:.,]+(?:Z|[+-][\d:]+)? (?:\{{|std(?:out|err) |[\w.-]+ [^\s\[\]:]+(?:\[\d+\])?: )"
    rf"|[a-z0-9][a-z0-9.-]* [a-z0-9]|\[pod/|\x1b\[|[\w.-]+[-_]\d+\s+\||<\d|{_MONTH} |\d+[smhd]|<unknown>)"
)
_KLOG = r"^(?P<lvl>[IWEF])(?P<mm>\d{2})(?P<dd>\d{2}) (?P<hms>\d{2}:\d{2}:\d{2}\.\d+)\s+\d+ [\w.-]+:\d+\] "
_MONTH_NAME = {f"{i + 1:02d}": m for i, m in enumerate(_MONTHS)}
_KLOG_LEVEL = {"I": "INFO", "W": "WARN", "E": "ERROR", "F": "FATAL"}
#: Spring Boot 3.2+ prints ``spring.application.name``: ``<pid> --- [orders] [  thread] logger : msg``
SPRING_APP = r"(?:^|\s)\d+ --- \[(?P<app>[\w.-]+)\] \["

#: times written day first with a month name: Apache/nginx's ``01/Dec/2025:11:25:00 +0000``
#: (common log format) and Tomcat/Java's ``14-Mar-2025 10:22:00.123``
_DAY_MONTH_YEAR = (
    rf"^\s*(?P<d>\d{{1,2}})(?:/(?P<mon>{_MONTH})/(?P<y>\d{{4}}):|-(?P<mon2>{_MONTH})-(?P<y2>\d{{4}}) )"
    r"(?P<rest>\d{2}:\d{2}:\d{2}.*)$"
)
#: Go's log package and nginx's error log: ``2025/03/14 10:22:00``
_SLASHED_DATE = r"^\s*(\d{4})/(\d{2})/(\d{2})[ T]"
#: a line that starts with a Tomcat/Java day-first time (``14-Mar-2025 10:22:00``); the header regex of the intake
DAY_MONTH_YEAR_START = rf"\d{{1,2}}-{_MONTH}-\d{{4}} "
#: a time shape other than ISO 8601 that ``iso_time_text`` rewrites
OTHER_TIME_SHAPE = rf"^\s*(?:\d{{1,2}}[/-]{_MONTH}[/-]\d{{4}}[: ]\d|\d{{4}}/\d{{2}}/\d{{2}}[ T]\d)"
_HTTP_REQUEST = r"(?:GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS|CONNECT|TRACE) [^\"]*"
_STATUS_FIELD = r"\b(?:status|status_?code|statusCode|response_?code|http_?status)[\"']?\s*[:=]\s*[\"']?"
#: an access-log line: the quoted request line and its status, or a status field
ACCESS_STATUS = rf"\"(?P<request>{_HTTP_REQUEST})\" (?P<status>\d{{3}})\b|{_STATUS_FIELD}(?P<field>\d{{3}})\b"
#: the same line answered with a server error (5xx, RFC 9110 section 15.6): the server failed the request
ACCESS_SERVER_ERROR = rf"\"{_HTTP_REQUEST}\" 5\d\d\b|{_STATUS_FIELD}5\d\d\b"
#: the common log format's time in an access line: ``<client> <ident> <user> [<time>] "<request>"``
CLF_TIME = rf'^\S+ \S+ \S+ \[(\d{{1,2}}/{_MONTH}/\d{{4}}:\d{{2}}:\d{{2}}:\d{{2}}(?: [+-]\d{{4}})?)\] "'


def iso_time_text(col: pl.Expr) -> pl.Expr:
    """The other common time shapes rewritten as ISO 8601 text (zone and fraction kept), else the text as is."""
    g = col.str.extract_groups(_DAY_MONTH_YEAR)
    f = g.struct.field
    day_first = pl.concat_str([
        pl.coalesce(f("y"), f("y2")), pl.lit("-"),
        pl.coalesce(f("mon"), f("mon2")).replace_strict(_MONTH_NUMBER, default=None), pl.lit("-"),
        f("d").str.zfill(2), pl.lit("T"), f("rest"),
    ])
    return pl.coalesce(day_first, col.str.replace(_SLASHED_DATE, "${1}-${2}-${3}T"))


def on_rows(df: pl.DataFrame, where: pl.Expr, fn: Callable[[pl.DataFrame], pl.DataFrame]) -> pl.DataFrame:
    """Apply ``fn`` to the rows matching ``where`` only (expensive regexes run on few rows).

    The changed values are scattered back into the full columns, which keeps row
    order without a sort and copies each column once.
    """
    hit = df.select(where.fill_null(False)).to_series()
    n = int(hit.sum())
    if n == 0:
        return df
    if n == df.height:
        return fn(df)
    idx = hit.arg_true()
    sub = fn(df.filter(hit))
    columns = []
    for name in sub.columns:
        if name == "row":
            continue
        values = sub.get_column(name)
        if name in df.columns:
            base = df.get_column(name)
            if values.null_count() == values.len() and base.null_count() == base.len():
                continue  # still all null (the many columns most formats never set)
            base = base.clone()
            values = values.cast(base.dtype, strict=False)
        else:
            base = pl.Series(name, [None], dtype=values.dtype).extend_constant(None, df.height - 1)
        columns.append(base.scatter(idx, values))
    return df.with_columns(columns)


def _label(labels: pl.Expr, names: str) -> pl.Expr:
    """The value of the first of ``names`` (``a|b``) in a Loki label set ``{a="x", b="y"}``."""
    return labels.str.extract(rf'(?:^|[{{,\s])(?:{names})="((?:[^"\\]|\\.)*)"', 1)


def _src(*parts: pl.Expr) -> pl.Expr:
    return pl.concat_str(list(parts), separator="/", ignore_nulls=True)


def _unit(name: pl.Expr) -> pl.Expr:
    """``kubelet.service`` -> ``kubelet`` (a systemd unit's service name)."""
    return name.str.replace(r"\.(?:service|socket|scope|slice|mount|timer)$", "")


def _with_labels(df: pl.DataFrame, labels: pl.Expr) -> pl.DataFrame:
    """Service, pod, container, host and level from Loki labels (``logcli`` and its jsonl)."""
    job = _label(labels, "job").str.replace(r"^.*/", "")
    return df.with_columns(
        pl.coalesce(_label(labels, "app|service_name|service|app_kubernetes_io_name|k8s_app|compose_service"),
                    _unit(_label(labels, "unit|syslog_identifier")), job).alias("service"),
        _label(labels, "pod|pod_name").alias("pod"),
        _label(labels, "container|container_name").alias("container"),
        _label(labels, "host|hostname|node|node_name|nodename|instance").alias("host"),
        pl.coalesce("level", _label(labels, "level|detected_level|severity")).alias("level"),
    )


def _loki_rows(df: pl.DataFrame) -> pl.DataFrame:
    g = pl.col("text").str.extract_groups(LOKI)
    df = df.with_columns(g.alias("_g"))
    f = pl.col("_g").struct.field
    df = _with_labels(df, f("labels"))
    return df.with_columns(
        f("rest").alias("text"), f("ts").alias("time"), _src(f("labels")).alias("_src"),
    ).drop("_g")


def _stern_rows(df: pl.DataFrame) -> pl.DataFrame:
    return _stern_columns(df, STERN, all_namespaces=False)


def _stern_all_namespaces_rows(df: pl.DataFrame) -> pl.DataFrame:
    return _stern_columns(df, STERN_ALL_NAMESPACES, all_namespaces=True)


def _stern_columns(df: pl.DataFrame, pattern: str, *, all_namespaces: bool) -> pl.DataFrame:
    """A stern line's pod and container; with ``-A`` only when the second word is a pod's name
    (a plain stern line's second word is its container, never a pod name)."""
    g = pl.col("text").str.extract_groups(pattern)
    df = df.with_columns(g.alias("_g"))
    f = pl.col("_g").struct.field
    ok = is_pod_name(f("pod")) if all_namespaces else f("ts").is_not_null() | is_pod_name(f("pod"))
    return df.with_columns(
        pl.when(ok).then(f("rest")).otherwise("text").alias("text"),
        pl.when(ok).then(f("ts")).otherwise("time").alias("time"),
        pl.when(ok).then(f("pod")).otherwise("pod").alias("pod"),
        pl.when(ok).then(f("container")).otherwise("container").alias("container"),
        pl.when(ok).then(_src(f("pod"), f("container"))).otherwise("_src").alias("_src"),
    ).drop("_g")


def _kubectl_rows(df: pl.DataFrame) -> pl.DataFrame:
    g = pl.col("text").str.extract_groups(KUBECTL_PREFIX)
    f = g.struct.field
    return df.with_columns(
        f("rest").alias("text"), f("pod").alias("pod"), f("container").alias("container"),
        _src(f("pod"), f("container")).alias("_src"),
    )


def _compose_rows(df: pl.DataFrame) -> pl.DataFrame:
    g = pl.col("text").str.extract_groups(COMPOSE)
    f = g.struct.field
    name = f("name").str.replace(r"[-_]\d+$", "")
    # compose v1 names containers <project>_<service>_<n>
    service = pl.when(name.str.contains("_")).then(name.str.replace(r"^[^_]+_", "")).otherwise(name)
    return df.with_columns(f("rest").alias("text"), service.alias("service"), _src(f("name")).alias("_src"))


def _cri_rows(df: pl.DataFrame) -> pl.DataFrame:
    g = pl.col("text").str.extract_groups(CRI)
    f = g.struct.field
    return df.with_columns(
        f("rest").fill_null("").alias("text"), f("ts").alias("time"), (f("tag") == "P").alias("_partial"),
        pl.coalesce("_src", f("stream")).alias("_src"),
    )


def _severity(pri: pl.Expr) -> pl.Expr:
    return (pri.cast(pl.Int32, strict=False) % 8).cast(pl.String).replace_strict(SEVERITY, default=None)


def _syslog_fields(df: pl.DataFrame, f, time: pl.Expr) -> pl.DataFrame:
    app = f("app").str.replace(r"^-$", "")
    return df.with_columns(
        f("rest").alias("text"), time.alias("time"), f("host").alias("host"),
        _unit(pl.when(app == "").then(None).otherwise(app)).alias("service"),
        pl.coalesce("level", _severity(f("pri"))).alias("level"),
        _src(f("host"), app).alias("_src"),
    )


def _syslog_iso_rows(df: pl.DataFrame) -> pl.DataFrame:
    df = df.with_columns(pl.col("text").str.extract_groups(SYSLOG_ISO).alias("_g"))
    f = pl.col("_g").struct.field
    return _syslog_fields(df, f, f("ts")).drop("_g")


def _syslog_5424_rows(df: pl.DataFrame) -> pl.DataFrame:
    df = df.with_columns(pl.col("text").str.extract_groups(SYSLOG_5424).alias("_g"))
    f = pl.col("_g").struct.field
    return _syslog_fields(df, f, f("ts")).drop("_g")


def _syslog_classic_rows(df: pl.DataFrame) -> pl.DataFrame:
    """RFC 3164 / journalctl's default: no year in the time; ``with_syslog_year`` adds it later."""
    df = df.with_columns(pl.col("text").str.extract_groups(SYSLOG_CLASSIC).alias("_g"))
    f = pl.col("_g").struct.field
    df = _syslog_fields(df, f, pl.lit(None, dtype=pl.String))
    return df.with_columns(pl.concat_str([f("mon"), f("day"), f("hms")], separator=" ").alias("_systime")).drop("_g")


def _event_fields(df: pl.DataFrame, *, kind: pl.Expr, name: pl.Expr, reason: pl.Expr, message: pl.Expr,
                  etype: pl.Expr, time: pl.Expr | None = None, host: pl.Expr | None = None) -> pl.DataFrame:
    """An event's involved object gives its service: a pod's workload, a node's name (also the host)."""
    kind = kind.str.to_lowercase()
    owner = (
        pl.when(kind.is_in(["pod", "pods"])).then(workload_expr(name))
        .when(kind.is_in(["replicaset", "replicasets", "replicaset.apps"])).then(name.str.replace(r"-[a-z0-9]{6,10}$", ""))
        .when(kind.is_in(["job", "jobs", "job.batch"])).then(name.str.replace(r"-\d{8,10}$", ""))
        .otherwise(name)
    )
    is_node = kind.is_in(["node", "nodes"])
    text = pl.when(reason.is_not_null()).then(pl.concat_str([reason, pl.lit(": "), message.fill_null("")])).otherwise(message)
    return df.with_columns(
        pl.coalesce(text, "text").alias("text"),
        owner.alias("service"),
        pl.when(kind.is_in(["pod", "pods"])).then(name).otherwise(None).alias("pod"),
        pl.coalesce(pl.when(is_node).then(name), host if host is not None else pl.lit(None, dtype=pl.String)).alias("host"),
        pl.when(etype == "Warning").then(pl.lit("WARN")).when(etype == "Normal").then(pl.lit("INFO")).otherwise("level").alias("level"),
        (time if time is not None else pl.col("time")).alias("time"),
        pl.lit(True).alias("structured"),
        _src(pl.lit("event"), owner).alias("_src"),
    )


def _events_table_rows(df: pl.DataFrame) -> pl.DataFrame:
    df = df.with_columns(pl.col("text").str.extract_groups(EVENTS_TABLE).alias("_g"))
    f = pl.col("_g").struct.field
    return _event_fields(df, kind=f("kind"), name=f("name"), reason=f("reason"), message=f("msg"),
                         etype=f("type")).drop("_g")


def _event_json_rows(df: pl.DataFrame) -> pl.DataFrame:
    """Event objects, plain or wrapped by kubernetes-event-exporter / eventrouter (``{"verb", "event"}``)."""
    t = pl.col("text")

    def get(path: str) -> pl.Expr:
        return pl.coalesce(t.str.json_path_match(f"$.event.{path}"), t.str.json_path_match(f"$.{path}"))

    time = pl.coalesce(get("lastTimestamp"), get("eventTime"), get("firstTimestamp"), get("metadata.creationTimestamp"))
    return _event_fields(
        df, kind=get("involvedObject.kind"), name=get("involvedObject.name"), reason=get("reason"),
        message=get("message"), etype=get("type"), time=time, host=get("source.host"),
    )


def _journald_json_rows(df: pl.DataFrame) -> pl.DataFrame:
    """``journalctl -o json``: MESSAGE, the unit or identifier as the service, the host kept."""
    t = pl.col("text")

    def get(key: str) -> pl.Expr:
        return t.str.json_path_match(f"$.{key}")

    k8s = get("CONTAINER_NAME").str.extract_groups(r"^k8s_(?P<container>[^_]+)_(?P<pod>[^_]+)_")
    ident = pl.coalesce(get("SYSLOG_IDENTIFIER"), _unit(get("_SYSTEMD_UNIT")), get("_COMM"))
    host = get("_HOSTNAME")
    return df.with_columns(
        pl.coalesce(get("MESSAGE"), t).alias("text"),
        host.alias("host"),
        pl.when(k8s.struct.field("pod").is_null()).then(ident).otherwise(None).alias("service"),
        k8s.struct.field("pod").alias("pod"),
        pl.coalesce(k8s.struct.field("container"), get("CONTAINER_NAME")).alias("container"),
        _severity(get("PRIORITY")).alias("level"),
        pl.coalesce(get("__REALTIME_TIMESTAMP"), get("_SOURCE_REALTIME_TIMESTAMP")).alias("time"),
        _src(host, ident, get("CONTAINER_NAME")).alias("_src"),
        pl.lit(False).alias("structured"),
    )


def _loki_json_rows(df: pl.DataFrame) -> pl.DataFrame:
    """``logcli query --output=jsonl`` (and query_range answers read as such): labels, line, timestamp."""
    t = pl.col("text")
    line = t.str.json_path_match("$.line")
    labels = t.str.json_path_match("$.labels")  # the label object as JSON text: {"app":"x",...}
    as_set = labels.str.replace_all(r'"([\w.-]+)"\s*:\s*"', r'$1="')
    df = df.with_columns(as_set.alias("_labels"))
    df = _with_labels(df, pl.col("_labels"))
    return df.with_columns(
        pl.coalesce(line, t).alias("text"),
        t.str.json_path_match("$.timestamp").alias("time"),
        _src(pl.col("_labels")).alias("_src"),
    ).drop("_labels")


_PREFIXES: tuple[tuple[str, Callable[[pl.DataFrame], pl.DataFrame]], ...] = (
    (LOKI, _loki_rows),
    (CRI, _cri_rows),
    (SYSLOG_5424, _syslog_5424_rows),
    (SYSLOG_ISO, _syslog_iso_rows),
    (SYSLOG_CLASSIC, _syslog_classic_rows),
    (KUBECTL_PREFIX, _kubectl_rows),
    (COMPOSE, _compose_rows),
    (EVENTS_TABLE, _events_table_rows),
    (STERN_ALL_NAMESPACES, _stern_all_namespaces_rows),
    (STERN, _stern_rows),
)


def strip_transport(df: pl.DataFrame) -> pl.DataFrame:
    """Read and strip the transport prefix or envelope of each line (see module doc).

    ``df`` has ``text, level, time, service, pod, container, host, structured, _src, _partial``;
    a line no wrapper matches is left as it was.
    """
    t = pl.col("text")
    is_json = t.str.starts_with("{") & t.str.ends_with("}")
    if df.select((is_json & t.str.contains(r'"(?:involvedObject|MESSAGE|labels)"')).any()).item():
        df = on_rows(df, is_json & t.str.contains('"involvedObject"', literal=True), _event_json_rows)
        df = on_rows(df, is_json & t.str.contains('"MESSAGE"', literal=True)
                     & t.str.contains(r'"(?:__REALTIME_TIMESTAMP|_HOSTNAME|SYSLOG_IDENTIFIER|_SYSTEMD_UNIT)"'), _journald_json_rows)
        df = on_rows(df, is_json & t.str.contains('"labels"', literal=True) & t.str.contains('"line"', literal=True), _loki_json_rows)
    candidate = ~pl.col("structured") & pl.col("_src").is_null() & t.str.contains(_CANDIDATE)
    return on_rows(df, candidate, _strip_text_prefixes)


def _strip_text_prefixes(df: pl.DataFrame) -> pl.DataFrame:
    t = pl.col("text")
    if df.select(t.str.starts_with("\x1b[").any()).item():  # stern's colours
        df = df.with_columns(t.str.replace_all(r"\x1b\[[0-9;]*[A-Za-z]", ""))
    for pattern, fn in _PREFIXES:
        guard = pl.col("_src").is_null() & t.str.contains(pattern)
        if pattern in (SYSLOG_ISO, SYSLOG_CLASSIC):  # ``<time> ERROR orders: ...`` is an app's header, not a host
            host = t.str.extract_groups(pattern).struct.field("host")
            guard = guard & ~host.str.contains(_LEVEL_WORDS).fill_null(False)
        df = on_rows(df, guard, fn)
    return df


def klog_level(df: pl.DataFrame) -> pl.DataFrame:
    """Level letter and time of a klog header (``I0909 08:59:11.425350  1873 kubelet.go:2505] ...``).

    klog writes month and day but no year: the time goes to ``_systime`` like a classic
    syslog line's, and ``with_syslog_year`` completes it.
    """
    t = pl.col("text")

    def fields(d: pl.DataFrame) -> pl.DataFrame:
        g = t.str.extract_groups(_KLOG)
        systime = pl.concat_str([g.struct.field("mm").replace_strict(_MONTH_NAME, default=None),
                                 g.struct.field("dd"), g.struct.field("hms")], separator=" ")
        columns = [g.struct.field("lvl").replace_strict(_KLOG_LEVEL, default=None).alias("level")]
        if "_systime" in d.columns:
            systime = pl.coalesce("_systime", systime)
        columns.append(pl.when(pl.col("time").is_null()).then(systime).alias("_systime"))
        return d.with_columns(columns)

    return on_rows(df, pl.col("level").is_null() & t.str.contains(_KLOG), fields)


def spring_app(df: pl.DataFrame) -> pl.DataFrame:
    """Spring Boot's application name field (``--- [orders] [main]``) as the service of a plain line."""
    t = pl.col("text")
    return on_rows(df, pl.col("service").is_null() & t.str.contains(" --- [", literal=True),
                   lambda d: d.with_columns(t.str.extract(SPRING_APP, 1).alias("service")))


def with_syslog_year(df: pl.DataFrame) -> pl.DataFrame:
    """Timestamps for ``Mon DD HH:MM:SS`` lines: the year most lines of the batch carry, else this year."""
    if "_systime" not in df.columns:
        return df
    if df.get_column("_systime").null_count() == df.height:
        return df.drop("_systime")
    years = df.select(
        pl.from_epoch(pl.col("timestamp").filter(pl.col("timestamp").is_not_null()) * 1000, time_unit="ms").dt.year().mode().first()
    ).item()
    year = int(years) if years is not None else datetime.now(timezone.utc).year
    parts = pl.col("_systime").str.extract_groups(r"^(?P<mon>\w{3}) (?P<day>\d{1,2}) (?P<hms>\S+)$")
    iso = pl.concat_str([
        pl.lit(f"{year}-"), parts.struct.field("mon").replace_strict(_MONTH_NUMBER, default=None), pl.lit("-"),
        parts.struct.field("day").str.zfill(2), pl.lit("T"), parts.struct.field("hms"),
    ])
    seconds = iso.str.slice(0, 19).str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="ms").dt.epoch("ms") / 1000.0
    frac = ("0" + parts.struct.field("hms").str.extract(r"(\.\d+)$", 1)).cast(pl.Float64, strict=False).fill_null(0.0)
    return df.with_columns(pl.coalesce("timestamp", seconds + frac).alias("timestamp")).drop("_systime")
