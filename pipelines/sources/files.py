"""Log files named on the command line, read with a bounded size and without trusting their bytes.

A file can be huge (a week of logs), compressed, or not text at all. Each file is read up to
``max_bytes`` - its *end*, since the lines nearest an alert are the newest - with invalid
UTF-8 replaced rather than fatal; ``.gz`` files are decompressed with the same bound. A file
that cannot be read, or that looks binary, is reported by name and the other files go on.
Lines are not filtered by time here: timestamps are parsed later by the log engine.
"""

from __future__ import annotations

import asyncio
import codecs
import gzip
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from anomaly.intake import parse_frame, parse_lines
from anomaly.pods import workload_of_pod
from pipelines.schemas import Alert, LogEvent
from pipelines.sources.base import SourceResult, describe_error

BINARY_SNIFF_BYTES = 8192
# Share of undecodable or control characters above which a file is not a text log. NUL bytes
# are left out of the share: log rotation by copytruncate leaves runs of them in text files.
BINARY_ODD_FRACTION = 0.10
_TEXT_CONTROLS = frozenset("\t\n\r\f\v\x1b")


@dataclass
class FileRead:
    """One file's lines and what was left out of it."""

    lines: list[str] = field(default_factory=list)
    skipped_bytes: int = 0
    replaced_chars: int = 0
    nul_bytes: int = 0
    error: str | None = None

    def notes(self, path: Path, max_bytes: int) -> list[str]:
        """What was left out of or changed in the file, in words a user can act on."""
        out = []
        if not self.lines and self.error is None:
            out.append(f"{path}: holds no log lines (empty or blank)")
        if self.skipped_bytes:
            out.append(f"{path}: only the last {max_bytes} bytes read ({self.skipped_bytes} skipped)")
        if self.nul_bytes:
            out.append(f"{path}: {self.nul_bytes} NUL bytes removed")
        if self.replaced_chars:
            out.append(f"{path}: {self.replaced_chars} characters that were not UTF-8 replaced with U+FFFD")
        return out


def _utf16_codec(head: bytes) -> str | None:
    """The UTF-16 codec a byte-order mark names, or None."""
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le"
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be"
    return None


def looks_binary(sample: bytes) -> bool:
    """True when the bytes are mostly not text: undecodable, or control characters."""
    text = sample.replace(b"\x00", b"").decode("utf-8", errors="replace")
    if not text:
        return bool(sample)
    odd = sum(1 for ch in text if ch == "\ufffd" or ((ord(ch) < 32 or ord(ch) == 127) and ch not in _TEXT_CONTROLS))
    return odd > BINARY_ODD_FRACTION * len(text)


def read_tail(path: Path, max_bytes: int) -> FileRead:
    """The last ``max_bytes`` of a (possibly gzipped) file as lines, binary-safe.

    A byte-order mark says how the file is encoded: UTF-16 (what Windows PowerShell 5 writes for
    ``kubectl logs > file``) is decoded as such, a UTF-8 mark is dropped; anything else is UTF-8.
    """
    try:
        if path.suffix == ".gz":
            data, skipped = _gzip_tail(path, max_bytes)
            head = data[:2] if not skipped else b""
        else:
            size = path.stat().st_size
            with path.open("rb") as handle:
                head = handle.read(3)
                skipped = max(size - max_bytes, 0)
                handle.seek(skipped)
                data = handle.read(max_bytes)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        return FileRead(error=f"{path}: cannot read ({describe_error(exc)})")
    utf16 = _utf16_codec(head)
    if utf16 is not None:
        data = data[2:] if not skipped else data[skipped % 2 :]
        skipped += skipped % 2
        text, nul_bytes = data.decode(utf16, errors="replace"), 0
    else:
        if looks_binary(data[:BINARY_SNIFF_BYTES]):
            return FileRead(error=f"{path}: looks binary, not a text log; skipped")
        nul_bytes = data.count(b"\x00")
        text = data.replace(b"\x00", b"").decode("utf-8", errors="replace")
        if not skipped:
            text = text.removeprefix("\ufeff")
    if skipped:
        # The first line was cut in the middle: drop it up to the first newline.
        first, newline, rest = text.partition("\n")
        skipped += len((first + newline).encode(utf16 or "utf-8", errors="replace"))
        text = rest
    replaced = text.count("\ufffd")
    lines = document_lines(text) if not skipped else None
    if lines is None:
        lines = [line for line in text.splitlines() if line.strip()]
    return FileRead(lines=lines, skipped_bytes=skipped, replaced_chars=replaced, nul_bytes=nul_bytes)


def document_lines(text: str) -> list[str] | None:
    """Lines of a file that is one JSON document, or None when it is not one.

    A Loki ``query_range`` answer (``data.result[].stream`` + ``values``) becomes one
    ``{"labels", "line", "timestamp"}`` line per entry, as ``logcli --output=jsonl`` writes them,
    in time order; a JSON array or a Kubernetes list (``{"items": [...]}``, e.g. ``kubectl get
    events -o json``) becomes one compact JSON line per item. JSON lines files are not documents
    (the parser stops at the second line), so they go on as lines.
    """
    head = text.lstrip()[:1]
    if head not in ("{", "["):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if isinstance(doc, dict):
        data = doc.get("data")
        result = data.get("result") if isinstance(data, dict) else None
        if isinstance(result, list) and all(isinstance(r, dict) and "values" in r for r in result):
            entries = [
                (str(value[0]), r.get("stream") or r.get("metric") or {}, value[1])
                for r in result for value in r.get("values") or []
                if isinstance(value, list) and len(value) >= 2 and isinstance(value[1], str)
            ]
            entries.sort(key=lambda e: (len(e[0]), e[0]))
            return [json.dumps({"labels": labels, "line": line, "timestamp": ts}) for ts, labels, line in entries]
        items = doc.get("items")
        if not isinstance(items, list):
            return [json.dumps(doc)]
    else:
        items = doc if isinstance(doc, list) else [doc]
    return [item if isinstance(item, str) else json.dumps(item) for item in items]


def _gzip_tail(path: Path, max_bytes: int) -> tuple[bytes, int]:
    """Decompress in blocks, keeping only the last ``max_bytes``: memory stays bounded."""
    keep = bytearray()
    total = 0
    with gzip.open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            total += len(block)
            keep += block
            if len(keep) > max_bytes:
                del keep[: len(keep) - max_bytes]
    return bytes(keep), total - len(keep)


#: file names that say what kind of log a file holds, not whose (``app.log``, ``pods.log``,
#: ``/var/log/messages``): general log-file naming habits, not one system's
GENERIC_LOG_NAMES = frozenset({
    "all", "access", "app", "application", "apps", "audit", "cluster", "combined", "container", "containers",
    "daemon", "debug", "dump", "error", "errors", "event", "events", "export", "incident", "journal", "k8s",
    "kern", "kernel", "kubernetes", "log", "logs", "main", "messages", "node", "nodes", "out", "output", "pod",
    "pods", "server", "service", "services", "stderr", "stdout", "syslog", "system", "trace", "traces",
})
_LOG_SUFFIXES = (".gz", ".log", ".txt", ".json", ".jsonl", ".ndjson", ".out")
_SERVICE_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,62}")


def service_of_file(path: Path) -> str | None:
    """The service a log file's name gives, when it names one.

    ``kubectl logs deploy/orders > orders.log`` leaves lines that name no service: the file name
    is all that says whose they are. ``checkout-7d9f8b6c5-x2x9z.log.gz`` -> ``checkout`` (a pod
    names its workload); ``app.log`` or ``pods.log`` name no service (``GENERIC_LOG_NAMES``).
    """
    stem = path.name.lower()
    while stem.endswith(_LOG_SUFFIXES):
        stem = stem[: stem.rindex(".")]
    if not _SERVICE_NAME.fullmatch(stem) or stem in GENERIC_LOG_NAMES:
        return None
    return workload_of_pod(stem)


#: lines of a file the intake reads to tell whether its lines name their service
SERVICE_SAMPLE_LINES = 2_000


def names_services(lines: list[str]) -> bool:
    """Do a file's lines name their service? Its first lines tell (one cheap parse), since a file
    holds one export format; a later line that names one keeps it anyway (``events_of``)."""
    frame, _ = parse_frame(lines[:SERVICE_SAMPLE_LINES])
    return frame.get_column("service").null_count() < frame.height


def events_of(lines: list[str], service: str, file_name: str) -> list[LogEvent]:
    """A file's lines read by the intake, with ``service`` for every line that names none."""
    events = []
    for r in parse_lines(lines, service=service).records:
        labels = {"file": file_name} | ({"span_id": r.span_id} if r.span_id else {})
        when = datetime.fromtimestamp(r.timestamp, tz=timezone.utc) if r.timestamp is not None else None
        events.append(LogEvent(message=r.message, timestamp=when, service=r.service, pod=r.pod, level=r.level, labels=labels))
    return events


class FilesSource:
    """Log files given on the CLI; the file name is kept as a label on every line."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]], *, max_bytes: int = 64 * 1024 * 1024,
                 service: str | None = None) -> None:
        self.name = "files"
        self.paths = [Path(p) for p in paths]
        self.max_bytes = max_bytes
        self.service = service

    async def fetch(self, alert: Alert, start: datetime, end: datetime) -> SourceResult:
        reads = await asyncio.gather(*(asyncio.to_thread(read_tail, p, self.max_bytes) for p in self.paths))
        logs: list[LogEvent] = []
        problems: list[str] = []
        dropped: dict[str, int] = {}
        for path, read in zip(self.paths, reads):
            if read.error:
                problems.append(read.error)
                dropped["unreadable_files"] = dropped.get("unreadable_files", 0) + 1
                continue
            problems.extend(read.notes(path, self.max_bytes))
            if read.skipped_bytes:
                dropped["bytes_over_limit"] = dropped.get("bytes_over_limit", 0) + read.skipped_bytes
            if read.nul_bytes:
                dropped["nul_bytes"] = dropped.get("nul_bytes", 0) + read.nul_bytes
            if read.replaced_chars:
                dropped["invalid_utf8_chars"] = dropped.get("invalid_utf8_chars", 0) + read.replaced_chars
            labels = {"file": path.name}
            logs.extend(LogEvent(message=line, service=self.service, labels=labels) for line in read.lines)
        error = "; ".join(problems) if problems else None
        if not logs:
            return SourceResult(status="error" if problems else "no_data", error=error, dropped=dropped)
        return SourceResult(status="ok", logs=logs, error=error, dropped=dropped)
