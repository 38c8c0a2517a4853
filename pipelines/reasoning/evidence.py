"""The offline evidence reasoner: ranks causes from what changed, without any network.

How it thinks:
1. Every signal (``pipelines/reasoning/signals``: log templates, metrics, traces, patterns, the
   dependencies callers name) reads the evidence and returns findings: a service, a fault type,
   a strength 0..1 and the evidence in words (template text with counts, metric before/after,
   call edge latencies, the database or provider the callers' errors name).
2. A service's score adds the strongest finding of each signal, so a service that several
   kinds of evidence agree on beats one that a single noisy signal points at. Signals already
   separate the cause from its victims (a caller's error naming its callee blames the callee;
   a slow edge is blamed on the endpoint whose other edges are slow too).
3. A service's fault type is the one its evidence supports most: a CPU rise of its own pod
   outranks the slowness it causes; latency alone is a symptom and never the named type when
   anything else is known.
4. One rule ties the classification to the ranking: when the logs as a whole route to a kind of
   shared resource (a database, DNS, a third party, the node's disk or memory) and the owner of
   that resource is among the candidates, the owner is the top hypothesis with that kind;
   otherwise the category is the top hypothesis's category.
5. Confidence is absolute: it grows with the top score (how much evidence, from how many
   signals) and with its margin over the runner-up, and is lower without a baseline. Below
   ``CONFIDENT`` the evidence is called weak in ``degraded_reasons`` and the remediation
   gathers evidence instead of changing anything.
6. Remediation is the user's runbooks that match the top hypothesis, then the playbook of its
   fault type, with its service filled in.
"""

from __future__ import annotations

import math
from collections import defaultdict

from pipelines.reasoning.base import Evidence, Verdict
from pipelines.reasoning.playbooks import GATHER_EVIDENCE, remediation_for
from pipelines.reasoning.signals import Finding, collect
from pipelines.reasoning.signals.lexicon import KINDS_BY_NAME, kinds_in
from pipelines.runbooks import Runbooks
from pipelines.schemas import Category, Classification, Hypothesis, RiskLevel

SYMPTOM_TYPES = {"latency"}
#: a CPU finding this strong names CPU contention even when the service's edges are slow too
CPU_OVER_NETWORK = 0.5
#: log kinds that name a category by themselves, whoever logs them (the culprit may log nothing)
ROUTING_KINDS = {
    "db_connection_exhaustion", "database_error", "dns_failure", "credential_stuffing", "security_event",
    "external_dependency", "memory_leak", "disk_full", "memory_pressure", "network_agent",
}
#: signals whose findings name the owner of what failed (the database callers name, the service
#: under attack, the node's network agent), not the service that logged the lines
OWNER_SIGNALS = {"dependencies", "security", "node"}
#: kinds of a node's resource running out (tried first when the logs route to several kinds)
NODE_RESOURCE_KINDS = {"disk_full", "memory_pressure"}
#: routing votes (summed strengths of log findings naming a kind) needed for the logs to route
MIN_ROUTING_VOTES = 0.2
MAX_EVIDENCE = 5
#: score (sum over signals of each one's strongest finding) at which the evidence level is 0.63
EVIDENCE_SCALE = 0.6
#: confidence factor when nothing was compared against a baseline (window against itself only)
NO_BASELINE = 0.85
#: at or above this a hypothesis is a confident answer; below it the evidence is called weak
CONFIDENT = 0.5
MIN_CONFIDENCE = 0.02


class EvidenceReasoner:
    """Default reasoner: deterministic, offline, explains every hypothesis with evidence."""

    name = "evidence"

    def __init__(self, runbooks: Runbooks | None = None) -> None:
        self.runbooks = runbooks

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
        owner = _routed_owner(by_service)
        if owner is not None:  # the clients' reports of a shared resource are evidence against its owner
            service, _, votes = owner
            scores[service] = max(scores[service] + votes, scores[ranked[0]])
            ranked.remove(service)
            ranked.insert(0, service)
        fault_types = {s: fault_type_of(by_service[s]) for s in ranked[:3]}
        if owner is not None:
            fault_types[owner[0]] = owner[1]

        baseline = _has_baseline(evidence)
        confidences = confidences_of([scores[s] for s in ranked[:4]], baseline)
        hypotheses = [
            _hypothesis(service, fault_types[service], conf, by_service[service])
            for service, conf in zip(ranked[:3], confidences)
        ]
        hypotheses = _at_least_two(hypotheses, evidence)

        top = hypotheses[0]
        weak = _weakness(top, scores.get(top.service or "", 0.0), by_service.get(top.service or "", []), baseline)
        degraded = [*failed]
        if weak:
            degraded.append("weak evidence: " + "; ".join(weak))
        namespace = evidence.alert.labels.get("namespace")
        remediation = remediation_for(
            top.fault_type or "unknown", top.service, namespace, caller=evidence.alert.service, runbooks=self.runbooks,
            category=top.category, evidence=top.evidence,
            pod=evidence.alert.labels.get("pod") if top.service == evidence.alert.service else None,
        )
        if weak:  # look before changing anything: gather evidence, then only the top's read-only checks
            gather = remediation_for(GATHER_EVIDENCE, evidence.alert.service or top.service, namespace)
            checks = [s for s in remediation if s.risk_level == RiskLevel.low] if top.fault_type != "unknown" else []
            remediation = [s.model_copy(update={"step": i}) for i, s in enumerate([*gather, *checks], start=1)]
        return Verdict(
            classification=Classification(category=top.category, confidence=top.confidence),
            hypotheses=hypotheses,
            remediation=remediation,
            reasoner=self.name,
            degraded_reasons=degraded,
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


def confidences_of(scores: list[float], has_baseline: bool) -> list[float]:
    """Confidence of each ranked hypothesis from the absolute scores (see module doc, step 5).

    ``level(score) * (0.5 + 0.5 * margin)``: ``level`` saturates the score (``EVIDENCE_SCALE``
    gives 0.63), ``margin`` is the share of the score the next hypothesis does not reach. A later
    hypothesis is never more confident than an earlier one.
    """
    out: list[float] = []
    for i, score in enumerate(scores):
        level = 1.0 - math.exp(-max(score, 0.0) / EVIDENCE_SCALE)
        runner_up = scores[i + 1] if i + 1 < len(scores) else 0.0
        margin = max(0.0, score - runner_up) / score if score > 0 else 0.0
        conf = level * (0.5 + 0.5 * margin) * (1.0 if has_baseline else NO_BASELINE)
        conf = round(min(0.95, max(MIN_CONFIDENCE, conf)), 3)
        if out:  # ranked by score: a lower score is never as confident (only equal scores tie)
            conf = min(conf, out[-1] if score == scores[i - 1] else round(out[-1] - 0.001, 3))
        out.append(max(conf, 0.0))
    return out


def _has_baseline(evidence: Evidence) -> bool:
    baseline = evidence.baseline_digest
    return bool((baseline is not None and baseline.lines) or evidence.baseline_metrics or evidence.baseline_spans)


def _weakness(top: Hypothesis, score: float, items: list[Finding], has_baseline: bool) -> list[str]:
    """Why the top hypothesis is not a confident answer (empty when it is)."""
    if top.confidence >= CONFIDENT:
        return []
    why = [f"top hypothesis confidence {top.confidence:.2f} below {CONFIDENT}"]
    signals = {f.signal for f in items}
    if not items:
        why.append("no signal points at any service")
    else:
        why.append(f"total strength {score:.2f} from {len(signals)} signal{'s' if len(signals) != 1 else ''}")
    if not has_baseline:
        why.append("no baseline to compare against (the window is compared with itself)")
    return why


def _routed_owner(by_service: dict[str, list[Finding]]) -> tuple[str, str, float] | None:
    """The owner of the shared resource the logs as a whole route to, with that kind and the votes.

    Routing votes add the strength of the log findings whose evidence names a kind of shared
    resource (``ROUTING_KINDS``); the owner is a service an owner signal (``OWNER_SIGNALS``: the
    dependencies callers name, the service under attack, the network agent) names with a fault type of the routed
    category, the strongest such finding winning. None when the logs do
    not route or no candidate owns the resource: the category then follows the top hypothesis.
    """
    votes: dict[str, float] = defaultdict(float)
    for items in by_service.values():
        for f in items:
            if f.signal == "logs":
                for kind in kinds_in(f.evidence):
                    if kind in ROUTING_KINDS:
                        votes[kind] += f.strength
            elif f.signal in OWNER_SIGNALS and f.fault_type in ROUTING_KINDS:
                votes[f.fault_type] += f.strength
    routed = [k for k in votes if votes[k] >= MIN_ROUTING_VOTES]
    # a node's exhausted disk or memory is under everything on the node (the database that cannot
    # write, the clients that time out): it is tried first, then the kinds by their votes
    for kind_name in sorted(routed, key=lambda k: (k not in NODE_RESOURCE_KINDS, -votes[k], k)):
        category = KINDS_BY_NAME[kind_name].category
        best: tuple[float, str, str] | None = None
        for service, items in by_service.items():
            for f in items:
                kind = KINDS_BY_NAME.get(f.fault_type)
                if f.signal in OWNER_SIGNALS and kind is not None and kind.category == category:
                    if best is None or (f.strength, service) > best[:2]:
                        best = (f.strength, service, f.fault_type)
        if best is not None:
            return best[1], best[2], votes[kind_name]
    return None


def _hypothesis(service: str, fault_type: str, confidence: float, items: list[Finding]) -> Hypothesis:
    kind = KINDS_BY_NAME.get(fault_type)
    ordered = sorted(items, key=lambda f: -f.strength)
    evidence = [f"[{f.signal}] {f.evidence}" for f in ordered[:MAX_EVIDENCE]]
    return Hypothesis(
        cause=f"{kind.cause if kind else 'unusual behaviour'} in {service}",
        confidence=confidence,
        evidence=evidence,
        category=kind.category if kind else Category.application,
        service=service,
        fault_type=fault_type if kind else "unknown",
    )


def _at_least_two(hypotheses: list[Hypothesis], evidence: Evidence) -> list[Hypothesis]:
    """An Analysis carries 2-3 hypotheses naming distinct services or causes; fillers say they are guesses."""
    alert_service = evidence.alert.service
    alert = f"alert {evidence.alert.name} on {alert_service or 'an unknown service'}"
    if not hypotheses:
        hypotheses.append(
            Hypothesis(
                cause=f"no clear cause in the evidence; start with {alert_service or 'the alerting service'}",
                confidence=MIN_CONFIDENCE * 5,
                evidence=[f"{alert}; no signal found"],
                category=Category.application,
                service=alert_service,
                fault_type="unknown",
            )
        )
    if len(hypotheses) < 2:
        first = hypotheses[0]
        named = {h.service for h in hypotheses}
        if alert_service and alert_service not in named:
            cause, service = f"a recent change in {alert_service}", alert_service
        else:
            subject = first.service or alert_service or "the alerting service"
            cause, service = f"a dependency of {subject} that the evidence does not name", None
        hypotheses.append(
            Hypothesis(
                cause=cause,
                confidence=min(MIN_CONFIDENCE * 2.5, first.confidence),
                evidence=[alert],
                category=first.category,
                service=service,
                fault_type="unknown",
            )
        )
    return hypotheses
