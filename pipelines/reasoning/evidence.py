"""The offline evidence reasoner: ranks causes from what changed, without any network.

How it thinks, in order:
1. What is new or grew: each template of the window is weighed by how much more often it
   occurs than in the baseline (or, without a baseline, by the scorer's anomaly score and
   whether it is an error).
2. What kind of fault: the weighed templates (and metric deviations) vote for fault kinds
   through a lexicon of well-known failure messages; each kind belongs to a category.
3. Which service: a service is blamed for its own unusual templates and metric
   deviations, and, when other services' errors name it (``lookup X``, ``upstream X``),
   part of their weight moves to it, because the one named is the callee that fails.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

from anomaly import TemplateStats
from pipelines.reasoning.base import Evidence, Verdict
from pipelines.reasoning.playbooks import remediation_for
from pipelines.schemas import Category, Classification, Hypothesis


@dataclass(frozen=True)
class FaultKind:
    name: str
    category: Category
    cause: str
    pattern: re.Pattern[str]


def _kind(name: str, category: Category, cause: str, *words: str) -> FaultKind:
    return FaultKind(name, category, cause, re.compile("|".join(words), re.IGNORECASE))


FAULT_KINDS: list[FaultKind] = [
    _kind("memory_leak", Category.application, "memory exhaustion (leak) ending in out-of-memory errors",
          r"OutOfMemory", r"heap space", r"OOMKill", r"GC overhead", r"memory leak", r"exit code 137", r"Full GC"),
    _kind("db_connection_exhaustion", Category.database, "database connections exhausted",
          r"too many clients", r"max_connections", r"connection is not available", r"HikariPool", r"pool (is )?exhausted",
          r"SQLTransientConnection", r"too many connections", r"remaining connection slots"),
    _kind("database_error", Category.database, "database errors (locks, deadlocks, failing queries)",
          r"deadlock", r"lock wait timeout", r"SQLException", r"relation .* does not exist", r"replication lag",
          r"could not serialize access", r"database .* (is|was) (down|unavailable)"),
    _kind("dns_failure", Category.network, "DNS resolution failures",
          r"UnknownHost", r"no such host", r"name resolution", r"ENOTFOUND", r"EAI_AGAIN", r"NXDOMAIN", r"SERVFAIL",
          r"lookup \S+ on \S+:53", r"plugin/errors"),
    _kind("network_delay", Category.network, "network latency or timeouts between services",
          r"i/o timeout", r"connect(ion)? timed out", r"read timed out", r"SocketTimeout", r"deadline exceeded",
          r"context deadline", r"ETIMEDOUT", r"504 Gateway Timeout"),
    _kind("network_error", Category.network, "network connectivity failures",
          r"connection refused", r"connection reset", r"ECONNREFUSED", r"ECONNRESET", r"no route to host",
          r"network is unreachable", r"EHOSTUNREACH", r"broken pipe", r"TLS handshake"),
    _kind("cpu_contention", Category.infrastructure, "CPU saturation or throttling",
          r"CPU throttl", r"cpu_throttled", r"throttling", r"load average", r"thread pool saturated", r"lagging",
          r"starved", r"CPU (usage )?(at|above) \d+"),
    _kind("disk_full", Category.infrastructure, "disk full or node disk pressure",
          r"No space left", r"DiskPressure", r"disk full", r"ephemeral-storage", r"ENOSPC", r"filesystem .* full"),
    _kind("node_failure", Category.infrastructure, "node or kubelet failure",
          r"NodeNotReady", r"node .* not ready", r"kubelet", r"MemoryPressure", r"evict"),
    _kind("credential_stuffing", Category.security, "burst of failed logins (credential stuffing / brute force)",
          r"login failed", r"invalid credentials", r"authentication failed", r"invalid password", r"account locked",
          r"brute.?force", r"failed password"),
    _kind("security_event", Category.security, "unauthorized access attempts",
          r"unauthori[sz]ed", r"forbidden", r"access denied", r"permission denied", r"invalid token", r"signature .* invalid",
          r"suspicious"),
    _kind("external_dependency", Category.external, "a third-party dependency is failing",
          r"provider", r"third.?party", r"https?://(?![^/\s]*(\.svc|\.local|localhost|127\.0\.0\.1))[^/\s]+\.[a-z]{2,}",
          r"circuit breaker", r"vendor", r"Service Unavailable", r"api\.[a-z0-9-]+\.(com|io|net)"),
    _kind("code_exception", Category.application, "application exceptions",
          r"Exception", r"Traceback", r"panic:", r"NullPointer", r"segfault", r"IllegalState", r"TypeError",
          r"KeyError", r"500 Internal Server Error", r"unhandled"),
]

# Metric deviations vote too: a metric name pattern, the kind it suggests, the minimal rise.
METRIC_KINDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"cpu", re.I), "cpu_contention"),
    (re.compile(r"mem", re.I), "memory_leak"),
    (re.compile(r"latency|duration|response_time", re.I), "network_delay"),
    (re.compile(r"disk|filesystem", re.I), "disk_full"),
]
KINDS_BY_NAME = {k.name: k for k in FAULT_KINDS}


@dataclass
class _Weighed:
    template: TemplateStats
    weight: float
    baseline_count: int
    kinds: list[str] = field(default_factory=list)


class EvidenceReasoner:
    """Default reasoner: deterministic, offline, explains every hypothesis with evidence."""

    name = "evidence"

    async def reason(self, evidence: Evidence) -> Verdict:
        return self.decide(evidence)

    def decide(self, evidence: Evidence) -> Verdict:
        weighed = _weigh_templates(evidence)
        metric_votes = _metric_deviations(evidence)

        kind_scores: dict[str, float] = defaultdict(float)
        service_kind: dict[tuple[str, str], float] = defaultdict(float)
        service_scores: dict[str, float] = defaultdict(float)
        proofs: dict[str, list[str]] = defaultdict(list)
        known = set(evidence.digest.services) | {s for s, _ in evidence.metrics}

        for item in weighed:
            t = item.template
            owners = _owners(t)
            for kind in item.kinds:
                kind_scores[kind] += item.weight
                for service, share in owners:
                    service_kind[(service, kind)] += item.weight * share
            for service, share in owners:
                service_scores[service] += item.weight * share
                if item.weight > 0 and len(proofs[service]) < 4:
                    proofs[service].append(_template_proof(item))
            for named in _named_services(t, known):
                # the callee named in someone else's errors is blamed for most of that weight
                if named not in {s for s, _ in owners}:
                    service_scores[named] += item.weight * 0.8
                    for kind in item.kinds:
                        service_kind[(named, kind)] += item.weight * 0.8
                    if len(proofs[named]) < 4:
                        proofs[named].append(f"named in errors of other services: {_template_proof(item)}")

        for service, metric, before, after, rise in metric_votes:
            weight = 2.0 * math.log1p(rise)
            service_scores[service] += weight
            for pattern, kind in METRIC_KINDS:
                if pattern.search(metric):
                    kind_scores[kind] += weight
                    service_kind[(service, kind)] += weight
            if len(proofs[service]) < 6:
                proofs[service].append(f"metric {metric}: {before:.3g} -> {after:.3g} (baseline -> incident)")

        alert_service = evidence.alert.service
        if not service_scores and alert_service:
            service_scores[alert_service] = 0.1
        top_kinds = sorted(kind_scores.items(), key=lambda kv: kv[1], reverse=True)
        if not top_kinds:
            top_kinds = [("unknown", 0.0)]
        total_kind = sum(v for _, v in top_kinds) or 1.0
        first_kind = top_kinds[0][0]
        category = KINDS_BY_NAME[first_kind].category if first_kind in KINDS_BY_NAME else Category.application
        category_confidence = min(0.99, max(0.2, top_kinds[0][1] / total_kind)) if top_kinds[0][1] > 0 else 0.2

        ranked_services = sorted(service_scores.items(), key=lambda kv: kv[1], reverse=True)
        hypotheses = _hypotheses(ranked_services, top_kinds, service_kind, proofs, evidence)
        namespace = evidence.alert.labels.get("namespace")
        remediation = remediation_for(hypotheses[0].fault_type or "unknown", hypotheses[0].service, namespace)
        return Verdict(
            classification=Classification(category=category, confidence=round(category_confidence, 3)),
            hypotheses=hypotheses,
            remediation=remediation,
            reasoner=self.name,
        )


def _owners(t: TemplateStats) -> list[tuple[str, float]]:
    total = sum(t.services.values()) or 1
    return [(s, n / total) for s, n in t.services.items() if s]


def _weigh_templates(evidence: Evidence) -> list[_Weighed]:
    """Weight = how much a template grew against the baseline, boosted for errors and the scorer's flags."""
    baseline_counts: dict[str, int] = {}
    if evidence.baseline_digest is not None:
        for t in evidence.baseline_digest.templates.values():
            baseline_counts[t.text] = baseline_counts.get(t.text, 0) + t.count
    scale = (evidence.baseline_digest.lines / max(1, evidence.digest.lines)) if evidence.baseline_digest else 1.0
    flagged = {i.template_id: i.score for i in evidence.report.templates if i.template_id}
    out = []
    for tid, t in evidence.digest.templates.items():
        base = baseline_counts.get(t.text, 0)
        if evidence.baseline_digest is not None:
            expected = base / scale if scale else base
            growth = max(0.0, t.count - expected * 1.5)
            if growth <= 0:
                continue
            weight = math.log1p(growth) * (1.0 if base else 1.5)
        else:
            weight = math.log1p(t.count) * flagged.get(tid, 0.0)
        if t.is_error:
            weight *= 2.0
        weight *= 1.0 + flagged.get(tid, 0.0)
        if weight <= 0:
            continue
        text = " ".join([t.text, *t.samples[:2], *t.exception_types])
        kinds = [k.name for k in FAULT_KINDS if k.pattern.search(text)]
        out.append(_Weighed(t, weight, base, kinds))
    return out


def _metric_deviations(evidence: Evidence) -> list[tuple[str, str, float, float, float]]:
    """(service, metric, before, after, relative rise) for metrics clearly above their baseline."""
    out = []
    for (service, metric), points in evidence.metrics.items():
        values = [v for _, v in points if v == v]
        if len(values) < 2:
            continue
        if evidence.baseline_metrics and (service, metric) in evidence.baseline_metrics:
            base_values = [v for _, v in evidence.baseline_metrics[(service, metric)] if v == v]
        else:
            base_values = values[: max(1, len(values) // 2)]
        if not base_values:
            continue
        before = sorted(base_values)[len(base_values) // 2]
        after = max(values[len(values) // 2 :])
        spread = (max(base_values) - min(base_values)) or abs(before) * 0.1 or 1e-9
        if after - before > 3 * spread and after > before * 1.3:
            out.append((service, metric, before, after, (after - before) / (abs(before) + 1e-9)))
    return out


_NAME_SPLIT = re.compile(r"[^A-Za-z0-9_-]+")


def _named_services(t: TemplateStats, known: set[str]) -> set[str]:
    """Known services named in an error's text (the callee a caller complains about)."""
    if not t.is_error:
        return set()
    words = set()
    for text in (t.text, *t.samples[:2]):
        for token in _NAME_SPLIT.split(text):
            if token in known:
                words.add(token)
        for host in re.findall(r"([a-z0-9-]+)\.[a-z0-9-]+\.svc", text):
            if host in known:
                words.add(host)
    return words


def _template_proof(item: _Weighed) -> str:
    t = item.template
    text = t.text if len(t.text) <= 160 else t.text[:157] + "..."
    return f'"{text}" x{t.count} (baseline {item.baseline_count})'


def _hypotheses(
    ranked_services: list[tuple[str, float]],
    top_kinds: list[tuple[str, float]],
    service_kind: dict[tuple[str, str], float],
    proofs: dict[str, list[str]],
    evidence: Evidence,
) -> list[Hypothesis]:
    total = sum(score for _, score in ranked_services) or 1.0
    hypotheses: list[Hypothesis] = []
    for service, score in ranked_services[:3]:
        kinds = sorted(((k, v) for (s, k), v in service_kind.items() if s == service), key=lambda kv: kv[1], reverse=True)
        kind_name = kinds[0][0] if kinds else top_kinds[0][0]
        kind = KINDS_BY_NAME.get(kind_name)
        cause = f"{kind.cause if kind else 'unusual errors'} in {service}"
        hypotheses.append(
            Hypothesis(
                cause=cause,
                confidence=round(min(0.95, max(0.05, score / total)), 3),
                evidence=proofs.get(service, [])[:5] or [f"{service} has the most unusual log activity"],
                category=kind.category if kind else Category.application,
                service=service,
                fault_type=kind_name if kind else "unknown",
            )
        )
    while len(hypotheses) < 2:
        # one service only: the second hypothesis is the next fault kind on the same service, or a generic one
        service = hypotheses[0].service if hypotheses else evidence.alert.service
        used = {h.fault_type for h in hypotheses}
        alt = next((k for k, _ in top_kinds if k not in used and k in KINDS_BY_NAME), None)
        kind = KINDS_BY_NAME.get(alt or "")
        hypotheses.append(
            Hypothesis(
                cause=f"{kind.cause if kind else 'a recent change'} in {service or 'the alerting service'}",
                confidence=0.05,
                evidence=[f"alert {evidence.alert.name} on {evidence.alert.service or 'unknown service'}"],
                category=kind.category if kind else Category.application,
                service=service,
                fault_type=alt or "unknown",
            )
        )
    return hypotheses
