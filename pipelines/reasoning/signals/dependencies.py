"""Dependency evidence: the database, DNS server or third party that callers' errors name.

The component that fails often logs nothing we were given (a managed database, a SaaS API, an
S3 bucket) or logs without a service the intake could read; its callers name it in their
errors: a connection string or ``host:5432``, a URL outside the cluster, the AWS SDK's service
id. An error template that grew in the window (against the baseline, or from before the alert
to after it) and names such a dependency blames it; several callers (lines, templates) naming
the same one make it strong. A name in a DNS failure is what was looked up, not a culprit: DNS
failures of several names blame the DNS server instead, when the logs name one.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

from anomaly import Digest, TemplateStats
from anomaly.pods import workload_of_pod
from pipelines.reasoning.base import Evidence
from pipelines.reasoning.signals.base import Finding, saturate
from pipelines.reasoning.signals.hosts import DATABASE_KINDS, DNS_SERVER_NAMES, database_hosts, external_provider, workload_of
from pipelines.reasoning.signals.lexicon import KINDS_BY_NAME, kinds_in
from pipelines.reasoning.signals.log_templates import GROWTH_FACTOR, MIN_ERROR_LINES, NEW_TEMPLATE_BONUS, onset_factors

#: weight of a dependency (summed template weights) that gives strength 0.63
DEPENDENCY_SCALE = 4.0
#: a dependency named by one template line only is an anecdote
MIN_NAMING_LINES = 3
#: weight kept by an eviction line the baseline has too (a node that is always under pressure)
STEADY = 0.2
#: DNS failures must name this many distinct looked-up names to blame the resolver, not the name
MIN_DNS_NAMES = 2

_DNS_QUERY = re.compile(r"lookup (\S+?)\.? on (\S+?:53)\b|(?:ENOTFOUND|EAI_AGAIN|UnknownHostException:?) (\S+)", re.IGNORECASE)
_DNS_SERVER_SIDE = re.compile(
    r"server misbehaving|SERVFAIL|i/o timeout|connection refused|no servers could be reached|EAI_AGAIN|Temporary failure in name resolution",
    re.IGNORECASE)
#: kubelet's eviction manager and its events (resource under pressure, pods ranked / the container over its request)
_EVICTED_FOR = re.compile(r"resourceName=\"?([\w.-]+)|low on resource: ([\w.-]+)|signal=\"?((?:nodefs|imagefs|memory)\.available)")
_RANKED_FIRST = re.compile(r"pods ranked for eviction\"?\s+pods=\[\"?([\w./-]+)")
_USED_ABOVE_REQUEST = re.compile(r"Container ([\w.-]+) was using \S+?,? (?:which exceeds its request|request is)")
_NETWORK_KINDS = {"network_error", "network_delay"}


def dns_servers(digest: Digest) -> set[str]:
    """Services the logs name as the cluster DNS: a known service or a word in any line."""
    named = {s for s in digest.services if s and any(n in s.lower() for n in DNS_SERVER_NAMES)}
    if named:
        return named
    words = re.compile(r"\b(" + "|".join(map(re.escape, DNS_SERVER_NAMES)) + r")\b", re.IGNORECASE)
    for t in digest.templates.values():
        for text in (t.text, *t.samples[:1]):
            m = words.search(text)
            if m:
                named.add(m.group(1).lower())
    return named


def _baseline_seen(evidence: Evidence, *, errors_only: bool = False) -> tuple[dict[str, int], float]:
    """Lines (error lines only, when asked) per template text in the baseline (empty without one),
    and the window's volume over the baseline's."""
    baseline = evidence.baseline_digest
    seen: dict[str, int] = defaultdict(int)
    if baseline is None or not baseline.lines:
        return seen, 1.0
    for t in baseline.templates.values():
        seen[t.text] += t.error_lines if errors_only else t.count
    return seen, evidence.digest.lines / baseline.lines


def template_weights(evidence: Evidence, onset: dict[str, float]) -> dict[str, float]:
    """Weight of each error template that grew: against the baseline, else by its IsolationForest flag;
    times its onset factor (``log_templates.onset_factors``)."""
    digest = evidence.digest
    baseline = evidence.baseline_digest
    has_baseline = baseline is not None and baseline.lines > 0
    seen, scale = _baseline_seen(evidence, errors_only=True)
    flagged = {i.template_id: i.score for i in evidence.report.templates if i.template_id}
    out = {}
    for tid, t in digest.templates.items():
        if not t.is_error or t.error_lines < MIN_ERROR_LINES:
            continue
        if has_baseline:
            excess = t.error_lines - GROWTH_FACTOR * seen[t.text] * scale
            w = math.log1p(excess) * (NEW_TEMPLATE_BONUS if seen[t.text] == 0 else 1.0) if excess > 0 else 0.0
        else:
            w = math.log1p(t.error_lines) * flagged.get(tid, 0.0)
        w *= onset.get(tid, 1.0)
        if w > 0:
            out[tid] = w
    return out


def _growth(evidence: Evidence, seen: dict[str, int], scale: float, onset: dict[str, float], tid: str, t: TemplateStats) -> float:
    """log1p of a template's excess over the baseline (the count without one), times its onset factor."""
    if seen:
        excess = t.count - GROWTH_FACTOR * seen.get(t.text, 0) * scale
        return math.log1p(max(excess, 0.0)) * onset.get(tid, 1.0)
    return math.log1p(t.count) * onset.get(tid, 1.0)


def resource_owners(evidence: Evidence, onset: dict[str, float]) -> list[tuple[tuple[str, str], float, int, str]]:
    """Services whose own lines, at any level, report a shared resource's failure from the inside.

    A database logs lock waits and refused clients at LOG or FATAL level; the cluster's kubelet
    ranks the pods it evicts, the one using most above its request first (the node's disk or memory
    went to it), and its events say which container used what. Returns ((service, kind), weight,
    lines, proof) for each.
    """
    digest = evidence.digest
    seen, scale = _baseline_seen(evidence)
    known = {s for s in digest.services if s}
    out = []
    pressure = None  # the resource kubelet reclaims, from any of its eviction lines
    for t in digest.templates.values():
        m = _EVICTED_FOR.search(" ".join([t.text, *t.samples[:1]]))
        if m:
            resource = next(g for g in m.groups() if g)
            pressure = "memory_pressure" if "memory" in resource.lower() else "disk_full"
            if pressure == "memory_pressure":
                break
    for tid, t in digest.templates.items():
        text = " ".join([t.text, *t.samples[:2]])
        first = _RANKED_FIRST.search(text) or _USED_ABOVE_REQUEST.search(text)
        if first and pressure:
            # an eviction is a rare event that precedes the alert: compared with the baseline only
            w = math.log1p(t.count) * NEW_TEMPLATE_BONUS * (STEADY if seen.get(t.text) else 1.0)
            out.append(((pod_workload(first.group(1), known), pressure), w, t.count, _proof(t)))
        if t.count < MIN_ERROR_LINES:
            continue
        for name in kinds_in(text):
            kind = KINDS_BY_NAME[name]
            owners = [s for s in t.services if s] if name in DATABASE_KINDS and not kind.is_client_report(text) else []
            for service in owners:
                w = _growth(evidence, seen, scale, onset, tid, t) * t.services[service] / t.count
                if w > 0:
                    out.append(((service, name), w, t.services[service], _proof(t)))
    return out


def pod_workload(pod: str, known: set[str]) -> str:
    """A pod's workload (``anomaly.pods``), or a known service named as it is.

    ``batch/report-builder-28796234-5nj8q`` -> ``report-builder``; ``billing-db-0`` -> ``billing-db``.
    """
    pod = pod.rsplit("/", 1)[-1].lower()
    return pod if pod in known else workload_of_pod(pod)


class DependencySignal:
    """Databases, DNS servers and third parties that grown error templates name."""

    name = "dependencies"

    def findings(self, evidence: Evidence) -> list[Finding]:
        digest = evidence.digest
        if digest is None or not digest.lines:
            return []
        known = {s for s in digest.services if s}
        weight: dict[tuple[str, str], float] = defaultdict(float)
        lines: dict[tuple[str, str], int] = defaultdict(int)
        proofs: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
        dns_names: set[str] = set()
        dns_weight, dns_lines, dns_proofs = 0.0, 0, []
        onset = onset_factors(digest)  # once: both passes below weigh templates by it
        for tid, w in template_weights(evidence, onset).items():
            t = digest.templates[tid]
            text = " ".join([t.text, *t.samples[:3], *t.exception_types])
            kinds = set(kinds_in(text))
            if "dns_failure" in kinds:
                queries = _DNS_QUERY.findall(text)
                if queries and _DNS_SERVER_SIDE.search(text):
                    dns_names |= {(q[0] or q[2]).lower() for q in queries}
                    dns_weight += w
                    dns_lines += t.error_lines
                    dns_proofs.append((w, _proof(t)))
                continue  # the names in a DNS failure are what was looked up
            blamed: list[tuple[str, str]] = []
            for host in database_hosts(text, kinds):
                kind = next((k for k in ("db_connection_exhaustion", "database_error") if k in kinds), "database_error")
                blamed.append((workload_of(host, known), kind))
            if not blamed:
                blamed = [(p, "external_dependency") for p in external_provider(text)]
            for key in blamed:
                if key[0] in t.services and len(t.services) == 1:
                    continue  # a service naming itself is not a dependency
                weight[key] += w / len(blamed)
                lines[key] += t.error_lines
                proofs[key].append((w, _proof(t)))

        for (service, kind), w, n, proof in resource_owners(evidence, onset):
            weight[(service, kind)] += w
            lines[(service, kind)] += n
            proofs[(service, kind)].append((w, proof))

        out = []
        for (service, kind), w in weight.items():
            if lines[(service, kind)] < MIN_NAMING_LINES:
                continue
            best = [p for _, p in sorted(proofs[(service, kind)], key=lambda x: -x[0])[:3]]
            out.append(self._finding(service, kind, w, f"named by {lines[(service, kind)]} error lines: " + "; ".join(best)))
        servers = dns_servers(digest) if len(dns_names) >= MIN_DNS_NAMES and dns_lines >= MIN_NAMING_LINES else set()
        for server in servers:
            best = [p for _, p in sorted(dns_proofs, key=lambda x: -x[0])[:3]]
            out.append(self._finding(server, "dns_failure", dns_weight / len(servers),
                                     f"lookups of {len(dns_names)} names failed at the resolver ({dns_lines} lines): " + "; ".join(best)))
        return sorted(out, key=lambda f: -f.strength)

    def _finding(self, service: str, kind: str, weight: float, evidence: str) -> Finding:
        return Finding(service=service, signal=self.name, fault_type=kind, category=KINDS_BY_NAME[kind].category,
                       strength=round(saturate(weight, DEPENDENCY_SCALE), 4), evidence=evidence)


def _proof(t: TemplateStats) -> str:
    sample = t.samples[0] if t.samples else t.text
    sample = sample if len(sample) <= 200 else sample[:197] + "..."
    return f'"{sample}" x{t.count}'
