"""Secret redaction: the one place that decides what must never leave the process.

Log lines carry credentials more often than anyone would like (a debug print of a request,
a connection string in a stack trace). Anything the analyzer sends out - the LLM prompt
first of all - passes through :func:`redact`, so there is exactly one list of patterns to
review and extend. Each match is replaced by a typed marker such as ``[REDACTED:aws_key]``,
which keeps the line readable for reasoning while the secret itself is gone; the number of
replacements is returned so it can be counted on the analysis (``Verdict.redactions``).

The patterns are generic formats published by the issuers (AWS, GitHub, Slack), standards
(RFC 3986 userinfo, RFC 7519 JWT, PEM) and the Luhn check for card numbers; none is tuned
to a data set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["redact", "redact_value", "redact_analysis", "REDACTION_KINDS"]


def _marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def _luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies (ISO/IEC 7812)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Order matters: multi-line and structured secrets first, so a PEM block or a URL password
# is replaced as a whole before the narrower patterns look inside it.
_PEM = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/?#@'\"]+:)(?P<secret>(?!\[REDACTED:)[^\s@/'\"]+)(?=@)")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
_BEARER = re.compile(r"(?P<head>\b(?:[Bb]earer|BEARER)\s+|\b(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?:[A-Za-z]+\s+)?)"
                     r"(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)")
_AWS_ACCESS_KEY = re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}\b")
_AWS_SECRET = re.compile(
    r"(?P<head>(?i:aws_?secret_?access_?key|aws_?secret|secret_?access_?key)[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
)
_GITHUB = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b")
_SLACK = re.compile(
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}"
    r"|https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]+"
)
# A token that starts with an issuer's published prefix but whose rest was altered (a template
# miner's placeholders replace its digits, a hyphen went missing): the whole token goes.
_PREFIXED_TOKEN = re.compile(
    r"\b(?:AKIA|ASIA|gh[pousr]_|github_pat_|xox[abposr]|eyJ[A-Za-z0-9_-]{4,}\.)[^\s\"'`,;()\[\]{}]{8,}"
)
_PASSWORD_FIELD = re.compile(
    r"(?P<head>(?i:\b(?:password|passwd|pwd|secret|api[_-]?key|client[_-]?secret"
    r"|(?:access|auth|api|refresh|session)[_-]?token))"
    r"[\"']?\s*[:=]\s*[\"']?)(?P<secret>(?!\[REDACTED:)[^\s\"',;&}]{3,})"
)
# A key name, then - within a few words, with or without ``=``/``:`` - a value shaped like a secret
# (``AWS_SECRET_ACCESS_KEY q8Vn3Rb+...``, ``--client-secret 9f8e...``, ``api key is ...``). The value
# is judged by :func:`_secret_shaped` (length, mixed characters, entropy), so ordinary words after a
# key name ("token expired for user") stay.
_KEY_NAME = (r"(?<![A-Za-z0-9])(?i:(?:aws[_\-. ]?)?secret(?:[_\-. ]?access)?(?:[_\-. ]?key)?"
             r"|(?:client|app|shared)[_\-. ]?secret|private[_\-. ]?key|api[_\-. ]?key|apikey"
             r"|(?:access|auth|api|refresh|session|bearer|security)[_\-. ]?token|password|passwd|pwd|credentials?)")
_KEYED_SECRET = re.compile(
    rf"(?P<head>{_KEY_NAME}(?![A-Za-z0-9])[\"']?\s*(?:[:=]|=>|->)?\s*(?P<words>(?:[\w-]{{1,12}}\s+){{0,4}}?)[\"']?)"
    r"(?P<secret>[A-Za-z0-9+/=_\-.~!@#$%^&*]{16,})"
)
_AWS_KEY_NAME = re.compile(r"(?i)aws|access")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b")
# Payment card numbers start with 2-6 (ISO/IEC 7812 industry identifiers for cards); a leading
# 1 would mostly be epoch-millisecond timestamps.
_CARD = re.compile(r"(?<![\d.\-])[2-6](?:[ \-]?\d){12,18}(?![\d.\-])")


def _keep_head(kind: str) -> Callable[[re.Match[str]], str]:
    def repl(match: re.Match[str]) -> str:
        return match.group("head") + _marker(kind)

    return repl


def _whole(kind: str) -> Callable[[re.Match[str]], str]:
    def repl(match: re.Match[str]) -> str:
        return _marker(kind)

    return repl


def _secret_shaped(value: str, *, strict: bool = False) -> bool:
    """A credential's shape: 16+ characters of letters with digits (or symbols) mixed in, high entropy.

    A random base64/hex/alphanumeric value of 16+ characters has about 3.5+ bits per character;
    words and identifiers (``ConnectionRefused``, ``checkout-service``) have no digits or repeat
    their letters; paths and URLs are not values. ``strict`` (a value a few words after its key
    name): upper case, lower case and digits all three, which lower-case pod names and ids lack.
    """
    if value.startswith(("[REDACTED", "/", "./", "~/")) or "://" in value:
        return False
    upper, lower = any(c.isupper() for c in value), any(c.islower() for c in value)
    digit, symbol = any(c.isdigit() for c in value), any(not c.isalnum() for c in value)
    if strict and not (upper and lower and digit):
        return False
    classes = upper + lower + digit + symbol
    if classes < 3 and not (classes == 2 and digit and len(value) >= 20):
        return False
    counts = {c: value.count(c) for c in set(value)}
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= 3.2


def _keyed_secret(match: re.Match[str]) -> str:
    secret = match.group("secret").rstrip(".")
    if not _secret_shaped(secret, strict=bool(match.group("words"))):
        return match.group(0)
    kind = "aws_secret" if _AWS_KEY_NAME.search(match.group("head")) and "secret" in match.group("head").lower() else "secret"
    return match.group("head") + _marker(kind) + match.group("secret")[len(secret):]


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ \-]", "", match.group(0))
    if 13 <= len(digits) <= 19 and _luhn_ok(digits) and len(set(digits)) > 1:
        return _marker("card_number")
    return match.group(0)


# Each rule: kind, pattern, replacer, and lower-case hints of which at least one must occur in
# the text for the pattern to be tried at all (None: always tried). The hints are substrings
# every match contains, so skipping on them never misses a secret; they make clean lines cheap.
_RULES: Sequence[tuple[str, re.Pattern[str], Callable[[re.Match[str]], str], tuple[str, ...] | None]] = (
    ("private_key", _PEM, _whole("private_key"), ("private key",)),
    ("url_password", _URL_PASSWORD, _keep_head("password"), ("://",)),
    ("jwt", _JWT, _whole("jwt"), ("eyj",)),
    ("bearer_token", _BEARER, _keep_head("token"), ("bearer", "authorization")),
    ("aws_key", _AWS_ACCESS_KEY, _whole("aws_key"), ("akia", "asia", "abia", "acca", "agpa", "aida", "aipa",
                                                     "anpa", "anva", "aroa", "apka", "asca")),
    ("aws_secret", _AWS_SECRET, _keep_head("aws_secret"), ("secret",)),
    ("github_token", _GITHUB, _whole("github_token"), ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    ("slack_token", _SLACK, _whole("slack_token"), ("xox", "hooks.slack.com")),
    ("token", _PREFIXED_TOKEN, _whole("token"), ("akia", "asia", "gh", "xox", "eyj")),
    ("password", _PASSWORD_FIELD, _keep_head("password"), ("pass", "pwd", "secret", "key", "token")),
    ("secret", _KEYED_SECRET, _keyed_secret, ("pass", "pwd", "secret", "key", "token", "credential")),
    ("email", _EMAIL, _whole("email"), ("@",)),
    ("card_number", _CARD, _card, None),
)

REDACTION_KINDS: tuple[str, ...] = tuple(rule[0] for rule in _RULES)

def redact(text: str) -> tuple[str, int]:
    """Replace every secret in ``text`` by a typed marker; return the text and how many were replaced.

    Idempotent: markers are never matched again, so redacting twice counts nothing new.
    """
    if not text:
        return text, 0
    count = 0

    def counting(repl: Callable[[re.Match[str]], str]) -> Callable[[re.Match[str]], str]:
        def wrapped(match: re.Match[str]) -> str:
            nonlocal count
            out = repl(match)
            if out != match.group(0):
                count += 1
            return out

        return wrapped

    lowered = text.lower()
    for _kind, pattern, repl, hints in _RULES:
        if hints is not None and not any(h in lowered for h in hints):
            continue
        new = pattern.sub(counting(repl), text)
        if new != text:
            text, lowered = new, new.lower()
    return text, count


def redact_value(value: Any) -> tuple[Any, int]:
    """Redact every string inside a JSON-like value (dicts, lists, tuples); keys included."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        total = 0
        for key, item in value.items():
            new_key, n_key = redact(key) if isinstance(key, str) else (key, 0)
            new_item, n_item = redact_value(item)
            out[new_key] = new_item
            total += n_key + n_item
        return out, total
    if isinstance(value, (list, tuple)):
        items = []
        total = 0
        for item in value:
            new_item, n = redact_value(item)
            items.append(new_item)
            total += n
        return (tuple(items) if isinstance(value, tuple) else items), total
    return value, 0


# Fields of an Analysis that carry text derived from the input; the rest are figures and names.
_ANALYSIS_TEXT_FIELDS = ("summary", "hypotheses", "remediation", "anomalies", "degraded_reasons", "cited")


def redact_analysis(analysis: Any) -> Any:
    """The analysis with every secret in its text fields replaced, the count added to ``stats.redactions``.

    One pass over what is stored and returned (summary, evidence, hypotheses, anomalies,
    remediation, the cited templates' text and exemplar lines), whichever reasoner produced it; the LLM prompt is redacted on its own
    before it leaves (``prompt.py``), and its count is already in ``stats.redactions``.
    """
    data = analysis.model_dump(mode="json")
    total = 0
    for name in _ANALYSIS_TEXT_FIELDS:
        data[name], n = redact_value(data[name])
        total += n
    if not total:
        return analysis
    data["stats"]["redactions"] = int(data["stats"].get("redactions") or 0) + total
    return type(analysis).model_validate(data)
