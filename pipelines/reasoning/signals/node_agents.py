"""Node agent evidence: the network agent whose own warning or restart comes just before the network errors.

Every packet between pods passes the node's network agent (the CNI daemon: Calico, Cilium,
Flannel, the AWS VPC CNI, kube-proxy...). When it restarts or warns (a changed MTU, a lost
route, a failed sync), connections through its node reset, hang in the TLS handshake or time
out, and the services on both ends log network errors while the agent itself logs no error at
all. So: when network errors (``network_error`` / ``network_delay`` words) of other services
rise at a change point inside the window, and a network agent logged a warning, an error or a
restart no more than ``LINK_SECONDS`` before that onset, the agent is the cause.

The errors' rise is found in the data (``change_points.best_change`` on their share of all lines), not
taken from the alert; errors already as frequent before (a kubelet's routine handshake EOFs)
make no onset. The agent must speak first: an agent that restarts after the errors began is
being repaired, not breaking things.
"""

from __future__ import annotations

import math
import re

from anomaly import Digest, TemplateStats
from pipelines.reasoning.base import Evidence
from anomaly.change_points import best_change
from pipelines.reasoning.signals.base import Finding, saturate
from pipelines.reasoning.signals.lexicon import KINDS_BY_NAME, kinds_in
from pipelines.reasoning.signals.log_templates import GROWTH_FACTOR
from pipelines.reasoning.signals.security import bucket_series

#: names the CNI daemons and the service proxy give their pods and units
NETWORK_AGENT_NAMES = (
    "calico-node", "calico", "cilium", "flannel", "weave", "aws-node", "vpc-cni", "kube-proxy", "antrea",
    "kube-router", "canal", "multus", "ovn", "openvswitch", "ovs-vswitchd",
)
#: an agent's event counts when it precedes the errors' onset by at most this much
LINK_SECONDS = 120.0
#: weight (log1p of the errors above their earlier rate) that gives strength 0.63
AGENT_SCALE = 4.0
#: errors of a single service could be its own fault; errors of several services share the path
SINGLE_SERVICE = 0.5
_NETWORK_KINDS = {"network_error", "network_delay"}
_WARNING_LEVELS = {"WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"}
#: a daemon's lifecycle lines: it stopped or (re)started
_LIFECYCLE = re.compile(
    r"\b(?:exiting|shutting down|received (?:signal|SIGTERM)|terminat(?:ed|ing)|started successfully|starting (?:up|felix|agent)"
    r"|restart(?:ed|ing)?)\b", re.IGNORECASE)


def is_network_agent(service: str) -> bool:
    name = service.lower()
    return any(a in name for a in NETWORK_AGENT_NAMES)


def _agent_event(t: TemplateStats) -> bool:
    levels = {k.upper() for k, n in t.levels.items() if n}
    return bool(levels & _WARNING_LEVELS or t.is_error or _LIFECYCLE.search(t.text))


class NodeAgentSignal:
    """A network agent's warning or restart just before other services' network errors rise."""

    name = "node"

    def findings(self, evidence: Evidence) -> list[Finding]:
        digest = evidence.digest
        if digest is None or not digest.lines:
            return []
        agents = {s for s in digest.services if s and is_network_agent(s)}
        if not agents:
            return []
        onset = _network_onset(digest, agents)
        if onset is None:
            return []
        at, excess, services, proof = onset
        if excess <= 0:
            return []
        out = []
        for agent in sorted(agents):
            events = [t for t in digest.templates.values() if agent in t.services and _agent_event(t)
                      and t.first_seen is not None and 0 <= at - t.first_seen <= LINK_SECONDS]
            if not events:
                continue
            first = min(events, key=lambda t: (t.first_seen, t.text))
            warned = [t for t in events if {k.upper() for k in t.levels} & _WARNING_LEVELS or t.is_error]
            shown = (warned or [first])[0]
            factor = 1.0 if len(services) >= 2 else SINGLE_SERVICE
            out.append(Finding(
                service=agent, signal=self.name, fault_type="network_agent", category=KINDS_BY_NAME["network_agent"].category,
                strength=round(saturate(math.log1p(excess) * factor, AGENT_SCALE), 4),
                evidence=f'{agent} logged "{_short(shown)}" {at - first.first_seen:.0f} s before network errors of '
                         f"{', '.join(sorted(services))} rose ({round(excess)} lines above their earlier rate): {proof}",
            ))
        return out


def _network_onset(digest: Digest, agents: set[str]) -> tuple[float, float, set[str], str] | None:
    """When the other services' network errors rose: (time, lines above the earlier rate, services, a sample)."""
    chosen = {}
    for tid, t in digest.templates.items():
        if not t.is_error:
            continue
        if not set(kinds_in(" ".join([t.text, *t.samples[:2]]))) & _NETWORK_KINDS:
            continue
        others = {s for s in t.services if s and s not in agents}
        if others:
            chosen[tid] = others
    if not chosen:
        return None
    series, totals = bucket_series(digest, {tid: [("", 1.0), (tid, 1.0)] for tid in chosen})
    if not totals:
        return None
    counts, size = series[""], len(totals)
    per_tid = {tid: series.get(tid, [0.0] * size) for tid in chosen}
    change = best_change(counts, totals)
    if change is None or not change.significant or change.rate_after <= GROWTH_FACTOR * change.rate_before:
        return None
    after = sum(counts[change.index:]) - change.rate_before * sum(totals[change.index:])
    # the services whose own errors rose after the change (not the ones steady through it)
    rising = set()
    for tid, own in per_tid.items():
        before, later = sum(own[:change.index]), sum(own[change.index:])
        if later > GROWTH_FACTOR * before * max(1, size - change.index) / max(1, change.index):
            rising |= chosen[tid]
    top = max((tid for tid in chosen if chosen[tid] & rising), key=lambda tid: digest.templates[tid].count, default=None)
    proof = f'"{_short(digest.templates[top])}" x{digest.templates[top].count}' if top else ""
    return min(digest.bucket_counts()) + change.index * digest.bucket_seconds, after, rising, proof


def _short(t: TemplateStats) -> str:
    text = t.samples[0] if t.samples else t.text
    return text if len(text) <= 160 else text[:157] + "..."
