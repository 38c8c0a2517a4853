"""Offset bookkeeping (at-least-once) and the record formats on the topics; no broker needed."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from pipelines.streaming.producer import alert_record, log_record
from pipelines.streaming.offsets import PartitionProgress, read_targets, read_to
from pipelines.streaming.log_buffer import parse_log_event
from pipelines.schemas import Alert


def test_commit_never_passes_an_unfinished_offset() -> None:
    progress = PartitionProgress()
    assert progress.committable() is None
    for offset in (10, 11, 12):
        progress.take(offset)
    progress.finish(12)
    progress.finish(11)
    assert progress.committable() == 10  # 10 is still being analyzed: a restart must redeliver it
    progress.finish(10)
    assert progress.committable() == 13
    progress.committed = 13
    assert progress.committable() is None  # nothing new since the last commit


def test_an_offset_taken_again_after_redelivery_keeps_the_highest_position() -> None:
    progress = PartitionProgress()
    progress.take(5)
    progress.take(3)
    assert progress.committable() == 3
    progress.finish(3)
    progress.finish(5)
    assert progress.committable() == 6


def test_context_targets_wait_for_every_partition_and_its_end() -> None:
    counts = {"rca.logs": 2, "rca.spans": 1}
    complete = {"rca.logs/0": (5, 9), "rca.logs/1": (3, 3), "rca.spans/0": (0, 0)}
    assert read_targets(complete, counts) == {"rca.logs/0": 9, "rca.logs/1": 3, "rca.spans/0": 0}
    # a partition nobody holds (mid-rebalance), an end not fetched yet, or a digester not joined: no targets
    assert read_targets({k: v for k, v in complete.items() if k != "rca.logs/1"}, counts) is None
    assert read_targets({**complete, "rca.logs/1": (None, None)}, counts) is None
    assert read_targets(None, counts) is None


def test_context_is_read_when_every_target_is_reached_even_as_the_end_moves_on() -> None:
    targets = {"rca.logs/0": 9, "rca.logs/1": 3}
    assert not read_to({"rca.logs/0": (5, 9), "rca.logs/1": (3, 3)}, targets)
    assert read_to({"rca.logs/0": (9, 20), "rca.logs/1": (3, 7)}, targets)  # newer lines are not waited for
    assert not read_to({"rca.logs/0": (12, 20)}, targets)  # rca.logs/1 moved and nobody holds it yet
    assert not read_to({"rca.logs/0": (12, 20), "rca.logs/1": (None, 7)}, targets)  # its new owner is rebuilding
    assert not read_to(None, targets)


def test_alert_record_is_keyed_by_fingerprint_and_round_trips() -> None:
    alert = Alert(name="HighCPUUsage", timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc),
                  labels={"service": "api"}, fingerprint="abc123")
    key, value = alert_record(alert)
    assert key == b"abc123"
    assert Alert.model_validate_json(value) == alert


def test_alert_record_without_fingerprint_uses_the_stable_identity() -> None:
    alert = Alert(name="HighCPUUsage", timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc), labels={"service": "api"})
    assert alert_record(alert)[0] == alert.identity().encode()


def test_log_record_is_keyed_by_service_and_readable_by_the_reader() -> None:
    key, value = log_record({"message": "boom", "service": "db", "timestamp": "2026-01-01T00:00:00Z", "labels": {"a": "b"}})
    assert key == b"db"
    assert parse_log_event(value, fallback_time=0.0) == ("db", datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp())
    assert json.loads(value)["labels"] == {"a": "b"}


def test_log_record_refuses_an_event_without_message() -> None:
    with pytest.raises(ValidationError, match="message"):
        log_record({"service": "db"})
