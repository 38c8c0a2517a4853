"""The engine end to end: raw lines in, one merged ``Digest`` out, in bounded memory.

Lines are cut into batches (never inside a stack trace), each batch goes through the
vectorized intake and digest build, and the batch digests are absorbed into one.
Only the digest (distinct shapes) stays in memory, so input size is unbounded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from anomaly.digest import BUCKET_SECONDS, Digest
from anomaly.intake import parse_frame

BATCH_LINES = 65_536
_CONTINUATION_STARTS = (" ", "\t", "Caused by:", "...")
_DOCKER_PREFIX = '{"log":'
_DOCKER_CONTINUATION = ('"\\t', '" ', '"Caused by:')


def _is_continuation(line: str | bytes) -> bool:
    """A line that must stay with the one before it (plain or docker-wrapped trace line)."""
    if isinstance(line, (bytes, bytearray)):
        line = bytes(line[:64]).decode("utf-8", "replace")
    if not isinstance(line, str):
        return False
    if line.startswith(_CONTINUATION_STARTS):
        return True
    return line.startswith(_DOCKER_PREFIX) and line[len(_DOCKER_PREFIX):].lstrip().startswith(_DOCKER_CONTINUATION)


def batches(lines: Iterable[str | bytes], size: int = BATCH_LINES) -> Iterator[list[str | bytes]]:
    """Batches of about ``size`` lines, extended so a stack trace is never split."""
    batch: list[str | bytes] = []
    for line in lines:
        if len(batch) >= size and not _is_continuation(line):
            yield batch
            batch = []
        batch.append(line)
    if batch:
        yield batch


def digest_lines(
    lines: Iterable[str | bytes],
    *,
    service: str | None = None,
    bucket_seconds: float = BUCKET_SECONDS,
    max_line_bytes: int = 65_536,
) -> Digest:
    """Digest of one batch of raw lines; what the intake dropped is kept in ``digest.dropped``."""
    frame, dropped = parse_frame(lines, service=service, max_line_bytes=max_line_bytes)
    digest = Digest.from_frame(frame, bucket_seconds=bucket_seconds)
    digest.count_dropped(dropped)
    return digest


def run_engine(
    lines: Iterable[str | bytes],
    *,
    service: str | None = None,
    bucket_seconds: float = BUCKET_SECONDS,
    batch_lines: int = BATCH_LINES,
    threads: int = 2,
) -> Digest:
    """Digest any number of raw lines in bounded memory, in one process.

    Batches run on ``threads`` worker threads (the polars kernels release the GIL,
    so two batches in flight keep both cores busy); at most ``threads + 1`` batches
    are held at once, so memory stays bounded whatever the input size.
    """
    total = Digest(bucket_seconds=bucket_seconds)

    def work(batch: list[str | bytes]) -> Digest:
        return digest_lines(batch, service=service, bucket_seconds=bucket_seconds)

    if threads <= 1:
        for batch in batches(lines, batch_lines):
            total.absorb(work(batch))
        return total
    in_flight: deque[Future[Digest]] = deque()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rca-engine") as pool:
        for batch in batches(lines, batch_lines):
            in_flight.append(pool.submit(work, batch))
            if len(in_flight) > threads:
                total.absorb(in_flight.popleft().result())
        while in_flight:
            total.absorb(in_flight.popleft().result())
    return total
