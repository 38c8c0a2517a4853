"""Masking: replace the variable parts of a message by the placeholder ``<*>``.

One fixed list of rules for every system (never per dataset). The rules run as
vectorized regex kernels (polars ``str.replace_all``, Rust regex) over whole
batches, because per-line Python regex work caps throughput at ~100k lines/s.
``mask_one`` exists for callers holding a single message and uses the same kernel,
so one message is always masked exactly as in a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

#: the shapes of values, as one alternation (leftmost alternative wins at a position),
#: so every value kind costs a single regex pass over the batch
_VALUE_KINDS: tuple[tuple[str, str], ...] = (
    ("uuid", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    ("datetime", r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"),
    ("time", r"\b\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?\b"),
    ("ip", r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"),
    ("mac", r"\b(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}\b"),
    ("hex", r"\b0[xX][0-9a-fA-F]+\b"),
    ("duration", r"\b\d+(?:\.\d+)?\s?(?:ms|us|µs|ns|s|sec|secs|seconds|min|mins|minutes|h|hours)\b"),
    ("size", r"\b\d+(?:\.\d+)?\s?(?:[KMGTP]i?B|[KMGTP]|bytes|B)\b"),
    ("number", r"[-+]?\b\d+(?:[.,]\d+)*\b"),
    ("hexid", r"\b[0-9a-fA-F]{8,}\b"),
)

#: ASCII letters no log uses: a non-ASCII one would push the regex engine off its fast path
#: (Unicode word boundaries) for every message that holds it
_HIDE = "zQlocQz"
#: ``Class#line`` (logback ``%logger#%line``) and ``file.ext:line`` (Python, Go, Java callers)
_SOURCE_FILE = r"\.(?:java|kt|scala|groovy|py|go|rb|js|ts|cs|cpp|cc|c|h|rs|php|swift|ex|exs):"
_LOCATIONS = (
    ("location_line", r"(\b[A-Za-z_$][\w$]*#)(\d{1,6})\b"),
    ("location_file", r"(\b[\w-]+" + _SOURCE_FILE + r")(\d{1,6})\b"),
)

#: (name, pattern, replacement), applied in this order: shapes that contain values
#: (URLs, paths, quoted text, key=value) first, then values, then the asides
#: left holding only a value.
RULES: tuple[tuple[str, str, str], ...] = (
    # a code location (``TravelServiceImpl#372``, ``views.py:42``) names the statement that logs,
    # not a value: two statements with the same words stay two templates. Letters glued to its
    # digits (``#zQlocQz372``: no word boundary) hide them from the value rules; they go at the end.
    *((name, pattern, "${1}" + _HIDE + "${2}") for name, pattern in _LOCATIONS),
    ("url", r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"'<>]+", "<*>"),
    ("path", r"(^|[\s=:\"'(\[])(?:[A-Za-z]:)?(?:[\\/][\w.\-$@~+]+){2,}[\\/]?", "${1}<*>"),
    # digits glued to a name by ``_`` (``attempt_1445_0020_m_000001``, ``broadcast_7``): a word
    # boundary never falls there, so the value rule cannot see them
    ("glued", r"(?:_-?\d+)+(\b|_)", "_<*>${1}"),
    ("value", "|".join(f"(?:{p})" for _, p in _VALUE_KINDS), "<*>"),
    # a run of tokens holding nothing but values (``<*> (<*>)``, ``<*>, <*>``) is one variable
    # (Khan et al., ICSE 2022, rule CV): how many values a list prints is not part of the event
    ("run", r"(^|\s)(?:[^\w\s]*<\*>)+[^\w\s]*(?:\s+(?:[^\w\s]*<\*>)+[^\w\s]*)+(\s|$)", "${1}<*>${2}"),
    ("location_shown", _HIDE, ""),
)


#: a rule only runs on the messages holding its trigger (a cheap literal test),
#: since most messages have no URL, no quote, no ``=``
_TRIGGERS: dict[str, tuple[str, bool]] = {
    "url": ("://", True), "path": ("/", True),
    "value": ("[0-9]", False), "glued": ("_-?[0-9]", False),
    "run": (r">[^\w\s]*\s+[^\w\s]*<", False), "location_line": ("#", True),
    "location_file": (r"\.[a-z]{1,6}:\d", False), "location_shown": (_HIDE, True),
}


def _apply(rule: str, pattern: str, repl: str, values: pl.Series) -> pl.Series:
    trigger = _TRIGGERS.get(rule)
    if trigger is None:
        return values.str.replace_all(pattern, repl)
    hit = values.str.contains(trigger[0], literal=trigger[1])
    n = hit.sum()
    if n == 0:
        return values
    if n * 2 > len(values):
        return values.str.replace_all(pattern, repl)
    idx = hit.arg_true()
    return values.scatter(idx, values.gather(idx).str.replace_all(pattern, repl))


def mask_series(messages: pl.Series) -> pl.Series:
    """Mask a whole batch of messages at once (Rust regex), each distinct message once."""
    messages = messages.cast(pl.String).fill_null("").rename("m")
    distinct = messages.unique()
    masked = distinct.clone()
    for name, pattern, repl in RULES:
        masked = _apply(name, pattern, repl, masked)
    lookup = pl.DataFrame({"m": distinct, "masked": masked})
    return (
        messages.to_frame()
        .join(lookup, on="m", how="left", maintain_order="left")
        .get_column("masked")
        .rename("masked")
    )


def mask_many(messages: Sequence[str]) -> list[str]:
    """Mask a list of messages; same result as ``mask_series``."""
    return mask_series(pl.Series("m", list(messages), dtype=pl.String)).to_list()


def mask_one(message: str) -> str:
    """Mask one message with the batch kernel (slow per call; use batches)."""
    return mask_many([message])[0]
