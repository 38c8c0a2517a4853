"""Remediation playbooks, one per kind of fault.

A playbook is an ordered list of steps with a command template; ``{service}`` is the service
the hypothesis names as the cause (the database, the DNS server, the provider, the workload),
``{caller}`` a service that suffers it (the alerting one) and ``{namespace}`` the alert's.
Adding a fault kind is adding one entry. Read-only diagnosis comes first (low risk), changes
later (medium/high risk); a playbook only changes the component its fault kind blames (no
rollback of a client for a database outage). ``GATHER_EVIDENCE`` is for weak evidence: it
changes nothing. A team's own runbooks (``pipelines/runbooks.py``) that match come first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.runbooks import IncidentFacts, Runbooks, filled_steps
from pipelines.schemas import Category, RemediationStep, RiskLevel


@dataclass(frozen=True)
class Step:
    action: str
    command: str | None
    expected_outcome: str
    risk_level: RiskLevel


L, M, H = RiskLevel.low, RiskLevel.medium, RiskLevel.high

PLAYBOOKS: dict[str, list[Step]] = {
    "memory_leak": [
        Step("Confirm memory growth and OOM kills of {service}", "kubectl top pod -n {namespace} -l app={service}; kubectl get events -n {namespace} --field-selector reason=OOMKilling", "Memory near the limit and OOMKilled events confirm the leak", L),
        Step("Capture a heap dump from one replica before it restarts", "kubectl exec -n {namespace} deploy/{service} -- jcmd 1 GC.heap_dump /tmp/heap.hprof", "A heap dump to find the object that grows", L),
        Step("Restart {service} to restore service while the leak is investigated", "kubectl rollout restart deployment/{service} -n {namespace}", "Memory back to its normal level and errors stop for now", M),
        Step("Roll back the last deploy of {service} if the leak started with it", "kubectl rollout undo deployment/{service} -n {namespace}", "Memory stays flat after the rollback", H),
    ],
    "code_exception": [
        Step("Read the failing requests' exceptions in {service}", "kubectl logs -n {namespace} deploy/{service} --since=15m | grep -A20 -E 'Exception|Error'", "The exception and the code path that throws it", L),
        Step("Check whether a deploy of {service} coincides with the errors", "kubectl rollout history deployment/{service} -n {namespace}", "A revision deployed just before the first error", L),
        Step("Roll back {service} to the previous revision", "kubectl rollout undo deployment/{service} -n {namespace}", "Error rate of {service} back to baseline", H),
    ],
    "db_connection_exhaustion": [
        Step("Look at connections on {service}", "psql -h {service} -c \"SELECT state, count(*) FROM pg_stat_activity GROUP BY state\"", "Connections at max_connections, many idle in transaction or waiting", L),
        Step("Find and end idle-in-transaction sessions holding connections on {service}", "psql -h {service} -c \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle in transaction' AND state_change < now() - interval '5 minutes'\"", "Connections freed; waiting requests proceed", M),
        Step("Lower the pool size per replica of the callers of {service}, or put PgBouncer in front of it", None, "Total pool sizes below max_connections", M),
        Step("Scale down the callers that open the most connections, if {service} stays saturated", "kubectl scale deployment/<caller> -n {namespace} --replicas=<n>", "Fewer connections; {service} accepts new ones", H),
    ],
    "database_error": [
        Step("Check {service}'s health, lock waits and replication", "psql -h {service} -c \"SELECT pid, wait_event_type, wait_event, state, query_start, left(query, 80) FROM pg_stat_activity WHERE wait_event IS NOT NULL\"", "Lock waits, a long-running statement or a replica behind identified", L),
        Step("Find the session that blocks the others on {service}", "psql -h {service} -c \"SELECT pid, pg_blocking_pids(pid), left(query, 80) FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0\"", "The blocking statement (a migration, VACUUM FULL, a batch job)", L),
        Step("Check that {service} is up and accepts connections", "kubectl get pods -n {namespace} | grep {service}; pg_isready -h {service}", "The database pod ready and accepting connections", L),
        Step("Cancel the blocking statement on {service}", "psql -h {service} -c \"SELECT pg_cancel_backend(<pid>)\"", "Blocked queries proceed; callers' errors stop", M),
    ],
    "memory_pressure": [
        Step("Find the node under memory pressure and what the kernel or kubelet killed", "kubectl get events -A --field-selector reason=Evicted; kubectl describe node <node> | grep -A5 Conditions", "The node with MemoryPressure and the pods evicted or OOM-killed", L),
        Step("Confirm {service} uses the node's memory", "kubectl top pod -A --sort-by=memory | head -20", "{service} uses far more memory than it requests", L),
        Step("Set a memory limit on {service} or move it to a dedicated node", "kubectl set resources deployment/{service} -n {namespace} --limits=memory=<limit>", "The node's other pods stop being killed", M),
    ],
    "dns_failure": [
        Step("Check cluster DNS pods and their errors", "kubectl get pods -n kube-system -l k8s-app=kube-dns; kubectl logs -n kube-system -l k8s-app=kube-dns --since=15m | grep -i error", "CoreDNS pods unhealthy or timing out upstream", L),
        Step("Resolve a service name from a fresh pod in {namespace}", "kubectl run dnscheck -n {namespace} --rm -i --restart=Never --image=busybox:1.36 -- nslookup kubernetes.default", "Lookup fails or times out: DNS is the cause", L),
        Step("Restart CoreDNS", "kubectl rollout restart deployment/coredns -n kube-system", "Lookups succeed again; errors drop", M),
        Step("Scale CoreDNS up if it is overloaded", "kubectl scale deployment/coredns -n kube-system --replicas=4", "DNS latency back to normal", M),
    ],
    "network_delay": [
        Step("Measure latency between {service} and its callers", "kubectl exec -n {namespace} deploy/{service} -- sh -c 'time wget -qO- http://localhost:8080/health'", "Latency inside the pod normal, between pods high", L),
        Step("Look for traffic shaping or mesh fault injection on {service}", "kubectl exec -n {namespace} deploy/{service} -- tc qdisc show; kubectl get virtualservice,destinationrule -n {namespace}", "A netem delay or a fault rule on the path", L),
        Step("Remove the delay rule or move {service} off the degraded node", "kubectl exec -n {namespace} deploy/{service} -- tc qdisc del dev eth0 root", "Latency back to baseline", M),
    ],
    "network_error": [
        Step("Check connectivity from {service} to its dependencies", "kubectl exec -n {namespace} deploy/{service} -- nc -zv <dependency> <port>", "Refused or unreachable dependency identified", L),
        Step("Check NetworkPolicies and recent changes in the namespace", "kubectl get networkpolicy -n {namespace}", "A policy blocking the path", L),
        Step("Revert the network change that blocks the path", None, "Connections succeed again", M),
    ],
    "network_agent": [
        Step("Find the node whose pods the failing connections reach, and the network agent's pod on it", "kubectl get pods -A -o wide | grep <failing pod address>; kubectl get pods -n kube-system -o wide | grep {service}", "The failing addresses share one node; its agent restarted just before the errors", L),
        Step("Read the network agent's warnings and the configuration it started with", "kubectl logs -n kube-system <{service} pod> --since=30m | grep -iE 'warn|error|mtu|route'", "A changed setting (MTU, encapsulation, routes) the agent warns about", L),
        Step("Move traffic off the node while the agent is fixed", "kubectl cordon <node>; kubectl drain <node> --ignore-daemonsets --delete-emptydir-data", "Connections to the rescheduled pods succeed", M),
        Step("Revert the agent's configuration change and restart it on the node", "kubectl rollout undo daemonset/{service} -n kube-system", "The agent starts with the previous settings; handshakes and resets stop", H),
    ],
    "cpu_contention": [
        Step("Check node pressure and the pods of {service}", "kubectl top pod -n {namespace} -l app={service}; kubectl describe node $(kubectl get pod -n {namespace} -l app={service} -o jsonpath='{{.items[0].spec.nodeName}}') | grep -A5 Conditions", "CPU at its limit or the node saturated", L),
        Step("Find the noisy neighbour on the same node", "kubectl top pod -A --sort-by=cpu | head -20", "The pod consuming the node's CPU", L),
        Step("Limit the noisy neighbour or move {service} to another node", "kubectl cordon <node>; kubectl delete pod -n {namespace} -l app={service}", "{service} rescheduled; latency back to baseline", M),
        Step("Raise CPU requests/limits of {service} or scale it out", "kubectl scale deployment/{service} -n {namespace} --replicas=<n+2>", "CPU per pod below 70 %", M),
    ],
    "disk_full": [
        Step("Find the full filesystem", "kubectl describe node <node> | grep -i pressure; kubectl exec -n {namespace} deploy/{service} -- df -h", "A filesystem at 100 %", L),
        Step("Remove or rotate large logs and temporary files", "kubectl exec -n {namespace} deploy/{service} -- sh -c 'du -sh /var/log/* | sort -h | tail'", "Free space above 20 %", M),
        Step("Expand the volume or add ephemeral-storage limits", None, "Disk pressure cleared; evictions stop", M),
    ],
    "credential_stuffing": [
        Step("List the source addresses of failed logins", "kubectl logs -n {namespace} deploy/{service} --since=15m | grep -i 'login failed' | grep -oE 'ip=[0-9.]+' | sort | uniq -c | sort -rn | head", "Many addresses, few attempts each: a distributed attack", L),
        Step("Enable stricter rate limits and CAPTCHA on the login endpoint", None, "Failed-login rate drops", M),
        Step("Block the attacking ranges at the WAF or ingress", "kubectl annotate ingress <login-ingress> -n {namespace} nginx.ingress.kubernetes.io/denylist-source-range=<ranges>", "Attack traffic refused at the edge", M),
        Step("Force password resets for accounts that logged in successfully from those addresses", None, "Compromised accounts secured", H),
    ],
    "security_event": [
        Step("Review authentication failures and their sources in {service}", "kubectl logs -n {namespace} deploy/{service} --since=15m | grep -iE 'denied|unauthorized|forbidden'", "Who is refused, and from where", L),
        Step("Revoke exposed credentials and rotate secrets", None, "Old credentials no longer accepted", H),
    ],
    "external_dependency": [
        Step("Confirm {service} fails from {caller}", "kubectl exec -n {namespace} deploy/{caller} -- curl -sS -o /dev/null -w '%{{http_code}} %{{time_total}}s' https://{service}/", "{service} answers 5xx, throttles or times out: the outage is theirs", L),
        Step("Check {service}'s status page and open a ticket with the provider", None, "The provider acknowledges the incident", L),
        Step("Keep {caller}'s retries bounded (circuit breaker, back-off) so they do not add load", None, "Callers fail fast instead of piling up", M),
        Step("Fail over to a secondary provider or degrade gracefully (queue requests, disable the feature)", None, "Users get a degraded but working path", M),
    ],
    "unknown": [
        Step("Read recent errors of {service}", "kubectl logs -n {namespace} deploy/{service} --since=15m | grep -iE 'error|exception|fatal'", "The first error that precedes the others", L),
        Step("Check recent deploys and events in the namespace", "kubectl get events -n {namespace} --sort-by=.lastTimestamp | tail -30", "A change that coincides with the alert", L),
        Step("Roll back the change that coincides with the alert, once one is found", None, "Alert resolves", H),
    ],
    "gather_evidence": [
        Step("Look at {service}'s dashboards: error rate, latency, saturation and traffic since before the alert", None, "Whether the alert is a real change and when it began", L),
        Step("Read the logs of {service}'s dependencies (databases, caches, downstream services, third parties) around the alert", "kubectl logs -n {namespace} -l app=<dependency> --since=15m | grep -iE 'error|refused|timeout|fatal'", "A dependency that failed first", L),
        Step("List recent deploys, config changes and cluster events", "kubectl get events -A --sort-by=.lastTimestamp | tail -40; kubectl rollout history deployment -n {namespace}", "A change that coincides with the alert's onset", L),
        Step("Check the nodes that run {service} (pressure, restarts, network agent)", "kubectl get pods -n {namespace} -l app={service} -o wide; kubectl describe node <node> | grep -A5 Conditions", "A node condition shared by the failing pods", L),
    ],
}


#: the playbook for weak evidence: look before changing anything
GATHER_EVIDENCE = "gather_evidence"


def remediation_for(
    fault_type: str,
    service: str | None,
    namespace: str | None,
    caller: str | None = None,
    *,
    runbooks: Runbooks | None = None,
    category: Category | None = None,
    evidence: Sequence[str] = (),
    pod: str | None = None,
) -> list[RemediationStep]:
    """The user's matching runbooks, then the playbook of a fault type, with the incident filled in.

    Each step names its ``source`` (``runbook:<file>`` or ``playbook:<fault type>``); a matching
    runbook with ``replace_playbook`` leaves the playbook out.
    """
    facts = IncidentFacts(category, fault_type, service, namespace, pod, tuple(evidence))
    matched = runbooks.matching(facts) if runbooks is not None else []
    own = [step for runbook in matched for step in runbook.remediation(facts)]
    builtin = [] if any(r.replace_playbook for r in matched) else _playbook(facts, caller)
    return [s.model_copy(update={"step": i}) for i, s in enumerate([*own, *builtin], start=1)]


def _playbook(facts: IncidentFacts, caller: str | None) -> list[RemediationStep]:
    name = facts.fault_type if facts.fault_type in PLAYBOOKS else "unknown"
    values = {**facts.values(), "caller": caller if caller and caller != facts.service else "<caller>"}
    return filled_steps(PLAYBOOKS[name], values, f"playbook:{name}")
