"""Log evidence: per-service error templates that are new or grew against the baseline.

An error template (error level, an exception, or error words) counts for a service when the
service logs it clearly more often than the baseline would predict at the window's volume;
a template absent from the baseline counts more. A caller's error that names another
service (``catch price exception``, ``http://payment:8080 ... 503``) mostly blames the named
one: the caller suffers, the callee causes. When every service it names keeps serving others
(its spans show it answering), the failure lies between them (discovery, the caller's client
pool, the path): the complaint is weak evidence against the caller and none against them. Normal templates of a service that vanish from
the window are weak evidence of their own (the code path stopped early).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass

from anomaly import Digest, TemplateStats
from pipelines.reasoning.base import Evidence
from anomaly.change_points import best_change
from pipelines.reasoning.signals.base import Finding, saturate
from pipelines.reasoning.signals.hosts import in_cluster_hosts, workload_of
from pipelines.reasoning.signals.lexicon import KINDS_BY_NAME, kinds_in
from pipelines.schemas import Category

GROWTH_FACTOR = 1.5  # a template must exceed 1.5x its expected count to count as grown
NEW_TEMPLATE_BONUS = 1.5
#: of an error its logger suffers from another's fault (a named callee, a shared resource's owner),
#: the part that blames the other
CAUSE_SHARE = 0.8
MIN_VANISHED_EXPECTED = 8.0
VANISHED_WEIGHT = 0.0  # off: a short baseline's workload mix differs too much to trust absences
STEADY_DISCOUNT = 0.2  # an error already as frequent before the alert as after is background noise
MIN_SERVING_SPANS = 20  # spans after the alert that show a named callee still answering
MIN_ERROR_LINES = 2  # one line of a new error is an anecdote, not evidence
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*[A-Za-z0-9]")
_SERVICE_WORDS = re.compile(r"(?i)(?:service|svc|server|api|client|db)$")


def _baseline_counts(baseline: Digest | None, *, errors_only: bool = False) -> dict[tuple[str, str], int]:
    """(service, template text) -> the baseline's lines (its error lines only, when asked)."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    if baseline is None:
        return counts
    for t in baseline.templates.values():
        for service in t.services:
            counts[(service or "", t.text)] += t.error_lines_of(service) if errors_only else t.services[service]
    return counts


def _mentions(service: str) -> list[re.Pattern[str]]:
    """How a caller names a service: its full name, or its core word followed by service/svc/api.

    ``ts-price-service`` -> ``ts-price-service``, ``price service``, ``price-service``, ``priceservice``.
    A bare word (``order``) is too common in messages to count.
    """
    words = [w for w in re.split(r"[-_.]", service.lower()) if w]
    core = [w for w in words if not _SERVICE_WORDS.search(w) and len(w) > 2]
    patterns = [re.compile(r"(?<![a-z0-9-])" + re.escape(service.lower()) + r"(?![a-z0-9-])")]
    if core:
        stem = r"[-_ ]?".join(re.escape(w) for w in core[-2:] if w)
        patterns.append(re.compile(r"(?<![a-z0-9])" + stem + r"[-_ ]?(?:service|svc|api|server)\b"))
    return patterns


def named_services(t: TemplateStats, known: set[str]) -> set[str]:
    """Services named in the text of a template (the callee a caller complains about): known
    services by name, and peers in the cluster by ``host:port`` (``inventory:8080``), which may
    log nothing we were given."""
    raw = " ".join([t.text, *t.samples[:2]])
    text = raw.lower()
    named = {workload_of(h, known) for h in in_cluster_hosts(raw)}
    for service in sorted(known, key=len, reverse=True):
        full = _mentions(service)[0]
        if full.search(text):
            named.add(service)
            text = full.sub(" ", text)  # a full name is not also a stem of another service
    for service in known - named:
        if any(p.search(text) for p in _mentions(service)[1:]):
            named.add(service)
    return named


def onset_factors(digest: Digest) -> dict[str, float]:
    """Per template: how much its rate rose at its own change point inside the window.

    The change point is found in the template's counts (``anomaly/change_points.py``), not
    taken from the alert, which fires minutes after a fault began. 1.5 for a template that only
    appears after its change; ``STEADY_DISCOUNT`` for one with no significant change, or one that
    fell (it was there before whatever happened: an earlier fault still going on, or chronic
    noise); up to 1.0 for one that rose. Empty when the window is too short to tell.
    """
    buckets = digest.bucket_counts()
    if not buckets:
        return {}
    width = digest.bucket_seconds
    first = min(buckets)
    size = int(round((max(buckets) - first) / width)) + 1
    totals = [0.0] * size
    series: dict[str, list[float]] = defaultdict(lambda: [0.0] * size)
    for b, counts in buckets.items():
        i = int(round((b - first) / width))
        for tid, n in counts.items():
            series[tid][i] += n
            totals[i] += n
    out = {}
    for tid, counts in series.items():
        change = best_change(counts, totals)
        if change is None:
            return {}
        if not change.significant or change.rate_after <= GROWTH_FACTOR * change.rate_before:
            out[tid] = STEADY_DISCOUNT
        elif change.rate_before == 0:
            out[tid] = 1.5
        else:
            out[tid] = min(1.0, 0.3 + (change.rate_after / change.rate_before - 1.5) * 0.2)
    return out


def serving_services(evidence: Evidence) -> set[str]:
    """Services whose own spans show them answering requests in the later half of the window.

    A caller's complaint that names such a service ("No instances available for X") is about
    the caller's view of it (discovery, client pool), not a fault of X: X keeps serving others.
    The later half, not "after the alert": the alert may fire seconds before the window ends.
    """
    if not evidence.spans:
        return set()
    times = [s.start for s in evidence.spans] + list(evidence.digest.bucket_counts() if evidence.digest else [])
    middle = min(times) + (max(times) - min(times)) / 2
    served: dict[str, int] = defaultdict(int)
    for s in evidence.spans:
        if s.start >= middle:
            served[s.service] += 1
    return {service for service, n in served.items() if n >= MIN_SERVING_SPANS}


class LogTemplateSignal:
    """New or grown error templates per service; vanished normal templates."""

    name = "logs"

    def findings(self, evidence: Evidence) -> list[Finding]:
        digest = evidence.digest
        if digest is None or not digest.lines:
            return []
        base_errors = _baseline_counts(evidence.baseline_digest, errors_only=True)
        has_baseline = evidence.baseline_digest is not None and evidence.baseline_digest.lines > 0
        scale = digest.lines / evidence.baseline_digest.lines if has_baseline else 1.0
        flagged = {i.template_id: i.score for i in evidence.report.templates if i.template_id}
        known = {s for s in digest.services if s}
        onset = onset_factors(digest)
        serving = serving_services(evidence)

        weight: dict[str, float] = defaultdict(float)
        kinds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        proofs: dict[str, list[tuple[float, str]]] = defaultdict(list)
        grown: list[_Grown] = []
        for tid, t in digest.templates.items():
            if not t.is_error:
                continue
            words = " ".join([t.text, *t.samples[:2], *t.exception_types])
            found = kinds_in(words) or ["code_exception"]
            named = named_services(t, known)
            for owner in t.services:
                n = t.error_lines_of(owner)  # a template may mix error lines with normal ones
                if not owner or not n:
                    continue
                seen = base_errors.get((owner, t.text), 0)
                if has_baseline:
                    excess = n - GROWTH_FACTOR * seen * scale
                    if excess <= 0 or n < MIN_ERROR_LINES:
                        continue
                    w = math.log1p(excess) * (NEW_TEMPLATE_BONUS if seen == 0 else 1.0)
                else:
                    w = math.log1p(n) * flagged.get(tid, 0.0)
                w *= onset.get(tid, 1.0)
                if w > 0:
                    grown.append(_Grown(t, owner, n, seen, w, found, words, named))

        resource_owners = _resource_owners(grown)
        for g in grown:
            targets = _blamed(g, serving, resource_owners)
            for service, share, why in targets:
                weight[service] += g.weight * share
                for k in g.kinds:
                    kinds[service][k] += g.weight * share
                text = g.template.text if len(g.template.text) <= 160 else g.template.text[:157] + "..."
                proofs[service].append((g.weight * share, f'error template "{text}" x{g.count} ({why}baseline {g.seen})'))

        if has_baseline and VANISHED_WEIGHT > 0:
            self._vanished(evidence, _baseline_counts(evidence.baseline_digest), scale, weight, kinds, proofs)

        out = []
        for service, w in weight.items():
            kind = max(kinds[service].items(), key=lambda kv: kv[1])[0] if kinds[service] else "code_exception"
            best = [p for _, p in sorted(proofs[service], key=lambda x: -x[0])[:3]]
            out.append(
                Finding(
                    service=service,
                    signal=self.name,
                    fault_type=kind,
                    category=_category(kind),
                    strength=round(saturate(w, 4.0), 4),
                    evidence="; ".join(best),
                )
            )
        return sorted(out, key=lambda f: -f.strength)

    @staticmethod
    def _vanished(evidence, base, scale, weight, kinds, proofs) -> None:
        present = defaultdict(int)
        for t in evidence.digest.templates.values():
            for service, n in t.services.items():
                present[(service or "", t.text)] += n
        active = {s for s, n in evidence.digest.services.items() if n}
        for (service, text), seen in base.items():
            expected = seen * scale
            if service not in active or expected < MIN_VANISHED_EXPECTED or present.get((service, text), 0):
                continue
            w = VANISHED_WEIGHT * math.log1p(expected)
            weight[service] += w
            kinds[service]["code_exception"] += w * 0.5
            short = text if len(text) <= 120 else text[:117] + "..."
            proofs[service].append((w, f'normal template "{short}" vanished (expected ~{expected:.0f}, seen 0)'))


@dataclass(frozen=True)
class _Grown:
    """An error template that one service logs more than the baseline predicts."""

    template: TemplateStats
    owner: str
    count: int
    seen: int
    weight: float
    kinds: list[str]
    words: str
    named: set[str]  # known services its text names


def _resource_owners(grown: list[_Grown]) -> dict[str, set[str]]:
    """Per fault kind of a shared resource, the services that report it as its owner.

    A database that logs "too many clients" or a DNS server that logs its own errors owns the
    failing resource; the services that time out on their pool or fail their lookups use it.
    """
    owners: dict[str, set[str]] = defaultdict(set)
    for g in grown:
        for name in g.kinds:
            kind = KINDS_BY_NAME.get(name)
            if kind is not None and kind.client_words is not None and not kind.is_client_report(g.words):
                owners[name].add(g.owner)
    return owners


def _blamed(g: _Grown, serving: set[str], resource_owners: dict[str, set[str]]) -> list[tuple[str, float, str]]:
    """Who a grown error template blames, with shares and the words that say why.

    The logger keeps it all unless it suffers someone else's fault: the owner of a shared resource
    it reports as a client (its pool, its lookups), or a callee it names that is not serving.
    """
    for name in g.kinds:
        kind = KINDS_BY_NAME.get(name)
        owners = resource_owners.get(name, set()) - {g.owner}
        if kind is not None and owners and kind.is_client_report(g.words):
            return _split(g.owner, owners, f"logged by {g.owner}, a client of the failing resource; ")
    blames_named = all(KINDS_BY_NAME[k].blames_named for k in g.kinds if k in KINDS_BY_NAME)
    callees = g.named - {g.owner} if blames_named else set()
    if not callees:
        return [(g.owner, 1.0, "")]
    failing = callees - serving
    if failing:
        return _split(g.owner, failing, f"logged by {g.owner}, ")
    # every callee it names keeps serving others: the failure lies between them (discovery, the
    # client's pool, the path), so the complaint is weak evidence against the logger and none against them
    return [(g.owner, 1.0 - CAUSE_SHARE, f"names {', '.join(sorted(callees))}, which keep serving; ")]


def _split(owner: str, causes: set[str], why: str) -> list[tuple[str, float, str]]:
    """The logger keeps ``1 - CAUSE_SHARE``; the causes share the rest."""
    each = CAUSE_SHARE / len(causes)
    return [(owner, 1.0 - CAUSE_SHARE, "")] + [(c, each, why) for c in sorted(causes)]


def _category(kind: str) -> Category:
    found = KINDS_BY_NAME.get(kind)
    return found.category if found else Category.application
