"""The workload a Kubernetes pod belongs to, read from the pod's name.

Controllers name their pods by fixed rules, so the name alone gives the workload:

| controller | pod name | workload |
|---|---|---|
| Deployment (ReplicaSet) | ``checkout-7d9f8b6c5-x2x9z`` (pod-template hash, 5-char suffix) | ``checkout`` |
| CronJob (Job) | ``report-builder-28796234-5nj8q`` (scheduled minute, suffix) | ``report-builder`` |
| Spark on Kubernetes | ``spark-etl-7f3a9c8d1e2b4f5a-exec-3``, ``...-driver`` | ``spark-etl`` |
| StatefulSet | ``orders-db-0`` (ordinal) | ``orders-db`` |
| DaemonSet, Job, bare ReplicaSet | ``calico-node-hv5xj`` (5-char suffix) | ``calico-node`` |

The random parts come from Kubernetes' safe alphabet (``bcdfghjklmnpqrstvwxz2456789``: no
vowels, no 0, 1 or 3), which keeps ``redis-cache`` or ``my-proxy`` from being cut. A name that
follows no rule is returned unchanged, so nothing is lost. One set of rules serves both the
scalar function and the vectorized polars expression.
"""

from __future__ import annotations

import re

import polars as pl

_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
#: (pattern, replacement) in the order they are tried; the first that matches wins
WORKLOAD_RULES: tuple[tuple[str, str], ...] = (
    (r"^(?:[a-z0-9-]+/)?(.+?)-[0-9a-f]{16}-(?:exec-\d+|driver)$", "$1"),  # Spark executor / driver
    (rf"^(?:[a-z0-9-]+/)?(.+?)-(?:{_SAFE}{{6,10}}|\d{{8,10}})-{_SAFE}{{5}}$", "$1"),  # Deployment, CronJob
    (r"^(?:[a-z0-9-]+/)?([a-z](?:[a-z0-9-]*[a-z])?)-\d{1,4}$", "$1"),  # StatefulSet ordinal (not ip-10-0-5-88)
    (rf"^(?:[a-z0-9-]+/)?(.+?)-{_SAFE}{{5}}$", "$1"),  # DaemonSet, Job
    (r"^[a-z0-9-]+/(.+)$", "$1"),  # namespace/pod of any other name
)
_COMPILED = tuple((re.compile(p), r.replace("$1", r"\1")) for p, r in WORKLOAD_RULES)


def workload_of_pod(pod: str) -> str:
    """The workload (deployment, statefulset, daemonset, cronjob) of a pod, by name.

    ``checkout-7d9f8b6c5-x2x9z`` -> ``checkout``, ``orders-db-0`` -> ``orders-db``,
    ``calico-node-hv5xj`` -> ``calico-node``, ``prod/billing-db-0`` -> ``billing-db``.
    """
    pod = pod.strip()
    for pattern, replacement in _COMPILED:
        if pattern.match(pod):
            return pattern.sub(replacement, pod, count=1)
    return pod


def workload_expr(pod: pl.Expr) -> pl.Expr:
    """``workload_of_pod`` as a polars expression over a column of pod names (null stays null)."""
    pod = pod.str.strip_chars()
    out = pl.when(False).then(pl.lit(None, dtype=pl.String))
    for pattern, replacement in WORKLOAD_RULES:
        out = out.when(pod.str.contains(pattern)).then(pod.str.replace(pattern, replacement))
    return out.otherwise(pod)


def is_pod_name(pod: pl.Expr) -> pl.Expr:
    """True where a name follows a controller's pod naming rule (its workload differs from it)."""
    return pl.any_horizontal([pod.str.contains(p) for p, _ in WORKLOAD_RULES[:-1]]).fill_null(False)
