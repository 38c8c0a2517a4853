"""Log files from the CLI: bounded, binary-safe, one bad file never hides the others."""

from __future__ import annotations

import codecs

import gzip
from datetime import datetime, timezone
from pathlib import Path

from pipelines.schemas import Alert
from pipelines.sources import FilesSource, gather_context

NOW = datetime(2024, 3, 1, 12, 5, tzinfo=timezone.utc)
ALERT = Alert(name="ServiceDown", timestamp=NOW, labels={"service": "api"})


async def fetch(source: FilesSource):
    return await source.fetch(ALERT, NOW, NOW)


async def test_lines_of_every_file_are_read_with_the_file_name(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("one\ntwo\n\n")
    with gzip.open(tmp_path / "b.log.gz", "wt") as handle:
        handle.write("three\nfour\n")
    result = await fetch(FilesSource([tmp_path / "a.log", tmp_path / "b.log.gz"]))
    assert result.status == "ok" and result.error is None
    assert [(e.message, e.labels["file"]) for e in result.logs] == [
        ("one", "a.log"), ("two", "a.log"), ("three", "b.log.gz"), ("four", "b.log.gz")
    ]


async def test_a_large_file_is_read_to_its_end_within_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_text("".join(f"line {i:05d}\n" for i in range(10_000)))  # 110,000 bytes
    result = await fetch(FilesSource([path], max_bytes=2048))
    messages = [e.message for e in result.logs]
    assert messages[-1] == "line 09999"
    assert all(m.startswith("line ") and len(m) == 10 for m in messages)  # no half line at the cut
    assert sum(len(m) + 1 for m in messages) <= 2048
    assert "only the last 2048 bytes" in (result.error or "")
    assert result.dropped["bytes_over_limit"] == path.stat().st_size - sum(len(m) + 1 for m in messages)


async def test_gzip_is_bounded_too(tmp_path: Path) -> None:
    path = tmp_path / "big.log.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("".join(f"line {i:05d}\n" for i in range(10_000)))
    result = await fetch(FilesSource([path], max_bytes=2048))
    assert result.logs[-1].message == "line 09999" and len(result.logs) < 200


async def test_invalid_utf8_is_replaced_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "latin1.log"
    path.write_bytes("caf\xe9 ok\nsecond\n".encode("latin-1"))
    result = await fetch(FilesSource([path]))
    assert [e.message for e in result.logs] == ["caf\ufffd ok", "second"]
    assert result.dropped["invalid_utf8_chars"] == 1
    assert "latin1.log: 1 characters that were not UTF-8 replaced" in (result.error or "")


async def test_nul_bytes_are_removed_and_said(tmp_path: Path) -> None:
    path = tmp_path / "truncated.log"
    path.write_bytes(b"\x00" * 20 + b"after copytruncate\n")
    result = await fetch(FilesSource([path]))
    assert [e.message for e in result.logs] == ["after copytruncate"]
    assert result.dropped["nul_bytes"] == 20 and "20 NUL bytes removed" in (result.error or "")


async def test_binary_and_missing_files_are_named_and_the_rest_go_on(tmp_path: Path) -> None:
    good = tmp_path / "good.log"
    good.write_text("kept\n")
    binary = tmp_path / "core.dump"
    binary.write_bytes(bytes(range(256)) * 40)
    missing = tmp_path / "nope.log"
    telemetry, reasons = await gather_context([FilesSource([binary, good, missing])], ALERT, NOW, NOW)
    assert [e.message for e in telemetry.logs] == ["kept"]
    assert len(reasons) == 1
    assert "core.dump: looks binary" in reasons[0] and "nope.log: cannot read" in reasons[0]


async def test_only_unreadable_files_is_an_error(tmp_path: Path) -> None:
    result = await fetch(FilesSource([tmp_path / "missing.log"]))
    assert result.status == "error" and "missing.log" in (result.error or "")


async def test_nul_runs_left_by_copytruncate_are_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "rotated.log"
    path.write_bytes(b"\x00" * 500 + b"after rotation\nnext\n")
    result = await fetch(FilesSource([path]))
    assert [e.message for e in result.logs] == ["after rotation", "next"]
    assert result.dropped["nul_bytes"] == 500


def test_byte_order_marks_say_how_a_file_is_encoded(tmp_path) -> None:
    """Windows PowerShell 5 writes `kubectl logs > file` as UTF-16; editors add a UTF-8 mark."""
    import gzip

    from pipelines.sources.files import read_tail

    lines = ['{"level":"error","msg":"Verbindung verweigert: orders-db:5432 – ü","service":"orders"}', "zweite Zeile", "third"]
    text = "\r\n".join(lines)
    files = {
        "utf8-bom.log": text.encode("utf-8-sig"),
        "utf16-le.log": text.encode("utf-16"),
        "utf16-be.log": codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
        "utf16.log.gz": gzip.compress(text.encode("utf-16")),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        read = read_tail(tmp_path / name, 1_000_000)
        assert read.lines == lines and read.error is None and read.replaced_chars == 0 and read.nul_bytes == 0, name
    tail = read_tail(tmp_path / "utf16-le.log", 40)  # the end of a UTF-16 file: whole characters, whole lines
    assert tail.lines == ["zweite Zeile", "third"] and tail.skipped_bytes > 0


def test_an_empty_file_is_named(tmp_path) -> None:
    from pipelines.sources.files import read_tail

    (tmp_path / "empty.log").write_bytes(b"")
    (tmp_path / "blank.log").write_bytes(b"\n  \n\n")
    for name in ("empty.log", "blank.log"):
        read = read_tail(tmp_path / name, 1000)
        assert read.lines == [] and any("holds no log lines" in n for n in read.notes(tmp_path / name, 1000))
    (tmp_path / "one.log").write_text("2025-01-01T10:00:00Z INFO ok\n")
    assert read_tail(tmp_path / "one.log", 1000).notes(tmp_path / "one.log", 1000) == []


def test_a_file_name_names_the_service_of_lines_that_name_none(tmp_path: Path) -> None:
    """``kubectl logs deploy/orders > orders.log``: plain lines, and only the file says whose they are."""
    from pipelines.cli import _read_log_files
    from pipelines.sources.files import service_of_file

    assert service_of_file(Path("orders.log")) == "orders"
    assert service_of_file(Path("checkout-7d9f8b6c5-x2x9z.log.gz")) == "checkout"
    assert [service_of_file(Path(n)) for n in ("app.log", "pods.log", "node.log", "events.json", "2025-12-06.log")] == [None] * 5
    plain = tmp_path / "orders.log"
    plain.write_text("2025-12-06T10:00:00Z ERROR Failed to load order 7: Read timed out\n2025-12-06T10:00:01Z INFO order 8 loaded\n")
    prefixed = tmp_path / "cart.log"  # its lines name their service: the file name is not used
    prefixed.write_text('2025-12-06T10:00:00Z {app="payments", pod="payments-6f7d8c9b5-abcde"} level=error msg="declined"\n')
    generic = tmp_path / "app.log"
    generic.write_text("2025-12-06T10:00:00Z ERROR boom\n")
    entries, notes = _read_log_files([plain, prefixed, generic], 1 << 20)
    events = [e for e in entries if isinstance(e, dict)]
    assert [(e["service"], e["level"], e["message"]) for e in events] == [
        ("orders", "ERROR", "Failed to load order 7: Read timed out"), ("orders", "INFO", "order 8 loaded")]
    assert events[0]["timestamp"].startswith("2025-12-06T10:00:00") and events[0]["labels"] == {"file": "orders.log"}
    assert [e for e in entries if isinstance(e, str)] == [prefixed.read_text().strip(), "2025-12-06T10:00:00Z ERROR boom"]
    assert notes == ["orders.log: its lines name no service; read as orders's, from the file name"]
