"""Which traced requests a digest keeps the log links of: a sample by span id that merges exactly.

Why sample by a hash of the span id
    A digest links each traced line to its span (``Digest.span_templates``) so the patterns
    signal can ask what share of an operation's requests wrote a line. Held for every line,
    the links grow with the log rate (about 60 bytes a traced line), which is the one part of
    a digest that does not stay flat as the rate grows. Cutting the first N links would keep
    the earliest requests of a window and none of its end, where a fault shows. Instead a
    digest keeps the links of the spans whose hash is below a threshold: the bottom-k of the
    span ids (``lower_threshold``). Two digests merge by taking the lower threshold, so every
    process that mines agrees on which requests are in the sample, whatever the merge order,
    and a reader can restrict the spans it counts to the same sample (``kept``) so shares stay
    unbiased.

Span ids are random hex in W3C Trace Context, OpenTelemetry, Zipkin and Jaeger: their last
eight hex digits are already a uniform hash. Any other id is hashed with CRC-32.
"""

from __future__ import annotations

import re
import zlib

import polars as pl

SPACE = 1 << 32
"""Hashes lie in ``[0, SPACE)``; a threshold of ``SPACE`` keeps every span."""
_HEX_TAIL = re.compile(r"[0-9a-f]{8}")


def span_hash(span_id: str) -> int:
    """The span's place in the sample, in ``[0, SPACE)``: the same in every process and version."""
    span_id = span_id.lower()
    tail = span_id[-8:]
    if _HEX_TAIL.fullmatch(tail):
        return int(tail, 16)
    return zlib.crc32(span_id.encode())


def span_hashes(spans: pl.Series) -> pl.Series:
    """:func:`span_hash` of each span id of a column (vectorized for hex ids, which is nearly all)."""
    lower = spans.cast(pl.String).str.to_lowercase()
    tail = lower.str.slice(-8)
    hexed = pl.select(
        pl.when(tail.str.contains(r"^[0-9a-f]{8}$")).then(tail.str.to_integer(base=16, strict=False)).otherwise(None)
    ).to_series().cast(pl.Int64)
    other = hexed.is_null() & lower.is_not_null()
    if other.any():
        hashed = lower.filter(other).map_elements(lambda s: zlib.crc32(s.encode()), return_dtype=pl.Int64)
        hexed = hexed.scatter(other.arg_true(), hashed)
    return hexed.alias("span_hash")


def kept(span_id: str, threshold: int) -> bool:
    """Is this span in a sample of threshold ``threshold``?"""
    return threshold >= SPACE or span_hash(span_id) < threshold


def lower_threshold(hashes: pl.Series, threshold: int, most: int) -> int:
    """The threshold that keeps at most ``most`` distinct spans of these (their hashes), never above ``threshold``."""
    distinct = hashes.filter(hashes < threshold).unique().sort()
    if distinct.len() <= most:
        return threshold
    return int(distinct[most])
