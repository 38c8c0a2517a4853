"""Summarizer deployment: one chunk of lines in, one Digest out; replicas share the fan-out."""

from __future__ import annotations

from ray import serve

from pipelines.pipeline import Chunk, ChunkDigest, digest_chunk


@serve.deployment(
    name="Summarizer",
    num_replicas=2,
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=4,
)
class Summarizer:
    def __init__(self, max_line_bytes: int = 65_536) -> None:
        self._max_line_bytes = max_line_bytes

    def summarize_chunk(self, chunk: Chunk) -> ChunkDigest:
        return digest_chunk(chunk, max_line_bytes=self._max_line_bytes)
