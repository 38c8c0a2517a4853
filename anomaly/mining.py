"""Template mining: group masked messages into templates.

The method (Brain-like, after Yu et al., IEEE TSC 2023) is a pure function of the
*set* of distinct masked messages, so it does not depend on line order or on how
the input was chunked: digests of separate chunks, merged, give exactly the
templates of one pass over all lines. It only ever sees distinct masked messages,
which logs repeat massively, so its cost follows the number of distinct shapes,
not the number of lines.

Steps, per group of messages with the same token count:
1. count how many messages hold each (position, token) pair;
2. a message's *root pattern* is the set of its word tokens sharing the frequency that
   occurs most often among them (ties: the higher frequency): the longest common
   pattern of the group it belongs to. A token that is nothing but placeholders is a
   variable already and never part of a root;
3. messages are grouped by root pattern; in each group a column whose values differ
   is a variable when its values hold a placeholder or are many (more than
   ``MAX_CONSTANT_VALUES``); a column with a few word-like values splits the group,
   and so does a first column of plain words (as Drain's prefix tree: the first word
   names the event).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence

WILDCARD = "<*>"
#: a column with more distinct word-like values than this is a variable
MAX_CONSTANT_VALUES = 5
_SPLIT = re.compile(r"\s+")
_PLACEHOLDER = re.compile(r"<[A-Z*]+>")
#: how a token containing placeholders is compared: every placeholder type alike
_CANON = "<*>"


def tokenize(masked: str) -> list[str]:
    """Whitespace tokens of a masked message."""
    return [t for t in _SPLIT.split(masked) if t]


def canonical(token: str) -> str:
    """Token as the miner compares it: ``<NUM>``, ``<HEX>``... all read as ``<*>``."""
    return _PLACEHOLDER.sub(_CANON, token) if "<" in token else token


def _looks_variable(token: str) -> bool:
    return _CANON in token


def _only_placeholders(token: str) -> bool:
    """A token with no letter or digit outside its placeholders (``<*>``, ``<*>:<*>``, ``(<*>)``)."""
    return _CANON in token and not any(c.isalnum() for c in token.replace(_CANON, ""))


def mine(signatures: Sequence[str], *, max_constant_values: int = MAX_CONSTANT_VALUES) -> tuple[list[int], list[str]]:
    """Group distinct masked messages into templates.

    ``max_constant_values`` is only ever changed by the leave-one-system-out evaluation,
    which measures it (``pipelines.evaluation.loghub``). Returns, for each input message, the index of its template, and the template
    texts (variables shown as ``<*>`` or a typed placeholder shared by the column).
    The result depends only on the set of inputs, never on their order.
    """
    order = sorted(range(len(signatures)), key=signatures.__getitem__)
    originals = {i: tokenize(signatures[i]) for i in order}
    tokens = {i: [canonical(t) for t in originals[i]] for i in order}
    by_length: dict[int, list[int]] = defaultdict(list)
    for i in order:
        by_length[len(tokens[i])].append(i)

    assignment = [0] * len(signatures)
    template_index: dict[str, int] = {}
    texts: list[str] = []

    def emit(members: list[int], template: list[str]) -> None:
        # show the typed placeholder (``<IP>``) where every member has the same one
        shown = []
        for p, tok in enumerate(template):
            if "<" in tok:
                typed = {originals[m][p] for m in members}
                if len(typed) == 1:
                    tok = typed.pop()
            shown.append(tok)
        text = " ".join(shown)
        idx = template_index.get(text)
        if idx is None:
            idx = template_index[text] = len(texts)
            texts.append(text)
        for m in members:
            assignment[m] = idx

    for length in sorted(by_length):
        group = by_length[length]
        if length == 0:
            emit(group, [])
            continue
        # a placeholder is a variable already: it never belongs to a root pattern (counted, it
        # would be the most frequent token of every short message and merge them all)
        words = {i: [(p, t) for p, t in enumerate(tokens[i]) if not _only_placeholders(t)] for i in group}
        freq: Counter[tuple[int, str]] = Counter()
        for i in group:
            freq.update(words[i])
        roots: dict[tuple[tuple[int, str], ...], list[int]] = defaultdict(list)
        for i in group:
            f = [freq[pt] for pt in words[i]]
            key: tuple[tuple[int, str], ...] = ()
            if f:
                root_freq = max(Counter(f).items(), key=lambda kv: (kv[1], kv[0]))[0]
                key = tuple(pt for pt, n in zip(words[i], f) if n == root_freq)
            roots[key].append(i)
        for key in sorted(roots):
            _split_group(roots[key], tokens, length, emit, max_constant_values)
    return assignment, texts


def _split_group(members: list[int], tokens: dict[int, list[str]], length: int, emit, max_constant_values: int) -> None:
    """Decide, column by column, constant / variable / split, then emit templates."""
    template: list[str | None] = []
    split_columns: list[int] = []
    for p in range(length):
        values = {tokens[i][p] for i in members}
        if len(values) == 1:
            template.append(next(iter(values)))
        elif any(_looks_variable(v) for v in values) or (
            len(values) > max_constant_values and not (p == 0 and all(v.isalpha() for v in values))
        ):
            template.append(WILDCARD)
        else:
            template.append(None)
            split_columns.append(p)
    if not split_columns:
        emit(members, template)
        return
    children: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i in members:
        children[tuple(tokens[i][p] for p in split_columns)].append(i)
    for values, child in sorted(children.items()):
        filled = list(template)
        for p, v in zip(split_columns, values):
            filled[p] = v
        emit(child, filled)
