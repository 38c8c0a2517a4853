"""Where Ray's metrics export port listens: what the operator chose, loopback by default locally."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipelines.runtime import ray_node_options
from pipelines.settings import Settings


@pytest.mark.parametrize(("settings", "loopback"), [
    ({}, True),  # rca serve on 127.0.0.1: the metrics port too
    ({"host": "0.0.0.0"}, False),  # the container image serves every interface: Prometheus scrapes over the network
    ({"host": "0.0.0.0", "metrics_host": "127.0.0.1"}, True),
    ({"metrics_host": "0.0.0.0"}, False),
    ({"metrics_host": "::1"}, True),
])
def test_metrics_port_follows_rca_metrics_host_else_rca_host(settings: dict, loopback: bool) -> None:
    options = ray_node_options(Settings(**settings))
    assert options == ({"_node_ip_address": "127.0.0.1"} if loopback else {})


def test_an_address_ray_cannot_bind_alone_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValidationError, match="RCA_METRICS_HOST='10.1.2.3'.*loopback.*every interface"):
        Settings(metrics_host="10.1.2.3")
