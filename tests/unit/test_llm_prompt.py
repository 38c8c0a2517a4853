"""The pure parts of the LLM reasoner: prompt building, token estimate, schema, answer parsing."""

from __future__ import annotations

import json
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest

from pipelines.reasoning.llm import LLMAnswer, parse_answer, retry_after_seconds, strict_json_schema
from pipelines.reasoning.prompt import (
    SYSTEM_PROMPT,
    PromptOverBudget,
    build_prompt,
    estimate_tokens,
    is_grounded,
)
from tests.support.llm_fixtures import POOL_LINE, candidate_verdict, good_answer, make_evidence


def walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}/{i}")


def test_schema_is_strict_every_object_closed_and_fully_required() -> None:
    schema = strict_json_schema(LLMAnswer)
    objects = [(p, n) for p, n in walk(schema) if n.get("type") == "object"]
    assert len(objects) >= 3  # the answer, a hypothesis, a remediation step
    for path, node in objects:
        assert node["additionalProperties"] is False, path
        assert sorted(node["required"]) == sorted(node["properties"]), path
    assert not any("default" in n for _, n in walk(schema))
    # the answer's own properties survive (a property may share a keyword's name)
    assert set(schema["properties"]) == {"category", "category_confidence", "hypotheses", "remediation"}


def test_estimate_is_conservative_for_log_text() -> None:
    line = "2024-03-01T12:00:00.123Z ERROR [pool-3-thread-7] c.e.PaymentService - timeout after 30000 ms"
    # published BPE tokenizers average 3-4 characters per token on such text
    assert estimate_tokens(line) >= len(line) / 4
    assert estimate_tokens("") == 0
    assert estimate_tokens("é" * 30) == 20  # counted in UTF-8 bytes


def test_prompt_carries_digest_anomalies_and_candidates_not_raw_logs() -> None:
    evidence = make_evidence()
    prompt = build_prompt(evidence, candidate_verdict(), budget_tokens=8000)
    system, user = prompt.messages[0]["content"], prompt.messages[1]["content"]
    assert system == SYSTEM_PROMPT
    assert '"candidate_causes":' in user and '"anomalies":' in user and '"summary":' in user
    assert "GET /api/orders/17 200" not in user  # an ordinary raw line is not dumped
    assert prompt.input_tokens <= 8000
    assert {"payment", "frontend"} <= prompt.services


def test_essentials_over_budget_is_refused_with_a_reason() -> None:
    with pytest.raises(PromptOverBudget, match="budget of 600"):
        build_prompt(make_evidence(), candidate_verdict(), budget_tokens=600)


def test_grounding_accepts_verbatim_excerpts_only() -> None:
    prompt = build_prompt(make_evidence(), candidate_verdict(), budget_tokens=8000)
    assert is_grounded(POOL_LINE, prompt.corpus)
    assert is_grounded(f'  "{POOL_LINE.upper()}..."  ', prompt.corpus)  # quotes, case, ellipsis
    assert not is_grounded("No space left on device", prompt.corpus)
    assert not is_grounded("error", prompt.corpus)  # too short to prove anything


def test_parse_answer_accepts_fenced_json_and_names_schema_errors() -> None:
    ok = parse_answer("```json\n" + json.dumps(good_answer()) + "\n```")
    assert ok.category.value == "database" and len(ok.hypotheses) == 2
    with pytest.raises(ValueError, match="not JSON"):
        parse_answer("The root cause is the database.")
    with pytest.raises(ValueError, match="empty"):
        parse_answer(None)
    bad = good_answer()
    bad["hypotheses"][0]["confidence"] = 7
    with pytest.raises(ValueError, match=r"hypotheses\.0\.confidence"):
        parse_answer(json.dumps(bad))


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert 20 <= retry_after_seconds({"retry-after": format_datetime(later, usegmt=True)}) <= 31
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
