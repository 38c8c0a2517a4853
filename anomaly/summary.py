"""The incident summary: at most ``max_words`` words an on-call engineer reads first.

Built only from a merged ``Digest``: volume and time span, the services involved,
the templates the scorer flagged (each named by id and a shortened text, always
included), exception types with counts, other error patterns with first/last
occurrence and bursts. Sections are added by priority until the word budget is spent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone

from anomaly.digest import Digest, TemplateStats


def _hms(ts: float | None) -> str:
    if ts is None:
        return "?"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%H:%M:%SZ")


def _day(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d ")


def _short(text: str, words: int) -> str:
    toks = text.replace("\n", " ").split()
    return " ".join(toks[:words]) + (" …" if len(toks) > words else "")


def _peaks(digest: Digest) -> dict[str, tuple[float, int, float]]:
    """template_id -> (peak bucket start, peak count, peak / median of its buckets)."""
    per: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for b, counts in digest.bucket_counts().items():
        for t, n in counts.items():
            per[t].append((b, n))
    out = {}
    for t, pts in per.items():
        b, n = max(pts, key=lambda p: (p[1], -p[0]))
        counts = sorted(c for _, c in pts)
        median = counts[len(counts) // 2]
        out[t] = (b, n, n / max(1, median))
    return out


def _describe(t: TemplateStats, peaks: dict, words: int) -> str:
    part = f'{t.template_id} "{_short(t.text, words)}" x{t.count} ({_hms(t.first_seen)}-{_hms(t.last_seen)}'
    peak = peaks.get(t.template_id)
    if peak and peak[2] >= 3 and peak[1] >= 5:
        part += f", burst {peak[1]} at {_hms(peak[0])}"
    return part + ")"


def _count_words(parts: list[str]) -> int:
    return sum(len(p.split()) for p in parts)


def summarize(digest: Digest, *, must_include: Iterable[str] = (), max_words: int = 200) -> str:
    """A text of at most ``max_words`` words naming every template id in ``must_include``."""
    templates = digest.templates
    required = [t for t in dict.fromkeys(must_include) if t in templates]
    peaks = _peaks(digest)
    times = [t.first_seen for t in templates.values() if t.first_seen is not None]
    lasts = [t.last_seen for t in templates.values() if t.last_seen is not None]
    errors = sorted((t for t in templates.values() if t.is_error), key=lambda t: -t.count)
    error_lines = sum(t.count for t in errors)
    services = sorted(digest.services.items(), key=lambda kv: -kv[1])
    head = f"{digest.lines} lines, {len(templates)} templates, {error_lines} error lines"
    if times:
        head += f", {_day(min(times))}{_hms(min(times))} to {_hms(max(lasts))}"
    head += "."
    if services:
        head += f" Services ({len(services)}): " + ", ".join(f"{s} {n}" for s, n in services[:5]) + "."
    parts = [head]

    # flagged templates come first and always fit: their text shrinks to the room left
    if required:
        room = max_words - _count_words(parts) - 2
        per_item = max(1, room // len(required) - 8)
        words = min(12, per_item)
        flagged = "Anomalous: " + "; ".join(_describe(templates[t], peaks, words) for t in required) + "."
        while _count_words(parts + [flagged]) > max_words and words > 0:
            words -= 1
            flagged = "Anomalous: " + "; ".join(
                _describe(templates[t], peaks, words) if words else templates[t].template_id for t in required
            ) + "."
        parts.append(flagged)

    exceptions: dict[str, int] = defaultdict(int)
    exc_services: dict[str, set[str]] = defaultdict(set)
    for t in templates.values():
        for e, n in t.exception_types.items():
            exceptions[e] += n
            exc_services[e].update(t.services)
    optional: list[str] = []
    if exceptions:
        top = sorted(exceptions.items(), key=lambda kv: -kv[1])[:5]
        optional.append(
            "Exceptions: " + "; ".join(
                f"{e} x{n}" + (f" in {', '.join(sorted(exc_services[e])[:2])}" if exc_services[e] else "")
                for e, n in top
            ) + "."
        )
    others = [t for t in errors if t.template_id not in required][:4]
    for i, t in enumerate(others):
        svc = max(t.services, key=t.services.get) if t.services else None
        optional.append(
            ("Errors: " if i == 0 else "") + _describe(t, peaks, 10) + (f" in {svc}" if svc else "") + "."
        )
    for part in optional:
        if _count_words(parts + [part]) <= max_words:
            parts.append(part)
    text = " ".join(parts)
    toks = text.split()
    if len(toks) > max_words:  # only when must_include alone exceeds the budget
        text = " ".join(toks[:max_words])
    return text
