"""Security evidence: a service refusing logins or requests far more often than it did before.

Failed logins and refused tokens from the internet are routine on any exposed service, so their
presence is not the signal; a rise is. A service's refusals (``lexicon.AUTH_FAILURE`` words:
failed passwords, invalid users, rejected or expired tokens, denials; an access-log line counts
by its status, 401/403 refused, anything else not) count when they rise against the window's own
earlier part (their share of all lines, at their own change point, ``change_points.best_change``) or
against the baseline. The service that records the refusals is the one under attack. The digest
keeps a status for no line, only a few samples per template: an access-log template counts the
share of its samples that were refused (a scanner's requests, with their own client and route,
form their own template).

The source addresses of the refusals (from the samples the digest keeps) say whose they are:
addresses on the internet point at an attack; only private addresses point at our own clients
with a wrong secret (a rotated password, an expired service token), which is a misconfiguration
and weighs less. A refusal a client reports about a call it made (a line holding the URL it
called) is not the logger refusing anyone, and neither is a check that failed on an error of
its own (a login failing because the user database is down). The addresses seen most often are named in the
evidence.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter, defaultdict

from anomaly import Digest, TemplateStats
from pipelines.reasoning.base import Evidence
from anomaly.change_points import best_change
from pipelines.reasoning.signals.base import Finding, saturate
from pipelines.reasoning.signals.lexicon import AUTH_FAILURE, AUTH_REFUSED_STATUSES, KINDS_BY_NAME, http_status, kinds_in
from pipelines.reasoning.signals.log_templates import GROWTH_FACTOR

#: weight (log1p of the refusals above what the earlier rate predicts) that gives strength 0.63
SECURITY_SCALE = 4.0
#: refusals needed above the expected count: a handful is the internet's background
MIN_EXCESS = 10
#: weight kept when every sampled source is a private address (our own clients), or none is known
PRIVATE_SOURCES = 0.4
UNKNOWN_SOURCES = 0.6
#: a line holding a URL reports a call its logger made, not a request it refused
_CALLED_URL = re.compile(r"\b(?:https?|grpcs?)://", re.IGNORECASE)
#: the kinds a refusal's words name; a line naming any other (a database error, a timeout, an
#: exception) is a check that could not be made, not a refusal
_SECURITY_KINDS = {"credential_stuffing", "security_event"}
_IPV4 = r"(?:\d{1,3}\.){3}\d{1,3}"
#: where a line names the client: after a source keyword, or leading an access-log line
_SOURCE = re.compile(
    r"(?:\bfrom|\bclient(?:[_ ]?ip|[_ ]?addr(?:ess)?)?|\brhost|\bremote(?:[_ ]?addr|[_ ]?ip)?|\bsrc(?:[_ ]?ip)?"
    r"|\bsource(?:[_ ]?ip)?|\bip|\bpeer|x-forwarded-for)[\"']?\s*[:=]?\s*\[?[\"']?(" + _IPV4 + r")\b"
    r"|^\s*(" + _IPV4 + r")\s", re.IGNORECASE)


def refused_share(t: TemplateStats) -> float:
    """The share of a template's lines that record refusing a login or a request (0 when none do)."""
    samples = [s.split("\n", 1)[0] for s in t.samples] or [t.text]
    statuses = [http_status(s) for s in samples]
    known = [c for c in statuses if c is not None]
    if known:  # an access log: judged by its status code
        return sum(c in AUTH_REFUSED_STATUSES for c in known) / len(known)
    if any(_CALLED_URL.search(s) or not set(kinds_in(s)) <= _SECURITY_KINDS for s in samples):
        return 0.0  # a call the logger made, or a check that failed on an error of its own: no one was refused
    if AUTH_FAILURE.search(t.text):
        return 1.0
    return sum(bool(AUTH_FAILURE.search(s)) for s in samples) / len(samples)


def sources(text: str) -> list[str]:
    return [a or b for a, b in _SOURCE.findall(text)]


def is_public(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


class SecuritySignal:
    """A rising share of refused logins or requests per service (see module doc)."""

    name = "security"

    def findings(self, evidence: Evidence) -> list[Finding]:
        digest = evidence.digest
        if digest is None or not digest.lines:
            return []
        refused = _refused(digest)
        if not refused:
            return []
        base = _refused(evidence.baseline_digest) if evidence.baseline_digest is not None and evidence.baseline_digest.lines else None
        scale = digest.lines / evidence.baseline_digest.lines if base is not None else 1.0
        series, totals = _series(digest, refused)
        out = []
        for service, counts in series.items():
            excess, how = _rise(counts, totals)
            if base is not None:
                expected = GROWTH_FACTOR * scale * sum(n for (s, _), n in base.items() if s == service)
                against_baseline = sum(counts) - expected
                if against_baseline > excess:
                    excess, how = against_baseline, f"against {expected / GROWTH_FACTOR:.0f} expected from the baseline"
            if excess < MIN_EXCESS:
                continue
            seen = [a for (s, tid), _ in refused.items() if s == service for sample in digest.templates[tid].samples for a in sources(sample)]
            public = sum(map(is_public, seen))
            factor = (PRIVATE_SOURCES + (1.0 - PRIVATE_SOURCES) * public / len(seen)) if seen else UNKNOWN_SOURCES
            kind = _kind_of(digest, refused, service)
            top = ", ".join(f"{a} x{n}" for a, n in Counter(seen).most_common(3))
            proofs = sorted(((n, tid) for (s, tid), n in refused.items() if s == service), reverse=True)[:3]
            words = "; ".join(f'"{_short(digest.templates[tid])}" x{round(n)}' for n, tid in proofs)
            out.append(Finding(
                service=service, signal=self.name, fault_type=kind, category=KINDS_BY_NAME[kind].category,
                strength=round(saturate(math.log1p(excess) * factor, SECURITY_SCALE), 4),
                evidence=f"{round(sum(counts))} refused logins/requests, {round(excess)} above the earlier rate ({how}); "
                         f"sampled sources: {top or 'none named'} ({public} of {len(seen)} on the internet); {words}",
            ))
        return sorted(out, key=lambda f: -f.strength)


def _refused(digest: Digest) -> dict[tuple[str, str], float]:
    """(service, template id) -> estimated lines refusing a login or a request."""
    out: dict[tuple[str, str], float] = {}
    for tid, t in digest.templates.items():
        share = refused_share(t)
        if share <= 0:
            continue
        for service, n in t.services.items():
            if service:
                out[(service, tid)] = share * n
    return out


def bucket_series(digest: Digest, keys: dict[str, list[tuple[str, float]]]) -> tuple[dict[str, list[float]], list[float]]:
    """Per key, the lines of its templates per time bucket (each template id maps to (key, share)
    pairs); and all lines per bucket, the exposure a change point compares shares against."""
    buckets = digest.bucket_counts()
    if not buckets:
        return {}, []
    width = digest.bucket_seconds
    first = min(buckets)
    size = int(round((max(buckets) - first) / width)) + 1
    totals = [0.0] * size
    series: dict[str, list[float]] = defaultdict(lambda: [0.0] * size)
    for b, counts in buckets.items():
        i = int(round((b - first) / width))
        for tid, n in counts.items():
            totals[i] += n
            for key, share in keys.get(tid, ()):
                series[key][i] += n * share
    return dict(series), totals


def _series(digest: Digest, refused: dict[tuple[str, str], float]) -> tuple[dict[str, list[float]], list[float]]:
    """Per service, its refusals per time bucket; and all lines per bucket."""
    keys: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (service, tid), n in refused.items():
        keys[tid].append((service, n / digest.templates[tid].count))
    return bucket_series(digest, keys)


def _rise(counts: list[float], totals: list[float]) -> tuple[float, str]:
    """Refusals after the series' own change point above what its earlier share predicts."""
    change = best_change(counts, totals)
    if change is None or not change.significant or change.rate_after <= GROWTH_FACTOR * change.rate_before:
        return 0.0, "no rise inside the window"
    after, exposure = sum(counts[change.index:]), sum(totals[change.index:])
    return after - change.rate_before * exposure, f"from {change.rate_before:.2%} to {change.rate_after:.2%} of all lines"


def _kind_of(digest: Digest, refused: dict[tuple[str, str], float], service: str) -> str:
    """Failed logins name a brute force; refused tokens or requests an unauthorized access attempt."""
    logins = sum(n for (s, tid), n in refused.items() if s == service and KINDS_BY_NAME["credential_stuffing"].pattern.search(digest.templates[tid].text))
    total = sum(n for (s, _), n in refused.items() if s == service)
    return "credential_stuffing" if logins * 2 >= total else "security_event"


def _short(t: TemplateStats) -> str:
    text = t.samples[0] if t.samples else t.text
    return text if len(text) <= 140 else text[:137] + "..."
