"""The offline evidence reasoner: ranks causes from what changed, without any network.

How it thinks:
1. Every signal (``pipelines/reasoning/signals``: log templates, metrics, traces) reads the
   evidence and returns findings: a service, a fault type, a strength 0..1 and the evidence
   in words (template text with counts, metric before/after, call edge latencies).
2. A service's score adds the strongest finding of each signal, so a service that several
   kinds of evidence agree on beats one that a single noisy signal points at. Signals already
   separate the cause from its victims (a caller's error naming its callee blames the callee;
   a slow edge is blamed on the endpoint whose other edges are slow too).
3. A service's fault type is the one its evidence supports most: a CPU rise of its own pod
   outranks the slowness it causes; latency alone is a symptom and never the named type when
   anything else is known. The category follows the top hypothesis's fault type, unless the
   logs as a whole speak clearly of another kind (DNS, database, security, external).
4. Remediation is the playbook of the top hypothesis's fault type, with its service filled in.
"""

from __future__ import annotations

from collections import defaultdict

from pipelines.reasoning.base import Evidence, Verdict
from pipelines.reasoning.playbooks import remediation_for
from pipelines.reasoning.signals import Finding, collect
from pipelines.reasoning.signals.lexicon import KINDS_BY_NAME, kinds_in
from pipelines.schemas import Category, Classification, Hypothesis

SYMPTOM_TYPES = {"latency"}
#: a CPU finding this strong names CPU contention even when the service's edges are slow too
CPU_OVER_NETWORK = 0.5
#: log kinds that name a category by themselves, whoever logs them (the culprit may log nothing)
ROUTING_KINDS = {
    "db_connection_exhaustion", "database_error", "dns_failure", "credential_stuffing", "security_event",
    "external_dependency", "memory_leak", "disk_full",
}
MAX_EVIDENCE = 5


class EvidenceReasoner:
    """Default reasoner: deterministic, offline, explains every hypothesis with evidence."""

    name = "evidence"

    async def reason(self, evidence: Evidence) -> Verdict:
        return self.decide(evidence)

    def decide(self, evidence: Evidence) -> Verdict:
        findings, failed = collect(evidence)
        by_service: dict[str, list[Finding]] = defaultdict(list)
        for f in findings:
            if f.strength > 0 and f.service:
                by_service[f.service].append(f)

        scores = {service: _score(items) for service, items in by_service.items()}
        ranked = sorted(scores, key=lambda s: (-scores[s], s))
        hypotheses = [_hypothesis(service, scores, by_service[service], ranked) for service in ranked[:3]]
        hypotheses = _at_least_two(hypotheses, evidence)

        category, confidence = _classify(hypotheses[0], evidence, by_service)
        namespace = evidence.alert.labels.get("namespace")
        top = hypotheses[0]
        return Verdict(
            classification=Classification(category=category, confidence=round(confidence, 3)),
            hypotheses=hypotheses,
            remediation=remediation_for(top.fault_type or "unknown", top.service, namespace),
            reasoner=self.name,
            degraded_reasons=failed,
        )


def _score(items: list[Finding]) -> float:
    """Sum over signals of each signal's strongest finding."""
    best: dict[str, float] = {}
    for f in items:
        best[f.signal] = max(best.get(f.signal, 0.0), f.strength)
    return sum(best.values())


def fault_type_of(items: list[Finding]) -> str:
    """The fault type a service's evidence supports most (see module doc, step 3)."""
    weight: dict[str, float] = defaultdict(float)
    for f in items:
        weight[f.fault_type] = max(weight[f.fault_type], f.strength)
    if weight.get("cpu_contention", 0.0) >= CPU_OVER_NETWORK:
        return "cpu_contention"
    causes = {k: v for k, v in weight.items() if k not in SYMPTOM_TYPES}
    pool = causes or weight
    return max(pool, key=lambda k: (pool[k], k)) if pool else "unknown"


def _hypothesis(service: str, scores: dict[str, float], items: list[Finding], ranked: list[str]) -> Hypothesis:
    fault_type = fault_type_of(items)
    kind = KINDS_BY_NAME.get(fault_type)
    top_two = sum(scores[s] for s in ranked[:2]) or 1.0
    confidence = min(0.95, max(0.05, scores[service] / top_two))
    ordered = sorted(items, key=lambda f: -f.strength)
    evidence = [f"[{f.signal}] {f.evidence}" for f in ordered[:MAX_EVIDENCE]]
    return Hypothesis(
        cause=f"{kind.cause if kind else 'unusual behaviour'} in {service}",
        confidence=round(confidence, 3),
        evidence=evidence,
        category=kind.category if kind else Category.application,
        service=service,
        fault_type=fault_type if kind else "unknown",
    )


def _at_least_two(hypotheses: list[Hypothesis], evidence: Evidence) -> list[Hypothesis]:
    """An Analysis carries 2-3 hypotheses; with little evidence the rest say so plainly."""
    alert_service = evidence.alert.service
    if not hypotheses:
        hypotheses.append(
            Hypothesis(
                cause=f"no clear cause in the evidence; start with {alert_service or 'the alerting service'}",
                confidence=0.1,
                evidence=[f"alert {evidence.alert.name} on {alert_service or 'an unknown service'}; no signal found"],
                category=Category.application,
                service=alert_service,
                fault_type="unknown",
            )
        )
    if len(hypotheses) < 2:
        first = hypotheses[0]
        service = alert_service if alert_service and alert_service != first.service else first.service
        hypotheses.append(
            Hypothesis(
                cause=f"a recent change in {service or 'the alerting service'}",
                confidence=0.05,
                evidence=[f"alert {evidence.alert.name} on {alert_service or 'an unknown service'}"],
                category=first.category,
                service=service,
                fault_type="unknown",
            )
        )
    return hypotheses


def _classify(top: Hypothesis, evidence: Evidence, by_service: dict[str, list[Finding]]) -> tuple[Category, float]:
    """Category of the incident: the top hypothesis's, unless the logs clearly route elsewhere."""
    votes: dict[str, float] = defaultdict(float)
    for items in by_service.values():
        for f in items:
            if f.signal == "logs":
                for kind in kinds_in(f.evidence):
                    votes[kind] += f.strength
    routing = {k: v for k, v in votes.items() if k in ROUTING_KINDS}
    top_kind = KINDS_BY_NAME.get(top.fault_type or "")
    if routing:
        kind_name = max(routing, key=lambda k: (routing[k], k))
        kind = KINDS_BY_NAME[kind_name]
        if routing[kind_name] >= 0.5 and (top_kind is None or top_kind.category != kind.category):
            return kind.category, min(0.9, 0.4 + routing[kind_name] / (1.0 + sum(votes.values())))
    return top.category, max(0.2, min(0.95, top.confidence))
