"""Which label names the service: the alert, Loki streams and Prometheus series read it one way."""

from __future__ import annotations

import pytest

from pipelines.schemas import Alert, service_from_labels


@pytest.mark.parametrize("labels, expected", [
    ({"service": "checkout", "job": "api", "app": "web"}, "checkout"),
    # kube-state-metrics alerts: the scrape job is not the service, the workload is
    ({"job": "kube-state-metrics", "namespace": "prod", "deployment": "orders"}, "orders"),
    ({"job": "kube-state-metrics", "namespace": "prod", "pod": "orders-7d9f8b6c5-x2x9z", "container": "orders"},
     "orders"),
    # Loki's promtail job is <namespace>/<app>
    ({"job": "prod/cart", "app": "cart", "pod": "cart-5c8d7f-abcde"}, "cart"),
    # Prometheus' sanitised app.kubernetes.io/name, OTel's service_name
    ({"app_kubernetes_io_name": "payments", "job": "kubernetes-pods"}, "payments"),
    ({"service_name": "frontend", "job": "otel"}, "frontend"),
    ({"pod": "orders-db-0"}, "orders-db"),
    ({"container": "redis", "job": "cadvisor"}, "redis"),
    ({"job": "checkout", "instance": "10.0.0.7:8080"}, "checkout"),
    ({"instance": "10.0.0.7:8080"}, None),
])
def test_service_from_labels(labels, expected):
    assert service_from_labels(labels) == expected


def test_the_alert_reads_the_same_labels():
    alert = Alert.model_validate({"name": "KubePodCrashLooping", "timestamp": "2025-01-01T00:00:00Z",
                                  "labels": {"job": "kube-state-metrics", "pod": "pricing-6b7c9d8f5-q8w2z"}})
    assert alert.service == "pricing"
