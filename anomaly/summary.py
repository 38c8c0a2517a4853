"""The incident summary: a few sentences, at most ``max_words`` words, an on-call engineer reads first.

Built from a merged ``Digest`` (and, when given, its baseline and the metric frames), most
important first:

1. what started when and where: each group of error patterns (and the patterns the scorer
   flagged) that began or rose inside the window, by onset, with its service, a concrete line
   (the template's first sample, its transport prefix stripped: no timestamp, level, thread or
   logger), how it grew (lines, minutes, peak per bucket or period) and its exception and
   first frame;
2. the metric moves, with the values read from the series ("memory usage 55% -> 97% from
   10:28:00 to 10:29:00");
3. what was already there before the onset (steady since the window began, or in the
   baseline), so it is not blamed;
4. what is absent: patterns of the baseline that the window lacks, or that stopped inside it;
5. how much was read.

Every number is a count, time or value of the input. Template ids and placeholders are never
shown. An access-log line is judged by its status code (a 200 is not an error).
Onsets are found here (``anomaly/`` imports nothing of the project): a template's first line
when it began inside the window, otherwise its own rise (the bucket boundary where its count's
Poisson rate rose most).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from anomaly.change_points import count_llr
from anomaly.digest import BASELINE_PREFIX, Digest, TemplateStats
from anomaly.formats import ACCESS_STATUS
from anomaly.scoring import MetricFrame

#: words of a quoted line (more are cut with an ellipsis); shrinks when the budget is tight
QUOTE_WORDS = 16
#: a pattern began inside the window when its first line came later than this many of its own
#: average intervals (the window's span over its lines) after the window began, and after 3 buckets
STARTED_AFTER_INTERVALS = 3.0
STARTED_AFTER_BUCKETS = 3
#: a rise needs at least this many buckets either side and this log-likelihood ratio
RISE_SIDE_BUCKETS = 3
RISE_LLR = 10.0
RISE_FACTOR = 3.0
#: a metric move: its peak this many robust deviations from where it began, and a change of 30 %
METRIC_DEVIATIONS = 6.0
METRIC_CHANGE = 0.3
#: a pattern of the baseline this frequent that the window lacks is said to be absent
ABSENT_MIN_LINES = 10
#: groups, metrics, already-there and absent items shown at most
MAX_GROUPS = 5
MAX_METRICS = 3
MAX_BEFORE = 2
MAX_ABSENT = 2

# ------------------------------------------------------------------ concrete text of a line

_TIMESTAMP = (
    r"\[?(?:\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
    r"|[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}|\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)\]?(?: UTC)?"
)
_LEVEL = r"(?:FATAL|CRITICAL|PANIC|SEVERE|ERROR|ERR|WARNING|WARN|NOTICE|INFO|DEBUG|TRACE|LOG)"
#: transport and logger prefixes, tried in turn from the start of the line (each strips one layer)
_PREFIXES = tuple(re.compile(p) for p in (
    r"^\s*" + _TIMESTAMP + r"\s+",  # a timestamp
    r"^\s*[-|]?\s*\[?" + _LEVEL + r"\b\]?:?\s*(?:-\s+)?",  # a level word
    r"^\s*\[[\w.-]+,[0-9a-fA-F]*,[0-9a-fA-F]*(?:,\w*)?\]\s*",  # Spring Sleuth [service,trace,span]
    r"^\s*\d+ --- (?:\[[^\]]*\]\s*)+[\w.$\[\]/-]+\s*:\s+",  # Spring Boot: pid --- [thread] logger :
    r"^\s*\[[^\]]*\]\s+(?:[\w.$]+\s+)?-\s+",  # log4j/logback: [thread] (logger) - message
    r"^\s*\[\d+\]\s+(?:[\w.-]*@[\w.-]*\s+)?" + _LEVEL + r":\s+",  # PostgreSQL: [pid] user@db LOG:
    r"^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d+\s+\d+ [\w./-]+:\d+\]\s+",  # klog
    r"^\s*[\w.]+ - " + _LEVEL + r" - ",  # Python logging: name - LEVEL - message
    r"^[a-z_]\w*(?:\.\w+)+ - (?=\S)",  # a dotted logger name before the message (LEVEL logger - message)
))
_SUFFIX = re.compile(r"\s+\((?:[a-z]\w*\.)+[A-Z]\w*\)\s*$")  # Kafka's trailing (kafka.log.LocalLog)
_JSON_MESSAGE = re.compile(r'"(?:event|message|msg|error|err)"\s*:\s*"((?:[^"\\]|\\.)*)"')
_LOGFMT_MESSAGE = re.compile(r'(?:^|\s)msg=(?:"((?:[^"\\]|\\.)*)"|(\S+))')
_ACCESS = re.compile(ACCESS_STATUS)
_EXCEPTION_LINE = re.compile(r"^\s*(?:Caused by: )?((?:[a-zA-Z_][\w$]*\.)*[A-Z][\w$]*(?:Exception|Error|Throwable|Fault))\b:?\s*(.*)$")
_EXCEPTION_IN_LINE = re.compile(r"((?:[a-zA-Z_][\w$]*\.)*[A-Z][\w$]*(?:Exception|Error|Throwable|Fault))\b:?\s*(.*)$")
_TRACE_EXCEPTION = re.compile(r"\n\s*(?:Caused by: )?(?:[a-zA-Z_][\w$]*\.)*[A-Z][\w$]*(?:Exception|Error|Throwable|Fault)\b")
_JAVA_FRAME = re.compile(r"^\s+at ([\w$.<>/]+\([^)]*\))")
_PYTHON_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (\S+)')


def body(line: str) -> str:
    """The event a log line records, without its transport and logger prefixes (first line only)."""
    text = line.split("\n", 1)[0].strip()
    m = _JSON_MESSAGE.search(text) if text.startswith("{") else None
    if m:
        text = m.group(1).replace('\\"', '"')
    elif (m := _LOGFMT_MESSAGE.search(text)) and re.match(r"^\s*(?:ts|time|level)=", text):
        text = (m.group(1) or m.group(2) or "").replace('\\"', '"')
    for _ in range(4):  # a prefix may hide behind another (timestamp, level, [service,...], pid --- ...)
        before = text
        for prefix in _PREFIXES:
            text = prefix.sub("", text, count=1)
        if text == before:
            break
    text = _SUFFIX.sub("", text)
    return " ".join(text.split())


def http_status(line: str) -> tuple[int, str] | None:
    """(status, request line) of an access-log line, or None when the line is not one."""
    m = _ACCESS.search(line.split("\n", 1)[0])
    if m is None:
        return None
    status = int(m.group("status") or m.group("field"))
    request = m.group("request") or ""
    request = " ".join(request.split()[:2])  # method and path, not the protocol
    return (status, request) if 100 <= status <= 599 else None


def _cause(samples: Sequence[str], types: dict[str, int]) -> tuple[str, str, str] | None:
    """(exception type, its message, first frame) of the innermost cause in a sample's stack trace."""
    if not types:
        return None
    for sample in samples:
        chain: list[list[str]] = []  # [type, message, first frame] per exception of the trace, outermost first
        python = ""  # a Python traceback lists its frames before the exception, the raising one last
        for i, ln in enumerate(sample.split("\n")):
            # the first line names an exception only when no line of the trace does
            m = _EXCEPTION_LINE.match(ln) if i else (None if _TRACE_EXCEPTION.search(sample) else _EXCEPTION_IN_LINE.search(ln))
            if m and (ln.lstrip().startswith("Caused by:") or not chain):
                chain.append([m.group(1), m.group(2).strip(), python])
            elif chain and not chain[-1][2] and (f := _JAVA_FRAME.match(ln)):
                chain[-1][2] = f.group(1)
            elif f := _PYTHON_FRAME.match(ln):
                python = f"{f.group(3)} ({f.group(1)}:{f.group(2)})"
        if chain:
            exc, message, frame = chain[-1]
            return exc, message, frame
    top = max(types, key=lambda e: (types[e], e))
    return top, "", ""


def _quote(text: str, words: int) -> str:
    toks = text.replace("<*>", "…").split()
    out = " ".join(toks[:words]) + (" …" if len(toks) > words else "")
    return "'" + out.replace("'", "’") + "'"


# ------------------------------------------------------------------ numbers

def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%H:%M:%S")


def _num(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _rise(counts: Sequence[int]) -> int | None:
    """The first bucket of a series' rise: the boundary where a Poisson rate went up most, if it did."""
    n = len(counts)
    total = float(sum(counts))
    best, best_llr = None, RISE_LLR
    before = 0.0
    for k in range(1, n - RISE_SIDE_BUCKETS + 1):
        before += counts[k - 1]
        if k < RISE_SIDE_BUCKETS:
            continue
        after = total - before
        r1, r2 = before / k, after / (n - k)
        if r2 < RISE_FACTOR * max(r1, 1.0 / k):
            continue
        llr = count_llr(before, k, after, n - k)
        if llr > best_llr:
            best, best_llr = k, llr
    return best


# ------------------------------------------------------------------ what each template did

@dataclass
class _Course:
    """One template over the window: when it began or rose, how it grew, whether it is an error."""

    t: TemplateStats
    service: str | None
    onset: float | None  # when it began or rose; None when steady since the window began
    lines: int  # lines from the onset on (all lines when steady)
    minutes: int  # from the onset (or first line) to its last line, at least 1
    peak: tuple[int, float]  # most lines in one bucket, and when
    period: int | None  # seconds between its lines, when they come like clockwork
    error: bool
    access: tuple[int, list[int], str] | None  # (error lines, statuses sampled, a request) of an access log


_QUIET_LEVELS = {"INFO", "DEBUG", "TRACE"}


def _warns(t: TemplateStats) -> bool:
    return bool(t.levels) and any(lv not in _QUIET_LEVELS for lv in t.levels)


def _judge(t: TemplateStats) -> tuple[bool, tuple[int, list[int], str] | None]:
    """Is a template an error, and, for an access log, (error lines, statuses sampled, a request)?

    An access log is judged by its status codes (and the level its shipper gave the failed ones);
    a line every writer logged at INFO or below, with no exception, is no error whatever its words.
    """
    seen = [s for s in (http_status(x) for x in t.samples) if s]
    if not seen:
        quiet = bool(t.levels) and set(t.levels) <= _QUIET_LEVELS and not t.exception_types
        return t.is_error and not quiet, None
    errors = t.error_lines
    statuses = sorted({s for s, _ in seen})
    failed = [r for s, r in seen if s >= 500]
    request = failed[0] if failed else seen[0][1]
    return bool(errors or failed), (errors, statuses, request)


def _courses(digest: Digest, baseline: Digest | None) -> list[_Course]:
    buckets = digest.bucket_counts()
    if not buckets:
        starts: list[float] = []
    else:
        first, last, width = min(buckets), max(buckets), digest.bucket_seconds
        starts = [first + i * width for i in range(int(round((last - first) / width)) + 1)]
    in_baseline = set(digest.counts_of(baseline)[0]) if baseline is not None and baseline.lines else set()
    span = len(starts) * digest.bucket_seconds
    out = []
    for tid, t in digest.templates.items():
        series = [buckets.get(b, {}).get(tid, 0) for b in starts]
        onset: float | None = None
        k0 = 0
        nonzero = [i for i, n in enumerate(series) if n]
        late = max(STARTED_AFTER_BUCKETS, STARTED_AFTER_INTERVALS * span / max(1, t.count) / digest.bucket_seconds)
        if nonzero and nonzero[0] >= late and tid not in in_baseline:
            k0 = nonzero[0]
            onset = t.first_seen if t.first_seen is not None else starts[k0]
        elif (k := _rise(series)) is not None:
            k0, onset = k, starts[k]
        after = series[k0:]
        lines = sum(after) if onset is not None else t.count
        begin = onset if onset is not None else t.first_seen
        minutes = max(1, round(((t.last_seen or 0) - (begin or 0)) / 60)) if begin is not None else 1
        peak_i = max(range(len(series)), key=lambda i: (series[i], -i)) if series else 0
        peak = (series[peak_i], starts[peak_i]) if series else (0, 0.0)
        gaps = [int(round((b - a) * digest.bucket_seconds)) for a, b in zip(
            [i for i in range(k0, len(series)) if series[i]], [i for i in range(k0, len(series)) if series[i]][1:])]
        period = None
        if len(gaps) >= 3 and max(after) <= 1:
            common = max(set(gaps), key=gaps.count)
            if common > digest.bucket_seconds and gaps.count(common) >= 0.75 * len(gaps):
                period = common
        error, access = _judge(t)
        service = max(t.services, key=lambda s: (t.services[s], s)) if t.services else None
        out.append(_Course(t, service, onset, lines, minutes, peak, period, error, access))
    return out


def _growth(c: _Course) -> str:
    if c.period:
        return f"every {c.period} s"
    text = f"{c.lines} times in {c.minutes} min"
    if c.peak[0] >= 5 and c.peak[0] >= 2 * c.lines / (c.minutes * 6):
        text += f", up to {c.peak[0]} in 10 s at {_clock(c.peak[1])}"
    return text


def _describe(c: _Course, words: int) -> str:
    """What one pattern says and how often: a concrete line, its exception and first frame."""
    if c.access is not None:
        return _access(c)
    sample = c.t.samples[0] if c.t.samples else c.t.text
    text = f"{_quote(body(sample), words)} {_growth(c)}"
    cause = _cause(c.t.samples, c.t.exception_types)
    if cause:
        exc, message, frame = cause
        text += f", raising {exc}"
        if message and message not in sample.split("\n", 1)[0]:
            text += f" ({_quote(message, max(4, words // 2))})"
        if frame:
            text += f" at {frame}"
    return text


def _access(c: _Course) -> str:
    """An access log by its status codes: how many requests failed, which statuses were seen."""
    errors, statuses, request = c.access or (0, [], "")
    failed = [s for s in statuses if s >= 500]
    seen = "/".join(str(s) for s in (failed or statuses))
    if errors and failed:
        return f"answered {errors} of {c.t.count} requests with errors (status {seen}, e.g. {request})"
    if errors:
        return f"logged {errors} of its {c.t.count} requests as errors"
    if failed:
        return f"answered {c.t.count} requests, some with status {seen} (e.g. {request})"
    return f"answered {c.t.count} requests, sampled with status {seen}"


# ------------------------------------------------------------------ sentences

def _started(courses: list[_Course], words: int, limit: int) -> tuple[list[str], list[_Course]]:
    """Sentences about what began or rose, grouped by service and onset; and the courses left out.

    Patterns that began come first, by onset; flagged ones that ran all through the window last.
    """
    groups: dict[tuple[str | None, float], list[_Course]] = {}
    for c in sorted(courses, key=lambda c: (c.onset is None, c.onset or 0.0, -c.lines)):
        at = c.onset if c.onset is not None else math.inf
        key = next((k for k in groups if k[0] == c.service and (k[1] == at or abs(k[1] - at) <= 30)), (c.service, at))
        groups.setdefault(key, []).append(c)
    out, left, access = [], [], []
    previous: float | None = None
    for i, ((service, at), members) in enumerate(groups.items()):
        if i >= limit:
            left += members
            continue
        members = sorted(members, key=lambda c: -c.lines)
        shown, rest = members[:3], members[3:]
        left += rest
        onset = min(c.onset for c in members) if math.isfinite(at) else None
        parts = [_describe(c, words) for c in shown if c.access is None]
        # an access log gets a sentence of its own (its onset, when it began inside the window)
        for c in shown:
            if c.access is not None:
                line = (f"From {_clock(onset)}, " if onset is not None else "") + f"{service or 'the access log'} {_describe(c, words)}."
                access.append(line[0].upper() + line[1:] if line.startswith("the ") else line)
        if not parts:
            continue
        if onset is None:
            when = "Throughout the window,"
        elif previous is not None and onset == previous:
            when = "At the same time,"
        else:
            when = f"{'From' if previous is None else 'At'} {_clock(onset)}" + (" UTC" if previous is None else "") + ","
        previous = onset if onset is not None else previous
        if len(parts) > 1:
            parts[-1] = "and " + parts[-1]
        subject = f"{service} logged" if service else "the logs held"
        out.append(f"{when} {subject} " + "; ".join(parts) + ".")
    return out + access, left


def _metric_name(name: str) -> tuple[str, str]:
    for suffix, unit in (("_percent", "%"), ("_pct", "%"), ("_seconds", " s"), ("_bytes", " bytes"), ("_ratio", "")):
        if name.endswith(suffix):
            return name[: -len(suffix)].replace("_", " "), unit
    return name.replace("_", " "), ""


def _metric_moves(metrics: MetricFrame, baseline: MetricFrame | None) -> list[tuple[float, str]]:
    """(strength, sentence part) for each series that moved: from its value where the move began to its peak."""
    moves = []
    for (service, name), points in metrics.items():
        pts = sorted((t, v) for t, v in points if v is not None and math.isfinite(v))
        if len(pts) < 4:
            continue
        ref_vals = sorted(v for _, v in (baseline or {}).get((service, name), []) if v is not None and math.isfinite(v))
        if len(ref_vals) < 5:
            ref_vals = sorted(v for _, v in pts[: max(3, len(pts) // 3)])
        med = ref_vals[len(ref_vals) // 2]
        mad = sorted(abs(v - med) for v in ref_vals)[len(ref_vals) // 2] * 1.4826 or abs(med) * 0.05 or 1e-9
        peak_i = max(range(len(pts)), key=lambda i: abs(pts[i][1] - med))
        peak_t, peak_v = pts[peak_i]
        z = abs(peak_v - med) / mad
        if z < METRIC_DEVIATIONS or abs(peak_v - med) < METRIC_CHANGE * max(abs(med), 1e-9):
            continue
        # the move began at the last point before the peak that was still on the reference's side
        sign = 1.0 if peak_v > med else -1.0
        start_i = next((i for i in range(peak_i, -1, -1) if sign * (pts[i][1] - med) <= 0), 0)
        start_t, start_v = pts[start_i]
        label, unit = _metric_name(name)
        verb = "rose" if peak_v > start_v else "fell"
        moves.append((z, f"{service} {label} {verb} from {_num(start_v)}{unit} to {_num(peak_v)}{unit} "
                         f"between {_clock(start_t)} and {_clock(peak_t)}"))
    moves.sort(key=lambda m: -m[0])
    return moves


def _before(courses: list[_Course], onset: float, words: int) -> str | None:
    """Errors that ran steadily from before the first onset: there before the incident, so not its cause."""
    # an access log's failed requests may have begun at any time: its bucket counts mix them with the rest
    steady = sorted((c for c in courses if c.error and c.onset is None and c.access is None
                     and c.t.first_seen is not None and c.t.first_seen < onset), key=lambda c: -c.t.count)[:MAX_BEFORE]
    if not steady:
        return None
    parts = [
        f"{c.service + ' ' if c.service else ''}{_describe(c, words)}"
        + (f" since {_clock(c.t.first_seen)}" if c.t.first_seen is not None else "")
        for c in steady
    ]
    return "Already there before, not the cause: " + "; ".join(parts) + "."


def _absent(digest: Digest, baseline: Digest | None, courses: list[_Course], words: int) -> str | None:
    parts = []
    if baseline is not None and baseline.lines:
        counts, _ = digest.counts_of(baseline)
        gone = sorted(((tid, n) for tid, n in counts.items() if tid.startswith(BASELINE_PREFIX) and n >= ABSENT_MIN_LINES),
                      key=lambda kv: -kv[1])
        for tid, n in gone[:MAX_ABSENT]:
            t = baseline.templates.get(tid[len(BASELINE_PREFIX):])
            if t is None:
                continue
            svc = max(t.services, key=t.services.get) if t.services else None
            sample = t.samples[0] if t.samples else t.text
            parts.append(f"{svc + ' ' if svc else ''}{_quote(body(sample), words)} ({n} lines in the baseline, none now)")
    if not parts and courses:
        end = max((c.t.last_seen for c in courses if c.t.last_seen is not None), default=None)
        if end is not None:
            stopped = sorted(
                (c for c in courses if c.t.last_seen is not None and c.t.count >= ABSENT_MIN_LINES and c.onset is None
                 and end - c.t.last_seen >= max(60.0, 3 * (c.t.last_seen - (c.t.first_seen or 0)) / c.t.count)),
                key=lambda c: -c.t.count,
            )
            for c in stopped[:MAX_ABSENT]:
                parts.append(f"{c.service + ' ' if c.service else ''}{_quote(body(c.t.samples[0] if c.t.samples else c.t.text), words)}"
                             f" ({c.t.count} lines until {_clock(c.t.last_seen)}, none after)")
    return ("Absent: " + "; ".join(parts) + ".") if parts else None


def _count_words(parts: Iterable[str]) -> int:
    return sum(len(p.split()) for p in parts)


def summarize(
    digest: Digest,
    *,
    must_include: Iterable[str] = (),
    max_words: int = 200,
    baseline: Digest | None = None,
    metrics: MetricFrame | None = None,
    baseline_metrics: MetricFrame | None = None,
) -> str:
    """Sentences of at most ``max_words`` words: what started when and where, how it grew, the
    metric moves, what was already there and what is absent (see module doc).

    Every template in ``must_include`` (the scorer's flagged ones) is described, or counted
    when the budget leaves no room for its sentence.
    """
    if digest.lines == 0 and not metrics:
        return "No log lines and no metrics were given."
    courses = _courses(digest, baseline)
    required = set(t for t in must_include if t in digest.templates)
    # what began or rose: the flagged patterns, errors (an access log's by status), new warnings
    incident = [c for c in courses if c.t.template_id in required or (c.error and (c.onset is not None or c.access))
                or (c.onset is not None and c.onset == c.t.first_seen and _warns(c.t))]
    onsets = [c.onset for c in incident if c.onset is not None]
    moves = _metric_moves(metrics or {}, baseline_metrics)
    services = sorted(digest.services.items(), key=lambda kv: (-kv[1], kv[0]))
    times = [c.t.first_seen for c in courses if c.t.first_seen is not None]
    lasts = [c.t.last_seen for c in courses if c.t.last_seen is not None]
    tail = f"Read {digest.lines} lines" + (f" from {len(services)} service{'s' if len(services) > 1 else ''}" if services else "") + (
        f" between {_clock(min(times))} and {_clock(max(lasts))}." if times else ".")

    for words in (QUOTE_WORDS, 12, 9, 6, 4, 2):
        for groups in range(MAX_GROUPS, 0, -1):
            started, left = _started(incident, words, groups)
            if not incident:
                started = ["No error pattern began or rose in the window."]
            parts = list(started)
            if left:
                where = sorted({c.service for c in left if c.service})
                parts.append(f"{len(left)} more new or flagged pattern{'s' if len(left) > 1 else ''}" + (f" in {', '.join(where[:4])}" if where else "") + ".")
            if _count_words(parts) > max_words:
                continue
            optional = []
            if moves:
                optional.append("Metrics: " + "; ".join(m for _, m in moves[:MAX_METRICS]) + ".")
            shown = {id(c) for c in incident}
            optional += [s for s in (_before([c for c in courses if id(c) not in shown], min(onsets, default=math.inf), words), _absent(digest, baseline, courses, words)) if s]
            optional.append(tail)
            for part in optional:
                if _count_words(parts + [part]) <= max_words:
                    parts.append(part)
            return " ".join(parts)
    # not even one short sentence fits: the words that fit
    return " ".join(" ".join(parts).split()[:max_words])
