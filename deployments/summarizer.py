"""Summarizer deployment: one chunk of lines in, one Digest out; replicas share the fan-out.

It is the deployment that scales with log volume, so it autoscales on the number of chunks
in flight per replica. A replica asks for a quarter of a CPU so that several fit on a small
node (six on two cores next to the other deployments); on KubeRay the Ray autoscaler adds
worker pods when they no longer fit. ``pipelines.app.build_app`` sets the minimum from
``RCA_SUMMARIZER_REPLICAS``.
"""

from __future__ import annotations

from typing import Any

from ray import serve

from anomaly import Digest
from pipelines.log_setup import configure_logging
from pipelines.pipeline import Chunk, digest_chunk

# The delays and the 1 s metrics interval are the knobs measured to work in Ray 2.60
# (NOTES.md): up in about 10 s under load, down about 15-40 s after it stops.
AUTOSCALING: dict[str, Any] = {
    "min_replicas": 1,
    "max_replicas": 6,
    "target_ongoing_requests": 2,
    "upscale_delay_s": 3,
    "downscale_delay_s": 20,
    "metrics_interval_s": 1,
    "look_back_period_s": 5,
}


@serve.deployment(
    name="Summarizer",
    autoscaling_config=AUTOSCALING,
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=4,
)
class Summarizer:
    def __init__(self, max_line_bytes: int = 65_536, log_level: str = "INFO") -> None:
        configure_logging(log_level)
        self._max_line_bytes = max_line_bytes

    def summarize_chunk(self, chunk: Chunk) -> Digest:
        return digest_chunk(chunk, max_line_bytes=self._max_line_bytes)
