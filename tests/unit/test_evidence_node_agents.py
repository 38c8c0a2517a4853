"""The node agent signal and the reasoner on a network agent that breaks its node's connections.

Each test writes normal traffic of three services, a network agent's routine lines, and network
errors of the services as their clients and servers would log them.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pipelines.reasoning.base import Evidence
from pipelines.reasoning.evidence import EvidenceReasoner
from pipelines.reasoning.signals.node_agents import NodeAgentSignal, is_network_agent
from pipelines.schemas import Alert, Category, RiskLevel
from tests.support.evidence_rows import evidence_of

T0 = 1_700_000_000.0
ALERT = Alert(name="SlowResponseTime", timestamp=datetime.fromtimestamp(T0, tz=timezone.utc),
              labels={"service": "orders", "namespace": "shop"})
AGENT = "cilium-agent"


def _normal(start: float, n: int = 100):
    rows = []
    for i in range(n):
        t = start + i * 3
        rows.append(("orders", "INFO", f"order {1000 + i} created", t))
        rows.append(("stock", "INFO", f"reserved {i % 7} items for order {1000 + i}", t + 1))
        rows.append(("payments", "INFO", f"payment {2000 + i} captured", t + 2))
        if i % 5 == 0:
            rows.append((AGENT, "INFO", f"Synchronized endpoint state, {40 + i % 3} endpoints", t + 1.5))
    return rows


def _errors(start: float, n: int = 60):
    rows = []
    for i in range(n):
        t = start + i * 2
        rows.append(("orders", "WARN", f"stock call failed, retrying: Post https://stock:8443/reserve: net/http: TLS handshake timeout ({i})", t))
        rows.append(("stock", "ERROR", f"http: TLS handshake error from 10.9.4.{i % 20}:4{i:03d}: read: connection reset by peer", t + 1))
    return rows


def _agent_restart(at: float):
    return [(AGENT, "INFO", "Received signal terminated, shutting down", at), (AGENT, "INFO", "agent started successfully", at + 5),
            (AGENT, "WARN", "Configured tunnel MTU 9001 is larger than the device MTU 1500", at + 6)]


def _evidence(rows) -> Evidence:
    return evidence_of(ALERT, _normal(T0 - 300) + rows)


def test_network_errors_of_several_services_right_after_the_agent_warns_name_the_agent() -> None:
    verdict = EvidenceReasoner().decide(_evidence(_agent_restart(T0 - 200) + _errors(T0 - 180)))
    top = verdict.hypotheses[0]
    assert top.service == AGENT and top.category == Category.network and top.fault_type == "network_agent"
    assert verdict.classification.category == Category.network
    # remediation changes the agent, never the services that suffer it
    for step in verdict.remediation:
        if step.risk_level != RiskLevel.low:
            assert "deployment/orders" not in (step.command or "") and "deployment/stock" not in (step.command or "")


def test_an_agent_that_restarts_after_the_errors_began_is_being_repaired_not_the_cause() -> None:
    assert NodeAgentSignal().findings(_evidence(_errors(T0 - 250) + _agent_restart(T0 - 60))) == []


def test_an_agent_warning_with_no_network_errors_after_it_is_nothing() -> None:
    assert NodeAgentSignal().findings(_evidence(_agent_restart(T0 - 200))) == []


def test_network_errors_as_frequent_before_the_agent_spoke_as_after_are_not_its_doing() -> None:
    steady = [r for i, r in enumerate(_errors(T0 - 300, n=150)) if i % 4 == 0]  # all window long, same rate
    assert NodeAgentSignal().findings(_evidence(steady + _agent_restart(T0 - 150))) == []


def test_agent_names() -> None:
    assert is_network_agent("calico-node") and is_network_agent("kube-proxy") and is_network_agent("aws-node")
    assert not is_network_agent("orders") and not is_network_agent("kubelet")
