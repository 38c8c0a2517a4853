"""Masking: replace the variable parts of a message by typed placeholders.

One fixed list of rules for every system (never per dataset). The rules run as
vectorized regex kernels (polars ``str.replace_all``, Rust regex) over whole
batches, because per-line Python regex work caps throughput at ~100k lines/s.
``mask_one`` exists for callers holding a single message and uses the same kernel,
so one message is always masked exactly as in a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

#: (name, pattern, replacement). Order matters: specific shapes before numbers.
RULES: tuple[tuple[str, str, str], ...] = (
    ("url", r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"'<>]+", "<URL>"),
    ("uuid", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "<UUID>"),
    ("datetime", r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?\b", "<TS>"),
    ("time", r"\b\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?\b", "<TIME>"),
    ("ip", r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b", "<IP>"),
    ("mac", r"\b(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}\b", "<MAC>"),
    ("path", r"(^|[\s=:\"'(\[])(?:[A-Za-z]:)?(?:[\\/][\w.\-$@~+]+){2,}[\\/]?", "${1}<PATH>"),
    ("quoted", r"\"[^\"]{0,64}\"|'[^'\s]{0,64}'", "\"<*>\""),
    ("kv", r"\b([A-Za-z_][\w.\-]*)=([^\s,;&\"'\]\)]+)", "${1}=<*>"),
    ("duration", r"\b\d+(?:\.\d+)?\s?(?:ms|us|µs|ns|s|sec|secs|seconds|min|mins|minutes|h|hours)\b", "<DUR>"),
    ("size", r"\b\d+(?:\.\d+)?\s?(?:[KMGTP]i?B|[KMGTP]|bytes|B)\b", "<SIZE>"),
    ("num", r"[-+]?\b\d+(?:[.,]\d+)*\b", "<NUM>"),
    ("hex", r"\b0[xX][0-9a-fA-F]+\b|\b[0-9a-fA-F]{8,}\b", "<HEX>"),
    # a parenthetical holding only one variable (and maybe a unit) is optional detail
    ("aside", r"\s*\((?:<[A-Z]+>)(?:\s*\w{1,5})?\)", ""),
)


def mask_series(messages: pl.Series) -> pl.Series:
    """Mask a whole batch of messages at once (Rust regex, multithreaded)."""
    expr = pl.col("m")
    for _name, pattern, repl in RULES:
        expr = expr.str.replace_all(pattern, repl)
    return pl.DataFrame({"m": messages}).select(expr).to_series()


def mask_many(messages: Sequence[str]) -> list[str]:
    """Mask a list of messages; same result as ``mask_series``."""
    return mask_series(pl.Series("m", list(messages), dtype=pl.String)).to_list()


def mask_one(message: str) -> str:
    """Mask one message with the batch kernel (slow per call; use batches)."""
    return mask_many([message])[0]
