"""Masking and mining rules that hold on systems they were not tuned on."""

from __future__ import annotations

from anomaly.masking import mask_many
from anomaly.mining import mine


def test_short_messages_of_different_words_stay_apart():
    """A placeholder is never a root: 'name <*>' messages do not all merge into '<*> <*>'."""
    names = ["onStandStepChanged", "onExtend", "flushTempCacheToDB", "getTodayTotalDetailSteps", "REPORT", "boot", "wait"]
    sigs = mask_many([f"{n} {v}" for n in names for v in (1, 22, 333)])
    assignment, texts = mine(sorted(set(sigs)))
    assert sorted(texts) == sorted(f"{n} <*>" for n in names)


def test_first_word_names_the_event():
    sigs = [f"{w} (command <*>)" for w in ("boot", "wait", "halt", "run", "kill", "idle", "ping")]
    assert len(set(mine(sigs)[0])) == 7


def test_a_run_of_values_is_one_variable():
    masked = mask_many(["close, 1190 bytes (1.16 KB) sent, 8611 bytes (8.40 KB) received", "close, 0 bytes sent, 0 bytes received"])
    assert masked[0] == masked[1] == "close, <*> sent, <*> received"


def test_digits_glued_by_underscore_are_values_and_trace_ids_go():
    masked = mask_many(["Progress of TaskAttempt attempt_1445144423722_0020_m_000001_0 is : 0.38",
                        "step done trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7"])
    assert masked == ["Progress of TaskAttempt attempt_<*>_m_<*> is : <*>", "step done trace_id=<*> span_id=<*>"]
