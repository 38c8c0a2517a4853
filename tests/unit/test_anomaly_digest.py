"""Masking, mining and the mergeable Digest: chunked digests merge into one pass's templates."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly.digest import Digest
from anomaly.engine import run_engine
from anomaly.masking import mask_many
from anomaly.mining import mine
from anomaly.records import LogRecord

SHAPES = [
    "user {w} logged in from {ip}",
    "user {w} logged out after {n} seconds",
    "GET /api/items/{n} returned {code} in {n}ms",
    "connection to {ip}:{port} refused",
    "cache {w} evicted {n} entries",
    "job {hex} finished with state {state}",
    "ERROR payment {n} failed: java.net.SocketTimeoutException: Read timed out",
    "worker {n} heartbeat",
]


def _message(rng: random.Random) -> str:
    return rng.choice(SHAPES).format(
        w=rng.choice(["alice", "bob", "carol", "dave", "erin", "frank", "grace"]),
        ip=f"10.0.{rng.randint(0, 9)}.{rng.randint(1, 254)}", n=rng.randint(0, 10**6),
        port=rng.randint(1000, 9999), code=rng.choice([200, 404, 500]),
        hex=f"{rng.getrandbits(48):012x}", state=rng.choice(["OK", "FAILED", "KILLED"]),
    )


def _records(seed: int, n: int) -> list[LogRecord]:
    rng = random.Random(seed)
    return [
        LogRecord(
            message=_message(rng), timestamp=1_700_000_000 + i * 0.5,
            level=rng.choice(["INFO", "ERROR"]), service=rng.choice(["api", "db", None]),
        )
        for i in range(n)
    ]


def _fingerprint(d: Digest) -> dict:
    return {
        tid: (t.text, t.count, t.first_seen, t.last_seen, t.levels, t.services, t.exception_types)
        for tid, t in d.templates.items()
    }


def test_masking_replaces_variables():
    masked = mask_many(['conn 10.1.2.3:80 took 35ms id=7 path /var/x/y "quoted value" 0xff 3.5 KB 2e7c9a10ff'])
    # words stay for the miner to judge (quoted text, key=word); a run of values is one variable
    assert masked == ['conn <*> took <*> id=<*> path <*> "quoted value" <*>']


def test_mining_groups_variable_words_and_keeps_constants():
    sigs = [f"user {u} logged in" for u in ["a1", "b", "c", "d", "e", "f", "g"]] + ["service started", "service stopped"]
    assignment, texts = mine(sigs)
    assert len({assignment[i] for i in range(7)}) == 1
    assert texts[assignment[0]] == "user <*> logged in"
    assert assignment[7] != assignment[8]  # two distinct words: two templates


@settings(max_examples=25, deadline=None)
@given(st.permutations(list(range(12))))
def test_mining_ignores_order(perm):
    sigs = [f"job {w} done" for w in "abcdefg"] + ["disk full", "disk ok", "x y z", "x y w", "a"]
    a1, t1 = mine(sigs)
    a2, t2 = mine([sigs[i] for i in perm])
    assert {sigs[i]: t1[a1[i]] for i in range(12)} == {sigs[p]: t2[a2[k]] for k, p in enumerate(perm)}


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.integers(1, 399), max_size=6, unique=True))
def test_chunked_digests_merge_to_the_same_templates_as_one_pass(seed, cuts):
    records = _records(seed, 400)
    whole = Digest.from_records(records)
    bounds = [0, *sorted(cuts), len(records)]
    chunks = [Digest.from_records(records[a:b]) for a, b in zip(bounds, bounds[1:])]
    rng = random.Random(seed)
    rng.shuffle(chunks)
    merged = Digest.merge_all(chunks)
    assert merged.lines == whole.lines == 400
    assert _fingerprint(merged) == _fingerprint(whole)
    assert merged.bucket_counts() == whole.bucket_counts()
    assert merged.template_counts_by_service() == whole.template_counts_by_service()


def test_merge_is_pure_and_associative():
    a, b, c = (Digest.from_records(_records(s, 150)) for s in (1, 2, 3))
    before = _fingerprint(a)
    left = a.merge(b).merge(c)
    right = a.merge(b.merge(c))
    assert _fingerprint(left) == _fingerprint(right)
    assert _fingerprint(a) == before


def test_dict_round_trip_is_json_safe():
    d = Digest.from_records(_records(5, 300))
    again = Digest.from_dict(json.loads(json.dumps(d.to_dict())))
    assert _fingerprint(again) == _fingerprint(d)
    assert again.services == d.services and again.lines == d.lines


def test_from_dict_rejects_garbage_with_a_clear_error():
    with pytest.raises(ValueError, match="not a valid Digest"):
        Digest.from_dict({"lines": "many"})


def test_merging_different_buckets_is_refused():
    with pytest.raises(ValueError, match="bucket_seconds"):
        Digest(bucket_seconds=60).merge(Digest(bucket_seconds=30))


def test_template_stats_carry_evidence():
    d = Digest.from_records(_records(9, 500))
    errors = [t for t in d.templates.values() if t.exception_types]
    assert errors and errors[0].exception_types == {"java.net.SocketTimeoutException": errors[0].count}
    assert all(t.is_error for t in errors)
    assert all(1 <= len(t.samples) <= 3 for t in d.templates.values())
    assert sum(t.count for t in d.templates.values()) == 500


def test_run_engine_batches_match_one_batch():
    lines = [f"2024-05-01T10:00:{i % 60:02d}Z INFO {_message(random.Random(i))}" for i in range(3000)]
    one = run_engine(lines, batch_lines=10_000)
    many = run_engine(lines, batch_lines=500)
    assert _fingerprint(one) == _fingerprint(many)


def test_baseline_lines_are_counted_against_the_window_templates():
    window = Digest.from_records([LogRecord(f"user {u} logged in") for u in "abcdefgh"] + [LogRecord("disk full")])
    baseline = Digest.from_records(
        [LogRecord("user zed logged in"), LogRecord("user amy logged in"), LogRecord("cpu hot")]
    )
    counts, _ = window.counts_of(baseline)
    login = next(t for t in window.templates.values() if t.text == "user <*> logged in")
    assert counts[login.template_id] == 2
    assert [k for k in counts if k.startswith("baseline:")] and sum(counts.values()) == 3


def test_span_links_are_bounded_and_what_is_left_out_is_counted(monkeypatch) -> None:
    import anomaly.digest as digest_module

    monkeypatch.setattr(digest_module, "MAX_SPAN_LINKS", 5)
    records = [LogRecord(message=f"step {i % 2} done span_id={i:016x}", timestamp=float(i)) for i in range(12)]
    d = Digest.from_records(records[:6]).merge(Digest.from_records(records[6:]))
    assert sum(len(t) for t in d.span_templates().values()) == 5
    assert d.dropped["span_links_sampled_out"] == 12 - 5
    assert sum(t.count for t in d.templates.values()) == 12  # only the links are bounded, never the counts


def test_the_span_sample_is_the_same_whatever_the_merge_order_and_spans_the_whole_range(monkeypatch) -> None:
    """Bottom-k by span id: digests mined apart and merged in any order keep the links of the same
    requests as one pass, and those requests come from the whole range, not its first lines."""
    import random

    import anomaly.digest as digest_module
    from anomaly import span_sample

    monkeypatch.setattr(digest_module, "MAX_SPAN_LINKS", 50)
    rng = random.Random(7)
    records = [LogRecord(message=f"step {i % 3} done span_id={rng.getrandbits(64):016x}", timestamp=float(i))
               for i in range(600)]
    one_pass = Digest.from_records(records)
    parts = [Digest.from_records(records[i:i + 100]) for i in range(0, 600, 100)]
    rng.shuffle(parts)
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    assert set(merged.span_templates()) == set(one_pass.span_templates())
    assert len(one_pass.span_templates()) == 50
    assert merged.span_threshold == one_pass.span_threshold < span_sample.SPACE
    kept_times = [r.timestamp for r in records if one_pass.keeps_span(r.message.rsplit("=", 1)[1])]
    assert len(kept_times) == 50 and min(kept_times) < 150 and max(kept_times) > 450
    assert one_pass.dropped["span_links_sampled_out"] == merged.dropped["span_links_sampled_out"] == 550
    assert Digest.from_dict(merged.to_dict()).span_threshold == merged.span_threshold


def test_span_hash_reads_hex_ids_and_hashes_any_other_id_the_same_in_python_and_polars() -> None:
    import polars as pl

    from anomaly import span_sample

    ids = ["00F067AA0BA902B7", "00f067aa0ba902b7", "span-42", "abc", "0ba902b7"]
    assert span_sample.span_hash(ids[0]) == span_sample.span_hash(ids[1]) == 0x0BA902B7
    assert span_sample.span_hashes(pl.Series(ids)).to_list() == [span_sample.span_hash(i) for i in ids]
    assert all(0 <= span_sample.span_hash(i) < span_sample.SPACE for i in ids)


def test_span_ids_are_read_from_json_logfmt_inline_and_shipper_labels() -> None:
    from anomaly.engine import digest_lines
    from pipelines.pipeline import digest_chunk, to_chunk_items
    from pipelines.schemas import LogEvent

    lines = [
        '{"time": "2024-01-07T10:00:00Z", "level": "info", "msg": "order created", "span_id": "00F067AA0BA902B7"}',
        'ts=2024-01-07T10:00:01Z level=info msg="order paid" span_id=00f067aa0ba902b8',
        "2024-01-07T10:00:02Z INFO c.X#1 TraceID: 4bf92f3577b34da6a3ce929d0e0e4736 SpanID: 00f067aa0ba902b9 [pay][done]",
        "2024-01-07T10:00:03Z INFO no trace context here",
    ]
    d = digest_lines(lines)
    texts = {span: {d.templates[t].text for t in tids} for span, tids in d.span_templates().items()}
    assert texts == {
        "00f067aa0ba902b7": {"order created"},
        "00f067aa0ba902b8": {"order paid"},
        "00f067aa0ba902b9": {"c.X#1 [pay][done]"},
    }
    events = to_chunk_items([LogEvent(message="order shipped", labels={"spanId": "00F067AA0BA902BA"})])
    assert digest_chunk(events).span_templates().keys() == {"00f067aa0ba902ba"}


def test_intake_drops_and_left_out_links_are_both_counted(monkeypatch) -> None:
    import anomaly.digest as digest_module
    from anomaly.engine import digest_lines

    monkeypatch.setattr(digest_module, "MAX_SPAN_LINKS", 2)
    d = digest_lines([f"step done span_id={i:016x}" for i in range(5)] + ["", "   "])
    assert d.dropped == {"span_links_sampled_out": 3, "empty": 2}


def test_code_locations_name_statements_and_are_not_masked():
    """Two statements with the same words (logback ``%logger#%line``) are two templates."""
    masked = mask_many(["t.s.TravelServiceImpl#366 [getTickets][calculate time: 175]", "views.py:42 user 17 logged in",
                        "order #12345 created", "error at main.go:120: timeout 30s"])
    assert masked == ["t.s.TravelServiceImpl#366 [getTickets][calculate time: <*>]", "views.py:42 user <*> logged in",
                      "order #<*> created", "error at main.go:120: timeout <*>"]
    digest = Digest.from_records([LogRecord(f"t.s.TravelServiceImpl#{line} [getTickets][calculate time: {n}]")
                                  for line in (366, 372) for n in range(5)])
    assert sorted(t.text for t in digest.templates.values()) == [
        "t.s.TravelServiceImpl#366 [getTickets][calculate time: <*>]", "t.s.TravelServiceImpl#372 [getTickets][calculate time: <*>]"]


def test_a_baselines_span_links_are_read_through_the_window_templates():
    window = Digest.from_records([LogRecord(f"user {u} logged in SpanID: {i:016x}") for i, u in enumerate("abcdef")])
    baseline = Digest.from_records([LogRecord("user zed logged in SpanID: 00000000000000aa"),
                                    LogRecord("cpu hot SpanID: 00000000000000bb")])
    login = next(t.template_id for t in window.templates.values() if t.text == "user <*> logged in")
    linked = window.span_templates_of(baseline)
    assert linked["00000000000000aa"] == {login: 1}
    assert [k for k in linked["00000000000000bb"]][0].startswith("baseline:")


def test_words_that_say_there_was_no_error_do_not_make_an_error_template():
    said = ['Exec process "a1" exits with exit code 0 and error <nil>', "sync done err=<nil>",
            "reply sent, error: null", "batch 7 completed with no errors"]
    failed = ["error: connection refused", "lookup failed err=<nil> after timeout"]
    records = [LogRecord(message=m, timestamp=1_700_000_000.0 + i, level=None, service="node")
               for i, m in enumerate(said + failed)]
    templates = Digest.from_records(records).templates.values()
    flagged = {t.samples[0]: t.is_error for t in templates}
    assert [flagged[m] for m in said] == [False] * len(said)
    assert [flagged[m] for m in failed] == [True] * len(failed)


def _access(status: int, i: int) -> str:
    return f'10.0.0.{i % 9} - - [01/Dec/2025:11:25:{i % 60:02d} +0000] "GET /api/cart/{i} HTTP/1.1" {status} {500 + i} "-" "curl/8.5"'


def test_a_template_that_mixes_failed_and_normal_lines_counts_only_the_failed_as_errors():
    """One access-log shape for every status, one "request done" line logged at INFO or ERROR by its
    status: the template is an error template, and its error lines are the 5xx or ERROR ones."""
    records = [LogRecord(message=_access(200, i), timestamp=1_700_000_000.0 + i, service="web") for i in range(50)]
    records += [LogRecord(message=_access(502, i), timestamp=1_700_000_000.0 + i, service="web") for i in range(12)]
    records += [LogRecord(message=_access(404, i), timestamp=1_700_000_000.0 + i, service="web") for i in range(5)]
    records += [LogRecord(message=f"request done status={500 if i % 3 == 0 else 200} path=/pay/{i}", timestamp=1_700_000_000.0 + i,
                          level="ERROR" if i % 3 == 0 else "INFO", service="pay") for i in range(12)]
    digest = Digest.from_records(records)
    by_service = {next(iter(t.services)): t for t in digest.templates.values()}
    web, pay = by_service["web"], by_service["pay"]
    assert (web.count, web.error_lines, web.failures, web.is_error) == (67, 12, {"web": 12}, True)
    assert (pay.count, pay.error_lines, pay.error_lines_of("pay"), pay.is_error) == (12, 4, 4, True)
    words = Digest.from_records([LogRecord(message=f"upstream timed out for order {i}", timestamp=1.0, level="WARN", service="web")
                                 for i in range(5)])
    assert [t.error_lines for t in words.templates.values()] == [5]  # its words say error: every line is one
    twice = Digest.from_dict(json.loads(json.dumps(digest.to_dict()))).merge(digest)
    assert {t.error_lines for t in twice.templates.values()} == {24, 8}


def test_exemplars_are_the_first_error_then_the_first_and_last_lines_whatever_the_merge_order() -> None:
    """Mined in parts and merged in any order, a template shows its first error line, then its
    first and last lines: the start of a fault and how it looks at the end of the range."""
    import random

    records = [LogRecord(message=f"GET /api/orders/{i} 200 in {i % 9} ms", timestamp=float(i), level="INFO")
               for i in range(300)]
    records += [LogRecord(message=f"GET /api/orders/{i} 503 in 1 ms", timestamp=i + 0.5, level="ERROR")
                for i in range(120, 300, 10)]
    records.sort(key=lambda r: r.timestamp)
    one_pass = Digest.from_records(records)
    parts = [Digest.from_records(records[i:i + 40]) for i in range(0, len(records), 40)]
    random.Random(3).shuffle(parts)
    merged = Digest.merge_all(parts)
    for digest in (one_pass, merged, Digest.from_dict(merged.to_dict())):
        (template,) = digest.templates.values()
        assert template.samples == ["GET /api/orders/120 503 in 1 ms", "GET /api/orders/0 200 in 0 ms",
                                    "GET /api/orders/299 200 in 2 ms"]


def test_a_digest_sent_before_error_exemplars_existed_still_reads() -> None:
    d = Digest.from_records([LogRecord(message="user 1 logged in", timestamp=1.0)]).to_dict()
    d["tables"]["shapes"].pop("error_samples")
    (template,) = Digest.from_dict(d).templates.values()
    assert template.samples == ["user 1 logged in"]
